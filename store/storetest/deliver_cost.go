package storetest

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

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

// CostStore is what BenchDeliverCost needs of a store: Import to prepare
// each op's correlation, Deliver to measure.
type CostStore interface {
	Import(ctx context.Context, c *store.Correlation) (created bool, err error)
	Deliver(ctx context.Context, ref store.Ref, r store.Reply) (store.DeliverResult, error)
}

// CostRun is the fresh store of one sub-benchmark of BenchDeliverCost.
type CostRun struct {
	Store CostStore
	// Prefix starts the IDs of the correlations imported (Prefix0,
	// Prefix1, …): none may be in the store already.
	Prefix string
	// Meter is called with the timer stopped before each batch of
	// Delivers; the function it returns, called with the timer stopped
	// after the batch, returns what the batch cost: one figure per name in
	// DeliverCost.Metrics, in its order.
	Meter func() (end func() []int64)
}

// DeliverCost is how a backend runs BenchDeliverCost.
type DeliverCost struct {
	// Open opens a fresh store for one sub-benchmark (stored=N); it is
	// closed by b's cleanup.
	Open func(b *testing.B) CostRun
	// Metrics name the figures of Meter: each is reported per op as
	// <name>-B/op.
	Metrics []string
	// Ratio is the metric whose ratio to stored=1 is reported at 100 and
	// 999, as <Ratio>-x-stored=1, beside that of ns/op (x-stored=1).
	Ratio string
}

// BenchDeliverCost measures one Deliver to a gather (Expect 1000) that
// holds 1, 100 or 999 replies of 1 KiB (at 999 the Deliver completes it),
// one sub-benchmark each. Each op gets a fresh correlation, imported
// outside the timer. Besides ns/op it reports the record a Deliver reads
// and rewrites, without the replies stored apart (record-B/op; it grows
// with the timeline until MaxEvents, 200, then stays), and the backend's figures (see DeliverCost), per op, and
// at 100 and 999 the ratios to stored=1 of the same run.
func BenchDeliverCost(b *testing.B, cfg DeliverCost) {
	var base costFigures
	for _, stored := range costStored {
		b.Run(fmt.Sprintf("stored=%d", stored), func(b *testing.B) {
			got := benchDeliverCost(b, cfg, stored)
			if stored == 1 {
				base = got
			} else if base.ns > 0 {
				b.ReportMetric(got.ns/base.ns, "x-stored=1")
				b.ReportMetric(got.perOp[cfg.Ratio]/base.perOp[cfg.Ratio], cfg.Ratio+"-x-stored=1")
			}
		})
	}
}

type costFigures struct {
	ns    float64
	perOp map[string]float64 // by metric
}

func benchDeliverCost(b *testing.B, cfg DeliverCost, stored int) costFigures {
	run := cfg.Open(b)
	ctx := context.Background()
	proto, err := costCorrelation("proto", stored, time.Now())
	if err != nil {
		b.Fatal(err)
	}
	// What a Deliver reads and rewrites: the record without the replies
	// stored apart (Held counts them; the timeline, MaxEvents long, stays).
	bare := proto.Clone()
	bare.Replies = nil
	rec, err := store.MarshalCorrelation(bare)
	if err != nil {
		b.Fatal(err)
	}
	want := store.DeliverAccepted
	if stored == costExpect-1 {
		want = store.DeliverCompleted
	}
	total := make([]int64, len(cfg.Metrics))
	for i := 0; i < b.N; {
		b.StopTimer()
		n := min(costBatch, b.N-i)
		refs := importCost(b, run, i, n, stored)
		end := run.Meter()
		b.StartTimer()
		for _, ref := range refs {
			r, err := run.Store.Deliver(ctx, ref, costReply(stored))
			if err != nil || r.Status != want {
				b.Fatalf("deliver %s: %s, %v; want %s", ref, r.Status, err, want)
			}
		}
		b.StopTimer()
		for m, v := range end() {
			total[m] += v
		}
		i += n
	}
	f := costFigures{ns: float64(b.Elapsed().Nanoseconds()) / float64(b.N), perOp: map[string]float64{}}
	b.ReportMetric(float64(len(rec)), "record-B/op")
	for m, name := range cfg.Metrics {
		f.perOp[name] = float64(total[m]) / float64(b.N)
		b.ReportMetric(f.perOp[name], name+"-B/op")
	}
	return f
}

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

// importCost imports n fresh cost correlations (ids run.Prefix+first…) on
// 8 goroutines, so that a store that batches its writes can share them.
func importCost(b *testing.B, run CostRun, first, n, stored int) []store.Ref {
	refs := make([]store.Ref, n)
	now := time.Now()
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for j := w; j < n; j += 8 {
				c, err := costCorrelation(fmt.Sprintf("%s%d", run.Prefix, first+j), stored, now)
				if err == nil {
					_, err = run.Store.Import(context.Background(), c)
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
