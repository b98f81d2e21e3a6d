// Package webhook delivers outcomes as Standard Webhooks 1.0 signed POSTs
// to the URLs of the operator's callbacks file: the push half of corrstore
// serve's dispatch (the pull half is the HTTP API's claim routes).
//
// The Dispatcher claims, through the store's leases, only the outcomes of
// handlers its file pushes, so many serve replicas on one store make each
// attempt once between them, and pull workers and Go clients keep theirs.
// A 2xx answer acknowledges; anything else (another status, a timeout, a
// refused connection) retries after a backoff with jitter until the
// store's attempt budget is used up, then the outcome is dead with the
// last status or error recorded, until an operator redispatches it.
package webhook

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode"

	"github.com/corrstore/corrstore/cmd/corrstore/internal/wire"
	"github.com/corrstore/corrstore/store"
)

// Defaults of Config.
const (
	DefaultTimeout          = 10 * time.Second
	DefaultPerURL           = 4
	DefaultConcurrency      = 32
	DefaultInterval         = time.Second
	DefaultMaxResponseBytes = 64 << 10
	// DefaultFirstRetry and DefaultMaxRetry bound DefaultBackoff.
	DefaultFirstRetry = 5 * time.Second
	DefaultMaxRetry   = time.Hour
)

// DefaultBackoff waits 5 s after the first failed attempt, doubling up to
// 1 h, with ±20% jitter: with the store's default budget of 10 attempts an
// outcome is retried for about 42 minutes before it is dead.
func DefaultBackoff(attempt int) time.Duration {
	return Backoff(DefaultFirstRetry, DefaultMaxRetry)(attempt)
}

// Backoff waits first after the first failed attempt, doubling up to most,
// with ±20% jitter so that the retries of many outcomes spread out.
func Backoff(first, most time.Duration) func(attempt int) time.Duration {
	return func(attempt int) time.Duration {
		d := first
		for i := 1; i < attempt && d < most; i++ {
			d *= 2
		}
		d = min(d, most)
		return time.Duration(float64(d) * (0.8 + 0.4*rand.Float64()))
	}
}

// Metrics receives one call per attempt: the handler's label value (see
// Config.Label), the result (done, retry, dead, lost) and how long the
// POST took.
type Metrics interface {
	Attempt(handler, result string, took time.Duration)
}

type nopMetrics struct{}

func (nopMetrics) Attempt(string, string, time.Duration) {}

// Config configures a Dispatcher.
type Config struct {
	// Store holds the outcomes. Required.
	Store store.Store
	// Clock is the store's clock: claims, retry times and webhook-timestamp
	// read it. Default store.RealClock{}.
	Clock store.Clock
	// Logger gets "component"="webhook". Default slog.Default().
	Logger *slog.Logger
	// Instance holds the leases. Default serve-<host>-<pid>-<random>.
	Instance string
	// Timeout bounds one attempt, the answer's body included. Default 10 s.
	Timeout time.Duration
	// Lease is how long a claimed outcome is this dispatcher's: after a
	// crash mid-attempt, another dispatcher makes the attempt again once it
	// ends. Default 2×Timeout + 5 s (the attempt, and its settling).
	Lease time.Duration
	// Backoff is the wait after failed attempt n (1 for the first).
	// Default DefaultBackoff.
	Backoff func(attempt int) time.Duration
	// PerURL bounds the attempts in flight to one URL, so that a slow
	// receiver holds at most that many. Default 4.
	PerURL int
	// Concurrency bounds the attempts in flight in all. Default 32.
	Concurrency int
	// Interval is how often due retries and expired leases are looked for
	// (decided outcomes are announced and go at once). Default 1 s.
	Interval time.Duration
	// MaxResponseBytes caps what is read of an answer. Default 64 KiB.
	MaxResponseBytes int64
	// Transport makes the requests. Default: a transport with no proxy.
	// Redirects are never followed, whatever it is.
	Transport http.RoundTripper
	// Metrics receives the attempts. Default none.
	Metrics Metrics
}

