package storetest

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/corrstore/corrstore/store"
)

func lifecycleTests() []testCase {
	return []testCase{
		{name: "ExtendMovesDeadline", run: testExtend},
		{name: "ExtendCapped", limits: store.Limits{MaxTimeout: time.Hour}, run: testExtendCapped},
		{name: "ExtendInvalid", run: testExtendInvalid},
		{name: "ExtendZeroSettlesOnly", run: testExtendZero},
		{name: "Cancel", run: testCancel},
		{name: "CancelDecided", run: testCancelDecided},
		{name: "Expire", run: testExpire},
		{name: "ExpireDeadlineOutcomes", run: testExpireDeadlineOutcomes},
		{name: "ExpireDecided", run: testExpireDecided},
		{name: "NotFound", run: testLifecycleNotFound},
	}
}

func testExtend(t *testing.T, e *env) {
	e.register(single("lc-extend"))
	before := e.get(ref("lc-extend"))
	e.clock.Add(30 * time.Second)
	deadline := e.now().Add(5 * time.Minute)
	res, err := e.s.Extend(e.ctx, ref("lc-extend"), deadline)
	require.NoError(t, err)
	require.False(t, res.Duplicate)
	require.NotNil(t, res.Correlation)
	requireTime(t, deadline, res.Correlation.Deadline)
	c := e.get(ref("lc-extend"))
	requireTime(t, deadline, c.Deadline)
	require.Greater(t, c.Version, before.Version)
	requireTime(t, e.now(), c.UpdatedAt)
	require.True(t, hasEvent(c, store.EventExtended))
	require.Equal(t, store.StatePending, c.State)

	// The same deadline again is a duplicate.
	res, err = e.s.Extend(e.ctx, ref("lc-extend"), deadline)
	require.NoError(t, err)
	require.True(t, res.Duplicate)
	require.Equal(t, snap(c), snap(e.get(ref("lc-extend"))))

	// The old deadline no longer fires; the new one does.
	e.clock.Set(before.Deadline.Add(time.Second))
	require.Empty(t, e.expireDue(10), "the extended correlation is not due at its old deadline")
	require.Equal(t, store.StatePending, e.get(ref("lc-extend")).State)
	e.clock.Set(deadline)
	require.Equal(t, []string{"lc-extend"}, ids(e.expireDue(10)))

	// A deadline may also be brought forward, as long as it is in the future.
	e.register(single("lc-shorten"))
	sooner := e.now().Add(10 * time.Second)
	res, err = e.s.Extend(e.ctx, ref("lc-shorten"), sooner)
	require.NoError(t, err)
	require.False(t, res.Duplicate)
	e.clock.Set(sooner)
	require.Equal(t, []string{"lc-shorten"}, ids(e.expireDue(10)))
}

func testExtendCapped(t *testing.T, e *env) {
	// Limits: MaxTimeout 1h.
	created := e.register(&store.Correlation{ID: "lc-capped", Timeout: 55 * time.Minute}).CreatedAt
	e.clock.Add(50 * time.Minute)
	res, err := e.s.Extend(e.ctx, ref("lc-capped"), e.now().Add(2*time.Hour))
	require.NoError(t, err)
	require.False(t, res.Duplicate)
	requireTime(t, created.Add(time.Hour), res.Correlation.Deadline, "capped at created + MaxTimeout")
	c := e.get(ref("lc-capped"))
	requireTime(t, created.Add(time.Hour), c.Deadline)

	// Asking again, or for another deadline past the cap, lands on the cap: a duplicate.
	for _, d := range []time.Time{e.now().Add(2 * time.Hour), e.now().Add(3 * time.Hour), created.Add(time.Hour)} {
		res, err = e.s.Extend(e.ctx, ref("lc-capped"), d)
		require.NoError(t, err)
		require.True(t, res.Duplicate, "extend to %s", d)
	}
	require.Equal(t, snap(c), snap(e.get(ref("lc-capped"))))
}

func testExtendInvalid(t *testing.T, e *env) {
	e.register(single("lc-extend-bad"))
	before := e.get(ref("lc-extend-bad"))
	for _, d := range []time.Time{e.now(), e.now().Add(-time.Second)} {
		_, err := e.s.Extend(e.ctx, ref("lc-extend-bad"), d)
		requireFieldError(t, err, store.ErrInvalid, "deadline")
	}
	require.Equal(t, snap(before), snap(e.get(ref("lc-extend-bad"))))

	e.deliver(ref("lc-extend-bad"), reply("r"), store.DeliverCompleted)
	decided := e.get(ref("lc-extend-bad"))
	_, err := e.s.Extend(e.ctx, ref("lc-extend-bad"), e.now().Add(time.Hour))
	require.ErrorIs(t, err, store.ErrNotPending)
	_, err = e.s.Extend(e.ctx, ref("lc-extend-bad"), before.Deadline)
	require.ErrorIs(t, err, store.ErrNotPending, "even to the current deadline")
	require.Equal(t, snap(decided), snap(e.get(ref("lc-extend-bad"))))
}

