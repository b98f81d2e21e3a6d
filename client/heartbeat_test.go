package client_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/corrstore/corrstore/client"
	"github.com/corrstore/corrstore/store"
)

// waitCall is a waiting call of the client, run to the end: the bodies it
// got, in order.
type waitCall struct {
	name  string
	dests []string
	call  func(ctx context.Context, c *client.Client, dests []string, opts client.Options) ([]string, error)
}

var waitCalls = []waitCall{
	{"request", []string{"reports"}, func(ctx context.Context, c *client.Client, dests []string, opts client.Options) ([]string, error) {
		r, err := c.Request(ctx, dests[0], nil, opts)
		return []string{string(r.Body)}, err
	}},
	{"gather", []string{"q.a", "q.b"}, func(ctx context.Context, c *client.Client, dests []string, opts client.Options) ([]string, error) {
		g, err := c.Gather(ctx, dests, nil, opts)
		var got []string
		for _, r := range g.Replies {
			got = append(got, string(r.Body))
		}
		slices.Sort(got)
		if g.Partial {
			got = append(got, "(partial)")
		}
		return got, err
	}},
	{"stream", []string{"feed"}, func(ctx context.Context, c *client.Client, dests []string, opts client.Options) ([]string, error) {
		var got []string
		for r, err := range c.Stream(ctx, dests[0], nil, opts) {
			if err != nil {
				return got, err
			}
			got = append(got, string(r.Body))
		}
		return got, nil
	}},
}

type callResult struct {
	got []string
	err error
}

// start runs wc on c in the background; the requests it sends are held
// (heldTransport) and returned, one per destination.
func (e *env) start(t *testing.T, c *client.Client, wc waitCall, opts client.Options) (<-chan callResult, []client.Message) {
	t.Helper()
	res := make(chan callResult, 1)
	go func() {
		got, err := wc.call(t.Context(), c, wc.dests, opts)
		res <- callResult{got, err}
	}()
	var reqs []client.Message
	for _, d := range wc.dests {
		e.waitQueued(t, "held:"+d)
		reqs = append(reqs, e.tr.Take("held:"+d)...)
	}
	return res, reqs
}

// answer sends the final reply to a held request: its destination's name.
func (e *env) answer(t *testing.T, req client.Message, body string) {
	t.Helper()
	m := client.Message{CorrelationID: req.CorrelationID, Namespace: req.Namespace, From: body, Final: true, Body: []byte(body)}
	require.NoError(t, e.tr.Send(t.Context(), req.ReplyTo, m))
}

func result(t *testing.T, ch <-chan callResult) callResult {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(waitFor):
		require.FailNow(t, "the call did not return within "+waitFor.String())
		return callResult{}
	}
}

// The repro of issue 16: a responder extends the deadline to now+5s at
// 0.5s and replies at 2.5s; a call with a 1s timeout returns the reply,
// and the reply is not late. The waiter learns of the extend from the
// store's event ("events"), or, when it misses it, from the re-read when
// its alarm goes off at the first deadline ("alarm"); either way it waits
// for the stored deadline.
func TestWaitersHonourHeartbeats(t *testing.T) {
	for _, b := range backends {
		for _, wc := range waitCalls {
			for _, hear := range []string{"events", "alarm"} {
				t.Run(b.name+"/"+wc.name+"/"+hear, func(t *testing.T) {
					e := newEnvOn(t, b)
					c := e.client(t, "a", func(cfg *client.Config) {
						cfg.Transport = heldTransport{e.tr}
						if hear == "alarm" {
							cfg.Store = deafToExtends{cfg.Store}
						}
					})
					run(t, c)
					other := e.client(t, "b", nil) // another replica of the service, not running

					res, reqs := e.start(t, c, wc, client.Options{ID: "r1", Timeout: time.Second})
					e.alarms.waitArmed(t, t0.Add(time.Second), res)

					e.advance(500 * time.Millisecond)
					corr, err := other.Extend(t.Context(), "r1", e.clock.Now().Add(5*time.Second))
					require.NoError(t, err)
					extended := t0.Add(5500 * time.Millisecond)
					require.True(t, corr.Deadline.Equal(extended), "deadline %s", corr.Deadline)

					// Past the first deadline the waiter waits for the new one.
					e.advance(time.Second)
					e.alarms.waitArmed(t, extended, res)
					require.Equal(t, store.StatePending, e.get(t, "r1").State)

					e.advance(time.Second) // 2.5s
					var want []string
					for i, req := range reqs {
						e.answer(t, req, wc.dests[i])
						want = append(want, wc.dests[i])
					}
					r := result(t, res)
					require.NoError(t, r.err)
					require.Equal(t, want, r.got)
					got := e.get(t, "r1")
					require.Equal(t, store.StateCompleted, got.State)
					require.Zero(t, got.LateCount)
					require.True(t, got.Outcome.At.Equal(t0.Add(2500*time.Millisecond)))
				})
			}
		}
	}
}

