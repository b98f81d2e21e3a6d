// Package httpmetrics counts and times serve's HTTP requests by route, and
// logs them (AccessLog). The store, reaper and client metrics are the
// public package promcorr's; only serve has routes.
package httpmetrics

import (
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// Metrics are the HTTP request metrics.
type Metrics struct {
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	inFlight prometheus.Gauge
}

var latencyBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5}

// New registers the HTTP metrics with reg.
func New(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "corrstore_http_requests_total",
			Help: "HTTP requests, by method, route and status code."}, []string{"method", "route", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "corrstore_http_request_duration_seconds",
			Help: "HTTP request latency, by method and route (long polls included).", Buckets: latencyBuckets}, []string{"method", "route"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{Name: "corrstore_http_requests_in_flight",
			Help: "HTTP requests being served now (long polls included)."}),
	}
	reg.MustRegister(m.requests, m.latency, m.inFlight)
	return m
}

// InFlight is the number of HTTP requests being served now.
func (m *Metrics) InFlight() int {
	var d dto.Metric
	if err := m.inFlight.Write(&d); err != nil {
		return 0
	}
	return int(d.GetGauge().GetValue())
}

// zeroCodes are the status codes each route's request counter starts at 0
// with, so that an alert on the rate of 5xx sees the first one.
var zeroCodes = []string{"500", "503"}

// Instrument wraps an HTTP handler to count and time its requests.
func (m *Metrics) Instrument(method, route string, h http.Handler) http.Handler {
	lat := m.latency.WithLabelValues(method, route)
	for _, code := range zeroCodes {
		m.requests.WithLabelValues(method, route, code)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		m.inFlight.Inc()
		defer m.inFlight.Dec()
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w, code: http.StatusOK}
		h.ServeHTTP(sw, r)
		lat.Observe(time.Since(start).Seconds())
		m.requests.WithLabelValues(method, route, strconv.Itoa(sw.code)).Inc()
	})
}

// AccessLog wraps a route's handler to log each request it serves at info
// level: method, the route's pattern (never the request's path, which can
// carry a reply token), status, duration and the bytes of the answer's
// body. No header is logged, so no bearer token either.
func AccessLog(log *slog.Logger, method, route string, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w, code: http.StatusOK}
		h.ServeHTTP(sw, r)
		log.LogAttrs(r.Context(), slog.LevelInfo, "request",
			slog.String("method", method), slog.String("route", route), slog.Int("status", sw.code),
			slog.Duration("duration", time.Since(start)), slog.Int64("bytes", sw.bytes))
	})
}

type statusWriter struct {
	http.ResponseWriter
	code  int
	wrote bool
	bytes int64
}

func (w *statusWriter) WriteHeader(code int) {
	if !w.wrote {
		w.code, w.wrote = code, true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	w.wrote = true
	n, err := w.ResponseWriter.Write(b)
	w.bytes += int64(n)
	return n, err
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
