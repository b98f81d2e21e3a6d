// Package metrics exports corrstore's Prometheus metrics: the store's counts
// read at scrape time, counters and latencies of every store operation (a
// store.Store wrapper), the reaper's passes (a reaper.Metrics) and the HTTP
// requests by route and code.
package metrics

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"

	"github.com/corrstore/corrstore/reaper"
	"github.com/corrstore/corrstore/store"
)

// Metrics holds corrstore's metrics in their own registry.
type Metrics struct {
	Registry *prometheus.Registry
	clock    store.Clock

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

	httpRequests *prometheus.CounterVec
	httpLatency  *prometheus.HistogramVec
	httpInFlight prometheus.Gauge
}

// New returns the metrics, with the Go runtime and process collectors.
// clock reads "now" for the oldest-pending age (nil: the real clock).
func New(clock store.Clock) *Metrics {
	if clock == nil {
		clock = store.RealClock{}
	}
	r := prometheus.NewRegistry()
	f := func(c prometheus.Collector) { r.MustRegister(c) }
	latency := []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5}
	m := &Metrics{Registry: r, clock: clock}
	m.registered = prometheus.NewCounter(prometheus.CounterOpts{Name: "corrstore_registered_total",
		Help: "Correlations registered (created, not repeats)."})
	m.replies = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "corrstore_replies_total",
		Help: "Replies delivered, by status: accepted, completed, duplicate, late, buffered."}, []string{"status"})
	m.outcomes = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "corrstore_outcomes_total",
		Help: "Outcomes decided in this process, by state."}, []string{"state"})
	m.dispatch = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "corrstore_dispatch_total",
		Help: "Dispatch results: claimed, acked, failed, dead, redispatched."}, []string{"result"})
	m.opLatency = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "corrstore_store_op_duration_seconds",
		Help: "Latency of store operations, by operation.", Buckets: latency}, []string{"op"})
	m.opErrors = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "corrstore_store_op_errors_total",
		Help: "Store operations that failed, by operation and error kind."}, []string{"op", "kind"})
	m.passDuration = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "corrstore_reaper_pass_duration_seconds",
		Help: "Duration of reaper passes.", Buckets: latency})
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
	m.httpRequests = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "corrstore_http_requests_total",
		Help: "HTTP requests, by method, route and status code."}, []string{"method", "route", "code"})
	m.httpLatency = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "corrstore_http_request_duration_seconds",
		Help: "HTTP request latency, by method and route (long polls included).", Buckets: latency}, []string{"method", "route"})
	m.httpInFlight = prometheus.NewGauge(prometheus.GaugeOpts{Name: "corrstore_http_requests_in_flight",
		Help: "HTTP requests being served now (long polls included)."})
	for _, c := range []prometheus.Collector{m.registered, m.replies, m.outcomes, m.dispatch, m.opLatency, m.opErrors,
		m.passDuration, m.expiryLag, m.reaperExpired, m.purged, m.earlyDropped, m.corrupt, m.passFailed,
		m.httpRequests, m.httpLatency, m.httpInFlight,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})} {
		f(c)
	}
	return m
}

// Handler serves the registry in the Prometheus exposition format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{Registry: m.Registry})
}

// WatchStore registers the collector that reads st.Stats at each scrape:
// pending correlations and the oldest pending age by namespace, dispatch
// backlog by state, early replies.
func (m *Metrics) WatchStore(st store.Store) {
	m.Registry.MustRegister(&statsCollector{st: st, clock: m.clock})
}

// InFlight is the number of HTTP requests being served now.
func (m *Metrics) InFlight() int {
	var d dto.Metric
	if err := m.httpInFlight.Write(&d); err != nil {
		return 0
	}
	return int(d.GetGauge().GetValue())
}

// Instrument wraps an HTTP handler to count and time its requests.

func (m *Metrics) Instrument(method, route string, h http.Handler) http.Handler {
	lat := m.httpLatency.WithLabelValues(method, route)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		m.httpInFlight.Inc()
		defer m.httpInFlight.Dec()
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w, code: http.StatusOK}
		h.ServeHTTP(sw, r)
		lat.Observe(time.Since(start).Seconds())
		m.httpRequests.WithLabelValues(method, route, strconv.Itoa(sw.code)).Inc()
	})
}

type statusWriter struct {
	http.ResponseWriter
	code  int
	wrote bool
}

func (w *statusWriter) WriteHeader(code int) {
	if !w.wrote {
		w.code, w.wrote = code, true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	w.wrote = true
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

type statsCollector struct {
	st    store.Store
	clock store.Clock
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
	upDesc = prometheus.NewDesc("corrstore_store_up",
		"1 when the store answered the stats call of this scrape.", nil, nil)
)

func (c *statsCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{pendingDesc, oldestDesc, correlationsDesc, dispatchDesc, earlyDesc, upDesc} {
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
}

// Reaper returns the reaper.Metrics that feeds these metrics.
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

// errKind names a store error for the errors counter.
func errKind(err error) string {
	for _, k := range []struct {
		err  error
		name string
	}{
		{store.ErrUnavailable, "unavailable"}, {store.ErrNotFound, "not_found"}, {store.ErrConflict, "conflict"}, {store.ErrNotPending, "not_pending"},
		{store.ErrInvalid, "invalid"}, {store.ErrTooLarge, "too_large"}, {store.ErrClosed, "closed"},
		{store.ErrCorrupt, "corrupt"}, {context.Canceled, "canceled"}, {context.DeadlineExceeded, "timeout"},
	} {
		if errors.Is(err, k.err) {
			return k.name
		}
	}
	return "other"
}
