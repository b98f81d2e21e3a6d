package client_test

import (
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/corrstore/corrstore/bolt"
	"github.com/corrstore/corrstore/client"
	"github.com/corrstore/corrstore/client/memtransport"
	"github.com/corrstore/corrstore/reaper"
	"github.com/corrstore/corrstore/store"
)

// waitFor bounds the waits for a signal (an outcome, an event, a queued
// send). It is a safety net, not a sleep: each returns as soon as its signal
// comes, and a long bound keeps a loaded machine (make test runs its two
// steps side by side on two cores) from failing a test that is right.
const waitFor = time.Minute

func TestMain(m *testing.M) {
	if runChild() {
		return
	}
	goleak.VerifyTestMain(m)
}

var t0 = time.Date(2030, 1, 1, 9, 0, 0, 0, time.UTC)

func quiet() *slog.Logger { return slog.New(slog.DiscardHandler) }

// env is one store and one transport shared by the clients of a test.
type env struct {
	st    *bolt.Store
	tr    *memtransport.Transport
	clock *store.FakeClock
}

func newEnv(t *testing.T) *env {
	t.Helper()
	clock := store.NewFakeClock(t0)
	st, err := bolt.Open(bolt.Options{Path: filepath.Join(t.TempDir(), "c.db"), Clock: clock, NoSync: true, Logger: quiet()})
	require.NoError(t, err)
	t.Cleanup(func() { st.Close() })
	return &env{st: st, tr: memtransport.New(), clock: clock}
}

// client returns a client on the env's store and transport; edit adjusts
// its config.
func (e *env) client(t *testing.T, instance string, edit func(*client.Config)) *client.Client {
	t.Helper()
	cfg := client.Config{
		Store: e.st, Transport: e.tr, Service: "orders", Instance: instance,
		Clock: e.clock, Logger: quiet(), DispatchInterval: 5 * time.Millisecond,
		PollInterval: 10 * time.Millisecond,
		Backoff:      func(int) time.Duration { return time.Second },
	}
	if edit != nil {
		edit(&cfg)
	}
	c, err := client.New(cfg)
	require.NoError(t, err)
	return c
}

// run runs c until the test ends.
func run(t *testing.T, c *client.Client) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})
}

// serve runs a responder on dest until the test ends.
func serve(t *testing.T, c *client.Client, dest string, fn client.ServeFunc) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Serve(ctx, dest, fn) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})
}

func echo(_ context.Context, in client.Incoming) ([]byte, error) {
	return append([]byte("re: "), in.Body...), nil
}

// reap runs one reaper pass at the env's clock.
func (e *env) reap(t *testing.T) reaper.Report {
	t.Helper()
	r, err := reaper.New(e.st, reaper.Config{Clock: e.clock, Logger: quiet()})
	require.NoError(t, err)
	rep, err := r.RunOnce(context.Background())
	require.NoError(t, err)
	return rep
}

func (e *env) get(t *testing.T, id string) *store.Correlation {
	t.Helper()
	c, err := e.st.Get(context.Background(), id)
	require.NoError(t, err)
	return c
}

// waitState waits for a store event saying id reached a state (or checks
// that it is already there). Subscribing before reading leaves no gap.
func (e *env) waitState(t *testing.T, id string, want func(*store.Correlation) bool) *store.Correlation {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	for {
		sub, err := e.st.Subscribe(ctx)
		require.NoError(t, err)
		check := func() *store.Correlation {
			c, err := e.st.Get(ctx, id)
			if errors.Is(err, store.ErrNotFound) {
				return nil
			}
			require.NoError(t, err)
			if want(c) {
				return c
			}
			return nil
		}
		if c := check(); c != nil {
			return c
		}
		for ev := range sub {
			if ev.ID != id {
				continue
			}
			if c := check(); c != nil {
				return c
			}
		}
		require.NoError(t, ctx.Err(), "waiting for %s", id)
	}
}

// waitAll waits until want holds for every one of ids.
func (e *env) waitAll(t *testing.T, ids []string, want func(*store.Correlation) bool, timeout time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	left := map[string]bool{}
	for _, id := range ids {
		left[id] = true
	}
	for len(left) > 0 {
		sub, err := e.st.Subscribe(ctx)
		require.NoError(t, err)
		for id := range left {
			if want(e.get(t, id)) {
				delete(left, id)
			}
		}
		for ev := range sub {
			if left[ev.ID] && want(e.get(t, ev.ID)) {
				delete(left, ev.ID)
				if len(left) == 0 {
					break
				}
			}
		}
		require.NoError(t, ctx.Err(), "waiting for %d correlations", len(left))
	}
}

func dispatchIs(s store.DispatchState) func(*store.Correlation) bool {
	return func(c *store.Correlation) bool { return c.Dispatch.State == s }
}

func stateIs(s store.State) func(*store.Correlation) bool {
	return func(c *store.Correlation) bool { return c.State == s }
}

// recorder is a handler that records the outcomes it got and signals them.
type recorder struct {
	mu   sync.Mutex
	got  []client.Outcome
	ch   chan client.Outcome
	fail func(client.Outcome) error
}

func newRecorder() *recorder { return &recorder{ch: make(chan client.Outcome, 1000)} }

func (r *recorder) handle(_ context.Context, o client.Outcome) error {
	r.mu.Lock()
	r.got = append(r.got, o)
	r.mu.Unlock()
	r.ch <- o
	if r.fail != nil {
		return r.fail(o)
	}
	return nil
}

func (r *recorder) next(t *testing.T) client.Outcome {
	t.Helper()
	select {
	case o := <-r.ch:
		return o
	case <-time.After(waitFor):
		require.FailNow(t, "no outcome dispatched within "+waitFor.String())
		return client.Outcome{}
	}
}

// settled signals each settled dispatch (the Dispatched metric).
type settled struct {
	client.NopMetrics
	ch chan string
}

func newSettled() *settled { return &settled{ch: make(chan string, 1000)} }

func (s *settled) Dispatched(_, result string, _ time.Duration) { s.ch <- result }

func (s *settled) next(t *testing.T) string {
	t.Helper()
	select {
	case r := <-s.ch:
		return r
	case <-time.After(waitFor):
		require.FailNow(t, "no dispatch settled within "+waitFor.String())
		return ""
	}
}

// failingTransport fails every Send to one address.
type failingTransport struct {
	client.Transport
	addr string
}

var errBroker = errors.New("broker down")

func (f failingTransport) Send(ctx context.Context, addr string, m client.Message) error {
	if addr == f.addr {
		return errBroker
	}
	return f.Transport.Send(ctx, addr, m)
}

// deafTransport never takes anything from one address: a replica that
// waits but whose replies another replica takes.
type deafTransport struct {
	client.Transport
	addr string
}

func (d deafTransport) Receive(ctx context.Context, addr string, handle func(context.Context, client.Message) error) error {
	if addr == d.addr {
		<-ctx.Done()
		return nil
	}
	return d.Transport.Receive(ctx, addr, handle)
}
