// Package reapertest holds tests that every store backend runs with the
// reaper, so that the reaper's promises are checked on each engine: call
// ExactlyOnceN from the backend's tests.
package reapertest

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/corrstore/corrstore/reaper"
	"github.com/corrstore/corrstore/store"
)

// Correlations is how many correlations ExactlyOnceN registers in a full run.
const Correlations = 5000

// Reapers is how many reapers ExactlyOnceN runs at once.
const Reapers = 4

// step is the time between the deadline groups, and the offset of a reply
// "just before" or "just after" its deadline.
const step = 10 * time.Millisecond

// groups is how many distinct deadlines the correlations share: few enough
// that each instant has hundreds of calls racing, and the test stays quick.
const groups = 25

// kind is what a correlation of the test is and what its replies do.
type kind int

const (
	kindSingle   kind = iota // one reply, just before, at or just after the deadline
	kindGather               // expect 2, quorum 1; reply "a" early, reply "b" around the deadline
	kindOptional             // optional, no reply: completed NoReply; then, for half, a late reply
	kindSilent               // no reply: timed_out; then, for half, a late reply
)

func kindOf(i int) kind {
	switch i % 10 {
	case 6, 7:
		return kindGather
	case 8:
		return kindOptional
	case 9:
		return kindSilent
	}
	return kindSingle
}

// when is a reply's arrival relative to the deadline.
type when int

const (
	before when = -1
	at     when = 0
	after  when = 1
)

func (w when) String() string { return [...]string{"before", "at", "after"}[w+1] }

// delivery is one planned reply.
type delivery struct {
	idx   int // correlation index
	reply store.Reply
	when  when
	again bool // sent a second time right after: must be a duplicate
}

