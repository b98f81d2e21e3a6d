package client_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/corrstore/corrstore/bolt"
	"github.com/corrstore/corrstore/client"
	"github.com/corrstore/corrstore/store"
)

func TestRequestReply(t *testing.T) {
	e := newEnv(t)
	c := e.client(t, "a", nil)
	run(t, c)
	serve(t, c, "payments", echo)

	r, err := c.Request(t.Context(), "payments", []byte("pay 42"), client.Options{ID: "order-42", Timeout: time.Minute})
	require.NoError(t, err)
	require.Equal(t, "re: pay 42", string(r.Body))
	require.Equal(t, "payments", r.From)

	got := e.get(t, "order-42")
	require.Equal(t, store.StateCompleted, got.State)
	require.Equal(t, "a", got.Owner)
	require.Equal(t, "payments", got.Destination)
	require.Equal(t, "orders.replies", got.ReplyTo)
}

func TestRequestErrorReply(t *testing.T) {
	e := newEnv(t)
	c := e.client(t, "a", nil)
	run(t, c)
	serve(t, c, "payments", func(context.Context, client.Incoming) ([]byte, error) {
		return nil, errors.New("card declined")
	})
	r, err := c.Request(t.Context(), "payments", nil, client.Options{ID: "o1"})
	var re *client.ReplyError
	require.ErrorAs(t, err, &re)
	require.Equal(t, "card declined", re.Text)
	require.Equal(t, "payments", re.From)
	require.Equal(t, "card declined", r.Error)
	require.Equal(t, store.StateCompleted, e.get(t, "o1").State, "an error reply still decides the correlation")
}

func TestNothingSentWithoutRegistration(t *testing.T) {
	e := newEnv(t)
	c := e.client(t, "a", nil)
	run(t, c)
	_, err := c.Request(t.Context(), "payments", nil, client.Options{ID: "bad id!"})
	require.ErrorIs(t, err, store.ErrInvalid)
	_, err = c.Send(t.Context(), "payments", nil, client.Options{Timeout: -time.Second})
	require.ErrorIs(t, err, store.ErrInvalid)
	require.Zero(t, e.tr.Len("payments"), "nothing may be sent when the registration failed")

	require.NoError(t, e.st.Close())
	_, err = c.Send(t.Context(), "payments", nil, client.Options{})
	require.ErrorIs(t, err, store.ErrClosed)
	require.Zero(t, e.tr.Len("payments"))
}

func TestFailedSendCancels(t *testing.T) {
	e := newEnv(t)
	c := e.client(t, "a", func(cfg *client.Config) {
		cfg.Transport = failingTransport{Transport: e.tr, addr: "payments"}
	})
	run(t, c)
	_, err := c.Request(t.Context(), "payments", nil, client.Options{ID: "o1"})
	require.ErrorIs(t, err, client.ErrSend)
	require.ErrorIs(t, err, errBroker)
	got := e.get(t, "o1")
	require.Equal(t, store.StateCancelled, got.State)
	require.Contains(t, got.Outcome.Reason, "send to payments failed: broker down")

	id, err := c.Send(t.Context(), "payments", nil, client.Options{Handler: "h"})
	require.ErrorIs(t, err, client.ErrSend)
	require.Equal(t, store.StateCancelled, e.get(t, id).State)
}

// A reply taken in by another replica wakes the waiter through the store.
func TestReplyTakenByAnotherReplica(t *testing.T) {
	e := newEnv(t)
	a := e.client(t, "a", func(cfg *client.Config) {
		cfg.Transport = deafTransport{Transport: e.tr, addr: "orders.replies"}
	})
	b := e.client(t, "b", nil)
	run(t, a)
	run(t, b)
	serve(t, b, "payments", echo)

	r, err := a.Request(t.Context(), "payments", []byte("x"), client.Options{ID: "o1"})
	require.NoError(t, err)
	require.Equal(t, "re: x", string(r.Body))
}

