package redisstore_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/corrstore/corrstore/internal/testenv"
	"github.com/corrstore/corrstore/redisstore"
	"github.com/corrstore/corrstore/redisstore/redistest"
	"github.com/corrstore/corrstore/store"
)

// restartKills is how many times the restart tests kill the server:
// CORRSTORE_REDIS_KILLS when set (make redis-restart), def otherwise.
func restartKills(t *testing.T, def int) int { return testenv.Int(t, "CORRSTORE_REDIS_KILLS", def) }

// TestRestartAppendfsyncAlways kills redis-server with SIGKILL in the middle
// of concurrent registrations, restarts it from its AOF, and requires every
// registration that returned before the kill to be there, intact. The data
// is on disk and appendfsync is always: Redis writes and fsyncs the AOF
// before it answers.
//
// A SIGKILL of the server leaves the AOF it wrote in the OS cache, so the
// rounds alone mostly pass under everysec too (it loses only what the
// server held back behind a slow fsync; docs/BENCHMARKS.md): the test asserts
// the setting itself, before the rounds and on the server they restarted.
func TestRestartAppendfsyncAlways(t *testing.T) {
	t.Parallel()
	srv := redistest.StartServer(t, redistest.ServerOptions{AppendFsync: "always"})
	requireFsyncAlways(t, srv)
	kills := restartKills(t, 2)
	acked, lost := restartRounds(t, srv, kills, true)
	require.Empty(t, lost, "acknowledged registrations lost under appendfsync always")
	requireFsyncAlways(t, srv)
	t.Logf("appendfsync always: %d kill -9 under load, %d acknowledged registrations, none lost", kills, acked)
}

// TestRestartEverysec measures what appendfsync everysec loses across a
// SIGKILL of the server: it reports the figure rather than asserting on it
// (see docs/BENCHMARKS.md), and checks that what survived is intact.
// One kill in make test; make redis-restart does more.
func TestRestartEverysec(t *testing.T) {
	t.Parallel()
	srv := redistest.StartServer(t, redistest.ServerOptions{AppendFsync: "everysec"})
	kills := restartKills(t, 1)
	acked, lost := restartRounds(t, srv, kills, false)
	t.Logf("appendfsync everysec: %d kill -9 under load, %d acknowledged registrations, %d lost (%v)", kills, acked, len(lost), lost)
}

// requireFsyncAlways fails t unless srv writes an AOF and fsyncs it before
// each answer (appendonly yes, appendfsync always), as strict mode requires.
func requireFsyncAlways(t *testing.T, srv *redistest.Server) {
	t.Helper()
	rdb := srv.NewClient(t, nil)
	for setting, want := range map[string]string{"appendonly": "yes", "appendfsync": "always"} {
		got, err := rdb.ConfigGet(t.Context(), setting).Result()
		require.NoError(t, err, "CONFIG GET %s", setting)
		require.Equal(t, want, got[setting], "%s on %s: the restart test checks durability only with an AOF fsync'd before each answer", setting, srv.Addr())
	}
}

// restartRounds runs kills rounds of: 32 goroutines registering, SIGKILL
// after a random number (100 to 500) of acknowledgements, restart, then a
// Get of every registration acknowledged in the round. It returns how many
// were acknowledged in all, and the IDs missing after a restart.
func restartRounds(t *testing.T, srv *redistest.Server, kills int, strict bool) (int, []string) {
	t.Helper()
	rng := rand.New(rand.NewPCG(uint64(kills), 42))
	logger := warnLogger(t)
	if !strict {
		logger = slog.New(slog.DiscardHandler) // it would warn of everysec each round
	}
	const prefix = "restart"
	total := 0
	var lost []string
	for round := range kills {
		killAt := 100 + rng.IntN(401)
		acked := registerUntilKilled(t, srv, round, killAt, redisstore.Config{Prefix: prefix, Strict: strict, Logger: logger})
		total += len(acked)

		srv.Restart()
		rdb := srv.NewClient(t, nil)
		s, err := redisstore.New(t.Context(), rdb, redisstore.Config{Prefix: prefix, Strict: strict, Logger: logger})
		require.NoError(t, err, "the store opens on the restarted server")
		for _, id := range acked {
			c, err := s.Get(t.Context(), store.RefOf(id))
			if errors.Is(err, store.ErrNotFound) {
				lost = append(lost, id)
				continue
			}
			require.NoError(t, err, "get %s after the restart", id)
			require.Equal(t, store.StatePending, c.State, id)
			require.Equal(t, "restart-test", c.Destination, id)
			require.Equal(t, restartData(id), string(c.Callback.Data), id)
		}
		require.NoError(t, s.Close())
		require.NoError(t, rdb.Close())
	}
	return total, lost
}

func restartData(id string) string { return `{"id":"` + id + `"}` }

// registerUntilKilled registers from 32 goroutines and kills the server
// once killAt registrations have returned; it returns the IDs of those that
// returned without error. No retries: a registration either returned
// before the kill or failed.
func registerUntilKilled(t *testing.T, srv *redistest.Server, round, killAt int, cfg redisstore.Config) []string {
	t.Helper()
	opt := srv.Options() // the harness's long timeouts: a VM stall is not the kill
	opt.MaxRetries, opt.PoolSize = -1, 32
	rdb := redis.NewClient(opt)
	defer rdb.Close()
	s, err := redisstore.New(t.Context(), rdb, cfg)
	require.NoError(t, err)
	defer s.Close()

	var (
		mu     sync.Mutex
		acked  []string
		killed bool
		early  error // an error before the kill
	)
	kill := make(chan struct{})
	var killOnce sync.Once
	var wg sync.WaitGroup
	for w := range 32 {
		wg.Go(func() {
			for i := 0; ; i++ {
				id := fmt.Sprintf("k%d-w%d-%d", round, w, i)
				_, err := s.Register(context.Background(), &store.Correlation{
					ID: id, Timeout: time.Hour, Destination: "restart-test",
					Callback: store.Callback{Handler: "h", Data: []byte(restartData(id))},
				})
				mu.Lock()
				if err != nil {
					if !killed && early == nil {
						early = fmt.Errorf("register %s before the kill: %w", id, err)
						killOnce.Do(func() { close(kill) })
					}
					mu.Unlock()
					return
				}
				acked = append(acked, id)
				if len(acked) == killAt {
					killOnce.Do(func() { close(kill) })
				}
				mu.Unlock()
			}
		})
	}
	<-kill
	mu.Lock()
	killed = true // from here on, errors are the kill's
	mu.Unlock()
	srv.Kill()
	wg.Wait()
	require.NoError(t, early)
	require.GreaterOrEqual(t, len(acked), killAt)
	return acked
}
