package client

import (
	"context"
	"errors"
	"fmt"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	"sync"
	"time"

	"github.com/corrstore/corrstore/store"
)

// HandlerFunc handles the outcome of a correlation registered with its
// name as Options.Handler. It runs at least once per outcome, on any
// replica, so it must be safe to repeat. A nil error acknowledges the
// outcome; another error has it retried after Config.Backoff, until
// MaxAttempts, and Permanent(err) makes it dead at once. ctx ends with
// the dispatch lease.
type HandlerFunc func(ctx context.Context, o Outcome) error

// Outcome is what a callback handler gets: the decided correlation, with
// its state, outcome, replies and Callback.Data, and the attempt number.
type Outcome struct {
	*store.Correlation
	// Attempt counts the dispatches of this outcome, 1 for the first.
	Attempt int
}

// Err is OutcomeErr of the correlation: nil when it completed.
func (o Outcome) Err() error { return OutcomeErr(o.Correlation) }

type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// Permanent marks a handler's error as final: the outcome is not retried
// and its dispatch is dead (an operator can redispatch it).
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &permanentError{err}
}

func (c *Client) kickDispatch() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

// dispatchLoop claims due outcomes whenever one is decided (the watcher
// kicks it), every DispatchInterval (retries and expired leases come due
// with no event), and at once on start: what was decided while no instance
// ran, and what a dead instance left behind.
func (c *Client) dispatchLoop(ctx context.Context) {
	slots := make(chan struct{}, c.cfg.DispatchConcurrency)
	var wg sync.WaitGroup
	defer wg.Wait()
	tick := time.NewTicker(c.cfg.DispatchInterval)
	defer tick.Stop()
	for {
		if free := cap(slots) - len(slots); free > 0 {
			got := c.claim(ctx, free)
			for _, corr := range got {
				slots <- struct{}{}
				wg.Go(func() {
					defer func() { <-slots; c.kickDispatch() }()
					c.dispatch(ctx, corr)
				})
			}
			if len(got) == free {
				c.kickDispatch() // more may be due: claim again when a slot frees
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case <-c.kick:
		}
	}
}

// claim leases up to limit due outcomes of the client's namespace whose
// handler is registered with Handle. The claim is not cut short by
// ctx: a claim that commits after its caller left would hold leases nobody
// runs. Claimed while stopping, they are handed back at once.
func (c *Client) claim(ctx context.Context, limit int) []*store.Correlation {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	got, err := c.st.ClaimDispatch(cctx, store.ClaimRequest{Instance: c.cfg.Instance, Namespace: c.cfg.Namespace,
		Handlers: c.handlerNames(), Now: c.clock.Now(), Lease: c.cfg.DispatchLease, Limit: limit})
	if err != nil {
		// A corrupt record is set aside by the store; the others came.
		c.log.Error("claiming outcomes", "err", err)
	}
	if ctx.Err() == nil {
		return got
	}
	for _, corr := range got {
		if _, err := c.st.NackDispatch(cctx, corr.Ref(), corr.Dispatch.Claim(), "instance stopping", c.clock.Now()); err != nil {
			c.log.Warn("could not hand back a claim while stopping; it is taken over after the lease", "ref", corr.Ref().String(), "err", err)
		}
	}
	return nil
}

// dispatch runs the handler of one claimed outcome and settles the claim.
func (c *Client) dispatch(ctx context.Context, corr *store.Correlation) {
	claim := corr.Dispatch.Claim()
	name := corr.Callback.Handler
	log := c.log.With("ref", corr.Ref().String(), "handler", name, "attempt", claim.Attempt)
	start := time.Now()
	var err error
	if h, ok := c.handler(name); !ok {
		err = fmt.Errorf("no handler named %q on instance %s", name, c.cfg.Instance)
	} else if budgetAttempt(corr) > c.cfg.MaxAttempts {
		// The lease of the last attempt expired: its instance died in the handler.
		err = Permanent(fmt.Errorf("attempt %d is over max_attempts (%d): the lease of the last one expired without ack", claim.Attempt, c.cfg.MaxAttempts))
	} else {
		// The handler runs in a span continuing the request's trace, kept
		// with the correlation: request, reply and callback in one trace,
		// whichever instance runs it.
		hctx, cancel := context.WithTimeout(TraceContext(ctx, corr), c.cfg.DispatchLease)
		hctx, span := tracer().Start(hctx, "corrstore.callback "+name, trace.WithSpanKind(trace.SpanKindConsumer),
			trace.WithAttributes(attribute.String("corrstore.correlation", corr.Ref().String()), attribute.Int("corrstore.attempt", claim.Attempt)))
		err = call(hctx, h, Outcome{Correlation: corr, Attempt: claim.Attempt})
		endSpan(span, err)
		cancel()
	}
	took := time.Since(start)

	// Settle even while stopping, so that the next instance need not wait
	// for the lease.
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	var result string
	var serr error
	if err == nil {
		result = "done"
		_, serr = c.st.AckDispatch(sctx, corr.Ref(), claim)
	} else {
		now := c.clock.Now()
		var retryAt time.Time
		var perm *permanentError
		switch {
		case errors.As(err, &perm), budgetAttempt(corr) >= c.cfg.MaxAttempts:
			result = "dead"
		case ctx.Err() != nil:
			retryAt, result = now, "retry" // stopping: hand it over at once
		default:
			retryAt, result = now.Add(c.cfg.Backoff(claim.Attempt)), "retry"
		}
		var res store.Result
		res, serr = c.st.NackDispatch(sctx, corr.Ref(), claim, err.Error(), retryAt)
		if serr == nil && res.Correlation.Dispatch.State == store.DispatchDead {
			result = "dead"
		}
		if result == "dead" {
			log.Error("handler failed; the outcome is dead (an operator can redispatch it)", "err", err)
		} else {
			log.Warn("handler failed; the outcome will be retried", "err", err, "retry_at", retryAt)
		}
	}
	if serr != nil {
		result = "lost"
		log.Warn("could not settle the dispatch; another instance takes it after the lease", "err", serr)
	}
	c.cfg.Metrics.Dispatched(name, result, took)
}

// budgetAttempt numbers the current attempt within the budget an
// operator's redispatch renews: the claims since the last redispatch.
func budgetAttempt(corr *store.Correlation) int {
	n := 0
	for i := len(corr.Events) - 1; i >= 0; i-- {
		switch corr.Events[i].Type {
		case store.EventDispatchClaimed:
			n++
		case store.EventRedispatched:
			return n
		}
	}
	return corr.Dispatch.Attempts
}

// call runs h, turning a panic into an error.
func call(ctx context.Context, h HandlerFunc, o Outcome) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("handler panicked: %v", p)
		}
	}()
	return h(ctx, o)
}
