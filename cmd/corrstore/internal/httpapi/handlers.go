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
	"github.com/corrstore/corrstore/docs"
	"github.com/corrstore/corrstore/store"
)

func (s *Server) register(c *call) error {
	var req wire.RegisterRequest
	if err := decode(c, s.cfg.MaxBody, &req, false); err != nil {
		return err
	}
	reg, err := registration(&req)
	if err != nil {
		return err
	}
	if reg.Namespace, err = namespace(c.p, req.Namespace); err != nil {
		return err
	}
	if !c.p.Allows(reg.Namespace) {
		return errorf(http.StatusForbidden, "forbidden", "namespace", "namespace: the token may not write to namespace %q", reg.Namespace)
	}
	if err := s.checkHandler(reg); err != nil {
		return err
	}
	ctx := c.r.Context()
	if err := s.checkLimits(ctx, reg); err != nil {
		return err
	}
	// The signer first: a store that cannot give its secret fails the
	// request before anything is written.
	tokens, err := s.replyTokens(ctx)
	if err != nil {
		return err
	}
	res, err := s.st.Register(ctx, reg)
	if err != nil {
		return err
	}
	rc := res.Correlation
	j := wire.Summary(rc)
	j.ReplyToken = tokens.Sign(rc.Ref(), rc.Nonce)
	status := http.StatusOK
	if res.Created {
		status = http.StatusCreated
		c.w.Header().Set("Location", location(rc.Ref()))
	}
	c.w.Header().Set("ETag", etag(rc))
	writeJSON(c.w, status, j)
	return nil
}

// location is the URL path of a correlation, with its namespace.
func location(ref store.Ref) string {
	ref = ref.Norm()
	return "/v1/correlations/" + url.PathEscape(ref.ID) + "?namespace=" + url.QueryEscape(ref.Namespace)
}

// nsLimit is one per-namespace limit on registration: the usage it reads
// from the namespace's stats, and how a refusal words it.
type nsLimit struct {
	max  int64
	name string // the setting, as the 429 names it
	what string // the usage, after the count
	hint string
	used func(store.NamespaceStats) int64
}

// namespaceLimits are the per-namespace limits set, in the order checked.
func (s *Server) namespaceLimits() []nsLimit {
	var out []nsLimit
	if n := s.cfg.MaxPendingPerNamespace; n > 0 {
		out = append(out, nsLimit{max: n, name: "max_pending_per_namespace", what: "pending correlations",
			hint: "wait for some to be decided",
			used: func(st store.NamespaceStats) int64 { return st.States[store.StatePending] }})
	}
	if n := s.cfg.MaxBytesPerNamespace; n > 0 {
		out = append(out, nsLimit{max: n, name: "max_bytes_per_namespace", what: "bytes of replies and callback data",
			hint: "decided correlations give their bytes back when purged",
			used: func(st store.NamespaceStats) int64 { return st.Bytes }})
	}
	return out
}

// checkLimits enforces MaxPendingPerNamespace and MaxBytesPerNamespace
// with one read of the namespace's stats: a registration in a namespace at
// or over a limit is refused. A registration that repeats one already
// stored passes, so that a retry of a lost answer is answered.
func (s *Server) checkLimits(ctx context.Context, reg *store.Correlation) error {
	limits := s.namespaceLimits()
	if len(limits) == 0 {
		return nil
	}
	st, err := s.st.Stats(ctx, reg.Namespace)
	if err != nil {
		return err
	}
	ns := st.Namespaces[reg.Namespace]
	for _, l := range limits {
		used := l.used(ns)
		if used < l.max {
			continue
		}
		if reg.ID != "" {
			if _, err := s.st.Get(ctx, reg.Ref()); err == nil {
				return nil
			}
		}
		return errorf(http.StatusTooManyRequests, "limit_exceeded", "namespace",
			"namespace: %q holds %d %s, the limit is %d (%s); %s",
			reg.Namespace, used, l.what, l.max, l.name, l.hint)
	}
	return nil
}

func (s *Server) get(c *call) error {
	ref, err := c.ref()
	if err != nil {
		return err
	}
	rc, err := s.load(c.r.Context(), ref)
	if err != nil {
		return err
	}
	tag := etag(rc)
	c.w.Header().Set("ETag", tag)
	if c.r.Header.Get("If-None-Match") == tag {
		c.w.WriteHeader(http.StatusNotModified)
		return nil
	}
	writeJSON(c.w, http.StatusOK, wire.FromStore(rc))
	return nil
}

// load reads a correlation the caller may see (c.ref checked that);
// missing is the same 404 as another namespace's.
func (s *Server) load(ctx context.Context, ref store.Ref) (*store.Correlation, error) {
	rc, err := s.st.Get(ctx, ref)
	if errors.Is(err, store.ErrNotFound) {
		return nil, notFound(ref)
	}
	return rc, err
}

