package store_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/corrstore/corrstore/store"
)

func TestStateTerminal(t *testing.T) {
	require.False(t, store.StatePending.Terminal())
	for _, s := range []store.State{store.StateCompleted, store.StateTimedOut, store.StateCancelled} {
		require.True(t, s.Terminal(), s)
	}
	require.False(t, store.State("bogus").Terminal())
	require.Equal(t, []store.State{store.StatePending, store.StateCompleted, store.StateTimedOut, store.StateCancelled}, store.States)
	require.Len(t, store.DispatchStates, 4)
}

func TestClone(t *testing.T) {
	require.Nil(t, (*store.Correlation)(nil).Clone())
	c := fullRecord(t)
	c.Late = []store.Reply{{ID: "l", Body: []byte("late")}}
	n := c.Clone()
	require.Equal(t, c, n)

	n.Callback.Data[0] = 99
	n.Labels["a"] = "changed"
	n.Outcome.Reason = "changed"
	n.Replies[0].Body[0] = 'z'
	n.Replies[1].From = "changed"
	n.Late[0].Body[0] = 'z'
	n.Events[0].Detail = "changed"
	n.Dispatch.Attempts = 99
	require.Equal(t, byte(0), c.Callback.Data[0])
	require.Equal(t, "b", c.Labels["a"])
	require.Empty(t, c.Outcome.Reason)
	require.Equal(t, []byte("x"), c.Replies[0].Body)
	require.Equal(t, "b", c.Replies[1].From)
	require.Equal(t, []byte("late"), c.Late[0].Body)
	require.NotEqual(t, "changed", c.Events[0].Detail)
	require.Equal(t, 1, c.Dispatch.Attempts)

	empty := (&store.Correlation{ID: "e", Deadline: t0.Add(time.Minute)}).Clone()
	require.Nil(t, empty.Labels)
	require.Nil(t, empty.Replies)
	require.Nil(t, empty.Callback.Data)
}

func TestDispatchClaim(t *testing.T) {
	d := store.Dispatch{LeaseOwner: "i", Attempts: 3}
	require.Equal(t, store.Claim{Instance: "i", Attempt: 3}, d.Claim())
}
