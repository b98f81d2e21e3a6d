package main

import (
	"encoding/json"
	"io"
	"net/http"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/stretchr/testify/require"

	"github.com/corrstore/corrstore/redisstore/redistest"
)

// TestMoveToRedisAndBack is the runbook's migration on miniredis: import a
// bolt store into Redis store to store, work on it with the operator
// commands through --store redis://, export it, and import the export into
// a fresh bolt file. Every step verifies; the stats agree end to end.
func TestMoveToRedisAndBack(t *testing.T) {
	t.Parallel()
	f := newFixture(t, false)
	f.seed()
	want := f.run1("stats", "-o", "json", "--store", f.storeURL())
	f.stopDaemon() // the service moves: nothing writes the bolt file now

	mr := miniredis.RunT(t)
	redisURL := "redis://" + mr.Addr() + "/0?prefix=moved"
	var imp importOut
	require.NoError(t, json.Unmarshal([]byte(f.run1("import", "--store", redisURL, "--from", f.storeURL(), "-o", "json")), &imp))
	require.True(t, imp.Verified)
	require.Equal(t, int64(5), imp.Created)
	require.Equal(t, counts(t, want), counts(t, f.run1("stats", "-o", "json", "--store", redisURL)), "the Redis copy sums up as the bolt file")

	require.Equal(t, []string{"gone-1", "dead-1", "done-1", "pend-2", "pend-1"}, lsIDs(t, f.run1("ls", "-o", "json", "--store", redisURL)))
	require.Contains(t, f.run1("show", "dead-1", "--store", redisURL), "warehouse API 503")
	f.run1("cancel", "pend-1", "--reason", "moved by hand", "--store", redisURL)
	require.Equal(t, []string{"pend-2"}, lsIDs(t, f.run1("ls", "-o", "json", "--state", "pending", "--store", redisURL)))

	// And back: Redis -> export file -> a new bolt file.
	file := filepath.Join(f.dir, "from-redis.jsonl")
	f.run1("export", "--store", redisURL, "--to", file)
	back := "bolt://" + filepath.Join(f.dir, "back.db")
	require.Contains(t, f.run1("import", "--store", back, file), "verified")
	require.Equal(t, counts(t, f.run1("stats", "-o", "json", "--store", redisURL)), counts(t, f.run1("stats", "-o", "json", "--store", back)))
	require.Equal(t, []string{"pend-2"}, lsIDs(t, f.run1("ls", "-o", "json", "--state", "pending", "--store", back)))
}

// counts is `stats -o json` without the oldest pending time and age: the
// age moves between two commands, and Redis keeps index times in
// microseconds where bolt keeps nanoseconds.
func counts(t *testing.T, stats string) map[string]any {
	t.Helper()
	var m map[string]any
	require.NoError(t, json.Unmarshal([]byte(stats), &m))
	strip := func(ns any) {
		delete(ns.(map[string]any), "oldest_pending")
		delete(ns.(map[string]any), "oldest_pending_age")
	}
	strip(m["total"])
	for _, ns := range m["namespaces"].(map[string]any) {
		strip(ns)
	}
	return m
}

// run1 runs a command that must succeed and returns its standard output.
func (f *fixture) run1(args ...string) string {
	f.t.Helper()
	out, stderr, err := f.run(args...)
	require.NoError(f.t, err, "%v: %s", args, stderr)
	return out
}

// TestTwoServersOnRedis runs two `corrstore serve` processes on one real
// redis-server (started for the test; skipped with a message when
// redis-server is not installed): a correlation registered on A, a long
// poll on A, and the reply sent to B. The reply completes the correlation
// and wakes A's long poll, and each server's reaper decides what either
// registered. The reply token A made is good on B without a secret file.
func TestTwoServersOnRedis(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("builds the binary")
	}
	srv := redistest.StartServer(t, redistest.ServerOptions{Dir: redistest.MemDir(t)})
	storeURL := "redis://" + srv.Addr() + "/0?strict=true"
	// No --reply-secret-file: the replicas sign reply tokens with the
	// store's own secret, so that a token made by one is good on any.
	a := startOn(t, storeURL, "--reaper-interval", "50ms")
	b := startOn(t, storeURL, "--reaper-interval", "50ms")

	reg := a.must("POST", "/v1/correlations", m{"id": "shared", "timeout": "5m"}, 201)
	if got := b.must("GET", "/v1/correlations/shared", nil, 200); got["state"] != "pending" {
		t.Fatalf("B does not see A's registration: %v", got)
	}
	before := inFlight(t, a)
	poll := make(chan map[string]any, 1)
	go func() {
		_, v, _ := a.call("GET", "/v1/correlations/shared/outcome?wait=2m", nil)
		poll <- v
	}()
	// The long poll is being served on A before the reply goes to B.
	for inFlight(t, a) <= before {
		select {
		case v := <-poll:
			t.Fatalf("the long poll returned before any reply: %v", v)
		case <-time.After(10 * time.Millisecond):
		}
	}
	d := b.must("POST", "/v1/replies/"+reg["reply_token"].(string), m{"id": "r1", "body": m{"from": "b"}}, 200)
	require.Equal(t, "completed", d["status"], "the reply sent to B")
	select {
	case v := <-poll:
		require.Equal(t, "completed", v["state"], "A's long poll: %v", v)
	case <-time.After(time.Minute):
		t.Fatal("A's long poll was not woken by the reply sent to B")
	}
	got := a.must("GET", "/v1/correlations/shared", nil, 200)
	require.Equal(t, "completed", got["state"])

	// Deadlines: registered on B, decided by whichever reaper gets there.
	b.must("POST", "/v1/correlations", m{"id": "short", "timeout": "200ms"}, 201)
	v := a.must("GET", "/v1/correlations/short/outcome?wait=1m", nil, 200)
	require.Equal(t, "timed_out", v["state"], "a deadline set on B, seen from A")
	a.stop()
	b.stop()
}

var inFlightRE = regexp.MustCompile(`(?m)^corrstore_http_requests_in_flight (\d+)`)

// inFlight reads p's corrstore_http_requests_in_flight gauge.
func inFlight(t *testing.T, p *proc) int {
	t.Helper()
	res, err := http.Get(p.base + "/metrics")
	require.NoError(t, err)
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	mm := inFlightRE.FindSubmatch(body)
	require.NotNil(t, mm, "no corrstore_http_requests_in_flight in /metrics")
	n, err := strconv.Atoi(string(mm[1]))
	require.NoError(t, err)
	return n
}
