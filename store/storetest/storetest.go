// Package storetest is the conformance suite of store.Store: it decides what
// "correct" means for every backend. A backend's tests call Run with a
// constructor:
//
//	func TestConformance(t *testing.T) {
//		storetest.Run(t, func(t *testing.T, cfg storetest.Config) store.Store {
//			s, err := Open(filepath.Join(t.TempDir(), "c.db"), Options{Clock: cfg.Clock, Limits: cfg.Limits})
//			require.NoError(t, err)
//			t.Cleanup(func() { s.Close() })
//			return s
//		})
//	}
//
// Every test opens a fresh store with its own FakeClock, so tests run in
// parallel and no test waits for wall-clock time: time moves only when a test
// advances the clock. The suite is split one file per area (register,
// deliver, lifecycle, expiredue, dispatch, list, subscribe, repeat, closed).
package storetest

import (
	"context"
	"fmt"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/corrstore/corrstore/store"
)

// Config is what the suite asks of a backend constructor.
type Config struct {
	// Clock is the only time source the store may read.
	Clock *store.FakeClock
	// Limits are the bounds the store must enforce; zero fields mean defaults.
	Limits store.Limits
}

// NewStore opens a fresh, empty store for one test. It registers its own
// cleanup (t.Cleanup) and must tolerate Close having been called already by
// the test.
type NewStore func(t *testing.T, cfg Config) store.Store

// Epoch is where every test's FakeClock starts. It is far from the wall
// clock, so a store that reads time.Now instead of its Clock fails.
var Epoch = time.Date(2031, time.March, 4, 5, 6, 7, 0, time.UTC)

// waitTimeout bounds how long the suite waits for an asynchronous signal
// (a subscription event, a channel closing): 10s, or the duration in
// CORRSTORE_STORETEST_WAIT (the mutation self-test, whose runs are meant to
// fail, waits 1s). It is a safety net, not a sleep: the waits return as soon
// as the signal arrives.
func waitTimeout(t testing.TB) time.Duration {
	t.Helper()
	v := os.Getenv("CORRSTORE_STORETEST_WAIT")
	if v == "" {
		return 10 * time.Second
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		t.Fatalf("CORRSTORE_STORETEST_WAIT=%q: not a positive duration", v)
	}
	return d
}

// Run runs the whole suite against the store newStore opens, one subtest per
// area, each test on its own fresh store.
func Run(t *testing.T, newStore NewStore) {
	areas := []struct {
		name  string
		cases func() []testCase
	}{
		{"Register", registerTests},
		{"Deliver", deliverTests},
		{"Lifecycle", lifecycleTests},
		{"ExpireDue", expireDueTests},
		{"Dispatch", dispatchTests},
		{"List", listTests},
		{"Subscribe", subscribeTests},
		{"Repeat", repeatTests},
		{"Closed", closedTests},
		{"Namespaces", namespaceTests},
		{"Deadline", deadlineTests},
		{"Secret", secretTests},
	}
	for _, a := range areas {
		t.Run(a.name, func(t *testing.T) {
			t.Parallel()
			for _, tc := range a.cases() {
				t.Run(tc.name, func(t *testing.T) {
					t.Parallel()
					tc.run(t, newEnv(t, newStore, tc.limits))
				})
			}
		})
	}
}

// testCase is one test of an area; limits configure its store.
type testCase struct {
	name   string
	limits store.Limits
	run    func(t *testing.T, e *env)
}

// env is one test's store, clock and limits.
type env struct {
	t     *testing.T
	ctx   context.Context
	s     store.Store
	clock *store.FakeClock
	lim   store.Limits // with defaults applied
}

func newEnv(t *testing.T, newStore NewStore, lim store.Limits) *env {
	t.Helper()
	clock := store.NewFakeClock(Epoch)
	s := newStore(t, Config{Clock: clock, Limits: lim})
	require.NotNil(t, s, "the constructor returned a nil store")
	return &env{t: t, ctx: t.Context(), s: s, clock: clock, lim: lim.WithDefaults()}
}

