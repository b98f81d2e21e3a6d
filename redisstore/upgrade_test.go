package redisstore_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/corrstore/corrstore/internal/upgradetest"
	"github.com/corrstore/corrstore/redisstore"
	"github.com/corrstore/corrstore/redisstore/redistest"
	"github.com/corrstore/corrstore/store"
	"github.com/corrstore/corrstore/store/storetest"
)

// forEachNode runs f on the server, or on every master of a cluster.
func forEachNode(t testing.TB, rdb redis.UniversalClient, f func(c redis.Cmdable)) {
	t.Helper()
	if cc, ok := rdb.(*redis.ClusterClient); ok {
		var mu sync.Mutex
		require.NoError(t, cc.ForEachMaster(context.Background(), func(_ context.Context, c *redis.Client) error {
			mu.Lock()
			defer mu.Unlock()
			f(c)
			return nil
		}))
		return
	}
	f(rdb)
}

// dumpPrefix is every key of prefix and its content, the prefix replaced
// by "P", to compare two prefixes.
func dumpPrefix(t testing.TB, rdb redis.UniversalClient, prefix string) map[string]string {
	t.Helper()
	ctx := context.Background()
	var keys []string
	forEachNode(t, rdb, func(c redis.Cmdable) {
		ks, err := c.Keys(ctx, "{"+prefix+":*").Result()
		require.NoError(t, err)
		keys = append(keys, ks...)
	})
	out := map[string]string{}
	for _, k := range keys {
		var v any
		var err error
		switch typ := rdb.Type(ctx, k).Val(); typ {
		case "string":
			v, err = rdb.Get(ctx, k).Result()
		case "hash":
			v, err = rdb.HGetAll(ctx, k).Result()
		case "zset":
			v, err = rdb.ZRangeWithScores(ctx, k, 0, -1).Result()
		default:
			t.Fatalf("%s: type %s", k, typ)
		}
		require.NoError(t, err)
		b, _ := json.Marshal(v)
		out[strings.Replace(k, "{"+prefix+":", "{P:", 1)] = string(b)
	}
	return out
}

var errCrash = errors.New("crash (test)")

// testUpgrade is the upgrade of a schema 1 prefix on rdb: refused by New
// and under a live instance; interrupted, then resumed; compared with an
// uninterrupted run; every record and every operation then works, and a
// second run has nothing to do.
// testUpgradeSchema2: a schema-2 prefix (replies inside the records)
// upgrades by its mark alone, and reads and decides as schema 2 did.
func testUpgradeSchema2(t *testing.T, rdb redis.UniversalClient, uniq func(string) string) {
	ctx := t.Context()
	prefix := uniq("v2up")
	d := redistest.LoadSchema2(t, rdb, prefix)
	_, err := redisstore.New(ctx, rdb, redisstore.Config{Prefix: prefix, Logger: quiet})
	require.EqualError(t, err, "redis prefix "+prefix+" has schema 2; stop every instance and run `corrstore upgrade --store …`")
	rep, err := redisstore.Upgrade(ctx, rdb, redisstore.UpgradeOptions{Prefix: prefix, Logger: quiet})
	require.NoError(t, err)
	require.Equal(t, 2, rep.From)
	require.Equal(t, 3, rep.To)
	require.Zero(t, rep.Moved(), "nothing moves: records are read as they are")
	clk := store.NewFakeClock(upgradetest.T0.Add(14 * time.Second))
	s, err := redisstore.New(ctx, rdb, redisstore.Config{Prefix: prefix, Shards: d.Shards, Clock: clk, Logger: quiet})
	require.NoError(t, err)
	defer s.Close()
	upgradetest.CheckSchema2(t, s)
}

