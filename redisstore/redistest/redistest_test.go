package redistest_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/corrstore/corrstore/internal/race"
	"github.com/corrstore/corrstore/redisstore/redistest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(redistest.StopSharedAfter(m)) }

// requireGone requires that no process has pid any more.
func requireGone(t *testing.T, pid int) {
	t.Helper()
	require.NotZero(t, pid)
	err := syscall.Kill(pid, 0)
	require.ErrorIs(t, err, syscall.ESRCH, "process %d is still there", pid)
}

func TestServerKillRestart(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s := redistest.StartServer(t, redistest.ServerOptions{})
	rdb := s.NewClient(t, nil)

	require.Equal(t, "yes", configGet(t, rdb, "appendonly"))
	require.Equal(t, "always", configGet(t, rdb, "appendfsync"))
	require.Equal(t, "noeviction", configGet(t, rdb, "maxmemory-policy"))
	require.DirExists(t, filepath.Join(s.Dir(), "appendonlydir"))

	for i := range 100 {
		require.NoError(t, rdb.Set(ctx, fmt.Sprintf("k%d", i), i, 0).Err())
	}
	pid := s.PID()
	s.Kill()
	requireGone(t, pid)
	require.Zero(t, s.PID())
	dead := redis.NewClient(&redis.Options{Addr: s.Addr(), MaxRetries: -1})
	require.Error(t, dead.Ping(ctx).Err(), "the server was killed")
	require.NoError(t, dead.Close())
	s.Kill() // killing a stopped server is a no-op

	s.Restart()
	require.NotEqual(t, pid, s.PID())
	// A new client: go-redis's pool remembers the dial errors of the old one.
	rdb = s.NewClient(t, nil)
	for i := range 100 {
		v, err := rdb.Get(ctx, fmt.Sprintf("k%d", i)).Int()
		require.NoError(t, err, "k%d lost across kill -9 and restart with appendfsync always", i)
		require.Equal(t, i, v)
	}
	require.Equal(t, "0", s.Info(t, "persistence")["loading"])
}

func TestServerOptions(t *testing.T) {
	t.Parallel()
	s := redistest.StartServer(t, redistest.ServerOptions{AppendFsync: "everysec", Args: []string{"--maxmemory-policy", "allkeys-lru"}})
	rdb := s.NewClient(t, nil)
	require.Equal(t, "everysec", configGet(t, rdb, "appendfsync"))
	require.Equal(t, "allkeys-lru", configGet(t, rdb, "maxmemory-policy"))
}

// TestServerStoppedAtCleanup: the process is gone once the test that
// started it is over, failed or not.
func TestServerStoppedAtCleanup(t *testing.T) {
	t.Parallel()
	var pid int
	var dir string
	t.Run("owner", func(t *testing.T) {
		s := redistest.StartServer(t, redistest.ServerOptions{})
		pid, dir = s.PID(), s.Dir()
	})
	requireGone(t, pid)
	_, err := os.Stat(dir)
	require.True(t, errors.Is(err, os.ErrNotExist), "the data directory is removed with the test's TempDir")
}

// TestCluster starts a cluster owned by a subtest, checks it, and that its
// nodes are gone once the subtest is over.
func TestCluster(t *testing.T) {
	race.SkipTest(t, "make test's second step runs the harness's cluster tests, without -race")
	var pids []int
	t.Run("owner", func(t *testing.T) {
		ctx := t.Context()
		c := redistest.StartCluster(t, redistest.ClusterOptions{Dir: redistest.MemDir(t)})
		pids = c.PIDs()
		require.Len(t, c.Addrs(), 3)
		for i, info := range c.Info(t) {
			require.Equal(t, "ok", info["cluster_state"], "node %d", i)
			require.Equal(t, "16384", info["cluster_slots_ok"], "node %d", i)
		}
		rdb := c.NewClient(t, nil)
		for i := range 100 {
			require.NoError(t, rdb.Set(ctx, fmt.Sprintf("k%d", i), i, 0).Err())
		}
		// The keys spread over every master; each runs with appendonly.
		err := rdb.ForEachMaster(ctx, func(ctx context.Context, node *redis.Client) error {
			n, err := node.DBSize(ctx).Result()
			if err != nil {
				return err
			}
			if n == 0 {
				return fmt.Errorf("master %s holds no key", node.Options().Addr)
			}
			if v, err := node.ConfigGet(ctx, "appendonly").Result(); err != nil || v["appendonly"] != "yes" {
				return fmt.Errorf("master %s: appendonly %v, %v", node.Options().Addr, v, err)
			}
			return nil
		})
		require.NoError(t, err)
		// A hash tag keeps keys in one slot: a multi-key command works.
		require.NoError(t, rdb.MSet(ctx, "{tag}a", 1, "{tag}b", 2).Err())
	})
	require.Len(t, pids, 3)
	for _, pid := range pids {
		requireGone(t, pid)
	}
}

