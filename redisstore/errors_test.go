package redisstore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/corrstore/corrstore/store"
)

// bumpHeader is a go-redis hook that plays another process writing a
// record before each of this store's compare-and-sets: it changes the
// record's header, so every compare-and-set finds it moved.
type bumpHeader struct {
	mr  *miniredis.Miniredis
	key string
	n   atomic.Int64
}

func (h *bumpHeader) bump() {
	h.n.Add(1)
	v, err := h.mr.Get(h.key)
	if err != nil || len(v) < headerLen {
		return
	}
	var b [8]byte
	_, _ = rand.Read(b[:])
	h.mr.Set(h.key, v[:16]+hex.EncodeToString(b[:])+v[32:])
}

func (h *bumpHeader) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *bumpHeader) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if n := strings.ToLower(cmd.Name()); n == "evalsha" || n == "eval" {
			h.bump()
		}
		return next(ctx, cmd)
	}
}
func (h *bumpHeader) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		for _, c := range cmds {
			if n := strings.ToLower(c.Name()); n == "evalsha" || n == "eval" {
				h.bump()
				break
			}
		}
		return next(ctx, cmds)
	}
}

// Contention that outlives ctx is the store not answering: ErrUnavailable,
// with ctx's error, never a bare error; so is a wait for this process's own
// writers to the ref.
func TestContentionUntilCtxEnds(t *testing.T) {
	s, mr, rdb := openMini(t, Config{Clock: store.NewFakeClock(time.Date(2031, 1, 1, 0, 0, 0, 0, time.UTC))})
	ref := store.Ref{Namespace: "ns", ID: "hot"}
	_, err := s.Register(t.Context(), &store.Correlation{ID: ref.ID, Namespace: ref.Namespace, Pattern: store.PatternGather, Expect: 5, Timeout: time.Hour})
	require.NoError(t, err)

	bump := &bumpHeader{mr: mr, key: s.keys.record(s.keys.shard(ref.String()), ref.String())}
	rdb.AddHook(bump)
	for name, op := range map[string]func(ctx context.Context) error{
		"Deliver": func(ctx context.Context) error { _, err := s.Deliver(ctx, ref, store.Reply{From: "a"}); return err },
		"Extend": func(ctx context.Context) error {
			_, err := s.Extend(ctx, ref, s.clock.Now().Add(2*time.Hour))
			return err
		},
		"Cancel": func(ctx context.Context) error { _, err := s.Cancel(ctx, ref, "stop"); return err },
	} {
		ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
		err := op(ctx)
		cancel()
		require.ErrorIs(t, err, store.ErrUnavailable, name)
		require.ErrorIs(t, err, context.DeadlineExceeded, name)
	}
	require.Greater(t, bump.n.Load(), int64(10), "the writes were retried until ctx ended")
	c, err := s.Get(t.Context(), ref)
	require.NoError(t, err)
	require.Empty(t, c.Replies, "nothing applied")

	unlock, err := s.locks.lock(t.Context(), ref.String())
	require.NoError(t, err)
	defer unlock()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel()
	_, err = s.Deliver(ctx, ref, store.Reply{From: "b"})
	require.ErrorIs(t, err, store.ErrUnavailable)
	require.ErrorIs(t, err, context.DeadlineExceeded)
}