// in returns e for a subtest: its helpers report to t.
func (e *env) in(t *testing.T) *env {
	sub := *e
	sub.t = t
	return &sub
}

func (e *env) now() time.Time { return e.clock.Now() }

// register registers c and requires it to be created.
func (e *env) register(c *store.Correlation) *store.Correlation {
	e.t.Helper()
	res, err := e.s.Register(e.ctx, c)
	require.NoError(e.t, err, "register %q", c.ID)
	require.True(e.t, res.Created, "register %q: want Created", c.ID)
	require.NotNil(e.t, res.Correlation)
	return res.Correlation
}

// ref is the Ref of id in the default namespace.
func ref(id string) store.Ref { return store.RefOf(id) }

// nsRef is the Ref of id in namespace ns.
func nsRef(ns, id string) store.Ref { return store.Ref{Namespace: ns, ID: id} }

// get returns the stored record.
func (e *env) get(r store.Ref) *store.Correlation {
	e.t.Helper()
	c, err := e.s.Get(e.ctx, r)
	require.NoError(e.t, err, "get %s", r)
	require.NotNil(e.t, c)
	require.Equal(e.t, r.Norm(), c.Ref(), "get %s", r)
	return c
}

// requireGone requires that no record r exists.
func (e *env) requireGone(r store.Ref) {
	e.t.Helper()
	_, err := e.s.Get(e.ctx, r)
	require.ErrorIs(e.t, err, store.ErrNotFound, "get %s", r)
}

// deliver delivers rep to r and requires status want.
func (e *env) deliver(r store.Ref, rep store.Reply, want store.DeliverStatus) store.DeliverResult {
	e.t.Helper()
	res, err := e.s.Deliver(e.ctx, r, rep)
	require.NoError(e.t, err, "deliver %+v to %s", rep, r)
	require.Equal(e.t, want, res.Status, "deliver %+v to %s", rep, r)
	if want == store.DeliverBuffered {
		require.Nil(e.t, res.Correlation, "a buffered reply has no correlation yet")
	} else {
		require.NotNil(e.t, res.Correlation)
		require.Equal(e.t, r.Norm(), res.Correlation.Ref())
	}
	return res
}

// expireDue runs ExpireDue at the clock's reading.
func (e *env) expireDue(limit int) []*store.Correlation {
	e.t.Helper()
	out, err := e.s.ExpireDue(e.ctx, e.now(), limit)
	require.NoError(e.t, err)
	return out
}

// suiteHandlers are the callback handlers the suite registers outside the
// claim-scoping cases: claim serves all of them in every namespace.
var suiteHandlers = []string{"h", "h1", "h2", "resume", "merge", "orders.resume", "other"}

// claimAll is the ClaimRequest of claim: every suite handler, every namespace.
func (e *env) claimAll(instance string, lease time.Duration, limit int) store.ClaimRequest {
	return store.ClaimRequest{Instance: instance, Handlers: suiteHandlers, Now: e.now(), Lease: lease, Limit: limit}
}

// claim runs ClaimDispatch at the clock's reading for every suite handler
// in every namespace.
func (e *env) claim(instance string, lease time.Duration, limit int) []*store.Correlation {
	e.t.Helper()
	out, err := e.s.ClaimDispatch(e.ctx, e.claimAll(instance, lease, limit))
	require.NoError(e.t, err)
	return out
}

// stats returns the stats of namespace ("" for all).
func (e *env) stats(namespace string) store.Stats {
	e.t.Helper()
	st, err := e.s.Stats(e.ctx, namespace)
	require.NoError(e.t, err)
	return st
}

// listAll pages through f and returns every item.
func (e *env) listAll(f store.Filter) []*store.Correlation {
	e.t.Helper()
	return ListAll(e.ctx, e.t, e.s, f)
}

