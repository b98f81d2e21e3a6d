package promcorr

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/corrstore/corrstore/client"
	"github.com/corrstore/corrstore/reaper"
	"github.com/corrstore/corrstore/store"
)

// Options configures New.
type Options struct {
	// Clock reads "now" for the oldest-pending age. nil: the real clock.
	Clock store.Clock
}

// Metrics holds corrstore's metrics, registered with one Registerer. Its
// methods hand out the adapters: Store (a store.Store wrapper), Reaper (a
// reaper.Metrics), Client (a client.Metrics) and WatchStore (the collector
// that reads the store's counts at each scrape). All are safe for
// concurrent use.
type Metrics struct {
	reg   prometheus.Registerer
	clock store.Clock

	registered prometheus.Counter
	replies    *prometheus.CounterVec
	outcomes   *prometheus.CounterVec
	dispatch   *prometheus.CounterVec
	opLatency  *prometheus.HistogramVec
	opErrors   *prometheus.CounterVec

	passDuration  prometheus.Histogram
	expiryLag     prometheus.Histogram
	reaperExpired *prometheus.CounterVec
	purged        prometheus.Counter
	earlyDropped  prometheus.Counter
	corrupt       prometheus.Counter
	passFailed    *prometheus.CounterVec

	clientSent     *prometheus.CounterVec
	clientReplies  *prometheus.CounterVec
	clientDispatch *prometheus.CounterVec
	clientHandled  *prometheus.HistogramVec
	clientWaited   *prometheus.HistogramVec
	attemptTook    *prometheus.HistogramVec
	seen           sync.Map // label values whose sibling series are initialised
	handlers       sync.Map // handler names that get their own label value (NameHandlers)
}

// latencyBuckets are the buckets of the latency histograms, in seconds.
var latencyBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5}

// Label values known in advance; their counters are exported at 0 from the
// start, so that increase() and rate() see the first event.
var (
	// ops are the store operations, the op label.
	ops = []string{"register", "deliver", "get", "extend", "cancel", "expire", "expire_due",
		"claim_dispatch", "ack_dispatch", "nack_dispatch", "extend_dispatch", "oldest_dispatch_due", "redispatch", "list", "stats", "purge",
		"drop_early_replies", "secret"}
	// errorKinds are the kind label of corrstore_store_op_errors_total.
	errorKinds []string
	// dispatchResults are the result label of corrstore_dispatch_total.
	dispatchResults = []string{"claimed", "acked", "failed", "dead", "redispatched"}
	// clientDispatchResults are the result label of the client's handler runs.
	clientDispatchResults = []string{"done", "retry", "dead", "lost"}
	// reaperOutcomes are the outcome label of corrstore_reaper_expired_total.
	reaperOutcomes = []string{reaper.OutcomeCompleted, reaper.OutcomePartial, reaper.OutcomeNoReply, reaper.OutcomeTimedOut}
	// reaperPhases are the phase label of corrstore_reaper_pass_failures_total.
	reaperPhases = []string{reaper.PhaseExpire, reaper.PhasePurge, reaper.PhaseDropEarly}
	// deliverStatuses are the status label of corrstore_replies_total.
	deliverStatuses = []store.DeliverStatus{store.DeliverAccepted, store.DeliverCompleted,
		store.DeliverDuplicate, store.DeliverLate, store.DeliverBuffered}
)

// errKinds maps store errors to the kind label, first match wins.
var errKinds = []struct {
	err  error
	name string
}{
	{store.ErrUnavailable, "unavailable"}, {store.ErrNotFound, "not_found"}, {store.ErrConflict, "conflict"},
	{store.ErrNotPending, "not_pending"}, {store.ErrInvalid, "invalid"}, {store.ErrTooLarge, "too_large"},
	{store.ErrClosed, "closed"}, {store.ErrCorrupt, "corrupt"},
	{context.Canceled, "canceled"}, {context.DeadlineExceeded, "timeout"},
}

func init() {
	for _, k := range errKinds {
		errorKinds = append(errorKinds, k.name)
	}
	errorKinds = append(errorKinds, "other")
}

