package redisstore_test

import (
	"context"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/corrstore/corrstore/internal/testenv"
	"github.com/corrstore/corrstore/redisstore"
	"github.com/corrstore/corrstore/redisstore/redistest"
	"github.com/corrstore/corrstore/store"
)

// The benchmarks run on a real redis-server started for them: appendonly
// yes, appendfsync always, data on disk — the settings strict mode wants.
// CORRSTORE_BENCH_REDIS_DIR=mem puts the data on tmpfs instead, where an
// fsync costs nothing, to compare CPU rather than the disk.

var benchCallers = []int{1, 64, 512}

// benchServer starts the server of one benchmark function.
func benchServer(b *testing.B) *redistest.Server {
	b.Helper()
	opts := redistest.ServerOptions{}
	if os.Getenv("CORRSTORE_BENCH_REDIS_DIR") == "mem" {
		opts.Dir = redistest.MemDir(b)
	}
	return redistest.StartServer(b, opts)
}

// benchClient is the client both sides of a comparison use: a pool as large
// as the callers, so that neither waits for a connection.
func benchClient(b *testing.B, srv *redistest.Server, callers int) *redis.Client {
	return srv.NewClient(b, func(o *redis.Options) { o.PoolSize = max(callers, 10) })
}

func benchCorrelation(id string) *store.Correlation {
	return &store.Correlation{
		ID:          id,
		Timeout:     time.Hour,
		Destination: "payments",
		ReplyTo:     "orders.replies",
		Callback:    store.Callback{Handler: "resume", Data: []byte(`{"workflow":"wf-1","step":3}`)},
	}
}

// benchHeaderLen is the length of the header the store writes before each
// record (a write sequence and the 8 latest write tokens); the baseline pads its value by as
// much so that both write the same number of bytes.
const benchHeaderLen = 144

var benchHeader = strings.Repeat("0", benchHeaderLen)

// rawRecord is what the baseline writes for id: the record the store would
// write, encoded the same way, behind a header of the same length.
func rawRecord(id string, now time.Time) (*store.Correlation, string, error) {
	c, err := store.Prepare(benchCorrelation(id), now, store.Limits{}.WithDefaults())
	if err != nil {
		return nil, "", err
	}
	b, err := store.MarshalCorrelation(c)
	if err != nil {
		return nil, "", err
	}
	return c, benchHeader + string(b), nil
}

// runCallers spreads b.N calls over callers goroutines and reports ops/s.
func runCallers(b *testing.B, callers int, do func(i int64) error) {
	var next atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for range callers {
		wg.Go(func() {
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
		})
	}
	wg.Wait()
	b.StopTimer()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "ops/s")
}

var benchRuns atomic.Int64

// BenchmarkRegister compares Register with a raw MULTI; HSET; ZADD; EXEC
// (one round trip, TxPipeline) of the same record bytes and its deadline,
// at the same number of callers, on the same server.
func BenchmarkRegister(b *testing.B) {
	srv := benchServer(b)
	defer logCommandStats(b, srv)
	for _, n := range benchCallers {
		b.Run(fmt.Sprintf("corrstore/callers=%d", n), func(b *testing.B) {
			rdb := benchClient(b, srv, n)
			s := openBench(b, rdb)
			run := benchRuns.Add(1)
			runCallers(b, n, func(i int64) error {
				_, err := s.Register(context.Background(), benchCorrelation(fmt.Sprintf("b%d-%d", run, i)))
				return err
			})
		})
		b.Run(fmt.Sprintf("baseline/callers=%d", n), func(b *testing.B) {
			rdb := benchClient(b, srv, n)
			run := benchRuns.Add(1)
			hash, zset := fmt.Sprintf("base%d:records", run), fmt.Sprintf("base%d:deadlines", run)
			runCallers(b, n, func(i int64) error {
				id := fmt.Sprintf("b%d-%d", run, i)
				c, v, err := rawRecord(id, time.Now())
				if err != nil {
					return err
				}
				_, err = rdb.TxPipelined(context.Background(), func(p redis.Pipeliner) error {
					p.HSet(context.Background(), hash, id, v)
					p.ZAdd(context.Background(), zset, redis.Z{Score: float64(c.Deadline.UnixMicro()), Member: id})
					return nil
				})
				return err
			})
		})
	}
}

