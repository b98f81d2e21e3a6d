package main

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestBench(t *testing.T) {
	t.Parallel()
	f := newFixture(t, false)
	for _, pattern := range []string{"single", "gather", "stream"} {
		out, _, err := f.run("bench", "--server", f.srv.URL, "--duration", "200ms", "--concurrency", "2", "--pattern", pattern, "-o", "json")
		require.NoError(t, err)
		var b benchOut
		require.NoError(t, json.Unmarshal([]byte(out), &b))
		require.Positive(t, b.Lifecycles, pattern)
		require.Empty(t, b.Errors, pattern)
		require.Positive(t, b.Latency["lifecycle"].P50)
		require.LessOrEqual(t, b.Latency["register"].P50, b.Latency["register"].Max)
	}
	f.stopDaemon()
	out, _, err := f.run("bench", "--store", f.storeURL(), "--duration", "200ms", "--concurrency", "4")
	require.NoError(t, err)
	require.Contains(t, out, "lifecycles:")
	require.Contains(t, out, "errors: 0")
	_, _, err = f.run("bench", "--store", f.storeURL(), "--pattern", "fanout")
	require.EqualError(t, err, `bench: --pattern: must be single, gather or stream, got "fanout"`)
}
