package redisstore_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/corrstore/corrstore/internal/race"
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
	rdb := redis.NewClient(miniOptions(mr))
	t.Cleanup(func() { rdb.Close() })
	return mr, rdb
}

// miniOptions are the client options for a miniredis. It runs each Lua
// script in gopher-lua, compiling it on every call, one at a time under its
// global lock: the concurrent tests queue for seconds, so the timeouts are
// long (a real redis-server answers these in microseconds). The dial's too:
// on a loaded machine a loopback dial outlasted go-redis's default 5 s in
// make test.
func miniOptions(mr *miniredis.Miniredis) *redis.Options {
	return &redis.Options{Addr: mr.Addr(), DialTimeout: time.Minute, ReadTimeout: time.Minute, WriteTimeout: time.Minute}
}

// openOn opens a store on rdb; it is closed at cleanup.
func openOn(t *testing.T, rdb redis.UniversalClient, cfg redisstore.Config) *redisstore.Store {
	t.Helper()
	s, err := redisstore.New(context.Background(), rdb, cfg)
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })
	return s
}

// TestMiniredis runs the conformance suite on miniredis. Without -race
// only: under -race, gopher-lua (miniredis's Lua, which compiles every
// script call) is so slow that the suite takes over ten minutes. make test
// runs it in its second step, with the real server and the cluster.
func TestMiniredis(t *testing.T) {
	race.SkipTest(t, "miniredis under -race takes over ten minutes: make test runs this test without -race")
	t.Parallel()
	t.Run("Conformance", func(t *testing.T) {
		storetest.Run(t, func(t *testing.T, cfg storetest.Config) store.Store {
			_, rdb := newMiniredis(t)
			return openOn(t, rdb, redisstore.Config{Clock: cfg.Clock, Limits: cfg.Limits, Logger: quiet})
		})
	})
	t.Run("TwoStores", func(t *testing.T) {
		mr, _ := newMiniredis(t)
		testTwoStores(t, func() redis.UniversalClient {
			rdb := redis.NewClient(miniOptions(mr))
			t.Cleanup(func() { rdb.Close() })
			return rdb
		}, "two")
	})
}

// quiet drops log lines: miniredis has no CONFIG GET, so every store
// would warn that durability is not checked.
var quiet = slog.New(slog.DiscardHandler)

// The reapers' exactly-once test runs on the real server and the cluster
// (real_test.go): on miniredis, which compiles every script call in
// gopher-lua under one lock, its 5,000 correlations take five minutes.
