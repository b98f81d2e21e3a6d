package promcorr

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"

	"github.com/corrstore/corrstore/bolt"
	"github.com/corrstore/corrstore/reaper"
	"github.com/corrstore/corrstore/store"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestMetricsAgainstTheStore(t *testing.T) {
	ctx := context.Background()
	clock := store.NewFakeClock(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	raw, err := bolt.Open(bolt.Options{Path: filepath.Join(t.TempDir(), "m.db"), NoSync: true, Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	registry := prometheus.NewRegistry()
	m := New(registry, Options{Clock: clock})
	st := m.Store(raw)
	defer st.Close()
	m.WatchStore(st)

	reg := func(id, ns string, timeout time.Duration) {
		t.Helper()
		if _, err := st.Register(ctx, &store.Correlation{ID: id, Namespace: ns, Timeout: timeout}); err != nil {
			t.Fatal(err)
		}
	}
	reg("a1", "alpha", time.Hour)
	clock.Add(10 * time.Second)
	reg("a2", "alpha", time.Hour)
	reg("b1", "beta", 5*time.Second)
	reg("b2", "beta", time.Hour)
	if _, err := st.Deliver(ctx, store.Ref{Namespace: "beta", ID: "b2"}, store.Reply{Body: []byte(`1`)}); err != nil {
		t.Fatal(err)
	}
	clock.Add(50 * time.Second)
	r, err := reaper.New(st, reaper.Config{Clock: clock, Metrics: m.Reaper(), Logger: discard()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.RunOnce(ctx); err != nil {
		t.Fatal(err)
	}
	problems, err := testutil.GatherAndLint(registry)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}

	stats, err := raw.Stats(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	got := gather(t, registry)
	for _, ns := range []string{"alpha", "beta"} {
		want := stats.Namespaces[ns]
		if g := got["corrstore_pending"][ns]; g != float64(want.States[store.StatePending]) {
			t.Errorf("pending{%s} = %v, store says %d", ns, g, want.States[store.StatePending])
		}
		if g, w := got["corrstore_oldest_pending_age_seconds"][ns], want.OldestPendingAge(clock.Now()).Seconds(); g != w {
			t.Errorf("oldest_pending_age{%s} = %v, store says %v", ns, g, w)
		}
	}
	if got["corrstore_pending"]["alpha"] != 2 || got["corrstore_oldest_pending_age_seconds"]["alpha"] != 60 {
		t.Errorf("alpha: %v", got)
	}
	if got["corrstore_pending"]["beta"] != 0 || got["corrstore_oldest_pending_age_seconds"]["beta"] != 0 {
		t.Errorf("beta: %v", got)
	}
	for name, want := range map[string]float64{
		"corrstore_registered_total":                          4,
		"corrstore_replies_total{completed}":                  1,
		"corrstore_outcomes_total{completed}":                 1,
		"corrstore_outcomes_total{timed_out}":                 1,
		"corrstore_reaper_expired_total{timed_out}":           1,
		"corrstore_store_op_duration_seconds_count{register}": 4,
		"corrstore_reaper_expiry_lag_seconds_count":           1,
		"corrstore_reaper_pass_duration_seconds_count":        1,
		"corrstore_store_up":                                  1,
	} {
		if g := flat(t, registry)[name]; g != want {
			t.Errorf("%s = %v, want %v", name, g, want)
		}
	}
}

// Handler names are chosen by writers: only named ones get a label value
// of their own, every other counts as other.
func TestDispatchByHandlerBounded(t *testing.T) {
	ctx := context.Background()
	clock := store.NewFakeClock(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	raw, err := bolt.Open(bolt.Options{Path: filepath.Join(t.TempDir(), "m.db"), NoSync: true, Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	registry := prometheus.NewRegistry()
	m := New(registry, Options{Clock: clock})
	m.NameHandlers("hook")
	st := m.Store(raw)
	defer st.Close()
	m.WatchStore(st)
	var handlers []string
	for i, h := range []string{"hook", "writer-chose-this-1", "writer-chose-this-2"} {
		handlers = append(handlers, h)
		id := fmt.Sprintf("c%d", i)
		if _, err := st.Register(ctx, &store.Correlation{ID: id, Timeout: time.Hour, Callback: store.Callback{Handler: h}}); err != nil {
			t.Fatal(err)
		}
		if _, err := st.Cancel(ctx, store.RefOf(id), ""); err != nil {
			t.Fatal(err)
		}
	}
	clock.Add(90 * time.Second)
	if got := flat(t, registry)["corrstore_dispatch_oldest_due_age_seconds{hook}"]; got != 90 {
		t.Errorf("oldest due age of hook = %v, want 90", got)
	}
	cs, err := st.ClaimDispatch(ctx, store.ClaimRequest{Instance: "i", Handlers: handlers, Now: clock.Now(), Lease: time.Minute, Limit: 10})
	if err != nil || len(cs) != 3 {
		t.Fatalf("claim: %v %v", cs, err)
	}
	for _, c := range cs {
		if _, err := st.AckDispatch(ctx, c.Ref(), c.Dispatch.Claim()); err != nil {
			t.Fatal(err)
		}
	}
	m.Webhooks().Attempt("hook", "done", time.Millisecond)
	m.Webhooks().Attempt("unnamed", "retry", time.Millisecond)
	got := flat(t, registry)
	for name, want := range map[string]float64{
		"corrstore_dispatch_total{hook,claimed}":  1,
		"corrstore_dispatch_total{hook,acked}":    1,
		"corrstore_dispatch_total{other,claimed}": 2,
		"corrstore_dispatch_total{other,acked}":   2,
	} {
		if got[name] != want {
			t.Errorf("%s = %v, want %v", name, got[name], want)
		}
	}
	for name := range got {
		if strings.Contains(name, "writer-chose") || strings.Contains(name, "unnamed") {
			t.Errorf("%s: a handler nobody named has a series", name)
		}
	}
	if v, ok := got["corrstore_dispatch_oldest_due_age_seconds{hook}"]; !ok || v != 0 {
		t.Errorf("nothing of hook waits: the age is 0, got %v (%v)", v, ok)
	}
	if got["corrstore_webhook_attempt_duration_seconds_count{hook,done}"] != 1 || got["corrstore_webhook_attempt_duration_seconds_count{other,retry}"] != 1 {
		t.Errorf("attempt latency by handler: %v", got)
	}
}