func (c Config) withDefaults() (Config, error) {
	if c.Store == nil {
		return c, errors.New("webhook: store: required")
	}
	if c.Clock == nil {
		c.Clock = store.RealClock{}
	}
	c.Logger = cmp.Or(c.Logger, slog.Default()).With("component", "webhook")
	if c.Instance == "" {
		host, _ := os.Hostname()
		c.Instance = fmt.Sprintf("serve-%s-%d-%04x", cmp.Or(host, "host"), os.Getpid(), rand.N(1<<16))
	}
	c.Timeout = cmp.Or(c.Timeout, DefaultTimeout)
	c.Lease = cmp.Or(c.Lease, 2*c.Timeout+5*time.Second)
	if c.Backoff == nil {
		c.Backoff = DefaultBackoff
	}
	c.PerURL = cmp.Or(c.PerURL, DefaultPerURL)
	c.Concurrency = cmp.Or(c.Concurrency, DefaultConcurrency)
	c.Interval = cmp.Or(c.Interval, DefaultInterval)
	c.MaxResponseBytes = cmp.Or(c.MaxResponseBytes, DefaultMaxResponseBytes)
	if c.Transport == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.Proxy = nil // the file names the receiver; no environment reroutes it
		t.MaxConnsPerHost = c.PerURL
		c.Transport = t
	}
	if c.Metrics == nil {
		c.Metrics = nopMetrics{}
	}
	switch {
	case c.Timeout < 0, c.Lease <= c.Timeout, c.Interval < 0:
		return c, fmt.Errorf("webhook: timeout must be positive and lease longer than it, got %s and %s", c.Timeout, c.Lease)
	case c.PerURL < 1, c.Concurrency < 1:
		return c, fmt.Errorf("webhook: per_url and concurrency must be at least 1, got %d and %d", c.PerURL, c.Concurrency)
	case c.MaxResponseBytes < 1:
		return c, fmt.Errorf("webhook: max_response_bytes must be positive, got %d", c.MaxResponseBytes)
	}
	return c, store.ValidateClaim(store.ClaimRequest{Instance: c.Instance, Handlers: []string{"h"}, Lease: c.Lease, Limit: 1})
}

// Dispatcher claims the outcomes of the handlers its callbacks file
// pushes and POSTs them.
type Dispatcher struct {
	cfg    Config
	log    *slog.Logger
	client *http.Client
	cb     atomic.Pointer[Callbacks]
	kick   chan struct{}

	mu       sync.Mutex
	inflight map[string]int // URL → attempts in flight
	total    int
}

// New returns a Dispatcher for the endpoints of cb (nil: none yet).
func New(cfg Config, cb *Callbacks) (*Dispatcher, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	d := &Dispatcher{cfg: cfg, log: cfg.Logger, kick: make(chan struct{}, 1), inflight: map[string]int{}}
	d.client = &http.Client{
		Transport:     cfg.Transport,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	d.cb.Store(cb)
	return d, nil
}

// SetCallbacks replaces the callbacks file (a reload): the next claims
// serve its handlers. Attempts in flight finish with the endpoint they had.
func (d *Dispatcher) SetCallbacks(cb *Callbacks) {
	d.cb.Store(cb)
	d.wake()
}

// Callbacks returns the callbacks file in use.
func (d *Dispatcher) Callbacks() *Callbacks { return d.cb.Load() }

func (d *Dispatcher) wake() {
	select {
	case d.kick <- struct{}{}:
	default:
	}
}

// Run dispatches until ctx ends: at once on start, whenever an outcome is
// decided or redispatched (the store announces it), every Interval (retry
// times and expired leases come due unannounced), and when an attempt
// frees a slot. On return every attempt has finished; those cut short by
// the end of ctx are handed back (due at once) for the next dispatcher.
func (d *Dispatcher) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	tick := time.NewTicker(d.cfg.Interval)
	defer tick.Stop()
	events := d.subscribe(ctx)
	for {
		d.pass(ctx, &wg)
		if !d.await(ctx, tick.C, &events) {
			return nil
		}
	}
}

// await waits for a reason to claim again: a decided or redispatched
// outcome (a dispatch event), the tick, or a freed slot; false when ctx
// ends. A subscription that closes is renewed at the next tick.
func (d *Dispatcher) await(ctx context.Context, tick <-chan time.Time, events *<-chan store.Event) bool {
	for {
		select {
		case <-ctx.Done():
			return false
		case <-tick:
			if *events == nil {
				*events = d.subscribe(ctx)
			}
			return true
		case <-d.kick:
			return true
		case ev, ok := <-*events:
			if !ok {
				*events = nil
				continue
			}
			if ev.Kind == store.ChangeOutcome || (ev.Kind == store.ChangeDispatch && ev.Dispatch == store.DispatchPending) {
				return true
			}
		}
	}
}

