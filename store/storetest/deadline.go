package storetest

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/corrstore/corrstore/store"
)

// The deadline is exact: whatever touches a pending correlation at or after
// its deadline (by the store's clock) finds it decided, with the outcome
// ExpireDue would have given it, whether or not a reaper ran. The reaper
// remains the guarantee for correlations nobody touches.

func deadlineTests() []testCase {
	return []testCase{
		{name: "ReplyJustBefore", run: testDeadlineReplyBefore},
		{name: "ReplyAtDeadline", run: func(t *testing.T, e *env) { testDeadlineReplyLate(t, e, 0) }},
		{name: "ReplyJustAfter", run: func(t *testing.T, e *env) { testDeadlineReplyLate(t, e, time.Microsecond) }},
		{name: "ReplyLongAfter", run: func(t *testing.T, e *env) { testDeadlineReplyLate(t, e, time.Hour) }},
		{name: "ExtendCancelJustBefore", run: testDeadlineExtendCancelBefore},
		{name: "ExtendAtDeadline", run: func(t *testing.T, e *env) { testDeadlineRefused(t, e, "extend", 0) }},
		{name: "ExtendJustAfter", run: func(t *testing.T, e *env) { testDeadlineRefused(t, e, "extend", time.Microsecond) }},
		{name: "CancelAtDeadline", run: func(t *testing.T, e *env) { testDeadlineRefused(t, e, "cancel", 0) }},
		{name: "CancelJustAfter", run: func(t *testing.T, e *env) { testDeadlineRefused(t, e, "cancel", time.Microsecond) }},
		{name: "DuplicateAfterDeadline", run: testDeadlineDuplicate},
	}
}

// deadlineShape is a kind of registration with the replies it has had
// before its deadline; each has its own deadline outcome.
type deadlineShape struct {
	name    string
	c       func() *store.Correlation
	replies []store.Reply
	want    store.Outcome // State, Partial, NoReply
}

var deadlineShapes = []deadlineShape{
	{name: "single", c: func() *store.Correlation { return &store.Correlation{Timeout: time.Minute} },
		want: store.Outcome{State: store.StateTimedOut}},
	{name: "optional", c: func() *store.Correlation { return &store.Correlation{Optional: true, Timeout: time.Minute} },
		want: store.Outcome{State: store.StateCompleted, NoReply: true}},
	{name: "gather-quorum", c: func() *store.Correlation {
		return &store.Correlation{Pattern: store.PatternGather, Expect: 3, Quorum: 1, Timeout: time.Minute}
	}, replies: []store.Reply{{From: "first"}}, want: store.Outcome{State: store.StateCompleted, Partial: true}},
	{name: "gather-below-quorum", c: func() *store.Correlation {
		return &store.Correlation{Pattern: store.PatternGather, Expect: 3, Quorum: 2, Timeout: time.Minute}
	}, replies: []store.Reply{{From: "first"}}, want: store.Outcome{State: store.StateTimedOut}},
	{name: "stream", c: func() *store.Correlation {
		return &store.Correlation{Pattern: store.PatternStream, Timeout: time.Minute, Callback: store.Callback{Handler: "h"}}
	}, replies: []store.Reply{{Seq: 0}}, want: store.Outcome{State: store.StateTimedOut}},
}

// deadlinePair registers a shape twice in namespace "dl": the target, that a
// step touches at its deadline, and a twin that only ExpireDue decides.
// Both get the shape's replies 1s after registration.
func (e *env) deadlinePair(sh deadlineShape, tag string) (target, twin store.Ref) {
	e.t.Helper()
	target, twin = nsRef("dl", sh.name+"-"+tag), nsRef("dl", sh.name+"-"+tag+"-twin")
	for _, r := range []store.Ref{target, twin} {
		c := sh.c()
		c.ID, c.Namespace = r.ID, r.Namespace
		e.register(c)
	}
	return target, twin
}

// deadlineOf requires all refs to share one deadline and returns it.
func (e *env) deadlineOf(rs ...store.Ref) time.Time {
	e.t.Helper()
	d := e.get(rs[0]).Deadline
	for _, r := range rs[1:] {
		requireTime(e.t, d, e.get(r).Deadline, "deadline of %s", r)
	}
	return d
}

// requireDeadlineOutcome requires target to hold the outcome its twin got
// from ExpireDue at the same instant, and that outcome to be want.
func requireDeadlineOutcome(t *testing.T, want store.Outcome, target, twin *store.Correlation) {
	t.Helper()
	require.Equal(t, want.State, target.State, "%s", target.Ref())
	require.NotNil(t, target.Outcome, "%s", target.Ref())
	require.Equal(t, want.State, target.Outcome.State)
	require.Equal(t, want.Partial, target.Outcome.Partial, "partial")
	require.Equal(t, want.NoReply, target.Outcome.NoReply, "no reply")
	require.Equal(t, store.ReasonDeadline, target.Outcome.Reason)
	require.Equal(t, *twin.Outcome, *target.Outcome, "the outcome ExpireDue gave the twin at the same instant")
	require.Equal(t, twin.State, target.State)
	require.Equal(t, twin.Dispatch.State, target.Dispatch.State, "dispatch follows the outcome")
}

