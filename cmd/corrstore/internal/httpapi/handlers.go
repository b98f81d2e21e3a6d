package httpapi

import (
	"context"
	"errors"

	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/corrstore/corrstore/cmd/corrstore/internal/wire"
	"github.com/corrstore/corrstore/store"
)

func (s *Server) register(w http.ResponseWriter, r *http.Request, p *Principal) error {
	var req wire.RegisterRequest
	if err := decode(w, r, s.cfg.MaxBody, &req, false); err != nil {
		return err
	}
	c, err := registration(&req)
	if err != nil {
		return err
	}
	if c.Namespace == "" && !p.All && len(p.Namespaces) == 1 {
		c.Namespace = p.Namespaces[0]
	}
	ns := orDefault(c.Namespace, store.DefaultNamespace)
	if !p.Allows(ns) {
		return errorf(http.StatusForbidden, "forbidden", "namespace", "namespace: the token may not write to namespace %q", ns)
	}
	res, err := s.st.Register(r.Context(), c)
	if err != nil {
		return err
	}
	j := wire.FromStore(res.Correlation)
	j.ReplyToken = s.replyToken(res.Correlation)
	status := http.StatusOK
	if res.Created {
		status = http.StatusCreated
		w.Header().Set("Location", "/v1/correlations/"+url.PathEscape(res.Correlation.ID))
	}
	w.Header().Set("ETag", etag(res.Correlation))
	writeJSON(w, status, j)
	return nil
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func (s *Server) get(w http.ResponseWriter, r *http.Request, p *Principal) error {
	c, err := s.load(r.Context(), r.PathValue("id"), p)
	if err != nil {
		return err
	}
	tag := etag(c)
	w.Header().Set("ETag", tag)
	if r.Header.Get("If-None-Match") == tag {
		w.WriteHeader(http.StatusNotModified)
		return nil
	}
	writeJSON(w, http.StatusOK, wire.FromStore(c))
	return nil
}

// outcome answers 200 with the record once it has an outcome, or 202 with
// the pending record when wait (capped at MaxWait) runs out first. The wait
// sleeps on the store's events, not a polling loop, and ends when the
// client goes away.
func (s *Server) outcome(w http.ResponseWriter, r *http.Request, p *Principal) error {
	q := r.URL.Query()
	if err := onlyParams(q, "wait"); err != nil {
		return err
	}
	wait, err := parseDuration("wait", q.Get("wait"))
	if err != nil {
		return err
	}
	wait = min(wait, s.cfg.MaxWait)
	id := r.PathValue("id")
	if err := store.ValidateID(id); err != nil {
		return err
	}
	var (
		wake  chan struct{}
		timer <-chan time.Time
	)
	if wait > 0 {
		wake = s.waiters.add(id) // before the first read, so no outcome slips between
		defer s.waiters.remove(id, wake)
		t := time.NewTimer(wait)
		defer t.Stop()
		timer = t.C
	}
	for {
		c, err := s.load(r.Context(), id, p)
		if err != nil {
			return err
		}
		w.Header().Set("ETag", etag(c))
		if c.State.Terminal() {
			writeJSON(w, http.StatusOK, wire.FromStore(c))
			return nil
		}
		if wait <= 0 {
			writeJSON(w, http.StatusAccepted, wire.FromStore(c))
			return nil
		}
		if s.testHookWaiting != nil {
			s.testHookWaiting(id)
		}
		select {
		case <-wake:
			continue
		case <-timer:
		case <-s.drain:
		case <-r.Context().Done():
			return nil // nobody to answer
		}
		wait = 0 // one last read, then answer
	}
}

func (s *Server) reply(w http.ResponseWriter, r *http.Request, p *Principal) error {
	id := r.PathValue("id")
	var req wire.ReplyRequest
	if err := decode(w, r, s.cfg.MaxBody, &req, false); err != nil {
		return err
	}
	if !p.All {
		// A restricted token may reply only to a correlation it can see; an
		// early reply to an unknown ID could land in another namespace.
		if _, err := s.load(r.Context(), id, p); err != nil {
			return err
		}
	}
	return s.deliver(w, r, id, req.ToStore())
}

func (s *Server) deliver(w http.ResponseWriter, r *http.Request, id string, reply store.Reply) error {
	res, err := s.st.Deliver(r.Context(), id, reply)
	if err != nil {
		return err
	}
	status := http.StatusOK
	if res.Correlation != nil {
		w.Header().Set("ETag", etag(res.Correlation))
		if res.Status == store.DeliverLate {
			status = http.StatusConflict
		}
	}
	writeJSON(w, status, wire.DeliverFromStore(res))
	return nil
}

// replyWithToken delivers with a signed reply token instead of a bearer token.
func (s *Server) replyWithToken(w http.ResponseWriter, r *http.Request, _ *Principal) error {
	ns, id, err := s.cfg.ReplyTokens.Verify(r.PathValue("token"), s.clock.Now())
	switch {
	case errors.Is(err, ErrTokenExpired):
		return errorf(http.StatusGone, "token_expired", "token", "token: the reply token for correlation %q has expired", id)
	case err != nil:
		return errorf(http.StatusUnauthorized, "bad_token", "token", "token: not a valid reply token")
	}
	var req wire.ReplyRequest
	if err := decode(w, r, s.cfg.MaxBody, &req, false); err != nil {
		return err
	}
	// The token names its correlation; it never buffers an early reply, and a
	// record that was purged and registered again elsewhere is not its own.
	if _, err := s.load(r.Context(), id, &Principal{Namespaces: []string{ns}}); err != nil {
		return err
	}
	return s.deliver(w, r, id, req.ToStore())
}

func (s *Server) extend(w http.ResponseWriter, r *http.Request, p *Principal) error {
	var req wire.ExtendRequest
	if err := decode(w, r, s.cfg.MaxBody, &req, false); err != nil {
		return err
	}
	deadline, err := parseTime("deadline", req.Deadline)
	if err != nil {
		return err
	}
	timeout, err := parseDuration("timeout", req.Timeout)
	if err != nil {
		return err
	}
	switch {
	case deadline.IsZero() == (timeout == 0):
		return badField("deadline", "give deadline (RFC 3339) or timeout (from now, like 30s), exactly one")
	case timeout > 0:
		deadline = s.clock.Now().Add(timeout)
	}
	c, err := s.load(r.Context(), r.PathValue("id"), p)
	if err != nil {
		return err
	}
	res, err := s.st.Extend(r.Context(), c.ID, deadline)
	if err != nil {
		return err
	}
	j := wire.FromStore(res.Correlation)
	j.ReplyToken = s.replyToken(res.Correlation) // the old one expires with the old deadline
	w.Header().Set("ETag", etag(res.Correlation))
	writeJSON(w, http.StatusOK, j)
	return nil
}

func (s *Server) cancel(w http.ResponseWriter, r *http.Request, p *Principal) error {
	return s.decideWith(w, r, p, store.Store.Cancel)
}

func (s *Server) expire(w http.ResponseWriter, r *http.Request, p *Principal) error {
	return s.decideWith(w, r, p, store.Store.Expire)
}

func (s *Server) decideWith(w http.ResponseWriter, r *http.Request, p *Principal,
	op func(store.Store, context.Context, string, string) (store.Result, error)) error {
	var req wire.ReasonRequest
	if err := decode(w, r, s.cfg.MaxBody, &req, true); err != nil {
		return err
	}
	if err := store.ValidateReason(req.Reason); err != nil {
		return err
	}
	c, err := s.load(r.Context(), r.PathValue("id"), p)
	if err != nil {
		return err
	}
	res, err := op(s.st, r.Context(), c.ID, req.Reason)
	if err != nil {
		return err
	}
	w.Header().Set("ETag", etag(res.Correlation))
	writeJSON(w, http.StatusOK, wire.FromStore(res.Correlation))
	return nil
}

func (s *Server) redispatch(w http.ResponseWriter, r *http.Request, p *Principal) error {
	var req struct{}
	if err := decode(w, r, s.cfg.MaxBody, &req, true); err != nil {
		return err
	}
	c, err := s.load(r.Context(), r.PathValue("id"), p)
	if err != nil {
		return err
	}
	res, err := s.st.Redispatch(r.Context(), c.ID)
	if err != nil {
		return err
	}
	w.Header().Set("ETag", etag(res.Correlation))
	writeJSON(w, http.StatusOK, wire.FromStore(res.Correlation))
	return nil
}

// listParams are the query parameters of GET /v1/correlations.
var listParams = []string{"state", "namespace", "owner", "destination", "handler", "label", "dispatch",
	"older_than", "created_after", "created_before", "deadline_after", "deadline_before", "order", "limit", "cursor"}

func (s *Server) list(w http.ResponseWriter, r *http.Request, p *Principal) error {
	q := r.URL.Query()
	if err := onlyParams(q, listParams...); err != nil {
		return err
	}
	for _, k := range listParams {
		if k != "label" && len(q[k]) > 1 {
			return badField(k, "given %d times; give it once", len(q[k]))
		}
	}
	f := store.Filter{
		Namespace:   q.Get("namespace"),
		State:       store.State(q.Get("state")),
		Owner:       q.Get("owner"),
		Destination: q.Get("destination"),
		Handler:     q.Get("handler"),
		Dispatch:    store.DispatchState(q.Get("dispatch")),
		Order:       store.Order(q.Get("order")),
		Cursor:      q.Get("cursor"),
	}
	for _, l := range q["label"] {
		k, v, ok := strings.Cut(l, "=")
		if !ok || k == "" {
			return badField("label", "%q is not KEY=VALUE", l)
		}
		if f.Labels == nil {
			f.Labels = map[string]string{}
		}
		f.Labels[k] = v
	}
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > store.MaxListLimit {
			return badField("limit", "must be a whole number between 1 and %d, got %q", store.MaxListLimit, s)
		}
		f.Limit = n
	}
	var err error
	for _, t := range []struct {
		name string
		dst  *time.Time
	}{
		{"created_after", &f.CreatedAfter}, {"created_before", &f.CreatedBefore},
		{"deadline_after", &f.DeadlineAfter}, {"deadline_before", &f.DeadlineBefore},
	} {
		if *t.dst, err = parseTime(t.name, q.Get(t.name)); err != nil {
			return err
		}
	}
	if q.Has("older_than") {
		d, err := parseDuration("older_than", q.Get("older_than"))
		if err != nil {
			return err
		}
		before := s.clock.Now().Add(-d)
		if f.CreatedBefore.IsZero() || before.Before(f.CreatedBefore) {
			f.CreatedBefore = before
		}
	}
	if !p.All {
		switch {
		case f.Namespace == "" && len(p.Namespaces) == 1:
			f.Namespace = p.Namespaces[0]
		case f.Namespace == "":
			return badField("namespace", "required: the token covers several namespaces (%s)", strings.Join(p.Namespaces, ","))
		case !p.Allows(f.Namespace):
			return errorf(http.StatusForbidden, "forbidden", "namespace", "namespace: the token may not read namespace %q", f.Namespace)
		}
	}
	if err := f.Normalize(); err != nil {
		return err
	}
	page, err := s.st.List(r.Context(), f)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, wire.ListFromStore(page))
	return nil
}