// ExactlyOnceN checks that reapers racing each other and racing replies give
// every correlation exactly one outcome. stores are handles to the same
// backing data (for bbolt the same *bolt.Store; for Redis one client per
// replica), each made with clock as its Clock; the test does not close them.
//
// It registers Correlations correlations whose deadlines fall in 25 groups
// 10 ms apart, then moves clock through every instant where something
// happens. At each instant Reapers reapers (reaper i on stores[i%len]) run a
// pass concurrently with the replies planned for that instant: replies
// land just before, at and just after the deadlines, with a resend of some.
// Then it checks:
//   - each correlation was decided once: by one ExpireDue result, by one
//     Deliver that returned completed, or by the store when a reply at or
//     after the deadline found it due (the Deliver returned late); never
//     two of these, never twice (its timeline holds one outcome), and the
//     reapers' reports count exactly the ExpireDue results;
//   - a reply before the deadline completed the correlation, one at or
//     after it was late (the deadline is exact), and the resend was a
//     duplicate; LateCount counts the late ones;
//   - the outcome is the one the pattern calls for at the deadline
//     (timed_out, partial for a gather with its quorum, no_reply for an
//     optional one) with the deadline as its time;
//   - no outcome was overwritten: every event from Subscribe and the final
//     record carry the outcome the deciding call returned.
//
// n is the number of correlations, a multiple of 10 so that every kind is
// there: Correlations for the full run, fewer under -race, where the full
// size costs minutes.
func ExactlyOnceN(t *testing.T, stores []store.Store, clock *store.FakeClock, n int) {
	t.Helper()
	if n <= 0 || n%10 != 0 {
		t.Fatalf("reapertest.ExactlyOnceN: n = %d, want a positive multiple of 10", n)
	}
	if len(stores) == 0 {
		t.Fatal("reapertest.ExactlyOnceN: no stores")
	}
	ctx := t.Context()
	prefix := "eo-" + store.NewID() + "-"
	id := func(i int) string { return fmt.Sprintf("%s%d", prefix, i) }
	t0 := clock.Now()
	first := t0.Add(time.Second)
	deadline := func(i int) time.Time { return first.Add(time.Duration(i%groups) * step) }

	// Register, 64 at a time.
	forEach(n, 64, func(i int) {
		c := &store.Correlation{ID: id(i), Deadline: deadline(i), Labels: map[string]string{"test": "exactly-once"}}
		switch kindOf(i) {
		case kindGather:
			c.Pattern, c.Expect, c.Quorum = store.PatternGather, 2, 1
		case kindOptional:
			c.Optional = true
		}
		if _, err := stores[i%len(stores)].Register(ctx, c); err != nil {
			t.Errorf("register %s: %v", c.ID, err)
		}
	})
	if t.Failed() {
		t.FailNow()
	}

	ev := subscribe(t, stores[0])

	// The first reply of each gather comes well before its deadline.
	forEach(n, 16, func(i int) {
		if kindOf(i) != kindGather {
			return
		}
		res, err := stores[i%len(stores)].Deliver(ctx, store.RefOf(id(i)), store.Reply{ID: "a", From: "a"})
		if err != nil || res.Status != store.DeliverAccepted {
			t.Errorf("first gather reply to %s: %v, %v; want accepted", id(i), res.Status, err)
		}
	})

	// Plan the replies around the deadlines.
	plan := map[time.Time][]delivery{}
	instants := map[time.Time]bool{}
	for i := range n {
		d := deadline(i)
		instants[d] = true
		var dl delivery
		switch kindOf(i) {
		case kindSingle, kindGather:
			w := when((i/10)%3 - 1)
			dl = delivery{idx: i, when: w, reply: store.Reply{ID: "b", From: "b", Body: []byte("reply")}}
		case kindOptional, kindSilent:
			if (i/10)%2 == 1 {
				continue // no reply at all
			}
			dl = delivery{idx: i, when: after, reply: store.Reply{ID: "late", From: "late"}}
		}
		dl.again = i%13 == 0
		at := d.Add(time.Duration(dl.when) * step)
		plan[at] = append(plan[at], dl)
		instants[at] = true
	}
	times := make([]time.Time, 0, len(instants))
	for tm := range instants {
		times = append(times, tm)
	}
	slices.SortFunc(times, time.Time.Compare)

	reapers := make([]*reaper.Reaper, Reapers)
	recs := make([]*recorder, Reapers)
	for i := range reapers {
		recs[i] = &recorder{Store: stores[i%len(stores)], decided: map[string]*store.Outcome{}}
		r, err := reaper.New(recs[i], reaper.Config{
			Clock: clock,
			Batch: 32, // several batches per instant: the reapers interleave
			// Purge and early replies are not under test; skipping them
			// saves a write per reaper per instant.
			Retention:        -1,
			EarlyReplyWindow: -1,
			Logger:           slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn})),
		})
		if err != nil {
			t.Fatal(err)
		}
		reapers[i] = r
	}

	var mu sync.Mutex
	completedBy := map[string]*store.Outcome{} // Deliver that decided
	lates := map[string]int{}
	reported := reaper.Expired{}
	for _, now := range times {
		clock.Set(now)
		var wg sync.WaitGroup
		for _, r := range reapers {
			wg.Go(func() {
				rep, err := r.RunOnce(ctx)
				if err != nil {
					t.Errorf("reaper pass at %s: %v", now.Sub(t0), err)
				}
				if rep.Corrupt != 0 {
					t.Errorf("reaper pass at %s reported %d corrupt records", now.Sub(t0), rep.Corrupt)
				}
				mu.Lock()
				reported.Completed += rep.Expired.Completed
				reported.Partial += rep.Expired.Partial
				reported.NoReply += rep.Expired.NoReply
				reported.TimedOut += rep.Expired.TimedOut
				mu.Unlock()
			})
		}
		for k, dl := range plan[now] {
			st := stores[k%len(stores)]
			wg.Go(func() {
				cid := id(dl.idx)
				res, err := st.Deliver(ctx, store.RefOf(cid), dl.reply)
				if err != nil {
					t.Errorf("deliver to %s %s its deadline: %v", cid, dl.when, err)
					return
				}
				mu.Lock()
				switch res.Status {
				case store.DeliverCompleted:
					if completedBy[cid] != nil {
						t.Errorf("%s: a second Deliver returned completed", cid)
					}
					completedBy[cid] = outcomeOf(res.Correlation)
				case store.DeliverLate:
					lates[cid]++
				}
				mu.Unlock()
				checkStatus(t, cid, dl, res.Status)
				if dl.again {
					res2, err := st.Deliver(ctx, store.RefOf(cid), dl.reply)
					if err != nil || res2.Status != store.DeliverDuplicate {
						t.Errorf("resend to %s: %v, %v; want duplicate", cid, res2.Status, err)
					}
				}
			})
		}
		wg.Wait()
		if t.Failed() {
			t.FailNow()
		}
	}

	// Decided exactly once: by a reaper, by a reply that completed it, or by
	// the store as a late reply found it due (checked below, with the record).
	decided := map[string]*store.Outcome{}
	byReaper := 0
	for _, rec := range recs {
		for cid, o := range rec.decided {
			if decided[cid] != nil {
				t.Errorf("%s: decided by two ExpireDue calls", cid)
			}
			decided[cid] = o
			byReaper++
		}
		if rec.dups > 0 {
			t.Errorf("an ExpireDue call returned %d correlations twice", rec.dups)
		}
	}
	if got := reported.Total(); got != byReaper {
		t.Errorf("reaper reports count %d expired, ExpireDue returned %d", got, byReaper)
	}
	for cid, o := range completedBy {
		if decided[cid] != nil {
			t.Errorf("%s: decided by ExpireDue and by Deliver", cid)
		}
		decided[cid] = o
	}

	// Every outcome event seen, and none contradicting the decision.
	firstEvent, mismatch := ev.wait(t, prefix, n)

	counts := map[string]int{}
	settled := 0
	for i := range n {
		cid := id(i)
		c, err := stores[i%len(stores)].Get(ctx, store.RefOf(cid))
		if err != nil {
			t.Errorf("get %s: %v", cid, err)
			continue
		}
		want := decided[cid]
		if want == nil && lates[cid] > 0 && c.State.Terminal() {
			// Decided by a Deliver at or after the deadline: the reply was
			// late, the outcome the deadline's.
			want = outcomeOf(c)
			settled++
		}
		if want == nil {
			t.Errorf("%s: never decided (state %s)", cid, c.State)
			continue
		}
		if o := outcomes(c); o != 1 {
			t.Errorf("%s: %d outcomes in the timeline, want 1: decided twice", cid, o)
		}
		if !sameOutcome(c.Outcome, want) {
			t.Errorf("%s: final outcome %+v, but the deciding call returned %+v", cid, c.Outcome, want)
		}
		if e := firstEvent[cid]; e != nil && !sameOutcome(e, want) {
			t.Errorf("%s: first outcome event %+v, but the deciding call returned %+v", cid, e, want)
		}
		if c.LateCount != lates[cid] {
			t.Errorf("%s: LateCount %d, %d Deliver calls returned late", cid, c.LateCount, lates[cid])
		}
		_, byDeliver := completedBy[cid]
		checkOutcome(t, c, byDeliver)
		counts[reaper.OutcomeOf(c)]++
	}
	for cid, o := range mismatch {
		t.Errorf("%s: a later event carried another outcome: %+v", cid, o)
	}
	t.Logf("%d correlations: %d decided by %d reapers (%+v), %d by replies, %d by late replies; outcomes %v; %d late replies",
		n, byReaper, Reapers, reported, len(completedBy), settled, counts, sum(lates))
}

