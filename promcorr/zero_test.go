package promcorr

import (
	"errors"
	"fmt"
	"io"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/corrstore/corrstore/store"
)

// TestCountersStartAtZero: a fresh registry's scrape has every counter of a
// known label value at 0, so that increase() sees the first failure.
func TestCountersStartAtZero(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := New(reg, Options{})
	m.Client("notify")

	want := []string{
		"corrstore_registered_total",
		"corrstore_reaper_purged_total",
		"corrstore_reaper_early_replies_dropped_total",
		"corrstore_reaper_corrupt_records_total",
	}
	for _, s := range []string{"accepted", "completed", "duplicate", "late", "buffered"} {
		want = append(want, "corrstore_replies_total{"+s+"}", "corrstore_client_replies_total{"+s+"}")
	}
	want = append(want, "corrstore_client_replies_total{rejected}")
	for _, s := range []string{"completed", "timed_out", "cancelled"} {
		want = append(want, "corrstore_outcomes_total{"+s+"}")
	}
	for _, r := range []string{"claimed", "acked", "failed", "dead", "redispatched"} {
		want = append(want, "corrstore_dispatch_total{other,"+r+"}", "corrstore_dispatch_total{notify,"+r+"}")
	}
	for _, o := range []string{"completed", "partial", "no_reply", "timed_out"} {
		want = append(want, "corrstore_reaper_expired_total{"+o+"}")
	}
	for _, p := range []string{"expire", "purge", "drop_early"} {
		want = append(want, "corrstore_reaper_pass_failures_total{"+p+"}")
	}
	for _, r := range []string{"done", "retry", "dead", "lost"} {
		want = append(want, "corrstore_client_dispatch_total{notify,"+r+"}")
	}
	for _, op := range ops {
		for _, k := range []string{"unavailable", "not_found", "conflict", "not_pending", "invalid",
			"too_large", "closed", "corrupt", "canceled", "timeout", "other"} {
			want = append(want, "corrstore_store_op_errors_total{"+k+","+op+"}") // labels sorted: kind, op
		}
	}
	got := flat(t, reg)
	for _, name := range want {
		v, ok := got[name]
		if !ok {
			t.Errorf("%s: missing from a fresh scrape", name)
		} else if v != 0 {
			t.Errorf("%s = %v on a fresh scrape, want 0", name, v)
		}
	}
	if len(ops) != 18 {
		t.Errorf("ops = %d, the store wrapper times 18", len(ops))
	}

	// What a scrape over HTTP shows.
	rec := httptest.NewRecorder()
	promhttp.HandlerFor(reg, promhttp.HandlerOpts{}).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body, _ := io.ReadAll(rec.Body)
	for _, line := range []string{
		`corrstore_reaper_pass_failures_total{phase="expire"} 0`,
		`corrstore_store_op_errors_total{kind="unavailable",op="register"} 0`,
		`corrstore_outcomes_total{state="timed_out"} 0`,
		`corrstore_replies_total{status="late"} 0`,
	} {
		if !strings.Contains(string(body), line+"\n") {
			t.Errorf("scrape lacks %q", line)
		}
	}
	problems, err := testutil.GatherAndLint(reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
}

func TestErrKind(t *testing.T) {
	for err, want := range map[error]string{
		fmt.Errorf("x: %w", store.ErrUnavailable): "unavailable",
		store.ErrNotFound:                         "not_found",
		errors.New("boom"):                        "other",
	} {
		if got := errKind(err); got != want {
			t.Errorf("errKind(%v) = %q, want %q", err, got, want)
		}
	}
}

func TestClientMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	cm := New(reg, Options{}).Client()
	cm.Sent("payments", nil)
	cm.Sent("payments", nil)
	cm.ReplyDelivered(store.DeliverCompleted)
	cm.ReplyDelivered("rejected")
	cm.Dispatched("audit", "retry", 20*time.Millisecond)
	cm.Waited(store.StateCompleted, 5*time.Millisecond)
	got := flat(t, reg)
	for name, want := range map[string]float64{
		"corrstore_client_sent_total{payments,ok}":                2,
		"corrstore_client_sent_total{payments,error}":             0, // a destination's errors start at 0 once it is seen
		"corrstore_client_replies_total{completed}":               1,
		"corrstore_client_replies_total{rejected}":                1,
		"corrstore_client_dispatch_total{audit,retry}":            1,
		"corrstore_client_dispatch_total{audit,dead}":             0,
		"corrstore_client_dispatch_duration_seconds_count{audit}": 1,
		"corrstore_client_wait_duration_seconds_count{completed}": 1,
	} {
		if g, ok := got[name]; !ok || g != want {
			t.Errorf("%s = %v (present %v), want %v", name, g, ok, want)
		}
	}
}