func (s *Server) stats(w http.ResponseWriter, r *http.Request, p *Principal) error {
	q := r.URL.Query()
	if err := onlyParams(q, "namespace"); err != nil {
		return err
	}
	ns := q.Get("namespace")
	if ns != "" && !p.Allows(ns) {
		return errorf(http.StatusForbidden, "forbidden", "namespace", "namespace: the token may not read namespace %q", ns)
	}
	var st store.Stats
	if ns != "" || p.All {
		var err error
		if st, err = s.st.Stats(r.Context(), ns); err != nil {
			return err
		}
	} else {
		st.Namespaces = map[string]store.NamespaceStats{}
		for _, n := range p.Namespaces {
			one, err := s.st.Stats(r.Context(), n)
			if err != nil {
				return err
			}
			st.Namespaces[n] = one.Namespaces[n]
			st.EarlyReplies = one.EarlyReplies
		}
	}
	writeJSON(w, http.StatusOK, wire.StatsFromStore(st, s.clock.Now()))
	return nil
}

func (s *Server) metrics(w http.ResponseWriter, r *http.Request, _ *Principal) error {
	if s.cfg.Metrics == nil {
		return errorf(http.StatusNotFound, "not_found", "", "metrics are not enabled")
	}
	s.cfg.Metrics.ServeHTTP(w, r)
	return nil
}

func (s *Server) healthz(w http.ResponseWriter, _ *http.Request, _ *Principal) error {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	return nil
}

// readyz is ready when the store answers a Stats call.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request, _ *Principal) error {
	select {
	case <-s.drain:
		return errorf(http.StatusServiceUnavailable, "unavailable", "", "shutting down")
	default:
	}
	if _, err := s.st.Stats(r.Context(), store.DefaultNamespace); err != nil {
		return errorf(http.StatusServiceUnavailable, "unavailable", "", "store not reachable: %v", err)
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
	return nil
}

// onlyParams rejects a query parameter the route does not take.
func onlyParams(q url.Values, allowed ...string) error {
	for k := range q {
		ok := false
		for _, a := range allowed {
			ok = ok || k == a
		}
		if !ok {
			if len(allowed) == 0 {
				return badField(k, "unknown query parameter; this route takes none")
			}
			return badField(k, "unknown query parameter; this route takes %s", strings.Join(allowed, ", "))
		}
	}
	return nil
}