// mapNotFound turns the store's not found into the one 404 answer.
func mapNotFound(ref store.Ref, err error) error {
	if errors.Is(err, store.ErrNotFound) {
		return notFound(ref)
	}
	return err
}

// outcome answers 200 with the outcome view (what a webhook carries) once
// the correlation has an outcome, or 202 with
// the pending record when wait (capped at MaxWait) runs out first. The wait
// sleeps on the store's events, not a polling loop, and ends when the
// client goes away.
func (s *Server) outcome(c *call) error {
	wait, err := parseDuration("wait", c.get("wait"))
	if err != nil {
		return err
	}
	wait = min(wait, s.cfg.MaxWait)
	ref, err := c.ref()
	if err != nil {
		return err
	}
	var (
		wake  chan struct{}
		timer <-chan time.Time
	)
	if wait > 0 {
		wake = s.waiters.add(ref) // before the first read, so no outcome slips between
		defer s.waiters.remove(ref, wake)
		t := time.NewTimer(wait)
		defer t.Stop()
		timer = t.C
	}
	for {
		rc, err := s.load(c.r.Context(), ref)
		if err != nil {
			return err
		}
		c.w.Header().Set("ETag", etag(rc))
		if rc.State.Terminal() {
			writeJSON(c.w, http.StatusOK, wire.OutcomeOf(rc))
			return nil
		}
		if wait <= 0 {
			writeJSON(c.w, http.StatusAccepted, wire.FromStore(rc))
			return nil
		}
		if s.testHookWaiting != nil {
			s.testHookWaiting(ref)
		}
		select {
		case <-wake:
			continue
		case <-timer:
		case <-s.drain:
		case <-c.r.Context().Done():
			return nil // nobody to answer
		}
		wait = 0 // one last read, then answer
	}
}

// reply delivers a reply. A reply to a ref not registered yet is buffered
// as an early reply in the namespace the token may write to.
func (s *Server) reply(c *call) error {
	ref, err := c.ref()
	if err != nil {
		return err
	}
	var req wire.ReplyRequest
	if err := decode(c, s.cfg.MaxBody, &req, false); err != nil {
		return err
	}
	r, err := req.ToStore()
	if err != nil {
		return err
	}
	res, err := s.st.Deliver(c.r.Context(), ref, r)
	if err != nil {
		return mapNotFound(ref, err)
	}
	s.writeDeliver(c, res, wire.DeliverFromStore(res))
	return nil
}

func (s *Server) writeDeliver(c *call, res store.DeliverResult, out wire.DeliverResponse) {
	status := http.StatusOK
	if res.Correlation != nil {
		c.w.Header().Set("ETag", etag(res.Correlation))
		if res.Status == store.DeliverLate {
			status = http.StatusConflict
		}
	}
	writeJSON(c.w, status, out)
}

// replyWithToken delivers with a signed reply token instead of a bearer
// token. The token is valid as long as its registration exists: pending,
// the reply is delivered; decided, it is late (409); purged or registered
// again (another nonce), 410. It never buffers an early reply. The store
// checks the registration in the write that applies the reply (the reply is
// bound to the token's nonce), so no purge or new registration can come in
// between. A token without a nonce (signed before nonces) is bound to a
// record without one, written before schema 2, and to nothing else.
func (s *Server) replyWithToken(c *call) error {
	ctx := c.r.Context()
	tokens, err := s.replyTokens(ctx)
	if err != nil {
		return err
	}
	tok, err := tokens.Verify(c.r.PathValue("token"))
	if err != nil {
		return errorf(http.StatusUnauthorized, "bad_token", "token", "token: not a valid reply token")
	}
	var req wire.ReplyRequest
	if err := decode(c, s.cfg.MaxBody, &req, false); err != nil {
		return err
	}
	r, err := req.ToStore()
	if err != nil {
		return err
	}
	nonce := tok.Nonce
	r.Nonce = &nonce
	res, err := s.st.Deliver(ctx, tok.Ref, r)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return errorf(http.StatusGone, "token_gone", "token",
			"token: the registration this reply token was issued for no longer exists (purged, or registered again)")
	case err != nil:
		return err
	}
	out := wire.DeliverFromStore(res)
	if out.Correlation != nil {
		out.Correlation = responderView(out.Correlation)
	}
	s.writeDeliver(c, res, out)
	return nil
}

// responderView is what the holder of a reply token (no bearer token) is
// shown of the correlation: its state and counts, not what the registrant
// keeps for itself (callback data, labels, owner, idempotency key).
func responderView(j *wire.Correlation) *wire.Correlation {
	v := *j
	v.Callback, v.Labels, v.Owner, v.IdempotencyKey = nil, nil, "", ""
	return &v
}

