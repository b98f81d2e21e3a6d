package store_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/corrstore/corrstore/store"
)

var (
	t0  = time.Date(2030, time.June, 1, 12, 0, 0, 0, time.UTC)
	lim = store.Limits{}.WithDefaults()
)

// prepared returns c prepared at t0 under lim.
func prepared(t *testing.T, c *store.Correlation) *store.Correlation {
	t.Helper()
	p, err := store.Prepare(c, t0, lim)
	require.NoError(t, err)
	return p
}

func apply(t *testing.T, c *store.Correlation, r store.Reply, at time.Time, l store.Limits) store.DeliverStatus {
	t.Helper()
	st, err := c.ApplyReply(r, at, l)
	require.NoError(t, err)
	return st
}

func eventTypes(c *store.Correlation) []store.EventType {
	out := make([]store.EventType, len(c.Events))
	for i, e := range c.Events {
		out[i] = e.Type
	}
	return out
}

func TestDedupeKey(t *testing.T) {
	for _, tc := range []struct {
		p    store.Pattern
		r    store.Reply
		want string
	}{
		{store.PatternSingle, store.Reply{ID: "a", From: "f", Seq: 2}, "id:a"},
		{store.PatternSingle, store.Reply{From: "f"}, ""},
		{store.PatternSingle, store.Reply{Seq: 3}, ""},
		{store.PatternGather, store.Reply{ID: "a", From: "f"}, "id:a"},
		{store.PatternGather, store.Reply{From: "f"}, "from:f"},
		{store.PatternGather, store.Reply{Seq: 1}, ""},
		{store.PatternStream, store.Reply{ID: "a", Seq: 1}, "id:a"},
		{store.PatternStream, store.Reply{From: "f", Seq: 4}, "seq:4"},
		{store.PatternStream, store.Reply{}, "seq:0"},
	} {
		require.Equal(t, tc.want, store.DedupeKey(tc.p, tc.r), "%s %+v", tc.p, tc.r)
	}
}

func TestApplyReplySingle(t *testing.T) {
	c := prepared(t, &store.Correlation{ID: "s"})
	at := t0.Add(time.Second)
	require.Equal(t, store.DeliverCompleted, apply(t, c, store.Reply{ID: "r", Body: []byte("b")}, at, lim))
	require.Equal(t, store.StateCompleted, c.State)
	require.Equal(t, &store.Outcome{State: store.StateCompleted, At: at}, c.Outcome)
	require.Len(t, c.Replies, 1)
	require.Equal(t, at, c.Replies[0].ReceivedAt, "ReceivedAt is set when zero")
	require.Equal(t, at, c.UpdatedAt)
	require.Greater(t, c.Version, int64(1))
	require.Equal(t, []store.EventType{store.EventRegistered, store.EventReplyAccepted, store.EventOutcome}, eventTypes(c))
	require.Equal(t, store.Dispatch{State: store.DispatchNone}, c.Dispatch, "no handler, no dispatch")

	// Another reply after the outcome is late.
	version := c.Version
	require.Equal(t, store.DeliverLate, apply(t, c, store.Reply{ID: "r2"}, at.Add(time.Second), lim))
	require.Equal(t, version+1, c.Version)
	require.Equal(t, 1, c.LateCount)
	require.Equal(t, at, c.Outcome.At)
}

func TestApplyReplyKeepsReceivedAt(t *testing.T) {
	c := prepared(t, &store.Correlation{ID: "s"})
	received := t0.Add(-time.Minute)
	apply(t, c, store.Reply{ID: "r", ReceivedAt: received}, t0.Add(time.Second), lim)
	require.Equal(t, received, c.Replies[0].ReceivedAt)
	require.Equal(t, t0.Add(time.Second), c.Outcome.At)
}

func TestApplyReplyWithHandlerMakesDispatchDue(t *testing.T) {
	c := prepared(t, &store.Correlation{ID: "h", Callback: store.Callback{Handler: "resume"}})
	at := t0.Add(time.Second)
	apply(t, c, store.Reply{ID: "r"}, at, lim)
	require.Equal(t, store.Dispatch{State: store.DispatchPending, NextAt: at, AttemptLimit: lim.DispatchMaxAttempts}, c.Dispatch)
	require.True(t, c.DispatchDue(at))
	require.False(t, c.DispatchDue(at.Add(-time.Nanosecond)))
}