// BenchmarkDeliver compares a Deliver that completes a single with the raw
// read-modify-write it needs: HGET the record, apply the reply, MULTI; HSET
// the new bytes; ZREM the deadline; EXEC — without the compare-and-set,
// the indexes and the event that the store adds.
func BenchmarkDeliver(b *testing.B) {
	srv := benchServer(b)
	defer logCommandStats(b, srv)
	reply := store.Reply{ID: "r1", From: "payments", Body: []byte(`{"paid":true}`)}
	lim := store.Limits{}.WithDefaults()
	for _, n := range benchCallers {
		b.Run(fmt.Sprintf("corrstore/callers=%d", n), func(b *testing.B) {
			rdb := benchClient(b, srv, n)
			s := openBench(b, rdb)
			run := benchRuns.Add(1)
			fill(b, func(i int64) error {
				_, err := s.Register(context.Background(), benchCorrelation(fmt.Sprintf("d%d-%d", run, i)))
				return err
			})
			runCallers(b, n, func(i int64) error {
				res, err := s.Deliver(context.Background(), store.RefOf(fmt.Sprintf("d%d-%d", run, i)), reply)
				if err == nil && res.Status != store.DeliverCompleted {
					err = fmt.Errorf("deliver: %s, want completed", res.Status)
				}
				return err
			})
		})
		b.Run(fmt.Sprintf("baseline/callers=%d", n), func(b *testing.B) {
			rdb := benchClient(b, srv, n)
			run := benchRuns.Add(1)
			hash, zset := fmt.Sprintf("base%d:records", run), fmt.Sprintf("base%d:deadlines", run)
			fill(b, func(i int64) error {
				id := fmt.Sprintf("d%d-%d", run, i)
				c, v, err := rawRecord(id, time.Now())
				if err != nil {
					return err
				}
				_, err = rdb.TxPipelined(context.Background(), func(p redis.Pipeliner) error {
					p.HSet(context.Background(), hash, id, v)
					p.ZAdd(context.Background(), zset, redis.Z{Score: float64(c.Deadline.UnixMicro()), Member: id})
					return nil
				})
				return err
			})
			runCallers(b, n, func(i int64) error {
				ctx := context.Background()
				id := fmt.Sprintf("d%d-%d", run, i)
				v, err := rdb.HGet(ctx, hash, id).Result()
				if err != nil {
					return err
				}
				c, err := store.UnmarshalCorrelation([]byte(v[benchHeaderLen:]))
				if err != nil {
					return err
				}
				if st, err := c.ApplyReply(reply, time.Now(), lim); err != nil || st != store.DeliverCompleted {
					return fmt.Errorf("apply: %s, %v", st, err)
				}
				nb, err := store.MarshalCorrelation(c)
				if err != nil {
					return err
				}
				_, err = rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
					p.HSet(ctx, hash, id, benchHeader+string(nb))
					p.ZRem(ctx, zset, id)
					return nil
				})
				return err
			})
		})
	}
}

// BenchmarkMemoryPerPending registers 100,000 pending correlations and
// reports how much used_memory (INFO memory) grew per correlation, next to
// the raw HSET + ZADD of the same bytes. Each iteration is one 100,000 on a
// fresh prefix; run it with -benchtime 1x. CORRSTORE_MEMORY_PENDING sets
// another count (for a quick look; the figure is taken at 100,000).
func BenchmarkMemoryPerPending(b *testing.B) {
	pending := int64(testenv.Int(b, "CORRSTORE_MEMORY_PENDING", 100_000))
	srv := redistest.StartServer(b, redistest.ServerOptions{Dir: redistest.MemDir(b)}) // memory, not the disk, is measured
	rdb := benchClient(b, srv, 64)
	used := func() int64 {
		v, err := strconv.ParseInt(srv.Info(b, "memory")["used_memory"], 10, 64)
		if err != nil {
			b.Fatalf("used_memory: %v", err)
		}
		return v
	}
	var ours, base int64
	for range b.N {
		s := openBench(b, rdb)
		run := benchRuns.Add(1)
		before := used()
		start := time.Now()
		forN(b, pending, 64, func(i int64) error {
			_, err := s.Register(context.Background(), benchCorrelation(fmt.Sprintf("m%d-%d", run, i)))
			return err
		})
		ours += used() - before
		b.Logf("%d registrations in %s", pending, time.Since(start).Round(time.Millisecond))

		hash, zset := fmt.Sprintf("base%d:records", run), fmt.Sprintf("base%d:deadlines", run)
		before = used()
		forN(b, pending, 64, func(i int64) error {
			id := fmt.Sprintf("m%d-%d", run, i)
			c, v, err := rawRecord(id, time.Now())
			if err != nil {
				return err
			}
			_, err = rdb.TxPipelined(context.Background(), func(p redis.Pipeliner) error {
				p.HSet(context.Background(), hash, id, v)
				p.ZAdd(context.Background(), zset, redis.Z{Score: float64(c.Deadline.UnixMicro()), Member: id})
				return nil
			})
			return err
		})
		base += used() - before
	}
	b.ReportMetric(float64(ours)/float64(int64(b.N)*pending), "bytes/pending")
	b.ReportMetric(float64(base)/float64(int64(b.N)*pending), "baseline-bytes/pending")
}

// openBench opens a store on a fresh prefix, strict, logging warnings only.
func openBench(b *testing.B, rdb redis.UniversalClient) *redisstore.Store {
	b.Helper()
	return openReal(b, rdb, redisstore.Config{Prefix: uniquePrefix("bench"), Strict: true})
}

// fill runs setup for b.N items, 64 at a time, outside the timer.
func fill(b *testing.B, do func(i int64) error) {
	b.Helper()
	b.StopTimer()
	forN(b, int64(b.N), 64, do)
	b.StartTimer()
}

// forN calls do(i) for i in [1, n] on workers goroutines.
func forN(b *testing.B, n int64, workers int, do func(i int64) error) {
	b.Helper()
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for {
				i := next.Add(1)
				if i > n {
					return
				}
				if err := do(i); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if b.Failed() {
		b.FailNow()
	}
}

// logCommandStats logs the server's time per command (INFO commandstats):
// where the server spends it, ours against the baseline's.
func logCommandStats(b *testing.B, srv *redistest.Server) {
	stats := srv.Info(b, "commandstats")
	keys := make([]string, 0, len(stats))
	for k := range stats {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var sb strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&sb, "\n  %s: %s", strings.TrimPrefix(k, "cmdstat_"), stats[k])
	}
	b.Logf("redis-server INFO commandstats over the whole benchmark:%s", sb.String())
}
