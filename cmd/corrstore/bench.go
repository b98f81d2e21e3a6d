package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/corrstore/corrstore/store"
)

const benchAbout = `Load generator: each worker registers a correlation and delivers the replies that
complete it (1 for single, --replies for gather and stream), as fast as it can,
for --duration. Prints lifecycles per second, store operations per second,
p50/p90/p99/max latency of register, deliver and the whole lifecycle, and the
errors. On --store bolt every register and completing reply is fsynced.

The records stay behind (completed, in --namespace; purged after the reaper's
retention): run it on a scratch store or namespace.`

// benchOut is bench -o json. The field names are stable.
type benchOut struct {
	Target        string                  `json:"target"`
	Pattern       string                  `json:"pattern"`
	Concurrency   int                     `json:"concurrency"`
	PayloadBytes  int                     `json:"payload_bytes"`
	Seconds       float64                 `json:"seconds"`
	Lifecycles    int64                   `json:"lifecycles"`
	LifecyclesSec float64                 `json:"lifecycles_per_second"`
	OpsSec        float64                 `json:"ops_per_second"`
	Latency       map[string]latencyStats `json:"latency"`
	Errors        map[string]int          `json:"errors"`
}

type latencyStats struct {
	Count int64   `json:"count"`
	P50   float64 `json:"p50_ms"`
	P90   float64 `json:"p90_ms"`
	P99   float64 `json:"p99_ms"`
	Max   float64 `json:"max_ms"`
}

func latencies(d []time.Duration) latencyStats {
	if len(d) == 0 {
		return latencyStats{}
	}
	slices.Sort(d)
	q := func(p float64) float64 {
		i := min(int(p*float64(len(d))), len(d)-1)
		return float64(d[i]) / float64(time.Millisecond)
	}
	return latencyStats{Count: int64(len(d)), P50: q(0.50), P90: q(0.90), P99: q(0.99), Max: float64(d[len(d)-1]) / float64(time.Millisecond)}
}

// benchOptions are what bench was asked.
type benchOptions struct {
	conn
	concurrency, payload, replies int
	duration                      time.Duration
	pattern, namespace            string
}

func newBenchCmd(e *env) *cobra.Command {
	var o benchOptions
	cmd := newCommand("bench [flags]", "load: register→deliver, ops/s and latency", benchAbout)
	o.conn.flags(cmd)
	fs := cmd.Flags()
	fs.IntVar(&o.concurrency, "concurrency", 16, "workers, each one lifecycle at a time")
	fs.DurationVar(&o.duration, "duration", 10*time.Second, "how long to run")
	fs.IntVar(&o.payload, "payload", 256, "reply body size in bytes (a JSON string)")
	fs.StringVar(&o.pattern, "pattern", "single", "single, gather or stream")
	fs.IntVar(&o.replies, "replies", 3, "replies per gather or stream")
	namespaceFlag(fs, &o.namespace, "bench", "namespace of the records made")
	cmd.Args = noArgs
	cmd.RunE = func(cmd *cobra.Command, _ []string) error { return runBench(cmd.Context(), e, &o) }
	return cmd
}

func (o *benchOptions) check() error {
	switch {
	case o.concurrency < 1 || o.concurrency > 4096:
		return fmt.Errorf("--concurrency: must be between 1 and 4096, got %d", o.concurrency)
	case o.duration <= 0:
		return fmt.Errorf("--duration: must be positive, got %s", o.duration)
	case o.payload < 2 || o.payload > 1<<20-1:
		return fmt.Errorf("--payload: must be between 2 and %d bytes, got %d", 1<<20-1, o.payload)
	case o.pattern != "single" && o.pattern != "gather" && o.pattern != "stream":
		return fmt.Errorf("--pattern: must be single, gather or stream, got %q", o.pattern)
	case o.replies < 1 || o.replies > 1000:
		return fmt.Errorf("--replies: must be between 1 and 1000, got %d", o.replies)
	}
	if err := store.ValidateNamespace(o.namespace); err != nil {
		return flagError(err)
	}
	return o.conn.check()
}

// runBench runs --concurrency workers for --duration and prints what they
// measured.
func runBench(ctx context.Context, e *env, o *benchOptions) error {
	if err := o.check(); err != nil {
		return err
	}
	b, err := o.open(ctx, e, false)
	if err != nil {
		return err
	}
	defer b.Close()

	start := time.Now()
	results := o.load(ctx, b)
	out := o.summarize(results, time.Since(start))
	if o.json() {
		if err := writeJSON(e.stdout, out); err != nil {
			return err
		}
	} else {
		renderBench(e, out)
	}
	if out.Lifecycles == 0 {
		return errors.New("no lifecycle completed")
	}
	return nil
}

// benchWorker is what one worker measured.
type benchWorker struct {
	reg, del, life []time.Duration
	errs           map[string]int
}