func TestApplyReplyGather(t *testing.T) {
	c := prepared(t, &store.Correlation{ID: "g", Pattern: store.PatternGather, Expect: 3})
	require.Equal(t, store.DeliverAccepted, apply(t, c, store.Reply{From: "a"}, t0, lim))
	require.Equal(t, store.DeliverAccepted, apply(t, c, store.Reply{ID: "x", From: "b"}, t0, lim))
	v := c.Version
	require.Equal(t, store.DeliverDuplicate, apply(t, c, store.Reply{From: "a", Body: []byte("other body")}, t0, lim))
	require.Equal(t, store.DeliverDuplicate, apply(t, c, store.Reply{ID: "x", From: "c"}, t0, lim))
	require.Equal(t, v, c.Version, "a duplicate changes no version")
	require.Equal(t, 2, c.DuplicateCount)
	require.Equal(t, store.StatePending, c.State)

	_, err := c.ApplyReply(store.Reply{Body: []byte("anonymous")}, t0, lim)
	var fe *store.FieldError
	require.ErrorAs(t, err, &fe)
	require.ErrorIs(t, err, store.ErrInvalid)
	require.Equal(t, "reply.from", fe.Field)
	require.Equal(t, v, c.Version)

	require.Equal(t, store.DeliverCompleted, apply(t, c, store.Reply{From: "c"}, t0, lim))
	require.False(t, c.Outcome.Partial)
	// An accepted key after the outcome is a duplicate, not late.
	require.Equal(t, store.DeliverDuplicate, apply(t, c, store.Reply{From: "a"}, t0, lim))
	require.Zero(t, c.LateCount)
	require.Equal(t, store.DeliverLate, apply(t, c, store.Reply{From: "d"}, t0, lim))
}

func TestApplyReplyStream(t *testing.T) {
	c := prepared(t, &store.Correlation{ID: "st", Pattern: store.PatternStream})
	for _, seq := range []int{2, 0, 4} {
		require.Equal(t, store.DeliverAccepted, apply(t, c, store.Reply{Seq: seq, Final: seq == 4}, t0, lim))
	}
	seq, ok := c.FinalSeq()
	require.True(t, ok)
	require.Equal(t, 4, seq)

	for _, tc := range []struct {
		r     store.Reply
		field string
	}{
		{store.Reply{Seq: 5}, "reply.seq"},
		{store.Reply{Seq: 3, Final: true}, "reply.final"},
	} {
		_, err := c.ApplyReply(tc.r, t0, lim)
		var fe *store.FieldError
		require.ErrorAs(t, err, &fe, "%+v", tc.r)
		require.Equal(t, tc.field, fe.Field, "%+v", tc.r)
	}
	require.Equal(t, store.DeliverDuplicate, apply(t, c, store.Reply{Seq: 2, Body: []byte("again")}, t0, lim))
	require.Equal(t, store.DeliverDuplicate, apply(t, c, store.Reply{Seq: 4, Final: true, ID: "new-key"}, t0, lim), "the same seq, whatever the ID")
	require.Equal(t, store.DeliverAccepted, apply(t, c, store.Reply{Seq: 3}, t0, lim))
	require.Equal(t, store.DeliverCompleted, apply(t, c, store.Reply{Seq: 1}, t0, lim))
	for i, r := range c.Replies {
		require.Equal(t, i, r.Seq, "replies are kept in Seq order")
	}
	// After the outcome a seq beyond the final is late, not invalid.
	require.Equal(t, store.DeliverLate, apply(t, c, store.Reply{Seq: 9}, t0, lim))

	low := prepared(t, &store.Correlation{ID: "low", Pattern: store.PatternStream})
	apply(t, low, store.Reply{Seq: 3}, t0, lim)
	_, err := low.ApplyReply(store.Reply{Seq: 1, Final: true}, t0, lim)
	require.ErrorIs(t, err, store.ErrInvalid, "a final below a received seq")
	_, ok = low.FinalSeq()
	require.False(t, ok)
}

