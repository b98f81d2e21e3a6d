package client_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/corrstore/corrstore/client"
	"github.com/corrstore/corrstore/store"
)

// A failing handler is retried after the backoff, each time by the clock,
// and the outcome is dead after MaxAttempts.
func TestDispatchRetryThenDead(t *testing.T) {
	e := newEnv(t)
	m := newSettled()
	var backoffs []int
	c := e.client(t, "a", func(cfg *client.Config) {
		cfg.MaxAttempts = 3
		cfg.Metrics = m
		cfg.Backoff = func(attempt int) time.Duration {
			backoffs = append(backoffs, attempt)
			return time.Duration(attempt) * time.Minute
		}
	})
	rec := newRecorder()
	rec.fail = func(o client.Outcome) error { return fmt.Errorf("downstream refused attempt %d", o.Attempt) }
	c.Handle("resume", rec.handle)
	run(t, c)

	_, err := e.st.Register(t.Context(), &store.Correlation{ID: "o1", Callback: store.Callback{Handler: "resume"}})
	require.NoError(t, err)
	_, err = e.st.Deliver(t.Context(), store.RefOf("o1"), store.Reply{Body: []byte("ok")})
	require.NoError(t, err)

	require.Equal(t, 1, rec.next(t).Attempt)
	require.Equal(t, "retry", m.next(t))
	got := e.get(t, "o1")
	require.Equal(t, store.DispatchPending, got.Dispatch.State)
	require.Equal(t, "downstream refused attempt 1", got.Dispatch.LastError)
	require.Equal(t, e.clock.Now().Add(time.Minute), got.Dispatch.NextAt, "due again after the backoff")

	e.clock.Add(time.Minute)
	require.Equal(t, 2, rec.next(t).Attempt)
	require.Equal(t, "retry", m.next(t))
	e.clock.Add(2 * time.Minute)
	require.Equal(t, 3, rec.next(t).Attempt)
	require.Equal(t, "dead", m.next(t))

	got = e.get(t, "o1")
	require.Equal(t, store.DispatchDead, got.Dispatch.State)
	require.Equal(t, 3, got.Dispatch.Attempts)
	require.Equal(t, "downstream refused attempt 3", got.Dispatch.LastError)
	require.Equal(t, []int{1, 2}, backoffs, "no backoff after the last attempt")

	// An operator redispatches; this time the handler succeeds.
	rec.fail = nil
	_, err = e.st.Redispatch(t.Context(), store.RefOf("o1"))
	require.NoError(t, err)
	c.Config() // (the client needs no nudge: the redispatch is an event)
	require.Equal(t, 4, rec.next(t).Attempt)
	require.Equal(t, "done", m.next(t))
}

func TestDispatchPermanentAndPanic(t *testing.T) {
	e := newEnv(t)
	m := newSettled()
	c := e.client(t, "a", func(cfg *client.Config) { cfg.Metrics = m })
	c.Handle("give-up", func(context.Context, client.Outcome) error {
		return client.Permanent(errors.New("order no longer exists"))
	})
	c.Handle("panics", func(context.Context, client.Outcome) error { panic("boom") })
	run(t, c)

	for _, h := range []string{"give-up", "panics"} {
		_, err := e.st.Register(t.Context(), &store.Correlation{ID: h, Callback: store.Callback{Handler: h}})
		require.NoError(t, err)
		_, err = e.st.Cancel(t.Context(), store.RefOf(h), "test")
		require.NoError(t, err)
	}
	results := map[string]bool{m.next(t): true, m.next(t): true}
	require.Equal(t, map[string]bool{"dead": true, "retry": true}, results)
	require.Equal(t, store.DispatchDead, e.get(t, "give-up").Dispatch.State)
	require.Equal(t, "order no longer exists", e.get(t, "give-up").Dispatch.LastError)
	require.Equal(t, "handler panicked: boom", e.get(t, "panics").Dispatch.LastError)
}

// Outcomes decided while no client ran are dispatched when one starts, and
// an outcome leased by an instance that died is taken over after its lease.
func TestReconcileOnStart(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	for i := range 6 {
		_, err := e.st.Register(ctx, &store.Correlation{ID: fmt.Sprintf("o%d", i), Timeout: time.Minute,
			Callback: store.Callback{Handler: "resume", Data: fmt.Appendf(nil, "step %d", i)}})
		require.NoError(t, err)
	}
	_, err := e.st.Cancel(ctx, store.RefOf("o1"), "withdrawn")
	require.NoError(t, err)
	_, err = e.st.Deliver(ctx, store.RefOf("o2"), store.Reply{Body: []byte("done")})
	require.NoError(t, err)
	// A dead instance had claimed o2 and never acked: its lease runs 30s.
	claimed, err := e.st.ClaimDispatch(ctx, store.ClaimRequest{Instance: "dead-instance", Handlers: []string{"resume"}, Now: e.clock.Now(), Lease: 30 * time.Second, Limit: 10})
	require.NoError(t, err)
	require.Len(t, claimed, 2)
	_, err = e.st.AckDispatch(ctx, store.RefOf("o1"), claimed[0].Dispatch.Claim()) // o1 was handled
	if claimed[0].ID != "o1" {
		_, err = e.st.AckDispatch(ctx, store.RefOf("o1"), claimed[1].Dispatch.Claim())
	}
	require.NoError(t, err)
	_, err = e.st.Deliver(ctx, store.RefOf("o0"), store.Reply{Body: []byte("done")})
	require.NoError(t, err)

	c := e.client(t, "b", nil)
	rec := newRecorder()
	c.Handle("resume", rec.handle)
	run(t, c)

	o := rec.next(t)
	require.Equal(t, "o0", o.ID, "decided while nobody ran: dispatched on start")
	require.Equal(t, store.StateCompleted, o.State)

	e.clock.Add(31 * time.Second) // the dead instance's lease expires
	o = rec.next(t)
	require.Equal(t, "o2", o.ID)
	require.Equal(t, 2, o.Attempt)
	// o2's ack must be in before time jumps past its new lease, or the
	// store rightly hands it out again (at least once).
	e.waitState(t, "o2", dispatchIs(store.DispatchDone))

	e.clock.Add(time.Minute) // the rest time out
	require.Equal(t, 3, e.reap(t).Expired.TimedOut)
	seen := map[string]store.State{}
	for range 3 {
		o := rec.next(t)
		seen[o.ID] = o.State
		require.Equal(t, fmt.Sprintf("step %s", o.ID[1:]), string(o.Callback.Data))
	}
	require.Equal(t, map[string]store.State{"o3": store.StateTimedOut, "o4": store.StateTimedOut, "o5": store.StateTimedOut}, seen)
	for i := range 6 {
		e.waitState(t, fmt.Sprintf("o%d", i), dispatchIs(store.DispatchDone))
	}
}

