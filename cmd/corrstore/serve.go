package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/corrstore/corrstore/cmd/corrstore/internal/httpapi"
	"github.com/corrstore/corrstore/cmd/corrstore/internal/httpmetrics"
	"github.com/corrstore/corrstore/cmd/corrstore/internal/storeurl"
	"github.com/corrstore/corrstore/cmd/corrstore/internal/webhook"
	"github.com/corrstore/corrstore/promcorr"
	"github.com/corrstore/corrstore/reaper"
	"github.com/corrstore/corrstore/store"
)

// Main is the serve command: ParseFlags, Run, then Close on shutdown. The
// end-to-end tests drive the same type.
type Main struct {
	Listen         string
	StoreURL       string
	ReaperInterval time.Duration
	DefaultTimeout time.Duration
	MaxTimeout     time.Duration
	MaxBody        int64
	// MaxRecordBytes bounds the reply bytes one correlation holds (store
	// Limits.MaxRecordBytes).
	MaxRecordBytes int
	// MaxPendingPerNamespace, when positive, caps the pending correlations
	// of each namespace (429 past it).
	MaxPendingPerNamespace int64
	// MaxBytesPerNamespace, when positive, refuses registrations in a
	// namespace whose stored bytes reached it (429).
	MaxBytesPerNamespace int64
	TokenFile            string
	ReplySecretFile      string
	MaxWait              time.Duration
	// CallbacksFile names the handlers serve delivers as signed webhooks
	// (and those pull workers claim); reloaded on SIGHUP.
	CallbacksFile string
	// CallbacksStrict refuses registrations of handlers the file does not name.
	CallbacksStrict bool
	// WebhookTimeout bounds one webhook attempt.
	WebhookTimeout time.Duration
	// WebhookRetryMin and WebhookRetryMax bound the backoff between
	// attempts (webhooks, and pull nacks without retry_in).
	WebhookRetryMin, WebhookRetryMax time.Duration
	LogLevel                         string
	// LogFormat is text or json.
	LogFormat string
	// AccessLog logs every API request (see accessLog).
	AccessLog bool

	Logger *slog.Logger
	// Clock, when set (tests), replaces the real clock everywhere. serve
	// from the command line takes env's.
	Clock store.Clock
	// NoSync, when set (tests), opens bolt without fsync.
	NoSync bool

	Store store.Store
	API   *httpapi.Server
	// Webhooks is the webhook dispatcher (nil without --callbacks-file).
	Webhooks *webhook.Dispatcher
	// Metrics are the store's and the reaper's, as an embedding service
	// has them; HTTPMetrics are the routes'. Both are in Registry, which
	// GET /metrics serves.
	Metrics     *promcorr.Metrics
	HTTPMetrics *httpmetrics.Metrics
	Registry    *prometheus.Registry
	// Addr is the address the HTTP server listens on, once Run returned.
	Addr net.Addr

	srv     *http.Server
	cancel  context.CancelFunc
	reaperW sync.WaitGroup
	hookW   sync.WaitGroup
	stopHUP func()
	// onReload, when set (tests), hears the result of each SIGHUP reload.
	onReload func(error)
	serveW   sync.WaitGroup
	errc     chan error
}

// NewMain returns a Main with the defaults.
func NewMain() *Main {
	return &Main{
		Listen:          "127.0.0.1:7411",
		StoreURL:        "bolt://./corrstore.db",
		ReaperInterval:  reaper.DefaultInterval,
		DefaultTimeout:  30 * time.Second,
		MaxTimeout:      366 * 24 * time.Hour,
		MaxBody:         httpapi.DefaultMaxBody,
		MaxRecordBytes:  store.Limits{}.WithDefaults().MaxRecordBytes,
		MaxWait:         httpapi.DefaultMaxWait,
		WebhookTimeout:  webhook.DefaultTimeout,
		WebhookRetryMin: webhook.DefaultFirstRetry,
		WebhookRetryMax: webhook.DefaultMaxRetry,
		LogLevel:        "info",
		LogFormat:       "text",
		errc:            make(chan error, 1),
	}
}

const serveAbout = `Runs the HTTP API (/v1), the reaper and /metrics on one store: bbolt at
./corrstore.db by default (one process owns the file), or Redis shared by any
number of replicas (--store redis://… or redis+cluster://…). Without
--token-file it listens on loopback only. SIGINT or SIGTERM shuts it down
gracefully. docs/OPERATIONS.md is the runbook; docs/openapi.yaml (also served
at GET /openapi.yaml) the API.`

