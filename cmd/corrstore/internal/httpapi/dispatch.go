package httpapi

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/corrstore/corrstore/cmd/corrstore/internal/webhook"
	"github.com/corrstore/corrstore/cmd/corrstore/internal/wire"
	"github.com/corrstore/corrstore/store"
)

// Bounds of the pull API.
const (
	DefaultPullLease = 30 * time.Second
	MaxPullLease     = time.Hour
	DefaultPullLimit = 10
	MaxPullLimit     = 100
	// pullRecheck is how often a long-polled claim looks again: retry
	// times and expired leases come due unannounced.
	pullRecheck = time.Second
)

// callbacks returns the callbacks file in use (nil: none).
func (s *Server) callbacks() *webhook.Callbacks {
	if s.cfg.Callbacks == nil {
		return nil
	}
	return s.cfg.Callbacks()
}

// checkHandler refuses, under StrictHandlers, a registration whose handler
// the callbacks file does not name in its namespace.
func (s *Server) checkHandler(reg *store.Correlation) error {
	h := reg.Callback.Handler
	if !s.cfg.StrictHandlers || h == "" || s.callbacks().Known(reg.Namespace, h) {
		return nil
	}
	return badField("callback.handler", "%q is neither pushed nor declared pull-only in namespace %q by the callbacks file (--callbacks-strict)", printable(h), reg.Namespace)
}

// pullNamespace is the namespace of a dispatch route, which the token must
// be allowed to write to.
func (c *call) pullNamespace() (string, error) {
	ns, err := namespace(c.p, c.get("namespace"))
	if err != nil {
		return "", err
	}
	if !c.p.Allows(ns) {
		return "", errorf(http.StatusForbidden, "forbidden", "namespace", "namespace: the token may not claim in namespace %q", ns)
	}
	return ns, nil
}

// claim leases due outcomes of one handler to a pull worker.
func (s *Server) claim(c *call) error {
	ns, err := c.pullNamespace()
	if err != nil {
		return err
	}
	var req wire.ClaimRequest
	if err := decode(c, s.cfg.MaxBody, &req, false); err != nil {
		return err
	}
	if err := store.ValidateHandler(req.Handler); err != nil {
		return err
	}
	if s.callbacks().Pushed(ns, req.Handler) {
		return errorf(http.StatusConflict, "pushed", "handler",
			"handler: %q is delivered by webhooks in namespace %q (the callbacks file); it cannot be claimed", printable(req.Handler), ns)
	}
	lease, err := parseTimeout("lease", req.Lease)
	if err != nil {
		return err
	}
	switch lease = cmp0(lease, DefaultPullLease); {
	case lease > MaxPullLease:
		return badField("lease", "%s is over the limit of %s", lease, MaxPullLease)
	case req.Limit < 0 || req.Limit > MaxPullLimit:
		return badField("limit", "must be between 1 and %d, got %d", MaxPullLimit, req.Limit)
	}
	wait, err := parseDuration("wait", req.Wait)
	if err != nil {
		return err
	}
	if wait > s.cfg.MaxWait {
		return badField("wait", "%s is over the limit of %s (--max-wait)", wait, s.cfg.MaxWait)
	}
	instance, err := pullInstance()
	if err != nil {
		return err
	}
	r := store.ClaimRequest{Instance: instance, Namespace: ns, Handlers: []string{req.Handler}, Lease: lease,
		Limit: cmp0(req.Limit, DefaultPullLimit)}
	ctx := c.r.Context()
	var wake chan struct{}
	if wait > 0 {
		key := store.Ref{Namespace: ns} // every change of the namespace
		wake = s.waiters.add(key)
		defer s.waiters.remove(key, wake)
	}
	deadline := time.Now().Add(wait)
	for {
		r.Now = s.clock.Now()
		got, err := s.st.ClaimDispatch(context.WithoutCancel(ctx), r)
		if err != nil && len(got) == 0 {
			return err
		}
		if ctx.Err() != nil {
			s.handBack(ctx, got) // the worker left: nobody would run them
			return nil
		}
		if len(got) > 0 || time.Until(deadline) <= 0 {
			return s.writeClaimed(c, got)
		}
		t := time.NewTimer(min(pullRecheck, time.Until(deadline)))
		select {
		case <-wake:
		case <-t.C:
		case <-s.drain:
			deadline = time.Now()
		case <-ctx.Done():
			t.Stop()
			return nil // nobody to answer; nothing claimed
		}
		t.Stop()
	}
}

// handBack makes claimed outcomes due again at once.
func (s *Server) handBack(ctx context.Context, got []*store.Correlation) {
	ctx = context.WithoutCancel(ctx)
	for _, c := range got {
		if _, err := s.st.NackDispatch(ctx, c.Ref(), c.Dispatch.Claim(), "pull: the worker left before the claim was answered", s.clock.Now()); err != nil {
			s.log.Warn("could not hand back a claim; it is claimable again after its lease", "ref", c.Ref().String(), "err", err)
		}
	}
}