// An Extend with a zero deadline moves nothing: before the deadline it is a
// duplicate that leaves the record as it is; at the deadline it stores the
// deadline outcome and answers ErrNotPending (a waiter's way of letting the
// store decide with its own clock).
func testExtendZero(t *testing.T, e *env) {
	e.register(single("lc-zero"))
	before := e.get(ref("lc-zero"))
	e.clock.Set(before.Deadline.Add(-time.Microsecond))
	res, err := e.s.Extend(e.ctx, ref("lc-zero"), time.Time{})
	require.NoError(t, err)
	require.True(t, res.Duplicate)
	require.Equal(t, snap(before), snap(e.get(ref("lc-zero"))))

	e.clock.Set(before.Deadline)
	_, err = e.s.Extend(e.ctx, ref("lc-zero"), time.Time{})
	require.ErrorIs(t, err, store.ErrNotPending)
	c := e.get(ref("lc-zero"))
	require.Equal(t, store.StateTimedOut, c.State)
	require.Equal(t, store.ReasonDeadline, c.Outcome.Reason)
	requireTime(t, before.Deadline, c.Deadline, "the deadline did not move")
	require.Empty(t, e.expireDue(10), "already decided")
}

func testCancel(t *testing.T, e *env) {
	e.register(withHandler("lc-cancel"))
	e.clock.Add(7 * time.Second)
	res, err := e.s.Cancel(e.ctx, ref("lc-cancel"), "send failed: broker unreachable")
	require.NoError(t, err)
	require.False(t, res.Duplicate)
	require.Equal(t, store.StateCancelled, res.Correlation.State)
	c := e.get(ref("lc-cancel"))
	require.Equal(t, store.StateCancelled, c.State)
	require.Equal(t, store.StateCancelled, c.Outcome.State)
	require.Equal(t, "send failed: broker unreachable", c.Outcome.Reason)
	requireTime(t, e.now(), c.Outcome.At)
	require.Equal(t, store.DispatchPending, c.Dispatch.State, "a cancelled outcome is dispatched to its handler")

	res, err = e.s.Cancel(e.ctx, ref("lc-cancel"), "send failed: broker unreachable")
	require.NoError(t, err)
	require.True(t, res.Duplicate)
	require.Equal(t, snap(c), snap(e.get(ref("lc-cancel"))))

	_, err = e.s.Cancel(e.ctx, ref("lc-cancel"), "another reason")
	require.ErrorIs(t, err, store.ErrNotPending)

	// A cancelled correlation is out of the deadline index.
	e.clock.Add(time.Hour)
	require.Empty(t, e.expireDue(10))
	require.Equal(t, snap(c), snap(e.get(ref("lc-cancel"))))
}

func testCancelDecided(t *testing.T, e *env) {
	e.register(single("lc-cancel-done"))
	e.deliver(ref("lc-cancel-done"), reply("r"), store.DeliverCompleted)
	decided := e.get(ref("lc-cancel-done"))
	for _, reason := range []string{"", "too late"} {
		_, err := e.s.Cancel(e.ctx, ref("lc-cancel-done"), reason)
		require.ErrorIs(t, err, store.ErrNotPending, "reason %q", reason)
	}
	require.Equal(t, snap(decided), snap(e.get(ref("lc-cancel-done"))))

	e.register(single("lc-cancel-long"))
	_, err := e.s.Cancel(e.ctx, ref("lc-cancel-long"), strings.Repeat("r", store.MaxReasonLen+1))
	requireFieldError(t, err, store.ErrInvalid, "reason")
	require.Equal(t, store.StatePending, e.get(ref("lc-cancel-long")).State)
}

func testExpire(t *testing.T, e *env) {
	e.register(single("lc-expire"))
	e.clock.Add(time.Second)
	res, err := e.s.Expire(e.ctx, ref("lc-expire"), "")
	require.NoError(t, err)
	require.False(t, res.Duplicate)
	c := e.get(ref("lc-expire"))
	require.Equal(t, store.StateTimedOut, c.State)
	require.Equal(t, store.ReasonExpired, c.Outcome.Reason, "the default reason")
	requireTime(t, e.now(), c.Outcome.At, "forced now, not at the deadline")

	res, err = e.s.Expire(e.ctx, ref("lc-expire"), "")
	require.NoError(t, err)
	require.True(t, res.Duplicate)
	res, err = e.s.Expire(e.ctx, ref("lc-expire"), store.ReasonExpired)
	require.NoError(t, err)
	require.True(t, res.Duplicate, "the default reason, spelled out")
	require.Equal(t, snap(c), snap(e.get(ref("lc-expire"))))

	e.register(single("lc-expire-reason"))
	res, err = e.s.Expire(e.ctx, ref("lc-expire-reason"), "stuck: operator ticket 81")
	require.NoError(t, err)
	require.False(t, res.Duplicate)
	require.Equal(t, "stuck: operator ticket 81", e.get(ref("lc-expire-reason")).Outcome.Reason)

	// Out of the deadline index.
	e.clock.Add(time.Hour)
	require.Empty(t, e.expireDue(10))
}

