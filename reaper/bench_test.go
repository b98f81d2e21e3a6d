package reaper_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/corrstore/corrstore/bolt"
	"github.com/corrstore/corrstore/reaper"
	"github.com/corrstore/corrstore/store"
)

// registerMany registers n correlations from 2,048 goroutines, so that the
// group commit of bolt fills its batches, and returns how long it took.
func registerMany(tb testing.TB, st store.Store, n int, make func(i int) *store.Correlation) time.Duration {
	tb.Helper()
	start := time.Now()
	var next atomic.Int64
	var failed atomic.Pointer[error]
	var wg sync.WaitGroup
	for range min(n, 2048) {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n || failed.Load() != nil {
					return
				}
				if _, err := st.Register(context.Background(), make(i)); err != nil {
					failed.CompareAndSwap(nil, &err)
				}
			}
		})
	}
	wg.Wait()
	if err := failed.Load(); err != nil {
		tb.Fatalf("register: %v", *err)
	}
	return time.Since(start)
}

// scaleStore is a bolt store holding a number of pending correlations that
// are not due.
type scaleStore struct {
	st    *bolt.Store
	clock *store.FakeClock
	setup time.Duration
	round int
}

// openScaleStore sets up a store with pending correlations in dir.
func openScaleStore(b *testing.B, dir string, pending int) *scaleStore {
	clk := store.NewFakeClock(t0)
	path := filepath.Join(dir, fmt.Sprintf("pending-%d.db", pending))
	st, err := bolt.Open(bolt.Options{Path: path, Clock: clk, NoSync: true,
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	if err != nil {
		b.Fatal(err)
	}
	far := t0.Add(300 * 24 * time.Hour)
	took := registerMany(b, st, pending, func(i int) *store.Correlation {
		return &store.Correlation{ID: fmt.Sprintf("p-%08d", i), Deadline: far}
	})
	fi, err := os.Stat(path)
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("set up %d pending in %s (%.0f/s), file %d MiB", pending, took.Round(time.Millisecond),
		float64(pending)/took.Seconds(), fi.Size()>>20)
	return &scaleStore{st: st, clock: clk, setup: took}
}

// BenchmarkPassScale times one pass of the reaper that expires 1,000 due
// correlations among 10,000 and among 1,000,000 pending ones on bbolt. The
// deadline index makes a pass cost O(due): the two costs should be close,
// and the second sub-benchmark reports their ratios. Each cost is the
// median over the passes, in wall time and in CPU time of the process, and
// the B+tree nodes its writes touched: on a VM that steals the CPU for tens
// of milliseconds at a time, the time of one pass varies tenfold from run
// to run; the node count only grows with the depth of the tree.
//
// Setup (outside the timer) registers the pending ones once per process,
// then before each pass 1,000 more that the fake clock makes due. The
// 1,000,000 setup takes a while; run it with e.g.
//
//	go test -run '^$' -bench PassScale -benchtime 30x ./reaper/
func BenchmarkPassScale(b *testing.B) {
	const due = 1000
	// The harness calls a sub-benchmark again with a larger b.N: the
	// stores are set up once, here, and closed when all are done.
	dir := b.TempDir()
	stores := map[int]*scaleStore{}
	perPass := map[int]passCost{}
	b.Cleanup(func() {
		for _, s := range stores {
			s.st.Close()
		}
	})
	for _, pending := range []int{10_000, 1_000_000} {
		b.Run(fmt.Sprintf("pending=%d/due=%d", pending, due), func(b *testing.B) {
			s := stores[pending]
			if s == nil {
				s = openScaleStore(b, dir, pending)
				stores[pending] = s
			}
			calls := &countingStore{Store: s.st}
			r, err := reaper.New(calls, reaper.Config{Clock: s.clock, Batch: 500, Logger: slog.New(slog.DiscardHandler)})
			if err != nil {
				b.Fatal(err)
			}
			var walls, cpus []time.Duration
			var nodes, written int64
			b.ResetTimer()
			for range b.N {
				b.StopTimer()
				s.round++
				deadline := s.clock.Now().Add(time.Millisecond)
				round := s.round
				registerMany(b, s.st, due, func(i int) *store.Correlation {
					return &store.Correlation{ID: fmt.Sprintf("d-%06d-%04d", round, i), Deadline: deadline}
				})
				s.clock.Set(deadline)
				calls.expireDue.Store(0)
				tx0 := s.st.DBStats().TxStats
				cpu0 := processCPU(b)
				b.StartTimer()

				rep, err := r.RunOnce(context.Background())

				b.StopTimer()
				cpus = append(cpus, processCPU(b)-cpu0)
				tx := s.st.DBStats().TxStats
				nodes += tx.GetNodeCount() - tx0.GetNodeCount()
				written += tx.GetWrite() - tx0.GetWrite()
				if err != nil {
					b.Fatal(err)
				}
				if rep.Expired.Total() != due {
					b.Fatalf("pass expired %d, want %d", rep.Expired.Total(), due)
				}
				walls = append(walls, rep.Duration)
				b.StartTimer()
			}
			b.StopTimer()
			slices.Sort(walls)
			slices.Sort(cpus)
			cost := passCost{wall: percentile(walls, 0.5), cpu: percentile(cpus, 0.5),
				nodes: float64(nodes) / float64(b.N), written: float64(written) / float64(b.N)}
			perPass[pending] = cost
			b.ReportMetric(ms(cost.wall), "ms/pass")
			b.ReportMetric(ms(cost.cpu), "cpu-ms/pass")
			b.ReportMetric(cost.nodes, "nodes/pass")
			b.ReportMetric(cost.written, "pages-written/pass")
			b.ReportMetric(float64(calls.expireDue.Load()), "ExpireDue-calls/pass")
			b.ReportMetric(s.setup.Seconds(), "setup-s")
			if base, ok := perPass[10_000]; pending != 10_000 && ok {
				b.ReportMetric(float64(cost.wall)/float64(base.wall), "x-vs-10k")
				b.ReportMetric(float64(cost.cpu)/float64(base.cpu), "cpu-x-vs-10k")
				b.ReportMetric(cost.nodes/base.nodes, "nodes-x-vs-10k")
			}
		})
	}
}

// passCost is the cost of one pass: the median wall time and CPU time of
// the process, and the mean count of B+tree nodes the pass's writes touched
// and pages they wrote (bbolt's own counters, which no stall or busy
// neighbour changes).
type passCost struct {
	wall, cpu      time.Duration
	nodes, written float64
}

// processCPU is the user+system CPU time this process has used so far.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// countingStore counts the ExpireDue calls of a pass.
type countingStore struct {
	store.Store
	expireDue atomic.Int64
}

func (c *countingStore) ExpireDue(ctx context.Context, now time.Time, limit int) ([]*store.Correlation, error) {
	c.expireDue.Add(1)
	return c.Store.ExpireDue(ctx, now, limit)
}

// lagMetrics collects expiry lags and pass durations.
type lagMetrics struct {
	reaper.NopMetrics
	mu     sync.Mutex
	lags   []time.Duration
	passes []time.Duration
	got    chan struct{} // a token after each batch of lags
}

func (m *lagMetrics) PassDuration(d time.Duration) {
	m.mu.Lock()
	m.passes = append(m.passes, d)
	m.mu.Unlock()
}

func (m *lagMetrics) ExpiryLag(d time.Duration) {
	m.mu.Lock()
	m.lags = append(m.lags, d)
	m.mu.Unlock()
	select {
	case m.got <- struct{}{}:
	default:
	}
}

func (m *lagMetrics) count() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.lags)
}