// A server that does not answer makes every method return ErrUnavailable.
func TestServerGoneIsUnavailable(t *testing.T) {
	mr := miniredis.RunT(t)
	// Once down, each connection hangs up at once (a refused dial would
	// leave go-redis retrying dials in the background past the test).
	var down atomic.Bool
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr(), MaxRetries: -1, Protocol: 2, DisableIdentity: true,
		Dialer: func(ctx context.Context, network, addr string) (net.Conn, error) {
			if down.Load() {
				a, b := net.Pipe()
				b.Close()
				return a, nil
			}
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		}})
	t.Cleanup(func() { rdb.Close() })
	clock := store.NewFakeClock(time.Date(2031, 1, 1, 0, 0, 0, 0, time.UTC))
	s, err := New(t.Context(), rdb, Config{Clock: clock, Logger: discard})
	require.NoError(t, err)
	defer s.Close()
	_, err = s.Register(t.Context(), &store.Correlation{ID: "x", Timeout: time.Hour, Callback: store.Callback{Handler: "h"}})
	require.NoError(t, err)
	down.Store(true)
	mr.Close()

	ctx, ref := t.Context(), store.RefOf("x")
	now := clock.Now()
	for name, op := range map[string]func() error{
		"Register": func() error { _, err := s.Register(ctx, &store.Correlation{ID: "y"}); return err },
		"Deliver":  func() error { _, err := s.Deliver(ctx, ref, store.Reply{}); return err },
		"Get":      func() error { _, err := s.Get(ctx, ref); return err },
		"Extend":   func() error { _, err := s.Extend(ctx, ref, now.Add(time.Hour)); return err },
		"Cancel":   func() error { _, err := s.Cancel(ctx, ref, ""); return err },
		"Expire":   func() error { _, err := s.Expire(ctx, ref, ""); return err },
		"ExpireDue": func() error {
			_, err := s.ExpireDue(ctx, now, 10)
			return err
		},
		"ClaimDispatch": func() error {
			_, err := s.ClaimDispatch(ctx, store.ClaimRequest{Instance: "i", Handlers: []string{"h"}, Now: now, Lease: time.Minute, Limit: 10})
			return err
		},
		"AckDispatch": func() error { _, err := s.AckDispatch(ctx, ref, store.Claim{Instance: "i", Attempt: 1}); return err },
		"NackDispatch": func() error {
			_, err := s.NackDispatch(ctx, ref, store.Claim{Instance: "i", Attempt: 1}, "e", time.Time{})
			return err
		},
		"Redispatch":       func() error { _, err := s.Redispatch(ctx, ref); return err },
		"List":             func() error { _, err := s.List(ctx, store.Filter{}); return err },
		"Stats":            func() error { _, err := s.Stats(ctx, ""); return err },
		"Purge":            func() error { _, err := s.Purge(ctx, now, 10); return err },
		"DropEarlyReplies": func() error { _, err := s.DropEarlyReplies(ctx, now, 10); return err },
		"Subscribe":        func() error { _, err := s.Subscribe(ctx); return err },
		"Secret":           func() error { _, err := s.Secret(ctx, "reply-token"); return err },
		"Import": func() error {
			_, err := s.Import(ctx, &store.Correlation{ID: "z", Namespace: "default", Pattern: store.PatternSingle, State: store.StatePending,
				Deadline: now.Add(time.Hour), CreatedAt: now, UpdatedAt: now, Version: 1, Dispatch: store.Dispatch{State: store.DispatchNone}})
			return err
		},
	} {
		err := op()
		require.ErrorIs(t, err, store.ErrUnavailable, name)
	}
	_, err = New(ctx, rdb, Config{Logger: discard})
	require.ErrorIs(t, err, store.ErrUnavailable)
	_, err = Upgrade(ctx, rdb, UpgradeOptions{Logger: discard})
	require.ErrorIs(t, err, store.ErrUnavailable)
}

func TestSecret(t *testing.T) {
	a, mr, rdb := openMini(t, Config{Prefix: "sec"})
	b, err := New(t.Context(), rdb, Config{Prefix: "sec", Logger: discard})
	require.NoError(t, err)
	defer b.Close()
	x, err := a.Secret(t.Context(), "reply-token")
	require.NoError(t, err)
	require.Len(t, x, 32)
	y, err := b.Secret(t.Context(), "reply-token")
	require.NoError(t, err)
	require.Equal(t, x, y, "every store on the prefix gets the same secret")
	z, err := a.Secret(t.Context(), "other")
	require.NoError(t, err)
	require.NotEqual(t, x, z)
	require.True(t, mr.Exists("{sec:0}:secret:reply-token"))
	_, err = a.Secret(t.Context(), "Bad Name")
	require.ErrorIs(t, err, store.ErrInvalid)
	mr.Set("{sec:0}:secret:short", "abc")
	_, err = a.Secret(t.Context(), "short")
	require.ErrorIs(t, err, store.ErrCorrupt)
}

// Each store keeps a liveness key from New to Close; a schema changed
// under it stops it.
func TestLiveness(t *testing.T) {
	s, mr, _ := openMini(t, Config{Prefix: "lv"})
	key := s.keys.live(s.instance)
	require.True(t, mr.Exists(key))
	require.Greater(t, mr.TTL(key), time.Duration(0))
	require.LessOrEqual(t, mr.TTL(key), liveTTL)
	v, err := mr.Get(key)
	require.NoError(t, err)
	require.Contains(t, v, "pid=")

	mr.FastForward(10 * time.Second)
	require.NoError(t, s.live.beat(t.Context(), s, "again"))
	require.Equal(t, liveTTL, mr.TTL(key), "refreshed")

	mr.HSet(s.keys.meta(), "schema", "4")
	require.NoError(t, s.live.beat(t.Context(), s, "again"))
	_, err = s.Get(t.Context(), store.RefOf("x"))
	require.ErrorIs(t, err, store.ErrUnavailable)
	var se *SchemaError
	require.ErrorAs(t, err, &se)
	require.ErrorContains(t, err, "corrstore: redis prefix lv has schema 4; this build reads up to 3: upgrade corrstore")

	require.NoError(t, s.Close())
	require.False(t, mr.Exists(key), "Close removes it")
	_, err = s.Get(t.Context(), store.RefOf("x"))
	require.ErrorIs(t, err, store.ErrClosed)
}

