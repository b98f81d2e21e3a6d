package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/corrstore/corrstore/bolt/bolttest"
	"github.com/corrstore/corrstore/store"
)

// TestBadInput: each mistake exits non-zero with one line naming it, and
// changes nothing.
func TestBadInput(t *testing.T) {
	t.Parallel()
	f := newFixture(t, true)
	f.seed()
	admin := []string{"--server", f.srv.URL, "--token-file", f.tokenFile}
	wrong := filepath.Join(f.dir, "wrong-token")
	require.NoError(t, os.WriteFile(wrong, []byte("not-the-token-0123456789\n"), 0o600))
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"ls", "--bogus"}, "ls: unknown flag --bogus (see corrstore ls -h)"},
		{[]string{"ls", "--older-than", "5 minutes"}, `ls: --older-than: "5 minutes" is not a duration like 30s, 5m or 1h30m`},
		{append([]string{"extend", "pend-1", "--by", "5x"}, admin...), `extend: --by: "5x" is not a duration like 30s, 5m or 1h30m`},
		{append([]string{"show", "nope"}, admin...), "show: nope: not found"},
		{append([]string{"expire", "nope"}, admin...), "expire: nope: not found; nothing was changed"},
		{append([]string{"expire", "team-a/pend-1"}, admin...), "expire: team-a/pend-1: not found; nothing was changed"},
		{append([]string{"show", "Team/x"}, admin...), `show: "Team/x": namespace: `},
		{append([]string{"show", "a/b/c"}, admin...), `show: "a/b/c": id: `},
		{append([]string{"cancel", "x\x1b[2J", "--reason", "r"}, admin...), `cancel: "x\x1b[2J": id: `},
		{append([]string{"expire", "x", "-n", "Bad NS"}, admin...), "expire: --namespace: "},
		{append([]string{"ls", "-n", "Bad NS"}, admin...), "ls: --namespace: "},
		{[]string{"ls", "--server", "http://127.0.0.1:1"}, "ls: server unreachable: GET http://127.0.0.1:1: dial tcp 127.0.0.1:1: connect: connection refused"},
		{[]string{"ls", "--server", f.srv.URL, "--token-file", wrong}, "ls: the server refused the token (401): check --token-file or CORRSTORE_TOKEN"},
		{[]string{"expire", "pend-1", "--server", f.srv.URL}, "expire: pend-1: the server refused the token (401): check --token-file or CORRSTORE_TOKEN; nothing was changed"},
		{[]string{"expire", "pend-1", "--store", f.storeURL()}, "expire: --store " + f.storeURL() + ": " + "the file is held by another process (a running corrstore serve?): writes need the server, use --server URL"},
		{[]string{"ls", "--store", "bolt://" + filepath.Join(f.dir, "missing.db")}, "no such file or directory"},
		{[]string{"ls", "--store", "mysql://x"}, `scheme "mysql" is not supported`},
		{[]string{"ls"}, "ls: give --server URL (a running corrstore serve) or --store URL (bolt://PATH, redis://…)"},
		{[]string{"ls", "--state", "stuck", "--server", f.srv.URL}, `ls: --state: must be one of pending, completed, timed_out, cancelled, got "stuck"`},
		{[]string{"frobnicate"}, `unknown command "frobnicate"; run 'corrstore --help'`},
	} {
		_, _, err := f.run(tc.args...)
		require.Error(t, err, "%q", tc.args)
		require.Contains(t, err.Error(), tc.want, "%q", tc.args)
		require.NotContains(t, err.Error(), "\n", "one line")
	}
	// The reader token may not expire: the server says why, nothing changed.
	f.getenv["CORRSTORE_TOKEN"] = opsReaderToken
	out, _, err := f.run("expire", "pend-1", "--server", f.srv.URL)
	require.EqualError(t, err, "expire: 1 of 1 failed")
	require.Contains(t, out, "(403)")
	require.Equal(t, store.StatePending, f.get("pend-1").State)
	require.Nil(t, f.get("pend-1").Outcome)
}

// TestCommandsOnBinary runs each operator command through the real binary,
// against the server and on the file the server holds.
func TestCommandsOnBinary(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin, err := binary()
	require.NoError(t, err)
	f := newFixture(t, false)
	f.seed()
	sh := func(wantOK bool, args ...string) string {
		t.Helper()
		out, err := exec.Command(bin, args...).CombinedOutput()
		if wantOK {
			require.NoError(t, err, "%q: %s", args, out)
		} else {
			require.Error(t, err, "%q: %s", args, out)
			require.Equal(t, 1, strings.Count(strings.TrimSpace(string(out)), "\n")+1, "one line: %s", out)
		}
		return string(out)
	}
	srv, st := []string{"--server", f.srv.URL}, []string{"--store", f.storeURL()}
	require.Contains(t, sh(true, append([]string{"ls", "--state", "pending"}, st...)...), "pend-1")
	require.Contains(t, sh(true, append([]string{"show", "done-1"}, st...)...), "Late replies (1)")
	require.Contains(t, sh(true, append([]string{"stats"}, srv...)...), "TOTAL")
	require.Contains(t, sh(true, append([]string{"extend", "pend-1", "--by", "1m"}, srv...)...), "extended")
	require.Contains(t, sh(true, append([]string{"expire", "pend-1"}, srv...)...), "timed_out")
	require.Contains(t, sh(true, append([]string{"cancel", "team-a/pend-2", "--reason", "r"}, srv...)...), "cancelled")
	require.Contains(t, sh(true, append([]string{"redispatch", "dead-1"}, srv...)...), "redispatched")
	require.Contains(t, sh(false, append([]string{"expire", "nope"}, srv...)...), "corrstore: expire: nope: not found; nothing was changed")
	require.Contains(t, sh(true, "bench", "--server", f.srv.URL, "--duration", "300ms", "--concurrency", "2"), "lifecycles:")
	file := filepath.Join(f.dir, "e.jsonl")
	sh(true, append([]string{"export", "--to", file}, st...)...)
	require.Contains(t, sh(true, "import", "--store", "bolt://"+filepath.Join(f.dir, "copy.db"), file), "verified")
	require.Contains(t, sh(false, append([]string{"reap", "--once"}, st...)...), "writes need the server")
	require.Contains(t, sh(true, "ls", "-h"), "Usage: corrstore ls")
	old := filepath.Join(f.dir, "v1.db")
	bolttest.CopySchema1(t, old)
	require.Contains(t, sh(false, "ls", "--store", "bolt://"+old), "corrstore upgrade --store bolt://"+old)
	require.Contains(t, sh(true, "upgrade", "--store", "bolt://"+old), "from schema 1 to 3")
	require.Contains(t, sh(true, "show", "shop/pend-2", "--store", "bolt://"+old), "gather")
}
