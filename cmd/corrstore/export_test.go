package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/corrstore/corrstore/bolt"
	"github.com/corrstore/corrstore/cmd/corrstore/internal/wire"
	"github.com/corrstore/corrstore/store"
)

// synthetic is record i of a large store, in one of the four states with the
// dispatch states that go with them, as a store would hold it.
func synthetic(i int, base time.Time) *store.Correlation {
	created := base.Add(time.Duration(i) * time.Millisecond)
	c := &store.Correlation{
		ID: fmt.Sprintf("c-%06d", i), Namespace: []string{"default", "orders", "billing"}[i%3],
		Pattern: store.PatternSingle, Deadline: created.Add(time.Hour), Destination: "payments",
		Owner: "svc-" + fmt.Sprint(i%5), Callback: store.Callback{Handler: "resume", Data: fmt.Appendf(nil, `{"n":%d}`, i)},
		Labels: map[string]string{"wf": fmt.Sprint(i % 7)}, State: store.StatePending,
		Dispatch: store.Dispatch{State: store.DispatchNone}, Fingerprint: fmt.Sprintf("fp-%d", i),
		Events:  []store.TimelineEvent{{At: created, Type: store.EventRegistered, Detail: "pattern=single"}},
		Version: 1, CreatedAt: created, UpdatedAt: created,
	}
	decided := created.Add(time.Second)
	decide := func(s store.State, d store.DispatchState) {
		c.State, c.Outcome, c.UpdatedAt, c.Version = s, &store.Outcome{State: s, At: decided}, decided, 3
		c.Dispatch = store.Dispatch{State: d, Attempts: 1, AttemptLimit: 10}
		c.Events = append(c.Events, store.TimelineEvent{At: decided, Type: store.EventOutcome, Detail: string(s)})
	}
	switch i % 4 {
	case 1:
		c.Replies = []store.Reply{{ID: "r", Body: []byte(`{"ok":true}`), ReceivedAt: decided}}
		decide(store.StateCompleted, store.DispatchPending)
		c.Dispatch.NextAt = decided.Add(time.Minute)
		c.Late, c.LateCount = []store.Reply{{ID: "late", Body: []byte(`"late"`), ReceivedAt: decided.Add(time.Second)}}, 1
	case 2:
		decide(store.StateTimedOut, store.DispatchDead)
		c.Dispatch.LastError = "handler failed"
	case 3:
		decide(store.StateCancelled, store.DispatchDone)
		c.Outcome.Reason = "send failed"
		c.Dispatch.DoneAt = decided
	}
	return c
}

