package bolt_test

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/corrstore/corrstore/bolt"
	"github.com/corrstore/corrstore/store/storetest"
)

// BenchmarkDeliverCost measures one durable Deliver to a gather (Expect
// 1000) that holds 1, 100 or 999 replies of 1 KiB (issue 16 §4; see
// storetest.BenchDeliverCost: the three sizes interleaved in one file). The
// replies and the timeline are kept apart from the record (schema 3), so a
// Deliver reads and rewrites the record and writes one reply: the cost must
// stay flat. Besides the time per Deliver it reports the bytes the process
// hands to write(2) while the Delivers run (s<N>-written-B/deliver:
// bbolt's pages and meta page, from /proc/self/io wchar) and the CPU the
// process spends (s<N>-cpu-ns/deliver, getrusage: less noisy than the wall
// time on a shared machine), and the ratios to stored=1 per round (median,
// min, max; for the CPU, s<N>-cpu-ns-x-s1).
func BenchmarkDeliverCost(b *testing.B) {
	storetest.BenchDeliverCost(b, storetest.DeliverCost{
		Metrics: []string{"written-B", "cpu-ns"},
		Ratio:   "cpu-ns",
		Open: func(b *testing.B) storetest.CostRun {
			s, err := bolt.Open(bolt.Options{Path: filepath.Join(benchDir(b), "c.db")})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { s.Close() })
			return storetest.CostRun{Store: s, Prefix: "cost-", Meter: func() func() []int64 {
				before, cpu := wchar(b), cpuNs(b)
				return func() []int64 { return []int64{wchar(b) - before, cpuNs(b) - cpu} }
			}}
		},
	})
}

// wchar is the bytes this process has passed to write syscalls.
// cpuNs is the CPU time, user and system, the process has used.
func cpuNs(b *testing.B) int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}

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