// A waiter that gave up leaves the correlation to the store: the reply that
// comes later completes it and reaches its handler.
func TestReplyAfterWaiterGone(t *testing.T) {
	e := newEnv(t)
	c := e.client(t, "a", nil)
	rec := newRecorder()
	c.Handle("resume", rec.handle)
	run(t, c)

	ctx, cancel := context.WithCancel(t.Context())
	errc := make(chan error, 1)
	go func() {
		_, err := c.Request(ctx, "payments", []byte("x"), client.Options{ID: "o1", Handler: "resume", Data: []byte("step 3")})
		errc <- err
	}()
	// The request is on its way: the waiter goes before the reply comes.
	e.waitQueued(t, "payments")
	cancel()
	require.ErrorIs(t, <-errc, context.Canceled)
	require.Equal(t, store.StatePending, e.get(t, "o1").State, "a cancelled wait leaves the correlation pending")

	serve(t, c, "payments", echo)
	o := rec.next(t)
	require.Equal(t, "o1", o.ID)
	require.Equal(t, store.StateCompleted, o.State)
	require.Equal(t, "step 3", string(o.Callback.Data))
	require.Equal(t, "re: x", string(o.Replies[0].Body))
	require.NoError(t, o.Err())
	require.Equal(t, 1, o.Attempt)
	e.waitState(t, "o1", dispatchIs(store.DispatchDone))
}

// waitQueued waits until a message waits at addr. memtransport has no
// signal for it, so this looks at the queue on every store change... and
// on a short tick, since a send changes nothing in the store.
func (e *env) waitQueued(t *testing.T, addr string) {
	t.Helper()
	require.Eventually(t, func() bool { return e.tr.Len(addr) > 0 }, waitFor, time.Millisecond)
}

// A cancelled wait does not forget the correlation: at its deadline the
// store decides it and the handler gets the timeout.
func TestCancelledWaitTimesOutInTheStore(t *testing.T) {
	e := newEnv(t)
	c := e.client(t, "a", nil)
	rec := newRecorder()
	c.Handle("resume", rec.handle)
	run(t, c)

	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err := c.Send(t.Context(), "payments", nil, client.Options{ID: "o1", Handler: "resume", Timeout: time.Minute})
	require.NoError(t, err)
	_, err = c.Request(ctx, "payments", nil, client.Options{ID: "o2", Handler: "resume", Timeout: time.Minute})
	require.ErrorIs(t, err, context.Canceled)

	e.clock.Add(2 * time.Minute)
	require.Equal(t, 1, e.reap(t).Expired.TimedOut)
	o := rec.next(t)
	require.Equal(t, "o1", o.ID)
	require.Equal(t, store.StateTimedOut, o.State)
	require.ErrorIs(t, o.Err(), client.ErrTimedOut)
	_, err = e.st.Get(t.Context(), store.RefOf("o2"))
	require.ErrorIs(t, err, store.ErrNotFound, "a request whose ctx ended before it started registers nothing")
}

// The waiter asks the store for the deadline outcome itself: no reaper needed.
func TestRequestTimesOutWithoutReaper(t *testing.T) {
	e := newEnv(t)
	st, err := bolt.Open(bolt.Options{Path: filepath.Join(t.TempDir(), "real.db"), NoSync: true, Logger: quiet()})
	require.NoError(t, err)
	t.Cleanup(func() { st.Close() })
	c := e.client(t, "a", func(cfg *client.Config) { cfg.Store, cfg.Clock = st, store.RealClock{} })
	run(t, c)
	_, err = c.Request(t.Context(), "nobody", nil, client.Options{ID: "o1", Timeout: 20 * time.Millisecond})
	require.ErrorIs(t, err, client.ErrTimedOut)
}

