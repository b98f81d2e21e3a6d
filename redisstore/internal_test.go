package redisstore

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/corrstore/corrstore/store"
)

var discard = slog.New(slog.DiscardHandler)

func openMini(t *testing.T, cfg Config) (*Store, *miniredis.Miniredis, *redis.Client) {
	t.Helper()
	mr := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	t.Cleanup(func() { rdb.Close() })
	if cfg.Logger == nil {
		cfg.Logger = discard
	}
	s, err := New(context.Background(), rdb, cfg)
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })
	return s, mr, rdb
}

func TestDurabilityProblems(t *testing.T) {
	safe := map[string]string{"appendonly": "yes", "appendfsync": "always", "maxmemory-policy": "noeviction"}
	with := func(k, v string) map[string]string {
		m := map[string]string{}
		for a, b := range safe {
			m[a] = b
		}
		if v == "" {
			delete(m, k)
		} else {
			m[k] = v
		}
		return m
	}
	cases := []struct {
		name string
		cfg  map[string]string
		want []string // substrings, one per problem
	}{
		{"safe", safe, nil},
		{"aof off", with("appendonly", "no"), []string{"appendonly is \"no\"", "set appendonly yes"}},
		{"everysec", with("appendfsync", "everysec"), []string{"appendfsync is \"everysec\"", "set appendfsync always"}},
		{"fsync no", with("appendfsync", "no"), []string{"appendfsync is \"no\""}},
		{"evicting", with("maxmemory-policy", "allkeys-lru"), []string{"maxmemory-policy is \"allkeys-lru\"", "set maxmemory-policy noeviction"}},
		{"volatile eviction", with("maxmemory-policy", "volatile-ttl"), []string{"maxmemory-policy is \"volatile-ttl\""}},
		{"unreadable", with("maxmemory-policy", ""), []string{"maxmemory-policy could not be read"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := durabilityProblems(tc.cfg)
			if tc.want == nil {
				require.Empty(t, got)
				return
			}
			joined := strings.Join(got, "\n")
			for _, w := range tc.want {
				require.Contains(t, joined, w)
			}
		})
	}
	// appendfsync does not matter without the AOF; both problems are named.
	got := durabilityProblems(map[string]string{"appendonly": "no", "appendfsync": "everysec", "maxmemory-policy": "allkeys-lru"})
	require.Len(t, got, 2)
}

