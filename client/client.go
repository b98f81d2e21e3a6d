package client

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/corrstore/corrstore/store"
)

// Defaults of Config.
const (
	DefaultService             = "corrstore"
	DefaultDispatchLease       = 30 * time.Second
	DefaultMaxAttempts         = 10
	DefaultDispatchConcurrency = 8
	DefaultDispatchInterval    = time.Second
	DefaultPollInterval        = time.Second
	DefaultReplyReceivers      = 4
)

// Config configures a Client. A zero field takes its default.
type Config struct {
	// Store holds the correlations. Required.
	Store store.Store
	// Transport carries requests and replies. Required.
	Transport Transport

	// Service names the service this client belongs to. Every replica of
	// the service shares its reply address. Default "corrstore".
	Service string
	// ReplyTo is the address replies come back to. Default Service+".replies".
	ReplyTo string
	// Instance names this replica: the Owner of the correlations it
	// registers and the holder of the dispatch leases it takes. It must be
	// unique among running replicas. Default hostname-pid-random.
	Instance string
	// Namespace is the one namespace this client works in: it registers its
	// correlations there, and every call that names one by ID (Extend,
	// Cancel, the waits, the delivery of replies) addresses it there. The
	// same ID in another namespace is another correlation. Clients of
	// different namespaces need different reply addresses (Service or
	// ReplyTo): a reply for another namespace is dropped. Default
	// store.DefaultNamespace.
	Namespace string

	// Logger receives what goes wrong, with "component"="client".
	// Default slog.Default().
	Logger *slog.Logger
	// Clock is the source of time for deadlines, leases and retries.
	// Give it the store's clock. Default store.RealClock{}.
	Clock store.Clock

	// DispatchLease is how long a claimed outcome is this instance's to
	// hand to its handler; the handler's context ends then, and when the
	// instance dies the outcome is claimed again after it. Default 30s.
	DispatchLease time.Duration
	// MaxAttempts bounds the dispatches of one outcome: after the last
	// failed one it is dead. An operator's redispatch gives it MaxAttempts
	// more. The store's Limits.DispatchMaxAttempts bounds it too. Default 10.
	MaxAttempts int
	// Backoff is the wait after a failed attempt (1 for the first) before
	// the outcome is due again. Default: 1s doubling up to 5m, with ±20%
	// jitter.
	Backoff func(attempt int) time.Duration
	// DispatchConcurrency bounds the handlers running at once. Default 8.
	DispatchConcurrency int
	// DispatchInterval is how often Run looks for outcomes whose retry time
	// or lease came due: nothing announces those. Outcomes that are decided
	// are announced and dispatched at once. Default 1s.
	DispatchInterval time.Duration
	// ReplyReceivers is how many receivers take replies in at once, each
	// delivering to the store. Default 4.
	ReplyReceivers int
	// PollInterval is how often waiters re-read the store while the store's
	// subscription is broken, the fallback. Default 1s.
	PollInterval time.Duration

	// Metrics receives counts and timings. Default NopMetrics.
	Metrics Metrics
}

func (c Config) withDefaults() Config {
	c.Service = cmp.Or(c.Service, DefaultService)
	c.ReplyTo = cmp.Or(c.ReplyTo, c.Service+".replies")
	c.Namespace = cmp.Or(c.Namespace, store.DefaultNamespace)
	if c.Instance == "" {
		host, _ := os.Hostname()
		c.Instance = fmt.Sprintf("%s-%d-%04x", cmp.Or(host, "host"), os.Getpid(), rand.N(1<<16))
	}
	c.Logger = cmp.Or(c.Logger, slog.Default())
	if c.Clock == nil {
		c.Clock = store.RealClock{}
	}
	c.DispatchLease = cmp.Or(c.DispatchLease, DefaultDispatchLease)
	c.MaxAttempts = cmp.Or(c.MaxAttempts, DefaultMaxAttempts)
	if c.Backoff == nil {
		c.Backoff = DefaultBackoff
	}
	c.DispatchConcurrency = cmp.Or(c.DispatchConcurrency, DefaultDispatchConcurrency)
	c.DispatchInterval = cmp.Or(c.DispatchInterval, DefaultDispatchInterval)
	c.PollInterval = cmp.Or(c.PollInterval, DefaultPollInterval)
	c.ReplyReceivers = cmp.Or(c.ReplyReceivers, DefaultReplyReceivers)
	if c.Metrics == nil {
		c.Metrics = NopMetrics{}
	}
	return c
}