func TestApplyReplyLate(t *testing.T) {
	l := lim
	l.MaxLate = 2
	c := prepared(t, &store.Correlation{ID: "late", Pattern: store.PatternGather, Expect: 1})
	apply(t, c, store.Reply{From: "a"}, t0, l)
	outcome := *c.Outcome
	for i := range 4 {
		require.Equal(t, store.DeliverLate, apply(t, c, store.Reply{From: fmt.Sprint("late-", i)}, t0.Add(time.Duration(i)*time.Second), l))
	}
	require.Equal(t, 4, c.LateCount)
	require.Len(t, c.Late, 2)
	require.Equal(t, "late-2", c.Late[0].From)
	require.Equal(t, "late-3", c.Late[1].From)
	require.Equal(t, outcome, *c.Outcome)

	v := c.Version
	require.Equal(t, store.DeliverDuplicate, apply(t, c, store.Reply{From: "late-3", Body: []byte("x")}, t0, l), "same key as a kept late reply")
	require.Equal(t, v, c.Version)
	require.Equal(t, 1, c.DuplicateCount)

	// Keyless replies to a single: a resend of the same content is a duplicate.
	s := prepared(t, &store.Correlation{ID: "keyless"})
	apply(t, s, store.Reply{Body: []byte("first")}, t0, l)
	require.Equal(t, store.DeliverLate, apply(t, s, store.Reply{Body: []byte("second")}, t0, l))
	require.Equal(t, store.DeliverDuplicate, apply(t, s, store.Reply{Body: []byte("second")}, t0, l))
	require.Equal(t, store.DeliverLate, apply(t, s, store.Reply{Body: []byte("third")}, t0, l))
	require.Equal(t, 2, s.LateCount)
}

func TestApplyReplyRepeatedKeylessSingle(t *testing.T) {
	// A retried Deliver of the reply that completed a single must not be
	// recorded a second time, as late.
	c := prepared(t, &store.Correlation{ID: "retry"})
	r := store.Reply{Body: []byte("answer"), From: "svc"}
	require.Equal(t, store.DeliverCompleted, apply(t, c, r, t0, lim))
	before := c.Clone()
	require.Equal(t, store.DeliverDuplicate, apply(t, c, r, t0.Add(time.Second), lim))
	require.Equal(t, before.Version, c.Version)
	require.Zero(t, c.LateCount)
	require.Empty(t, c.Late)
	require.Equal(t, 1, c.DuplicateCount)
}

func TestApplyReplyMaxReplies(t *testing.T) {
	c := prepared(t, &store.Correlation{ID: "many", Pattern: store.PatternGather, Expect: 5})
	small := lim
	small.MaxReplies = 2 // the limit was lowered after the registration
	apply(t, c, store.Reply{From: "a"}, t0, small)
	apply(t, c, store.Reply{From: "b"}, t0, small)
	_, err := c.ApplyReply(store.Reply{From: "c"}, t0, small)
	require.ErrorIs(t, err, store.ErrTooLarge)
	require.Len(t, c.Replies, 2)
}

func TestEventsTrimmed(t *testing.T) {
	l := lim
	l.MaxEvents = 3
	c, err := store.Prepare(&store.Correlation{ID: "ev", Pattern: store.PatternGather, Expect: 10}, t0, l)
	require.NoError(t, err)
	for i := range 5 {
		apply(t, c, store.Reply{From: fmt.Sprint(i)}, t0, l)
	}
	require.Len(t, c.Events, 3)
	require.Equal(t, 3, c.EventsDropped)
	require.Equal(t, "id=\"\" from=\"4\" seq=0", c.Events[2].Detail)
}