// deafToExtends is a store whose subscription drops the events of extends.
type deafToExtends struct{ store.Store }

func (d deafToExtends) Subscribe(ctx context.Context) (<-chan store.Event, error) {
	in, err := d.Store.Subscribe(ctx)
	if err != nil {
		return nil, err
	}
	out := make(chan store.Event)
	go func() {
		defer close(out)
		for e := range in {
			if e.Kind == store.ChangeExtended {
				continue
			}
			select {
			case out <- e:
			case <-ctx.Done():
				return
			}
		}
	}()
	return out, nil
}

// At the stored deadline the waiter has the store decide, with no reaper:
// the deadline outcome, at the extended deadline, and a reply after it is
// late.
func TestWaiterHasTheStoreDecideAtTheStoredDeadline(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			e := newEnvOn(t, b)
			statuses := newReplyStatuses()
			c := e.client(t, "a", func(cfg *client.Config) { cfg.Transport, cfg.Metrics = heldTransport{e.tr}, statuses })
			run(t, c)
			res, reqs := e.start(t, c, waitCalls[0], client.Options{ID: "r1", Timeout: time.Second})
			e.alarms.waitArmed(t, t0.Add(time.Second), res)
			e.advance(500 * time.Millisecond)
			_, err := c.Extend(t.Context(), "r1", e.clock.Now().Add(5*time.Second))
			require.NoError(t, err)
			extended := t0.Add(5500 * time.Millisecond)
			e.alarms.waitArmed(t, extended, res) // from the event: the alarm moved before the old deadline

			e.advance(5 * time.Second) // 5.5s: the extended deadline, exactly
			r := result(t, res)
			require.ErrorIs(t, r.err, client.ErrTimedOut)
			got := e.get(t, "r1")
			require.Equal(t, store.StateTimedOut, got.State)
			require.Equal(t, store.ReasonDeadline, got.Outcome.Reason)
			require.True(t, got.Outcome.At.Equal(extended), "decided at %s", got.Outcome.At)

			e.answer(t, reqs[0], "reports")
			require.Equal(t, store.DeliverLate, statuses.next(t))
			require.Equal(t, 1, e.get(t, "r1").LateCount)
		})
	}
}

// replyStatuses signals what the store did with each reply taken in.
type replyStatuses struct {
	client.NopMetrics
	ch chan store.DeliverStatus
}

func newReplyStatuses() *replyStatuses {
	return &replyStatuses{ch: make(chan store.DeliverStatus, 100)}
}

func (m *replyStatuses) ReplyDelivered(s store.DeliverStatus) { m.ch <- s }

func (m *replyStatuses) next(t *testing.T) store.DeliverStatus {
	t.Helper()
	select {
	case s := <-m.ch:
		return s
	case <-time.After(waitFor):
		require.FailNow(t, "no reply taken in within "+waitFor.String())
		return ""
	}
}

