package reaper_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/corrstore/corrstore/reaper"
	"github.com/corrstore/corrstore/store"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var t0 = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

// recMetrics records what a reaper reports through Metrics.
type recMetrics struct {
	mu                      sync.Mutex
	expired                 map[string]int
	purged, dropped, broken int
	failed                  map[string]int
	passes                  int
	lags                    []time.Duration
}

func newRecMetrics() *recMetrics {
	return &recMetrics{expired: map[string]int{}, failed: map[string]int{}}
}

func (m *recMetrics) locked(f func()) {
	m.mu.Lock()
	defer m.mu.Unlock()
	f()
}

func (m *recMetrics) Expired(o string, n int)    { m.locked(func() { m.expired[o] += n }) }
func (m *recMetrics) Purged(n int)               { m.locked(func() { m.purged += n }) }
func (m *recMetrics) EarlyDropped(n int)         { m.locked(func() { m.dropped += n }) }
func (m *recMetrics) Corrupt(n int)              { m.locked(func() { m.broken += n }) }
func (m *recMetrics) PassFailed(p string)        { m.locked(func() { m.failed[p]++ }) }
func (m *recMetrics) PassDuration(time.Duration) { m.locked(func() { m.passes++ }) }
func (m *recMetrics) ExpiryLag(d time.Duration)  { m.locked(func() { m.lags = append(m.lags, d) }) }

// testLogger writes warnings and errors to the test's output.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
}

func newReaper(t testing.TB, st store.Store, cfg reaper.Config) *reaper.Reaper {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = testLogger(t)
	}
	r, err := reaper.New(st, cfg)
	if err != nil {
		t.Fatalf("reaper.New: %v", err)
	}
	return r
}

