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
		{name: "EventKinds", limits: store.Limits{DispatchMaxAttempts: 2}, run: testSubscribeKinds},
	}
}

// Every change that raises a record's version is published once, with its
// kind, namespace, id and version; repeats that change nothing are not.
func testSubscribeKinds(t *testing.T, e *env) {
	// Limits: DispatchMaxAttempts 2.
	ev := e.subscribeTest()
	r := nsRef("events", "sb-kinds")
	e.register(&store.Correlation{ID: r.ID, Namespace: r.Namespace, Pattern: store.PatternGather, Expect: 2,
		Callback: store.Callback{Handler: "h"}, Timeout: time.Minute})
	var versions []int64
	step := func(what string, kind store.EventKind, do func()) store.Event {
		t.Helper()
		do()
		c := e.get(r)
		var x *store.Event
		for _, got := range ev.waitVersion(r, c.Version) {
			if got.Version == c.Version {
				x = &got
			}
		}
		require.NotNil(t, x, "%s: no event with version %d", what, c.Version)
		require.Equal(t, kind, x.Kind, what)
		require.Equal(t, "events", x.Namespace, what)
		require.Equal(t, "sb-kinds", x.ID, what)
		requireEvent(t, c, *x)
		versions = append(versions, c.Version)
		return *x
	}

	deadline := e.now().Add(10 * time.Minute)
	x := step("extend", store.ChangeExtended, func() {
		_, err := e.s.Extend(e.ctx, r, deadline)
		require.NoError(t, err)
	})
	requireTime(t, deadline, x.Deadline, "the event carries the new deadline")
	e.clock.Add(time.Second)
	step("reply", store.ChangeReply, func() { e.deliver(r, store.Reply{From: "a"}, store.DeliverAccepted) })

	// Repeats change nothing and publish nothing.
	e.deliver(r, store.Reply{From: "a"}, store.DeliverDuplicate)
	res, err := e.s.Extend(e.ctx, r, deadline)
	require.NoError(t, err)
	require.True(t, res.Duplicate)

	x = step("outcome", store.ChangeOutcome, func() { e.deliver(r, store.Reply{From: "b"}, store.DeliverCompleted) })
	require.Equal(t, store.StateCompleted, x.Outcome.State)
	require.Equal(t, store.DispatchPending, x.Dispatch)
	var cl store.Claim
	step("claim", store.ChangeDispatch, func() { cl = e.claimOne("inst-a", r, 10*time.Second) })
	step("nack", store.ChangeDispatch, func() {
		_, err := e.s.NackDispatch(e.ctx, r, cl, "retry", e.now())
		require.NoError(t, err)
	})
	step("claim again", store.ChangeDispatch, func() { cl = e.claimOne("inst-b", r, 10*time.Second) })
	x = step("dead after the last lease", store.ChangeDispatch, func() {
		e.clock.Add(10 * time.Second)
		require.Empty(t, e.claim("inst-c", 10*time.Second, 10))
	})
	require.Equal(t, store.DispatchDead, x.Dispatch)
	x = step("redispatch", store.ChangeDispatch, func() {
		_, err := e.s.Redispatch(e.ctx, r)
		require.NoError(t, err)
	})
	require.Equal(t, store.DispatchPending, x.Dispatch)
	step("claim after redispatch", store.ChangeDispatch, func() { cl = e.claimOne("inst-c", r, 10*time.Second) })
	x = step("ack", store.ChangeDispatch, func() {
		_, err := e.s.AckDispatch(e.ctx, r, cl)
		require.NoError(t, err)
	})
	require.Equal(t, store.DispatchDone, x.Dispatch)
	_, err = e.s.AckDispatch(e.ctx, r, cl)
	require.NoError(t, err, "a repeated ack")
	x = step("late reply", store.ChangeLate, func() { e.deliver(r, store.Reply{From: "c"}, store.DeliverLate) })
	require.Equal(t, store.StateCompleted, x.State)

	var got []int64
	for _, x := range ev.waitVersion(r, versions[len(versions)-1]) {
		got = append(got, x.Version)
	}
	require.Equal(t, versions, got, "one event per change, in order, none for a repeat")
}

