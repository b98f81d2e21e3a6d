//go:build unverified

package redisstore_test

import (
	"context"
	"log/slog"
	"testing"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/corrstore/corrstore/reaper/reapertest"
	"github.com/corrstore/corrstore/redisstore"
	"github.com/corrstore/corrstore/store"
	"github.com/corrstore/corrstore/store/storetest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// newMiniredis starts a miniredis for one test and a client on it; both
// are stopped at cleanup.
func newMiniredis(t *testing.T) (*miniredis.Miniredis, *redis.Client) {
	t.Helper()
	mr := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	t.Cleanup(func() { rdb.Close() })
	return mr, rdb
}

// openOn opens a store on rdb; it is closed at cleanup.
func openOn(t *testing.T, rdb redis.UniversalClient, cfg redisstore.Config) *redisstore.Store {
	t.Helper()
	s, err := redisstore.New(context.Background(), rdb, cfg)
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })
	return s
}

func TestConformanceMiniredis(t *testing.T) {
	storetest.Run(t, func(t *testing.T, cfg storetest.Config) store.Store {
		_, rdb := newMiniredis(t)
		return openOn(t, rdb, redisstore.Config{Clock: cfg.Clock, Limits: cfg.Limits, Logger: quiet})
	})
}

// quiet drops log lines: miniredis has no CONFIG GET, so every store
// would warn that durability is not checked.
var quiet = slog.New(slog.DiscardHandler)

// TestReaperExactlyOnceMiniredis runs the reaper's multi-reaper test with
// each reaper on its own store and its own client, as replicas would be.
func TestReaperExactlyOnceMiniredis(t *testing.T) {
	mr := miniredis.RunT(t)
	clock := store.NewFakeClock(storetest.Epoch)
	var stores []store.Store
	for range reapertest.Reapers {
		rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
		t.Cleanup(func() { rdb.Close() })
		stores = append(stores, openOn(t, rdb, redisstore.Config{Clock: clock, Logger: quiet}))
	}
	reapertest.ExactlyOnce(t, stores, clock)
}
