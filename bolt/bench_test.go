package bolt_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	"github.com/corrstore/corrstore/bolt"
	"github.com/corrstore/corrstore/store"
)

var benchCallers = []int{1, 64, 512}

// benchDir is where a benchmark puts its files: a fresh directory under
// $BENCH_DIR when set (e.g. BENCH_DIR=/dev/shm to take the disk's fsync
// out of the figures), else the test's temp dir.
func benchDir(b *testing.B) string {
	root := os.Getenv("BENCH_DIR")
	if root == "" {
		return b.TempDir()
	}
	dir, err := os.MkdirTemp(root, "corrstore-bench-")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func benchCorrelation(i int64) *store.Correlation {
	return &store.Correlation{
		ID:          fmt.Sprintf("bench-%d", i),
		Timeout:     time.Hour,
		Destination: "payments",
		ReplyTo:     "orders.replies",
		Callback:    store.Callback{Handler: "resume", Data: []byte(`{"workflow":"wf-1","step":3}`)},
	}
}

// runCallers spreads b.N calls over callers goroutines and reports ops/s.
func runCallers(b *testing.B, callers int, do func(i int64) error) {
	var next atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1)
				if i > int64(b.N) {
					return
				}
				if err := do(i); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "ops/s")
}

// BenchmarkRegister compares a durable Register (group commit, fsync on)
// with bbolt's own db.Batch writing the same record and deadline index
// entry, also durable, at the same number of concurrent callers.
func BenchmarkRegister(b *testing.B) {
	for _, n := range benchCallers {
		b.Run(fmt.Sprintf("corrstore/callers=%d", n), func(b *testing.B) {
			s, err := bolt.Open(bolt.Options{Path: filepath.Join(benchDir(b), "c.db")})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			before := s.Commits()
			runCallers(b, n, func(i int64) error {
				_, err := s.Register(context.Background(), benchCorrelation(i))
				return err
			})
			b.ReportMetric(float64(b.N)/float64(s.Commits()-before), "ops/commit")
		})
		b.Run(fmt.Sprintf("baseline/callers=%d", n), func(b *testing.B) {
			db, err := bbolt.Open(filepath.Join(benchDir(b), "b.db"), 0o600, &bbolt.Options{FreelistType: bbolt.FreelistMapType})
			if err != nil {
				b.Fatal(err)
			}
			defer db.Close()
			err = db.Update(func(tx *bbolt.Tx) error {
				if _, err := tx.CreateBucket([]byte("corr")); err != nil {
					return err
				}
				_, err := tx.CreateBucket([]byte("deadline"))
				return err
			})
			if err != nil {
				b.Fatal(err)
			}
			lim := store.Limits{}.WithDefaults()
			runCallers(b, n, func(i int64) error {
				c, err := store.Prepare(benchCorrelation(i), time.Now(), lim)
				if err != nil {
					return err
				}
				rec, err := store.MarshalCorrelation(c)
				if err != nil {
					return err
				}
				key := append(c.Deadline.AppendFormat(nil, time.RFC3339Nano), c.ID...)
				return db.Batch(func(tx *bbolt.Tx) error {
					if err := tx.Bucket([]byte("corr")).Put([]byte(c.ID), rec); err != nil {
						return err
					}
					return tx.Bucket([]byte("deadline")).Put(key, nil)
				})
			})
		})
	}
}

// fill registers n correlations from 64 goroutines, outside the timer.
func fill(b *testing.B, s *bolt.Store, n int, mk func(i int64) *store.Correlation) {
	var wg sync.WaitGroup
	var next atomic.Int64
	for range 64 {
		wg.Go(func() {
			for i := next.Add(1); i <= int64(n); i = next.Add(1) {
				if _, err := s.Register(context.Background(), mk(i)); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
}

// BenchmarkDeliver measures a durable Deliver that completes a single
// correlation, at 64 callers.
func BenchmarkDeliver(b *testing.B) {
	s, err := bolt.Open(bolt.Options{Path: filepath.Join(benchDir(b), "c.db")})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	fill(b, s, b.N, benchCorrelation)
	runCallers(b, 64, func(i int64) error {
		r, err := s.Deliver(ctx, store.RefOf(fmt.Sprintf("bench-%d", i)), store.Reply{Body: []byte(`{"ok":true}`)})
		if err == nil && r.Status != store.DeliverCompleted {
			err = fmt.Errorf("status %s", r.Status)
		}
		return err
	})
}

// BenchmarkRegisterDeliver is the store's share of make bench-http's
// register+reply pair: 64 callers each registering a correlation and then
// completing it, durable, without HTTP. One op of its ops/s is a pair;
// it also reports what a group commit writes.
func BenchmarkRegisterDeliver(b *testing.B) {
	s, err := bolt.Open(bolt.Options{Path: filepath.Join(benchDir(b), "c.db")})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	before, commits := s.DBStats(), s.Commits()
	runCallers(b, 64, func(i int64) error {
		c := benchCorrelation(i)
		if _, err := s.Register(ctx, c); err != nil {
			return err
		}
		r, err := s.Deliver(ctx, c.Ref(), store.Reply{Body: []byte(`{"ok":true}`)})
		if err == nil && r.Status != store.DeliverCompleted {
			err = fmt.Errorf("status %s", r.Status)
		}
		return err
	})
	after := s.DBStats()
	diff := after.Sub(&before)
	n := float64(s.Commits() - commits)
	b.ReportMetric(float64(2*b.N)/n, "ops/commit")
	b.ReportMetric(float64(diff.TxStats.GetWrite())/n, "pages/commit")
}

// BenchmarkExpireDue measures deciding due correlations in batches of 500
// while 10 times as many are pending and not due.
func BenchmarkExpireDue(b *testing.B) {
	clk := store.NewFakeClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	s, err := bolt.Open(bolt.Options{Path: filepath.Join(benchDir(b), "c.db"), Clock: clk, NoSync: true})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	register := func(n int, timeout time.Duration, prefix string) {
		fill(b, s, n, func(i int64) *store.Correlation {
			c := benchCorrelation(i)
			c.ID, c.Timeout = fmt.Sprintf("%s-%d", prefix, i), timeout
			return c
		})
	}
	register(10*b.N, 24*time.Hour, "later")
	register(b.N, time.Second, "due")
	clk.Add(2 * time.Second)
	b.ResetTimer()
	start := time.Now()
	total := 0
	for total < b.N {
		got, err := s.ExpireDue(ctx, clk.Now(), 500)
		if err != nil {
			b.Fatal(err)
		}
		if len(got) == 0 {
			b.Fatalf("expired %d of %d", total, b.N)
		}
		total += len(got)
	}
	b.StopTimer()
	b.ReportMetric(float64(total)/time.Since(start).Seconds(), "expired/s")
}