func TestClientExtendAndCancel(t *testing.T) {
	e := newEnv(t)
	c := e.client(t, "a", func(cfg *client.Config) { cfg.Namespace = "tenant-a" })
	run(t, c)
	ctx := t.Context()
	_, err := c.Send(ctx, "payments", nil, client.Options{ID: "o1", Timeout: time.Minute})
	require.NoError(t, err)

	corr, err := c.Extend(ctx, "o1", t0.Add(time.Hour))
	require.NoError(t, err)
	require.Equal(t, store.Ref{Namespace: "tenant-a", ID: "o1"}, corr.Ref())
	require.True(t, corr.Deadline.Equal(t0.Add(time.Hour)))
	_, err = c.Extend(ctx, "o1", t0)
	require.ErrorIs(t, err, store.ErrInvalid, "a deadline in the past")
	_, err = c.Extend(ctx, "o1", time.Time{})
	require.ErrorIs(t, err, store.ErrInvalid, "a heartbeat that forgot its deadline is refused, not a silent settle")
	_, err = c.Extend(ctx, "nope", t0.Add(time.Hour))
	require.ErrorIs(t, err, store.ErrNotFound)
	require.ErrorContains(t, err, "tenant-a/nope")
	_, err = e.st.Get(ctx, store.RefOf("o1"))
	require.ErrorIs(t, err, store.ErrNotFound, "the client's correlations live in its namespace")

	corr, err = c.Cancel(ctx, "o1", "order withdrawn")
	require.NoError(t, err)
	require.Equal(t, store.StateCancelled, corr.State)
	_, err = c.Cancel(ctx, "o1", "order withdrawn")
	require.NoError(t, err, "a repeated cancel is a duplicate")
	_, err = c.Cancel(ctx, "o1", "another reason")
	require.ErrorIs(t, err, store.ErrNotPending)
	_, err = c.Extend(ctx, "o1", t0.Add(2*time.Hour))
	require.ErrorIs(t, err, store.ErrNotPending)

	// At the deadline it is too late to extend or cancel: the store decides.
	_, err = c.Send(ctx, "payments", nil, client.Options{ID: "o2", Timeout: time.Minute})
	require.NoError(t, err)
	e.advance(time.Minute)
	_, err = c.Extend(ctx, "o2", e.clock.Now().Add(time.Minute))
	require.ErrorIs(t, err, store.ErrNotPending)
	got := e.getRef(t, store.Ref{Namespace: "tenant-a", ID: "o2"})
	require.Equal(t, store.StateTimedOut, got.State)
	require.Equal(t, store.ReasonDeadline, got.Outcome.Reason)
}

// A Cancel wakes the waiter, on any replica.
func TestClientCancelWakesWaiter(t *testing.T) {
	e := newEnv(t)
	c := e.client(t, "a", func(cfg *client.Config) { cfg.Transport = heldTransport{e.tr} })
	other := e.client(t, "b", nil)
	run(t, c)
	res, _ := e.start(t, c, waitCalls[0], client.Options{ID: "o1", Timeout: time.Minute})
	_, err := other.Cancel(t.Context(), "o1", "order withdrawn")
	require.NoError(t, err)
	r := result(t, res)
	require.ErrorIs(t, r.err, client.ErrCancelled)
	require.ErrorContains(t, r.err, "order withdrawn")
}

