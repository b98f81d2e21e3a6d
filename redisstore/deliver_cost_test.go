package redisstore_test

import (
	"fmt"
	"strconv"
	"testing"

	"github.com/corrstore/corrstore/redisstore/redistest"
	"github.com/corrstore/corrstore/store/storetest"
)

// BenchmarkDeliverCost measures one Deliver to a gather (Expect 1000) that
// holds 1, 100 or 999 replies of 1 KiB (issue 16 §4; see
// storetest.BenchDeliverCost), on the benchmarks' real redis-server. Today
// a Deliver reads the whole record (GET) and writes it back whole (a script
// with the new record as an argument), so the cost grows with what is
// stored; once replies are kept apart from the record it must stay flat.
// Besides ns/op it reports the record a Deliver reads (record-B/op), the
// bytes the server received and sent while Delivers ran (in-B/op and
// out-B/op, INFO stats total_net_input_bytes and total_net_output_bytes,
// less what the INFO calls themselves cost), and, at 100 and 999, the ratio
// of ns/op and of in-B/op to stored=1 of the same run (x-stored=1).
func BenchmarkDeliverCost(b *testing.B) {
	srv := benchServer(b)
	defer logCommandStats(b, srv)
	storetest.BenchDeliverCost(b, storetest.DeliverCost{
		Metrics: []string{"in", "out"},
		Ratio:   "in",
		Open: func(b *testing.B) storetest.CostRun {
			s := openBench(b, benchClient(b, srv, 8))
			run := benchRuns.Add(1)
			// What one netBytes call adds to the counters, taken off each batch.
			in0, out0 := netBytes(b, srv)
			in1, out1 := netBytes(b, srv)
			overIn, overOut := in1-in0, out1-out0
			return storetest.CostRun{Store: s, Prefix: fmt.Sprintf("cost%d-", run), Meter: func() func() []int64 {
				inBefore, outBefore := netBytes(b, srv)
				return func() []int64 {
					inAfter, outAfter := netBytes(b, srv)
					return []int64{inAfter - inBefore - overIn, outAfter - outBefore - overOut}
				}
			}}
		},
	})
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