// TestSharedCluster: one cluster per test binary, stopped by StopShared.
func TestSharedCluster(t *testing.T) {
	race.SkipTest(t, "make test's second step runs the harness's cluster tests, without -race")
	c := redistest.SharedCluster(t)
	require.Same(t, c, redistest.SharedCluster(t), "one shared cluster per test binary")
	rdb := c.NewClient(t, nil)
	require.NoError(t, rdb.Set(t.Context(), "x", "y", 0).Err())
	pids := c.PIDs()
	require.NoError(t, rdb.Close())
	require.NoError(t, redistest.StopShared())
	for _, pid := range pids {
		requireGone(t, pid)
	}
}

// TestProxyDropsAfterTheServerRan uses a command that is not safe to
// repeat, INCR, to show what the proxy does: each dropped reply is an INCR
// the server ran and go-redis sent again.
func TestProxyDropsAfterTheServerRan(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s := redistest.StartServer(t, redistest.ServerOptions{AppendFsync: "no"})
	p := redistest.StartProxy(t, s.Addr(), redistest.ProxyOptions{DropEvery: 4, Seed: 1})
	rdb := redis.NewClient(&redis.Options{Addr: p.Addr(), MaxRetries: 20, DialTimeout: redistest.TestTimeout, ReadTimeout: redistest.TestTimeout, MinRetryBackoff: time.Millisecond, MaxRetryBackoff: 2 * time.Millisecond})
	defer rdb.Close()
	direct := s.NewClient(t, nil)

	const calls = 100
	for range calls {
		require.NoError(t, rdb.Incr(ctx, "n").Err(), "go-redis retries a dropped reply")
	}
	drops := p.Drops()
	require.Equal(t, drops, p.DropsOf("INCR"))
	require.Greater(t, drops, int64(calls/8), "about one in 4 dropped")
	require.Less(t, drops, int64(calls/2))
	n, err := direct.Get(ctx, "n").Int64()
	require.NoError(t, err)
	require.Equal(t, calls+drops, n, "every dropped INCR ran on the server, and ran again when resent")
	t.Logf("%d INCR calls, %d replies dropped, %d commands through the proxy", calls, drops, p.Commands())

	// The same seed drops the same commands.
	s2 := redistest.StartServer(t, redistest.ServerOptions{AppendFsync: "no"})
	p2 := redistest.StartProxy(t, s2.Addr(), redistest.ProxyOptions{DropEvery: 4, Seed: 1})
	rdb2 := redis.NewClient(&redis.Options{Addr: p2.Addr(), MaxRetries: 20, DialTimeout: redistest.TestTimeout, ReadTimeout: redistest.TestTimeout, MinRetryBackoff: time.Millisecond, MaxRetryBackoff: 2 * time.Millisecond})
	defer rdb2.Close()
	for range calls {
		require.NoError(t, rdb2.Incr(ctx, "n").Err())
	}
	require.Equal(t, drops, p2.Drops(), "same seed, same drops")
}

