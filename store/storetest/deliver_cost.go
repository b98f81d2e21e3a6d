package storetest

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/corrstore/corrstore/store"
)

// Deliver cost against what a correlation already holds (issue 16 §4): a
// gather holding `stored` replies of 1 KiB gets the one more it expects.
const (
	costBody  = 1 << 10
	costBatch = 32 // correlations prepared per stop of the timer
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
	// Prefix starts the IDs of the correlations imported: none may be in
	// the store already.
	Prefix string
	// Meter is called with the timer stopped before each batch of
	// Delivers; the function it returns, called with the timer stopped
	// after the batch, returns what the batch cost: one figure per name in
	// DeliverCost.Metrics, in its order.
	Meter func() (end func() []int64)
}

// DeliverCost is how a backend runs BenchDeliverCost.
type DeliverCost struct {
	// Open opens a fresh store for the benchmark; it is closed by b's
	// cleanup.
	Open func(b *testing.B) CostRun
	// Metrics name the figures of Meter, with their unit (written-B,
	// cpu-ns): each is reported per Deliver and size as s<N>-<name>/deliver.
	Metrics []string
	// Ratio is the metric whose ratio to stored=1 is reported at 100 and
	// 999, as s<N>-<Ratio>-x-s1, beside that of the time (s<N>-x-s1).
	Ratio string
}

// BenchDeliverCost measures one Deliver to a gather that holds 1, 100 or
// 999 replies of 1 KiB and expects one more (so every measured Deliver does
// the same work: it accepts the reply, decides the outcome and makes it due
// for dispatch), in one store, the three sizes interleaved: each round imports costBatch
// fresh correlations of each size (outside the timer), then delivers to
// the sizes in an order that rotates from round to round. One op is one
// Deliver to each size. Per size it reports the time of a Deliver
// (s<N>-ns/deliver) and the backend's figures (s<N>-<metric>/deliver, see
// DeliverCost), and the ratios of stored=100 and 999 to stored=1: the
// median over the rounds of each round's ratio, with its min and max
// (s<N>-x-s1, s<N>-x-s1-min, s<N>-x-s1-max; for the Ratio metric
// s<N>-<metric>-x-s1). It also reports the record a Deliver reads and
// rewrites at 999: its encoding without the replies and the timeline,
// which are stored apart (record-B).
func BenchDeliverCost(b *testing.B, cfg DeliverCost) {
	run := cfg.Open(b)
	ctx := context.Background()
	proto, err := costCorrelation("proto", costStored[len(costStored)-1], time.Now())
	if err != nil {
		b.Fatal(err)
	}
	bare := proto.Clone()
	bare.Replies, bare.Events = nil, nil
	rec, err := store.MarshalCorrelation(bare)
	if err != nil {
		b.Fatal(err)
	}
	k := len(costStored)
	ns := make([]float64, k)        // total per size
	figs := make([][]int64, k)      // total per size and metric
	ratios := make([][]float64, k)  // per round, to stored=1
	mratios := make([][]float64, k) // the Ratio metric's, per round
	for i := range figs {
		figs[i] = make([]int64, len(cfg.Metrics))
	}
	ratioAt := slices.Index(cfg.Metrics, cfg.Ratio)
	b.ResetTimer()
	for done, round := 0, 0; done < b.N; round++ {
		b.StopTimer()
		n := min(costBatch, b.N-done)
		refs := make([][]store.Ref, k)
		for j, stored := range costStored {
			refs[j] = importCost(b, run, fmt.Sprintf("s%d-r%d-", stored, round), n, stored)
		}
		roundNs := make([]float64, k)
		roundFig := make([]float64, k)
		for o := range k {
			j := (o + round) % k
			want := store.DeliverCompleted
			// The import of 999-reply correlations leaves garbage whose
			// collection would land on the next batch measured.
			runtime.GC()
			end := run.Meter()
			b.StartTimer()
			start := time.Now()
			for _, ref := range refs[j] {
				r, err := run.Store.Deliver(ctx, ref, costReply(costStored[j]))
				if err != nil || r.Status != want {
					b.Fatalf("deliver %s: %s, %v; want %s", ref, r.Status, err, want)
				}
			}
			took := time.Since(start)
			b.StopTimer()
			ns[j] += float64(took.Nanoseconds())
			roundNs[j] = float64(took.Nanoseconds()) / float64(n)
			for m, v := range end() {
				figs[j][m] += v
				if m == ratioAt {
					roundFig[j] = float64(v) / float64(n)
				}
			}
		}
		for j := 1; j < k; j++ {
			ratios[j] = append(ratios[j], roundNs[j]/roundNs[0])
			if ratioAt >= 0 && roundFig[0] > 0 {
				mratios[j] = append(mratios[j], roundFig[j]/roundFig[0])
			}
		}
		done += n
	}
	b.ReportMetric(float64(len(rec)), "record-B")
	for j, stored := range costStored {
		name := fmt.Sprintf("s%d", stored)
		b.ReportMetric(ns[j]/float64(b.N), name+"-ns/deliver")
		for m, metric := range cfg.Metrics {
			b.ReportMetric(float64(figs[j][m])/float64(b.N), name+"-"+metric+"/deliver")
		}
		if j == 0 {
			continue
		}
		med, lo, hi := medianMinMax(ratios[j])
		b.ReportMetric(med, name+"-x-s1")
		b.ReportMetric(lo, name+"-x-s1-min")
		b.ReportMetric(hi, name+"-x-s1-max")
		if len(mratios[j]) > 0 {
			med, _, _ := medianMinMax(mratios[j])
			b.ReportMetric(med, name+"-"+cfg.Ratio+"-x-s1")
		}
	}
}

func medianMinMax(v []float64) (med, lo, hi float64) {
	if len(v) == 0 {
		return 0, 0, 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2], s[0], s[len(s)-1]
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
	c, err := store.Prepare(&store.Correlation{ID: id, Pattern: store.PatternGather, Expect: stored + 1,
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

// importCost imports n fresh cost correlations (ids run.Prefix+tag+j) on
// 8 goroutines, so that a store that batches its writes can share them.
func importCost(b *testing.B, run CostRun, tag string, n, stored int) []store.Ref {
	refs := make([]store.Ref, n)
	now := time.Now()
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for j := w; j < n; j += 8 {
				c, err := costCorrelation(fmt.Sprintf("%s%s%d", run.Prefix, tag, j), stored, now)
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