func TestDecideAtDeadline(t *testing.T) {
	at := t0.Add(time.Minute)
	for _, tc := range []struct {
		name    string
		c       store.Correlation
		replies []store.Reply
		want    store.Outcome
	}{
		{"single", store.Correlation{}, nil,
			store.Outcome{State: store.StateTimedOut, At: at, Reason: store.ReasonDeadline}},
		{"optional", store.Correlation{Optional: true}, nil,
			store.Outcome{State: store.StateCompleted, At: at, Reason: store.ReasonDeadline, NoReply: true}},
		{"optional stream with replies", store.Correlation{Pattern: store.PatternStream, Optional: true}, []store.Reply{{Seq: 0}},
			store.Outcome{State: store.StateTimedOut, At: at, Reason: store.ReasonDeadline}},
		{"gather quorum met", store.Correlation{Pattern: store.PatternGather, Expect: 3, Quorum: 2}, []store.Reply{{From: "a"}, {From: "b"}},
			store.Outcome{State: store.StateCompleted, At: at, Reason: store.ReasonDeadline, Partial: true}},
		{"gather below quorum", store.Correlation{Pattern: store.PatternGather, Expect: 3, Quorum: 2}, []store.Reply{{From: "a"}},
			store.Outcome{State: store.StateTimedOut, At: at, Reason: store.ReasonDeadline}},
		{"gather without quorum", store.Correlation{Pattern: store.PatternGather, Expect: 3}, []store.Reply{{From: "a"}, {From: "b"}},
			store.Outcome{State: store.StateTimedOut, At: at, Reason: store.ReasonDeadline}},
		{"optional gather with no reply", store.Correlation{Pattern: store.PatternGather, Expect: 3, Quorum: 1, Optional: true}, nil,
			store.Outcome{State: store.StateCompleted, At: at, Reason: store.ReasonDeadline, NoReply: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := tc.c
			in.ID = "d"
			c := prepared(t, &in)
			for _, r := range tc.replies {
				require.Equal(t, store.DeliverAccepted, apply(t, c, r, t0, lim))
			}
			c.DecideAtDeadline(at, store.ReasonDeadline, lim)
			require.Equal(t, tc.want, *c.Outcome)
			require.Equal(t, tc.want.State, c.State)
			require.Len(t, c.Replies, len(tc.replies), "replies are kept")
		})
	}
}

func TestExpire(t *testing.T) {
	c := prepared(t, &store.Correlation{ID: "e"})
	dup, err := c.ApplyExpire(t0, "", lim)
	require.NoError(t, err)
	require.False(t, dup)
	require.Equal(t, store.StateTimedOut, c.State)
	require.Equal(t, store.ReasonExpired, c.Outcome.Reason)
	v := c.Version

	for _, reason := range []string{"", store.ReasonExpired} {
		dup, err = c.ApplyExpire(t0.Add(time.Second), reason, lim)
		require.NoError(t, err)
		require.True(t, dup)
	}
	_, err = c.ApplyExpire(t0, "other", lim)
	require.ErrorIs(t, err, store.ErrNotPending)
	require.Equal(t, v, c.Version)

	cancelled := prepared(t, &store.Correlation{ID: "c"})
	_, err = cancelled.ApplyCancel(t0, store.ReasonExpired, lim)
	require.NoError(t, err)
	_, err = cancelled.ApplyExpire(t0, "", lim)
	require.ErrorIs(t, err, store.ErrNotPending, "a cancelled correlation was not expired, whatever its reason")
}

func TestCancel(t *testing.T) {
	c := prepared(t, &store.Correlation{ID: "c", Callback: store.Callback{Handler: "h"}})
	dup, err := c.ApplyCancel(t0, "why", lim)
	require.NoError(t, err)
	require.False(t, dup)
	require.Equal(t, store.Outcome{State: store.StateCancelled, At: t0, Reason: "why"}, *c.Outcome)
	require.Equal(t, store.DispatchPending, c.Dispatch.State)
	dup, err = c.ApplyCancel(t0.Add(time.Second), "why", lim)
	require.NoError(t, err)
	require.True(t, dup)
	_, err = c.ApplyCancel(t0, "another", lim)
	require.ErrorIs(t, err, store.ErrNotPending)

	done := prepared(t, &store.Correlation{ID: "done"})
	apply(t, done, store.Reply{ID: "r"}, t0, lim)
	_, err = done.ApplyCancel(t0, "", lim)
	require.ErrorIs(t, err, store.ErrNotPending, "completed with no reason is not cancelled with no reason")
}

