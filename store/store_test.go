package store_test

import (
	"encoding/base64"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/corrstore/corrstore/store"
)

func TestFilterNormalize(t *testing.T) {
	var f store.Filter
	require.NoError(t, f.Normalize())
	require.Equal(t, store.NewestFirst, f.Order)
	require.Equal(t, store.DefaultListLimit, f.Limit)

	f = store.Filter{Order: store.OldestFirst, Limit: store.MaxListLimit, State: store.StateTimedOut,
		Dispatch: store.DispatchDead, Namespace: "ns", Cursor: store.EncodeCursor(t0, store.RefOf("x"))}
	require.NoError(t, f.Normalize())
	require.Equal(t, store.OldestFirst, f.Order)
	require.Equal(t, store.MaxListLimit, f.Limit)

	for _, tc := range []struct {
		f     store.Filter
		field string
	}{
		{store.Filter{Namespace: "Bad"}, "namespace"},
		{store.Filter{State: "done"}, "state"},
		{store.Filter{Dispatch: "gone"}, "dispatch"},
		{store.Filter{Order: "random"}, "order"},
		{store.Filter{Limit: -1}, "limit"},
		{store.Filter{Limit: store.MaxListLimit + 1}, "limit"},
		{store.Filter{Cursor: "%%%"}, "cursor"},
	} {
		f := tc.f
		requireField(t, f.Normalize(), store.ErrInvalid, tc.field)
	}
}

func TestFilterMatch(t *testing.T) {
	c := &store.Correlation{ID: "m", Namespace: "ns", State: store.StateCompleted, Owner: "o", Destination: "d",
		Callback: store.Callback{Handler: "h"}, Labels: map[string]string{"a": "1", "b": "2"},
		Dispatch: store.Dispatch{State: store.DispatchPending}, CreatedAt: t0, Deadline: t0.Add(time.Minute)}
	for _, tc := range []struct {
		f    store.Filter
		want bool
	}{
		{store.Filter{}, true},
		{store.Filter{Namespace: "ns"}, true},
		{store.Filter{Namespace: "other"}, false},
		{store.Filter{State: store.StateCompleted}, true},
		{store.Filter{State: store.StatePending}, false},
		{store.Filter{Owner: "o"}, true},
		{store.Filter{Owner: "x"}, false},
		{store.Filter{Destination: "d"}, true},
		{store.Filter{Destination: "x"}, false},
		{store.Filter{Handler: "h"}, true},
		{store.Filter{Handler: "x"}, false},
		{store.Filter{Dispatch: store.DispatchPending}, true},
		{store.Filter{Dispatch: store.DispatchNone}, false},
		{store.Filter{Labels: map[string]string{"a": "1"}}, true},
		{store.Filter{Labels: map[string]string{"a": "1", "b": "2"}}, true},
		{store.Filter{Labels: map[string]string{"a": "2"}}, false},
		{store.Filter{Labels: map[string]string{"c": ""}}, false},
		{store.Filter{CreatedAfter: t0}, true},
		{store.Filter{CreatedAfter: t0.Add(1)}, false},
		{store.Filter{CreatedBefore: t0.Add(1)}, true},
		{store.Filter{CreatedBefore: t0}, false},
		{store.Filter{DeadlineAfter: t0.Add(time.Minute)}, true},
		{store.Filter{DeadlineAfter: t0.Add(time.Minute + 1)}, false},
		{store.Filter{DeadlineBefore: t0.Add(time.Minute + 1)}, true},
		{store.Filter{DeadlineBefore: t0.Add(time.Minute)}, false},
		// Cursor, Order and Limit do not filter.
		{store.Filter{Order: store.OldestFirst, Limit: 1, Cursor: store.EncodeCursor(t0.Add(time.Hour), store.RefOf("z"))}, true},
	} {
		require.Equal(t, tc.want, tc.f.Match(c), "%+v", tc.f)
	}
}

func TestCursor(t *testing.T) {
	at := time.Date(2030, 1, 2, 3, 4, 5, 6, time.UTC)
	cur := store.EncodeCursor(at, store.Ref{Namespace: "tenant-a", ID: "some:id.1"})
	gotAt, gotRef, err := store.DecodeCursor(cur)
	require.NoError(t, err)
	require.True(t, at.Equal(gotAt))
	require.Equal(t, store.Ref{Namespace: "tenant-a", ID: "some:id.1"}, gotRef)
	require.NotContains(t, cur, "/", "URL-safe")
	require.NotContains(t, cur, "=")

	for _, bad := range []string{
		"", "!!", base64.RawURLEncoding.EncodeToString([]byte("12345678")),
		base64.RawURLEncoding.EncodeToString(append(make([]byte, 8), "default/bad id"...)),
		base64.RawURLEncoding.EncodeToString(append(make([]byte, 8), "no-namespace"...)),
		base64.StdEncoding.EncodeToString(append(make([]byte, 8), "x"...)) + "==",
	} {
		_, _, err := store.DecodeCursor(bad)
		requireField(t, err, store.ErrInvalid, "cursor")
	}
}

