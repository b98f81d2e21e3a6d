package redisstream_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/corrstore/corrstore/client"
	"github.com/corrstore/corrstore/client/redisstream"
	"github.com/corrstore/corrstore/reaper"
	"github.com/corrstore/corrstore/redisstore"
	"github.com/corrstore/corrstore/redisstore/redistest"
	"github.com/corrstore/corrstore/store"
)

// The two-replica test runs two replicas of a workflow service as child
// processes (this test binary again, with CORRSTORE_REPLICA set) sharing a
// real redis-server: its store, its reply stream, its dispatch leases. One
// is SIGKILLed inside a callback handler; the other finishes everything.
const (
	replicaEnv      = "CORRSTORE_REPLICA"
	replicaRedisEnv = "CORRSTORE_REPLICA_REDIS"
	replicaRequests = 200
	replicaPrefix   = "replicas"
	// replicaTimeout is the deadline of the requests meant to time out (the
	// responder ignores every fourth); the others get replyTimeout, long
	// enough that a slow machine never turns an answered one into a
	// timeout (sending the 200 took 44 s under -race on a 2-core VM).
	replicaTimeout = 4 * time.Second
	replyTimeout   = 5 * time.Minute
	replicaLease   = 2 * time.Second
)

// runReplica runs the replica CORRSTORE_REPLICA names, if any; it never
// returns then (it is killed, or exits on error).
func runReplica() bool {
	name := os.Getenv(replicaEnv)
	if name == "" {
		return false
	}
	err := replicaMain(name, os.Getenv(replicaRedisEnv))
	fmt.Fprintln(os.Stderr, "replica:", err)
	os.Exit(2)
	return true
}

// replicaMain is one replica: a store and a transport on Redis, a client
// running the "resume" handler, and a reaper. Replica "a" also sends the
// requests, and dies inside its first handler. Each line it prints is
// SENT, CRASH <id> or RAN <id> <state> <attempt> <data>.
func replicaMain(name, addr string) error {
	ctx := context.Background()
	rdb := redis.NewClient(&redis.Options{Addr: addr, DialTimeout: redistest.TestTimeout, ReadTimeout: redistest.TestTimeout, PoolTimeout: redistest.TestTimeout})
	st, err := redisstore.New(ctx, rdb, redisstore.Config{Prefix: replicaPrefix, Strict: true, Logger: quiet()})
	if err != nil {
		return err
	}
	tr, err := redisstream.New(rdb, redisstream.Config{Group: "orders", Consumer: name, Block: 100 * time.Millisecond,
		ClaimIdle: time.Second, ClaimInterval: 200 * time.Millisecond, Logger: quiet()})
	if err != nil {
		return err
	}
	c, err := client.New(client.Config{Store: st, Transport: tr, Service: "orders", Instance: name, Logger: quiet(),
		DispatchLease: replicaLease, DispatchInterval: 200 * time.Millisecond, DispatchConcurrency: 4})
	if err != nil {
		return err
	}
	var mu sync.Mutex
	out := bufio.NewWriter(os.Stdout)
	println := func(s string) {
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprintln(out, s)
		out.Flush()
	}
	var first sync.Once
	// a dies in the first handler it starts once every request is out
	// (the last ones time out 4 s later, so there is always one), with a
	// fresh lease that b must wait out.
	var sent atomic.Bool
	c.Handle("resume", func(ctx context.Context, o client.Outcome) error {
		crash := false
		if name == "a" && sent.Load() {
			first.Do(func() { crash = true })
		}
		if crash {
			println("CRASH " + o.ID)
			select {} // killed here, holding the lease
		}
		println(fmt.Sprintf("RAN %s %s %d %s", o.ID, o.State, o.Attempt, o.Callback.Data))
		return nil
	})
	r, err := reaper.New(st, reaper.Config{Interval: 100 * time.Millisecond, Logger: quiet()})
	if err != nil {
		return err
	}
	go func() { _ = r.Run(ctx) }()
	go func() { _ = c.Run(ctx) }()
	if name == "a" {
		for i := range replicaRequests {
			timeout := replyTimeout
			if i%4 == 0 {
				timeout = replicaTimeout
			}
			if _, err := c.Send(ctx, "payments", fmt.Appendf(nil, "body-%d", i), client.Options{
				ID: fmt.Sprintf("r-%03d", i), Timeout: timeout, Handler: "resume", Data: fmt.Appendf(nil, "wf-%d", i),
			}); err != nil {
				return err
			}
		}
		println("SENT")
		sent.Store(true)
	}
	select {}
}

type replica struct {
	cmd    *exec.Cmd
	lines  chan string
	stderr *strings.Builder
}

func startReplica(t *testing.T, name, addr string) *replica {
	t.Helper()
	exe, err := os.Executable()
	require.NoError(t, err)
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), replicaEnv+"="+name, replicaRedisEnv+"="+addr)
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	r := &replica{cmd: cmd, lines: make(chan string, 4*replicaRequests), stderr: &strings.Builder{}}
	cmd.Stderr = r.stderr
	require.NoError(t, cmd.Start())
	go func() {
		defer close(r.lines)
		br := bufio.NewReader(stdout)
		for {
			s, err := br.ReadString('\n')
			if err != nil {
				return
			}
			r.lines <- strings.TrimSuffix(s, "\n")
		}
	}()
	t.Cleanup(func() { r.kill() })
	return r
}

func (r *replica) kill() {
	if r.cmd.ProcessState == nil {
		_ = r.cmd.Process.Signal(syscall.SIGKILL)
		_ = r.cmd.Wait()
	}
}

