package bolt_test

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/corrstore/corrstore/bolt"
	"github.com/corrstore/corrstore/store/storetest"
)

// BenchmarkDeliverCost measures one durable Deliver to a gather (Expect
// 1000) that holds 1, 100 or 999 replies of 1 KiB (issue 16 §4; see
// storetest.BenchDeliverCost). Today a Deliver reads, decodes and rewrites
// the whole record, so the cost grows with what is stored; once replies are
// kept apart from the record it must stay flat. Besides ns/op it reports
// the record a Deliver reads (record-B/op), the bytes the process hands to
// write(2) while the Deliver runs (written-B/op: bbolt's pages and meta
// page, from /proc/self/io wchar), and, at 100 and 999, each figure's ratio
// to stored=1 of the same run (x-stored=1).
func BenchmarkDeliverCost(b *testing.B) {
	storetest.BenchDeliverCost(b, storetest.DeliverCost{
		Metrics: []string{"written"},
		Ratio:   "written",
		Open: func(b *testing.B) storetest.CostRun {
			s, err := bolt.Open(bolt.Options{Path: filepath.Join(benchDir(b), "c.db")})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { s.Close() })
			return storetest.CostRun{Store: s, Prefix: "cost-", Meter: func() func() []int64 {
				before := wchar(b)
				return func() []int64 { return []int64{wchar(b) - before} }
			}}
		},
	})
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