func testDeadlineReplyBefore(t *testing.T, e *env) {
	type in struct {
		r     store.Ref
		reply store.Reply
		want  store.DeliverStatus
	}
	var ins []in
	for _, sh := range deadlineShapes {
		target, _ := e.deadlinePair(sh, "before")
		for _, r := range sh.replies {
			e.deliver(target, r, store.DeliverAccepted)
		}
		last := store.Reply{ID: "in-time", From: "in-time", Seq: len(sh.replies), Final: true}
		want := store.DeliverCompleted
		if sh.name == "gather-quorum" || sh.name == "gather-below-quorum" {
			want = store.DeliverAccepted // 2 of 3
		}
		ins = append(ins, in{target, last, want})
	}
	e.clock.Set(e.deadlineOf(ins[0].r).Add(-time.Microsecond))
	for _, x := range ins {
		res := e.deliver(x.r, x.reply, x.want)
		require.Zero(t, res.Correlation.LateCount, "%s: 1µs before the deadline is in time", x.r)
		if x.want == store.DeliverAccepted {
			require.Equal(t, store.StatePending, e.get(x.r).State)
		} else {
			c := e.get(x.r)
			require.Equal(t, store.StateCompleted, c.State, "%s", x.r)
			require.Empty(t, c.Outcome.Reason)
		}
	}
	require.Empty(t, e.expireDue(100), "nothing is due 1µs before the deadline")
}

func testDeadlineReplyLate(t *testing.T, e *env, after time.Duration) {
	ev := e.subscribeTest()
	type pair struct {
		sh            deadlineShape
		target, twin  store.Ref
		before        *store.Correlation
		targetVersion int64
	}
	var pairs []*pair
	for _, sh := range deadlineShapes {
		p := &pair{sh: sh}
		p.target, p.twin = e.deadlinePair(sh, "late")
		pairs = append(pairs, p)
	}
	e.clock.Add(time.Second)
	for _, p := range pairs {
		for _, r := range p.sh.replies {
			e.deliver(p.target, r, store.DeliverAccepted)
			e.deliver(p.twin, r, store.DeliverAccepted)
		}
		p.before = e.get(p.target)
	}
	var all []store.Ref
	for _, p := range pairs {
		all = append(all, p.target, p.twin)
	}
	at := e.deadlineOf(all...).Add(after)
	e.clock.Set(at)

	for _, p := range pairs {
		late := store.Reply{ID: "too-late", From: "too-late", Seq: 7, Body: []byte("late")}
		res := e.deliver(p.target, late, store.DeliverLate)
		require.True(t, res.Correlation.State.Terminal(), "%s: the answer carries the decided record", p.target)
		c := e.get(p.target)
		require.Equal(t, p.before.Replies, c.Replies, "%s: the late reply is not among the replies", p.target)
		require.Equal(t, 1, c.LateCount)
		require.Len(t, c.Late, 1)
		require.Equal(t, "too-late", c.Late[0].ID)
		require.Greater(t, c.Version, p.before.Version)
		require.Equal(t, 1, countEvents(c, store.EventOutcome))
		requireTime(t, at, c.Outcome.At, "decided by the store's clock, at the reply")
		require.Equal(t, res.Correlation.Version, c.Version)
		p.targetVersion = c.Version
	}

	// The reaper now finds only the twins: the targets are decided.
	var twins []string
	for _, p := range pairs {
		twins = append(twins, p.twin.String())
	}
	require.Equal(t, sorted(twins...), refs(e.expireDue(100)))
	require.Empty(t, e.expireDue(100))

	for _, p := range pairs {
		t.Run(p.sh.name, func(t *testing.T) {
			target, twin := e.in(t).get(p.target), e.in(t).get(p.twin)
			requireDeadlineOutcome(t, p.sh.want, target, twin)
			require.Equal(t, p.targetVersion, target.Version, "ExpireDue left the decided target alone")
			x := ev.waitEvent(p.target, p.sh.want.State, target.Version)
			requireEvent(t, target, x)
			require.Equal(t, store.ChangeOutcome, x.Kind, "the late reply decided the outcome: waiters must see it as one")
			require.Equal(t, store.ReasonDeadline, x.Outcome.Reason, "the event carries the deadline outcome")
		})
	}
	// The outcome is due for dispatch like any other (the stream has a handler).
	require.Equal(t, []string{"dl/stream-late", "dl/stream-late-twin"}, refs(e.claim("inst", time.Minute, 10)))
	require.Zero(t, e.stats("dl").Namespaces["dl"].States[store.StatePending])
}