func testUpgrade(t *testing.T, rdb redis.UniversalClient, uniq func(string) string) {
	ctx := t.Context()
	straight, crashed := uniq("upgrade-a"), uniq("upgrade-b")
	d := redistest.LoadSchema1(t, rdb, straight)
	redistest.LoadSchema1(t, rdb, crashed)

	// New refuses the old layout, in one line.
	_, err := redisstore.New(ctx, rdb, redisstore.Config{Prefix: straight, Logger: quiet})
	var se *redisstore.SchemaError
	require.ErrorAs(t, err, &se)
	require.EqualError(t, err, "redis prefix "+straight+" has schema 1; stop every instance and run `corrstore upgrade --store …`")

	// An instance seen alive stops the upgrade, named with its TTL.
	live := "{" + straight + ":0}:live:other-instance"
	require.NoError(t, rdb.Set(ctx, live, "host=h pid=1", 15*time.Second).Err())
	_, err = redisstore.Upgrade(ctx, rdb, redisstore.UpgradeOptions{Prefix: straight, Logger: quiet})
	require.ErrorIs(t, err, redisstore.ErrInstancesAlive)
	require.ErrorContains(t, err, live)
	require.ErrorContains(t, err, "host=h pid=1")
	require.Regexp(t, `expires in 1[45]s`, err.Error())
	require.NoError(t, rdb.Del(ctx, live).Err())

	rep, err := redisstore.Upgrade(ctx, rdb, redisstore.UpgradeOptions{Prefix: straight, Shards: d.Shards, Logger: quiet})
	require.NoError(t, err)
	require.False(t, rep.Resumed)
	require.Equal(t, 1, rep.From)
	require.Equal(t, 3, rep.To)
	require.Equal(t, map[string]int{"default": 2, "shop": 3, "billing": 3}, rep.Correlations, rep.String())
	require.Equal(t, 1, rep.EarlyReplies)
	require.Equal(t, 1, rep.IdempotencyKeys)
	require.Equal(t, 1, rep.SetAside, "broken-1, set aside by schema 1")
	require.Contains(t, rep.String(), "upgraded from schema 1 to 3: moved 8 correlations (billing 3, default 2, shop 3), 1 early replies, 1 idempotency keys")

	// The same upgrade, crashed twice: after new keys were written and
	// before old ones were removed, then between two batches.
	for _, crash := range []struct {
		stage string
		after int
	}{{"written", 3}, {"moved", 6}} {
		o := redisstore.UpgradeHook(redisstore.UpgradeOptions{Prefix: crashed, Logger: quiet}, 2, func(stage string, moved int) error {
			if stage == crash.stage && moved >= crash.after {
				return errCrash
			}
			return nil
		})
		_, err = redisstore.Upgrade(ctx, rdb, o)
		require.ErrorIs(t, err, errCrash)
		_, err = redisstore.New(ctx, rdb, redisstore.Config{Prefix: crashed, Logger: quiet})
		require.ErrorAs(t, err, &se)
		require.True(t, se.Upgrading)
		require.ErrorContains(t, err, "unfinished upgrade")
	}
	rep, err = redisstore.Upgrade(ctx, rdb, redisstore.UpgradeOptions{Prefix: crashed, Logger: quiet})
	require.NoError(t, err)
	require.True(t, rep.Resumed)
	require.Contains(t, rep.String(), "finishing an interrupted upgrade")
	require.Equal(t, dumpPrefix(t, rdb, straight), dumpPrefix(t, rdb, crashed), "the interrupted upgrade ends where the other did")

	checkUpgraded(t, rdb, straight, d.Now)

	// Once is enough, even with the instance running.
	rep, err = redisstore.Upgrade(ctx, rdb, redisstore.UpgradeOptions{Prefix: straight, Logger: quiet})
	require.NoError(t, err)
	require.True(t, rep.AlreadyDone)
	require.Equal(t, "redis prefix "+straight+" is already at schema 3: nothing to do", rep.String())
}

