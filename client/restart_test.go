package client_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/corrstore/corrstore/bolt"
	"github.com/corrstore/corrstore/client"
	"github.com/corrstore/corrstore/client/memtransport"
	"github.com/corrstore/corrstore/store"
)

// The restart test runs parts of a workflow service in child processes
// (this test binary, re-executed with CORRSTORE_CLIENT_CHILD set) and
// SIGKILLs them: bbolt is one process's file, so the parent works on it
// only between children.
const (
	childEnv   = "CORRSTORE_CLIENT_CHILD"
	childDBEnv = "CORRSTORE_CLIENT_DB"
	nRequests  = 200
)

// runChild runs the child named by CORRSTORE_CLIENT_CHILD, if any; it
// never returns then (it is killed, or exits on error).
func runChild() bool {
	mode := os.Getenv(childEnv)
	if mode == "" {
		return false
	}
	err := childMain(mode, os.Getenv(childDBEnv))
	fmt.Fprintln(os.Stderr, "child:", err)
	os.Exit(2)
	return true
}

// lineTransport is the children's broker: each message sent is a line of
// JSON on stdout, read by the parent.
type lineTransport struct {
	mu sync.Mutex
	w  *bufio.Writer
}

type line struct {
	Dest string         `json:"dest"`
	Msg  client.Message `json:"msg"`
}

func (l *lineTransport) Send(_ context.Context, dest string, m client.Message) error {
	b, err := json.Marshal(line{dest, m})
	if err != nil {
		return err
	}
	return l.println("MSG " + string(b))
}

func (l *lineTransport) println(s string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, err := l.w.WriteString(s + "\n"); err != nil {
		return err
	}
	return l.w.Flush()
}

func (l *lineTransport) Receive(ctx context.Context, _ string, _ func(context.Context, client.Message) error) error {
	<-ctx.Done()
	return nil
}