func TestExtend(t *testing.T) {
	l := lim
	l.MaxTimeout = time.Hour
	c, err := store.Prepare(&store.Correlation{ID: "x"}, t0, l)
	require.NoError(t, err)
	now := t0.Add(10 * time.Second)

	dup, err := c.ApplyExtend(now, t0.Add(10*time.Minute), l)
	require.NoError(t, err)
	require.False(t, dup)
	require.Equal(t, t0.Add(10*time.Minute), c.Deadline)
	require.Equal(t, store.EventExtended, c.Events[len(c.Events)-1].Type)

	dup, err = c.ApplyExtend(now, t0.Add(10*time.Minute), l)
	require.NoError(t, err)
	require.True(t, dup)

	dup, err = c.ApplyExtend(now, t0.Add(5*time.Hour), l)
	require.NoError(t, err)
	require.False(t, dup)
	require.Equal(t, t0.Add(time.Hour), c.Deadline, "capped at created + MaxTimeout")
	require.Contains(t, c.Events[len(c.Events)-1].Detail, "capped")
	dup, err = c.ApplyExtend(now, t0.Add(6*time.Hour), l)
	require.NoError(t, err)
	require.True(t, dup, "capped to the same deadline")

	v := c.Version
	for _, d := range []time.Time{now, now.Add(-time.Second)} {
		_, err = c.ApplyExtend(now, d, l)
		var fe *store.FieldError
		require.ErrorAs(t, err, &fe)
		require.Equal(t, "deadline", fe.Field)
	}
	require.Equal(t, v, c.Version)

	_, err = c.ApplyCancel(now, "", l)
	require.NoError(t, err)
	_, err = c.ApplyExtend(now, t0.Add(time.Hour), l)
	require.ErrorIs(t, err, store.ErrNotPending)
}

func decidedWithHandler(t *testing.T, l store.Limits) *store.Correlation {
	t.Helper()
	c, err := store.Prepare(&store.Correlation{ID: "d", Callback: store.Callback{Handler: "h"}}, t0, l)
	require.NoError(t, err)
	apply(t, c, store.Reply{ID: "r"}, t0, l)
	return c
}

func TestClaimAckNack(t *testing.T) {
	c := decidedWithHandler(t, lim)
	require.False(t, c.ApplyClaim("a", t0.Add(-time.Second), time.Minute, lim), "not due before the outcome")
	require.True(t, c.ApplyClaim("a", t0, time.Minute, lim))
	d := c.Dispatch
	require.Equal(t, 1, d.Attempts)
	require.Equal(t, "a", d.LeaseOwner)
	require.Equal(t, t0, d.ClaimedAt)
	require.Equal(t, t0.Add(time.Minute), d.NextAt)
	require.Equal(t, store.Claim{Instance: "a", Attempt: 1}, d.Claim())
	require.False(t, c.ApplyClaim("b", t0.Add(59*time.Second), time.Minute, lim), "leased")

	// Nack with a retry time.
	dup, err := c.ApplyNack(d.Claim(), "boom", t0.Add(5*time.Minute), t0.Add(time.Second), lim)
	require.NoError(t, err)
	require.False(t, dup)
	require.Equal(t, store.DispatchPending, c.Dispatch.State)
	require.Equal(t, "boom", c.Dispatch.LastError)
	require.Equal(t, t0.Add(5*time.Minute), c.Dispatch.NextAt)
	dup, err = c.ApplyNack(d.Claim(), "boom", t0.Add(5*time.Minute), t0.Add(2*time.Second), lim)
	require.NoError(t, err)
	require.True(t, dup)
	_, err = c.ApplyAck(d.Claim(), t0, lim)
	require.ErrorIs(t, err, store.ErrConflict, "settled the other way")

	require.False(t, c.ApplyClaim("b", t0.Add(4*time.Minute), time.Minute, lim))
	require.True(t, c.ApplyClaim("b", t0.Add(5*time.Minute), time.Minute, lim))
	second := c.Dispatch.Claim()
	require.Equal(t, store.Claim{Instance: "b", Attempt: 2}, second)
	_, err = c.ApplyAck(d.Claim(), t0, lim)
	require.ErrorIs(t, err, store.ErrConflict, "stale claim")
	_, err = c.ApplyAck(store.Claim{Instance: "b", Attempt: 1}, t0, lim)
	require.ErrorIs(t, err, store.ErrConflict, "wrong attempt")
	_, err = c.ApplyAck(store.Claim{Instance: "a", Attempt: 2}, t0, lim)
	require.ErrorIs(t, err, store.ErrConflict, "wrong instance")

	dup, err = c.ApplyAck(second, t0.Add(6*time.Minute), lim)
	require.NoError(t, err)
	require.False(t, dup)
	require.Equal(t, store.DispatchDone, c.Dispatch.State)
	require.Equal(t, t0.Add(6*time.Minute), c.Dispatch.DoneAt)
	require.True(t, c.Dispatch.NextAt.IsZero())
	dup, err = c.ApplyAck(second, t0.Add(7*time.Minute), lim)
	require.NoError(t, err)
	require.True(t, dup)
	_, err = c.ApplyNack(second, "x", t0.Add(time.Hour), t0, lim)
	require.ErrorIs(t, err, store.ErrConflict)
	_, err = c.ApplyAck(store.Claim{Instance: "z", Attempt: 9}, t0, lim)
	require.ErrorIs(t, err, store.ErrNotPending)
	require.False(t, c.ApplyClaim("b", t0.Add(time.Hour), time.Minute, lim))
}