// requireEvent checks an event against the record it announces.
func requireEvent(t *testing.T, c *store.Correlation, x store.Event) {
	t.Helper()
	require.Equal(t, c.ID, x.ID)
	require.Equal(t, c.Namespace, x.Namespace)
	require.Equal(t, c.State, x.State)
	require.Equal(t, c.Version, x.Version)
	require.Equal(t, len(c.Replies), x.Replies)
	require.Equal(t, store.EventOf(c).Kind, x.Kind, "the kind of the last change")
	require.Equal(t, c.Dispatch.State, x.Dispatch)
	requireTime(t, c.Deadline, x.Deadline, "event deadline")
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
	shop := nsRef("shop", "sb-single")
	e.register(&store.Correlation{ID: "sb-single", Namespace: "shop", Timeout: time.Minute})
	e.register(&store.Correlation{ID: "sb-gather", Pattern: store.PatternGather, Expect: 2, Timeout: time.Minute})
	e.register(&store.Correlation{ID: "sb-stream", Pattern: store.PatternStream, Timeout: time.Minute})
	e.register(single("sb-cancel"))
	e.register(single("sb-expire"))
	e.register(&store.Correlation{ID: "sb-deadline", Optional: true, Timeout: 30 * time.Second})

	check := func(r store.Ref, state store.State) {
		t.Helper()
		c := e.get(r)
		requireEvent(t, c, ev.waitEvent(r, state, c.Version))
	}

	e.deliver(shop, reply("r"), store.DeliverCompleted)
	check(shop, store.StateCompleted)

	e.deliver(ref("sb-gather"), store.Reply{From: "a"}, store.DeliverAccepted)
	check(ref("sb-gather"), store.StatePending)
	e.deliver(ref("sb-gather"), store.Reply{From: "b"}, store.DeliverCompleted)
	check(ref("sb-gather"), store.StateCompleted)

	e.deliver(ref("sb-stream"), store.Reply{Seq: 1, Final: true}, store.DeliverAccepted)
	check(ref("sb-stream"), store.StatePending)
	e.deliver(ref("sb-stream"), store.Reply{Seq: 0}, store.DeliverCompleted)
	check(ref("sb-stream"), store.StateCompleted)

	_, err := e.s.Cancel(e.ctx, ref("sb-cancel"), "user aborted")
	require.NoError(t, err)
	check(ref("sb-cancel"), store.StateCancelled)

	_, err = e.s.Expire(e.ctx, ref("sb-expire"), "")
	require.NoError(t, err)
	check(ref("sb-expire"), store.StateTimedOut)

	e.clock.Add(30 * time.Second)
	require.Len(t, e.expireDue(10), 1)
	check(ref("sb-deadline"), store.StateCompleted)

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
	e.deliver(ref("sb-early"), reply("r"), store.DeliverBuffered)
	res, err := e.s.Register(e.ctx, single("sb-early"))
	require.NoError(t, err)
	require.Equal(t, 1, res.EarlyApplied)
	c := e.get(ref("sb-early"))
	require.Equal(t, store.StateCompleted, c.State)
	requireEvent(t, c, ev.waitEvent(ref("sb-early"), store.StateCompleted, c.Version))
}

func testSubscribeMany(t *testing.T, e *env) {
	first, second := e.subscribeTest(), e.subscribeTest()
	ctx, cancel := context.WithCancel(e.ctx)
	third := e.subscribe(ctx)
	cancel()
	third.waitClosed("after cancel")

	e.register(single("sb-many"))
	e.deliver(ref("sb-many"), reply("r"), store.DeliverCompleted)
	c := e.get(ref("sb-many"))
	requireEvent(t, c, first.waitEvent(ref("sb-many"), store.StateCompleted, c.Version))
	requireEvent(t, c, second.waitEvent(ref("sb-many"), store.StateCompleted, c.Version))
	require.Empty(t, third.snapshot(), "a cancelled subscription gets nothing")
}

func testSubscribeCancel(t *testing.T, e *env) {
	ctx, cancel := context.WithCancel(e.ctx)
	ev := e.subscribe(ctx)
	e.register(single("sb-cancel-ctx"))
	e.deliver(ref("sb-cancel-ctx"), reply("r"), store.DeliverCompleted)
	ev.waitEvent(ref("sb-cancel-ctx"), store.StateCompleted, 1)
	cancel()
	ev.waitClosed("after its context was cancelled")

	// The store goes on working, and a new subscription gets new events.
	ev = e.subscribeTest()
	e.register(single("sb-cancel-ctx-2"))
	e.deliver(ref("sb-cancel-ctx-2"), reply("r"), store.DeliverCompleted)
	ev.waitEvent(ref("sb-cancel-ctx-2"), store.StateCompleted, 1)
}
