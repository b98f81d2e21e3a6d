package redistest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/corrstore/corrstore/internal/testenv"
)

// ClusterOptions configure StartCluster.
type ClusterOptions struct {
	// Masters is how many master nodes the cluster has. Default 3, the
	// fewest redis-cli --cluster create accepts.
	Masters int
	// AppendFsync is each node's appendfsync; default "always".
	AppendFsync string
	// Dir holds the nodes' directories; default tb.TempDir() (see
	// ServerOptions.Dir and MemDir).
	Dir string
}

// Cluster is a Redis Cluster of masters only, each a redis-server with
// appendonly on in its own directory, started by the harness.
type Cluster struct {
	nodes []*node
}

// StartCluster starts a cluster owned by the test: the nodes, then
// redis-cli --cluster create, then it waits until every node reports
// cluster_state:ok with all 16384 slots served. The nodes are killed at the
// test's cleanup. It skips like StartServer when redis-server or redis-cli is
// not installed.
//
// Startup takes seconds; tests that can share one cluster should use
// SharedCluster, with a key prefix of their own.
func StartCluster(tb testing.TB, opts ClusterOptions) *Cluster {
	tb.Helper()
	server, cli := requireBinary(tb, "redis-server"), requireBinary(tb, "redis-cli")
	dir := opts.Dir
	if dir == "" {
		dir = tb.TempDir()
	}
	c, err := startCluster(server, cli, dir, opts)
	if c != nil {
		tb.Cleanup(func() {
			if err := c.stop(); err != nil {
				tb.Errorf("redistest: stop cluster: %v", err)
			}
		})
	}
	if err != nil {
		tb.Fatalf("redistest: %v", err)
	}
	return c
}

// Addrs are the host:port of every master.
func (c *Cluster) Addrs() []string {
	addrs := make([]string, len(c.nodes))
	for i, n := range c.nodes {
		addrs[i] = n.addr()
	}
	return addrs
}

// PIDs are the process ids of the running nodes.
func (c *Cluster) PIDs() []int {
	pids := make([]int, len(c.nodes))
	for i, n := range c.nodes {
		pids[i] = n.pid()
	}
	return pids
}

// Options returns cluster client options seeded with every node.
func (c *Cluster) Options() *redis.ClusterOptions {
	return &redis.ClusterOptions{Addrs: c.Addrs(), DialTimeout: TestTimeout, ReadTimeout: TestTimeout,
		WriteTimeout: TestTimeout, PoolTimeout: TestTimeout}
}

// NewClient returns a cluster client, closed at the test's cleanup. tweak,
// when not nil, may change the options first.
func (c *Cluster) NewClient(tb testing.TB, tweak func(*redis.ClusterOptions)) *redis.ClusterClient {
	tb.Helper()
	opt := c.Options()
	if tweak != nil {
		tweak(opt)
	}
	cc := redis.NewClusterClient(opt)
	tb.Cleanup(func() { cc.Close() })
	return cc
}

// Info returns CLUSTER INFO of every node, in the order of Addrs.
func (c *Cluster) Info(tb testing.TB) []map[string]string {
	tb.Helper()
	infos, err := c.info(context.Background())
	if err != nil {
		tb.Fatalf("redistest: %v", err)
	}
	return infos
}

func (c *Cluster) info(ctx context.Context) ([]map[string]string, error) {
	infos := make([]map[string]string, len(c.nodes))
	for i, n := range c.nodes {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		out, err := command(cctx, n.addr(), "CLUSTER", "INFO")
		cancel()
		if err != nil {
			return nil, fmt.Errorf("CLUSTER INFO on %s: %w", n.addr(), err)
		}
		infos[i] = parseInfo(out)
	}
	return infos, nil
}

func (c *Cluster) stop() error {
	var errs []error
	for _, n := range c.nodes {
		errs = append(errs, n.stop())
	}
	return errors.Join(errs...)
}

// startCluster starts the nodes in subdirectories of dir and joins them. On
// error it returns the nodes started so far, for the caller to stop.
func startCluster(server, cli, dir string, opts ClusterOptions) (*Cluster, error) {
	masters := opts.Masters
	if masters == 0 {
		masters = 3
	}
	if masters < 3 {
		return nil, fmt.Errorf("a cluster needs at least 3 masters, got %d", masters)
	}
	fsync := opts.AppendFsync
	if fsync == "" {
		fsync = "always"
	}
	c := &Cluster{}
	for i := range masters {
		n, err := startClusterNode(server, dir, i, fsync)
		if err != nil {
			return c, err
		}
		c.nodes = append(c.nodes, n)
	}

	ctx, cancel := context.WithTimeout(context.Background(), StartTimeout)
	defer cancel()
	args := append(c.Addrs(), "--cluster-replicas", "0", "--cluster-yes")
	out, err := exec.CommandContext(ctx, cli, append([]string{"--cluster", "create"}, args...)...).CombinedOutput()
	if err != nil {
		return c, fmt.Errorf("redis-cli --cluster create %v: %w\n%s", c.Addrs(), err, out)
	}

	// Wait for the signal the nodes give: every one says the cluster is ok
	// and all slots are served, polled with a short backoff under a deadline.
	backoff := 5 * time.Millisecond
	for {
		infos, err := c.info(ctx)
		if err == nil {
			if err = clusterReady(infos, masters); err == nil {
				return c, nil
			}
		}
		select {
		case <-ctx.Done():
			return c, fmt.Errorf("cluster %v not ready after %s: %w", c.Addrs(), StartTimeout, err)
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 200*time.Millisecond)
	}
}