func TestProxyWithoutRetries(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s := redistest.StartServer(t, redistest.ServerOptions{AppendFsync: "no"})
	p := redistest.StartProxy(t, s.Addr(), redistest.ProxyOptions{DropEvery: 1,
		Eligible: func(args []string) bool { return len(args) > 0 && args[0] == "set" }})
	rdb := redis.NewClient(&redis.Options{Addr: p.Addr(), MaxRetries: -1})
	defer rdb.Close()

	err := rdb.Set(ctx, "k", "v", 0).Err()
	require.ErrorIs(t, err, io.EOF, "the connection ends after the write, before the reply")
	require.EqualValues(t, 1, p.Drops())
	v, err := s.NewClient(t, nil).Get(ctx, "k").Result()
	require.NoError(t, err)
	require.Equal(t, "v", v, "the server ran the command whose reply was dropped")

	p.SetDropping(false)
	require.NoError(t, rdb.Set(ctx, "k", "w", 0).Err())
	require.NoError(t, rdb.Get(ctx, "k").Err(), "GET is not eligible")
	require.EqualValues(t, 1, p.Drops())
}

// TestProxyPubSub: a subscribed connection passes through untouched while
// other commands are being dropped, RESP2 and RESP3.
func TestProxyPubSub(t *testing.T) {
	t.Parallel()
	for _, protocol := range []int{2, 3} {
		t.Run(fmt.Sprintf("resp%d", protocol), func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			s := redistest.StartServer(t, redistest.ServerOptions{AppendFsync: "no"})
			p := redistest.StartProxy(t, s.Addr(), redistest.ProxyOptions{DropEvery: 2, Seed: 7})
			rdb := redis.NewClient(&redis.Options{Addr: p.Addr(), Protocol: protocol, MaxRetries: 20, DialTimeout: redistest.TestTimeout, ReadTimeout: redistest.TestTimeout, MinRetryBackoff: time.Millisecond, MaxRetryBackoff: 2 * time.Millisecond})
			defer rdb.Close()

			sub := rdb.Subscribe(ctx, "ch")
			defer sub.Close()
			_, err := sub.Receive(ctx) // the subscription confirmation
			require.NoError(t, err)
			msgs := sub.Channel()
			for i := range 20 {
				require.NoError(t, rdb.Publish(ctx, "ch", fmt.Sprint(i)).Err())
				require.NoError(t, rdb.HSet(ctx, "h", fmt.Sprint(i), i).Err())
			}
			// Each dropped PUBLISH ran and was resent: it arrives once or more.
			seen := map[string]int{}
			timeout := time.After(time.Minute)
			for len(seen) < 20 {
				select {
				case m := <-msgs:
					seen[m.Payload]++
				case <-timeout:
					t.Fatalf("got %d of 20 messages", len(seen))
				}
			}
			require.Positive(t, p.Drops())
			n, err := s.NewClient(t, nil).HLen(ctx, "h").Result()
			require.NoError(t, err)
			require.EqualValues(t, 20, n)
		})
	}
}

// TestProxyClose: closing the proxy cuts live connections and ends its
// goroutines (goleak checks at the end of the package).
func TestProxyClose(t *testing.T) {
	t.Parallel()
	s := redistest.StartServer(t, redistest.ServerOptions{AppendFsync: "no"})
	p := redistest.StartProxy(t, s.Addr(), redistest.ProxyOptions{})
	conn, err := net.Dial("tcp", p.Addr())
	require.NoError(t, err)
	defer conn.Close()
	_, err = conn.Write([]byte("*1\r\n$4\r\nPING\r\n"))
	require.NoError(t, err)
	buf := make([]byte, 7)
	_, err = io.ReadFull(conn, buf)
	require.NoError(t, err)
	require.Equal(t, "+PONG\r\n", string(buf))
	p.Close()
	require.NoError(t, conn.SetReadDeadline(time.Now().Add(10*time.Second)))
	_, err = conn.Read(buf)
	require.ErrorIs(t, err, io.EOF)
}

func configGet(t *testing.T, rdb *redis.Client, key string) string {
	t.Helper()
	m, err := rdb.ConfigGet(t.Context(), key).Result()
	require.NoError(t, err)
	return m[key]
}
