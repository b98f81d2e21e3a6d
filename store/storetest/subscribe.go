package storetest

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/corrstore/corrstore/store"
)

func subscribeTests() []testCase {
	return []testCase{
		{name: "EveryOutcomeAndAcceptedReply", run: testSubscribeEvents},
		{name: "EarlyReplyOutcome", run: testSubscribeEarly},
		{name: "ManySubscribers", run: testSubscribeMany},
		{name: "ClosesWhenContextEnds", run: testSubscribeCancel},
	}
}

// requireEvent checks an event against the record it announces.
func requireEvent(t *testing.T, c *store.Correlation, x store.Event) {
	t.Helper()
	require.Equal(t, c.ID, x.ID)
	require.Equal(t, c.Namespace, x.Namespace)
	require.Equal(t, c.State, x.State)
	require.Equal(t, c.Version, x.Version)
	require.Equal(t, len(c.Replies), x.Replies)
	if c.State.Terminal() {
		require.NotNil(t, x.Outcome)
		require.Equal(t, c.Outcome.State, x.Outcome.State)
		require.Equal(t, c.Outcome.Partial, x.Outcome.Partial)
		require.Equal(t, c.Outcome.NoReply, x.Outcome.NoReply)
		require.Equal(t, c.Outcome.Reason, x.Outcome.Reason)
		requireTime(t, c.Outcome.At, x.Outcome.At)
	} else {
		require.Nil(t, x.Outcome)
	}
}

func testSubscribeEvents(t *testing.T, e *env) {
	ev := e.subscribeTest()
	e.register(&store.Correlation{ID: "sb-single", Namespace: "shop", Timeout: time.Minute})
	e.register(&store.Correlation{ID: "sb-gather", Pattern: store.PatternGather, Expect: 2, Timeout: time.Minute})
	e.register(&store.Correlation{ID: "sb-stream", Pattern: store.PatternStream, Timeout: time.Minute})
	e.register(single("sb-cancel"))
	e.register(single("sb-expire"))
	e.register(&store.Correlation{ID: "sb-deadline", Optional: true, Timeout: 30 * time.Second})

	check := func(id string, state store.State) {
		t.Helper()
		c := e.get(id)
		requireEvent(t, c, ev.waitEvent(id, state, c.Version))
	}

	e.deliver("sb-single", reply("r"), store.DeliverCompleted)
	check("sb-single", store.StateCompleted)

	e.deliver("sb-gather", store.Reply{From: "a"}, store.DeliverAccepted)
	check("sb-gather", store.StatePending)
	e.deliver("sb-gather", store.Reply{From: "b"}, store.DeliverCompleted)
	check("sb-gather", store.StateCompleted)

	e.deliver("sb-stream", store.Reply{Seq: 1, Final: true}, store.DeliverAccepted)
	check("sb-stream", store.StatePending)
	e.deliver("sb-stream", store.Reply{Seq: 0}, store.DeliverCompleted)
	check("sb-stream", store.StateCompleted)

	_, err := e.s.Cancel(e.ctx, "sb-cancel", "user aborted")
	require.NoError(t, err)
	check("sb-cancel", store.StateCancelled)

	_, err = e.s.Expire(e.ctx, "sb-expire", "")
	require.NoError(t, err)
	check("sb-expire", store.StateTimedOut)

	e.clock.Add(30 * time.Second)
	require.Len(t, e.expireDue(10), 1)
	check("sb-deadline", store.StateCompleted)

	// Every accepted reply: the gather's first reply and the stream's first
	// reply each had an event of their own, in order before the outcome.
	got := ev.snapshot()
	var gatherVersions []int64
	for _, x := range got {
		if x.ID == "sb-gather" {
			gatherVersions = append(gatherVersions, x.Version)
		}
	}
	require.GreaterOrEqual(t, len(gatherVersions), 2)
	require.IsNonDecreasing(t, gatherVersions, "events of one correlation arrive in order")
}

func testSubscribeEarly(t *testing.T, e *env) {
	ev := e.subscribeTest()
	e.deliver("sb-early", reply("r"), store.DeliverBuffered)
	res, err := e.s.Register(e.ctx, single("sb-early"))
	require.NoError(t, err)
	require.Equal(t, 1, res.EarlyApplied)
	c := e.get("sb-early")
	require.Equal(t, store.StateCompleted, c.State)
	requireEvent(t, c, ev.waitEvent("sb-early", store.StateCompleted, c.Version))
}

func testSubscribeMany(t *testing.T, e *env) {
	first, second := e.subscribeTest(), e.subscribeTest()
	ctx, cancel := context.WithCancel(e.ctx)
	third := e.subscribe(ctx)
	cancel()
	third.waitClosed("after cancel")

	e.register(single("sb-many"))
	e.deliver("sb-many", reply("r"), store.DeliverCompleted)
	c := e.get("sb-many")
	requireEvent(t, c, first.waitEvent("sb-many", store.StateCompleted, c.Version))
	requireEvent(t, c, second.waitEvent("sb-many", store.StateCompleted, c.Version))
	require.Empty(t, third.snapshot(), "a cancelled subscription gets nothing")
}

func testSubscribeCancel(t *testing.T, e *env) {
	ctx, cancel := context.WithCancel(e.ctx)
	ev := e.subscribe(ctx)
	e.register(single("sb-cancel-ctx"))
	e.deliver("sb-cancel-ctx", reply("r"), store.DeliverCompleted)
	ev.waitEvent("sb-cancel-ctx", store.StateCompleted, 1)
	cancel()
	ev.waitClosed("after its context was cancelled")

	// The store goes on working, and a new subscription gets new events.
	ev = e.subscribeTest()
	e.register(single("sb-cancel-ctx-2"))
	e.deliver("sb-cancel-ctx-2", reply("r"), store.DeliverCompleted)
	ev.waitEvent("sb-cancel-ctx-2", store.StateCompleted, 1)
}