// An outcome whose handler this instance lacks, or of another namespace,
// is never claimed: it waits for its own claimer (a webhook, a pull worker,
// another service) with its attempts untouched.
func TestDispatchOnlyOwnHandlers(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	decide := func(r store.Ref, handler string) {
		_, err := e.st.Register(ctx, &store.Correlation{ID: r.ID, Namespace: r.Namespace, Callback: store.Callback{Handler: handler}})
		require.NoError(t, err)
		_, err = e.st.Cancel(ctx, r, "x")
		require.NoError(t, err)
	}
	// Decided first, so an instance that claimed them would take them
	// no later than the outcome it serves (claims are earliest first).
	decide(store.RefOf("o-missing"), "missing")
	decide(store.Ref{Namespace: "elsewhere", ID: "o-other-ns"}, "other")
	e.clock.Add(time.Second)
	decide(store.RefOf("o-mine"), "other")

	m := newSettled()
	c := e.client(t, "a", func(cfg *client.Config) { cfg.Metrics = m })
	c.Handle("other", func(context.Context, client.Outcome) error { return nil })
	run(t, c)
	require.Equal(t, "done", m.next(t))
	require.Equal(t, store.DispatchDone, e.get(t, "o-mine").Dispatch.State)
	got := e.get(t, "o-missing")
	require.Equal(t, store.DispatchPending, got.Dispatch.State)
	require.Zero(t, got.Dispatch.Attempts, "not claimed, so no attempt burnt")
	other, err := e.st.Get(ctx, store.Ref{Namespace: "elsewhere", ID: "o-other-ns"})
	require.NoError(t, err)
	require.Zero(t, other.Dispatch.Attempts, "another namespace's outcome is not this client's")
}

// A lease expired on the last attempt (the instance died in the handler)
// makes the outcome dead, not run once more than MaxAttempts.
func TestDispatchLeaseExpiredOnLastAttempt(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	_, err := e.st.Register(ctx, &store.Correlation{ID: "o1", Callback: store.Callback{Handler: "resume"}})
	require.NoError(t, err)
	_, err = e.st.Cancel(ctx, store.RefOf("o1"), "x")
	require.NoError(t, err)
	_, err = e.st.ClaimDispatch(ctx, store.ClaimRequest{Instance: "dead-instance", Handlers: []string{"resume"}, Now: e.clock.Now(), Lease: time.Second, Limit: 1})
	require.NoError(t, err)
	e.clock.Add(2 * time.Second)

	m := newSettled()
	c := e.client(t, "a", func(cfg *client.Config) { cfg.MaxAttempts = 1; cfg.Metrics = m })
	rec := newRecorder()
	c.Handle("resume", rec.handle)
	run(t, c)
	require.Equal(t, "dead", m.next(t))
	got := e.get(t, "o1")
	require.Equal(t, store.DispatchDead, got.Dispatch.State)
	require.Contains(t, got.Dispatch.LastError, "over max_attempts")
	require.Empty(t, rec.got)
}

// Stopping Run while a handler runs hands its outcome over at once.
func TestStopDuringHandler(t *testing.T) {
	e := newEnv(t)
	m := newSettled()
	c := e.client(t, "a", func(cfg *client.Config) { cfg.Metrics = m })
	entered := make(chan struct{})
	c.Handle("resume", func(ctx context.Context, _ client.Outcome) error {
		close(entered)
		<-ctx.Done()
		return ctx.Err()
	})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	_, err := e.st.Register(t.Context(), &store.Correlation{ID: "o1", Callback: store.Callback{Handler: "resume"}})
	require.NoError(t, err)
	_, err = e.st.Cancel(t.Context(), store.RefOf("o1"), "x")
	require.NoError(t, err)
	<-entered
	cancel()
	require.NoError(t, <-done)
	require.Equal(t, "retry", m.next(t))
	got := e.get(t, "o1")
	require.Equal(t, store.DispatchPending, got.Dispatch.State)
	require.Equal(t, e.clock.Now(), got.Dispatch.NextAt, "due again at once for the next instance")
}