func (c Config) validate() error {
	switch {
	case c.Store == nil:
		return fmt.Errorf("%w: store: required", store.ErrInvalid)
	case c.Transport == nil:
		return fmt.Errorf("%w: transport: required", store.ErrInvalid)
	case len(c.Instance) > store.MaxAddressLen:
		return fmt.Errorf("%w: instance: is %d bytes, the limit is %d", store.ErrInvalid, len(c.Instance), store.MaxAddressLen)
	case len(c.ReplyTo) > store.MaxAddressLen:
		return fmt.Errorf("%w: reply_to: is %d bytes, the limit is %d", store.ErrInvalid, len(c.ReplyTo), store.MaxAddressLen)
	case c.DispatchLease < 0, c.DispatchInterval < 0, c.PollInterval < 0:
		return fmt.Errorf("%w: dispatch_lease, dispatch_interval and poll_interval must be positive", store.ErrInvalid)
	case c.MaxAttempts < 1:
		return fmt.Errorf("%w: max_attempts: must be at least 1, got %d", store.ErrInvalid, c.MaxAttempts)
	case c.DispatchConcurrency < 1:
		return fmt.Errorf("%w: dispatch_concurrency: must be at least 1, got %d", store.ErrInvalid, c.DispatchConcurrency)
	case c.ReplyReceivers < 1:
		return fmt.Errorf("%w: reply_receivers: must be at least 1, got %d", store.ErrInvalid, c.ReplyReceivers)
	}
	return store.ValidateNamespace(c.Namespace)
}

// DefaultBackoff waits 1s after the first failed attempt, doubling up to
// 5 minutes, with ±20% jitter so that retries of many outcomes spread out.
func DefaultBackoff(attempt int) time.Duration {
	d := 5 * time.Minute
	if attempt < 10 {
		d = min(time.Second<<max(attempt-1, 0), d)
	}
	return d - d/5 + rand.N(2*d/5+1)
}

// Client is the request-reply client a workflow service embeds. It
// registers each request in the store before sending it, waits for the
// outcome through the store, and hands outcomes to callback handlers at
// least once, on any replica, across restarts.
//
// Run must run for replies to be taken in, outcomes dispatched and waits
// to end; Request, Gather and Stream wait for it to start.
type Client struct {
	cfg      Config
	st       store.Store
	tr       Transport
	log      *slog.Logger
	clock    store.Clock
	mu       sync.Mutex
	handlers map[string]HandlerFunc
	running  atomic.Bool
	w        *watcher
	kick     chan struct{} // wakes the dispatcher
	// newAlarm makes the alarms of waiters; tests swap in a fake clock's.
	newAlarm func() alarm
}

// New returns a Client. It fails with an error wrapping store.ErrInvalid,
// naming the field, when cfg makes no sense.
func New(cfg Config) (*Client, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	c := &Client{
		cfg:      cfg,
		st:       cfg.Store,
		tr:       cfg.Transport,
		log:      cfg.Logger.With("component", "client", "instance", cfg.Instance),
		clock:    cfg.Clock,
		handlers: map[string]HandlerFunc{},
		kick:     make(chan struct{}, 1),
	}
	c.newAlarm = func() alarm { return newRealAlarm(c.clock) }
	c.w = newWatcher(c)
	return c, nil
}

// Config returns the client's configuration with its defaults filled in.
func (c *Client) Config() Config { return c.cfg }

// Instance returns the name of this replica.
func (c *Client) Instance() string { return c.cfg.Instance }

// ref addresses the correlation id of the client's namespace.
func (c *Client) ref(id string) store.Ref { return store.Ref{Namespace: c.cfg.Namespace, ID: id} }

// Handle registers the callback handler named name: the outcomes of
// correlations of the client's namespace registered with Options.Handler
// == name are handed to it by Run. Run claims only the outcomes of the
// handlers registered here, so outcomes meant for serve's webhooks, for
// pull workers or for another service stay theirs. Register every handler
// before Run; every replica that runs Run should register the same ones,
// since any of them may claim an outcome. At most store.MaxClaimHandlers.
func (c *Client) Handle(name string, h HandlerFunc) {
	if err := store.ValidateHandler(name); err != nil || h == nil {
		panic(fmt.Sprintf("client: Handle(%q): the name must be 1 to %d bytes without control characters and the handler not nil", name, store.MaxHandlerLen))
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.handlers[name]; !ok && len(c.handlers) == store.MaxClaimHandlers {
		panic(fmt.Sprintf("client: Handle(%q): more than %d handlers", name, store.MaxClaimHandlers))
	}
	c.handlers[name] = h
}

// handlerNames lists the registered handlers, sorted.
func (c *Client) handlerNames() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Sorted(maps.Keys(c.handlers))
}