func TestOptionalNoReply(t *testing.T) {
	e := newEnv(t)
	c := e.client(t, "a", nil)
	run(t, c)
	errc := make(chan error, 1)
	go func() {
		_, err := c.Request(t.Context(), "audit", nil, client.Options{ID: "o1", Optional: true, Timeout: time.Minute})
		errc <- err
	}()
	e.waitQueued(t, "audit")
	e.clock.Add(time.Minute)
	require.Equal(t, 1, e.reap(t).Expired.NoReply)
	require.ErrorIs(t, <-errc, client.ErrNoReply)
	got := e.get(t, "o1")
	require.Equal(t, store.StateCompleted, got.State)
	require.True(t, got.Outcome.NoReply)
}

func TestCancelWakesWaiter(t *testing.T) {
	e := newEnv(t)
	c := e.client(t, "a", nil)
	run(t, c)
	errc := make(chan error, 1)
	go func() {
		_, err := c.Request(t.Context(), "slow", nil, client.Options{ID: "o1"})
		errc <- err
	}()
	e.waitQueued(t, "slow")
	_, err := e.st.Cancel(t.Context(), store.RefOf("o1"), "order withdrawn")
	require.NoError(t, err)
	err = <-errc
	require.ErrorIs(t, err, client.ErrCancelled)
	require.ErrorContains(t, err, "order withdrawn")
}

// A request delivered twice is answered twice; the second answer is a
// duplicate and changes nothing.
func TestServeRedeliveryIsHarmless(t *testing.T) {
	e := newEnv(t)
	// A duplicate publishes no store event: the test hears of it here.
	dups := make(chan string, 4)
	watch := func(cfg *client.Config) { cfg.Store = dupSignal{cfg.Store, dups} }
	c := e.client(t, "a", watch)
	rec := newRecorder()
	c.Handle("resume", rec.handle)
	run(t, c)
	calls := make(chan string, 10)
	serve(t, c, "payments", func(_ context.Context, in client.Incoming) ([]byte, error) {
		calls <- in.CorrelationID
		return []byte(time.Now().String()), nil // not even the same body twice
	})
	// Play the broker: hold the request and deliver it twice.
	holder := e.client(t, "h", func(cfg *client.Config) { watch(cfg); cfg.Transport = heldTransport{e.tr} })
	run(t, holder)
	id, err := holder.Send(t.Context(), "payments", nil, client.Options{ID: "o1", Handler: "resume"})
	require.NoError(t, err)
	msgs := e.tr.Take("held:payments")
	require.Len(t, msgs, 1)
	require.NoError(t, e.tr.Send(t.Context(), "payments", msgs[0]))
	require.NoError(t, e.tr.Send(t.Context(), "payments", msgs[0]))
	<-calls
	<-calls
	select {
	case got := <-dups:
		require.Equal(t, id, got, "the second answer was taken in as a duplicate")
	case <-time.After(30 * time.Second):
		require.FailNow(t, "the second answer never reached the store as a duplicate")
	}
	got := e.get(t, id)
	require.Equal(t, 1, got.DuplicateCount)
	require.Len(t, got.Replies, 1)
	require.Zero(t, got.LateCount)
	require.Equal(t, store.StateCompleted, rec.next(t).State)
	e.waitState(t, id, dispatchIs(store.DispatchDone))
	require.Len(t, rec.got, 1)
}

// dupSignal tells dups the ID of each Deliver that was a duplicate.
type dupSignal struct {
	store.Store
	dups chan<- string
}

func (d dupSignal) Deliver(ctx context.Context, ref store.Ref, r store.Reply) (store.DeliverResult, error) {
	res, err := d.Store.Deliver(ctx, ref, r)
	if err == nil && res.Status == store.DeliverDuplicate {
		d.dups <- ref.ID
	}
	return res, err
}

// heldTransport sends requests to "held:"+dest, for a test to play them.
type heldTransport struct{ client.Transport }

func (h heldTransport) Send(ctx context.Context, addr string, m client.Message) error {
	return h.Transport.Send(ctx, "held:"+addr, m)
}

