package redisstore_test

import (
	"fmt"
	"strconv"
	"testing"

	"github.com/corrstore/corrstore/redisstore/redistest"
	"github.com/corrstore/corrstore/store/storetest"
)

// BenchmarkDeliverCost measures one Deliver to a gather that
// holds 1, 100 or 999 replies of 1 KiB and expects one more (issue 16 §4; see
// storetest.BenchDeliverCost: the three sizes interleaved in one store), on
// the benchmarks' real redis-server. The replies and the timeline are kept
// apart from the record (schema 3), so a Deliver reads the record and the
// few reply keys its reply could repeat and writes the record and the
// reply: the cost must stay flat. Besides the time per Deliver it reports
// the bytes the server received and sent while Delivers ran
// (s<N>-in-B/deliver, s<N>-out-B/deliver: INFO stats total_net_input_bytes
// and total_net_output_bytes, less what the INFO calls themselves cost), the
// server's CPU per Deliver (s<N>-server-cpu-us/deliver, INFO cpu), and the
// ratios to stored=1 per round (median, min, max; for the server's CPU,
// s<N>-server-cpu-us-x-s1).
func BenchmarkDeliverCost(b *testing.B) {
	srv := benchServer(b)
	defer logCommandStats(b, srv)
	storetest.BenchDeliverCost(b, storetest.DeliverCost{
		Metrics: []string{"in-B", "out-B", "server-cpu-us"},
		Ratio:   "server-cpu-us",
		Open: func(b *testing.B) storetest.CostRun {
			s := openBench(b, benchClient(b, srv, 8))
			run := benchRuns.Add(1)
			// What one netBytes call adds to the counters, taken off each batch.
			in0, out0 := netBytes(b, srv)
			in1, out1 := netBytes(b, srv)
			overIn, overOut := in1-in0, out1-out0
			cpu0 := serverCPU(b, srv)
			overCPU := serverCPU(b, srv) - cpu0
			return storetest.CostRun{Store: s, Prefix: fmt.Sprintf("cost%d-", run), Meter: func() func() []int64 {
				inBefore, outBefore := netBytes(b, srv)
				cpuBefore := serverCPU(b, srv)
				return func() []int64 {
					cpuAfter := serverCPU(b, srv)
					inAfter, outAfter := netBytes(b, srv)
					return []int64{inAfter - inBefore - overIn, outAfter - outBefore - overOut, cpuAfter - cpuBefore - overCPU}
				}
			}}
		},
	})
}

// netBytes returns the server's total_net_input_bytes and
// total_net_output_bytes.
// serverCPU is the CPU time redis-server has used, in µs (INFO cpu
// used_cpu_sys + used_cpu_user, its main thread and children).
func serverCPU(b *testing.B, srv *redistest.Server) int64 {
	cpu := srv.Info(b, "cpu")
	var sum float64
	for _, k := range []string{"used_cpu_sys", "used_cpu_user"} {
		v, err := strconv.ParseFloat(cpu[k], 64)
		if err != nil {
			b.Fatalf("INFO cpu %s: %q", k, cpu[k])
		}
		sum += v
	}
	return int64(sum * 1e6)
}

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