// recordedLag measures, on the real clock, when ExpireDue returned each
// decided correlation: the outcome is recorded then, a little after its
// Outcome.At.
type recordedLag struct {
	store.Store
	mu   sync.Mutex
	lags []time.Duration
}

func (s *recordedLag) ExpireDue(ctx context.Context, now time.Time, limit int) ([]*store.Correlation, error) {
	cs, err := s.Store.ExpireDue(ctx, now, limit)
	at := time.Now()
	s.mu.Lock()
	for _, c := range cs {
		s.lags = append(s.lags, at.Sub(c.Deadline))
	}
	s.mu.Unlock()
	return cs, err
}

// ms is d in milliseconds, for ReportMetric.
func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[min(len(sorted)-1, int(p*float64(len(sorted))))]
}

// BenchmarkExpiryLag runs the reaper's Run loop (real clock, default
// jitter) on bbolt and on the in-memory fake store, under a steady load of
// registrations whose deadlines fall 50 to 500 ms after they are made. It
// reports the expiry lag: p50/p99/max of Outcome.At − Deadline (lag), and
// p99 of the time ExpireDue returned − Deadline (recorded). The target is
// p99 ≤ Interval + 100 ms.
//
// As a control it reports how late a 1 ms sleep woke up during the run
// (sched-stall): on a machine that stalls the process no lag can be better.
//
// One op is one registration, paced at 100 or 500 per second, so
// -benchtime sets how long the load lasts; the 1 s interval wants several
// seconds:
//
//	go test -run '^$' -bench ExpiryLag -benchtime 10s ./reaper/
func BenchmarkExpiryLag(b *testing.B) {
	stores := []struct {
		name string
		open func(b *testing.B) store.Store
	}{
		{"bolt", func(b *testing.B) store.Store {
			st, err := bolt.Open(bolt.Options{Path: filepath.Join(b.TempDir(), "c.db"), NoSync: true,
				Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { st.Close() })
			return st
		}},
		// The in-memory fake shows the reaper's own part of the lag, without
		// the write latency of a store.
		{"fake", func(*testing.B) store.Store { return newFakeStore() }},
	}
	for _, s := range stores {
		for _, interval := range []time.Duration{100 * time.Millisecond, time.Second} {
			for _, rate := range []int{100, 500} {
				b.Run(fmt.Sprintf("store=%s/interval=%s/rate=%d", s.name, interval, rate), func(b *testing.B) {
					benchLag(b, s.open(b), interval, rate)
				})
			}
		}
	}
}

func benchLag(b *testing.B, st store.Store, interval time.Duration, perSecond int) {
	m := &lagMetrics{got: make(chan struct{}, 1)}
	rec := &recordedLag{Store: st}
	r, err := reaper.New(rec, reaper.Config{Interval: interval, Metrics: m, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	runDone := make(chan error, 1)
	go func() { runDone <- r.Run(ctx) }()
	defer func() {
		cancel()
		<-runDone
	}()

	// Registrations go through a pool of workers so that a slow commit
	// does not hold the pace back.
	regs := make(chan *store.Correlation, 4096)
	var wg sync.WaitGroup
	for range 128 {
		wg.Go(func() {
			for c := range regs {
				if _, err := st.Register(ctx, c); err != nil {
					b.Errorf("register: %v", err)
				}
			}
		})
	}
	// A control: how late a 1 ms sleep wakes up on this machine during the
	// run. Lags cannot be better than the scheduler's stalls.
	stallDone := make(chan struct{})
	stalls := make(chan []time.Duration, 1)
	go func() {
		var gaps []time.Duration
		last := time.Now()
		for {
			select {
			case <-stallDone:
				stalls <- gaps
				return
			case <-time.After(time.Millisecond):
			}
			now := time.Now()
			gaps = append(gaps, now.Sub(last)-time.Millisecond)
			last = now
		}
	}()

	gap := time.Second / time.Duration(perSecond)
	prefix := fmt.Sprintf("lag-%d-", b.N)
	b.ResetTimer()
	start := time.Now()
	for i := range b.N {
		if wait := time.Until(start.Add(time.Duration(i) * gap)); wait > 0 {
			time.Sleep(wait) // pacing the load, not waiting for the worker
		}
		timeout := 50*time.Millisecond + time.Duration(i*7919%450)*time.Millisecond
		regs <- &store.Correlation{ID: fmt.Sprint(prefix, i), Timeout: timeout}
	}
	close(regs)
	wg.Wait()
	b.StopTimer()
	close(stallDone)
	stall := <-stalls

	// Wait for the reaper to decide every one: the last deadline is at most
	// 500 ms away, then at most one interval and a pass.
	limit := time.NewTimer(interval + 30*time.Second)
	defer limit.Stop()
	for m.count() < b.N {
		select {
		case <-m.got:
		case <-limit.C:
			b.Fatalf("%d of %d decided", m.count(), b.N)
		}
	}
	m.mu.Lock()
	lags, passes := slices.Clone(m.lags), slices.Clone(m.passes)
	m.mu.Unlock()
	rec.mu.Lock()
	recorded := slices.Clone(rec.lags)
	rec.mu.Unlock()
	slices.Sort(lags)
	slices.Sort(recorded)
	slices.Sort(passes)
	slices.Sort(stall)
	b.ReportMetric(ms(percentile(lags, 0.50)), "p50-lag-ms")
	b.ReportMetric(ms(percentile(lags, 0.99)), "p99-lag-ms")
	b.ReportMetric(ms(lags[len(lags)-1]), "max-lag-ms")
	b.ReportMetric(ms(percentile(recorded, 0.99)), "p99-recorded-ms")
	b.ReportMetric(ms(interval+100*time.Millisecond), "target-p99-ms")
	b.ReportMetric(ms(percentile(passes, 0.99)), "p99-pass-ms")
	b.ReportMetric(ms(percentile(stall, 0.99)), "p99-sched-stall-ms")
	b.ReportMetric(float64(len(lags)), "decided")
}
