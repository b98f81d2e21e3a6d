package redisstore_test

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/corrstore/corrstore/internal/race"
	"github.com/corrstore/corrstore/internal/testenv"
	"github.com/corrstore/corrstore/reaper/reapertest"
	"github.com/corrstore/corrstore/redisstore"
	"github.com/corrstore/corrstore/redisstore/redistest"
	"github.com/corrstore/corrstore/store"
	"github.com/corrstore/corrstore/store/storetest"
)

// The tests on a real redis-server (this file, retry_test.go,
// restart_test.go, bench_test.go) start their servers through redistest:
// skipped with a message when redis-server is not installed, never a server
// started by hand.

var prefixes atomic.Int64

// exactlyOnceN is how many correlations the reapers' exactly-once test
// decides here: 500 (make test, without -race; 1,000 took 86 s on the
// server and 63 s on the cluster beside the rest of its step), or
// CORRSTORE_REDIS_EXACTLY_ONCE when set (make test-redis: reapertest's
// 5,000).
func exactlyOnceN(t *testing.T) int {
	return testenv.Int(t, "CORRSTORE_REDIS_EXACTLY_ONCE", 500)
}

// uniquePrefix isolates a store on a server other tests share.
func uniquePrefix(kind string) string {
	return fmt.Sprintf("%s%d", kind, prefixes.Add(1))
}

// warnLogger passes the store's warnings to the test output.
func warnLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// openReal opens a store on rdb in strict mode, so that it refuses a server
// whose settings could lose acknowledged correlations: every harness
// server has appendonly yes, noeviction and (unless a test says otherwise)
// appendfsync always. The store is closed at cleanup.
func openReal(t testing.TB, rdb redis.UniversalClient, cfg redisstore.Config) *redisstore.Store {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = warnLogger(t)
	}
	s, err := redisstore.New(context.Background(), rdb, cfg)
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })
	return s
}

// TestRealServer runs the conformance suite and the reapers' exactly-once
// test on a standalone redis-server (Debian's 7.0, appendonly yes,
// appendfsync always). Each test has a client and a key prefix of its own.
// The data lives on tmpfs: these tests are about semantics, and an fsync of
// this machine's disk (25-100 ms) would make them take minutes;
// restart_test.go is the one about durability, on disk.
//
// Without -race only: make test's second step runs both subtests (500
// correlations under -race took two minutes of make test's ten; the race
// detector still sees this store's concurrency in its unit tests on
// miniredis and the restart tests).
func TestRealServer(t *testing.T) {
	race.SkipTest(t, "runs without -race only: make test's second step, make test-redis")
	t.Parallel() // with the other real-server tests: they wait on round trips more than on the CPU
	srv := redistest.StartServer(t, redistest.ServerOptions{Dir: redistest.MemDir(t)})

	t.Run("Conformance", func(t *testing.T) {
		storetest.Run(t, func(t *testing.T, cfg storetest.Config) store.Store {
			rdb := srv.NewClient(t, nil)
			return openReal(t, rdb, redisstore.Config{Prefix: uniquePrefix("conf"), Strict: true, Clock: cfg.Clock, Limits: cfg.Limits})
		})
	})

	t.Run("ExactlyOnce", func(t *testing.T) {
		clock := store.NewFakeClock(storetest.Epoch)
		prefix := uniquePrefix("eo")
		stores := make([]store.Store, reapertest.Reapers)
		for i := range stores {
			stores[i] = openReal(t, srv.NewClient(t, nil), redisstore.Config{Prefix: prefix, Strict: true, Clock: clock})
		}
		reapertest.ExactlyOnceN(t, stores, clock, exactlyOnceN(t))
	})

	t.Run("TwoStores", func(t *testing.T) {
		testTwoStores(t, func() redis.UniversalClient { return srv.NewClient(t, nil) }, uniquePrefix("two"))
	})

	t.Run("Upgrade", func(t *testing.T) {
		testUpgrade(t, srv.NewClient(t, nil), uniquePrefix)
		testUpgradeSchema2(t, srv.NewClient(t, nil), uniquePrefix)
	})
}