type replicaRun struct {
	who     string
	state   store.State
	attempt int
	data    string
}

// TestTwoReplicasRedis: replica a sends 200 requests with callbacks; the
// responder answers three in four (the rest time out); both replicas take
// replies in and run handlers; a dies inside one. Replica b finishes: every
// outcome reaches its handler, the one a died in again after a's lease, and
// the store shows every dispatch done.
func TestTwoReplicasRedis(t *testing.T) {
	srv := redistest.StartServer(t, redistest.ServerOptions{Dir: redistest.MemDir(t)})
	ctx := t.Context()
	start := time.Now()
	phase := func(name string) { t.Logf("%-45s at %s", name, time.Since(start).Round(time.Millisecond)) }

	b := startReplica(t, "b", srv.Addr())
	a := startReplica(t, "a", srv.Addr())

	// The responder: answers r-NNN unless NNN is a multiple of 4.
	rdb := srv.NewClient(t, nil)
	resp, err := redisstream.New(rdb, redisstream.Config{Group: "payments", Consumer: "p1", Block: 100 * time.Millisecond, Logger: quiet()})
	require.NoError(t, err)
	rctx, stopResponder := context.WithCancel(ctx)
	served := make(chan error, 1)
	go func() {
		served <- resp.Receive(rctx, "payments", func(ctx context.Context, m client.Message) error {
			n, err := strconv.Atoi(strings.TrimPrefix(m.CorrelationID, "r-"))
			if err != nil || n%4 == 0 {
				return err
			}
			return resp.Send(ctx, m.ReplyTo, client.Message{CorrelationID: m.CorrelationID, ID: "p1", Final: true,
				Body: append([]byte("re: "), m.Body...)})
		})
	}()
	defer func() {
		stopResponder()
		require.NoError(t, <-served)
	}()

	got := map[string][]replicaRun{}
	sentAll := false
	read := func(who, s string) (crashed string) {
		f := strings.Fields(s)
		switch {
		case len(f) == 1 && f[0] == "SENT":
			sentAll = true
		case len(f) == 2 && f[0] == "CRASH":
			require.True(t, sentAll, "replica a crashed before it sent every request")
			return f[1]
		case len(f) == 5 && f[0] == "RAN":
			n, err := strconv.Atoi(f[3])
			require.NoError(t, err)
			got[f[1]] = append(got[f[1]], replicaRun{who, store.State(f[2]), n, f[4]})
		default:
			require.FailNow(t, "unexpected line from replica "+who, "%q", s)
		}
		return ""
	}

	// Until a dies in a handler, read both replicas.
	timeout := time.After(3 * time.Minute) // sending alone took 26-52 s under -race here
	crashed := ""
	for crashed == "" {
		select {
		case s, ok := <-a.lines:
			require.True(t, ok, "replica a ended: %s", a.stderr)
			crashed = read("a", s)
		case s, ok := <-b.lines:
			require.True(t, ok, "replica b ended: %s", b.stderr)
			read("b", s)
		case <-timeout:
			require.FailNow(t, "replica a did not crash within 3 minutes", "ran so far: %d", len(got))
		}
	}
	a.kill()
	for s := range a.lines {
		read("a", s)
	}
	phase(fmt.Sprintf("a killed in %s's handler (%d handlers ran)", crashed, len(got)))

	// b alone finishes, the crashed one included, once a's lease is over.
	st, err := redisstore.New(ctx, rdb, redisstore.Config{Prefix: replicaPrefix, Logger: quiet()})
	require.NoError(t, err)
	defer st.Close()
	deadline := time.After(2 * time.Minute)
	for len(got) < replicaRequests || len(got[crashed]) == 0 {
		select {
		case s, ok := <-b.lines:
			require.True(t, ok, "replica b ended: %s", b.stderr)
			read("b", s)
		case <-deadline:
			require.FailNow(t, "b did not finish", "%d of %d outcomes handled", len(got), replicaRequests)
		}
	}
	phase("every outcome handled")

	for i := range replicaRequests {
		id := fmt.Sprintf("r-%03d", i)
		want := store.StateCompleted
		if i%4 == 0 {
			want = store.StateTimedOut
		}
		for _, r := range got[id] {
			require.Equal(t, want, r.state, id)
			require.Equal(t, fmt.Sprintf("wf-%d", i), r.data, id)
		}
		c := waitDispatched(t, st, id)
		require.Equal(t, want, c.State, id)
		if want == store.StateCompleted {
			require.Equal(t, fmt.Sprintf("re: body-%d", i), string(c.Replies[0].Body), id)
		}
	}
	last := got[crashed][len(got[crashed])-1]
	require.Equal(t, "b", last.who, "the handler a died in ran again on b")
	require.GreaterOrEqual(t, last.attempt, 2)
}

// waitDispatched returns id's record once its dispatch is done: b prints a
// handler's line before it acknowledges the dispatch.
func waitDispatched(t *testing.T, st store.Store, id string) *store.Correlation {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	sub, err := st.Subscribe(ctx)
	require.NoError(t, err)
	for {
		c, err := st.Get(ctx, store.RefOf(id))
		require.NoError(t, err)
		if c.Dispatch.State == store.DispatchDone {
			return c
		}
		select {
		case <-sub:
		case <-ctx.Done():
			require.FailNow(t, "dispatch not done", "%s: %s", id, c.Dispatch.State)
		}
	}
}