// flags defines serve's flags, one line each, on m's fields (whose values
// are the defaults). Every flag is bound to its CORRSTORE_* variable.
func (m *Main) flags(fs *pflag.FlagSet) {
	fs.StringVar(&m.Listen, "listen", m.Listen, "HTTP listen address; without --token-file only a loopback address is allowed")
	fs.StringVar(&m.StoreURL, "store", m.StoreURL, "where correlations live: bolt://PATH (bolt:///abs/file.db, bolt://./relative.db), redis://HOST:PORT/DB, redis+cluster://H1:P1,H2:P2")
	fs.DurationVar(&m.ReaperInterval, "reaper-interval", m.ReaperInterval, "how often the reaper expires due correlations")
	fs.DurationVar(&m.DefaultTimeout, "default-timeout", m.DefaultTimeout, "timeout of a registration that gives neither timeout nor deadline")
	fs.DurationVar(&m.MaxTimeout, "max-timeout", m.MaxTimeout, "longest deadline after creation, at registration and on extend")
	fs.Int64Var(&m.MaxBody, "max-body", m.MaxBody, "largest request body, in bytes (413 beyond)")
	fs.IntVar(&m.MaxRecordBytes, "max-record-bytes", m.MaxRecordBytes, "most reply bytes one correlation holds; a reply past it is refused (413)")
	fs.Int64Var(&m.MaxPendingPerNamespace, "max-pending-per-namespace", m.MaxPendingPerNamespace, "most pending correlations in one namespace; a registration past it is refused (429); 0: no limit")
	fs.Int64Var(&m.MaxBytesPerNamespace, "max-bytes-per-namespace", m.MaxBytesPerNamespace, "most stored bytes (reply bodies, late reply bodies, callback data) in one namespace; a registration once it is reached is refused (429); 0: no limit")
	fs.StringVar(&m.TokenFile, "token-file", m.TokenFile, "bearer tokens, one per line: TOKEN ROLE NAMESPACES [NAME] (see docs/OPERATIONS.md)")
	fs.StringVar(&m.ReplySecretFile, "reply-secret-file", m.ReplySecretFile, "secrets (≥ 32 bytes each, one per line: the first signs, all verify) for reply tokens; default: a secret kept in the store, shared by its replicas")
	fs.DurationVar(&m.MaxWait, "max-wait", m.MaxWait, "cap on the long-poll wait of GET /v1/correlations/{id}/outcome?wait=")
	fs.StringVar(&m.CallbacksFile, "callbacks-file", m.CallbacksFile, "handlers whose outcomes serve POSTs as signed webhooks, one per line: NAMESPACE HANDLER URL SECRET[,SECRET…] or NAMESPACE HANDLER pull (see docs/OPERATIONS.md); reloaded on SIGHUP")
	fs.BoolVar(&m.CallbacksStrict, "callbacks-strict", m.CallbacksStrict, "refuse (400) registrations whose handler --callbacks-file neither pushes nor declares pull-only")
	fs.DurationVar(&m.WebhookTimeout, "webhook-timeout", m.WebhookTimeout, "bound on one webhook attempt, the answer included")
	fs.DurationVar(&m.WebhookRetryMin, "webhook-retry-min", m.WebhookRetryMin, "wait after a failed first attempt (webhooks, and pull nacks without retry_in); it doubles each attempt, ±20% jitter")
	fs.DurationVar(&m.WebhookRetryMax, "webhook-retry-max", m.WebhookRetryMax, "longest wait between two attempts")
	fs.StringVar(&m.LogLevel, "log-level", m.LogLevel, "debug, info, warn or error")
	fs.StringVar(&m.LogFormat, "log-format", m.LogFormat, "text or json (log/slog's handlers), on standard error")
	fs.BoolVar(&m.AccessLog, "access-log", m.AccessLog, "log every API request: method, route pattern, status, duration, bytes (never a path's token or a header)")
	bindEnvAll(fs)
}

// command is the serve command on m: flags, then configure, then serve
// until ctx ends or the server fails.
func (m *Main) command(e *env) *cobra.Command {
	cmd := newCommand("serve [flags]", "run the HTTP API, the reaper and /metrics on one store", serveAbout)
	m.flags(cmd.Flags())
	completeWith(cmd, "log-level", "debug", "info", "warn", "error")
	completeWith(cmd, "log-format", "text", "json")
	cmd.Args = noArgs
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if err := m.configure(e); err != nil {
			return err
		}
		return m.serve(cmd.Context())
	}
	return cmd
}

func newServeCmd(e *env) *cobra.Command { return NewMain().command(e) }