func (s *Server) extend(c *call) error {
	ref, err := c.ref()
	if err != nil {
		return err
	}
	var req wire.ExtendRequest
	if err := decode(c, s.cfg.MaxBody, &req, false); err != nil {
		return err
	}
	deadline, err := parseTime("deadline", req.Deadline)
	if err != nil {
		return err
	}
	timeout, err := parseTimeout("timeout", req.Timeout)
	if err != nil {
		return err
	}
	switch {
	case deadline.IsZero() == (timeout == 0):
		return badField("deadline", "give deadline (RFC 3339) or timeout (from now, like 30s), exactly one")
	case timeout > 0:
		deadline = s.clock.Now().Add(timeout)
	}
	tokens, err := s.replyTokens(c.r.Context())
	if err != nil {
		return err
	}
	res, err := s.st.Extend(c.r.Context(), ref, deadline)
	if err != nil {
		return mapNotFound(ref, err)
	}
	j := wire.Summary(res.Correlation)
	// The same token as at registration: tokens do not expire.
	j.ReplyToken = tokens.Sign(res.Correlation.Ref(), res.Correlation.Nonce)
	c.w.Header().Set("ETag", etag(res.Correlation))
	writeJSON(c.w, http.StatusOK, j)
	return nil
}

func (s *Server) cancel(c *call) error { return s.decideWith(c, store.Store.Cancel) }

func (s *Server) expire(c *call) error { return s.decideWith(c, store.Store.Expire) }

func (s *Server) decideWith(c *call, op func(store.Store, context.Context, store.Ref, string) (store.Result, error)) error {
	ref, err := c.ref()
	if err != nil {
		return err
	}
	var req wire.ReasonRequest
	if err := decode(c, s.cfg.MaxBody, &req, true); err != nil {
		return err
	}
	if err := store.ValidateReason(req.Reason); err != nil {
		return err
	}
	res, err := op(s.st, c.r.Context(), ref, req.Reason)
	if err != nil {
		return mapNotFound(ref, err)
	}
	c.w.Header().Set("ETag", etag(res.Correlation))
	writeJSON(c.w, http.StatusOK, wire.Summary(res.Correlation))
	return nil
}

func (s *Server) redispatch(c *call) error {
	ref, err := c.ref()
	if err != nil {
		return err
	}
	var req struct{}
	if err := decode(c, s.cfg.MaxBody, &req, true); err != nil {
		return err
	}
	res, err := s.st.Redispatch(c.r.Context(), ref)
	if err != nil {
		return mapNotFound(ref, err)
	}
	c.w.Header().Set("ETag", etag(res.Correlation))
	writeJSON(c.w, http.StatusOK, wire.Summary(res.Correlation))
	return nil
}

// AllNamespaces is the value of ?namespace= that asks list and stats for
// every namespace the token may read.
const AllNamespaces = "*"

// listNamespace is the namespace filter of list: the namespace rule, or
// with AllNamespaces every namespace the token covers ("" for the store).
func listNamespace(p *Principal, ns string) (string, error) {
	if ns == AllNamespaces {
		switch {
		case p.All:
			return "", nil
		case len(p.Namespaces) == 1:
			return p.Namespaces[0], nil
		}
		return "", badField("namespace", "the token covers several namespaces (%s): list one at a time", strings.Join(p.Namespaces, ","))
	}
	ns, err := namespace(p, ns)
	if err != nil {
		return "", err
	}
	if !p.Allows(ns) {
		return "", errorf(http.StatusForbidden, "forbidden", "namespace", "namespace: the token may not read namespace %q", ns)
	}
	return ns, nil
}

