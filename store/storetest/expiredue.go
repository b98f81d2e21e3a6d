package storetest

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/corrstore/corrstore/store"
)

func expireDueTests() []testCase {
	return []testCase{
		{name: "ExactlyOnceConcurrent", run: testExpireDueConcurrent},
		{name: "OnlyDue", run: testExpireDueOnlyDue},
		{name: "Limit", run: testExpireDueLimit},
		{name: "RacesWithDeliver", run: testExpireDueRacesWithDeliver},
		{name: "SkipsDecided", run: testExpireDueSkipsDecided},
		{name: "Events", run: testExpireDueEvents},
		{name: "InvalidLimit", run: testExpireDueInvalidLimit},
	}
}

func testExpireDueConcurrent(t *testing.T, e *env) {
	const due, notDue, callers = 1000, 30, 16
	e.registerMany(due, callers, func(i int) string { return fmt.Sprintf("ed-due-%04d", i) },
		func(i int) time.Duration { return time.Minute + time.Duration(i)*time.Millisecond })
	e.registerMany(notDue, callers, func(i int) string { return fmt.Sprintf("ed-later-%03d", i) },
		func(int) time.Duration { return time.Hour })
	e.clock.Add(2 * time.Minute)
	now := e.now()

	var (
		mu    sync.Mutex
		count = map[string]int{}
		total int
		errs  []error
		wg    sync.WaitGroup
	)
	for range callers {
		wg.Go(func() {
			for {
				got, err := e.s.ExpireDue(e.ctx, now, 37)
				mu.Lock()
				if err != nil {
					errs = append(errs, err)
				}
				for _, c := range got {
					count[c.ID]++
					total++
					if !c.State.Terminal() || c.Outcome == nil || c.Outcome.Reason != store.ReasonDeadline {
						errs = append(errs, fmt.Errorf("%s returned as %s, outcome %+v", c.ID, c.State, c.Outcome))
					}
				}
				mu.Unlock()
				if err != nil || len(got) == 0 {
					return
				}
			}
		})
	}
	wg.Wait()
	require.Empty(t, errs)
	require.Equal(t, due, total, "one outcome per correlation across all callers")
	require.Len(t, count, due)
	for i := range due {
		id := fmt.Sprintf("ed-due-%04d", i)
		require.Equal(t, 1, count[id], "%s decided %d times", id, count[id])
	}
	require.Empty(t, e.expireDue(100), "nothing is left due")

	st := e.stats("").Total()
	require.Equal(t, int64(due), st.States[store.StateTimedOut])
	require.Equal(t, int64(notDue), st.States[store.StatePending])
	for _, id := range []string{"ed-due-0000", "ed-due-0999"} {
		c := e.get(ref(id))
		require.Equal(t, store.StateTimedOut, c.State)
		require.Equal(t, 1, countEvents(c, store.EventOutcome), "%s has exactly one outcome event", id)
	}
	for _, id := range []string{"ed-later-000", fmt.Sprintf("ed-later-%03d", notDue-1)} {
		c := e.get(ref(id))
		require.Equal(t, store.StatePending, c.State)
		require.Equal(t, int64(1), c.Version)
	}
}

func countEvents(c *store.Correlation, et store.EventType) int {
	n := 0
	for _, ev := range c.Events {
		if ev.Type == et {
			n++
		}
	}
	return n
}

func testExpireDueOnlyDue(t *testing.T, e *env) {
	e.register(&store.Correlation{ID: "ed-early", Timeout: 10 * time.Second})
	e.register(&store.Correlation{ID: "ed-boundary", Timeout: 20 * time.Second})
	e.register(&store.Correlation{ID: "ed-just-after", Deadline: e.now().Add(20*time.Second + time.Nanosecond)})
	e.register(&store.Correlation{ID: "ed-hour", Timeout: time.Hour})
	untouched := map[string]*store.Correlation{"ed-just-after": e.get(ref("ed-just-after")), "ed-hour": e.get(ref("ed-hour"))}

	e.clock.Add(5 * time.Second)
	require.Empty(t, e.expireDue(10))
	e.clock.Add(15 * time.Second)
	got := e.expireDue(10)
	require.Equal(t, []string{"ed-boundary", "ed-early"}, ids(got), "deadline <= now is due")
	for _, c := range got {
		require.Equal(t, store.StateTimedOut, c.State)
		requireTime(t, e.now(), c.Outcome.At)
		require.Equal(t, store.ReasonDeadline, c.Outcome.Reason)
		stored := e.get(c.Ref())
		require.Equal(t, stored.Events[len(stored.Events)-len(c.Events):], c.Events, "the answer has the events of its step")
		require.Equal(t, store.EventOutcome, c.Events[len(c.Events)-1].Type)
		stored.Events, c.Events = nil, nil
		require.Equal(t, snap(stored), snap(c), "the returned record is the stored one")
	}
	for id, before := range untouched {
		require.Equal(t, snap(before), snap(e.get(ref(id))), "%s is not due and must be left alone", id)
	}
	e.clock.Add(time.Nanosecond)
	require.Equal(t, []string{"ed-just-after"}, ids(e.expireDue(10)))
	require.Equal(t, snap(untouched["ed-hour"]), snap(e.get(ref("ed-hour"))))

	// ExpireDue decides by the time it is given.
	got, err := e.s.ExpireDue(e.ctx, e.now().Add(time.Hour), 10)
	require.NoError(t, err)
	require.Equal(t, []string{"ed-hour"}, ids(got))
}

