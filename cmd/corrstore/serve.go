package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

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
	ShowVersion                      bool

	Logger *slog.Logger
	// Clock, when set (tests), replaces the real clock everywhere.
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
		errc:            make(chan error, 1),
	}
}

// ParseFlags reads the flags; every flag has a CORRSTORE_* environment
// equivalent (flag --reaper-interval → CORRSTORE_REAPER_INTERVAL), and a
// flag given on the command line wins.
func (m *Main) ParseFlags(args []string) error {
	fs := flag.NewFlagSet("corrstore serve", flag.ContinueOnError)
	fs.StringVar(&m.Listen, "listen", m.Listen, "HTTP listen address; without --token-file only a loopback address is allowed")
	fs.StringVar(&m.StoreURL, "store", storeurl.Redact(m.StoreURL), "where correlations live: bolt://PATH (bolt:///abs/file.db, bolt://./relative.db), redis://HOST:PORT/DB, redis+cluster://H1:P1,H2:P2")
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
	fs.BoolVar(&m.ShowVersion, "version", false, "print the version and exit")
	var envErr error
	fs.VisitAll(func(f *flag.Flag) {
		name := "CORRSTORE_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v, ok := os.LookupEnv(name); ok {
			if err := f.Value.Set(v); err != nil && envErr == nil {
				envErr = fmt.Errorf("%s=%q: %w", name, v, err)
			}
		}
	})
	if envErr != nil {
		return envErr
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("serve takes no arguments, got %q", fs.Args())
	}
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
	if m.Logger == nil {
		m.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	}
	return nil
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

	var tokens *httpapi.Tokens
	if m.TokenFile != "" {
		var warn string
		if tokens, warn, err = httpapi.LoadTokens(m.TokenFile); err != nil {
			return err
		}
		if warn != "" {
			log.Warn(warn)
		}
	} else if !isLoopback(m.Listen) {
		return fmt.Errorf("--listen %s is not a loopback address and no --token-file is given: refusing to serve without auth (give --token-file, or listen on 127.0.0.1)", m.Listen)
	}
	var replyTokens *httpapi.ReplyTokens // nil: the store's own secret
	if m.ReplySecretFile != "" {
		if replyTokens, err = httpapi.LoadReplyTokens(m.ReplySecretFile); err != nil {
			return err
		}
		log.Info("reply tokens signed with --reply-secret-file", "secrets", replyTokens.Len())
	} else {
		log.Info("reply tokens signed with the store's own secret (no --reply-secret-file): they survive restarts and verify on every server of the store")
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
		Instrument: m.HTTPMetrics.Instrument,
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
		log.Info("webhooks on", "callbacks_file", m.CallbacksFile, "handlers", len(callbacks.Handlers()), "strict", m.CallbacksStrict)
	}
	m.serveW.Add(1)
	go func() {
		defer m.serveW.Done()
		if err := m.srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			m.errc <- err
		}
	}()
	if tokens == nil {
		log.Warn("no --token-file: the API is open to anyone who can reach " + m.Addr.String() + " (loopback only)")
	} else {
		log.Info("auth on", "tokens", tokens.Len())
	}
	log.Info("corrstore serving", "addr", m.Addr.String(), "store", storeurl.Redact(m.StoreURL), "reaper_interval", m.ReaperInterval, "version", version)
	return nil
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
