package storetest

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/corrstore/corrstore/store"
)

// Every mutating call may be repeated — go-redis resends a command it already
// wrote, a caller retries after a timeout — so a repeat must leave the same
// state and say so, never apply twice.

func repeatTests() []testCase {
	cases := []repeatCase{
		{name: "Register", setup: func(e *env) store.Ref { return ref("rp-register") },
			call: func(e *env, r store.Ref) (bool, error) {
				res, err := e.s.Register(e.ctx, &store.Correlation{ID: r.ID, Timeout: time.Minute, Destination: "d"})
				return !res.Created, err
			}},
		{name: "RegisterIdempotencyKey", setup: func(e *env) store.Ref { return ref(store.DeriveID(store.DefaultNamespace, "rp-key")) },
			call: func(e *env, r store.Ref) (bool, error) {
				res, err := e.s.Register(e.ctx, &store.Correlation{IdempotencyKey: "rp-key", Timeout: time.Minute})
				return !res.Created, err
			}},
		{name: "DeliverAccepted", setup: registered(&store.Correlation{ID: "rp-accepted", Pattern: store.PatternGather, Expect: 3, Timeout: time.Minute}),
			call: deliverCall(store.Reply{From: "a", Body: []byte("x")})},
		{name: "DeliverCompleted", setup: registered(single("rp-completed")),
			call: deliverCall(store.Reply{ID: "r1", Body: []byte("x")})},
		{name: "DeliverWithoutID", setup: registered(single("rp-no-id")),
			call: deliverCall(store.Reply{Body: []byte("anonymous")})},
		{name: "DeliverStream", setup: registered(&store.Correlation{ID: "rp-stream", Pattern: store.PatternStream, Timeout: time.Minute}),
			call: deliverCall(store.Reply{Seq: 3, Body: []byte("x")})},
		{name: "DeliverLate", setup: completed("rp-late"),
			call: deliverCall(store.Reply{ID: "late", Body: []byte("x")})},
		{name: "DeliverLateWithoutID", setup: completed("rp-late-no-id"),
			call: deliverCall(store.Reply{Body: []byte("late, anonymous")})},
		{name: "Extend", setup: registered(single("rp-extend")),
			call: func(e *env, r store.Ref) (bool, error) {
				res, err := e.s.Extend(e.ctx, r, Epoch.Add(time.Hour))
				return res.Duplicate, err
			}},
		{name: "Cancel", setup: registered(withHandler("rp-cancel")),
			call: func(e *env, r store.Ref) (bool, error) {
				res, err := e.s.Cancel(e.ctx, r, "no longer needed")
				return res.Duplicate, err
			}},
		{name: "Expire", setup: registered(withHandler("rp-expire")),
			call: func(e *env, r store.Ref) (bool, error) {
				res, err := e.s.Expire(e.ctx, r, "stuck")
				return res.Duplicate, err
			}},
		{name: "ExpireDue", setup: registered(withHandler("rp-expire-due")),
			call: func(e *env, r store.Ref) (bool, error) {
				got, err := e.s.ExpireDue(e.ctx, Epoch.Add(time.Hour), 10)
				return len(got) == 0, err
			}},
		{name: "Ack", setup: claimed("rp-ack"),
			call: func(e *env, r store.Ref) (bool, error) {
				res, err := e.s.AckDispatch(e.ctx, r, store.Claim{Instance: "inst", Attempt: 1})
				return res.Duplicate, err
			}},
		{name: "NackRetry", setup: claimed("rp-nack"),
			call: func(e *env, r store.Ref) (bool, error) {
				res, err := e.s.NackDispatch(e.ctx, r, store.Claim{Instance: "inst", Attempt: 1}, "boom", Epoch.Add(time.Hour))
				return res.Duplicate, err
			}},
		{name: "NackGiveUp", setup: claimed("rp-nack-dead"),
			call: func(e *env, r store.Ref) (bool, error) {
				res, err := e.s.NackDispatch(e.ctx, r, store.Claim{Instance: "inst", Attempt: 1}, "fatal", time.Time{})
				return res.Duplicate, err
			}},
		{name: "Redispatch", setup: func(e *env) store.Ref {
			r := claimed("rp-redispatch")(e)
			_, err := e.s.NackDispatch(e.ctx, r, store.Claim{Instance: "inst", Attempt: 1}, "fatal", time.Time{})
			require.NoError(e.t, err)
			return r
		}, call: func(e *env, r store.Ref) (bool, error) {
			res, err := e.s.Redispatch(e.ctx, r)
			return res.Duplicate, err
		}},
		{name: "ClaimDispatch", setup: completedWithHandler("rp-claim"),
			call: func(e *env, r store.Ref) (bool, error) {
				got, err := e.s.ClaimDispatch(e.ctx, e.claimAll("inst", time.Minute, 10))
				return len(got) == 0, err
			}},
	}
	out := make([]testCase, len(cases))
	for i, rc := range cases {
		out[i] = testCase{name: rc.name, run: rc.run}
	}
	out = append(out,
		testCase{name: "Purge", run: testRepeatPurge},
		testCase{name: "DropEarlyReplies", run: testRepeatDropEarly},
		testCase{name: "DeliverEarly", run: testRepeatDeliverEarly},
	)
	return out
}