// checkUpgraded opens a store on an upgraded prefix and uses every record.
func checkUpgraded(t *testing.T, rdb redis.UniversalClient, prefix string, now time.Time) {
	ctx := t.Context()
	clock := store.NewFakeClock(now)
	s, err := redisstore.New(ctx, rdb, redisstore.Config{Prefix: prefix, Clock: clock, Logger: quiet})
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })
	get := func(ns, id string) *store.Correlation {
		t.Helper()
		c, err := s.Get(ctx, store.Ref{Namespace: ns, ID: id})
		require.NoError(t, err, "%s/%s", ns, id)
		return c
	}
	keyOnly := store.DeriveID("billing", "invoice-7")

	c := get("shop", "order-1")
	require.Equal(t, store.StatePending, c.State)
	require.Equal(t, map[string]string{"region": "eu", "tier": "gold"}, c.Labels)
	require.Equal(t, store.Callback{Handler: "ship", Data: []byte(`{"order":1}`)}, c.Callback)
	require.Equal(t, "svc-orders", c.Owner)
	c = get("default", "gather-1")
	require.Equal(t, store.StateCompleted, c.State)
	require.Len(t, c.Replies, 2)
	require.Equal(t, 1, c.LateCount)
	c = get("shop", "late-1")
	require.Equal(t, store.StateTimedOut, c.State)
	require.Equal(t, store.DispatchPending, c.Dispatch.State)
	c = get("billing", "cancel-1")
	require.Equal(t, store.StateCancelled, c.State)
	require.Equal(t, store.DispatchDone, c.Dispatch.State)
	require.Len(t, get("billing", "gather-2").Replies, 1)
	require.Len(t, get("default", "stream-1").Replies, 1)
	get("shop", "idem-1")
	get("billing", keyOnly)
	_, err = s.Get(ctx, store.Ref{Namespace: "default", ID: "broken-1"})
	require.ErrorIs(t, err, store.ErrCorrupt)
	require.ErrorContains(t, err, "set aside")
	_, err = s.Get(ctx, store.Ref{Namespace: "default", ID: "order-1"})
	require.ErrorIs(t, err, store.ErrNotFound, "another namespace's id")

	st, err := s.Stats(ctx, "")
	require.NoError(t, err)
	require.EqualValues(t, 1, st.EarlyReplies)
	require.Equal(t, map[store.State]int64{store.StatePending: 2, store.StateTimedOut: 1}, st.Namespaces["shop"].States)
	require.Equal(t, map[store.State]int64{store.StatePending: 2, store.StateCancelled: 1}, st.Namespaces["billing"].States)
	require.Equal(t, map[store.State]int64{store.StatePending: 1, store.StateCompleted: 1}, st.Namespaces["default"].States,
		"broken-1, counted pending by schema 1, is not")
	require.Equal(t, map[store.DispatchState]int64{store.DispatchPending: 1}, st.Namespaces["shop"].Dispatch)
	require.Equal(t, map[store.DispatchState]int64{store.DispatchDone: 1}, st.Namespaces["billing"].Dispatch)
	require.True(t, get("shop", "order-1").CreatedAt.Equal(st.Namespaces["shop"].OldestPending))

	var listed []string
	stored := map[string]int64{} // what each namespace's records hold
	for _, c := range storetest.ListAll(ctx, t, s, store.Filter{Limit: 3, Order: store.OldestFirst}) {
		listed = append(listed, c.Ref().String())
		stored[c.Namespace] += c.StoredBytes()
	}
	require.Equal(t, []string{"billing/cancel-1", "shop/late-1", "default/gather-1", "shop/order-1", "billing/" + keyOnly, "shop/idem-1",
		"billing/gather-2", "default/stream-1"}, listed, "every record once, in creation order")
	page, err := s.List(ctx, store.Filter{Namespace: "shop"})
	require.NoError(t, err)
	require.Len(t, page.Items, 3)
	// The recount makes the stored-bytes counters, which schema 1 had not.
	require.Equal(t, map[string]int64{"default": 17, "shop": 11, "billing": 24}, stored)
	for ns, n := range stored {
		require.Equal(t, n, st.Namespaces[ns].Bytes, "stored bytes of %s", ns)
	}

	// Idempotency keys hold, in their namespace only.
	res, err := s.Register(ctx, &store.Correlation{ID: "idem-other", Namespace: "shop", Timeout: 3 * time.Hour, IdempotencyKey: "checkout-42"})
	require.NoError(t, err)
	require.False(t, res.Created)
	require.Equal(t, "idem-1", res.Correlation.ID)
	res, err = s.Register(ctx, &store.Correlation{Namespace: "billing", Timeout: 3 * time.Hour, IdempotencyKey: "invoice-7"})
	require.NoError(t, err)
	require.False(t, res.Created)
	require.Equal(t, keyOnly, res.Correlation.ID)
	res, err = s.Register(ctx, &store.Correlation{Namespace: "shop", Timeout: 3 * time.Hour, IdempotencyKey: "invoice-7"})
	require.NoError(t, err)
	require.True(t, res.Created, "the same key in another namespace is another registration")

	// The buffered early reply is applied at registration (default namespace).
	res, err = s.Register(ctx, &store.Correlation{ID: "early-1", Timeout: time.Hour})
	require.NoError(t, err)
	require.Equal(t, 1, res.EarlyApplied)
	require.Equal(t, store.StateCompleted, res.Correlation.State)

	// Replies, dispatch and the deadline index work on moved records.
	dr, err := s.Deliver(ctx, store.Ref{Namespace: "billing", ID: "gather-2"}, store.Reply{From: "y"})
	require.NoError(t, err)
	require.Equal(t, store.DeliverAccepted, dr.Status)
	claimed, err := s.ClaimDispatch(ctx, store.ClaimRequest{Instance: "w", Handlers: []string{"ship", "notify"}, Now: clock.Now(), Lease: time.Minute, Limit: 10})
	require.NoError(t, err)
	require.Equal(t, []string{"shop/late-1"}, refStrings(claimed))
	_, err = s.AckDispatch(ctx, claimed[0].Ref(), claimed[0].Dispatch.Claim())
	require.NoError(t, err)
	clock.Add(4 * time.Hour)
	expired, err := s.ExpireDue(ctx, clock.Now(), 100)
	require.NoError(t, err)
	require.ElementsMatch(t, []string{"shop/order-1", "shop/idem-1", "billing/" + keyOnly, "billing/gather-2", "default/stream-1",
		"shop/" + store.DeriveID("shop", "invoice-7")}, refStrings(expired))
	require.Equal(t, store.Outcome{State: store.StateCompleted, At: clock.Now(), Reason: store.ReasonDeadline, Partial: true},
		*get("billing", "gather-2").Outcome, "quorum 2 reached after the upgrade")
	claimed, err = s.ClaimDispatch(ctx, store.ClaimRequest{Instance: "w", Handlers: []string{"ship", "notify"}, Now: clock.Now(), Lease: time.Minute, Limit: 10})
	require.NoError(t, err)
	require.Equal(t, []string{"shop/order-1"}, refStrings(claimed), "order-1's handler gets its outcome")
	n, err := s.Purge(ctx, clock.Now().Add(time.Second), 100)
	require.NoError(t, err)
	require.Equal(t, 9, n, "every decided record but order-1 (its dispatch is leased)")
}

func refStrings(cs []*store.Correlation) []string {
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = c.Ref().String()
	}
	slices.Sort(out)
	return out
}

func TestUpgradeMiniredis(t *testing.T) {
	t.Parallel()
	_, rdb := newMiniredis(t)
	n := 0
	testUpgrade(t, rdb, func(s string) string { n++; return fmt.Sprint(s, n) })
	testUpgradeSchema2(t, rdb, func(s string) string { n++; return fmt.Sprint(s, n) })
}
