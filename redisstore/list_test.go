package redisstore_test

import (
	"fmt"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/corrstore/corrstore/redisstore"
	"github.com/corrstore/corrstore/store"
	"github.com/corrstore/corrstore/store/storetest"
)

// A listing of one namespace reads none of another's records: here every
// record of namespace b is made unreadable (a hash where the record's
// string should be, which fails any read of it), and namespace a still
// pages through, in either order, while a listing of every namespace fails.
func TestListNamespaceReadsOnlyItsRecords(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	_, rdb := newMiniredis(t)
	clock := store.NewFakeClock(storetest.Epoch)
	const shards = 4
	s := openOn(t, rdb, redisstore.Config{Prefix: "ls", Shards: shards, Clock: clock, Logger: quiet})
	var want []string
	for i := range 40 {
		c := &store.Correlation{ID: fmt.Sprintf("b-%d", i), Namespace: "b", Timeout: time.Hour}
		if i%8 == 0 {
			c = &store.Correlation{ID: fmt.Sprintf("a-%d", i), Namespace: "a", Timeout: time.Hour}
			want = append(want, "a/"+c.ID)
		}
		_, err := s.Register(ctx, c)
		require.NoError(t, err)
		clock.Add(time.Millisecond)
		if c.Namespace == "b" {
			ref := c.Ref().String()
			key := "{ls:" + strconv.Itoa(redisstore.ShardOf(shards, ref)) + "}:c:" + ref
			require.NoError(t, rdb.Del(ctx, key).Err())
			require.NoError(t, rdb.HSet(ctx, key, "trap", "reading this fails").Err())
		}
	}

	for _, order := range []store.Order{store.OldestFirst, store.NewestFirst} {
		var got []string
		for _, c := range storetest.ListAll(ctx, t, s, store.Filter{Namespace: "a", Limit: 2, Order: order}) {
			got = append(got, c.Ref().String())
		}
		exp := slices.Clone(want)
		if order == store.NewestFirst {
			slices.Reverse(exp)
		}
		require.Equal(t, exp, got, order)
	}

	_, err := s.List(ctx, store.Filter{Limit: 10})
	require.ErrorContains(t, err, "WRONGTYPE", "a listing that reads b's records trips on them")
}