// ListAll pages through f on s and returns every item, in the order the
// pages gave them. It fails tb on an error, on an empty page with a next
// cursor, and past 10000 pages.
func ListAll(ctx context.Context, tb testing.TB, s store.Store, f store.Filter) []*store.Correlation {
	tb.Helper()
	var all []*store.Correlation
	for range 10000 {
		p, err := s.List(ctx, f)
		require.NoError(tb, err, "list %+v", f)
		all = append(all, p.Items...)
		if p.NextCursor == "" {
			return all
		}
		require.NotEmpty(tb, p.Items, "a page with a next cursor must not be empty")
		f.Cursor = p.NextCursor
	}
	tb.Fatalf("list %+v: more than 10000 pages", f)
	return nil
}

// single returns a minimal single-reply registration.
func single(id string) *store.Correlation {
	return &store.Correlation{ID: id, Timeout: time.Minute}
}

// withHandler returns a single-reply registration with a callback handler.
func withHandler(id string) *store.Correlation {
	c := single(id)
	c.Callback = store.Callback{Handler: "resume", Data: []byte("step-" + id)}
	return c
}

// reply returns a reply with dedupe key id and a body.
func reply(id string) store.Reply { return store.Reply{ID: id, Body: []byte("body-" + id)} }

// requireFieldError requires err to wrap sentinel and a *store.FieldError
// naming field.
func requireFieldError(t *testing.T, err, sentinel error, field string) {
	t.Helper()
	require.Error(t, err)
	require.ErrorIs(t, err, sentinel)
	var fe *store.FieldError
	require.ErrorAs(t, err, &fe, "want a *store.FieldError in %v", err)
	require.Equal(t, field, fe.Field, "field of %v", err)
	require.NotEmpty(t, fe.Reason)
}

// requireTime requires two instants to be equal (whatever their location).
func requireTime(t *testing.T, want, got time.Time, msgAndArgs ...any) {
	t.Helper()
	if !want.Equal(got) {
		require.Fail(t, "times differ", "want %s, got %s %v", want.UTC().Format(time.RFC3339Nano), got.UTC().Format(time.RFC3339Nano), msgAndArgs)
	}
}

// ids returns the sorted IDs of cs.
func ids(cs []*store.Correlation) []string {
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = c.ID
	}
	slices.Sort(out)
	return out
}

// refs returns the sorted refs ("ns/id") of cs.
func refs(cs []*store.Correlation) []string {
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = c.Ref().String()
	}
	slices.Sort(out)
	return out
}

// idsInOrder returns the IDs of cs in their order.
func idsInOrder(cs []*store.Correlation) []string {
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = c.ID
	}
	return out
}

// sorted returns a sorted copy of ss.
func sorted(ss ...string) []string {
	out := append([]string{}, ss...)
	slices.Sort(out)
	return out
}

// hasEvent reports whether the timeline has an event of type et.
func hasEvent(c *store.Correlation, et store.EventType) bool {
	return slices.ContainsFunc(c.Events, func(e store.TimelineEvent) bool { return e.Type == et })
}

// snapshot is the part of a record that a repeated call must leave alone.
// DuplicateCount is left out: counting a repeat is what a duplicate does.
type snapshot struct {
	Nonce         string
	State         store.State
	Version       int64
	Deadline      time.Time
	UpdatedAt     time.Time
	Outcome       *store.Outcome
	Replies       []store.Reply
	Late          []store.Reply
	LateCount     int
	Events        []store.TimelineEvent
	EventsDropped int
	Dispatch      store.Dispatch
}

func snap(c *store.Correlation) snapshot {
	return snapshot{
		Nonce: c.Nonce, State: c.State, Version: c.Version, Deadline: c.Deadline.UTC(), UpdatedAt: c.UpdatedAt.UTC(),
		Outcome: c.Outcome, Replies: c.Replies, Late: c.Late, LateCount: c.LateCount,
		Events: c.Events, EventsDropped: c.EventsDropped, Dispatch: c.Dispatch,
	}
}

// events collects a subscription's events.
type events struct {
	t       *testing.T
	mu      sync.Mutex
	got     []store.Event
	changed chan struct{} // gets a token after each event
	closed  chan struct{} // closed when the subscription channel closes
}