func (d *Dispatcher) subscribe(ctx context.Context) <-chan store.Event {
	ch, err := d.cfg.Store.Subscribe(ctx)
	if err != nil {
		d.log.Warn("cannot subscribe to the store's changes; polling every interval", "interval", d.cfg.Interval, "err", err)
		return nil
	}
	return ch
}

// RunOnce claims what is due now, makes those attempts and waits for
// them; it returns how many it made. Tests drive it with a fake clock.
func (d *Dispatcher) RunOnce(ctx context.Context) int {
	var wg sync.WaitGroup
	n := d.pass(ctx, &wg)
	wg.Wait()
	return n
}

// group is one claim: the pushed handlers of one namespace (or every
// namespace) whose outcomes go to one URL.
type group struct {
	ns       string
	url      string
	handlers []string
}

func groups(cb *Callbacks) []group {
	var out []group
	idx := map[[2]string]int{}
	for _, e := range cb.Endpoints() {
		if e.Pull() {
			continue
		}
		ns := e.Namespace
		if ns == AnyNamespace {
			ns = ""
		}
		k := [2]string{ns, e.URL}
		i, ok := idx[k]
		if !ok || len(out[i].handlers) == store.MaxClaimHandlers {
			idx[k], i = len(out), len(out)
			out = append(out, group{ns: ns, url: e.URL})
		}
		out[i].handlers = append(out[i].handlers, e.Handler)
	}
	return out
}

// pass claims, for each group, as many outcomes as its URL and the whole
// have free slots, and starts their attempts in wg.
func (d *Dispatcher) pass(ctx context.Context, wg *sync.WaitGroup) int {
	cb := d.cb.Load()
	n := 0
	for _, g := range groups(cb) {
		if ctx.Err() != nil {
			return n
		}
		d.mu.Lock()
		free := min(d.cfg.PerURL-d.inflight[g.url], d.cfg.Concurrency-d.total)
		d.mu.Unlock()
		if free <= 0 {
			continue
		}
		got := d.claim(ctx, g, free)
		for _, c := range got {
			ep, ok := cb.Lookup(c.Namespace, c.Callback.Handler)
			if !ok || ep.Pull() {
				// Only a stale index entry could bring one: hand it back.
				d.settle(ctx, c, "", fmt.Errorf("handler %q is not pushed in namespace %s", c.Callback.Handler, c.Namespace), 0)
				continue
			}
			d.mu.Lock()
			d.inflight[ep.URL]++
			d.total++
			d.mu.Unlock()
			n++
			wg.Go(func() {
				defer func() {
					d.mu.Lock()
					d.inflight[ep.URL]--
					d.total--
					d.mu.Unlock()
					d.wake()
				}()
				d.attempt(ctx, ep, c)
			})
		}
	}
	return n
}

// claim leases up to limit outcomes of g. The claim is not cut short by
// ctx (a claim committed after its caller left would hold leases nobody
// runs); claimed while stopping, they are handed back at once.
func (d *Dispatcher) claim(ctx context.Context, g group, limit int) []*store.Correlation {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	got, err := d.cfg.Store.ClaimDispatch(cctx, store.ClaimRequest{Instance: d.cfg.Instance, Namespace: g.ns,
		Handlers: g.handlers, Now: d.cfg.Clock.Now(), Lease: d.cfg.Lease, Limit: limit})
	if err != nil {
		d.log.Error("claiming outcomes", "namespace", cmp.Or(g.ns, AnyNamespace), "url", g.url, "err", err)
	}
	if ctx.Err() == nil {
		return got
	}
	for _, c := range got {
		d.settle(ctx, c, "", errStopping, 0)
	}
	return nil
}

var errStopping = errors.New("serve stopping; handed back")

