// Package httpapi is the HTTP API of corrstore serve (DESIGN §7): JSON under
// /v1, bearer-token auth with roles and namespaces, signed reply tokens,
// long-polled outcomes, health checks and the Prometheus endpoint.
//
// # Namespaces
//
// A correlation is addressed by (namespace, id). Every route takes its
// namespace the same way: from the request (namespace in a registration's
// body, ?namespace= on every other route), else the token's only namespace
// when it has exactly one, else "default". The namespace is checked against
// the token before any record is read: another namespace's id answers the
// same 404 as a missing one.
package httpapi

import (
	"cmp"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/corrstore/corrstore/cmd/corrstore/internal/webhook"
	"github.com/corrstore/corrstore/store"
)

// Defaults of Config.
const (
	DefaultMaxBody = 2 << 20
	DefaultMaxWait = 60 * time.Second
)

// Config configures a Server. Zero fields take the defaults given.
type Config struct {
	// Store holds the correlations. Required.
	Store store.Store
	// Clock gives the time for ages and timeouts. Default store.RealClock.
	Clock store.Clock
	// Logger, with "component"="http". Default slog.Default().
	Logger *slog.Logger
	// Tokens are the accepted bearer tokens; nil: no auth (open mode, which
	// the caller allows only on loopback).
	Tokens *Tokens
	// ReplyTokens signs reply tokens (LoadReplyTokens reads a secret file).
	// Default: the store's secret ReplySecretName, made once per store, so
	// tokens survive restarts and verify on every replica of the store.
	ReplyTokens *ReplyTokens
	// MaxBody caps every request body, in bytes. Default 2 MiB.
	MaxBody int64
	// MaxWait caps the long-poll wait of GET …/outcome?wait=. Default 60s.
	MaxWait time.Duration
	// MaxPendingPerNamespace, when positive, refuses a registration (429)
	// in a namespace that already holds this many pending correlations
	// (flag --max-pending-per-namespace). The count is the store's Stats, so
	// concurrent registrations may pass it by a few. Default 0: no limit.
	MaxPendingPerNamespace int64
	// MaxBytesPerNamespace, when positive, refuses a registration (429) in
	// a namespace whose stored bytes (store.NamespaceStats.Bytes: reply
	// bodies, late reply bodies, callback data) are this many or more (flag
	// --max-bytes-per-namespace). Replies are not refused: the namespace
	// stops growing by new correlations until Purge takes bytes back.
	// Default 0: no limit.
	MaxBytesPerNamespace int64
	// Callbacks returns the callbacks file in use (it may be reloaded);
	// nil: none. Its pushed handlers cannot be claimed by pull.
	Callbacks func() *webhook.Callbacks
	// StrictHandlers refuses (400) a registration whose handler the
	// callbacks file neither pushes nor declares pull-only in its
	// namespace (--callbacks-strict).
	StrictHandlers bool
	// Backoff is the wait after failed attempt n of a pull worker's nack
	// that gives no retry_in. Default webhook.DefaultBackoff.
	Backoff func(attempt int) time.Duration
	// Instrument, when set, wraps each route's handler (metrics by route).
	Instrument func(method, path string, h http.Handler) http.Handler
	// Metrics serves GET /metrics; nil: 404.
	Metrics http.Handler
}

// ReplySecretName is the name of the store secret that signs reply tokens
// when no secret file is given (see store.Store.Secret).
const ReplySecretName = "reply-token"

// Route is one entry of the route table.
type Route struct {
	Method string
	Path   string // a net/http pattern path, e.g. /v1/correlations/{id}
	Role   Role
	// Global: the token must cover every namespace (*).
	Global bool
	// Params are the query parameters the route takes; any other is 400.
	// Each may be given once, except label (repeatable: filters AND).
	Params  []string
	handler func(*Server, *call) error
}

// Pattern is the route's net/http pattern ("GET /v1/stats").
func (rt Route) Pattern() string { return rt.Method + " " + rt.Path }

// listParams are the query parameters of GET /v1/correlations.
var listParams = []string{"state", "namespace", "owner", "destination", "handler", "label", "dispatch",
	"older_than", "created_after", "created_before", "deadline_after", "deadline_before", "order", "limit", "cursor"}