// Two clients in different namespaces use the same correlation ID at once:
// two correlations, and each gets its own reply.
func TestNamespacesKeepSameIDsApart(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			e := newEnvOn(t, b)
			clients := map[string]*client.Client{}
			results := map[string]<-chan callResult{}
			for _, ns := range []string{"tenant-a", "tenant-b"} {
				c := e.client(t, ns, func(cfg *client.Config) {
					cfg.Namespace, cfg.Service, cfg.Transport = ns, "orders-"+ns, heldTransport{e.tr}
				})
				run(t, c)
				clients[ns] = c
				res := make(chan callResult, 1)
				go func() {
					r, err := c.Request(t.Context(), "payments", []byte(ns), client.Options{ID: "order-42", Timeout: time.Minute})
					res <- callResult{[]string{string(r.Body)}, err}
				}()
				results[ns] = res
			}
			require.Eventually(t, func() bool { return e.tr.Len("held:payments") == 2 }, waitFor, time.Millisecond)
			for _, req := range e.tr.Take("held:payments") {
				require.Equal(t, "order-42", req.CorrelationID)
				require.Equal(t, "orders-"+req.Namespace+".replies", req.ReplyTo)
				e.answer(t, req, "paid for "+req.Namespace)
			}
			for ns, res := range results {
				r := result(t, res)
				require.NoError(t, r.err)
				require.Equal(t, []string{"paid for " + ns}, r.got)
				got := e.getRef(t, store.Ref{Namespace: ns, ID: "order-42"})
				require.Equal(t, store.StateCompleted, got.State)
				require.Len(t, got.Replies, 1)
				require.Equal(t, "paid for "+ns, string(got.Replies[0].Body))
			}
			_, err := e.st.Get(t.Context(), store.RefOf("order-42"))
			require.ErrorIs(t, err, store.ErrNotFound)
		})
	}
}

// A reply for another namespace that reaches a client (two namespaces
// share a reply address) is dropped: it decides neither correlation.
func TestReplyForAnotherNamespaceDropped(t *testing.T) {
	e := newEnv(t)
	statuses := newReplyStatuses()
	a := e.client(t, "a", func(cfg *client.Config) {
		cfg.Namespace, cfg.Transport, cfg.Metrics = "tenant-a", heldTransport{e.tr}, statuses
	})
	b := e.client(t, "b", func(cfg *client.Config) { cfg.Namespace, cfg.Transport = "tenant-b", heldTransport{e.tr} })
	run(t, a) // b sends but does not run: a takes every reply of "orders.replies"
	res, reqs := e.start(t, a, waitCalls[0], client.Options{ID: "order-42", Timeout: time.Minute})
	_, err := b.Send(t.Context(), "reports", nil, client.Options{ID: "order-42", Timeout: time.Minute})
	require.NoError(t, err)
	bReq := e.tr.Take("held:reports")
	require.Len(t, bReq, 1)
	require.Equal(t, "tenant-b", bReq[0].Namespace)
	require.Equal(t, reqs[0].ReplyTo, bReq[0].ReplyTo)

	e.answer(t, bReq[0], "for b")
	require.Equal(t, store.DeliverStatus("rejected"), statuses.next(t))
	for _, ns := range []string{"tenant-a", "tenant-b"} {
		got := e.getRef(t, store.Ref{Namespace: ns, ID: "order-42"})
		require.Equal(t, store.StatePending, got.State, ns)
		require.Empty(t, got.Replies, ns)
	}

	e.answer(t, reqs[0], "for a")
	require.Equal(t, store.DeliverCompleted, statuses.next(t))
	r := result(t, res)
	require.NoError(t, r.err)
	require.Equal(t, []string{"for a"}, r.got)
	require.Equal(t, store.StatePending, e.getRef(t, store.Ref{Namespace: "tenant-b", ID: "order-42"}).State)
}

// A responder answers in the namespace of the request.
func TestServeCarriesNamespace(t *testing.T) {
	e := newEnv(t)
	c := e.client(t, "a", func(cfg *client.Config) { cfg.Namespace = "tenant-a" })
	run(t, c)
	serve(t, c, "payments", func(_ context.Context, in client.Incoming) ([]byte, error) {
		return []byte(strings.ToUpper(in.Namespace)), nil
	})
	r, err := c.Request(t.Context(), "payments", nil, client.Options{ID: "o1"})
	require.NoError(t, err)
	require.Equal(t, "TENANT-A", string(r.Body))
	require.Equal(t, store.StateCompleted, e.getRef(t, store.Ref{Namespace: "tenant-a", ID: "o1"}).State)
}