func testDeadlineExtendCancelBefore(t *testing.T, e *env) {
	e.register(&store.Correlation{ID: "dl-extend-before", Timeout: time.Minute})
	e.register(&store.Correlation{ID: "dl-cancel-before", Timeout: time.Minute})
	e.clock.Set(e.deadlineOf(ref("dl-extend-before"), ref("dl-cancel-before")).Add(-time.Microsecond))
	res, err := e.s.Extend(e.ctx, ref("dl-extend-before"), e.now().Add(time.Minute))
	require.NoError(t, err, "1µs before the deadline")
	require.False(t, res.Duplicate)
	require.Equal(t, store.StatePending, e.get(ref("dl-extend-before")).State)
	requireTime(t, e.now().Add(time.Minute), e.get(ref("dl-extend-before")).Deadline)

	res, err = e.s.Cancel(e.ctx, ref("dl-cancel-before"), "in time")
	require.NoError(t, err, "1µs before the deadline")
	require.Equal(t, store.StateCancelled, e.get(ref("dl-cancel-before")).State)

	e.clock.Add(time.Microsecond)
	require.Empty(t, e.expireDue(10), "neither is due at the old deadline")
}

func testDeadlineRefused(t *testing.T, e *env, op string, after time.Duration) {
	ev := e.subscribeTest()
	type pair struct {
		sh           deadlineShape
		target, twin store.Ref
		before       *store.Correlation
	}
	var pairs []*pair
	var all []store.Ref
	for _, sh := range deadlineShapes {
		p := &pair{sh: sh}
		p.target, p.twin = e.deadlinePair(sh, op)
		for _, r := range sh.replies {
			e.deliver(p.target, r, store.DeliverAccepted)
			e.deliver(p.twin, r, store.DeliverAccepted)
		}
		p.before = e.get(p.target)
		pairs = append(pairs, p)
		all = append(all, p.target, p.twin)
	}
	at := e.deadlineOf(all...).Add(after)
	e.clock.Set(at)
	// refuse is the step op on r, past its deadline.
	refuse := func(r store.Ref) error {
		var err error
		switch op {
		case "extend":
			_, err = e.s.Extend(e.ctx, r, at.Add(time.Hour))
		case "cancel":
			_, err = e.s.Cancel(e.ctx, r, "too late")
		}
		return err
	}

	for _, p := range pairs {
		err := refuse(p.target)
		require.ErrorIs(t, err, store.ErrNotPending, "%s %s at deadline+%s", op, p.target, after)
		c := e.get(p.target)
		require.True(t, c.State.Terminal(), "%s: the refused %s stored the deadline outcome", p.target, op)
		require.Greater(t, c.Version, p.before.Version, "%s", p.target)
		requireTime(t, at, c.Outcome.At)
		requireTime(t, p.before.Deadline, c.Deadline, "%s: the deadline did not move", p.target)
	}
	var twins []string
	for _, p := range pairs {
		twins = append(twins, p.twin.String())
	}
	require.Equal(t, sorted(twins...), refs(e.expireDue(100)), "the targets are decided already")

	for _, p := range pairs {
		t.Run(p.sh.name, func(t *testing.T) {
			target, twin := e.in(t).get(p.target), e.in(t).get(p.twin)
			requireDeadlineOutcome(t, p.sh.want, target, twin)
			x := ev.waitEvent(p.target, p.sh.want.State, target.Version)
			require.Equal(t, store.ChangeOutcome, x.Kind, "the settled record was published")
			requireEvent(t, target, x)
		})
	}

	// The refused step is refused again, and changes nothing more.
	for _, p := range pairs {
		before := e.get(p.target)
		require.ErrorIs(t, refuse(p.target), store.ErrNotPending)
		require.Equal(t, snap(before), snap(e.get(p.target)))
	}
	require.Equal(t, []string{fmt.Sprintf("dl/stream-%s", op), fmt.Sprintf("dl/stream-%s-twin", op)},
		refs(e.claim("inst", time.Minute, 10)), "the settled outcome is due for dispatch")
}

func testDeadlineDuplicate(t *testing.T, e *env) {
	// A resend of an accepted reply stays a duplicate after the deadline; it
	// does not decide the outcome (nothing new arrived), the reaper does.
	e.register(&store.Correlation{ID: "dl-dup", Pattern: store.PatternGather, Expect: 2, Timeout: time.Minute})
	e.deliver(ref("dl-dup"), store.Reply{From: "a"}, store.DeliverAccepted)
	e.clock.Add(time.Minute)
	e.deliver(ref("dl-dup"), store.Reply{From: "a"}, store.DeliverDuplicate)
	c := e.get(ref("dl-dup"))
	require.Equal(t, 1, c.DuplicateCount)
	require.Zero(t, c.LateCount)
	if c.State == store.StatePending {
		require.Equal(t, []string{"default/dl-dup"}, refs(e.expireDue(10)))
	}
	require.Equal(t, store.StateTimedOut, e.get(ref("dl-dup")).State)
}
