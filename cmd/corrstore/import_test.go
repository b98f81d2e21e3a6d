package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/corrstore/corrstore/bolt"
	"github.com/corrstore/corrstore/internal/testenv"
	"github.com/corrstore/corrstore/store"
)

// TestExportImport moves correlations in every state from one bolt file to
// another through an export file, imports them again (nothing changes), and
// checks the copy: counts, checksums, indexes and stats. 200 by default:
// under -race beside the rest of make test, 400 took 52 s to fill and 40 s
// to import on this project's 2-core VM (a process starved of CPU pays for
// every goroutine handoff between the importers and bolt's writer);
// CORRSTORE_EXPORT_N=100000 (make import-100k) for the full-size run.
func TestExportImport(t *testing.T) {
	t.Parallel()
	n := testenv.Int(t, "CORRSTORE_EXPORT_N", 200)
	require.Zero(t, n%4, "CORRSTORE_EXPORT_N: a multiple of 4")
	dir := t.TempDir()
	src, dst, file := filepath.Join(dir, "src.db"), filepath.Join(dir, "dst.db"), filepath.Join(dir, "all.jsonl")
	start := time.Now()
	fill(t, src, n)
	t.Logf("fill %d: %s", n, time.Since(start))

	f := &fixture{t: t, dir: dir, getenv: map[string]string{}}
	start = time.Now()
	_, stderr, err := f.run("export", "--store", "bolt://"+src, "--to", file)
	require.NoError(t, err)
	q := n / 4
	require.Contains(t, stderr, fmt.Sprintf("exported %d correlations: pending %d completed %d timed_out %d cancelled %d", n, q, q, q, q))
	t.Logf("export: %s", time.Since(start))

	start = time.Now()
	out, stderr, err := f.run("import", "--store", "bolt://"+dst, file, "-o", "json")
	require.NoError(t, err, stderr)
	t.Logf("import: %s", time.Since(start))
	var res importOut
	require.NoError(t, json.Unmarshal([]byte(out), &res))
	require.Equal(t, int64(n), res.Read)
	require.Equal(t, int64(n), res.Created)
	require.True(t, res.Verified)
	want, err := json.Marshal(readSummary(t, file))
	require.NoError(t, err)
	got, err := json.Marshal(res.Summary)
	require.NoError(t, err)
	require.JSONEq(t, string(want), string(got), "the copy sums up as the export did")

	// Again: idempotent.
	start = time.Now()
	out, _, err = f.run("import", "--store", "bolt://"+dst, file, "-o", "json")
	require.NoError(t, err)
	t.Logf("import again: %s", time.Since(start))
	res = importOut{}
	require.NoError(t, json.Unmarshal([]byte(out), &res))
	require.Equal(t, int64(0), res.Created)
	require.Equal(t, int64(n), res.Unchanged)
	require.True(t, res.Verified)

	// Store to store gives the same.
	dst2 := filepath.Join(dir, "dst2.db")
	out, _, err = f.run("import", "--store", "bolt://"+dst2, "--from", "bolt://"+src)
	require.NoError(t, err)
	require.Contains(t, out, "verified")

	// The copy is a working store: indexes and counters agree, stats match.
	a, err := bolt.Open(bolt.Options{Path: src, ReadOnly: true, Logger: quiet()})
	require.NoError(t, err)
	defer a.Close()
	b, err := bolt.Open(bolt.Options{Path: dst, Logger: quiet(), NoSync: true})
	require.NoError(t, err)
	defer b.Close()
	ctx := context.Background()
	require.NoError(t, b.Verify(ctx))
	sa, err := a.Stats(ctx, "")
	require.NoError(t, err)
	sb, err := b.Stats(ctx, "")
	require.NoError(t, err)
	require.Equal(t, sa, sb)
	due, err := b.ExpireDue(ctx, time.Date(2026, 11, 1, 1, 0, 1, 0, time.UTC), 10)
	require.NoError(t, err)
	require.NotEmpty(t, due, "the deadline index came along")
}

func TestImportRefuses(t *testing.T) {
	t.Parallel()
	f := newFixture(t, false)
	f.seed()
	file := filepath.Join(f.dir, "out.jsonl")
	_, _, err := f.run("export", "--store", f.storeURL(), "--to", file)
	require.NoError(t, err)
	whole, err := os.ReadFile(file)
	require.NoError(t, err)
	dst := "bolt://" + filepath.Join(f.dir, "dst.db")

	// Without its summary line the file is unfinished: what it has is
	// imported (idempotent), and the command fails saying so.
	lines := strings.SplitAfter(string(whole), "\n")
	part := filepath.Join(f.dir, "part.jsonl")
	require.NoError(t, os.WriteFile(part, []byte(strings.Join(lines[:3], "")), 0o600))
	_, _, err = f.run("import", "--store", dst, part)
	require.ErrorContains(t, err, "is incomplete (no summary line)")

	// A damaged line changes the checksum.
	bad := filepath.Join(f.dir, "bad.jsonl")
	require.NoError(t, os.WriteFile(bad, []byte(strings.Replace(string(whole), `"pend-1"`, `"pend-X"`, 1)), 0o600))
	_, _, err = f.run("import", "--store", "bolt://"+filepath.Join(f.dir, "other.db"), bad)
	require.ErrorContains(t, err, "its summary does not match its lines")

	// Into the store the daemon holds: one line, writes need the server.
	_, _, err = f.run("import", "--store", f.storeURL(), file)
	require.ErrorContains(t, err, "writes need the server")

	// A record that differs from the one there is a conflict, left as it is.
	_, err = f.st.Cancel(context.Background(), store.RefOf("pend-1"), "changed after the export")
	require.NoError(t, err)
	f.stopDaemon()
	_, _, err = f.run("import", "--store", f.storeURL(), file)
	require.ErrorContains(t, err, "1 records conflict")
	st, err := bolt.Open(bolt.Options{Path: f.dbPath, ReadOnly: true, Logger: quiet()})
	require.NoError(t, err)
	defer st.Close()
	c, err := st.Get(context.Background(), store.RefOf("pend-1"))
	require.NoError(t, err)
	require.Equal(t, store.StateCancelled, c.State)

	_, _, err = f.run("import", "--store", dst, filepath.Join(f.dir, "missing.jsonl"))
	require.ErrorContains(t, err, "no such file")
}