func TestNewDefaults(t *testing.T) {
	r, err := reaper.New(newFakeStore(), reaper.Config{})
	if err != nil {
		t.Fatal(err)
	}
	cfg := r.Config()
	for _, c := range []struct {
		name      string
		got, want any
	}{
		{"Interval", cfg.Interval, time.Second},
		{"Jitter", cfg.Jitter, 100 * time.Millisecond},
		{"PassTimeout", cfg.PassTimeout, 30 * time.Second},
		{"Batch", cfg.Batch, 500},
		{"PurgeBatch", cfg.PurgeBatch, 1000},
		{"Retention", cfg.Retention, 7 * 24 * time.Hour},
		{"EarlyReplyWindow", cfg.EarlyReplyWindow, 5 * time.Minute},
		{"Clock", cfg.Clock, store.Clock(store.RealClock{})},
		{"Metrics", cfg.Metrics, reaper.Metrics(reaper.NopMetrics{})},
	} {
		if c.got != c.want {
			t.Errorf("default %s = %v, want %v", c.name, c.got, c.want)
		}
	}
	if cfg.Logger == nil {
		t.Error("default Logger is nil")
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	for _, tc := range []struct {
		cfg   reaper.Config
		field string
	}{
		{reaper.Config{Interval: -time.Second}, "Config.Interval"},
		{reaper.Config{Interval: time.Second, Jitter: time.Second}, "Config.Jitter"},
		{reaper.Config{Interval: time.Second, Jitter: 2 * time.Second}, "Config.Jitter"},
		{reaper.Config{PassTimeout: -1}, "Config.PassTimeout"},
		{reaper.Config{Batch: -1}, "Config.Batch"},
		{reaper.Config{Batch: reaper.MaxBatch + 1}, "Config.Batch"},
		{reaper.Config{PurgeBatch: -5}, "Config.PurgeBatch"},
		{reaper.Config{PurgeBatch: reaper.MaxBatch + 1}, "Config.PurgeBatch"},
	} {
		_, err := reaper.New(newFakeStore(), tc.cfg)
		var fe *store.FieldError
		if !errors.Is(err, store.ErrInvalid) || !errors.As(err, &fe) || fe.Field != tc.field {
			t.Errorf("New(%+v) = %v, want ErrInvalid naming %s", tc.cfg, err, tc.field)
		}
	}
	if _, err := reaper.New(nil, reaper.Config{}); err == nil {
		t.Error("New(nil store) succeeded")
	}
	// Negative values that mean "off" are fine.
	if _, err := reaper.New(newFakeStore(), reaper.Config{Jitter: -1, Retention: -1, EarlyReplyWindow: -1}); err != nil {
		t.Errorf("New with jitter, purge and drop off: %v", err)
	}
}

func TestRunOnceExpiresInBatches(t *testing.T) {
	clk := store.NewFakeClock(t0)
	st := newFakeStore()
	deadline := t0.Add(time.Second)
	st.addDue(1200, deadline)
	// One of each deadline outcome, plus one not due yet.
	st.add(&store.Correlation{ID: "optional", Optional: true, Deadline: deadline}, t0)
	gather := st.add(&store.Correlation{ID: "gather", Pattern: store.PatternGather, Expect: 3, Quorum: 1, Deadline: deadline}, t0)
	if _, err := gather.ApplyReply(store.Reply{From: "a"}, t0, store.Limits{}.WithDefaults()); err != nil {
		t.Fatal(err)
	}
	st.add(&store.Correlation{ID: "later", Deadline: t0.Add(time.Hour)}, t0)

	m := newRecMetrics()
	r := newReaper(t, st, reaper.Config{Clock: clk, Batch: 500, Metrics: m})
	clk.Set(deadline.Add(250 * time.Millisecond))
	rep, err := r.RunOnce(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	want := reaper.Expired{TimedOut: 1200, NoReply: 1, Partial: 1}
	if rep.Expired != want {
		t.Errorf("Expired = %+v, want %+v", rep.Expired, want)
	}
	if got := st.limits["ExpireDue"]; len(got) != 3 || got[0] != 500 {
		t.Errorf("ExpireDue limits %v, want 3 calls of 500 (500, 500, 202 due)", got)
	}
	if rep.MaxLag != 250*time.Millisecond || rep.MeanLag != 250*time.Millisecond {
		t.Errorf("lags max %s mean %s, want 250ms", rep.MaxLag, rep.MeanLag)
	}
	if !rep.Now.Equal(clk.Now()) || rep.Duration <= 0 {
		t.Errorf("report Now %s Duration %s", rep.Now, rep.Duration)
	}
	if m.expired[reaper.OutcomeTimedOut] != 1200 || m.expired[reaper.OutcomeNoReply] != 1 ||
		m.expired[reaper.OutcomePartial] != 1 || len(m.lags) != 1202 || m.passes != 1 {
		t.Errorf("metrics %+v, %d lags", m.expired, len(m.lags))
	}

	// Nothing more is due: one short call, nothing done.
	rep, err = r.RunOnce(t.Context())
	if err != nil || !rep.Empty() {
		t.Errorf("second pass: %+v, %v; want empty", rep, err)
	}
	if n := st.count("ExpireDue"); n != 4 {
		t.Errorf("ExpireDue called %d times, want 4", n)
	}
}

func TestRunOncePurgesAndDropsEarlyReplies(t *testing.T) {
	clk := store.NewFakeClock(t0)
	st := newFakeStore()
	st.purgeable, st.early = 2500, 7
	m := newRecMetrics()
	r := newReaper(t, st, reaper.Config{Clock: clk, PurgeBatch: 1000, Retention: 48 * time.Hour,
		EarlyReplyWindow: time.Minute, Metrics: m})
	rep, err := r.RunOnce(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if rep.Purged != 2500 || rep.EarlyDropped != 7 || m.purged != 2500 || m.dropped != 7 {
		t.Errorf("purged %d dropped %d (metrics %d, %d), want 2500 and 7", rep.Purged, rep.EarlyDropped, m.purged, m.dropped)
	}
	if n := st.count("Purge"); n != 3 {
		t.Errorf("Purge called %d times, want 3 (1000, 1000, 500)", n)
	}
	if !st.purgeAt[0].Equal(t0.Add(-48*time.Hour)) || !st.dropAt[0].Equal(t0.Add(-time.Minute)) {
		t.Errorf("bounds: purge before %s, drop before %s", st.purgeAt[0], st.dropAt[0])
	}

	off := newFakeStore()
	r = newReaper(t, off, reaper.Config{Clock: clk, Retention: -1, EarlyReplyWindow: -1})
	if _, err := r.RunOnce(t.Context()); err != nil {
		t.Fatal(err)
	}
	if off.count("Purge") != 0 || off.count("DropEarlyReplies") != 0 {
		t.Error("Purge or DropEarlyReplies called though switched off")
	}
}

func TestRunOnceCountsCorruptAndGoesOn(t *testing.T) {
	clk := store.NewFakeClock(t0)
	st := newFakeStore()
	st.addDue(30, t0)
	st.add(&store.Correlation{ID: "bad-1", Deadline: t0}, t0.Add(-time.Minute))
	st.add(&store.Correlation{ID: "bad-2", Deadline: t0}, t0.Add(-time.Minute))
	st.corrupt["bad-1"], st.corrupt["bad-2"] = true, true
	m := newRecMetrics()
	// Batch 8: some batches hold a corrupt record, so they decide fewer
	// than 8 and the loop must still go on.
	r := newReaper(t, st, reaper.Config{Clock: clk, Batch: 8, Metrics: m})
	rep, err := r.RunOnce(t.Context())
	if err != nil {
		t.Fatalf("a corrupt record failed the pass: %v", err)
	}
	if rep.Expired.TimedOut != 30 || rep.Corrupt != 2 || m.broken != 2 {
		t.Errorf("expired %d corrupt %d (metric %d), want 30 and 2", rep.Expired.TimedOut, rep.Corrupt, m.broken)
	}
	if strings.Join(rep.CorruptIDs, ",") != "bad-1,bad-2" {
		t.Errorf("CorruptIDs %v", rep.CorruptIDs)
	}
	rep, err = r.RunOnce(t.Context())
	if err != nil || rep.Corrupt != 0 {
		t.Errorf("next pass: corrupt %d, %v; want 0 (set aside)", rep.Corrupt, err)
	}
}

// A store that keeps reporting a corrupt record without setting it aside
// must not make a pass spin.
func TestRunOnceStopsWhenOnlyCorrupt(t *testing.T) {
	st := newFakeStore()
	st.failExpire = func(int) error { return &store.CorruptError{ID: "stuck", Err: errors.New("bad")} }
	r := newReaper(t, st, reaper.Config{Clock: store.NewFakeClock(t0), Batch: 1})
	rep, err := r.RunOnce(t.Context())
	if err != nil || rep.Corrupt != 1 || st.count("ExpireDue") != 1 {
		t.Errorf("corrupt %d, calls %d, err %v; want 1, 1, nil", rep.Corrupt, st.count("ExpireDue"), err)
	}
}

func TestRunOnceFailedPhaseDoesNotStopTheOthers(t *testing.T) {
	st := newFakeStore()
	st.early = 3
	down := errors.New("connection refused")
	st.failExpire = func(int) error { return down }
	st.failPurge = store.ErrClosed
	m := newRecMetrics()
	var logs bytes.Buffer
	r := newReaper(t, st, reaper.Config{Clock: store.NewFakeClock(t0), Metrics: m,
		Logger: slog.New(slog.NewJSONHandler(&logs, nil))})
	rep, err := r.RunOnce(t.Context())
	if !errors.Is(err, down) || !errors.Is(err, store.ErrClosed) {
		t.Fatalf("err = %v, want both failures", err)
	}
	for _, phase := range []string{"expire", "purge"} {
		if !strings.Contains(err.Error(), "reaper: "+phase+": ") {
			t.Errorf("error %q does not name phase %s", err, phase)
		}
		if m.failed[phase] != 1 {
			t.Errorf("PassFailed(%s) = %d, want 1", phase, m.failed[phase])
		}
	}
	if rep.EarlyDropped != 3 {
		t.Errorf("early replies dropped %d, want 3 despite the failures", rep.EarlyDropped)
	}
	var line map[string]any
	if err := json.Unmarshal(logs.Bytes(), &line); err != nil {
		t.Fatalf("want one JSON log line, got %q: %v", logs.String(), err)
	}
	if line["level"] != "ERROR" || line["component"] != "reaper" || !strings.Contains(line["err"].(string), "connection refused") ||
		line["early_dropped"] != 3.0 {
		t.Errorf("log line %v", line)
	}
}

// A store that cannot answer fails the pass with a warning, not an error
// (nothing is wrong with the reaper), and the next pass does the work.
func TestRunOnceStoreUnavailable(t *testing.T) {
	clk := store.NewFakeClock(t0)
	st := newFakeStore()
	st.addDue(5, t0)
	st.failExpire = func(call int) error {
		if call == 1 {
			return fmt.Errorf("%w: dial tcp 127.0.0.1:6379: connect: connection refused", store.ErrUnavailable)
		}
		return nil
	}
	m := newRecMetrics()
	var logs bytes.Buffer
	r := newReaper(t, st, reaper.Config{Clock: clk, Metrics: m, Logger: slog.New(slog.NewJSONHandler(&logs, nil))})
	rep, err := r.RunOnce(t.Context())
	if !errors.Is(err, store.ErrUnavailable) || rep.Expired.Total() != 0 || m.failed[reaper.PhaseExpire] != 1 {
		t.Fatalf("pass 1: expired %d, err %v, PassFailed %v; want 0 and ErrUnavailable", rep.Expired.Total(), err, m.failed)
	}
	var line map[string]any
	if err := json.Unmarshal(logs.Bytes(), &line); err != nil {
		t.Fatalf("want one JSON log line, got %q: %v", logs.String(), err)
	}
	if line["level"] != "WARN" || line["msg"] != "reaper pass incomplete: store unavailable" ||
		!strings.Contains(line["err"].(string), "connection refused") {
		t.Errorf("log line %v", line)
	}
	if st.count("Purge") != 1 || st.count("DropEarlyReplies") != 1 {
		t.Errorf("purge %d, drop %d calls; the other phases still run", st.count("Purge"), st.count("DropEarlyReplies"))
	}
	rep, err = r.RunOnce(t.Context())
	if err != nil || rep.Expired.TimedOut != 5 {
		t.Errorf("pass 2: expired %d, err %v; want 5, nil", rep.Expired.TimedOut, err)
	}
}

func TestRunOnceLogsOnlyWhenItDidSomething(t *testing.T) {
	clk := store.NewFakeClock(t0)
	st := newFakeStore()
	var logs bytes.Buffer
	r := newReaper(t, st, reaper.Config{Clock: clk, Logger: slog.New(slog.NewJSONHandler(&logs, nil))})
	if _, err := r.RunOnce(t.Context()); err != nil {
		t.Fatal(err)
	}
	if logs.Len() != 0 {
		t.Errorf("an empty pass logged %q", logs.String())
	}
	st.addDue(3, t0)
	st.purgeable = 2
	if _, err := r.RunOnce(t.Context()); err != nil {
		t.Fatal(err)
	}
	var line map[string]any
	if err := json.Unmarshal(logs.Bytes(), &line); err != nil {
		t.Fatalf("want one JSON log line, got %q: %v", logs.String(), err)
	}
	for k, v := range map[string]any{"level": "INFO", "msg": "reaper pass", "component": "reaper",
		"expired": 3.0, "timed_out": 3.0, "purged": 2.0, "corrupt": 0.0} {
		if line[k] != v {
			t.Errorf("log %s = %v, want %v (line %v)", k, line[k], v, line)
		}
	}
}

func TestRunOnceRespectsPassTimeout(t *testing.T) {
	st := newFakeStore()
	st.failExpire = func(int) error { return nil }
	r := newReaper(t, st, reaper.Config{Clock: store.NewFakeClock(t0), PassTimeout: time.Nanosecond})
	_, err := r.RunOnce(t.Context())
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err = %v, want DeadlineExceeded", err)
	}
}

func TestJitterStaysBelowJitter(t *testing.T) {
	r := newReaper(t, newFakeStore(), reaper.Config{Interval: time.Second, Jitter: 10 * time.Millisecond})
	seen := map[time.Duration]bool{}
	for range 1000 {
		d := r.DrawJitter()
		if d < 0 || d >= 10*time.Millisecond {
			t.Fatalf("jitter draw %s out of [0, 10ms)", d)
		}
		seen[d] = true
	}
	if len(seen) < 100 {
		t.Errorf("only %d distinct jitter draws in 1000", len(seen))
	}
	r = newReaper(t, newFakeStore(), reaper.Config{Jitter: -1})
	if d := r.DrawJitter(); d != 0 {
		t.Errorf("jitter off drew %s", d)
	}
}

func TestRunKeepsGoingAfterFailedPasses(t *testing.T) {
	clk := store.NewFakeClock(t0)
	st := newFakeStore()
	st.failExpire = func(call int) error {
		if call <= 3 {
			return errors.New("store unavailable")
		}
		return nil
	}
	st.addDue(5, t0)
	r := newReaper(t, st, reaper.Config{Clock: clk, Interval: time.Millisecond,
		Logger: slog.New(slog.DiscardHandler)})
	ctx, cancel := context.WithCancel(t.Context())
	type pass struct {
		rep reaper.Report
		err error
	}
	passes := make(chan pass)
	r.SetAfterPass(func(rep reaper.Report, err error) {
		select {
		case passes <- pass{rep, err}:
		case <-ctx.Done():
		}
	})
	done := make(chan error)
	go func() { done <- r.Run(ctx) }()
	for i := 1; i <= 4; i++ {
		p := <-passes
		if (p.err != nil) != (i <= 3) {
			t.Errorf("pass %d: err %v", i, p.err)
		}
		if i == 4 && p.rep.Expired.TimedOut != 5 {
			t.Errorf("pass 4 expired %d, want 5", p.rep.Expired.TimedOut)
		}
	}
	if err := r.Run(ctx); err == nil || !strings.Contains(err.Error(), "already running") {
		t.Errorf("second Run: %v, want already running", err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run returned %v after cancel, want nil", err)
	}
}

func TestRunReturnsWhenContextEnds(t *testing.T) {
	r := newReaper(t, newFakeStore(), reaper.Config{Clock: store.NewFakeClock(t0)})
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := r.Run(ctx); err != nil {
		t.Errorf("Run on a done context: %v", err)
	}
}