func TestDurabilityUncheckable(t *testing.T) {
	// miniredis answers CONFIG GET with an error, as a managed Redis with
	// CONFIG disabled does: a warning, or in strict mode a refusal.
	mr := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	defer rdb.Close()
	var logs strings.Builder
	s, err := New(context.Background(), rdb, Config{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	require.NoError(t, err)
	s.Close()
	require.Contains(t, logs.String(), "could not read the server's durability settings")

	_, err = New(context.Background(), rdb, Config{Strict: true, Logger: discard})
	require.ErrorIs(t, err, ErrNotDurable)
	require.Contains(t, err.Error(), "CONFIG GET")
}

func TestLayout(t *testing.T) {
	l := newLayout("corrstore", 16)
	require.Equal(t, "{corrstore:7}:c:shop/abc", l.record(7, "shop/abc"))
	require.Equal(t, "{corrstore:0}:meta", l.meta())
	require.Equal(t, "{corrstore:0}:live:i1", l.live("i1"))
	require.Equal(t, "{corrstore:0}:secret:tokens", l.secret("tokens"))
	require.Equal(t, "corrstore:events", l.channel())
	// The shard of a ref string is part of the stored layout: it must never
	// change. (Schema 1 took the shard of the bare id: order-1 was in 13.)
	require.Equal(t, 13, l.shard("order-1"))
	require.Equal(t, 4, l.shard("order-2"))
	require.Equal(t, 11, l.shard(store.RefOf("order-1").String()))
	require.Equal(t, 12, l.shard(store.Ref{Namespace: "shop", ID: "order-1"}.String()))
	counts := make([]int, 16)
	for i := range 16000 {
		counts[l.shard(store.RefOf(fmt.Sprintf("id-%d", i)).String())]++
	}
	for sh, n := range counts {
		require.InDelta(t, 1000, n, 200, "shard %d holds %d of 16000", sh, n)
	}
	require.Equal(t, 0, newLayout("p", 1).shard("anything"))
}

// TestOneSlotPerCorrelation checks that every key a correlation's life
// touches carries its shard's hash tag, so every script touches one slot.
func TestOneSlotPerCorrelation(t *testing.T) {
	clock := store.NewFakeClock(time.Date(2031, 1, 2, 3, 4, 5, 0, time.UTC))
	s, mr, _ := openMini(t, Config{Clock: clock, Prefix: "slot"})
	ctx := context.Background()
	ref := store.Ref{Namespace: "ns1", ID: "slot-test-1"}
	_, err := s.Deliver(ctx, ref, store.Reply{ID: "early", Body: []byte("x")})
	require.NoError(t, err)
	before := mr.Keys()
	_, err = s.Register(ctx, &store.Correlation{ID: ref.ID, Namespace: "ns1", Timeout: time.Minute,
		Callback: store.Callback{Handler: "h"}, IdempotencyKey: "k"})
	require.NoError(t, err)
	_, err = s.ClaimDispatch(ctx, store.ClaimRequest{Instance: "i", Handlers: []string{"h"}, Now: clock.Now(), Lease: time.Minute, Limit: 10})
	require.NoError(t, err)
	tag := s.keys.tags[s.keys.shard(ref.String())]
	dref := store.Ref{Namespace: "ns1", ID: store.DeriveID("ns1", "k")}.String()
	idemTag := s.keys.tags[s.keys.shard(dref)]
	for _, k := range append(before, mr.Keys()...) {
		if k == s.keys.meta() || k == s.keys.live(s.instance) || k == s.keys.idem(s.keys.shard(dref), dref) {
			require.True(t, strings.HasPrefix(k, "{slot:0}") || strings.HasPrefix(k, idemTag), k)
			continue
		}
		require.True(t, strings.HasPrefix(k, tag+":"), "key %q is not under %s", k, tag)
	}
}

func TestCorruptRecordSetAside(t *testing.T) {
	clock := store.NewFakeClock(time.Date(2031, 1, 2, 3, 4, 5, 0, time.UTC))
	s, mr, _ := openMini(t, Config{Clock: clock})
	ctx := context.Background()
	for _, id := range []string{"good-1", "bad-json", "bad-header", "bad-id"} {
		_, err := s.Register(ctx, &store.Correlation{ID: id, Timeout: time.Minute})
		require.NoError(t, err)
	}
	key := func(id string) string { r := store.RefOf(id).String(); return s.keys.record(s.keys.shard(r), r) }
	mr.Set(key("bad-json"), header("", newToken())+"\x01{not json")
	mr.Set(key("bad-header"), "garbage")
	other, err := mr.Get(key("good-1"))
	require.NoError(t, err)
	mr.Set(key("bad-id"), other) // a record stored under another id

	clock.Add(2 * time.Minute)
	out, err := s.ExpireDue(ctx, clock.Now(), 10)
	require.ErrorIs(t, err, store.ErrCorrupt)
	for _, id := range []string{"bad-json", "bad-header", "bad-id"} {
		require.Contains(t, err.Error(), id)
	}
	require.Len(t, out, 1, "the good record is decided next to the corrupt ones")
	require.Equal(t, "good-1", out[0].ID)
	require.Equal(t, store.StateTimedOut, out[0].State)

	// The next pass does not meet them again.
	out, err = s.ExpireDue(ctx, clock.Now(), 10)
	require.NoError(t, err)
	require.Empty(t, out)

	for _, id := range []string{"bad-json", "bad-header", "bad-id"} {
		_, err := s.Get(ctx, store.RefOf(id))
		require.ErrorIs(t, err, store.ErrCorrupt, id)
		require.Contains(t, err.Error(), "set aside")
		require.True(t, mr.Exists(s.keys.quarantine(s.keys.shard(store.RefOf(id).String()))))
	}
	q := mr.HGet(s.keys.quarantine(s.keys.shard("default/bad-header")), "default/bad-header")
	require.Equal(t, "garbage", q, "the bytes are kept for an operator")

	// A corrupt record met by Get or Deliver is reported, never acted on.
	mr.Set(key("good-1"), "garbage too")
	_, err = s.Deliver(ctx, store.RefOf("good-1"), store.Reply{ID: "r"})
	require.ErrorIs(t, err, store.ErrCorrupt)
	_, err = s.Register(ctx, &store.Correlation{ID: "good-1", Timeout: time.Minute})
	require.ErrorIs(t, err, store.ErrCorrupt)
}

func TestShardMismatchRefused(t *testing.T) {
	s, mr, rdb := openMini(t, Config{Prefix: "sm", Shards: 4})
	_ = mr
	require.Equal(t, 4, s.Shards())
	_, err := New(context.Background(), rdb, Config{Prefix: "sm", Shards: 8, Logger: discard})
	require.Error(t, err)
	require.Contains(t, err.Error(), "created with 4 shards")
	other, err := New(context.Background(), rdb, Config{Prefix: "sm-other", Shards: 8, Logger: discard})
	require.NoError(t, err, "another prefix is another store")
	other.Close()
}

func TestConfigValidation(t *testing.T) {
	mr := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	defer rdb.Close()
	ctx := context.Background()
	for name, cfg := range map[string]Config{
		"brace in prefix": {Prefix: "a{b"},
		"shards":          {Shards: -1},
		"too many shards": {Shards: MaxShards + 1},
		"limits":          {Limits: store.Limits{MaxReplies: -1}},
	} {
		cfg.Logger = discard
		_, err := New(ctx, rdb, cfg)
		require.ErrorIs(t, err, store.ErrInvalid, name)
	}
	_, err := New(ctx, nil, Config{})
	require.ErrorIs(t, err, store.ErrInvalid)
}

// A write sent again after its answer was lost is recognised as already in
// while its token is among the record's 8 latest, even after other writes;
// later it is told to read again, and nothing is applied twice either way.
func TestUpdateResentAfterOtherWrites(t *testing.T) {
	s, _, _ := openMini(t, Config{Clock: store.NewFakeClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))})
	ctx := t.Context()
	_, err := s.Register(ctx, &store.Correlation{ID: "c", Pattern: store.PatternGather, Expect: 20, Timeout: time.Hour})
	require.NoError(t, err)

	// The lost write: its call is kept to be sent again.
	l, err := s.load(ctx, store.RefOf("c"))
	require.NoError(t, err)
	c := l.c.Clone()
	before := entriesOf(c)
	_, err = c.ApplyReply(store.Reply{From: "lost"}, s.clock.Now(), s.lim)
	require.NoError(t, err)
	lost, err := s.updateCall(l, c, before, true, newToken())
	require.NoError(t, err)
	answer := func() string {
		t.Helper()
		a, err := s.run(ctx, []call{lost})[0].Text()
		require.NoError(t, err)
		return a
	}
	require.Equal(t, "ok", answer())

	for i := range headerTokens {
		require.Equal(t, "done", answer(), "after %d other writes", i)
		_, err := s.Deliver(ctx, store.RefOf("c"), store.Reply{From: fmt.Sprint("other-", i)})
		require.NoError(t, err)
	}
	require.Equal(t, "moved", answer(), "after %d other writes the token has left the header", headerTokens)

	got, err := s.Get(ctx, store.RefOf("c"))
	require.NoError(t, err)
	require.Len(t, got.Replies, 1+headerTokens, "the lost write applied once")
	require.Equal(t, "lost", got.Replies[0].From)
}

