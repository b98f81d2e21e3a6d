package client_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/corrstore/corrstore/bolt"
	"github.com/corrstore/corrstore/client"
	"github.com/corrstore/corrstore/client/memtransport"
	"github.com/corrstore/corrstore/client/redisstream"
	"github.com/corrstore/corrstore/redisstore"
	"github.com/corrstore/corrstore/redisstore/redistest"
	"github.com/corrstore/corrstore/store"
)

// BenchmarkRoundTrip measures request→reply round trips with 64
// concurrent requesters: through the client on bbolt (fsync on, the real
// thing), and, in the same run, the same round trip through the same
// transport with an in-memory map of pending requests — what a
// hand-written client or Watermill's requestreply does. The ratio is the
// price of durability.
func BenchmarkRoundTrip(b *testing.B) {
	b.Run("client+bolt", func(b *testing.B) {
		st, err := bolt.Open(bolt.Options{Path: filepath.Join(b.TempDir(), "bench.db"), Logger: quiet(), NoSync: benchNoSync})
		if err != nil {
			b.Fatal(err)
		}
		defer st.Close()
		benchClient(b, st, memtransport.New())
	})
	b.Run("baseline-inmemory", func(b *testing.B) {
		benchBaseline(b, memtransport.New())
	})
	// The same on Redis: redisstore and the redisstream transport on a
	// real redis-server (appendonly, appendfsync always, data on disk) of
	// its own, next to the in-memory map through the same transport.
	// Skipped with a message when redis-server is not installed.
	pool := func(o *redis.Options) { o.PoolSize = 4 * requesters }
	b.Run("client+redis", func(b *testing.B) {
		srv := redistest.StartServer(b, redistest.ServerOptions{})
		st, err := redisstore.New(context.Background(), srv.NewClient(b, pool), redisstore.Config{Strict: true, Logger: quiet()})
		if err != nil {
			b.Fatal(err)
		}
		defer st.Close()
		benchClient(b, st, streams(b, srv, pool))
	})
	b.Run("baseline-redisstream", func(b *testing.B) {
		srv := redistest.StartServer(b, redistest.ServerOptions{})
		benchBaseline(b, streams(b, srv, pool))
	})
}

// streams is a redisstream transport on srv.
func streams(b *testing.B, srv *redistest.Server, tweak func(*redis.Options)) client.Transport {
	tr, err := redisstream.New(srv.NewClient(b, tweak), redisstream.Config{Block: 100 * time.Millisecond})
	if err != nil {
		b.Fatal(err)
	}
	return tr
}

const requesters = 64

// parallel runs fn from 64 goroutines b.N times in all, and reports
// round trips per second and latency percentiles.
func parallel(b *testing.B, fn func(i int64) error) {
	var n atomic.Int64
	lat := make([][]time.Duration, requesters)
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for g := range requesters {
		wg.Go(func() {
			for {
				i := n.Add(1)
				if i > int64(b.N) {
					return
				}
				t := time.Now()
				if err := fn(i); err != nil {
					b.Error(err)
					return
				}
				lat[g] = append(lat[g], time.Since(t))
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	all := slices.Concat(lat...)
	slices.Sort(all)
	if len(all) == 0 {
		return
	}
	b.ReportMetric(float64(len(all))/elapsed.Seconds(), "roundtrips/s")
	b.ReportMetric(float64(all[len(all)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(all[len(all)*99/100].Microseconds())/1000, "p99-ms")
	b.ReportMetric(0, "ns/op")
}

func benchClient(b *testing.B, st store.Store, tr client.Transport) {
	c, err := client.New(client.Config{Store: st, Transport: tr, Service: "bench", Logger: quiet(), ReplyReceivers: 8})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _ = c.Run(ctx) })
	for range 4 {
		wg.Go(func() { _ = c.Serve(ctx, "echo", echo) })
	}
	defer func() { cancel(); wg.Wait() }()
	body := []byte("ping")
	parallel(b, func(int64) error {
		_, err := c.Request(ctx, "echo", body, client.Options{Timeout: time.Minute})
		return err
	})
}

// benchBaseline: pending requests in a map, replies matched in memory.
func benchBaseline(b *testing.B, tr client.Transport) {
	var mu sync.Mutex
	pending := map[string]chan client.Message{}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			_ = tr.Receive(ctx, "baseline.replies", func(_ context.Context, m client.Message) error {
				mu.Lock()
				ch := pending[m.CorrelationID]
				delete(pending, m.CorrelationID)
				mu.Unlock()
				if ch != nil {
					ch <- m
				}
				return nil
			})
		})
	}
	for range 4 {
		wg.Go(func() { _ = client.Serve(ctx, tr, "echo", echo, quiet()) })
	}
	defer func() { cancel(); wg.Wait() }()
	body := []byte("ping")
	parallel(b, func(i int64) error {
		id := fmt.Sprintf("req-%d", i)
		ch := make(chan client.Message, 1)
		mu.Lock()
		pending[id] = ch
		mu.Unlock()
		if err := tr.Send(ctx, "echo", client.Message{CorrelationID: id, ReplyTo: "baseline.replies", Body: body}); err != nil {
			return err
		}
		select {
		case <-ch:
			return nil
		case <-time.After(time.Minute):
			return fmt.Errorf("no reply to %s", id)
		}
	})
}

// benchNoSync turns fsync off (CORRSTORE_BENCH_NOSYNC=1) to tell the
// disk's share of the cost from the client's.
var benchNoSync = os.Getenv("CORRSTORE_BENCH_NOSYNC") != ""
