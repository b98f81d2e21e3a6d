package redisstore_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/corrstore/corrstore/redisstore"
	"github.com/corrstore/corrstore/store"
	"github.com/corrstore/corrstore/store/storetest"
)

// testTwoStores is the conformance suite's contention cases across two
// stores on one prefix, each with its own client, as two replicas: 500
// concurrent replies to a single, 400 to a gather expecting 400, split
// between them. Within a store writers to one correlation take turns; across
// the two they meet at the compare-and-set and the loser retries. No reply
// may fail or be lost.
func testTwoStores(t *testing.T, newClient func() redis.UniversalClient, prefix string) {
	ctx := t.Context()
	clock := store.NewFakeClock(time.Date(2031, 1, 2, 3, 4, 5, 0, time.UTC))
	stores := []*redisstore.Store{
		openOn(t, newClient(), redisstore.Config{Prefix: prefix, Clock: clock, Logger: quiet}),
		openOn(t, newClient(), redisstore.Config{Prefix: prefix, Clock: clock, Logger: quiet}),
	}
	deliverAll := func(ref store.Ref, n int, reply func(i int) store.Reply) (map[store.DeliverStatus]int, []error) {
		return storetest.DeliverAll(n, func(i int) (store.DeliverResult, error) { return stores[i%2].Deliver(ctx, ref, reply(i)) })
	}

	single := store.Ref{Namespace: "two", ID: "single"}
	_, err := stores[0].Register(ctx, &store.Correlation{ID: single.ID, Namespace: single.Namespace, Timeout: time.Minute})
	require.NoError(t, err)
	statuses, errs := deliverAll(single, 500, func(i int) store.Reply { return store.Reply{ID: fmt.Sprint("r-", i)} })
	require.Empty(t, errs)
	require.Equal(t, map[store.DeliverStatus]int{store.DeliverCompleted: 1, store.DeliverLate: 499}, statuses)
	c, err := stores[1].Get(ctx, single)
	require.NoError(t, err)
	require.Len(t, c.Replies, 1)
	require.Equal(t, 499, c.LateCount)

	gather := store.Ref{Namespace: "two", ID: "gather"}
	_, err = stores[1].Register(ctx, &store.Correlation{ID: gather.ID, Namespace: gather.Namespace, Pattern: store.PatternGather, Expect: 400, Timeout: time.Minute})
	require.NoError(t, err)
	statuses, errs = deliverAll(gather, 400, func(i int) store.Reply { return store.Reply{From: fmt.Sprint("f-", i)} })
	require.Empty(t, errs)
	require.Equal(t, map[store.DeliverStatus]int{store.DeliverAccepted: 399, store.DeliverCompleted: 1}, statuses)
	c, err = stores[0].Get(ctx, gather)
	require.NoError(t, err)
	require.Len(t, c.Replies, 400)
}