func TestHeaderKeepsLatestTokens(t *testing.T) {
	h := header("", "aaaaaaaaaaaaaaaa")
	require.Len(t, h, headerLen)
	require.Equal(t, "0000000000000001aaaaaaaaaaaaaaaa"+strings.Repeat(noToken, headerTokens-1), h)
	h = header(h, "bbbbbbbbbbbbbbbb")
	require.Equal(t, "0000000000000002bbbbbbbbbbbbbbbbaaaaaaaaaaaaaaaa"+strings.Repeat(noToken, headerTokens-2), h)
	w, ok := parseHeader(h)
	require.True(t, ok)
	require.EqualValues(t, 2, w)
}

// Import writes a decided record as it is, indexed; the same again changes
// nothing; another record under the ID is a conflict.
func TestImport(t *testing.T) {
	clock := store.NewFakeClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	src, _, _ := openMini(t, Config{Clock: clock})
	dst, _, _ := openMini(t, Config{Clock: clock})
	ctx := t.Context()
	_, err := src.Register(ctx, &store.Correlation{ID: "done", Timeout: time.Minute, IdempotencyKey: "k", Callback: store.Callback{Handler: "h"}})
	require.NoError(t, err)
	_, err = src.Deliver(ctx, store.RefOf("done"), store.Reply{Body: []byte(`"ok"`)})
	require.NoError(t, err)
	c, err := src.Get(ctx, store.RefOf("done"))
	require.NoError(t, err)

	created, err := dst.Import(ctx, c)
	require.NoError(t, err)
	require.True(t, created)
	created, err = dst.Import(ctx, c)
	require.NoError(t, err)
	require.False(t, created, "importing twice changes nothing")
	got, err := dst.Get(ctx, store.RefOf("done"))
	require.NoError(t, err)
	require.Equal(t, c.Version, got.Version)
	require.Equal(t, store.StateCompleted, got.State)
	st, err := dst.Stats(ctx, "")
	require.NoError(t, err)
	require.EqualValues(t, 1, st.Total().States[store.StateCompleted])
	require.EqualValues(t, 1, st.Total().Dispatch[store.DispatchPending])
	claimed, err := dst.ClaimDispatch(ctx, store.ClaimRequest{Instance: "i", Handlers: []string{"h"}, Now: clock.Now(), Lease: time.Minute, Limit: 10})
	require.NoError(t, err)
	require.Len(t, claimed, 1, "the imported outcome is indexed for dispatch")

	other := c.Clone()
	other.Owner = "someone else"
	_, err = dst.Import(ctx, other)
	require.ErrorIs(t, err, store.ErrConflict)
	_, err = dst.Import(ctx, nil)
	require.ErrorIs(t, err, store.ErrInvalid)
}