func cmp0[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// writeClaimed answers the claimed outcomes (a claim carries the replies).
func (s *Server) writeClaimed(c *call, got []*store.Correlation) error {
	out := wire.ClaimResponse{Items: []wire.ClaimedItem{}}
	for _, cl := range got {
		out.Items = append(out.Items, wire.ClaimedItem{Claim: encodeClaim(cl.Dispatch.Claim()),
			LeaseUntil: cl.Dispatch.NextAt.UTC(), Attempt: cl.Dispatch.Attempts, Correlation: wire.OutcomeOf(cl)})
	}
	writeJSON(c.w, http.StatusOK, out)
	return nil
}

// pullInstance names the lease holder of one claim request: each claim is
// its own, so a worker can settle only what it was handed.
func pullInstance() (string, error) {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return "pull-" + hex.EncodeToString(b[:]), nil
}

// encodeClaim makes the opaque claim string of a lease: base64url of
// "instance attempt".
func encodeClaim(cl store.Claim) string {
	return base64.RawURLEncoding.EncodeToString([]byte(cl.Instance + " " + strconv.Itoa(cl.Attempt)))
}

func decodeClaim(s string) (store.Claim, error) {
	bad := badField("claim", "is not a claim this server handed out")
	b, err := base64.RawURLEncoding.Strict().DecodeString(s)
	if err != nil || len(b) > 2*store.MaxAddressLen {
		return store.Claim{}, bad
	}
	inst, n, ok := strings.Cut(string(b), " ")
	attempt, err := strconv.Atoi(n)
	if !ok || err != nil || attempt < 1 || !strings.HasPrefix(inst, "pull-") || strconv.Itoa(attempt) != n {
		return store.Claim{}, bad
	}
	return store.Claim{Instance: inst, Attempt: attempt}, nil
}

// settleCall reads the ref and the body of ack, nack and extend.
func (s *Server) settleCall(c *call) (store.Ref, wire.SettleRequest, store.Claim, error) {
	var req wire.SettleRequest
	ref, err := c.ref()
	if err != nil {
		return ref, req, store.Claim{}, err
	}
	if err := decode(c, s.cfg.MaxBody, &req, false); err != nil {
		return ref, req, store.Claim{}, err
	}
	if req.Claim == "" {
		return ref, req, store.Claim{}, badField("claim", "required: the claim POST /v1/dispatch/claim handed out")
	}
	cl, err := decodeClaim(req.Claim)
	return ref, req, cl, err
}

// onlyFields refuses the fields of SettleRequest that another route takes.
func onlyFields(route string, req wire.SettleRequest, allowed ...string) error {
	for name, set := range map[string]bool{"error": req.Error != "", "retry_in": req.RetryIn != "", "dead": req.Dead, "lease": req.Lease != ""} {
		if set && !strings.Contains(" "+strings.Join(allowed, " ")+" ", " "+name+" ") {
			return badField(name, "is not a field of %s", route)
		}
	}
	return nil
}

func (s *Server) writeSettled(c *call, ref store.Ref, res store.Result, err error) error {
	if err != nil {
		if errors.Is(err, store.ErrConflict) {
			return errorf(http.StatusConflict, "lease_lost", "claim", "claim: the lease is no longer yours (it ran out and the outcome may be claimed again): %s", err)
		}
		return mapNotFound(ref, err)
	}
	d := wire.Summary(res.Correlation).Dispatch
	out := wire.SettleResponse{Dispatch: d}
	if d.State == store.DispatchPending && res.Correlation.Dispatch.LeaseOwner != "" && d.NextAt != nil {
		out.LeaseUntil = d.NextAt
	}
	c.w.Header().Set("ETag", etag(res.Correlation))
	writeJSON(c.w, http.StatusOK, out)
	return nil
}

func (s *Server) dispatchAck(c *call) error {
	ref, req, cl, err := s.settleCall(c)
	if err != nil {
		return err
	}
	if err := onlyFields("ack", req); err != nil {
		return err
	}
	res, err := s.st.AckDispatch(c.r.Context(), ref, cl)
	return s.writeSettled(c, ref, res, err)
}

func (s *Server) dispatchNack(c *call) error {
	ref, req, cl, err := s.settleCall(c)
	if err != nil {
		return err
	}
	if err := onlyFields("nack", req, "error", "retry_in", "dead"); err != nil {
		return err
	}
	if msg := checkText(req.Error); msg != "" {
		return badField("error", "%s", msg)
	}
	if len(req.Error) > store.MaxReasonLen {
		return badField("error", "is %d bytes, the limit is %d", len(req.Error), store.MaxReasonLen)
	}
	retryIn, err := parseDuration("retry_in", req.RetryIn)
	if err != nil {
		return err
	}
	if req.Dead && req.RetryIn != "" {
		return badField("retry_in", "give retry_in or dead, not both")
	}
	now := s.clock.Now()
	retryAt := now.Add(retryIn)
	switch {
	case req.Dead:
		retryAt = time.Time{}
	case req.RetryIn == "":
		retryAt = now.Add(s.cfg.Backoff(cl.Attempt))
	}
	msg := cmp0(req.Error, "nacked by the pull worker")
	res, err := s.st.NackDispatch(c.r.Context(), ref, cl, msg, retryAt)
	return s.writeSettled(c, ref, res, err)
}

func (s *Server) dispatchExtend(c *call) error {
	ref, req, cl, err := s.settleCall(c)
	if err != nil {
		return err
	}
	if err := onlyFields("extend", req, "lease"); err != nil {
		return err
	}
	lease, err := parseTimeout("lease", req.Lease)
	if err != nil {
		return err
	}
	if lease = cmp0(lease, DefaultPullLease); lease > MaxPullLease {
		return badField("lease", "%s is over the limit of %s", lease, MaxPullLease)
	}
	res, err := s.st.ExtendDispatch(c.r.Context(), ref, cl, s.clock.Now().Add(lease))
	return s.writeSettled(c, ref, res, err)
}