func clusterReady(infos []map[string]string, masters int) error {
	for i, info := range infos {
		want := map[string]string{
			"cluster_state":          "ok",
			"cluster_slots_assigned": "16384",
			"cluster_slots_ok":       "16384",
			"cluster_known_nodes":    strconv.Itoa(masters),
			"cluster_size":           strconv.Itoa(masters),
		}
		for k, v := range want {
			if info[k] != v {
				return fmt.Errorf("node %d: %s is %q, want %q", i, k, info[k], v)
			}
		}
	}
	return nil
}

// startClusterNode starts one node with cluster mode on, its client port and
// bus port both picked free (a few tries, since a free port can be taken
// before redis-server binds it).
func startClusterNode(server, dir string, i int, fsync string) (*node, error) {
	var err error
	for range 3 {
		var ndir string
		if ndir, err = os.MkdirTemp(dir, fmt.Sprintf("node%d-", i)); err != nil {
			return nil, err
		}
		var port, bus int
		if port, err = testenv.FreePort(); err != nil {
			return nil, err
		}
		if bus, err = testenv.FreePort(); err != nil {
			return nil, err
		}
		var n *node
		n, err = startNode(server, ndir, port, []string{
			"--appendfsync", fsync,
			"--cluster-enabled", "yes",
			"--cluster-config-file", "nodes.conf",
			"--cluster-port", strconv.Itoa(bus),
			// No test here is about failover, and with 5 s a stall of this
			// VM made the masters mark each other failed: CLUSTERDOWN.
			"--cluster-node-timeout", "60000",
		})
		if err == nil {
			return n, nil
		}
		if !errors.Is(err, errAddrInUse) {
			return nil, err
		}
	}
	return nil, err
}

// The shared cluster: one per test binary, started on first use.
var shared struct {
	mu      sync.Mutex
	cluster *Cluster
	dir     string
	err     error
}

// SharedCluster returns the test binary's shared cluster, starting it on
// the first call. Tests sharing it isolate themselves by key prefix. It is
// stopped by StopShared, which the package's TestMain should call after the
// tests, most simply through StopSharedAfter:
//
//	func TestMain(m *testing.M) { goleak.VerifyTestMain(redistest.StopSharedAfter(m)) }
//
// Should the binary end without it, the nodes die with the binary
// (PR_SET_PDEATHSIG), though their temporary directory stays.
func SharedCluster(tb testing.TB) *Cluster {
	tb.Helper()
	server, cli := requireBinary(tb, "redis-server"), requireBinary(tb, "redis-cli")
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if shared.cluster == nil && shared.err == nil {
		shared.dir, shared.err = os.MkdirTemp("", "redistest-cluster-")
		if shared.err == nil {
			var c *Cluster
			c, shared.err = startCluster(server, cli, shared.dir, ClusterOptions{})
			if shared.err != nil && c != nil {
				_ = c.stop()
			} else {
				shared.cluster = c
			}
		}
	}
	if shared.err != nil {
		tb.Fatalf("redistest: shared cluster: %v", shared.err)
	}
	return shared.cluster
}

// StopShared stops the shared cluster, if one was started, and removes its
// files. SharedCluster starts a new one if called again.
func StopShared() error {
	shared.mu.Lock()
	defer shared.mu.Unlock()
	var err error
	if shared.cluster != nil {
		err = shared.cluster.stop()
	}
	if shared.dir != "" {
		err = errors.Join(err, os.RemoveAll(shared.dir))
	}
	shared.cluster, shared.dir, shared.err = nil, "", nil
	return err
}

// TestingM is what TestMain gets (*testing.M) and goleak.VerifyTestMain takes.
type TestingM interface{ Run() int }

// StopSharedAfter wraps m so that Run stops the shared cluster after the
// tests, before a leak check that runs next.
func StopSharedAfter(m TestingM) TestingM { return stopSharedAfter{m} }

type stopSharedAfter struct{ m TestingM }

func (s stopSharedAfter) Run() int {
	code := s.m.Run()
	if err := StopShared(); err != nil {
		fmt.Fprintf(os.Stderr, "redistest: stop the shared cluster: %v\n", err)
		if code == 0 {
			code = 1
		}
	}
	return code
}