func (s *Server) list(c *call) error {
	ns, err := listNamespace(c.p, c.get("namespace"))
	if err != nil {
		return err
	}
	f := store.Filter{
		Namespace:   ns,
		State:       store.State(c.get("state")),
		Owner:       c.get("owner"),
		Destination: c.get("destination"),
		Handler:     c.get("handler"),
		Dispatch:    store.DispatchState(c.get("dispatch")),
		Order:       store.Order(c.get("order")),
		Cursor:      c.get("cursor"),
	}
	for _, l := range c.q["label"] {
		k, v, ok := strings.Cut(l, "=")
		if !ok || k == "" {
			return badField("label", "%q is not KEY=VALUE", l)
		}
		if f.Labels == nil {
			f.Labels = map[string]string{}
		}
		f.Labels[k] = v
	}
	if s := c.get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > store.MaxListLimit {
			return badField("limit", "must be a whole number between 1 and %d, got %q", store.MaxListLimit, s)
		}
		f.Limit = n
	}
	for _, t := range []struct {
		name string
		dst  *time.Time
	}{
		{"created_after", &f.CreatedAfter}, {"created_before", &f.CreatedBefore},
		{"deadline_after", &f.DeadlineAfter}, {"deadline_before", &f.DeadlineBefore},
	} {
		if *t.dst, err = parseTime(t.name, c.get(t.name)); err != nil {
			return err
		}
	}
	if c.q.Has("older_than") {
		d, err := parseDuration("older_than", c.get("older_than"))
		if err != nil {
			return err
		}
		before := s.clock.Now().Add(-d)
		if f.CreatedBefore.IsZero() || before.Before(f.CreatedBefore) {
			f.CreatedBefore = before
		}
	}
	if err := f.Normalize(); err != nil {
		return err
	}
	page, err := s.st.List(c.r.Context(), f)
	if err != nil {
		return err
	}
	writeJSON(c.w, http.StatusOK, wire.ListFromStore(page))
	return nil
}

// stats counts the namespace of the namespace rule, or with
// ?namespace=* every namespace the token covers.
func (s *Server) stats(c *call) error {
	ctx := c.r.Context()
	var st store.Stats
	switch ns := c.get("namespace"); {
	case ns == AllNamespaces && c.p.All:
		var err error
		if st, err = s.st.Stats(ctx, ""); err != nil {
			return err
		}
	case ns == AllNamespaces:
		st.Namespaces = map[string]store.NamespaceStats{}
		for _, n := range c.p.Namespaces {
			one, err := s.st.Stats(ctx, n)
			if err != nil {
				return err
			}
			st.Namespaces[n] = one.Namespaces[n]
		}
	default:
		ns, err := namespace(c.p, ns)
		if err != nil {
			return err
		}
		if !c.p.Allows(ns) {
			return errorf(http.StatusForbidden, "forbidden", "namespace", "namespace: the token may not read namespace %q", ns)
		}
		if st, err = s.st.Stats(ctx, ns); err != nil {
			return err
		}
	}
	out := wire.StatsFromStore(st, s.clock.Now())
	if !c.p.All {
		out.EarlyReplies = nil // the store's count: other tenants' early replies are in it
	}
	for n, v := range out.Namespaces {
		v.PendingLimit, v.BytesLimit = s.cfg.MaxPendingPerNamespace, s.cfg.MaxBytesPerNamespace
		out.Namespaces[n] = v
	}
	writeJSON(c.w, http.StatusOK, out)
	return nil
}

func (s *Server) metrics(c *call) error {
	if s.cfg.Metrics == nil {
		return errorf(http.StatusNotFound, "not_found", "", "metrics are not enabled")
	}
	s.cfg.Metrics.ServeHTTP(c.w, c.r)
	return nil
}

// openapi serves the API document, docs/openapi.yaml.
func (s *Server) openapi(c *call) error {
	c.w.Header().Set("Content-Type", "application/yaml")
	c.w.Header().Set("Content-Length", strconv.Itoa(len(docs.OpenAPI)))
	c.w.WriteHeader(http.StatusOK)
	c.w.Write(docs.OpenAPI)
	return nil
}

func (s *Server) healthz(c *call) error {
	writeJSON(c.w, http.StatusOK, map[string]string{"status": "ok"})
	return nil
}

// readyz is ready when the store answers a read (Stats) and gives its
// reply-token secret (a write on Redis: SET NX), and no write of this
// server failed for want of a store in the last writeFailureHold (a full
// disk refuses writes while reads go on). The cause is told only to a
// caller with a valid bearer token (or in open mode).
func (s *Server) readyz(c *call) error {
	select {
	case <-s.drain:
		return s.notReady(c, "shutting down", nil)
	default:
	}
	ctx := c.r.Context()
	if err := s.health.failing(s.clock.Now()); err != nil {
		return s.notReady(c, "the store refused a write", err)
	}
	if _, err := s.st.Stats(ctx, store.DefaultNamespace); err != nil {
		return s.notReady(c, "the store does not answer", err)
	}
	if _, err := s.st.Secret(ctx, ReplySecretName); err != nil {
		return s.notReady(c, "the store does not answer", err)
	}
	writeJSON(c.w, http.StatusOK, map[string]string{"status": "ready"})
	return nil
}

func (s *Server) notReady(c *call, why string, err error) error {
	msg := "not ready: " + why
	if err != nil && s.mayKnowInternals(c.r) {
		msg += ": " + err.Error()
	}
	c.w.Header().Set("Retry-After", strconv.Itoa(retryAfterSeconds))
	return errorf(http.StatusServiceUnavailable, "unavailable", "", "%s", msg)
}