// ParseFlags reads the flags and the CORRSTORE_* variables of the process
// (a flag given on the command line wins) as corrstore serve does, and
// checks them. The tests' way into serve; corrstore serve parses through
// its command.
func (m *Main) ParseFlags(args []string) error {
	e := processEnv()
	cmd := m.command(e)
	setupCommand(cmd, e)
	cmd.RunE = func(*cobra.Command, []string) error { return m.configure(e) }
	cmd.SetArgs(append([]string{}, args...))
	return cmd.Execute()
}

// configure checks the flags and makes the logger (on e's standard error)
// unless the caller gave one.
func (m *Main) configure(e *env) error {
	switch {
	case m.ReaperInterval <= 0:
		return fmt.Errorf("--reaper-interval: must be positive, got %s", m.ReaperInterval)
	case m.DefaultTimeout <= 0:
		return fmt.Errorf("--default-timeout: must be positive, got %s", m.DefaultTimeout)
	case m.MaxTimeout < m.DefaultTimeout:
		return fmt.Errorf("--max-timeout: must be at least --default-timeout (%s), got %s", m.DefaultTimeout, m.MaxTimeout)
	case m.MaxBody < 1024:
		return fmt.Errorf("--max-body: must be at least 1024 bytes, got %d", m.MaxBody)
	case m.MaxRecordBytes < 1024:
		return fmt.Errorf("--max-record-bytes: must be at least 1024 bytes, got %d", m.MaxRecordBytes)
	case m.MaxPendingPerNamespace < 0:
		return fmt.Errorf("--max-pending-per-namespace: must not be negative, got %d", m.MaxPendingPerNamespace)
	case m.MaxBytesPerNamespace < 0:
		return fmt.Errorf("--max-bytes-per-namespace: must not be negative, got %d", m.MaxBytesPerNamespace)
	case m.MaxWait <= 0 || m.MaxWait > 10*time.Minute:
		return fmt.Errorf("--max-wait: must be between 1ms and 10m, got %s", m.MaxWait)
	case m.WebhookTimeout <= 0 || m.WebhookTimeout > 10*time.Minute:
		return fmt.Errorf("--webhook-timeout: must be between 1ms and 10m, got %s", m.WebhookTimeout)
	case m.WebhookRetryMin <= 0 || m.WebhookRetryMax < m.WebhookRetryMin:
		return fmt.Errorf("--webhook-retry-min and --webhook-retry-max: need 0 < min <= max, got %s and %s", m.WebhookRetryMin, m.WebhookRetryMax)
	case m.CallbacksStrict && m.CallbacksFile == "":
		return errors.New("--callbacks-strict: needs --callbacks-file")
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(m.LogLevel)); err != nil {
		return fmt.Errorf("--log-level: %q is not one of debug, info, warn, error", m.LogLevel)
	}
	opts := &slog.HandlerOptions{Level: level}
	var h slog.Handler
	switch m.LogFormat {
	case "text":
		h = slog.NewTextHandler(e.stderr, opts)
	case "json":
		h = slog.NewJSONHandler(e.stderr, opts)
	default:
		return fmt.Errorf("--log-format: %q is not text or json", m.LogFormat)
	}
	if m.Logger == nil {
		m.Logger = slog.New(h)
	}
	if m.Clock == nil && e.now != nil {
		m.Clock = clockFunc(e.now) // env's clock, as every command reads it
	}
	return nil
}

// clockFunc is a store.Clock reading a func, as env carries the time.
type clockFunc func() time.Time

func (f clockFunc) Now() time.Time { return f() }

// serve runs m until ctx ends or the HTTP server fails, then closes it.
func (m *Main) serve(ctx context.Context) error {
	if err := m.Run(ctx); err != nil {
		m.Close()
		return err
	}
	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-m.Done():
	}
	return errors.Join(serveErr, m.Close())
}

