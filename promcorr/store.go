package promcorr

import (
	"context"
	"time"

	"github.com/corrstore/corrstore/store"
)

// Store wraps st so that every call is timed by operation, a failed one is
// counted by operation and error kind, and what it did is counted:
// registrations, replies by status, outcomes by state and dispatch results.
// Hand the wrapper, not st, to the client, the reaper and WatchStore.
func (m *Metrics) Store(st store.Store) store.Store { return &instrumented{st: st, m: m} }

type instrumented struct {
	st store.Store
	m  *Metrics
}

var _ store.Store = (*instrumented)(nil)

func (s *instrumented) observe(op string, start time.Time, err error) {
	s.m.opLatency.WithLabelValues(op).Observe(time.Since(start).Seconds())
	if err != nil {
		s.m.opErrors.WithLabelValues(op, errKind(err)).Inc()
	}
}

func (s *instrumented) dispatched(c *store.Correlation, result string) {
	h := ""
	if c != nil {
		h = c.Callback.Handler
	}
	s.m.dispatch.WithLabelValues(s.m.handlerLabel(h), result).Inc()
}

func (s *instrumented) outcome(c *store.Correlation) {
	if c != nil && c.State.Terminal() {
		s.m.outcomes.WithLabelValues(string(c.State)).Inc()
	}
}

func (s *instrumented) Register(ctx context.Context, c *store.Correlation) (store.RegisterResult, error) {
	start := time.Now()
	res, err := s.st.Register(ctx, c)
	s.observe("register", start, err)
	if err == nil && res.Created {
		s.m.registered.Inc()
		s.outcome(res.Correlation) // early replies may complete it at once
	}
	return res, err
}

func (s *instrumented) Deliver(ctx context.Context, ref store.Ref, r store.Reply) (store.DeliverResult, error) {
	start := time.Now()
	res, err := s.st.Deliver(ctx, ref, r)
	s.observe("deliver", start, err)
	if err == nil {
		s.m.replies.WithLabelValues(string(res.Status)).Inc()
		if res.Status == store.DeliverCompleted {
			s.outcome(res.Correlation)
		}
	}
	return res, err
}

func (s *instrumented) Get(ctx context.Context, ref store.Ref) (*store.Correlation, error) {
	start := time.Now()
	c, err := s.st.Get(ctx, ref)
	s.observe("get", start, err)
	return c, err
}

func (s *instrumented) Extend(ctx context.Context, ref store.Ref, deadline time.Time) (store.Result, error) {
	start := time.Now()
	res, err := s.st.Extend(ctx, ref, deadline)
	s.observe("extend", start, err)
	return res, err
}

func (s *instrumented) Cancel(ctx context.Context, ref store.Ref, reason string) (store.Result, error) {
	start := time.Now()
	res, err := s.st.Cancel(ctx, ref, reason)
	s.observe("cancel", start, err)
	if err == nil && !res.Duplicate {
		s.outcome(res.Correlation)
	}
	return res, err
}

func (s *instrumented) Expire(ctx context.Context, ref store.Ref, reason string) (store.Result, error) {
	start := time.Now()
	res, err := s.st.Expire(ctx, ref, reason)
	s.observe("expire", start, err)
	if err == nil && !res.Duplicate {
		s.outcome(res.Correlation)
	}
	return res, err
}

func (s *instrumented) ExpireDue(ctx context.Context, now time.Time, limit int) ([]*store.Correlation, error) {
	start := time.Now()
	cs, err := s.st.ExpireDue(ctx, now, limit)
	s.observe("expire_due", start, err)
	for _, c := range cs {
		s.outcome(c)
	}
	return cs, err
}

func (s *instrumented) ClaimDispatch(ctx context.Context, r store.ClaimRequest) ([]*store.Correlation, error) {
	start := time.Now()
	cs, err := s.st.ClaimDispatch(ctx, r)
	s.observe("claim_dispatch", start, err)
	for _, c := range cs {
		s.m.dispatch.WithLabelValues(s.m.handlerLabel(c.Callback.Handler), "claimed").Inc()
	}
	return cs, err
}

func (s *instrumented) AckDispatch(ctx context.Context, ref store.Ref, claim store.Claim) (store.Result, error) {
	start := time.Now()
	res, err := s.st.AckDispatch(ctx, ref, claim)
	s.observe("ack_dispatch", start, err)
	if err == nil && !res.Duplicate {
		s.dispatched(res.Correlation, "acked")
	}
	return res, err
}

func (s *instrumented) NackDispatch(ctx context.Context, ref store.Ref, claim store.Claim, errText string, retryAt time.Time) (store.Result, error) {
	start := time.Now()
	res, err := s.st.NackDispatch(ctx, ref, claim, errText, retryAt)
	s.observe("nack_dispatch", start, err)
	if err == nil && !res.Duplicate {
		result := "failed"
		if res.Correlation != nil && res.Correlation.Dispatch.State == store.DispatchDead {
			result = "dead"
		}
		s.dispatched(res.Correlation, result)
	}
	return res, err
}

func (s *instrumented) OldestDispatchDue(ctx context.Context, namespace, handler string) (time.Time, error) {
	start := time.Now()
	t, err := s.st.OldestDispatchDue(ctx, namespace, handler)
	s.observe("oldest_dispatch_due", start, err)
	return t, err
}

func (s *instrumented) ExtendDispatch(ctx context.Context, ref store.Ref, claim store.Claim, until time.Time) (store.Result, error) {
	start := time.Now()
	res, err := s.st.ExtendDispatch(ctx, ref, claim, until)
	s.observe("extend_dispatch", start, err)
	return res, err
}

func (s *instrumented) Redispatch(ctx context.Context, ref store.Ref) (store.Result, error) {
	start := time.Now()
	res, err := s.st.Redispatch(ctx, ref)
	s.observe("redispatch", start, err)
	if err == nil && !res.Duplicate {
		s.dispatched(res.Correlation, "redispatched")
	}
	return res, err
}

func (s *instrumented) List(ctx context.Context, f store.Filter) (store.Page, error) {
	start := time.Now()
	p, err := s.st.List(ctx, f)
	s.observe("list", start, err)
	return p, err
}

func (s *instrumented) Stats(ctx context.Context, namespace string) (store.Stats, error) {
	start := time.Now()
	st, err := s.st.Stats(ctx, namespace)
	s.observe("stats", start, err)
	return st, err
}

func (s *instrumented) Purge(ctx context.Context, before time.Time, limit int) (int, error) {
	start := time.Now()
	n, err := s.st.Purge(ctx, before, limit)
	s.observe("purge", start, err)
	return n, err
}

func (s *instrumented) DropEarlyReplies(ctx context.Context, before time.Time, limit int) (int, error) {
	start := time.Now()
	n, err := s.st.DropEarlyReplies(ctx, before, limit)
	s.observe("drop_early_replies", start, err)
	return n, err
}

func (s *instrumented) Subscribe(ctx context.Context) (<-chan store.Event, error) {
	return s.st.Subscribe(ctx)
}

func (s *instrumented) Secret(ctx context.Context, name string) ([]byte, error) {
	start := time.Now()
	b, err := s.st.Secret(ctx, name)
	s.observe("secret", start, err)
	return b, err
}

func (s *instrumented) Close() error { return s.st.Close() }
