package bolt_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/corrstore/corrstore/bolt"
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

// BenchmarkDeliverCost measures one durable Deliver to a gather (Expect
// 1000) that holds 1, 100 or 999 replies of 1 KiB (at 999 the Deliver
// completes it). Each op gets a fresh correlation, imported outside the
// timer. Today a Deliver reads, decodes and rewrites the whole record, so
// the cost grows with what is stored; once replies are kept apart from the
// record it must stay flat. Besides ns/op it reports the record a Deliver
// reads (record-B/op), the bytes the process hands to write(2) while the
// Deliver runs (written-B/op: bbolt's pages and meta page, from
// /proc/self/io wchar), and, at 100 and 999, each figure's ratio to
// stored=1 of the same run (x-stored=1).
func BenchmarkDeliverCost(b *testing.B) {
	var base costFigures
	for _, stored := range costStored {
		b.Run(fmt.Sprintf("stored=%d", stored), func(b *testing.B) {
			got := benchDeliverCost(b, stored)
			if stored == 1 {
				base = got
			} else if base.ns > 0 {
				b.ReportMetric(got.ns/base.ns, "x-stored=1")
				b.ReportMetric(got.written/base.written, "written-x-stored=1")
			}
		})
	}
}

type costFigures struct{ ns, written float64 }

func benchDeliverCost(b *testing.B, stored int) costFigures {
	s, err := bolt.Open(bolt.Options{Path: filepath.Join(benchDir(b), "c.db")})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
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
	var written int64
	for i := 0; i < b.N; {
		b.StopTimer()
		n := min(costBatch, b.N-i)
		refs := importCost(b, s, i, n, stored)
		before := wchar(b)
		b.StartTimer()
		for _, ref := range refs {
			r, err := s.Deliver(ctx, ref, costReply(stored))
			if err != nil || r.Status != want {
				b.Fatalf("deliver %s: %s, %v; want %s", ref, r.Status, err, want)
			}
		}
		b.StopTimer()
		written += wchar(b) - before
		i += n
	}
	f := costFigures{ns: float64(b.Elapsed().Nanoseconds()) / float64(b.N), written: float64(written) / float64(b.N)}
	b.ReportMetric(float64(len(rec)), "record-B/op")
	b.ReportMetric(f.written, "written-B/op")
	return f
}

// wchar is the bytes this process has passed to write syscalls.
func wchar(b *testing.B) int64 {
	raw, err := os.ReadFile("/proc/self/io")
	if err != nil {
		b.Skipf("written bytes: %v", err)
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if v, ok := strings.CutPrefix(line, "wchar: "); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				b.Fatalf("/proc/self/io: %q", line)
			}
			return n
		}
	}
	b.Fatal("/proc/self/io: no wchar")
	return 0
}

// importCost imports n fresh cost correlations (ids from first) on 8
// goroutines, so that they share group commits.
func importCost(b *testing.B, s *bolt.Store, first, n, stored int) []store.Ref {
	refs := make([]store.Ref, n)
	now := time.Now()
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for j := w; j < n; j += 8 {
				c, err := costCorrelation(fmt.Sprintf("cost-%d", first+j), stored, now)
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