// attempt POSTs one claimed outcome to ep and settles the claim.
func (d *Dispatcher) attempt(ctx context.Context, ep Endpoint, c *store.Correlation) {
	log := d.log.With("ref", c.Ref().String(), "handler", c.Callback.Handler, "attempt", c.Dispatch.Attempts, "url", ep.URL)
	body, err := Payload(c) // a claim carries the replies

	if err != nil {
		d.settle(ctx, c, "", err, 0)
		return
	}
	start := time.Now()
	status, err := d.post(ctx, ep, MessageID(c), body)
	took := time.Since(start)
	if err == nil {
		log.Debug("webhook delivered", "status", status, "took", took)
	}
	result := d.settle(ctx, c, status, err, took)
	switch result {
	case "dead":
		log.Error("webhook failed; the outcome is dead (an operator can redispatch it)", "err", err)
	case "retry":
		log.Warn("webhook failed; it will be retried", "err", err)
	}
}

// Payload is the body of the webhook of decided correlation c (replies
// loaded): the same bytes on every attempt.
func Payload(c *store.Correlation) ([]byte, error) {
	view := wire.OutcomeOf(c)
	if view == nil {
		return nil, fmt.Errorf("%s has no outcome", c.Ref())
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(wire.WebhookPayload{Type: wire.WebhookType, Timestamp: view.Outcome.At, Data: view}); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// post makes one attempt; it returns the status line, and an error unless
// the answer was 2xx.
func (d *Dispatcher) post(ctx context.Context, ep Endpoint, id string, body []byte) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, d.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, ep.URL, bytes.NewReader(body))
	if err != nil {
		return "", err
	}
	ts := d.cfg.Clock.Now().Unix()
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "corrstore-webhook/1")
	req.Header.Set(HeaderID, id)
	req.Header.Set(HeaderTimestamp, strconv.FormatInt(ts, 10))
	req.Header.Set(HeaderSignature, Sign(id, ts, body, ep.Secrets))
	resp, err := d.client.Do(req)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() != nil {
			return "", fmt.Errorf("no answer within %s: %w", d.cfg.Timeout, err)
		}
		return "", err
	}
	defer resp.Body.Close()
	head := make([]byte, 256)
	k, _ := io.ReadFull(resp.Body, head)
	// The rest is read (to reuse the connection) up to the cap, never more.
	_, rerr := io.Copy(io.Discard, io.LimitReader(resp.Body, d.cfg.MaxResponseBytes-int64(k)))
	status := resp.Status
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return status, nil
	}
	msg := "HTTP " + status
	if resp.StatusCode >= 300 && resp.StatusCode < 400 {
		msg += " (redirects are not followed; give the final URL in the callbacks file)"
	}
	if text := printable(head[:k]); text != "" {
		msg += ": " + text
	}
	if rerr != nil && ctx.Err() != nil {
		msg += fmt.Sprintf(" (answer not read within %s)", d.cfg.Timeout)
	}
	return status, errors.New(msg)
}

// printable keeps the valid UTF-8 text of an answer, control characters
// replaced, for the last error an operator reads.
func printable(b []byte) string {
	return strings.TrimSpace(strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, strings.ToValidUTF8(string(b), "")))
}

// settle acks (err nil) or nacks one claim, even while stopping, and
// reports the result: done, retry, dead or lost.
func (d *Dispatcher) settle(ctx context.Context, c *store.Correlation, status string, err error, took time.Duration) string {
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	claim := c.Dispatch.Claim()
	result := "done"
	var serr error
	if err == nil {
		_, serr = d.cfg.Store.AckDispatch(sctx, c.Ref(), claim)
	} else {
		now := d.cfg.Clock.Now()
		retryAt := now.Add(d.cfg.Backoff(claim.Attempt))
		if ctx.Err() != nil || errors.Is(err, errStopping) {
			retryAt, err = now, fmt.Errorf("%w (serve stopping)", err)
		}
		var res store.Result
		res, serr = d.cfg.Store.NackDispatch(sctx, c.Ref(), claim, err.Error(), retryAt)
		result = "retry"
		if serr == nil && res.Correlation.Dispatch.State == store.DispatchDead {
			result = "dead"
		}
	}
	if serr != nil {
		result = "lost"
		d.log.Warn("could not settle the dispatch; another dispatcher takes it after the lease", "ref", c.Ref().String(), "status", status, "err", serr)
	}
	d.cfg.Metrics.Attempt(c.Callback.Handler, result, took)
	return result
}