// isLoopback reports whether a listen address binds only to loopback.
func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Run opens the store, starts the reaper and serves HTTP. It returns once
// the listener is bound; a server that fails later reports on Done.
func (m *Main) Run(ctx context.Context) (err error) {
	if m.Logger == nil {
		m.Logger = slog.Default()
	}
	log := m.Logger.With("component", "serve")
	if m.errc == nil {
		m.errc = make(chan error, 1)
	}
	tokens, replyTokens, err := m.loadAuth(log)
	if err != nil {
		return err
	}
	var callbacks *webhook.Callbacks
	if m.CallbacksFile != "" {
		if callbacks, err = webhook.LoadCallbacks(m.CallbacksFile); err != nil {
			return err
		}
	}

	clock := m.Clock
	if clock == nil {
		clock = store.RealClock{}
	}
	if err := m.openStore(ctx, clock); err != nil {
		return err
	}
	r, err := reaper.New(m.Store, reaper.Config{Interval: m.ReaperInterval, Logger: m.Logger, Clock: clock, Metrics: m.Metrics.Reaper()})
	if err != nil {
		return err
	}
	if callbacks != nil {
		m.Metrics.NameHandlers(callbacks.Handlers()...)
		m.Webhooks, err = webhook.New(webhook.Config{Store: m.Store, Clock: clock, Logger: m.Logger,
			Timeout: m.WebhookTimeout, Backoff: m.backoff(), Metrics: m.Metrics.Webhooks()}, callbacks)
		if err != nil {
			return err
		}
	}
	m.API, err = httpapi.New(httpapi.Config{
		Store: m.Store, Clock: clock, Logger: m.Logger, Tokens: tokens, ReplyTokens: replyTokens,
		MaxBody: m.MaxBody, MaxWait: m.MaxWait,
		MaxPendingPerNamespace: m.MaxPendingPerNamespace, MaxBytesPerNamespace: m.MaxBytesPerNamespace,
		Callbacks: m.callbacks, StrictHandlers: m.CallbacksStrict, Backoff: m.backoff(),
		Instrument: m.instrument(),
		Metrics:    promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{Registry: m.Registry}),
	})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", m.Listen)
	if err != nil {
		return fmt.Errorf("--listen %s: %w", m.Listen, err)
	}
	m.Addr = ln.Addr()
	m.srv = &http.Server{
		Handler:           m.API,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       60 * time.Second,
		// A long poll may take MaxWait before it writes.
		WriteTimeout: m.MaxWait + 30*time.Second,
		IdleTimeout:  120 * time.Second,
		ErrorLog:     slog.NewLogLogger(m.Logger.With("component", "http").Handler(), slog.LevelWarn),
	}
	m.srv.RegisterOnShutdown(m.API.Drain)
	m.start(ctx, r, ln, log)
	if tokens == nil {
		log.Warn("no --token-file: the API is open to anyone who can reach " + m.Addr.String() + " (loopback only)")
	} else {
		log.Info("auth on", "tokens", tokens.Len())
	}
	log.Info("corrstore serving", "addr", m.Addr.String(), "store", storeurl.Redact(m.StoreURL), "reaper_interval", m.ReaperInterval, "version", buildVersion().String())
	return nil
}

// loadAuth reads --token-file (refusing a non-loopback --listen without
// one) and --reply-secret-file (nil: the store's own secret).
func (m *Main) loadAuth(log *slog.Logger) (*httpapi.Tokens, *httpapi.ReplyTokens, error) {
	var tokens *httpapi.Tokens
	if m.TokenFile != "" {
		var warn string
		var err error
		if tokens, warn, err = httpapi.LoadTokens(m.TokenFile); err != nil {
			return nil, nil, err
		}
		if warn != "" {
			log.Warn(warn)
		}
	} else if !isLoopback(m.Listen) {
		return nil, nil, fmt.Errorf("--listen %s is not a loopback address and no --token-file is given: refusing to serve without auth (give --token-file, or listen on 127.0.0.1)", m.Listen)
	}
	if m.ReplySecretFile == "" {
		log.Info("reply tokens signed with the store's own secret (no --reply-secret-file): they survive restarts and verify on every server of the store")
		return tokens, nil, nil
	}
	replyTokens, err := httpapi.LoadReplyTokens(m.ReplySecretFile)
	if err != nil {
		return nil, nil, err
	}
	log.Info("reply tokens signed with --reply-secret-file", "secrets", replyTokens.Len())
	return tokens, replyTokens, nil
}

// openStore opens --store and wraps it in the metrics, which Registry holds.
func (m *Main) openStore(ctx context.Context, clock store.Clock) error {
	raw, err := storeurl.Open(ctx, m.StoreURL, storeurl.Options{
		Clock: clock, Logger: m.Logger, NoSync: m.NoSync,
		Limits: m.limits(),
	})
	if err != nil {
		return err
	}
	m.Registry = prometheus.NewRegistry()
	m.Registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m.Metrics = promcorr.New(m.Registry, promcorr.Options{Clock: clock})
	m.HTTPMetrics = httpmetrics.New(m.Registry)
	m.Store = m.Metrics.Store(raw)
	m.Metrics.WatchStore(m.Store)
	return nil
}