func testExpireDueRacesWithDeliver(t *testing.T, e *env) {
	// Replies and the reaper race for each correlation at its deadline: each
	// ends with exactly one outcome, from one of them. The store's clock
	// reads 1µs before the deadline, so a reply is in time; the reaper runs
	// with a reading at the deadline (its clock may be ahead).
	const n = 100
	e.registerMany(n, 4, func(i int) string { return fmt.Sprintf("ed-race-%03d", i) }, func(int) time.Duration { return time.Minute })
	e.clock.Add(time.Minute - time.Microsecond)
	now := e.now().Add(time.Microsecond)
	var (
		wg        sync.WaitGroup
		mu        sync.Mutex
		completed = map[string]int{}
		expired   = map[string]int{}
		errs      []error
	)
	for w := range 4 {
		wg.Go(func() {
			for i := w; i < n; i += 4 {
				id := fmt.Sprintf("ed-race-%03d", i)
				res, err := e.s.Deliver(e.ctx, ref(id), reply("r"))
				mu.Lock()
				switch {
				case err != nil:
					errs = append(errs, err)
				case res.Status == store.DeliverCompleted:
					completed[id]++
				case res.Status != store.DeliverLate:
					errs = append(errs, fmt.Errorf("%s: deliver said %s", id, res.Status))
				}
				mu.Unlock()
			}
		})
		wg.Go(func() {
			for {
				got, err := e.s.ExpireDue(e.ctx, now, 3)
				mu.Lock()
				if err != nil {
					errs = append(errs, err)
				}
				for _, c := range got {
					expired[c.ID]++
				}
				mu.Unlock()
				if err != nil || len(got) == 0 {
					return
				}
			}
		})
	}
	wg.Wait()
	require.Empty(t, errs)
	left, err := e.s.ExpireDue(e.ctx, now, n)
	require.NoError(t, err)
	require.Empty(t, left, "nothing left due")
	for i := range n {
		id := fmt.Sprintf("ed-race-%03d", i)
		require.Equal(t, 1, completed[id]+expired[id], "%s: %d completions by a reply, %d expiries", id, completed[id], expired[id])
		c := e.get(ref(id))
		require.Equal(t, 1, countEvents(c, store.EventOutcome), id)
		if completed[id] == 1 {
			require.Equal(t, store.StateCompleted, c.State)
			require.Zero(t, c.LateCount)
		} else {
			require.Equal(t, store.StateTimedOut, c.State)
			require.Equal(t, 1, c.LateCount, "the reply that lost the race is late")
		}
	}
}

func testExpireDueLimit(t *testing.T, e *env) {
	for i := range 10 {
		e.register(&store.Correlation{ID: fmt.Sprintf("ed-limit-%d", i), Timeout: time.Duration(i+1) * time.Second})
	}
	e.clock.Add(time.Minute)
	seen := map[string]bool{}
	for _, want := range []int{3, 3, 3, 1, 0} {
		got := e.expireDue(3)
		require.Len(t, got, want)
		for _, c := range got {
			require.False(t, seen[c.ID], "%s returned twice", c.ID)
			seen[c.ID] = true
		}
	}
	require.Len(t, seen, 10)
}

func testExpireDueSkipsDecided(t *testing.T, e *env) {
	e.register(single("ed-completed"))
	e.deliver(ref("ed-completed"), reply("r"), store.DeliverCompleted)
	e.register(single("ed-cancelled"))
	_, err := e.s.Cancel(e.ctx, ref("ed-cancelled"), "")
	require.NoError(t, err)
	e.register(single("ed-pending"))
	before := map[string]*store.Correlation{"ed-completed": e.get(ref("ed-completed")), "ed-cancelled": e.get(ref("ed-cancelled"))}

	e.clock.Add(time.Hour)
	require.Equal(t, []string{"ed-pending"}, ids(e.expireDue(10)))
	for id, c := range before {
		require.Equal(t, snap(c), snap(e.get(ref(id))), "%s already had its outcome", id)
	}
}

func testExpireDueEvents(t *testing.T, e *env) {
	const n = 50
	ev := e.subscribeTest()
	for i := range n {
		e.register(&store.Correlation{ID: fmt.Sprintf("ed-event-%02d", i), Timeout: time.Minute})
	}
	e.clock.Add(time.Minute)
	var decided []*store.Correlation
	for {
		got := e.expireDue(7)
		if len(got) == 0 {
			break
		}
		decided = append(decided, got...)
	}
	require.Len(t, decided, n)
	for _, c := range decided {
		x := ev.waitEvent(c.Ref(), store.StateTimedOut, c.Version)
		require.Equal(t, store.DefaultNamespace, x.Namespace)
		require.NotNil(t, x.Outcome)
		require.Equal(t, store.StateTimedOut, x.Outcome.State)
		require.Equal(t, c.Version, x.Version)
	}
}

func testExpireDueInvalidLimit(t *testing.T, e *env) {
	e.register(single("ed-invalid-limit"))
	e.clock.Add(time.Hour)
	for _, limit := range []int{0, -1} {
		_, err := e.s.ExpireDue(e.ctx, e.now(), limit)
		require.ErrorIs(t, err, store.ErrInvalid, "limit %d", limit)
	}
	require.Equal(t, store.StatePending, e.get(ref("ed-invalid-limit")).State)
}