// checkStatus checks what a planned reply got.
func checkStatus(t *testing.T, cid string, dl delivery, got store.DeliverStatus) {
	var ok bool
	switch dl.when {
	case before:
		ok = got == store.DeliverCompleted
	case at, after:
		ok = got == store.DeliverLate
	}
	if !ok {
		t.Errorf("%s: reply %s the deadline got %s", cid, dl.when, got)
	}
}

// checkOutcome checks the outcome a correlation's pattern calls for.
func checkOutcome(t *testing.T, c *store.Correlation, byDeliver bool) {
	if byDeliver {
		if c.State != store.StateCompleted || c.Outcome.Partial || c.Outcome.NoReply {
			t.Errorf("%s: completed by a reply, outcome %+v", c.ID, c.Outcome)
		}
		return
	}
	want := reaper.OutcomeTimedOut
	switch {
	case c.Optional:
		want = reaper.OutcomeNoReply
	case c.Pattern == store.PatternGather:
		want = reaper.OutcomePartial
	}
	if got := reaper.OutcomeOf(c); got != want || c.Outcome.Reason != store.ReasonDeadline {
		t.Errorf("%s: outcome %s (%q), want %s at the deadline", c.ID, got, c.Outcome.Reason, want)
	}
	if !c.Outcome.At.Equal(c.Deadline) {
		t.Errorf("%s: decided at %s, its deadline is %s: the reapers ran at every deadline", c.ID,
			c.Outcome.At.UTC().Format(time.RFC3339Nano), c.Deadline.UTC().Format(time.RFC3339Nano))
	}
}