// load runs the workers. They stop starting lifecycles at --duration; one
// already begun runs to its end (under ctx, so an interrupt still stops it)
// and is counted, so a short --duration against a slow store still measures
// something instead of cancelling every operation in flight.
func (o *benchOptions) load(ctx context.Context, b storeOrServer) []benchWorker {
	body := []byte(`"` + strings.Repeat("x", o.payload-2) + `"`)
	n := 1
	if o.pattern != "single" {
		n = o.replies
	}
	var rb [4]byte
	rand.Read(rb[:])
	run := hex.EncodeToString(rb[:])
	results := make([]benchWorker, o.concurrency)
	runCtx, cancel := context.WithTimeout(ctx, o.duration)
	defer cancel()
	var wg sync.WaitGroup
	for w := range o.concurrency {
		wg.Go(func() {
			r := &results[w]
			r.errs = map[string]int{}
			fail := func(op string, err error) {
				if ctx.Err() == nil {
					r.errs[op+": "+errKind(err)]++
				}
			}
			for i := 0; runCtx.Err() == nil; i++ {
				c := &store.Correlation{ID: fmt.Sprintf("bench-%s-%d-%d", run, w, i), Namespace: o.namespace,
					Pattern: store.Pattern(o.pattern), Timeout: 5 * time.Minute, Destination: "bench"}
				if o.pattern == "gather" {
					c.Expect = n
				}
				t0 := time.Now()
				if _, err := b.Register(ctx, c); err != nil {
					fail("register", err)
					continue
				}
				r.reg = append(r.reg, time.Since(t0))
				ok := true
				for k := range n {
					rep := store.Reply{ID: fmt.Sprint("r", k), Body: body}
					switch o.pattern {
					case "gather":
						rep.From = fmt.Sprint("responder-", k)
					case "stream":
						rep.Seq, rep.Final = k, k == n-1
					}
					t2 := time.Now()
					if _, err := b.Deliver(ctx, c.Ref(), rep); err != nil {
						fail("deliver", err)
						ok = false
						break
					}
					r.del = append(r.del, time.Since(t2))
				}
				if ok {
					r.life = append(r.life, time.Since(t0))
				}
			}
		})
	}
	wg.Wait()
	return results
}

// summarize adds up what the workers measured over el.
func (o *benchOptions) summarize(results []benchWorker, el time.Duration) benchOut {
	var reg, del, life []time.Duration
	out := benchOut{
		Target: o.server + o.storeURL, Pattern: o.pattern, Concurrency: o.concurrency, PayloadBytes: o.payload,
		Seconds: el.Seconds(), Errors: map[string]int{}, Latency: map[string]latencyStats{},
	}
	for _, r := range results {
		reg, del, life = append(reg, r.reg...), append(del, r.del...), append(life, r.life...)
		for k, v := range r.errs {
			out.Errors[k] += v
		}
	}
	out.Lifecycles = int64(len(life))
	out.LifecyclesSec = float64(len(life)) / el.Seconds()
	out.OpsSec = float64(len(reg)+len(del)) / el.Seconds()
	out.Latency["register"], out.Latency["deliver"], out.Latency["lifecycle"] = latencies(reg), latencies(del), latencies(life)
	return out
}

func renderBench(e *env, out benchOut) {
	el := time.Duration(out.Seconds * float64(time.Second))
	fmt.Fprintf(e.stdout, "%s: %s, %d workers, %d-byte replies, %s\n", out.Target, out.Pattern, out.Concurrency, out.PayloadBytes, el.Round(time.Millisecond))
	fmt.Fprintf(e.stdout, "lifecycles: %d (%.0f/s), store operations %.0f/s\n", out.Lifecycles, out.LifecyclesSec, out.OpsSec)
	tw := table(e.stdout)
	fmt.Fprintln(tw, "OP\tCOUNT\tP50\tP90\tP99\tMAX")
	for _, op := range []string{"register", "deliver", "lifecycle"} {
		l := out.Latency[op]
		fmt.Fprintf(tw, "%s\t%d\t%.2fms\t%.2fms\t%.2fms\t%.2fms\n", op, l.Count, l.P50, l.P90, l.P99, l.Max)
	}
	tw.Flush()
	errs := 0
	for k, v := range out.Errors {
		fmt.Fprintf(e.stdout, "errors: %s: %d\n", printable(k), v)
		errs += v
	}
	if errs == 0 {
		fmt.Fprintln(e.stdout, "errors: 0")
	}
}

func errKind(err error) string {
	var te *timeoutError
	if errors.As(err, &te) {
		return te.Error()
	}
	for _, s := range []error{store.ErrInvalid, store.ErrTooLarge, store.ErrConflict, store.ErrNotFound, store.ErrNotPending, store.ErrClosed, context.DeadlineExceeded} {
		if errors.Is(err, s) {
			return s.Error()
		}
	}
	s := err.Error()
	if len(s) > 60 {
		s = s[:60] + "…"
	}
	return s
}