// fill imports n synthetic records into a bolt file, with 32 writers so the
// group commit batches them.
func fill(t *testing.T, path string, n int) {
	t.Helper()
	st, err := bolt.Open(bolt.Options{Path: path, NoSync: true, Logger: quiet()})
	require.NoError(t, err)
	defer st.Close()
	base := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	var wg sync.WaitGroup
	errs := make(chan error, 32)
	for w := range 32 {
		wg.Go(func() {
			for i := w; i < n; i += 32 {
				if _, err := st.Import(context.Background(), synthetic(i, base)); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	require.NoError(t, <-errs)
}

func readSummary(t *testing.T, path string) *summary {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	var l exportLine
	require.NoError(t, json.Unmarshal([]byte(lines[len(lines)-1]), &l))
	require.Equal(t, "summary", l.Type)
	return l.Summary
}

func TestExportResumes(t *testing.T) {
	t.Parallel()
	f := newFixture(t, false)
	f.seed()
	file := filepath.Join(f.dir, "out.jsonl")
	// The daemon holds the file: export reads a checked copy.
	_, stderr, err := f.run("export", "--store", f.storeURL(), "--to", file)
	require.NoError(t, err)
	require.Contains(t, stderr, "exported 5 correlations: pending 2 completed 2 timed_out 0 cancelled 1")
	whole, err := os.ReadFile(file)
	require.NoError(t, err)
	want := readSummary(t, file)

	// Cut it in the middle of the fourth record, as a crash would.
	lines := strings.SplitAfter(string(whole), "\n")
	cut := strings.Join(lines[:4], "") + lines[4][:10]
	require.NoError(t, os.WriteFile(file, []byte(cut), 0o600))
	_, stderr, err = f.run("export", "--store", f.storeURL(), "--to", file)
	require.NoError(t, err)
	require.Contains(t, stderr, "resuming "+file+" after 3 correlations")
	resumed, err := os.ReadFile(file)
	require.NoError(t, err)
	require.Equal(t, strings.Join(lines[1:], ""), strings.Join(strings.SplitAfter(string(resumed), "\n")[1:], ""), "same records and summary")
	require.Equal(t, want, readSummary(t, file), "the same summary")

	// Complete: nothing to do.
	_, stderr, err = f.run("export", "--store", f.storeURL(), "--to", file)
	require.NoError(t, err)
	require.Contains(t, stderr, "complete export of 5 correlations; nothing to do")

	// Standard output, for pipes.
	out, _, err := f.run("export", "--store", f.storeURL())
	require.NoError(t, err)
	require.Equal(t, strings.Join(lines[1:], ""), strings.Join(strings.SplitAfter(out, "\n")[1:], ""))

	_, _, err = f.run("export", "--server", f.srv.URL)
	require.ErrorContains(t, err, "export reads a store directly")
}

// TestExportNamespaces: an export carries each record's namespace, the same
// ID in two namespaces is two records, import puts each back where it was,
// and --namespace exports one namespace (and resumes only as that).
func TestExportNamespaces(t *testing.T) {
	t.Parallel()
	f := newFixture(t, false)
	f.seed()
	_, err := f.st.Register(t.Context(), &store.Correlation{ID: "pend-1", Namespace: "team-a", Timeout: time.Hour, Destination: "ledger"})
	require.NoError(t, err)

	all := filepath.Join(f.dir, "all.jsonl")
	_, stderr, err := f.run("export", "--store", f.storeURL(), "--to", all)
	require.NoError(t, err)
	require.Contains(t, stderr, "exported 6 correlations")
	head, _, _ := strings.Cut(f.readFile(all), "\n")
	require.Contains(t, head, `"version":2`)

	dst := "bolt://" + filepath.Join(f.dir, "dst.db")
	require.Contains(t, f.run1("import", "--store", dst, all), "verified")
	out := f.run1("ls", "-o", "json", "--store", dst, "--order", "oldest")
	var page wire.ListResponse
	require.NoError(t, json.Unmarshal([]byte(out), &page))
	var refs []string
	for _, it := range page.Items {
		refs = append(refs, it.Namespace+"/"+it.ID)
	}
	require.Equal(t, []string{"default/pend-1", "team-a/pend-2", "default/done-1", "default/dead-1", "default/gone-1", "team-a/pend-1"}, refs)
	require.Contains(t, f.run1("show", "team-a/pend-1", "--store", dst), "ledger")
	require.Contains(t, f.run1("show", "pend-1", "--store", dst), "payments")

	one := filepath.Join(f.dir, "team-a.jsonl")
	_, stderr, err = f.run("export", "--store", f.storeURL(), "-n", "team-a", "--to", one)
	require.NoError(t, err)
	require.Contains(t, stderr, "exported 2 correlations")
	_, stderr, err = f.run("export", "--store", f.storeURL(), "-n", "team-a", "--to", one)
	require.NoError(t, err)
	require.Contains(t, stderr, "complete export of 2 correlations; nothing to do")
	lines := strings.SplitAfter(f.readFile(one), "\n")
	require.NoError(t, os.WriteFile(one, []byte(lines[0]+lines[1]), 0o600))
	_, _, err = f.run("export", "--store", f.storeURL(), "--to", one)
	require.EqualError(t, err, "export: "+one+" is an export of namespace team-a, not of every namespace: give the same --namespace, or another --to")
	_, stderr, err = f.run("export", "--store", f.storeURL(), "--namespace", "team-a", "--to", one)
	require.NoError(t, err)
	require.Contains(t, stderr, "resuming "+one+" after 1 correlation")
	require.Contains(t, stderr, "exported 2 correlations")

	// An export made before namespaces scoped IDs (format version 1) reads
	// the same; a newer format is refused.
	v1 := filepath.Join(f.dir, "v1.jsonl")
	require.NoError(t, os.WriteFile(v1, []byte(strings.Replace(f.readFile(all), `"version":2`, `"version":1`, 1)), 0o600))
	require.Contains(t, f.run1("import", "--store", "bolt://"+filepath.Join(f.dir, "v1.db"), v1), "verified")
	v3 := filepath.Join(f.dir, "v3.jsonl")
	require.NoError(t, os.WriteFile(v3, []byte(strings.Replace(f.readFile(all), `"version":2`, `"version":3`, 1)), 0o600))
	_, _, err = f.run("import", "--store", "bolt://"+filepath.Join(f.dir, "v3.db"), v3)
	require.ErrorContains(t, err, "export format version 3; this build reads versions 1 to 2: upgrade corrstore")
}

func (f *fixture) readFile(path string) string {
	f.t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(f.t, err)
	return string(b)
}