// outcomes counts the outcome entries of c's timeline.
func outcomes(c *store.Correlation) int {
	n := 0
	for _, e := range c.Events {
		if e.Type == store.EventOutcome {
			n++
		}
	}
	return n
}

func outcomeOf(c *store.Correlation) *store.Outcome {
	if c == nil || c.Outcome == nil {
		return nil
	}
	o := *c.Outcome
	return &o
}

func sameOutcome(a, b *store.Outcome) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.State == b.State && a.At.Equal(b.At) && a.Reason == b.Reason && a.Partial == b.Partial && a.NoReply == b.NoReply
}

func sum(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

// forEach calls f(i) for i in [0, n) on workers goroutines.
func forEach(n, workers int, f func(i int)) {
	var wg sync.WaitGroup
	next := make(chan int)
	for range workers {
		wg.Go(func() {
			for i := range next {
				f(i)
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
}

// recorder remembers what ExpireDue decided through one reaper.
type recorder struct {
	store.Store
	mu      sync.Mutex
	decided map[string]*store.Outcome
	dups    int
}

func (r *recorder) ExpireDue(ctx context.Context, now time.Time, limit int) ([]*store.Correlation, error) {
	cs, err := r.Store.ExpireDue(ctx, now, limit)
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range cs {
		if r.decided[c.ID] != nil {
			r.dups++
		}
		r.decided[c.ID] = outcomeOf(c)
	}
	return cs, err
}

// events collects outcome events from a subscription.
type events struct {
	mu       sync.Mutex
	first    map[string]*store.Outcome
	mismatch map[string]*store.Outcome
	closed   bool
	changed  chan struct{} // gets a token when something arrived
}

func subscribe(t *testing.T, st store.Store) *events {
	ctx, cancel := context.WithCancel(t.Context())
	ch, err := st.Subscribe(ctx)
	if err != nil {
		cancel()
		t.Fatalf("subscribe: %v", err)
	}
	e := &events{first: map[string]*store.Outcome{}, mismatch: map[string]*store.Outcome{}, changed: make(chan struct{}, 1)}
	done := make(chan struct{})
	t.Cleanup(func() {
		cancel()
		<-done
	})
	go func() {
		defer close(done)
		for ev := range ch {
			if ev.Outcome == nil {
				continue
			}
			e.mu.Lock()
			if f := e.first[ev.ID]; f == nil {
				e.first[ev.ID] = ev.Outcome
			} else if !sameOutcome(f, ev.Outcome) {
				e.mismatch[ev.ID] = ev.Outcome
			}
			e.mu.Unlock()
			e.signal()
		}
		e.mu.Lock()
		e.closed = ctx.Err() == nil
		e.mu.Unlock()
		e.signal()
	}()
	return e
}

func (e *events) signal() {
	select {
	case e.changed <- struct{}{}:
	default:
	}
}

// wait waits until outcome events for want IDs with prefix have come (a
// subscriber on another replica may see them after the calls returned),
// then returns the first outcome seen per ID, and the outcomes of later
// events that differed from the first.
func (e *events) wait(t *testing.T, prefix string, want int) (first, mismatch map[string]*store.Outcome) {
	t.Helper()
	timeout := time.NewTimer(30 * time.Second)
	defer timeout.Stop()
	for {
		e.mu.Lock()
		n, closed := 0, e.closed
		for id := range e.first {
			if strings.HasPrefix(id, prefix) {
				n++
			}
		}
		e.mu.Unlock()
		switch {
		case n >= want:
			e.mu.Lock()
			defer e.mu.Unlock()
			return maps.Clone(e.first), maps.Clone(e.mismatch)
		case closed:
			t.Fatalf("the subscription closed after %d of %d outcome events: the subscriber fell behind", n, want)
		}
		select {
		case <-e.changed:
		case <-timeout.C:
			t.Fatalf("%d of %d outcome events after 30s", n, want)
		}
	}
}