func TestNewerSchemaRefused(t *testing.T) {
	mr := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	defer rdb.Close()
	mr.HSet("{nx:0}:meta", "shards", "16")
	mr.HSet("{nx:0}:meta", "schema", "4")
	_, err := New(t.Context(), rdb, Config{Prefix: "nx", Logger: discard})
	require.EqualError(t, err, "corrstore: redis prefix nx has schema 4; this build reads up to 3: upgrade corrstore")
	_, err = Upgrade(t.Context(), rdb, UpgradeOptions{Prefix: "nx", Logger: discard})
	require.EqualError(t, err, "corrstore: redis prefix nx has schema 4; this build reads up to 3: upgrade corrstore")
	require.Empty(t, mr.HGet("{nx:0}:meta", "upgrading"))

	_, err = Upgrade(t.Context(), rdb, UpgradeOptions{Prefix: "none", Logger: discard})
	require.ErrorIs(t, err, store.ErrNotFound, "no store there: a mistyped prefix")
	require.ErrorContains(t, err, "nothing to upgrade")
}

// Forced, an upgrade goes on past liveness keys.
func TestUpgradeForced(t *testing.T) {
	mr := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	defer rdb.Close()
	mr.HSet("{f:0}:meta", "shards", "4")
	mr.HSet("{f:0}:meta", "schema", "1")
	mr.Set("{f:0}:live:abc", "host=h")
	mr.SetTTL("{f:0}:live:abc", 10*time.Second)
	_, err := Upgrade(t.Context(), rdb, UpgradeOptions{Prefix: "f", Logger: discard})
	require.ErrorIs(t, err, ErrInstancesAlive)
	_, err = Upgrade(t.Context(), rdb, UpgradeOptions{Prefix: "f", Shards: 8, Logger: discard, Force: true})
	require.ErrorIs(t, err, store.ErrInvalid, "the prefix has 4 shards")
	rep, err := Upgrade(t.Context(), rdb, UpgradeOptions{Prefix: "f", Logger: discard, Force: true})
	require.NoError(t, err)
	require.Zero(t, rep.Moved())
	require.Equal(t, "3", mr.HGet("{f:0}:meta", "schema"))
	require.Empty(t, mr.HGet("{f:0}:meta", "upgrading"))
}

func TestEventWire(t *testing.T) {
	c := &store.Correlation{ID: "e", Namespace: "ns", State: store.StatePending, Version: 3,
		Deadline: time.Date(2031, 1, 1, 0, 0, 0, 0, time.UTC), Dispatch: store.Dispatch{State: store.DispatchNone},
		Events: []store.TimelineEvent{{Type: store.EventExtended}}}
	e, err := decodeEvent(eventPayload(c))
	require.NoError(t, err)
	require.Equal(t, store.EventOf(c), e)
	require.Equal(t, store.ChangeExtended, e.Kind)
	for _, bad := range []string{"{", `{"id":"x"}`, `{"namespace":"ns","id":"bad id"}`} {
		_, err := decodeEvent(bad)
		require.Error(t, err, bad)
	}
	_ = errors.New
}

// A meta hash lost under a running store (a flush) is written again, not
// taken for a schema change.
func TestLivenessRewritesLostMeta(t *testing.T) {
	s, mr, _ := openMini(t, Config{Prefix: "lost", Shards: 4})
	mr.FlushAll()
	require.NoError(t, s.live.beat(t.Context(), s, "v"))
	require.Equal(t, "3", mr.HGet(s.keys.meta(), "schema"))
	require.Equal(t, "4", mr.HGet(s.keys.meta(), "shards"))
	_, err := s.Get(t.Context(), store.RefOf("x"))
	require.ErrorIs(t, err, store.ErrNotFound, "the store goes on")
}

// A newer corrstore's unfinished upgrade is a newer schema to this one.
func TestNewerUpgradeRefused(t *testing.T) {
	mr := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	defer rdb.Close()
	mr.HSet("{nu:0}:meta", "shards", "16")
	mr.HSet("{nu:0}:meta", "schema", "3")
	mr.HSet("{nu:0}:meta", "upgrading", "4")
	const msg = "corrstore: redis prefix nu has schema 4; this build reads up to 3: upgrade corrstore"
	_, err := New(t.Context(), rdb, Config{Prefix: "nu", Logger: discard})
	require.EqualError(t, err, msg)
	_, err = Upgrade(t.Context(), rdb, UpgradeOptions{Prefix: "nu", Logger: discard})
	require.EqualError(t, err, msg)
}