// New registers corrstore's metrics with reg and returns them. It panics
// when one is registered already, as prometheus.MustRegister does. serve
// passes a registry of its own; an embedding service passes its registry
// (or prometheus.DefaultRegisterer) and exports it as it does its other
// metrics.
func New(reg prometheus.Registerer, opts Options) *Metrics {
	clock := opts.Clock
	if clock == nil {
		clock = store.RealClock{}
	}
	m := &Metrics{reg: reg, clock: clock}
	m.registered = prometheus.NewCounter(prometheus.CounterOpts{Name: "corrstore_registered_total",
		Help: "Correlations registered (created, not repeats)."})
	m.replies = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "corrstore_replies_total",
		Help: "Replies delivered, by status: accepted, completed, duplicate, late, buffered."}, []string{"status"})
	m.outcomes = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "corrstore_outcomes_total",
		Help: "Outcomes decided in this process, by state."}, []string{"state"})
	m.dispatch = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "corrstore_dispatch_total",
		Help: "Dispatch results by handler (named ones; the rest are other): claimed, acked, failed, dead, redispatched."}, []string{"handler", "result"})
	m.attemptTook = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "corrstore_webhook_attempt_duration_seconds",
		Help:    "How long webhook attempts took, by handler (named ones; the rest are other) and result: done, retry, dead, lost.",
		Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}}, []string{"handler", "result"})
	m.opLatency = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "corrstore_store_op_duration_seconds",
		Help: "Latency of store operations, by operation.", Buckets: latencyBuckets}, []string{"op"})
	m.opErrors = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "corrstore_store_op_errors_total",
		Help: "Store operations that failed, by operation and error kind."}, []string{"op", "kind"})
	m.passDuration = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "corrstore_reaper_pass_duration_seconds",
		Help: "Duration of reaper passes.", Buckets: latencyBuckets})
	m.expiryLag = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "corrstore_reaper_expiry_lag_seconds",
		Help:    "Time from a correlation's deadline to the outcome the reaper recorded.",
		Buckets: []float64{.01, .05, .1, .25, .5, 1, 1.1, 1.25, 1.5, 2, 5, 10, 30, 60}})
	m.reaperExpired = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "corrstore_reaper_expired_total",
		Help: "Correlations the reaper decided at their deadline, by outcome."}, []string{"outcome"})
	m.purged = prometheus.NewCounter(prometheus.CounterOpts{Name: "corrstore_reaper_purged_total",
		Help: "Decided correlations purged after their retention."})
	m.earlyDropped = prometheus.NewCounter(prometheus.CounterOpts{Name: "corrstore_reaper_early_replies_dropped_total",
		Help: "Early replies dropped after their window."})
	m.corrupt = prometheus.NewCounter(prometheus.CounterOpts{Name: "corrstore_reaper_corrupt_records_total",
		Help: "Undecodable records the reaper found and set aside."})
	m.passFailed = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "corrstore_reaper_pass_failures_total",
		Help: "Reaper passes that failed, by phase."}, []string{"phase"})
	m.clientSent = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "corrstore_client_sent_total",
		Help: "Requests the client handed to its transport, by destination and result (ok, error)."}, []string{"destination", "result"})
	m.clientReplies = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "corrstore_client_replies_total",
		Help: "Replies the client took from its transport, by what the store did: a delivery status, or rejected."}, []string{"status"})
	m.clientDispatch = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "corrstore_client_dispatch_total",
		Help: "Callback handler runs, by handler and result: done, retry, dead, lost."}, []string{"handler", "result"})
	m.clientHandled = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "corrstore_client_dispatch_duration_seconds",
		Help: "How long callback handlers ran, by handler.", Buckets: latencyBuckets}, []string{"handler"})
	m.clientWaited = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "corrstore_client_wait_duration_seconds",
		Help: "How long Request, Gather and Stream waited for an outcome, by its state.", Buckets: latencyBuckets}, []string{"state"})

	// Known label values start at 0.
	for _, s := range deliverStatuses {
		m.replies.WithLabelValues(string(s))
		m.clientReplies.WithLabelValues(string(s))
	}
	m.clientReplies.WithLabelValues("rejected")
	for _, s := range store.States {
		if s.Terminal() {
			m.outcomes.WithLabelValues(string(s))
		}
	}
	m.NameHandlers(OtherHandler)
	for _, op := range ops {
		for _, k := range errorKinds {
			m.opErrors.WithLabelValues(op, k)
		}
	}
	for _, o := range reaperOutcomes {
		m.reaperExpired.WithLabelValues(o)
	}
	for _, p := range reaperPhases {
		m.passFailed.WithLabelValues(p)
	}

	reg.MustRegister(m.registered, m.replies, m.outcomes, m.dispatch, m.opLatency, m.opErrors,
		m.passDuration, m.expiryLag, m.reaperExpired, m.purged, m.earlyDropped, m.corrupt, m.passFailed,
		m.clientSent, m.clientReplies, m.clientDispatch, m.clientHandled, m.clientWaited, m.attemptTook)
	return m
}

