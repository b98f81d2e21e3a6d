package main

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/corrstore/corrstore/cmd/corrstore/internal/wire"
)

func TestStats(t *testing.T) {
	t.Parallel()
	f := newFixture(t, false)
	f.seed()
	for _, out := range f.both("stats", "-o", "json") {
		var s wire.StatsResponse
		require.NoError(t, json.Unmarshal([]byte(out), &s))
		require.EqualValues(t, 2, s.Total.States["pending"])
		require.EqualValues(t, 2, s.Total.States["completed"])
		require.EqualValues(t, 1, s.Total.States["cancelled"])
		require.EqualValues(t, 1, s.Total.Dispatch["dead"])
		require.EqualValues(t, 1, s.Total.Dispatch["pending"])
		require.NotNil(t, s.Total.OldestPending)
		require.EqualValues(t, 1, s.Namespaces["team-a"].States["pending"])
		// pend-1's and done-1's callback data {"order":1} (11 each), done-1's
		// reply {"paid":true} (13) and late reply "too late" (10).
		require.EqualValues(t, 11+11+13+10, s.Namespaces["default"].Bytes)
		require.Zero(t, s.Namespaces["team-a"].Bytes)
		require.EqualValues(t, 45, s.Total.Bytes)
		require.Contains(t, out, `"bytes": 45`)
	}
	for _, out := range f.both("stats", "-n", "team-a", "-o", "json") {
		var s wire.StatsResponse
		require.NoError(t, json.Unmarshal([]byte(out), &s))
		require.Len(t, s.Namespaces, 1)
		require.EqualValues(t, 1, s.Total.States["pending"])
	}
	out := f.both("stats")[0]
	require.Regexp(t, `default +1 +2 +0 +1 `, out)
	require.Regexp(t, `TOTAL +2 +2 +0 +1 `, out)
	require.Regexp(t, `NAMESPACE .* DISPATCH_DEAD +BYTES\n`, out)
	require.Regexp(t, `\ndefault +1 +2 +0 +1 .* 1 +1 +45\n`, out)
	require.Regexp(t, `\nteam-a +1 +0 +0 +0 .* 0 +0 +0\n`, out)
	require.Regexp(t, `\nTOTAL .* 45\n`, out)
}
