package storekit_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/corrstore/corrstore/internal/storekit"
	"github.com/corrstore/corrstore/store"
)

func drain(ch <-chan store.Event) []store.Event {
	var out []store.Event
	for e := range ch {
		out = append(out, e)
	}
	return out
}

func TestHubPublishAndCancel(t *testing.T) {
	var h storekit.Hub
	ctx, cancel := context.WithCancel(t.Context())
	a, err := h.Subscribe(ctx)
	require.NoError(t, err)
	b, err := h.Subscribe(t.Context())
	require.NoError(t, err)

	h.Publish() // nothing
	h.Publish(store.Event{ID: "1"}, store.Event{ID: "2"})
	require.Equal(t, store.Event{ID: "1"}, <-a)
	require.Equal(t, store.Event{ID: "2"}, <-a)
	cancel()
	require.Empty(t, drain(a), "cancelling closes the channel")
	h.Publish(store.Event{ID: "3"})
	h.Close()
	require.Equal(t, []store.Event{{ID: "1"}, {ID: "2"}, {ID: "3"}}, drain(b), "Close closes the channel")

	_, err = h.Subscribe(t.Context())
	require.ErrorIs(t, err, store.ErrClosed)
	h.Publish(store.Event{ID: "4"}) // no subscribers, no panic
	h.Close()                       // twice is fine
}

func TestHubSubscribeEndedContext(t *testing.T) {
	var h storekit.Hub
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err := h.Subscribe(ctx)
	require.ErrorIs(t, err, context.Canceled)
}

func TestHubSlowSubscriberIsDropped(t *testing.T) {
	var h storekit.Hub
	slow, err := h.Subscribe(t.Context())
	require.NoError(t, err)
	fast, err := h.Subscribe(t.Context())
	require.NoError(t, err)

	const n = storekit.SubscriberBuffer + 10
	for i := range n {
		h.Publish(store.Event{Version: int64(i)})
		got, ok := <-fast
		require.True(t, ok, "a subscriber that keeps up stays subscribed")
		require.Equal(t, int64(i), got.Version)
	}
	got := drain(slow)
	require.Equal(t, storekit.SubscriberBuffer, len(got), "the slow subscriber got what fitted, then its channel closed")
	require.Equal(t, int64(storekit.SubscriberBuffer-1), got[len(got)-1].Version)
	h.Close()
	require.Empty(t, drain(fast))
}