// TestRealCluster runs the same on a Redis Cluster of 3 masters started for
// this test (all its subtests share it; startup takes seconds), through
// redis.ClusterClient. Without -race only, like TestRealServer.
func TestRealCluster(t *testing.T) {
	race.SkipTest(t, "runs without -race only: make test's second step, make test-redis")
	t.Parallel()
	cluster := redistest.StartCluster(t, redistest.ClusterOptions{Dir: redistest.MemDir(t)})

	t.Run("Conformance", func(t *testing.T) {
		storetest.Run(t, func(t *testing.T, cfg storetest.Config) store.Store {
			rdb := cluster.NewClient(t, nil)
			return openReal(t, rdb, redisstore.Config{Prefix: uniquePrefix("conf"), Strict: true, Clock: cfg.Clock, Limits: cfg.Limits})
		})
	})

	t.Run("ExactlyOnce", func(t *testing.T) {
		clock := store.NewFakeClock(storetest.Epoch)
		prefix := uniquePrefix("eo")
		stores := make([]store.Store, reapertest.Reapers)
		for i := range stores {
			stores[i] = openReal(t, cluster.NewClient(t, nil), redisstore.Config{Prefix: prefix, Strict: true, Clock: clock})
		}
		reapertest.ExactlyOnceN(t, stores, clock, exactlyOnceN(t))
	})

	t.Run("TwoStores", func(t *testing.T) {
		testTwoStores(t, func() redis.UniversalClient { return cluster.NewClient(t, nil) }, uniquePrefix("two"))
	})

	t.Run("Upgrade", func(t *testing.T) {
		testUpgrade(t, cluster.NewClient(t, nil), uniquePrefix)
		testUpgradeSchema2(t, cluster.NewClient(t, nil), uniquePrefix)
	})

	t.Run("ShardsSpreadOverMasters", func(t *testing.T) {
		// The point of the hash tags: one store's keys land on every master,
		// and every script still touches one slot (a CROSSSLOT error would
		// have failed the suite above).
		ctx := t.Context()
		rdb := cluster.NewClient(t, nil)
		prefix := "spread" // fixed, so which masters its shards land on is too
		s := openReal(t, rdb, redisstore.Config{Prefix: prefix, Strict: true, Clock: store.NewFakeClock(storetest.Epoch)})
		for i := range 64 {
			_, err := s.Register(ctx, &store.Correlation{ID: fmt.Sprintf("spread-%d", i)})
			require.NoError(t, err)
		}
		err := rdb.ForEachMaster(ctx, func(ctx context.Context, node *redis.Client) error {
			keys, err := node.Keys(ctx, "{"+prefix+":*").Result()
			if err != nil {
				return err
			}
			if len(keys) == 0 {
				return fmt.Errorf("master %s holds none of the store's keys", node.Options().Addr)
			}
			return nil
		})
		require.NoError(t, err)
	})

	t.Run("StrictRefusesEverysec", func(t *testing.T) {
		// Every master is checked: one node switched to everysec is enough
		// for strict mode to refuse, naming it.
		ctx := t.Context()
		rdb := cluster.NewClient(t, nil)
		addr := cluster.Addrs()[1]
		node := redis.NewClient(&redis.Options{Addr: addr, DialTimeout: redistest.TestTimeout, ReadTimeout: redistest.TestTimeout})
		defer node.Close()
		require.NoError(t, node.ConfigSet(ctx, "appendfsync", "everysec").Err())
		defer func() { require.NoError(t, node.ConfigSet(context.Background(), "appendfsync", "always").Err()) }()
		_, err := redisstore.New(ctx, rdb, redisstore.Config{Prefix: uniquePrefix("strict"), Strict: true, Logger: warnLogger(t)})
		require.ErrorIs(t, err, redisstore.ErrNotDurable)
		require.ErrorContains(t, err, addr)
		require.ErrorContains(t, err, "everysec")
	})
}