func TestStatsTotal(t *testing.T) {
	s := store.Stats{Namespaces: map[string]store.NamespaceStats{
		"a": {States: map[store.State]int64{store.StatePending: 2, store.StateCompleted: 1},
			Dispatch: map[store.DispatchState]int64{store.DispatchPending: 1}, OldestPending: t0.Add(time.Minute)},
		"b": {States: map[store.State]int64{store.StatePending: 1},
			Dispatch: map[store.DispatchState]int64{store.DispatchPending: 2, store.DispatchDead: 1}, OldestPending: t0},
		"c": {States: map[store.State]int64{store.StateTimedOut: 4}},
	}}
	total := s.Total()
	require.Equal(t, map[store.State]int64{store.StatePending: 3, store.StateCompleted: 1, store.StateTimedOut: 4}, total.States)
	require.Equal(t, map[store.DispatchState]int64{store.DispatchPending: 3, store.DispatchDead: 1}, total.Dispatch)
	require.Equal(t, t0, total.OldestPending)
	require.Equal(t, time.Hour, total.OldestPendingAge(t0.Add(time.Hour)))
	require.Zero(t, s.Namespaces["c"].OldestPendingAge(t0.Add(time.Hour)), "none pending")
	require.Empty(t, store.Stats{}.Total().States)

	clone := s.Namespaces["a"].Clone()
	clone.States[store.StatePending] = 99
	clone.Dispatch[store.DispatchDone] = 1
	require.Equal(t, int64(2), s.Namespaces["a"].States[store.StatePending], "Clone is deep")
	require.NotContains(t, s.Namespaces["a"].Dispatch, store.DispatchDone)
}

func TestValidateLimitAndClaim(t *testing.T) {
	require.NoError(t, store.ValidateLimit(1))
	requireField(t, store.ValidateLimit(0), store.ErrInvalid, "limit")
	ok := store.ClaimRequest{Instance: "i", Handlers: []string{"h"}, Lease: time.Second, Limit: 1}
	require.NoError(t, store.ValidateClaim(ok))
	edit := func(f func(r *store.ClaimRequest)) store.ClaimRequest { r := ok; f(&r); return r }
	requireField(t, store.ValidateClaim(edit(func(r *store.ClaimRequest) { r.Instance = "" })), store.ErrInvalid, "instance")
	requireField(t, store.ValidateClaim(edit(func(r *store.ClaimRequest) { r.Instance = string(make([]byte, store.MaxAddressLen+1)) })), store.ErrInvalid, "instance")
	requireField(t, store.ValidateClaim(edit(func(r *store.ClaimRequest) { r.Lease = 0 })), store.ErrInvalid, "lease")
	requireField(t, store.ValidateClaim(edit(func(r *store.ClaimRequest) { r.Limit = 0 })), store.ErrInvalid, "limit")
	requireField(t, store.ValidateClaim(edit(func(r *store.ClaimRequest) { r.Handlers = nil })), store.ErrInvalid, "handlers")
	requireField(t, store.ValidateClaim(edit(func(r *store.ClaimRequest) { r.Handlers = []string{"h\n"} })), store.ErrInvalid, "handler")
	requireField(t, store.ValidateClaim(edit(func(r *store.ClaimRequest) { r.Namespace = "A" })), store.ErrInvalid, "namespace")
	require.NoError(t, store.ValidateClaim(edit(func(r *store.ClaimRequest) { r.Namespace = "tenant-a" })))
}

func TestExtendLease(t *testing.T) {
	c := prepared(t, &store.Correlation{ID: "el", Callback: store.Callback{Handler: "h"}})
	apply(t, c, store.Reply{From: "a"}, t0, lim)
	require.True(t, c.ApplyClaim("a", t0, time.Minute, lim))
	cl := c.Dispatch.Claim()
	v := c.Version

	dup, err := c.ExtendLease(cl, t0.Add(5*time.Minute), t0.Add(30*time.Second))
	require.NoError(t, err)
	require.False(t, dup)
	require.Equal(t, t0.Add(5*time.Minute), c.Dispatch.NextAt)
	require.Greater(t, c.Version, v)

	dup, err = c.ExtendLease(cl, t0.Add(2*time.Minute), t0.Add(40*time.Second))
	require.NoError(t, err)
	require.True(t, dup, "a lease is never shortened")
	require.Equal(t, t0.Add(5*time.Minute), c.Dispatch.NextAt)

	_, err = c.ExtendLease(store.Claim{Instance: "b", Attempt: 1}, t0.Add(time.Hour), t0.Add(time.Minute))
	require.ErrorIs(t, err, store.ErrConflict, "another instance's claim")
	_, err = c.ExtendLease(cl, t0.Add(time.Hour), t0.Add(5*time.Minute))
	require.ErrorIs(t, err, store.ErrConflict, "the lease ran out")

	_, err = c.ApplyAck(cl, t0.Add(time.Minute), lim)
	require.NoError(t, err)
	_, err = c.ExtendLease(cl, t0.Add(time.Hour), t0.Add(time.Minute))
	require.ErrorIs(t, err, store.ErrNotPending, "settled")
}

func TestEventOf(t *testing.T) {
	c := prepared(t, &store.Correlation{ID: "ev", Namespace: "ns", Pattern: store.PatternGather, Expect: 2})
	apply(t, c, store.Reply{From: "a"}, t0, lim)
	e := store.EventOf(c)
	require.Equal(t, store.Event{Kind: store.ChangeReply, ID: "ev", Namespace: "ns", State: store.StatePending,
		Deadline: c.Deadline, Dispatch: store.DispatchNone, Replies: 1, Version: c.Version}, e)

	apply(t, c, store.Reply{From: "b"}, t0, lim)
	e = store.EventOf(c)
	require.Equal(t, store.StateCompleted, e.State)
	require.Equal(t, store.ChangeOutcome, e.Kind, "the outcome outranks the reply that decided it")
	require.Equal(t, *c.Outcome, *e.Outcome)
	e.Outcome.Reason = "changed"
	require.Empty(t, c.Outcome.Reason, "the event holds a copy of the outcome")
}

func TestDescribe(t *testing.T) {
	c := prepared(t, &store.Correlation{ID: "x", Namespace: "ns", Pattern: store.PatternStream})
	require.Equal(t, "ns/x (stream, pending)", store.Describe(c))
}