func TestIdempotentRequest(t *testing.T) {
	e := newEnv(t)
	c := e.client(t, "a", nil)
	run(t, c)
	n := 0
	serve(t, c, "payments", func(_ context.Context, in client.Incoming) ([]byte, error) {
		n++
		return []byte("paid"), nil
	})
	opts := client.Options{IdempotencyKey: "order-42/pay"}
	r1, err := c.Request(t.Context(), "payments", nil, opts)
	require.NoError(t, err)
	r2, err := c.Request(t.Context(), "payments", nil, opts)
	require.NoError(t, err)
	require.Equal(t, r1, r2)
	require.Equal(t, 1, n, "a decided correlation is not sent again")
}

// With no subscription to be had, waits fall back to polling.
func TestSubscriptionFallback(t *testing.T) {
	e := newEnv(t)
	c := e.client(t, "a", func(cfg *client.Config) { cfg.Store = noSubscribe{e.st} })
	run(t, c)
	serve(t, c, "payments", echo)
	r, err := c.Request(t.Context(), "payments", []byte("x"), client.Options{})
	require.NoError(t, err)
	require.Equal(t, "re: x", string(r.Body))
}

type noSubscribe struct{ store.Store }

func (noSubscribe) Subscribe(context.Context) (<-chan store.Event, error) {
	return nil, errors.New("pubsub unavailable")
}

// A subscription that breaks (the subscriber fell behind) is renewed and
// the waits re-read the store.
func TestSubscriptionBreaks(t *testing.T) {
	e := newEnv(t)
	brk := &breakingStore{Store: e.st, broken: make(chan struct{})}
	c := e.client(t, "a", func(cfg *client.Config) { cfg.Store = brk })
	run(t, c)
	errc := make(chan error, 1)
	go func() {
		_, err := c.Request(t.Context(), "payments", nil, client.Options{ID: "o1"})
		errc <- err
	}()
	e.waitQueued(t, "payments")
	// The reply is delivered while the subscription is down.
	_, err := e.st.Deliver(t.Context(), store.RefOf("o1"), store.Reply{Body: []byte("ok")})
	require.NoError(t, err)
	close(brk.broken)
	require.NoError(t, <-errc)
}

// breakingStore's first subscription sees nothing and closes when broken is.
type breakingStore struct {
	store.Store
	broken chan struct{}
	n      int
}

func (b *breakingStore) Subscribe(ctx context.Context) (<-chan store.Event, error) {
	b.n++
	if b.n > 1 {
		return b.Store.Subscribe(ctx)
	}
	ch := make(chan store.Event)
	go func() {
		select {
		case <-b.broken:
		case <-ctx.Done():
		}
		close(ch)
	}()
	return ch, nil
}

func TestRunTwice(t *testing.T) {
	e := newEnv(t)
	c := e.client(t, "a", nil)
	run(t, c)
	serve(t, c, "p", echo)
	_, err := c.Request(t.Context(), "p", nil, client.Options{}) // Run is up
	require.NoError(t, err)
	require.ErrorContains(t, c.Run(t.Context()), "already running")
}

func TestConfigValidation(t *testing.T) {
	e := newEnv(t)
	_, err := client.New(client.Config{Transport: e.tr})
	require.ErrorIs(t, err, store.ErrInvalid)
	_, err = client.New(client.Config{Store: e.st, Transport: e.tr, MaxAttempts: -1})
	require.ErrorContains(t, err, "max_attempts")
	_, err = client.New(client.Config{Store: e.st, Transport: e.tr, Namespace: "Bad"})
	require.ErrorIs(t, err, store.ErrInvalid)
	c, err := client.New(client.Config{Store: e.st, Transport: e.tr})
	require.NoError(t, err)
	require.Equal(t, "corrstore.replies", c.Config().ReplyTo)
	require.NotEmpty(t, c.Instance())
}