// Routes is the route table. Tests enumerate it; the OpenAPI document
// describes exactly these.
func Routes() []Route {
	ns := []string{"namespace"}
	return []Route{
		{Method: "POST", Path: "/v1/correlations", Role: RoleWriter, handler: (*Server).register},
		{Method: "GET", Path: "/v1/correlations", Role: RoleReader, Params: listParams, handler: (*Server).list},
		{Method: "GET", Path: "/v1/correlations/{id}", Role: RoleReader, Params: ns, handler: (*Server).get},
		{Method: "GET", Path: "/v1/correlations/{id}/outcome", Role: RoleReader, Params: []string{"namespace", "wait"}, handler: (*Server).outcome},
		{Method: "POST", Path: "/v1/correlations/{id}/replies", Role: RoleWriter, Params: ns, handler: (*Server).reply},
		{Method: "POST", Path: "/v1/correlations/{id}/extend", Role: RoleWriter, Params: ns, handler: (*Server).extend},
		{Method: "POST", Path: "/v1/correlations/{id}/cancel", Role: RoleWriter, Params: ns, handler: (*Server).cancel},
		{Method: "POST", Path: "/v1/correlations/{id}/expire", Role: RoleAdmin, Params: ns, handler: (*Server).expire},
		{Method: "POST", Path: "/v1/correlations/{id}/redispatch", Role: RoleAdmin, Params: ns, handler: (*Server).redispatch},
		{Method: "POST", Path: "/v1/dispatch/claim", Role: RoleWriter, Params: ns, handler: (*Server).claim},
		{Method: "POST", Path: "/v1/correlations/{id}/dispatch/ack", Role: RoleWriter, Params: ns, handler: (*Server).dispatchAck},
		{Method: "POST", Path: "/v1/correlations/{id}/dispatch/nack", Role: RoleWriter, Params: ns, handler: (*Server).dispatchNack},
		{Method: "POST", Path: "/v1/correlations/{id}/dispatch/extend", Role: RoleWriter, Params: ns, handler: (*Server).dispatchExtend},
		{Method: "POST", Path: "/v1/replies/{token}", Role: RolePublic, handler: (*Server).replyWithToken},
		{Method: "GET", Path: "/v1/stats", Role: RoleReader, Params: ns, handler: (*Server).stats},
		{Method: "GET", Path: "/metrics", Role: RoleReader, Global: true, handler: (*Server).metrics},
		{Method: "GET", Path: "/healthz", Role: RolePublic, handler: (*Server).healthz},
		{Method: "GET", Path: "/readyz", Role: RolePublic, handler: (*Server).readyz},
		{Method: "GET", Path: "/openapi.yaml", Role: RolePublic, handler: (*Server).openapi},
	}
}

// Server is the HTTP API. Close it to stop its outcome watcher.
type Server struct {
	cfg       Config
	st        store.Store
	clock     store.Clock
	log       *slog.Logger
	mux       *http.ServeMux
	waiters   *waiters
	stopWatch context.CancelFunc
	done      chan struct{}
	drainMu   sync.Once
	drain     chan struct{}
	health    writeHealth

	keysMu sync.Mutex
	keys   *ReplyTokens // cfg.ReplyTokens, or the store's secret once read

	// testHookWaiting, when set (tests, before serving), is called each time
	// a long poll goes to sleep.
	testHookWaiting func(ref store.Ref)
}