// repeatCase is one mutating call: setup returns the ref it works on; call
// makes the call and reports whether the store said it was a repeat
// (Duplicate, Existing, nothing left to do).
type repeatCase struct {
	name  string
	setup func(e *env) store.Ref
	call  func(e *env, r store.Ref) (repeat bool, err error)
}

func (rc repeatCase) run(t *testing.T, e *env) {
	r := rc.setup(e)
	var before *store.Correlation
	if c, err := e.s.Get(e.ctx, r); err == nil {
		before = c
	}
	e.clock.Add(time.Second)
	repeat, err := rc.call(e, r)
	require.NoError(t, err, "first call")
	require.False(t, repeat, "the first call must apply")
	applied := e.get(r)
	if before != nil {
		require.Greater(t, applied.Version, before.Version, "the first call changes the record")
	}
	for i := range 2 {
		e.clock.Add(time.Second) // a retry comes later
		repeat, err := rc.call(e, r)
		require.NoError(t, err, "repeat %d", i+1)
		require.True(t, repeat, "repeat %d must say it was a repeat", i+1)
		require.Equal(t, snap(applied), snap(e.get(r)), "repeat %d must leave the same state", i+1)
	}
}

func registered(c *store.Correlation) func(e *env) store.Ref {
	return func(e *env) store.Ref {
		return e.register(c).Ref()
	}
}

func completed(id string) func(e *env) store.Ref {
	return func(e *env) store.Ref {
		e.register(single(id))
		e.deliver(ref(id), reply("first"), store.DeliverCompleted)
		return ref(id)
	}
}

func completedWithHandler(id string) func(e *env) store.Ref {
	return func(e *env) store.Ref {
		e.decided(ref(id))
		return ref(id)
	}
}

func claimed(id string) func(e *env) store.Ref {
	return func(e *env) store.Ref {
		e.decided(ref(id))
		e.claimOne("inst", ref(id), 10*time.Minute)
		return ref(id)
	}
}

func deliverCall(rep store.Reply) func(e *env, r store.Ref) (bool, error) {
	return func(e *env, r store.Ref) (bool, error) {
		res, err := e.s.Deliver(e.ctx, r, rep)
		return res.Status == store.DeliverDuplicate, err
	}
}

func testRepeatPurge(t *testing.T, e *env) {
	completed("rp-purge")(e)
	completed("rp-purge-2")(e)
	e.clock.Add(time.Hour)
	for i, want := range []int{2, 0, 0} {
		n, err := e.s.Purge(e.ctx, e.now(), 10)
		require.NoError(t, err)
		require.Equal(t, want, n, "purge %d", i+1)
	}
	e.requireGone(ref("rp-purge"))
}

func testRepeatDropEarly(t *testing.T, e *env) {
	e.deliver(ref("rp-drop"), reply("r"), store.DeliverBuffered)
	e.clock.Add(time.Hour)
	for i, want := range []int{1, 0, 0} {
		n, err := e.s.DropEarlyReplies(e.ctx, e.now(), 10)
		require.NoError(t, err)
		require.Equal(t, want, n, "drop %d", i+1)
	}
	require.Zero(t, e.stats("").EarlyReplies)
}

func testRepeatDeliverEarly(t *testing.T, e *env) {
	// The same early reply delivered twice is applied once.
	for range 2 {
		res, err := e.s.Deliver(e.ctx, ref("rp-early"), store.Reply{ID: "r", Body: []byte("x")})
		require.NoError(t, err)
		require.Contains(t, []store.DeliverStatus{store.DeliverBuffered, store.DeliverDuplicate}, res.Status)
	}
	res, err := e.s.Register(e.ctx, &store.Correlation{ID: "rp-early", Pattern: store.PatternGather, Expect: 2, Timeout: time.Minute})
	require.NoError(t, err)
	require.Equal(t, 1, res.EarlyApplied)
	c := e.get(ref("rp-early"))
	require.Len(t, c.Replies, 1)
	require.Equal(t, store.StatePending, c.State)
}
