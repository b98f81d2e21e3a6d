package main

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/corrstore/corrstore/bolt"
	"github.com/corrstore/corrstore/store"
)

func TestExpireCancelExtendOnServer(t *testing.T) {
	t.Parallel()
	f := newFixture(t, true)
	f.seed()
	srv := []string{"--server", f.srv.URL, "--token-file", f.tokenFile}

	before := f.get("pend-1").Deadline
	out, _, err := f.run(append([]string{"extend", "pend-1", "--by", "10m", "-o", "json"}, srv...)...)
	require.NoError(t, err)
	var res struct {
		Action  string      `json:"action"`
		Results []actResult `json:"results"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &res))
	require.Equal(t, "extended", res.Action)
	require.Equal(t, before.Add(10*time.Minute).UTC(), f.get("pend-1").Deadline.UTC())

	// One unknown ID: nothing changes, one line says which.
	_, _, err = f.run(append([]string{"expire", "pend-1", "nope"}, srv...)...)
	require.EqualError(t, err, "expire: nope: not found; nothing was changed")
	require.Equal(t, store.StatePending, f.get("pend-1").State)

	out, _, err = f.run(append([]string{"expire", "pend-1"}, srv...)...)
	require.NoError(t, err)
	require.Regexp(t, `pend-1 +default +timed_out +pending +expired`, out)
	require.Equal(t, "expired by an operator", f.get("pend-1").Outcome.Reason)

	_, _, err = f.run(append([]string{"cancel", "pend-2"}, srv...)...)
	require.EqualError(t, err, "cancel: --reason: required (it is recorded in the outcome)")
	_, _, err = f.run(append([]string{"cancel", "pend-1", "--reason", "x"}, srv...)...)
	require.EqualError(t, err, "cancel: pend-1: is timed_out, not pending; nothing was changed")
	// pend-2 is in team-a: not found in the default namespace, nothing changed.
	_, _, err = f.run(append([]string{"cancel", "pend-2", "--reason", "customer gave up"}, srv...)...)
	require.EqualError(t, err, "cancel: pend-2: not found; nothing was changed")
	_, _, err = f.run(append([]string{"cancel", "team-a/pend-1", "--reason", "x"}, srv...)...)
	require.EqualError(t, err, "cancel: team-a/pend-1: not found; nothing was changed")
	_, _, err = f.run(append([]string{"cancel", "team-a/pend-2", "-n", "default", "--reason", "x"}, srv...)...)
	require.EqualError(t, err, "cancel: team-a/pend-2 is in namespace team-a, but --namespace is default; nothing was changed")
	out, _, err = f.run(append([]string{"cancel", "pend-2", "-n", "team-a", "--reason", "customer gave up"}, srv...)...)
	require.NoError(t, err)
	require.Regexp(t, `pend-2 +team-a +cancelled`, out)
	require.Equal(t, "customer gave up", f.get("team-a/pend-2").Outcome.Reason)
}

func TestWritesOnStore(t *testing.T) {
	t.Parallel()
	f := newFixture(t, false)
	f.seed()
	// While the daemon holds the file: one line, nothing changed.
	_, _, err := f.run("expire", "pend-1", "--store", f.storeURL())
	require.ErrorContains(t, err, "writes need the server, use --server URL")
	require.Equal(t, store.StatePending, f.get("pend-1").State)
	f.stopDaemon()
	out, _, err := f.run("cancel", "pend-1", "--reason", "r", "--store", f.storeURL())
	require.NoError(t, err)
	require.Regexp(t, `pend-1 +default +cancelled`, out)
	out, _, err = f.run("extend", "team-a/pend-2", "--deadline", "2099-01-01T00:00:00Z", "--store", f.storeURL())
	require.NoError(t, err, out) // capped at created + the max timeout
	require.Contains(t, out, "extended")
	out, _, err = f.run("extend", "pend-2", "--namespace", "team-a", "--by", "1h", "--store", f.storeURL(), "-o", "json")
	require.NoError(t, err, out)
	require.Contains(t, out, `"namespace": "team-a"`)
}

func TestRedispatch(t *testing.T) {
	t.Parallel()
	f := newFixture(t, true)
	f.seed()
	srv := []string{"--server", f.srv.URL, "--token-file", f.tokenFile}
	_, _, err := f.run(append([]string{"redispatch", "--all-matching"}, srv...)...)
	require.EqualError(t, err, "redispatch: this would redispatch 1 correlation (dead-1); there is no terminal to ask, so nothing was changed: add --yes")
	require.Equal(t, store.DispatchDead, f.get("dead-1").Dispatch.State)

	f.terminal, f.stdin = true, "n\n"
	_, _, err = f.run(append([]string{"redispatch", "--all-matching", "--handler", "ship-order"}, srv...)...)
	require.EqualError(t, err, "redispatch: not confirmed; nothing was changed")
	f.stdin = "y\n"
	out, stderr, err := f.run(append([]string{"redispatch", "--all-matching", "--handler", "ship-order"}, srv...)...)
	require.NoError(t, err)
	require.Contains(t, stderr, "Redispatch 1 correlation (dead-1)? [y/N]")
	require.Regexp(t, `dead-1 +default +completed +pending +redispatched`, out)
	require.Equal(t, store.DispatchPending, f.get("dead-1").Dispatch.State)

	_, _, err = f.run(append([]string{"redispatch", "pend-1"}, srv...)...)
	require.EqualError(t, err, "redispatch: pend-1: dispatch is none; only dead or done outcomes can be redispatched; nothing was changed")
	out, _, err = f.run(append([]string{"redispatch", "--all-matching", "--yes"}, srv...)...)
	require.NoError(t, err)
	require.Contains(t, out, "nothing matches")
}

func TestReap(t *testing.T) {
	t.Parallel()
	f := newFixture(t, false)
	f.seed()
	_, _, err := f.run("reap", "--store", f.storeURL())
	require.EqualError(t, err, "reap: --once is required: to reap continuously, run corrstore serve")
	_, _, err = f.run("reap", "--once", "--server", f.srv.URL)
	require.ErrorContains(t, err, "reap works on --store")
	f.stopDaemon()
	// A correlation registered an hour ago with a one-minute timeout is due.
	st, err := bolt.Open(bolt.Options{Path: f.dbPath, NoSync: true, Logger: quiet(), Clock: store.NewFakeClock(time.Now().Add(-time.Hour))})
	require.NoError(t, err)
	_, err = st.Register(t.Context(), &store.Correlation{ID: "late-1", Namespace: "team-a", Timeout: time.Minute})
	require.NoError(t, err)
	require.NoError(t, st.Close())

	out, _, err := f.run("reap", "--once", "--store", f.storeURL(), "-o", "json")
	require.NoError(t, err)
	var rep reapOut
	require.NoError(t, json.Unmarshal([]byte(out), &rep))
	require.Equal(t, 1, rep.Expired.TimedOut)
	require.Empty(t, rep.Error)
	out, _, err = f.run("reap", "--once", "--store", f.storeURL())
	require.NoError(t, err)
	require.Regexp(t, `expired: +0`, out)
}
