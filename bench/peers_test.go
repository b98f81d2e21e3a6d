// Package bench compares corrstore with its peers on one redis-server
// (issue 21). It is its own module, so that the product's go.mod never takes
// a peer. Run it with `make bench-peers` from the repository root.
package bench

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/corrstore/corrstore/redisstore"
	"github.com/corrstore/corrstore/redisstore/redistest"
	"github.com/corrstore/corrstore/store"
)

// payload is the callback data of a corrstore registration and the payload
// of an asynq task: the same 100 bytes.
var payload = []byte(`{"order":"ord-000000000000","customer":"cus-00000000","amount":12345,"currency":"EUR","pad":"xxxxxxx"}`)

// side is one contender of a comparison: what one operation is, given a
// fresh server (emptied before each run).
type side struct {
	name  string
	setup func(b *testing.B, rdb *redis.Client) (op func(ctx context.Context, i int64) error, done func())
}

func corrstoreRegister(b *testing.B, rdb *redis.Client) (func(context.Context, int64) error, func()) {
	s, err := redisstore.New(context.Background(), rdb, redisstore.Config{Prefix: "peer"})
	if err != nil {
		b.Fatal(err)
	}
	return func(ctx context.Context, i int64) error {
		_, err := s.Register(ctx, &store.Correlation{ID: "c-" + strconv.FormatInt(i, 10), Timeout: time.Hour,
			Callback: store.Callback{Handler: "resume", Data: payload}})
		return err
	}, func() { s.Close() }
}

func corrstoreLife(b *testing.B, rdb *redis.Client) (func(context.Context, int64) error, func()) {
	s, err := redisstore.New(context.Background(), rdb, redisstore.Config{Prefix: "peer"})
	if err != nil {
		b.Fatal(err)
	}
	return func(ctx context.Context, i int64) error {
		ref := store.Ref{Namespace: store.DefaultNamespace, ID: "c-" + strconv.FormatInt(i, 10)}
		if _, err := s.Register(ctx, &store.Correlation{ID: ref.ID, Timeout: time.Hour,
			Callback: store.Callback{Handler: "resume", Data: payload}}); err != nil {
			return err
		}
		_, err := s.Deliver(ctx, ref, store.Reply{Body: []byte(`{"ok":true}`)})
		return err
	}, func() { s.Close() }
}

func asynqOpts(rdb *redis.Client) asynq.RedisClientOpt {
	return asynq.RedisClientOpt{Addr: rdb.Options().Addr, PoolSize: rdb.Options().PoolSize}
}

func asynqEnqueue(_ *testing.B, rdb *redis.Client) (func(context.Context, int64) error, func()) {
	c := asynq.NewClient(asynqOpts(rdb))
	return func(ctx context.Context, i int64) error {
		_, err := c.EnqueueContext(ctx, asynq.NewTask("resume", payload), asynq.ProcessIn(time.Hour),
			asynq.TaskID("c-"+strconv.FormatInt(i, 10)))
		return err
	}, func() { c.Close() }
}

func asynqLife(_ *testing.B, rdb *redis.Client) (func(context.Context, int64) error, func()) {
	c := asynq.NewClient(asynqOpts(rdb))
	in := asynq.NewInspector(asynqOpts(rdb))
	return func(ctx context.Context, i int64) error {
		id := "c-" + strconv.FormatInt(i, 10)
		if _, err := c.EnqueueContext(ctx, asynq.NewTask("resume", payload), asynq.ProcessIn(time.Hour), asynq.TaskID(id)); err != nil {
			return err
		}
		return in.DeleteTask("default", id)
	}, func() { c.Close(); in.Close() }
}

// raw is the floor: the fewest commands that keep a pending item findable
// by id and by time.
func raw(_ *testing.B, rdb *redis.Client) (func(context.Context, int64) error, func()) {
	return func(ctx context.Context, i int64) error {
		id := "c-" + strconv.FormatInt(i, 10)
		_, err := rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
			p.HSet(ctx, "raw:"+id, "data", payload, "deadline", time.Now().Add(time.Hour).UnixMicro())
			p.ZAdd(ctx, "raw:deadlines", redis.Z{Score: float64(time.Now().Add(time.Hour).UnixMicro()), Member: id})
			return nil
		})
		return err
	}, func() {}
}

// figures of one run.
type figures struct {
	opsPerSec      float64
	memPerItem     float64 // used_memory growth per operation
	aofPerItem     float64 // aof_current_size growth per operation
	serverCPUPerOp float64 // µs
}

func info(b *testing.B, srv *redistest.Server, section, key string) float64 {
	v, err := strconv.ParseFloat(srv.Info(b, section)[key], 64)
	if err != nil {
		b.Fatalf("INFO %s %s: %v", section, key, err)
	}
	return v
}

func serverCPU(b *testing.B, srv *redistest.Server) float64 {
	return info(b, srv, "cpu", "used_cpu_sys") + info(b, srv, "cpu", "used_cpu_user")
}