func TestNackRetryInThePast(t *testing.T) {
	c := decidedWithHandler(t, lim)
	require.True(t, c.ApplyClaim("a", t0, time.Minute, lim))
	now := t0.Add(time.Second)
	_, err := c.ApplyNack(c.Dispatch.Claim(), "x", t0.Add(-time.Hour), now, lim)
	require.NoError(t, err)
	require.Equal(t, now, c.Dispatch.NextAt)
	require.True(t, c.DispatchDue(now))
}

func TestNackTruncatesError(t *testing.T) {
	c := decidedWithHandler(t, lim)
	require.True(t, c.ApplyClaim("a", t0, time.Minute, lim))
	long := make([]byte, store.MaxReplyErrorLen+100)
	for i := range long {
		long[i] = 'e'
	}
	_, err := c.ApplyNack(c.Dispatch.Claim(), string(long), time.Time{}, t0, lim)
	require.NoError(t, err)
	require.LessOrEqual(t, len(c.Dispatch.LastError), store.MaxReplyErrorLen+len("…"))
}

func TestDispatchDead(t *testing.T) {
	l := lim
	l.DispatchMaxAttempts = 2

	t.Run("nack without retry", func(t *testing.T) {
		c := decidedWithHandler(t, l)
		require.True(t, c.ApplyClaim("a", t0, time.Minute, l))
		_, err := c.ApplyNack(c.Dispatch.Claim(), "fatal", time.Time{}, t0, l)
		require.NoError(t, err)
		require.Equal(t, store.DispatchDead, c.Dispatch.State)
		require.Equal(t, store.EventDispatchDead, c.Events[len(c.Events)-1].Type)
	})
	t.Run("attempts used up by nacks", func(t *testing.T) {
		c := decidedWithHandler(t, l)
		for i := range 2 {
			now := t0.Add(time.Duration(i) * time.Minute)
			require.True(t, c.ApplyClaim("a", now, time.Second, l))
			_, err := c.ApplyNack(c.Dispatch.Claim(), fmt.Sprint("fail ", i), now.Add(time.Second), now, l)
			require.NoError(t, err)
		}
		require.Equal(t, store.DispatchDead, c.Dispatch.State)
		require.Equal(t, "fail 1", c.Dispatch.LastError)
		require.False(t, c.ApplyClaim("a", t0.Add(time.Hour), time.Second, l))
	})
	t.Run("last lease expired", func(t *testing.T) {
		c := decidedWithHandler(t, l)
		require.True(t, c.ApplyClaim("a", t0, time.Second, l))
		require.True(t, c.ApplyClaim("b", t0.Add(time.Second), time.Second, l), "the first lease expired")
		v := c.Version
		require.False(t, c.ApplyClaim("c", t0.Add(2*time.Second), time.Second, l))
		require.Equal(t, store.DispatchDead, c.Dispatch.State)
		require.Contains(t, c.Dispatch.LastError, "lease of attempt 2 expired")
		require.Empty(t, c.Dispatch.LeaseOwner)
		require.Greater(t, c.Version, v, "turning dead is a change")
		_, err := c.ApplyAck(store.Claim{Instance: "b", Attempt: 2}, t0, l)
		require.ErrorIs(t, err, store.ErrNotPending)
	})
}