func testExpireDeadlineOutcomes(t *testing.T, e *env) {
	// Expire gives the deadline outcome: partial, no-reply or timed out.
	e.register(&store.Correlation{ID: "lc-exp-quorum", Pattern: store.PatternGather, Expect: 3, Quorum: 1, Timeout: time.Minute})
	e.deliver(ref("lc-exp-quorum"), store.Reply{From: "a"}, store.DeliverAccepted)
	e.register(&store.Correlation{ID: "lc-exp-optional", Optional: true, Timeout: time.Minute})
	e.register(&store.Correlation{ID: "lc-exp-gather", Pattern: store.PatternGather, Expect: 3, Quorum: 2, Timeout: time.Minute})
	e.deliver(ref("lc-exp-gather"), store.Reply{From: "a"}, store.DeliverAccepted)
	for _, id := range []string{"lc-exp-quorum", "lc-exp-optional", "lc-exp-gather"} {
		_, err := e.s.Expire(e.ctx, ref(id), "")
		require.NoError(t, err, id)
	}
	c := e.get(ref("lc-exp-quorum"))
	require.Equal(t, store.StateCompleted, c.State)
	require.True(t, c.Outcome.Partial)
	c = e.get(ref("lc-exp-optional"))
	require.Equal(t, store.StateCompleted, c.State)
	require.True(t, c.Outcome.NoReply)
	c = e.get(ref("lc-exp-gather"))
	require.Equal(t, store.StateTimedOut, c.State)
	require.Len(t, c.Replies, 1)
}

func testExpireDecided(t *testing.T, e *env) {
	e.register(single("lc-expire-cancelled"))
	// Cancelled with the very reason Expire would give: still not an expiry.
	_, err := e.s.Cancel(e.ctx, ref("lc-expire-cancelled"), store.ReasonExpired)
	require.NoError(t, err)
	e.register(single("lc-expire-completed"))
	e.deliver(ref("lc-expire-completed"), reply("r"), store.DeliverCompleted)
	e.register(single("lc-expire-once"))
	_, err = e.s.Expire(e.ctx, ref("lc-expire-once"), "first")
	require.NoError(t, err)

	for _, tc := range []struct{ id, reason string }{
		{"lc-expire-cancelled", ""},
		{"lc-expire-cancelled", store.ReasonExpired},
		{"lc-expire-completed", ""},
		{"lc-expire-once", "second"},
	} {
		before := e.get(ref(tc.id))
		_, err := e.s.Expire(e.ctx, ref(tc.id), tc.reason)
		require.ErrorIs(t, err, store.ErrNotPending, "%s reason %q", tc.id, tc.reason)
		require.Equal(t, snap(before), snap(e.get(ref(tc.id))))
	}

	e.register(single("lc-expire-long"))
	_, err = e.s.Expire(e.ctx, ref("lc-expire-long"), strings.Repeat("r", store.MaxReasonLen+1))
	requireFieldError(t, err, store.ErrInvalid, "reason")
	require.Equal(t, store.StatePending, e.get(ref("lc-expire-long")).State)
}

func testLifecycleNotFound(t *testing.T, e *env) {
	_, err := e.s.Get(e.ctx, ref("lc-missing"))
	require.ErrorIs(t, err, store.ErrNotFound)
	_, err = e.s.Extend(e.ctx, ref("lc-missing"), e.now().Add(time.Hour))
	require.ErrorIs(t, err, store.ErrNotFound)
	_, err = e.s.Cancel(e.ctx, ref("lc-missing"), "")
	require.ErrorIs(t, err, store.ErrNotFound)
	_, err = e.s.Expire(e.ctx, ref("lc-missing"), "")
	require.ErrorIs(t, err, store.ErrNotFound)
	_, err = e.s.AckDispatch(e.ctx, ref("lc-missing"), store.Claim{Instance: "i", Attempt: 1})
	require.ErrorIs(t, err, store.ErrNotFound)
	_, err = e.s.NackDispatch(e.ctx, ref("lc-missing"), store.Claim{Instance: "i", Attempt: 1}, "boom", e.now().Add(time.Minute))
	require.ErrorIs(t, err, store.ErrNotFound)
	_, err = e.s.Redispatch(e.ctx, ref("lc-missing"))
	require.ErrorIs(t, err, store.ErrNotFound)
}
