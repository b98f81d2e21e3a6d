package main

import (
	"encoding/json"
	"path/filepath"
	"testing"

	"github.com/alicebob/miniredis/v2"
	"github.com/stretchr/testify/require"
)

// TestMoveToRedisAndBack is the runbook's migration on miniredis: import a
// bolt store into Redis store to store, work on it with the operator
// commands through --store redis://, export it, and import the export into
// a fresh bolt file. Every step verifies; the stats agree end to end.
func TestMoveToRedisAndBack(t *testing.T) {
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
		delete(ns.(map[string]any), "oldest_pending_age_seconds")
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
