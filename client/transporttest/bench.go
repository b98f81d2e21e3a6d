package transporttest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/corrstore/corrstore/bolt"
	"github.com/corrstore/corrstore/client"
	"github.com/corrstore/corrstore/store"
)

// Requesters is how many goroutines send requests at once in the
// round-trip benchmarks.
const Requesters = 64

// parallel runs fn from 64 goroutines b.N times in all, and reports
// round trips per second and latency percentiles.
func parallel(b *testing.B, fn func(i int64) error) {
	var n atomic.Int64
	lat := make([][]time.Duration, Requesters)
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for g := range Requesters {
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

// BenchClient measures request→reply round trips through a client on st
// and tr, from Requesters goroutines, with four Serve responders: it
// reports roundtrips/s, p50-ms and p99-ms.
func BenchClient(b *testing.B, st store.Store, tr client.Transport) {
	echoAddr := fmt.Sprintf("echo-%04x", rand.N(1<<16))
	c, err := client.New(client.Config{Store: st, Transport: tr, Service: fmt.Sprintf("bench-%04x", rand.N(1<<16)), Logger: quietLogger(), ReplyReceivers: 8})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _ = c.Run(ctx) })
	for range 4 {
		wg.Go(func() { _ = c.Serve(ctx, echoAddr, echo) })
	}
	defer func() { cancel(); wg.Wait() }()
	body := []byte("ping")
	parallel(b, func(int64) error {
		_, err := c.Request(ctx, echoAddr, body, client.Options{Timeout: time.Minute})
		return err
	})
}

// BenchBaseline is BenchClient's round trip without a store: pending
// requests in a map, replies matched in memory, through the same
// transport — what a hand-written client does. The ratio of the two is
// the price of durability.
func BenchBaseline(b *testing.B, tr client.Transport) {
	echoAddr, replies := fmt.Sprintf("echo-%04x", rand.N(1<<16)), fmt.Sprintf("baseline-%04x.replies", rand.N(1<<16))
	var mu sync.Mutex
	pending := map[string]chan client.Message{}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			_ = tr.Receive(ctx, replies, func(_ context.Context, m client.Message) error {
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
		wg.Go(func() { _ = client.Serve(ctx, tr, echoAddr, echo, quietLogger()) })
	}
	defer func() { cancel(); wg.Wait() }()
	body := []byte("ping")
	parallel(b, func(i int64) error {
		id := fmt.Sprintf("req-%d", i)
		ch := make(chan client.Message, 1)
		mu.Lock()
		pending[id] = ch
		mu.Unlock()
		if err := tr.Send(ctx, echoAddr, client.Message{CorrelationID: id, ReplyTo: replies, Body: body}); err != nil {
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

func echo(_ context.Context, in client.Incoming) ([]byte, error) { return in.Body, nil }

// BenchRoundTrip runs BenchClient on a bbolt store (fsync on) and
// BenchBaseline, each on a transport from newTransport: a broker
// package's round-trip benchmark.
func BenchRoundTrip(b *testing.B, newTransport func(b *testing.B) client.Transport) {
	b.Run("client+bolt", func(b *testing.B) {
		st, err := bolt.Open(bolt.Options{Path: filepath.Join(b.TempDir(), "bench.db"), Logger: quietLogger()})
		if err != nil {
			b.Fatal(err)
		}
		defer st.Close()
		BenchClient(b, st, newTransport(b))
	})
	b.Run("baseline-inmemory", func(b *testing.B) { BenchBaseline(b, newTransport(b)) })
}
