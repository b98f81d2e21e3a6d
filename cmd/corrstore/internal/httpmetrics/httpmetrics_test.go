package httpmetrics

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestInstrument(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := New(reg)
	h := m.Instrument("GET", "/healthz", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(418) }))
	if got := testutil.ToFloat64(m.requests.WithLabelValues("GET", "/healthz", "500")); got != 0 {
		t.Errorf("500 before any request = %v", got)
	}
	if n, err := testutil.GatherAndCount(reg, "corrstore_http_requests_total"); err != nil || n != 2 {
		t.Errorf("series before any request = %d, %v; want 500 and 503 at 0", n, err)
	}
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/healthz", nil))
	if got := testutil.ToFloat64(m.requests.WithLabelValues("GET", "/healthz", "418")); got != 1 {
		t.Errorf("418 = %v, want 1", got)
	}
	if got := m.InFlight(); got != 0 {
		t.Errorf("in flight after the request = %d", got)
	}
	problems, err := testutil.CollectAndLint(m.requests)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
}
