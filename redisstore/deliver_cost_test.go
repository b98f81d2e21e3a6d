package redisstore_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/corrstore/corrstore/redisstore"
	"github.com/corrstore/corrstore/redisstore/redistest"
	"github.com/corrstore/corrstore/store"
)

// Deliver cost against what a correlation already holds (issue 16 §4): a
// gather with Expect 1000 holding `stored` replies of 1 KiB gets one more.
const (
	costExpect = 1000
	costBody   = 1 << 10
	costBatch  = 32 // correlations prepared per stop of the timer
)

var costStored = []int{1, 100, 999}

// costReply is the i-th reply of a cost correlation: a JSON string of
// exactly costBody bytes.
func costReply(i int) store.Reply {
	return store.Reply{ID: fmt.Sprintf("r-%d", i), From: "worker",
		Body: []byte(`"` + strings.Repeat("x", costBody-2) + `"`)}
}

// costCorrelation is the record a store holds after registering a gather
// and accepting stored replies, built with the store's own state machine.
func costCorrelation(id string, stored int, now time.Time) (*store.Correlation, error) {
	lim := store.Limits{}.WithDefaults()
	c, err := store.Prepare(&store.Correlation{ID: id, Pattern: store.PatternGather, Expect: costExpect,
		Timeout: time.Hour, Destination: "workers", Callback: store.Callback{Handler: "merge"}}, now, lim)
	if err != nil {
		return nil, err
	}
	for i := range stored {
		if st, err := c.ApplyReply(costReply(i), now, lim); err != nil || st != store.DeliverAccepted {
			return nil, fmt.Errorf("reply %d: %s, %v", i, st, err)
		}
	}
	return c, nil
}

// BenchmarkDeliverCost measures one Deliver to a gather (Expect 1000) that
// holds 1, 100 or 999 replies of 1 KiB (at 999 the Deliver completes it),
// on the benchmarks' real redis-server. Each op gets a fresh correlation,
// imported outside the timer. Today a Deliver reads the whole record (GET)
// and writes it back whole (a script with the new record as an argument),
// so the cost grows with what is stored; once replies are kept apart from
// the record it must stay flat. Besides ns/op it reports the record a
// Deliver reads (record-B/op), the bytes the server received and sent
// while Delivers ran (in-B/op and out-B/op, INFO stats
// total_net_input_bytes and total_net_output_bytes, less what the INFO
// calls themselves cost), and, at 100 and 999, the ratio of ns/op and of
// in-B/op to stored=1 of the same run (x-stored=1).
func BenchmarkDeliverCost(b *testing.B) {
	srv := benchServer(b)
	defer logCommandStats(b, srv)
	var base costFigures
	for _, stored := range costStored {
		b.Run(fmt.Sprintf("stored=%d", stored), func(b *testing.B) {
			got := benchDeliverCost(b, srv, stored)
			if stored == 1 {
				base = got
			} else if base.ns > 0 {
				b.ReportMetric(got.ns/base.ns, "x-stored=1")
				b.ReportMetric(got.in/base.in, "in-x-stored=1")
			}
		})
	}
}

type costFigures struct{ ns, in, out float64 }

func benchDeliverCost(b *testing.B, srv *redistest.Server, stored int) costFigures {
	s := openBench(b, benchClient(b, srv, 8))
	ctx := context.Background()
	run := benchRuns.Add(1)
	proto, err := costCorrelation("proto", stored, time.Now())
	if err != nil {
		b.Fatal(err)
	}
	rec, err := store.MarshalCorrelation(proto)
	if err != nil {
		b.Fatal(err)
	}
	want := store.DeliverAccepted
	if stored == costExpect-1 {
		want = store.DeliverCompleted
	}
	// What one netBytes call adds to the counters, taken off each batch.
	in0, out0 := netBytes(b, srv)
	in1, out1 := netBytes(b, srv)
	overIn, overOut := in1-in0, out1-out0
	var in, out int64
	for i := 0; i < b.N; {
		b.StopTimer()
		n := min(costBatch, b.N-i)
		refs := importCost(b, s, fmt.Sprintf("cost%d-", run), i, n, stored)
		inBefore, outBefore := netBytes(b, srv)
		b.StartTimer()
		for _, ref := range refs {
			r, err := s.Deliver(ctx, ref, costReply(stored))
			if err != nil || r.Status != want {
				b.Fatalf("deliver %s: %s, %v; want %s", ref, r.Status, err, want)
			}
		}
		b.StopTimer()
		inAfter, outAfter := netBytes(b, srv)
		in += inAfter - inBefore - overIn
		out += outAfter - outBefore - overOut
		i += n
	}
	perOp := func(v int64) float64 { return float64(v) / float64(b.N) }
	f := costFigures{ns: float64(b.Elapsed().Nanoseconds()) / float64(b.N), in: perOp(in), out: perOp(out)}
	b.ReportMetric(float64(len(rec)), "record-B/op")
	b.ReportMetric(f.in, "in-B/op")
	b.ReportMetric(f.out, "out-B/op")
	return f
}

// netBytes returns the server's total_net_input_bytes and
// total_net_output_bytes.
func netBytes(b *testing.B, srv *redistest.Server) (in, out int64) {
	stats := srv.Info(b, "stats")
	get := func(k string) int64 {
		v, err := strconv.ParseInt(stats[k], 10, 64)
		if err != nil {
			b.Fatalf("INFO stats %s: %q", k, stats[k])
		}
		return v
	}
	return get("total_net_input_bytes"), get("total_net_output_bytes")
}

// importCost imports n fresh cost correlations (ids prefix+first…) on 8
// goroutines.
func importCost(b *testing.B, s *redisstore.Store, prefix string, first, n, stored int) []store.Ref {
	refs := make([]store.Ref, n)
	now := time.Now()
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for j := w; j < n; j += 8 {
				c, err := costCorrelation(fmt.Sprintf("%s%d", prefix, first+j), stored, now)
				if err == nil {
					_, err = s.Import(context.Background(), c)
				}
				if err != nil {
					b.Error(err)
					return
				}
				refs[j] = c.Ref()
			}
		})
	}
	wg.Wait()
	if b.Failed() {
		b.FailNow()
	}
	return refs
}