// instrument wraps each route: metrics always, the access log with
// --access-log.
func (m *Main) instrument() func(method, route string, h http.Handler) http.Handler {
	if !m.AccessLog {
		return m.HTTPMetrics.Instrument
	}
	log := m.Logger.With("component", "http")
	return func(method, route string, h http.Handler) http.Handler {
		return m.HTTPMetrics.Instrument(method, route, httpmetrics.AccessLog(log, method, route, h))
	}
}

// start runs the reaper and the HTTP server until Close.
func (m *Main) start(ctx context.Context, r *reaper.Reaper, ln net.Listener, log *slog.Logger) {
	ctx, m.cancel = context.WithCancel(context.WithoutCancel(ctx))
	m.reaperW.Add(1)
	go func() {
		defer m.reaperW.Done()
		if err := r.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
			log.Error("reaper stopped", "err", err)
		}
	}()
	if m.Webhooks != nil {
		m.hookW.Go(func() {
			if err := m.Webhooks.Run(ctx); err != nil {
				log.Error("webhook dispatcher stopped", "err", err)
			}
		})
		m.watchHUP(log)
		log.Info("webhooks on", "callbacks_file", m.CallbacksFile, "handlers", len(m.Webhooks.Callbacks().Handlers()), "strict", m.CallbacksStrict)
	}
	m.serveW.Add(1)
	go func() {
		defer m.serveW.Done()
		if err := m.srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			m.errc <- err
		}
	}()
}

// backoff is the retry schedule the flags set.
func (m *Main) backoff() func(int) time.Duration {
	return webhook.Backoff(m.WebhookRetryMin, m.WebhookRetryMax)
}

// callbacks is the callbacks file in use (nil: none).
func (m *Main) callbacks() *webhook.Callbacks {
	if m.Webhooks == nil {
		return nil
	}
	return m.Webhooks.Callbacks()
}

// Reload reads --callbacks-file again (what SIGHUP does). A bad file
// keeps the one in use and returns why, with file:line.
func (m *Main) Reload() error {
	if m.Webhooks == nil {
		return errors.New("no --callbacks-file to reload")
	}
	cb, err := webhook.LoadCallbacks(m.CallbacksFile)
	if err != nil {
		return err
	}
	m.Metrics.NameHandlers(cb.Handlers()...)
	m.Webhooks.SetCallbacks(cb)
	return nil
}

// watchHUP reloads the callbacks file on each SIGHUP until Close.
func (m *Main) watchHUP(log *slog.Logger) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	done := make(chan struct{})
	m.hookW.Go(func() {
		for {
			select {
			case <-done:
				return
			case <-hup:
				err := m.Reload()
				if err != nil {
					log.Error("SIGHUP: callbacks file not reloaded; the one in use stays", "err", err)
				} else {
					log.Info("SIGHUP: callbacks file reloaded", "callbacks_file", m.CallbacksFile, "handlers", len(m.callbacks().Handlers()))
				}
				if m.onReload != nil {
					m.onReload(err)
				}
			}
		}
	})
	m.stopHUP = func() { signal.Stop(hup); close(done) }
}

// limits are the store limits the flags set. A record limit below the
// default largest reply lowers that too: one reply cannot pass the record.
func (m *Main) limits() store.Limits {
	l := store.Limits{DefaultTimeout: m.DefaultTimeout, MaxTimeout: m.MaxTimeout, MaxRecordBytes: m.MaxRecordBytes}
	l.MaxBodyBytes = min(store.Limits{}.WithDefaults().MaxBodyBytes, l.MaxRecordBytes)
	return l
}

// Done reports an HTTP server that stopped on its own (not by Close).
func (m *Main) Done() <-chan error { return m.errc }

// ShutdownTimeout bounds how long Close waits for in-flight requests.
const ShutdownTimeout = 30 * time.Second

// Close shuts down in order: stop accepting and finish in-flight requests
// (long polls are answered at once), then stop the reaper, then close the store.
func (m *Main) Close() error {
	var errs []error
	if m.srv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), ShutdownTimeout)
		if err := m.srv.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("http shutdown: %w", err))
		}
		cancel()
		m.serveW.Wait()
	}
	if m.API != nil {
		m.API.Close()
	}
	if m.stopHUP != nil {
		m.stopHUP()
	}
	if m.cancel != nil {
		m.cancel()
	}
	m.reaperW.Wait()
	m.hookW.Wait() // attempts cut short are handed back before the store closes
	if m.Store != nil {
		if err := m.Store.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close store: %w", err))
		}
	}
	if m.Logger != nil {
		m.Logger.Info("corrstore stopped", "component", "serve")
	}
	return errors.Join(errs...)
}
