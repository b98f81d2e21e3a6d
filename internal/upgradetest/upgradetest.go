// Package upgradetest checks, for every backend, that a store upgraded from
// the schema-2 test data (bolt/testdata/schema2.db,
// redisstore/testdata/schema2.json: the same history, written by the
// schema-2 code, replies inside the record) reads every reply as the
// schema-2 code did and goes on deciding alike.
package upgradetest

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/corrstore/corrstore/store"
)

// T0 is when the schema-2 data's history began; it ended at T0+14s.
var T0 = time.Date(2030, 6, 1, 12, 0, 0, 0, time.UTC)

func ref(ns, id string) store.Ref { return store.Ref{Namespace: ns, ID: id} }

// CheckSchema2 runs on a store just upgraded from the schema-2 data, whose
// clock reads T0+14s.
func CheckSchema2(t *testing.T, s store.Store) {
	t.Helper()
	ctx := context.Background()
	get := func(r store.Ref) *store.Correlation {
		t.Helper()
		c, err := s.Get(ctx, r)
		require.NoError(t, err, "%s", r)
		return c
	}
	bodies := func(rs []store.Reply) []string {
		out := make([]string, len(rs))
		for i, r := range rs {
			out[i] = string(r.Body)
		}
		return out
	}

	// Every reply, as the schema-2 code returned it.
	g := get(ref("default", "gather-2"))
	require.Equal(t, store.StatePending, g.State)
	require.Equal(t, []string{`"A"`, `"B"`}, bodies(g.Replies))
	require.Equal(t, "a", g.Replies[0].From)
	require.Equal(t, "r-b", g.Replies[1].ID)
	require.True(t, g.Replies[1].ReceivedAt.Equal(T0.Add(2*time.Second)), "arrival time kept: %s", g.Replies[1].ReceivedAt)
	require.Equal(t, store.ReplyStats{Count: 2, Bytes: 6}, g.Held)
	types := func(c *store.Correlation) []store.EventType {
		out := make([]store.EventType, len(c.Events))
		for i, e := range c.Events {
			out[i] = e.Type
		}
		return out
	}
	require.Equal(t, []store.EventType{store.EventRegistered, store.EventReplyAccepted, store.EventReplyAccepted}, types(g))
	require.Equal(t, 3, g.EventSeq)

	st := get(ref("shop", "stream-2"))
	require.Equal(t, []string{"part-0", "part-1", "part-2"}, bodies(st.Replies), "a stream's replies in Seq order")
	require.Equal(t, store.ReplyStats{Count: 3, Bytes: 18, MaxSeq: 2}, st.Held)

	one := get(ref("shop", "single-2"))
	require.Equal(t, store.StateCompleted, one.State)
	require.Equal(t, []string{`{"paid":true}`}, bodies(one.Replies))
	require.Equal(t, []string{`"late"`}, bodies(one.Late))
	require.Equal(t, 1, one.LateCount)
	require.Equal(t, store.DispatchPending, one.Dispatch.State)

	require.Empty(t, get(ref("default", "pend-3")).Replies)

	// Deciding goes on alike: replies taken before the upgrade are
	// recognised when sent again, new ones count on from them.
	deliver := func(r store.Ref, rep store.Reply, want store.DeliverStatus) {
		t.Helper()
		res, err := s.Deliver(ctx, r, rep)
		require.NoError(t, err, "%s", r)
		require.Equal(t, want, res.Status, "%s %+v", r, rep)
	}
	deliver(ref("default", "gather-2"), store.Reply{From: "a", Body: []byte("again")}, store.DeliverDuplicate)
	deliver(ref("default", "gather-2"), store.Reply{ID: "r-b"}, store.DeliverDuplicate)
	deliver(ref("shop", "stream-2"), store.Reply{Seq: 1, Body: []byte("again")}, store.DeliverDuplicate)
	deliver(ref("shop", "single-2"), store.Reply{Body: []byte(`{"paid":true}`)}, store.DeliverDuplicate)
	deliver(ref("shop", "single-2"), store.Reply{ID: "late-1", Body: []byte(`"late"`)}, store.DeliverDuplicate)
	deliver(ref("shop", "single-2"), store.Reply{ID: "late-2", Body: []byte(`"later"`)}, store.DeliverLate)
	deliver(ref("default", "gather-2"), store.Reply{From: "c", Body: []byte(`"C"`)}, store.DeliverCompleted)
	deliver(ref("shop", "stream-2"), store.Reply{Seq: 3, Final: true, Body: []byte("part-3")}, store.DeliverCompleted)

	g = get(ref("default", "gather-2"))
	require.Equal(t, []string{`"A"`, `"B"`, `"C"`}, bodies(g.Replies))
	require.Equal(t, 2, g.DuplicateCount)
	require.Equal(t, []store.EventType{store.EventRegistered, store.EventReplyAccepted, store.EventReplyAccepted,
		store.EventReplyAccepted, store.EventOutcome}, types(g), "the timeline goes on from the upgraded one")
	one = get(ref("shop", "single-2"))
	require.Equal(t, []string{`"late"`, `"later"`}, bodies(one.Late), "the late ring goes on from the upgraded one")
	require.Equal(t, 2, one.LateCount)
	st = get(ref("shop", "stream-2"))
	require.Equal(t, []string{"part-0", "part-1", "part-2", "part-3"}, bodies(st.Replies))

	// The handler gets the replies with the outcome.
	now := T0.Add(14 * time.Second)
	claimed, err := s.ClaimDispatch(ctx, store.ClaimRequest{Instance: "inst", Handlers: []string{"billing"}, Now: now, Lease: time.Minute, Limit: 10})
	require.NoError(t, err)
	require.Len(t, claimed, 1)
	require.Equal(t, "single-2", claimed[0].ID)
	require.Equal(t, []string{`{"paid":true}`}, bodies(claimed[0].Replies))

	// Export sees every reply (List with Replies).
	page, err := s.List(ctx, store.Filter{Namespace: "shop", Full: true, Order: store.OldestFirst})
	require.NoError(t, err)
	require.Len(t, page.Items, 2)
	require.Equal(t, []string{"part-0", "part-1", "part-2", "part-3"}, bodies(page.Items[0].Replies))
}