func childMain(mode, path string) error {
	st, err := bolt.Open(bolt.Options{Path: path, LockTimeout: 10 * time.Second, Logger: quiet()})
	if err != nil {
		return err
	}
	out := &lineTransport{w: bufio.NewWriter(os.Stdout)}
	c, err := client.New(client.Config{Store: st, Transport: out, Service: "orders", Instance: "child-" + mode,
		Logger: quiet(), DispatchConcurrency: 4, DispatchLease: 30 * time.Second})
	if err != nil {
		return err
	}
	switch mode {
	case "send":
		// Send the requests with callbacks from 8 goroutines, then wait to be
		// killed before any reply comes.
		var wg sync.WaitGroup
		errs := make(chan error, nRequests)
		for g := range 8 {
			wg.Go(func() {
				for i := g; i < nRequests; i += 8 {
					_, err := c.Send(context.Background(), "payments", fmt.Appendf(nil, "body-%d", i), client.Options{
						ID: fmt.Sprintf("r-%03d", i), Timeout: time.Hour, Handler: "resume",
						Data: fmt.Appendf(nil, "wf-%d", i),
					})
					errs <- err
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				return err
			}
		}
		if err := out.println("SENT"); err != nil {
			return err
		}
	case "dispatch":
		// Run the handlers; die inside the first one.
		var first sync.Once
		c.Handle("resume", func(ctx context.Context, o client.Outcome) error {
			crash := false
			first.Do(func() { crash = true })
			if crash {
				_ = out.println("CRASH " + o.ID)
				select {}
			}
			return out.println(fmt.Sprintf("RAN %s %s %d %s", o.ID, o.State, o.Attempt, o.Callback.Data))
		})
		go func() { _ = c.Run(context.Background()) }()
	default:
		return fmt.Errorf("unknown mode %q", mode)
	}
	select {}
}

// child starts this binary as a child in mode on path and returns its
// output, line by line.
func startChild(t *testing.T, mode, path string) (*exec.Cmd, *bufio.Reader, *strings.Builder) {
	t.Helper()
	exe, err := os.Executable()
	require.NoError(t, err)
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+mode, childDBEnv+"="+path)
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	stderr := &strings.Builder{}
	cmd.Stderr = stderr
	require.NoError(t, cmd.Start())
	return cmd, bufio.NewReader(stdout), stderr
}

func kill(t *testing.T, cmd *exec.Cmd) {
	t.Helper()
	require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
	_ = cmd.Wait()
}

type ran struct {
	state   store.State
	attempt int
	data    string
}

// TestRestartBolt: a process sends 200 requests with callbacks and is
// killed before any reply; the replies come while it is down (three in
// four; the rest time out); a second process runs the handlers and is
// killed inside one; a third (the test) runs every handler left, the
// crashed one again after its lease: every outcome is dispatched.
func TestRestartBolt(t *testing.T) {
	path := filepath.Join(t.TempDir(), "workflow.db")
	ctx := t.Context()
	start := time.Now()
	phase := func(name string) { t.Logf("%-40s at %s", name, time.Since(start).Round(time.Millisecond)) }

	// 1. The sender: killed once every request is out.
	cmd, out, stderr := startChild(t, "send", path)
	var requests []line
	for {
		s, err := out.ReadString('\n')
		require.NoError(t, err, "sender child: %s", stderr)
		s = strings.TrimSuffix(s, "\n")
		if s == "SENT" {
			break
		}
		var l line
		require.NoError(t, json.Unmarshal([]byte(strings.TrimPrefix(s, "MSG ")), &l))
		requests = append(requests, l)
	}
	kill(t, cmd)
	require.Len(t, requests, nRequests)
	phase("sender sent and was killed")

	// 2. The responder answers three requests in four while the sender is
	// down; its replies reach the store through a client that takes them in.
	clock := store.NewFakeClock(time.Now())
	// The parent's stores skip fsync: a SIGKILL loses nothing the kernel
	// has, and only the children are killed.
	st, err := bolt.Open(bolt.Options{Path: path, Clock: clock, NoSync: true, Logger: quiet()})
	require.NoError(t, err)
	tr := memtransport.New()
	taker, err := client.New(client.Config{Store: st, Transport: tr, Service: "orders", Instance: "taker", Clock: clock, Logger: quiet()})
	require.NoError(t, err)
	rctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { _ = taker.Run(rctx) })
	wg.Go(func() { _ = client.Serve(rctx, tr, "payments", echo, quiet()) })
	sub, err := st.Subscribe(rctx)
	require.NoError(t, err)
	want := map[string]ran{}
	for i, l := range requests {
		require.Equal(t, "payments", l.Dest)
		require.Equal(t, "orders.replies", l.Msg.ReplyTo)
		n, err := strconv.Atoi(strings.TrimPrefix(l.Msg.CorrelationID, "r-"))
		require.NoError(t, err)
		w := ran{state: store.StateTimedOut, attempt: 1, data: fmt.Sprintf("wf-%d", n)}
		if i%4 != 0 {
			w.state = store.StateCompleted
			require.NoError(t, tr.Send(ctx, l.Dest, l.Msg))
		}
		want[l.Msg.CorrelationID] = w
	}
	completed := 0
	for completed < nRequests*3/4 {
		e, ok := <-sub
		require.True(t, ok)
		if e.State == store.StateCompleted {
			completed++
		}
	}
	stop()
	wg.Wait()
	require.NoError(t, st.Close())
	phase("replies delivered")

	// 3. A process runs the handlers and dies inside one.
	cmd, out, stderr = startChild(t, "dispatch", path)
	got := map[string][]ran{}
	var crashed string
	for crashed == "" {
		s, err := out.ReadString('\n')
		require.NoError(t, err, "dispatch child: %s", stderr)
		crashed = parseRan(t, s, got)
	}
	kill(t, cmd)
	rest, _ := io.ReadAll(out)
	for _, s := range strings.SplitAfter(string(rest), "\n") {
		if strings.HasSuffix(s, "\n") {
			parseRan(t, s, got)
		}
	}
	t.Logf("the killed process ran %d handlers before it died in %s's", len(got), crashed)

	// 4. The test is the next process: it runs what is left, the crashed
	// handler after its lease, the rest after their deadlines.
	st, err = bolt.Open(bolt.Options{Path: path, Clock: clock, NoSync: true, Logger: quiet()})
	require.NoError(t, err)
	defer st.Close()
	e := &env{st: st, tr: memtransport.New(), clock: clock}
	c := e.client(t, "survivor", nil)
	var mu sync.Mutex
	c.Handle("resume", func(_ context.Context, o client.Outcome) error {
		mu.Lock()
		defer mu.Unlock()
		got[o.ID] = append(got[o.ID], ran{o.State, o.Attempt, string(o.Callback.Data)})
		if o.State == store.StateCompleted {
			if want := "re: body-" + strings.TrimLeft(o.ID[2:], "0"); string(o.Replies[0].Body) != want && o.ID != "r-000" {
				return fmt.Errorf("reply %q, want %q", o.Replies[0].Body, want)
			}
		}
		return nil
	})
	run(t, c)
	phase("survivor started")
	clock.Add(2 * time.Hour) // leases and deadlines pass
	require.Equal(t, nRequests/4, e.reap(t).Expired.TimedOut)
	e.waitAll(t, slices.Collect(maps.Keys(want)), dispatchIs(store.DispatchDone), time.Minute)
	phase("every outcome dispatched")

	mu.Lock()
	defer mu.Unlock()
	require.Len(t, got, nRequests, "every outcome reached its handler")
	for id, w := range want {
		runs := got[id]
		require.NotEmpty(t, runs, id)
		for _, r := range runs {
			require.Equal(t, w.state, r.state, id)
			require.Equal(t, w.data, r.data, id)
		}
	}
	last := got[crashed][len(got[crashed])-1]
	require.GreaterOrEqual(t, last.attempt, 2, "the handler that crashed ran again, on a new attempt")
}

// parseRan reads a dispatch child's line into got and returns the ID of
// the handler it crashed in, if the line says so.
func parseRan(t *testing.T, s string, got map[string][]ran) string {
	t.Helper()
	f := strings.Fields(s)
	switch {
	case len(f) == 2 && f[0] == "CRASH":
		return f[1]
	case len(f) == 5 && f[0] == "RAN":
		n, err := strconv.Atoi(f[3])
		require.NoError(t, err)
		got[f[1]] = append(got[f[1]], ran{store.State(f[2]), n, f[4]})
		return ""
	}
	require.FailNow(t, "unexpected line from the child", "%q", s)
	return ""
}