func (c *Client) handler(name string) (HandlerFunc, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	h, ok := c.handlers[name]
	return h, ok
}

func (c *Client) hasHandlers() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.handlers) > 0
}

// Run takes in replies from ReplyTo and delivers them to the store, watches
// the store for outcomes (waking Request, Gather and Stream on any replica),
// and claims and dispatches outcomes to the registered handlers, until ctx
// ends; then it waits for running handlers and returns nil. It returns an
// error when the transport stops taking replies.
//
// On start it reconciles: it dispatches at once what was decided while no
// instance ran, and takes over what other instances left behind when their
// leases expire. Run must not be called again while it runs.
func (c *Client) Run(ctx context.Context) error {
	if !c.running.CompareAndSwap(false, true) {
		return errors.New("client: Run is already running")
	}
	defer c.running.Store(false)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	var wg sync.WaitGroup
	var recvErr error
	var once sync.Once
	c.w.start(ctx, &wg)
	for range c.cfg.ReplyReceivers {
		wg.Go(func() {
			err := c.tr.Receive(ctx, c.cfg.ReplyTo, c.takeReply)
			if err != nil && ctx.Err() == nil {
				once.Do(func() { recvErr = fmt.Errorf("client: receiving replies from %s: %w", c.cfg.ReplyTo, err) })
				cancel()
			}
		})
	}
	if c.hasHandlers() {
		wg.Go(func() { c.dispatchLoop(ctx) })
	}
	c.log.Debug("client started", "reply_to", c.cfg.ReplyTo)
	<-ctx.Done()
	wg.Wait()
	c.w.stop()
	c.log.Debug("client stopped")
	return recvErr
}

// takeReply delivers a reply taken from the transport to the store, in the
// client's namespace. A reply the store refuses for good (invalid, too
// large) and one that names another namespace (a reply address shared by
// clients of two namespaces: this client must not write there) is poison:
// the error wraps ErrPoison, so that the transport acknowledges it and
// dead-letters it where it can. A reply for an unknown correlation is
// kept by the store as an early reply. A store that fails is a reason to
// have the message delivered again.
func (c *Client) takeReply(ctx context.Context, m Message) (err error) {
	ctx, span := startSpan(ctx, "corrstore.reply "+c.cfg.ReplyTo, trace.SpanKindConsumer, m.Headers,
		attribute.String("corrstore.correlation_id", m.CorrelationID), attribute.String("corrstore.from", m.From))
	defer func() { endSpan(span, err) }()
	if m.Namespace != "" && m.Namespace != c.cfg.Namespace {
		c.cfg.Metrics.ReplyDelivered("rejected")
		c.log.Warn("reply for another namespace rejected: clients of different namespaces need different reply addresses",
			"namespace", m.Namespace, "id", m.CorrelationID, "from", m.From)
		return fmt.Errorf("%w: reply for %s in namespace %q, this client writes %q", ErrPoison, m.CorrelationID, m.Namespace, c.cfg.Namespace)
	}
	ref := c.ref(m.CorrelationID)
	r := store.Reply{ID: m.ID, From: m.From, Seq: m.Seq, Final: m.Final, Body: m.Body, Error: m.Error}
	res, err := c.st.Deliver(ctx, ref, r)
	switch {
	case err == nil:
		c.cfg.Metrics.ReplyDelivered(res.Status)
		if res.Status == store.DeliverLate {
			c.log.Info("late reply kept", "ref", ref.String(), "from", m.From, "outcome", res.Correlation.State)
		}
		return nil
	case errors.Is(err, store.ErrNotFound), errors.Is(err, store.ErrInvalid), errors.Is(err, store.ErrTooLarge):
		c.cfg.Metrics.ReplyDelivered("rejected")
		c.log.Warn("reply rejected", "ref", ref.String(), "from", m.From, "err", err)
		return fmt.Errorf("%w: reply for %s: %w", ErrPoison, ref, err)
	default:
		return fmt.Errorf("deliver reply for %s: %w", ref, err)
	}
}