// New returns a Server and starts watching the store's outcome events for
// long polls.
func New(cfg Config) (*Server, error) {
	if cfg.Store == nil {
		return nil, errors.New("httpapi: Store is required")
	}
	if cfg.MaxPendingPerNamespace < 0 {
		return nil, errors.New("httpapi: MaxPendingPerNamespace must not be negative")
	}
	if cfg.MaxBytesPerNamespace < 0 {
		return nil, errors.New("httpapi: MaxBytesPerNamespace must not be negative")
	}
	cfg.Clock = cmp.Or(cfg.Clock, store.Clock(store.RealClock{}))
	cfg.Logger = cmp.Or(cfg.Logger, slog.Default())
	cfg.MaxBody = cmp.Or(cfg.MaxBody, DefaultMaxBody)
	cfg.MaxWait = cmp.Or(cfg.MaxWait, DefaultMaxWait)
	if cfg.Backoff == nil {
		cfg.Backoff = webhook.DefaultBackoff
	}
	s := &Server{
		cfg: cfg, st: cfg.Store, clock: cfg.Clock,
		log:   cfg.Logger.With("component", "http"),
		mux:   http.NewServeMux(),
		done:  make(chan struct{}),
		drain: make(chan struct{}),
		keys:  cfg.ReplyTokens,
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.stopWatch = cancel
	w, err := watch(ctx, s.st, s.log)
	if err != nil {
		cancel()
		return nil, err
	}
	s.waiters = w
	go func() {
		defer close(s.done)
		w.run(ctx)
	}()
	for _, rt := range Routes() {
		var h http.Handler = s.wrap(rt)
		if cfg.Instrument != nil {
			h = cfg.Instrument(rt.Method, rt.Path, h)
		}
		s.mux.Handle(rt.Pattern(), h)
	}
	s.mux.HandleFunc("/", s.noRoute)
	return s, nil
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// noRoute answers what no route takes: 405 with Allow when the path has
// routes for other methods, else 404, both as error documents.
func (s *Server) noRoute(w http.ResponseWriter, r *http.Request) {
	if allow := s.allowed(r); len(allow) > 0 {
		w.Header().Set("Allow", strings.Join(allow, ", "))
		writeError(w, errorf(http.StatusMethodNotAllowed, "method_not_allowed", "",
			"%s %s: method not allowed; this path takes %s", r.Method, r.URL.Path, strings.Join(allow, ", ")))
		return
	}
	writeError(w, errorf(http.StatusNotFound, "no_route", "", "%s %s: no such route (the API is under /v1; GET /openapi.yaml describes it)", r.Method, r.URL.Path))
}

// allowed lists the methods some route takes on r's path.
func (s *Server) allowed(r *http.Request) []string {
	var out []string
	for _, m := range []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"} {
		r2 := *r
		r2.Method = m
		if _, p := s.mux.Handler(&r2); p != "" && p != "/" {
			out = append(out, m)
		}
	}
	return out
}

// Drain answers every long poll now (with the state it has) and every later
// one at once: call it when shutdown starts, so that http.Server.Shutdown
// does not wait out the long polls.
func (s *Server) Drain() { s.drainMu.Do(func() { close(s.drain) }) }

// Close stops the outcome watcher. The store is the caller's to close.
func (s *Server) Close() error {
	s.Drain()
	s.stopWatch()
	<-s.done
	return nil
}

func (s *Server) wrap(rt Route) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		p, aerr := s.authenticate(r, rt.Role, rt.Global)
		if aerr != nil {
			if aerr.Status == http.StatusUnauthorized {
				w.Header().Set("WWW-Authenticate", `Bearer realm="corrstore"`)
			}
			writeError(w, aerr)
			return
		}
		q, err := parseQuery(r.URL.RawQuery, rt.Params)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		err = rt.handler(s, &call{w: w, r: r, p: p, q: q})
		if rt.Method == http.MethodPost && r.Context().Err() == nil {
			// A caller that hung up says nothing about the store.
			s.health.note(s.clock.Now(), err)
		}
		if err != nil {
			s.fail(w, r, err)
		}
	}
}

// fail writes the error answer for err: an *apiError as is, a store error
// by its sentinel.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	var aerr *apiError
	if !errors.As(err, &aerr) {
		aerr = storeError(err)
		switch {
		case aerr.Status == http.StatusServiceUnavailable:
			s.log.WarnContext(r.Context(), "store unavailable", "method", r.Method, "path", r.URL.Path, "err", err)
		case aerr.Status >= 500:
			s.log.ErrorContext(r.Context(), "request failed", "method", r.Method, "path", r.URL.Path, "err", err)
		}
	}
	if aerr.Status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", strconv.Itoa(retryAfterSeconds))
	}
	writeError(w, aerr)
}