// OtherHandler is the handler label value of every handler not named with
// NameHandlers: handler names are chosen by writers, so only the ones an
// operator or a service names get a series of their own.
const OtherHandler = "other"

// NameHandlers gives handlers their own handler label value (serve names
// those of its callbacks file, Client those a service handles); their
// dispatch results start at 0.
func (m *Metrics) NameHandlers(handlers ...string) {
	for _, h := range handlers {
		if _, done := m.handlers.LoadOrStore(h, true); !done {
			for _, r := range dispatchResults {
				m.dispatch.WithLabelValues(h, r)
			}
		}
	}
}

// handlerLabel is the handler label value of h.
func (m *Metrics) handlerLabel(h string) string {
	if _, ok := m.handlers.Load(h); ok {
		return h
	}
	return OtherHandler
}

// Webhooks returns what serve's webhook dispatcher reports its attempts to.
func (m *Metrics) Webhooks() WebhookMetrics { return WebhookMetrics{m} }

// WebhookMetrics times webhook attempts by handler and result.
type WebhookMetrics struct{ m *Metrics }

// Attempt records one webhook attempt.
func (w WebhookMetrics) Attempt(handler, result string, took time.Duration) {
	w.m.attemptTook.WithLabelValues(w.m.handlerLabel(handler), result).Observe(took.Seconds())
}

// WatchStore registers the collector that reads st.Stats at each scrape:
// pending correlations and the oldest pending age by namespace,
// correlations by state, dispatch backlog by state, early replies, and
// whether the store answered. Watch one store per registry.
func (m *Metrics) WatchStore(st store.Store) {
	m.reg.MustRegister(&statsCollector{st: st, clock: m.clock, m: m})
}

type statsCollector struct {
	st    store.Store
	clock store.Clock
	m     *Metrics
}

var (
	pendingDesc = prometheus.NewDesc("corrstore_pending",
		"Pending correlations, by namespace.", []string{"namespace"}, nil)
	oldestDesc = prometheus.NewDesc("corrstore_oldest_pending_age_seconds",
		"Age of the oldest pending correlation, by namespace (0 when none is pending).", []string{"namespace"}, nil)
	correlationsDesc = prometheus.NewDesc("corrstore_correlations",
		"Correlations held, by namespace and state.", []string{"namespace", "state"}, nil)
	dispatchDesc = prometheus.NewDesc("corrstore_dispatch_backlog",
		"Outcomes by dispatch state (pending, done, dead), by namespace.", []string{"namespace", "state"}, nil)
	earlyDesc = prometheus.NewDesc("corrstore_early_replies",
		"Buffered early replies waiting for their registration.", nil, nil)
	dueAgeDesc = prometheus.NewDesc("corrstore_dispatch_oldest_due_age_seconds",
		"How long the most overdue outcome of a named handler has waited for dispatch, in every namespace (0 when none is overdue).", []string{"handler"}, nil)
	upDesc = prometheus.NewDesc("corrstore_store_up",
		"1 when the store answered the stats call of this scrape.", nil, nil)
)

func (c *statsCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{pendingDesc, oldestDesc, correlationsDesc, dispatchDesc, earlyDesc, dueAgeDesc, upDesc} {
		ch <- d
	}
}

