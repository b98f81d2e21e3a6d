package main

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/corrstore/corrstore/store"
)

func TestShow(t *testing.T) {
	t.Parallel()
	f := newFixture(t, false)
	f.seed()
	outs := f.both("show", "done-1")
	for _, out := range outs {
		require.Regexp(t, `state: +completed`, out)
		require.Contains(t, out, "Replies (1):")
		require.Contains(t, out, `{"paid":true}`)
		require.Contains(t, out, "Late replies (1):")
		require.Contains(t, out, `"too late"`)
		require.Contains(t, out, "reply_late")
	}
	out := f.both("show", "dead-1")[0]
	require.Regexp(t, `dispatch: +dead, 1 attempts`, out)
	require.Contains(t, out, "ship-order: warehouse API 503")

	for _, out := range f.both("show", "dead-1", "-o", "json") {
		var c store.Correlation
		require.NoError(t, json.Unmarshal([]byte(out), &c))
		require.Equal(t, store.DispatchDead, c.Dispatch.State)
		require.Equal(t, "ship-order: warehouse API 503", c.Dispatch.LastError)
	}
}
