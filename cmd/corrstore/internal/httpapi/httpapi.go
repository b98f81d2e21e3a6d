// Package httpapi is the HTTP API of corrstore serve (DESIGN §7): JSON under
// /v1, bearer-token auth with roles and namespaces, signed reply tokens,
// long-polled outcomes, health checks and the Prometheus endpoint.
package httpapi

import (
	"cmp"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/corrstore/corrstore/store"
)

// Defaults of Config.
const (
	DefaultMaxBody         = 2 << 20
	DefaultMaxWait         = 60 * time.Second
	DefaultReplyTokenGrace = 24 * time.Hour
)

// Config configures a Server. Zero fields take the defaults given.
type Config struct {
	// Store holds the correlations. Required.
	Store store.Store
	// Clock gives the time for reply-token expiry and ages. Default store.RealClock.
	Clock store.Clock
	// Logger, with "component"="http". Default slog.Default().
	Logger *slog.Logger
	// Tokens are the accepted bearer tokens; nil: no auth (open mode, which
	// the caller allows only on loopback).
	Tokens *Tokens
	// ReplyTokens signs reply tokens. Default: a random per-process secret.
	ReplyTokens *ReplyTokens
	// ReplyTokenGrace is how long after the correlation's deadline its
	// reply token stays valid, so late replies are still recorded. Default 24h.
	ReplyTokenGrace time.Duration
	// MaxBody caps every request body, in bytes. Default 2 MiB.
	MaxBody int64
	// MaxWait caps the long-poll wait of GET …/outcome?wait=. Default 60s.
	MaxWait time.Duration
	// Instrument, when set, wraps each route's handler (metrics by route).
	Instrument func(method, path string, h http.Handler) http.Handler
	// Metrics serves GET /metrics; nil: 404.
	Metrics http.Handler
}

// Route is one entry of the route table.
type Route struct {
	Method string
	Path   string // a net/http pattern path, e.g. /v1/correlations/{id}
	Role   Role
	// Global: the token must cover every namespace (*).
	Global  bool
	handler func(*Server, http.ResponseWriter, *http.Request, *Principal) error
}

// Pattern is the route's net/http pattern ("GET /v1/stats").
func (rt Route) Pattern() string { return rt.Method + " " + rt.Path }

// Routes is the route table. Tests enumerate it; the OpenAPI document
// describes exactly these.
func Routes() []Route {
	return []Route{
		{Method: "POST", Path: "/v1/correlations", Role: RoleWriter, handler: (*Server).register},
		{Method: "GET", Path: "/v1/correlations", Role: RoleReader, handler: (*Server).list},
		{Method: "GET", Path: "/v1/correlations/{id}", Role: RoleReader, handler: (*Server).get},
		{Method: "GET", Path: "/v1/correlations/{id}/outcome", Role: RoleReader, handler: (*Server).outcome},
		{Method: "POST", Path: "/v1/correlations/{id}/replies", Role: RoleWriter, handler: (*Server).reply},
		{Method: "POST", Path: "/v1/correlations/{id}/extend", Role: RoleWriter, handler: (*Server).extend},
		{Method: "POST", Path: "/v1/correlations/{id}/cancel", Role: RoleWriter, handler: (*Server).cancel},
		{Method: "POST", Path: "/v1/correlations/{id}/expire", Role: RoleAdmin, handler: (*Server).expire},
		{Method: "POST", Path: "/v1/correlations/{id}/redispatch", Role: RoleAdmin, handler: (*Server).redispatch},
		{Method: "POST", Path: "/v1/replies/{token}", Role: RolePublic, handler: (*Server).replyWithToken},
		{Method: "GET", Path: "/v1/stats", Role: RoleReader, handler: (*Server).stats},
		{Method: "GET", Path: "/metrics", Role: RoleReader, Global: true, handler: (*Server).metrics},
		{Method: "GET", Path: "/healthz", Role: RolePublic, handler: (*Server).healthz},
		{Method: "GET", Path: "/readyz", Role: RolePublic, handler: (*Server).readyz},
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

	// testHookWaiting, when set (tests, before serving), is called each time
	// a long poll goes to sleep.
	testHookWaiting func(id string)
}

// New returns a Server and starts watching the store's outcome events for
// long polls.
func New(cfg Config) (*Server, error) {
	if cfg.Store == nil {
		return nil, errors.New("httpapi: Store is required")
	}
	cfg.Clock = cmp.Or(cfg.Clock, store.Clock(store.RealClock{}))
	cfg.Logger = cmp.Or(cfg.Logger, slog.Default())
	cfg.ReplyTokenGrace = cmp.Or(cfg.ReplyTokenGrace, DefaultReplyTokenGrace)
	cfg.MaxBody = cmp.Or(cfg.MaxBody, DefaultMaxBody)
	cfg.MaxWait = cmp.Or(cfg.MaxWait, DefaultMaxWait)
	if cfg.ReplyTokens == nil {
		cfg.ReplyTokens = GenerateReplyTokens()
	}
	s := &Server{
		cfg: cfg, st: cfg.Store, clock: cfg.Clock,
		log:   cfg.Logger.With("component", "http"),
		mux:   http.NewServeMux(),
		done:  make(chan struct{}),
		drain: make(chan struct{}),
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
	return s, nil
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

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
		if err := rt.handler(s, w, r, p); err != nil {
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
		if aerr.Status >= 500 {
			s.log.ErrorContext(r.Context(), "request failed", "method", r.Method, "path", r.URL.Path, "err", err)
		}
	}
	writeError(w, aerr)
}

func storeError(err error) *apiError {
	var fe *store.FieldError
	field := ""
	msg := err.Error()
	if errors.As(err, &fe) {
		field = fe.Field
		msg = fe.Field + ": " + fe.Reason
	}
	switch {
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
	case errors.Is(err, store.ErrClosed):
		return &apiError{Status: http.StatusServiceUnavailable, Code: "unavailable", Message: "the store is closed (shutting down)"}
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return &apiError{Status: http.StatusServiceUnavailable, Code: "unavailable", Message: "the request was cancelled or timed out: " + msg}
	case errors.Is(err, store.ErrCorrupt):
		return &apiError{Status: http.StatusInternalServerError, Code: "corrupt", Message: msg}
	}
	return &apiError{Status: http.StatusInternalServerError, Code: "internal", Message: "internal error; see the server log"}
}

func notFound(id string) *apiError {
	return errorf(http.StatusNotFound, "not_found", "id", "id: correlation %q not found", id)
}

// load gets a correlation p may see; another namespace's is not found.
func (s *Server) load(ctx context.Context, id string, p *Principal) (*store.Correlation, error) {
	if err := store.ValidateID(id); err != nil {
		return nil, err
	}
	c, err := s.st.Get(ctx, id)
	if errors.Is(err, store.ErrNotFound) || err == nil && !p.Allows(c.Namespace) {
		return nil, notFound(id)
	}
	return c, err
}

// replyToken signs the reply token of c, valid until its deadline plus the grace.
func (s *Server) replyToken(c *store.Correlation) string {
	return s.cfg.ReplyTokens.Sign(c.Namespace, c.ID, c.Deadline.Add(s.cfg.ReplyTokenGrace))
}

func etag(c *store.Correlation) string { return `"` + strconv.FormatInt(c.Version, 10) + `"` }