func TestRedispatch(t *testing.T) {
	l := lim
	l.DispatchMaxAttempts = 1
	c := decidedWithHandler(t, l)
	require.True(t, c.ApplyClaim("a", t0, time.Minute, l))
	_, err := c.ApplyNack(c.Dispatch.Claim(), "fatal", time.Time{}, t0, l)
	require.NoError(t, err)

	now := t0.Add(time.Hour)
	dup, err := c.ApplyRedispatch(now, l)
	require.NoError(t, err)
	require.False(t, dup)
	require.Equal(t, store.DispatchPending, c.Dispatch.State)
	require.Equal(t, now, c.Dispatch.NextAt)
	require.Equal(t, 2, c.Dispatch.AttemptLimit, "a fresh budget on top of the attempts made")
	require.Empty(t, c.Dispatch.LeaseOwner)
	dup, err = c.ApplyRedispatch(now, l)
	require.NoError(t, err)
	require.True(t, dup)

	require.True(t, c.ApplyClaim("b", now, time.Minute, l))
	_, err = c.ApplyAck(c.Dispatch.Claim(), now, l)
	require.NoError(t, err)
	dup, err = c.ApplyRedispatch(now, l)
	require.NoError(t, err, "a done dispatch can be redispatched")
	require.False(t, dup)
	require.True(t, c.Dispatch.DoneAt.IsZero())

	for _, in := range []*store.Correlation{
		{ID: "pending", Callback: store.Callback{Handler: "h"}},
		{ID: "nohandler"},
	} {
		n := prepared(t, in)
		if in.ID == "nohandler" {
			apply(t, n, store.Reply{ID: "r"}, t0, l)
		}
		_, err := n.ApplyRedispatch(now, l)
		require.ErrorIs(t, err, store.ErrNotPending, in.ID)
	}
}

func TestRegistration(t *testing.T) {
	a := prepared(t, &store.Correlation{ID: "a", Destination: "d", Timeout: time.Minute})
	same, err := store.Prepare(&store.Correlation{ID: "a", Destination: "d", Timeout: time.Hour}, t0.Add(time.Second), lim)
	require.NoError(t, err)
	require.NoError(t, a.Registration(same))
	other := prepared(t, &store.Correlation{ID: "a", Destination: "e"})
	require.ErrorIs(t, a.Registration(other), store.ErrConflict)
}

func TestApplyEarly(t *testing.T) {
	l := lim
	l.EarlyReplyWindow = time.Minute
	l.MaxBodyBytes = 4
	now := t0.Add(2 * time.Minute)
	c, err := store.Prepare(&store.Correlation{ID: "g", Pattern: store.PatternGather, Expect: 3}, now, l)
	require.NoError(t, err)
	early := []store.Reply{
		{From: "late-but-fresh", ReceivedAt: now.Add(-10 * time.Second)},
		{From: "stale", ReceivedAt: now.Add(-time.Minute - time.Nanosecond)},
		{From: "edge", ReceivedAt: now.Add(-time.Minute)},
		{From: "first", ReceivedAt: now.Add(-30 * time.Second)},
		{From: "first", ReceivedAt: now.Add(-20 * time.Second)},                         // a resend
		{From: "too-big", Body: []byte("12345"), ReceivedAt: now.Add(-5 * time.Second)}, // fails ValidateReply
		{ReceivedAt: now.Add(-time.Second)},                                             // no key: rejected by the gather
	}
	n := c.ApplyEarly(early, now, l)
	require.Equal(t, 3, n)
	var from []string
	for _, r := range c.Replies {
		from = append(from, r.From)
	}
	require.Equal(t, []string{"edge", "first", "late-but-fresh"}, from, "oldest first; stale, invalid and duplicate skipped")
	require.Equal(t, store.StateCompleted, c.State)
	require.Equal(t, now, c.Outcome.At)
	applied := 0
	for _, e := range c.Events {
		if e.Type == store.EventEarlyApplied {
			applied++
		}
	}
	require.Equal(t, 3, applied)
	require.Equal(t, now.Add(-time.Minute), c.Replies[0].ReceivedAt, "an early reply keeps its arrival time")
}