// retryAfterSeconds is the Retry-After of every 503.
const retryAfterSeconds = 1

func storeError(err error) *apiError {
	var fe *store.FieldError
	field := ""
	msg := err.Error()
	if errors.As(err, &fe) {
		field = fe.Field
		msg = fe.Field + ": " + fe.Reason
	}
	switch {
	case errors.Is(err, store.ErrUnavailable), errors.Is(err, context.DeadlineExceeded):
		return &apiError{Status: http.StatusServiceUnavailable, Code: "unavailable", Message: "the store is unavailable; retry later"}
	case errors.Is(err, store.ErrClosed):
		return &apiError{Status: http.StatusServiceUnavailable, Code: "unavailable", Message: "the store is closed (shutting down)"}
	case errors.Is(err, context.Canceled):
		return &apiError{Status: http.StatusServiceUnavailable, Code: "unavailable", Message: "the request was cancelled"}
	case errors.Is(err, store.ErrTooLarge):
		return &apiError{Status: http.StatusRequestEntityTooLarge, Code: "too_large", Field: field, Message: msg}
	case errors.Is(err, store.ErrInvalid):
		return &apiError{Status: http.StatusBadRequest, Code: "invalid", Field: field, Message: msg}
	case errors.Is(err, store.ErrNotFound):
		return &apiError{Status: http.StatusNotFound, Code: "not_found", Message: msg}
	case errors.Is(err, store.ErrConflict):
		return &apiError{Status: http.StatusConflict, Code: "conflict", Message: msg}
	case errors.Is(err, store.ErrNotPending):
		return &apiError{Status: http.StatusConflict, Code: "not_pending", Message: msg}
	case errors.Is(err, store.ErrCorrupt):
		return &apiError{Status: http.StatusInternalServerError, Code: "corrupt", Message: msg}
	}
	return &apiError{Status: http.StatusInternalServerError, Code: "internal", Message: "internal error; see the server log"}
}

// notFound is the one answer for a correlation a request may not see or
// that does not exist: the same body either way.
func notFound(ref store.Ref) *apiError {
	ref = ref.Norm()
	return errorf(http.StatusNotFound, "not_found", "id", "id: correlation %q not found in namespace %q", ref.ID, ref.Namespace)
}

// replyTokens returns the signer of reply tokens: the configured one, or
// the store's secret, read once (a store that cannot answer is retried at
// the next request).
func (s *Server) replyTokens(ctx context.Context) (*ReplyTokens, error) {
	s.keysMu.Lock()
	defer s.keysMu.Unlock()
	if s.keys != nil {
		return s.keys, nil
	}
	secret, err := s.st.Secret(ctx, ReplySecretName)
	if err != nil {
		return nil, err
	}
	t, err := NewReplyTokens(secret)
	if err != nil {
		return nil, err
	}
	s.keys = t
	return t, nil
}

func etag(c *store.Correlation) string { return `"` + strconv.FormatInt(c.Version, 10) + `"` }

// writeHealth remembers whether the last write this server tried failed
// because the store could not take it (disk full, Redis refusing writes),
// for /readyz: reads may still work when writes do not.
type writeHealth struct {
	mu     sync.Mutex
	failAt time.Time // zero: the last write did not fail for want of a store
	err    error
}

// writeFailureHold is how long /readyz answers 503 after a write failed for
// want of a store and no write has succeeded since; then it probes again.
const writeFailureHold = 10 * time.Second

func (h *writeHealth) note(now time.Time, err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	switch {
	case err == nil:
		h.failAt, h.err = time.Time{}, nil
	case errors.Is(err, context.Canceled):
	case errors.Is(err, store.ErrUnavailable), errors.Is(err, context.DeadlineExceeded):
		h.failAt, h.err = now, err
	}
}

// failing returns the write failure /readyz should still report at now.
func (h *writeHealth) failing(now time.Time) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.failAt.IsZero() || now.Sub(h.failAt) >= writeFailureHold {
		return nil
	}
	return h.err
}