// run does n operations of s on callers goroutines against an emptied
// server and measures them.
func run(b *testing.B, srv *redistest.Server, rdb *redis.Client, s side, n int64, callers int) figures {
	ctx := context.Background()
	if err := rdb.FlushAll(ctx).Err(); err != nil {
		b.Fatal(err)
	}
	if err := rdb.Do(ctx, "BGREWRITEAOF").Err(); err != nil {
		b.Fatal(err)
	}
	for info(b, srv, "persistence", "aof_rewrite_in_progress") != 0 || info(b, srv, "persistence", "aof_rewrite_scheduled") != 0 {
		time.Sleep(10 * time.Millisecond) // the rewrite runs in a child: poll its end, bounded by b's timeout
	}
	op, done := s.setup(b, rdb)
	defer done()
	mem0, aof0, cpu0 := info(b, srv, "memory", "used_memory_dataset"), info(b, srv, "persistence", "aof_current_size"), serverCPU(b, srv)
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, callers)
	start := time.Now()
	for range callers {
		wg.Go(func() {
			for {
				i := next.Add(1)
				if i > n {
					return
				}
				if err := op(ctx, i); err != nil {
					errs <- fmt.Errorf("%s op %d: %w", s.name, i, err)
					return
				}
			}
		})
	}
	wg.Wait()
	took := time.Since(start)
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	return figures{
		opsPerSec:      float64(n) / took.Seconds(),
		memPerItem:     (info(b, srv, "memory", "used_memory_dataset") - mem0) / float64(n),
		aofPerItem:     (info(b, srv, "persistence", "aof_current_size") - aof0) / float64(n),
		serverCPUPerOp: (serverCPU(b, srv) - cpu0) * 1e6 / float64(n),
	}
}

// ratio prints one comparison: the median of the per-round ratios, their
// min and max.
func ratio(name string, rs []float64) {
	s := slices.Clone(rs)
	slices.Sort(s)
	fmt.Printf("ratio %-28s %.2f (%.2f–%.2f) rounds=%d\n", name, s[len(s)/2], s[0], s[len(s)-1], len(s))
}

// BenchmarkPeers runs corrstore, asynq and the raw floor in interleaved
// rounds (A B C, then C B A, …) on one redis-server with AOF appendfsync
// always, emptied before each run, and prints per comparison one line
// `ratio NAME MEDIAN (MIN–MAX) rounds=N`. Ratios are ours/theirs: above 1 is
// better for throughput, below 1 is better for memory, AOF bytes and server
// CPU. CORRSTORE_PEER_ROUNDS (default 5) and CORRSTORE_PEER_N (operations
// per run, default 20,000) change the size.
func BenchmarkPeers(b *testing.B) {
	rounds, n := 5, int64(20000)
	if v, err := strconv.Atoi(os.Getenv("CORRSTORE_PEER_ROUNDS")); err == nil && v > 0 {
		rounds = v
	}
	if v, err := strconv.ParseInt(os.Getenv("CORRSTORE_PEER_N"), 10, 64); err == nil && v > 0 {
		n = v
	}
	srv := redistest.StartServer(b, redistest.ServerOptions{})
	for range b.N {
		for _, cmp := range []struct {
			name    string
			callers int
			sides   []side
		}{
			{"register", 64, []side{{"corrstore", corrstoreRegister}, {"asynq", asynqEnqueue}, {"raw", raw}}},
			{"register", 1, []side{{"corrstore", corrstoreRegister}, {"asynq", asynqEnqueue}, {"raw", raw}}},
			{"register", 512, []side{{"corrstore", corrstoreRegister}, {"asynq", asynqEnqueue}, {"raw", raw}}},
			{"life", 64, []side{{"corrstore", corrstoreLife}, {"asynq", asynqLife}}},
		} {
			rdb := srv.NewClient(b, func(o *redis.Options) { o.PoolSize = max(cmp.callers, 10) })
			count := n
			if cmp.callers == 1 {
				count = n / 10
			}
			got := map[string][]figures{}
			for r := range rounds {
				order := slices.Clone(cmp.sides)
				if r%2 == 1 {
					slices.Reverse(order)
				}
				for _, s := range order {
					got[s.name] = append(got[s.name], run(b, srv, rdb, s, count, cmp.callers))
				}
			}
			per := func(f func(figures) float64, other string) []float64 {
				out := make([]float64, rounds)
				for r := range rounds {
					out[r] = f(got["corrstore"][r]) / f(got[other][r])
				}
				return out
			}
			for _, other := range []string{"asynq", "raw"} {
				if _, ok := got[other]; !ok {
					continue
				}
				tag := fmt.Sprintf("%s-%d-vs-%s", cmp.name, cmp.callers, other)
				ratio(tag, per(func(f figures) float64 { return f.opsPerSec }, other))
				if cmp.name == "register" && cmp.callers == 64 {
					ratio("memory-vs-"+other, per(func(f figures) float64 { return f.memPerItem }, other))
					ratio("aof-vs-"+other, per(func(f figures) float64 { return f.aofPerItem }, other))
					ratio("server-cpu-vs-"+other, per(func(f figures) float64 { return f.serverCPUPerOp }, other))
				}
			}
			for _, name := range []string{"corrstore", "asynq", "raw"} {
				fs := got[name]
				if fs == nil {
					continue
				}
				ops := make([]float64, len(fs))
				for i, f := range fs {
					ops[i] = f.opsPerSec
				}
				slices.Sort(ops)
				fmt.Printf("  %s-%d %-9s %8.0f ops/s median; %6.0f B memory, %6.0f B AOF, %5.1f µs server CPU per op (round 1)\n",
					cmp.name, cmp.callers, name, ops[len(ops)/2], fs[0].memPerItem, fs[0].aofPerItem, fs[0].serverCPUPerOp)
			}
			rdb.Close()
		}
	}
}
