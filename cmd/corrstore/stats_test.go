package main

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestStats(t *testing.T) {
	t.Parallel()
	f := newFixture(t, false)
	f.seed()
	for _, out := range f.both("stats", "-o", "json") {
		var s statsOut
		require.NoError(t, json.Unmarshal([]byte(out), &s))
		require.EqualValues(t, 2, s.Total.States["pending"])
		require.EqualValues(t, 2, s.Total.States["completed"])
		require.EqualValues(t, 1, s.Total.States["cancelled"])
		require.EqualValues(t, 1, s.Total.Dispatch["dead"])
		require.EqualValues(t, 1, s.Total.Dispatch["pending"])
		require.NotNil(t, s.Total.OldestPending)
		require.EqualValues(t, 1, s.Namespaces["team-a"].States["pending"])
	}
	for _, out := range f.both("stats", "-n", "team-a", "-o", "json") {
		var s statsOut
		require.NoError(t, json.Unmarshal([]byte(out), &s))
		require.Len(t, s.Namespaces, 1)
		require.EqualValues(t, 1, s.Total.States["pending"])
	}
	out := f.both("stats")[0]
	require.Regexp(t, `default +1 +2 +0 +1 `, out)
	require.Regexp(t, `TOTAL +2 +2 +0 +1 `, out)
}