// subscribe subscribes until ctx ends and collects the events.
func (e *env) subscribe(ctx context.Context) *events {
	e.t.Helper()
	ch, err := e.s.Subscribe(ctx)
	require.NoError(e.t, err)
	require.NotNil(e.t, ch)
	ev := &events{t: e.t, changed: make(chan struct{}, 1), closed: make(chan struct{})}
	go func() {
		defer close(ev.closed)
		for x := range ch {
			ev.mu.Lock()
			ev.got = append(ev.got, x)
			ev.mu.Unlock()
			select {
			case ev.changed <- struct{}{}:
			default:
			}
		}
	}()
	return ev
}

// subscribeTest subscribes for the rest of the test, and checks at the end
// that cancelling the subscription closes its channel.
func (e *env) subscribeTest() *events {
	e.t.Helper()
	ctx, cancel := context.WithCancel(e.ctx)
	ev := e.subscribe(ctx)
	e.t.Cleanup(func() {
		cancel()
		ev.waitClosed("after its context was cancelled")
	})
	return ev
}

// snapshot returns the events so far.
func (ev *events) snapshot() []store.Event {
	ev.mu.Lock()
	defer ev.mu.Unlock()
	return slices.Clone(ev.got)
}

// waitFor waits until ok holds for the events received so far.
func (ev *events) waitFor(what string, ok func([]store.Event) bool) []store.Event {
	ev.t.Helper()
	wait := waitTimeout(ev.t)
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		got := ev.snapshot()
		if ok(got) {
			return got
		}
		select {
		case <-ev.changed:
		case <-ev.closed:
			got = ev.snapshot()
			if ok(got) {
				return got
			}
			ev.t.Fatalf("subscription closed before %s; got %d events: %+v", what, len(got), got)
		case <-timer.C:
			ev.t.Fatalf("no %s within %s; got %d events: %+v", what, wait, len(got), got)
		}
	}
}

// waitEvent waits for an event of r in state with version at least version.
func (ev *events) waitEvent(r store.Ref, state store.State, version int64) store.Event {
	ev.t.Helper()
	r = r.Norm()
	var found store.Event
	ev.waitFor(fmt.Sprintf("event %s %s v%d", r, state, version), func(es []store.Event) bool {
		for _, x := range es {
			if x.Ref() == r && x.State == state && x.Version >= version {
				found = x
				return true
			}
		}
		return false
	})
	return found
}

// of returns the events of r, in the order received.
func (ev *events) of(r store.Ref) []store.Event {
	r = r.Norm()
	var out []store.Event
	for _, x := range ev.snapshot() {
		if x.Ref() == r {
			out = append(out, x)
		}
	}
	return out
}

// waitVersion waits until an event of r with version at least version came,
// and returns every event of r so far.
func (ev *events) waitVersion(r store.Ref, version int64) []store.Event {
	ev.t.Helper()
	r = r.Norm()
	ev.waitFor(fmt.Sprintf("event %s v%d", r, version), func(es []store.Event) bool {
		for _, x := range es {
			if x.Ref() == r && x.Version >= version {
				return true
			}
		}
		return false
	})
	return ev.of(r)
}

// waitClosed waits until the subscription channel is closed.
func (ev *events) waitClosed(when string) {
	ev.t.Helper()
	select {
	case <-ev.closed:
	case <-time.After(waitTimeout(ev.t)):
		ev.t.Errorf("subscription channel still open %s %s", waitTimeout(ev.t), when)
	}
}

// registerMany registers n single correlations id(0..n-1) with timeout(i),
// from workers goroutines.
func (e *env) registerMany(n, workers int, id func(i int) string, timeout func(i int) time.Duration) {
	e.t.Helper()
	e.parallel(n, workers, func(i int) error {
		res, err := e.s.Register(e.ctx, &store.Correlation{ID: id(i), Timeout: timeout(i)})
		if err == nil && !res.Created {
			err = fmt.Errorf("register %s: not created", id(i))
		}
		return err
	})
}

// parallel runs fn(0..n-1) on workers goroutines and requires no error.
func (e *env) parallel(n, workers int, fn func(i int) error) {
	e.t.Helper()
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := w; i < n; i += workers {
				if err := fn(i); err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(e.t, err)
	}
}