func (c *statsCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := c.st.Stats(ctx, "")
	if err != nil {
		ch <- prometheus.MustNewConstMetric(upDesc, prometheus.GaugeValue, 0)
		return
	}
	ch <- prometheus.MustNewConstMetric(upDesc, prometheus.GaugeValue, 1)
	now := c.clock.Now()
	for ns, n := range st.Namespaces {
		ch <- prometheus.MustNewConstMetric(pendingDesc, prometheus.GaugeValue, float64(n.States[store.StatePending]), ns)
		ch <- prometheus.MustNewConstMetric(oldestDesc, prometheus.GaugeValue, n.OldestPendingAge(now).Seconds(), ns)
		for _, s := range store.States {
			ch <- prometheus.MustNewConstMetric(correlationsDesc, prometheus.GaugeValue, float64(n.States[s]), ns, string(s))
		}
		for _, d := range []store.DispatchState{store.DispatchPending, store.DispatchDone, store.DispatchDead} {
			ch <- prometheus.MustNewConstMetric(dispatchDesc, prometheus.GaugeValue, float64(n.Dispatch[d]), ns, string(d))
		}
	}
	ch <- prometheus.MustNewConstMetric(earlyDesc, prometheus.GaugeValue, float64(st.EarlyReplies))
	// Named handlers only: writers choose handler names.
	c.m.handlers.Range(func(k, _ any) bool {
		h := k.(string)
		if h == OtherHandler {
			return true
		}
		at, err := c.st.OldestDispatchDue(ctx, "", h)
		if err != nil {
			return false
		}
		age := 0.0
		if !at.IsZero() && now.After(at) {
			age = now.Sub(at).Seconds()
		}
		ch <- prometheus.MustNewConstMetric(dueAgeDesc, prometheus.GaugeValue, age, h)
		return true
	})
}

// Reaper returns the reaper.Metrics that feeds these metrics
// (reaper.Config.Metrics).
func (m *Metrics) Reaper() reaper.Metrics { return reaperMetrics{m} }

type reaperMetrics struct{ m *Metrics }

func (r reaperMetrics) Expired(outcome string, n int) {
	r.m.reaperExpired.WithLabelValues(outcome).Add(float64(n))
}
func (r reaperMetrics) Purged(n int)                 { r.m.purged.Add(float64(n)) }
func (r reaperMetrics) EarlyDropped(n int)           { r.m.earlyDropped.Add(float64(n)) }
func (r reaperMetrics) Corrupt(n int)                { r.m.corrupt.Add(float64(n)) }
func (r reaperMetrics) PassFailed(phase string)      { r.m.passFailed.WithLabelValues(phase).Inc() }
func (r reaperMetrics) PassDuration(d time.Duration) { r.m.passDuration.Observe(d.Seconds()) }
func (r reaperMetrics) ExpiryLag(d time.Duration)    { r.m.expiryLag.Observe(d.Seconds()) }

// Client returns the client.Metrics that feeds these metrics
// (client.Config.Metrics). handlers names the callback handlers the
// service registers, so that their results start at 0; a handler or
// destination first seen later gets its other results at 0 when it is.
func (m *Metrics) Client(handlers ...string) client.Metrics {
	cm := clientMetrics{m}
	for _, h := range handlers {
		cm.initHandler(h)
	}
	return cm
}

type clientMetrics struct{ m *Metrics }

var _ client.Metrics = clientMetrics{}

func (c clientMetrics) initHandler(h string) {
	c.m.NameHandlers(h)
	if _, done := c.m.seen.LoadOrStore("handler\x00"+h, true); !done {
		for _, r := range clientDispatchResults {
			c.m.clientDispatch.WithLabelValues(h, r)
		}
	}
}

func (c clientMetrics) Sent(dest string, err error) {
	if _, done := c.m.seen.LoadOrStore("dest\x00"+dest, true); !done {
		c.m.clientSent.WithLabelValues(dest, "ok")
		c.m.clientSent.WithLabelValues(dest, "error")
	}
	result := "ok"
	if err != nil {
		result = "error"
	}
	c.m.clientSent.WithLabelValues(dest, result).Inc()
}

func (c clientMetrics) ReplyDelivered(status store.DeliverStatus) {
	c.m.clientReplies.WithLabelValues(string(status)).Inc()
}

func (c clientMetrics) Dispatched(handler, result string, d time.Duration) {
	c.initHandler(handler)
	c.m.clientDispatch.WithLabelValues(handler, result).Inc()
	c.m.clientHandled.WithLabelValues(handler).Observe(d.Seconds())
}

func (c clientMetrics) Waited(state store.State, d time.Duration) {
	c.m.clientWaited.WithLabelValues(string(state)).Observe(d.Seconds())
}

// errKind names a store error for the errors counter.
func errKind(err error) string {
	for _, k := range errKinds {
		if errors.Is(err, k.err) {
			return k.name
		}
	}
	return "other"
}
