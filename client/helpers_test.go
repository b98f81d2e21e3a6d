package client_test

import (
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/corrstore/corrstore/bolt"
	"github.com/corrstore/corrstore/client"
	"github.com/corrstore/corrstore/client/memtransport"
	"github.com/corrstore/corrstore/reaper"
	"github.com/corrstore/corrstore/redisstore"
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
	st     store.Store
	tr     *memtransport.Transport
	clock  *store.FakeClock
	alarms *alarms
}

// backend opens a store on clock, closed when the test ends.
type backend struct {
	name string
	open func(t *testing.T, clock store.Clock) store.Store
}

// backends are the stores the tests that depend on the store's semantics
// run on: bbolt, and Redis (on miniredis).
var backends = []backend{{"bolt", openBolt}, {"redis", openRedis}}

func openBolt(t *testing.T, clock store.Clock) store.Store {
	t.Helper()
	st, err := bolt.Open(bolt.Options{Path: filepath.Join(t.TempDir(), "c.db"), Clock: clock, NoSync: true, Logger: quiet()})
	require.NoError(t, err)
	t.Cleanup(func() { st.Close() })
	return st
}

func openRedis(t *testing.T, clock store.Clock) store.Store {
	t.Helper()
	mr := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	t.Cleanup(func() { rdb.Close() })
	st, err := redisstore.New(t.Context(), rdb, redisstore.Config{Clock: clock, Logger: quiet()})
	require.NoError(t, err)
	t.Cleanup(func() { st.Close() })
	return st
}

// newEnv is an env on bbolt.
func newEnv(t *testing.T) *env { return newEnvOn(t, backends[0]) }

func newEnvOn(t *testing.T, b backend) *env {
	t.Helper()
	clock := store.NewFakeClock(t0)
	return &env{st: b.open(t, clock), tr: memtransport.New(), clock: clock, alarms: newAlarms(clock)}
}

// client returns a client on the env's store and transport; edit adjusts
// its config. On the env's clock, its waiters' alarms go off when the test
// moves the clock with advance (not with clock.Add).
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
	if cfg.Clock == e.clock {
		client.SetAlarms(c, e.alarms.new)
	}
	return c
}

// advance moves the env's clock by d and sets off the alarms that came due.
func (e *env) advance(d time.Duration) { e.alarms.advance(d) }

// alarms are the waiters' alarms on a fake clock: advance moves the clock
// and sets off those that came due, and every setting is kept in armed, so
// that a test knows what a waiter waits for.
type alarms struct {
	clock   *store.FakeClock
	mu      sync.Mutex
	set     map[*fakeAlarm]bool
	armed   map[time.Time]bool
	changed chan struct{} // gets a token at each setting
}

func newAlarms(clock *store.FakeClock) *alarms {
	return &alarms{clock: clock, set: map[*fakeAlarm]bool{}, armed: map[time.Time]bool{}, changed: make(chan struct{}, 1)}
}

func (a *alarms) new() client.Alarm { return &fakeAlarm{a: a, c: make(chan time.Time, 1)} }

func (a *alarms) advance(d time.Duration) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.clock.Add(d)
	a.fire()
}

// fire sets off the alarms due at the clock's time; a.mu is held.
func (a *alarms) fire() {
	now := a.clock.Now()
	for al := range a.set {
		if !al.at.After(now) {
			delete(a.set, al)
			select {
			case al.c <- now:
			default:
			}
		}
	}
}

// waitArmed waits until an alarm has been set for at. It fails at once when
// the call a test runs returns first (res may be nil).
func (a *alarms) waitArmed(t *testing.T, at time.Time, res <-chan callResult) {
	t.Helper()
	timeout := time.After(waitFor)
	for {
		a.mu.Lock()
		ok := a.armed[at.UTC()]
		a.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-a.changed:
		case r := <-res:
			require.FailNow(t, "the call returned while waiting for an alarm at t0+"+at.Sub(t0).String(), "got %q, %v", r.got, r.err)
		case <-timeout:
			require.FailNow(t, "no alarm set for t0+"+at.Sub(t0).String())
		}
	}
}

type fakeAlarm struct {
	a  *alarms
	c  chan time.Time
	at time.Time
}

func (al *fakeAlarm) C() <-chan time.Time { return al.c }

// Set drops a pending alarm of the earlier setting, as time.Timer.Reset does.
func (al *fakeAlarm) Set(at time.Time) {
	al.a.mu.Lock()
	select {
	case <-al.c:
	default:
	}
	al.at = at
	al.a.set[al] = true
	al.a.armed[at.UTC()] = true
	al.a.fire()
	al.a.mu.Unlock()
	select {
	case al.a.changed <- struct{}{}:
	default:
	}
}

func (al *fakeAlarm) Stop() {
	al.a.mu.Lock()
	defer al.a.mu.Unlock()
	delete(al.a.set, al)
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
	return e.getRef(t, store.RefOf(id))
}

func (e *env) getRef(t *testing.T, ref store.Ref) *store.Correlation {
	t.Helper()
	c, err := e.st.Get(context.Background(), ref)
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
			c, err := e.st.Get(ctx, store.RefOf(id))
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
