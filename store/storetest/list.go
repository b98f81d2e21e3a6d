package storetest

import (
	"encoding/base64"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/corrstore/corrstore/store"
)

func listTests() []testCase {
	return []testCase{
		{name: "Filters", run: testListFilters},
		{name: "Order", run: testListOrder},
		{name: "Pagination", run: testListPagination},
		{name: "PaginationConcurrentInserts", run: testListPaginationConcurrent},
		{name: "InvalidFilter", run: testListInvalidFilter},
		{name: "Stats", run: testStats},
		{name: "StatsBytes", limits: store.Limits{MaxLate: 2}, run: testStatsBytes},
		{name: "Purge", run: testPurge},
		{name: "PurgeLimit", run: testPurgeLimit},
		{name: "DropEarlyReplies", run: testDropEarlyReplies},
	}
}

// listFixture registers five correlations, one second apart, in every
// state and dispatch state:
//
//	id    ns       owner dest handler labels          deadline     state      dispatch
//	la-1  alpha    o1    d1   h1      wf=1 step=a     t0+1m        pending    none
//	la-2  alpha    o2    d1   -       wf=1            t0+1s+10m    completed  none
//	la-3  beta     o1    d2   h1      wf=2            t0+2s+5m     completed  pending
//	la-4  beta     o3    d2   h2      -               t0+3s+2m     cancelled  done
//	la-5  default  -     d3   h2      step=a          t0+4s+30m    timed_out  dead
func (e *env) listFixture() time.Time {
	e.t.Helper()
	t0 := e.now()
	cb := func(h string) store.Callback { return store.Callback{Handler: h} }
	e.register(&store.Correlation{ID: "la-1", Namespace: "alpha", Owner: "o1", Destination: "d1", Callback: cb("h1"),
		Labels: map[string]string{"wf": "1", "step": "a"}, Timeout: time.Minute})
	e.clock.Add(time.Second)
	e.register(&store.Correlation{ID: "la-2", Namespace: "alpha", Owner: "o2", Destination: "d1",
		Labels: map[string]string{"wf": "1"}, Timeout: 10 * time.Minute})
	e.clock.Add(time.Second)
	e.register(&store.Correlation{ID: "la-3", Namespace: "beta", Owner: "o1", Destination: "d2", Callback: cb("h1"),
		Labels: map[string]string{"wf": "2"}, Timeout: 5 * time.Minute})
	e.clock.Add(time.Second)
	e.register(&store.Correlation{ID: "la-4", Namespace: "beta", Owner: "o3", Destination: "d2", Callback: cb("h2"),
		Timeout: 2 * time.Minute})
	e.clock.Add(time.Second)
	e.register(&store.Correlation{ID: "la-5", Destination: "d3", Callback: cb("h2"),
		Labels: map[string]string{"step": "a"}, Timeout: 30 * time.Minute})

	e.deliver(nsRef("alpha", "la-2"), reply("r"), store.DeliverCompleted)
	e.deliver(nsRef("beta", "la-3"), reply("r"), store.DeliverCompleted)
	_, err := e.s.Cancel(e.ctx, nsRef("beta", "la-4"), "")
	require.NoError(e.t, err)
	_, err = e.s.Expire(e.ctx, ref("la-5"), "")
	require.NoError(e.t, err)
	for _, c := range e.claim("inst", time.Minute, 10) {
		var err error
		switch c.ID {
		case "la-4":
			_, err = e.s.AckDispatch(e.ctx, c.Ref(), c.Dispatch.Claim())
		case "la-5":
			_, err = e.s.NackDispatch(e.ctx, c.Ref(), c.Dispatch.Claim(), "gave up", time.Time{})
		case "la-3":
			_, err = e.s.NackDispatch(e.ctx, c.Ref(), c.Dispatch.Claim(), "retry", e.now().Add(time.Minute))
		}
		require.NoError(e.t, err)
	}
	return t0
}

func testListFilters(t *testing.T, e *env) {
	t0 := e.listFixture()
	cases := []struct {
		name string
		f    store.Filter
		want []string
	}{
		{"all", store.Filter{}, []string{"la-1", "la-2", "la-3", "la-4", "la-5"}},
		{"namespace alpha", store.Filter{Namespace: "alpha"}, []string{"la-1", "la-2"}},
		{"namespace beta", store.Filter{Namespace: "beta"}, []string{"la-3", "la-4"}},
		{"namespace default", store.Filter{Namespace: "default"}, []string{"la-5"}},
		{"namespace empty", store.Filter{Namespace: "gamma"}, nil},
		{"state pending", store.Filter{State: store.StatePending}, []string{"la-1"}},
		{"state completed", store.Filter{State: store.StateCompleted}, []string{"la-2", "la-3"}},
		{"state cancelled", store.Filter{State: store.StateCancelled}, []string{"la-4"}},
		{"state timed_out", store.Filter{State: store.StateTimedOut}, []string{"la-5"}},
		{"owner", store.Filter{Owner: "o1"}, []string{"la-1", "la-3"}},
		{"owner none", store.Filter{Owner: "o9"}, nil},
		{"destination", store.Filter{Destination: "d2"}, []string{"la-3", "la-4"}},
		{"handler h1", store.Filter{Handler: "h1"}, []string{"la-1", "la-3"}},
		{"handler h2", store.Filter{Handler: "h2"}, []string{"la-4", "la-5"}},
		{"label", store.Filter{Labels: map[string]string{"wf": "1"}}, []string{"la-1", "la-2"}},
		{"labels all", store.Filter{Labels: map[string]string{"wf": "1", "step": "a"}}, []string{"la-1"}},
		{"label step", store.Filter{Labels: map[string]string{"step": "a"}}, []string{"la-1", "la-5"}},
		{"label value differs", store.Filter{Labels: map[string]string{"wf": "3"}}, nil},
		{"created after (inclusive)", store.Filter{CreatedAfter: t0.Add(2 * time.Second)}, []string{"la-3", "la-4", "la-5"}},
		{"created before (exclusive)", store.Filter{CreatedBefore: t0.Add(2 * time.Second)}, []string{"la-1", "la-2"}},
		{"created between", store.Filter{CreatedAfter: t0.Add(time.Second), CreatedBefore: t0.Add(3 * time.Second)}, []string{"la-2", "la-3"}},
		{"deadline before (exclusive)", store.Filter{DeadlineBefore: t0.Add(3*time.Second + 2*time.Minute)}, []string{"la-1"}},
		{"deadline before", store.Filter{DeadlineBefore: t0.Add(3 * time.Minute)}, []string{"la-1", "la-4"}},
		{"deadline after (inclusive)", store.Filter{DeadlineAfter: t0.Add(2*time.Second + 5*time.Minute)}, []string{"la-2", "la-3", "la-5"}},
		{"dispatch none", store.Filter{Dispatch: store.DispatchNone}, []string{"la-1", "la-2"}},
		{"dispatch pending", store.Filter{Dispatch: store.DispatchPending}, []string{"la-3"}},
		{"dispatch done", store.Filter{Dispatch: store.DispatchDone}, []string{"la-4"}},
		{"dispatch dead", store.Filter{Dispatch: store.DispatchDead}, []string{"la-5"}},
		{"namespace and dispatch", store.Filter{Namespace: "beta", Dispatch: store.DispatchDone}, []string{"la-4"}},
		{"state and owner", store.Filter{State: store.StateCompleted, Owner: "o1"}, []string{"la-3"}},
		{"label and handler", store.Filter{Labels: map[string]string{"step": "a"}, Handler: "h2"}, []string{"la-5"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := e.in(t)
			got := e.listAll(tc.f)
			require.Equal(t, sorted(tc.want...), ids(got))
			// Page by page, too.
			f := tc.f
			f.Limit = 1
			require.Equal(t, sorted(tc.want...), ids(e.listAll(f)))
		})
	}
	// The items are full records, without their replies and timeline unless asked.
	page, err := e.s.List(e.ctx, store.Filter{Namespace: "beta", State: store.StateCompleted})
	require.NoError(t, err)
	require.Len(t, page.Items, 1)
	full := e.get(nsRef("beta", "la-3"))
	require.NotEmpty(t, full.Replies)
	bare := snap(full)
	bare.Replies, bare.Events = nil, nil
	require.Equal(t, bare, snap(page.Items[0]))
	require.Equal(t, full.Held, page.Items[0].Held)
	require.Equal(t, "d2", page.Items[0].Destination)
	require.Empty(t, page.NextCursor)
	page, err = e.s.List(e.ctx, store.Filter{Namespace: "beta", State: store.StateCompleted, Full: true})
	require.NoError(t, err)
	require.Len(t, page.Items, 1)
	require.Equal(t, snap(full), snap(page.Items[0]), "Filter.Full: items as Get returns them")
}

func testListOrder(t *testing.T, e *env) {
	e.listFixture()
	page, err := e.s.List(e.ctx, store.Filter{})
	require.NoError(t, err)
	require.Equal(t, []string{"la-5", "la-4", "la-3", "la-2", "la-1"}, idsInOrder(page.Items), "newest first by default")
	page, err = e.s.List(e.ctx, store.Filter{Order: store.NewestFirst})
	require.NoError(t, err)
	require.Equal(t, []string{"la-5", "la-4", "la-3", "la-2", "la-1"}, idsInOrder(page.Items))
	page, err = e.s.List(e.ctx, store.Filter{Order: store.OldestFirst})
	require.NoError(t, err)
	require.Equal(t, []string{"la-1", "la-2", "la-3", "la-4", "la-5"}, idsInOrder(page.Items))
	page, err = e.s.List(e.ctx, store.Filter{Order: store.OldestFirst, Namespace: "beta", Limit: 1})
	require.NoError(t, err)
	require.Equal(t, []string{"la-3"}, idsInOrder(page.Items))
	require.NotEmpty(t, page.NextCursor)
}

// requireCreationOrder requires items in creation order (ties in any order).
func requireCreationOrder(t *testing.T, order store.Order, items []*store.Correlation) {
	t.Helper()
	for i := 1; i < len(items); i++ {
		c := items[i-1].CreatedAt.Compare(items[i].CreatedAt)
		if order == store.NewestFirst {
			c = -c
		}
		require.LessOrEqual(t, c, 0, "%s (%s) listed before %s (%s) in %s order", items[i-1].ID, items[i-1].CreatedAt, items[i].ID, items[i].CreatedAt, order)
	}
}

func testListPagination(t *testing.T, e *env) {
	const n = 25
	var all []string
	for i := range n {
		if i%3 == 0 {
			e.clock.Add(time.Millisecond) // groups of three share a creation time
		}
		id := fmt.Sprintf("lp-%02d-%c", (i*7)%n, 'a'+i%3)
		e.register(single(id))
		all = append(all, id)
	}
	for _, order := range []store.Order{store.NewestFirst, store.OldestFirst} {
		whole, err := e.s.List(e.ctx, store.Filter{Order: order, Limit: store.MaxListLimit})
		require.NoError(t, err)
		require.Empty(t, whole.NextCursor)
		require.Equal(t, sorted(all...), ids(whole.Items))
		requireCreationOrder(t, order, whole.Items)
		for _, size := range []int{1, 2, 7, n - 1, n, n + 1} {
			t.Run(fmt.Sprintf("%s/%d", order, size), func(t *testing.T) {
				f := store.Filter{Order: order, Limit: size}
				var got []*store.Correlation
				pages := 0
				for {
					p, err := e.s.List(e.ctx, f)
					require.NoError(t, err)
					require.LessOrEqual(t, len(p.Items), size)
					pages++
					got = append(got, p.Items...)
					if p.NextCursor == "" {
						break
					}
					require.Len(t, p.Items, size, "only the last page may be short")
					f.Cursor = p.NextCursor
				}
				require.Equal(t, idsInOrder(whole.Items), idsInOrder(got), "pages concatenate to the whole list")
				require.LessOrEqual(t, pages, n/size+1)
			})
		}
	}
	// The default limit is 100.
	e.registerMany(110, 8, func(i int) string { return fmt.Sprintf("lp-more-%03d", i) }, func(int) time.Duration { return time.Minute })
	p, err := e.s.List(e.ctx, store.Filter{})
	require.NoError(t, err)
	require.Len(t, p.Items, store.DefaultListLimit)
	require.NotEmpty(t, p.NextCursor)
}

func testListPaginationConcurrent(t *testing.T, e *env) {
	const existing = 120
	before := map[string]bool{}
	for i := range existing {
		if i%4 == 0 {
			e.clock.Add(time.Millisecond)
		}
		id := fmt.Sprintf("lc-%03d-old", (i*37)%existing) // inserted out of ID order
		e.register(single(id))
		before[id] = true
	}

	for _, order := range []store.Order{store.NewestFirst, store.OldestFirst} {
		t.Run(string(order), func(t *testing.T) {
			e := e.in(t)
			stop := make(chan struct{})
			var wg sync.WaitGroup
			var insertErr error
			stopInserts := sync.OnceFunc(func() {
				close(stop)
				wg.Wait()
			})
			defer stopInserts()
			wg.Go(func() {
				// Bounded, so that an oldest-first pager catches up.
				for i := range 60 {
					select {
					case <-stop:
						return
					default:
					}
					if i%5 == 0 {
						e.clock.Add(time.Microsecond)
					}
					if _, err := e.s.Register(e.ctx, single(fmt.Sprintf("lc-%s-bg-%05d", order, i))); err != nil {
						insertErr = err
						return
					}
					// Change existing records too: paging is by creation, not by update.
					id := fmt.Sprintf("lc-%03d-old", i)
					if _, err := e.s.Deliver(e.ctx, ref(id), reply(fmt.Sprintf("%s-%d", order, i))); err != nil {
						insertErr = err
						return
					}
				}
			})
			seen := map[string]int{}
			f := store.Filter{Order: order, Limit: 7}
			var got []*store.Correlation
			for page := 0; ; page++ {
				p, err := e.s.List(e.ctx, f)
				require.NoError(t, err)
				got = append(got, p.Items...)
				for _, c := range p.Items {
					seen[c.ID]++
				}
				// Inserts between pages, at the current time and with IDs that
				// sort among the existing ones.
				for j := range 2 {
					e.register(single(fmt.Sprintf("lc-%03d-%s-%d-%d", (page*11)%existing, order, page, j)))
				}
				if p.NextCursor == "" {
					break
				}
				f.Cursor = p.NextCursor
			}
			stopInserts()
			require.NoError(t, insertErr)
			for id := range before {
				require.Equal(t, 1, seen[id], "%s listed %d times", id, seen[id])
			}
			for id, n := range seen {
				require.Equal(t, 1, n, "%s listed %d times", id, n)
			}
			requireCreationOrder(t, order, got)
		})
	}
}

func testListInvalidFilter(t *testing.T, e *env) {
	e.register(single("li-1"))
	for name, f := range map[string]store.Filter{
		"state":            {State: "done"},
		"dispatch":         {Dispatch: "gone"},
		"order":            {Order: "random"},
		"negative limit":   {Limit: -1},
		"limit too large":  {Limit: store.MaxListLimit + 1},
		"cursor garbage":   {Cursor: "!!!not-a-cursor"},
		"cursor too short": {Cursor: base64.RawURLEncoding.EncodeToString([]byte{1, 2, 3})},
		"cursor bad id":    {Cursor: base64.RawURLEncoding.EncodeToString(append(make([]byte, 8), "default/bad id"...))},
		"cursor no ref":    {Cursor: base64.RawURLEncoding.EncodeToString(append(make([]byte, 8), "li-1"...))},
		"namespace":        {Namespace: "Not Valid"},
	} {
		_, err := e.s.List(e.ctx, f)
		require.ErrorIs(t, err, store.ErrInvalid, name)
		var fe *store.FieldError
		require.ErrorAs(t, err, &fe, name)
	}
	p, err := e.s.List(e.ctx, store.Filter{Limit: store.MaxListLimit})
	require.NoError(t, err)
	require.Len(t, p.Items, 1)
}

func testStats(t *testing.T, e *env) {
	t0 := e.now()
	e.register(&store.Correlation{ID: "st-a1", Namespace: "alpha", Timeout: time.Hour})
	e.clock.Add(time.Minute)
	e.register(&store.Correlation{ID: "st-a2", Namespace: "alpha", Timeout: time.Hour})
	e.register(&store.Correlation{ID: "st-a3", Namespace: "alpha", Callback: store.Callback{Handler: "h"}, Timeout: time.Hour})
	e.register(&store.Correlation{ID: "st-a4", Namespace: "alpha", Timeout: time.Minute})
	e.clock.Add(30 * time.Second)
	e.register(&store.Correlation{ID: "st-b1", Namespace: "beta", Callback: store.Callback{Handler: "h"}, Timeout: time.Hour})
	e.register(&store.Correlation{ID: "st-b2", Namespace: "beta", Timeout: time.Hour})
	e.deliver(nsRef("alpha", "st-a3"), reply("r"), store.DeliverCompleted)
	_, err := e.s.Cancel(e.ctx, nsRef("beta", "st-b1"), "")
	require.NoError(t, err)
	e.clock.Add(time.Minute)
	require.Equal(t, []string{"st-a4"}, ids(e.expireDue(10)))
	claimed := e.claim("inst", time.Minute, 10)
	for _, c := range claimed {
		if c.ID == "st-b1" {
			_, err := e.s.AckDispatch(e.ctx, c.Ref(), c.Dispatch.Claim())
			require.NoError(t, err)
		}
	}
	e.deliver(ref("st-early-1"), reply("r"), store.DeliverBuffered)
	e.deliver(ref("st-early-2"), reply("r"), store.DeliverBuffered)

	st := e.stats("")
	require.Equal(t, int64(2), st.EarlyReplies)
	require.ElementsMatch(t, []string{"alpha", "beta"}, slices.Collect(maps.Keys(st.Namespaces)))
	alpha, beta := st.Namespaces["alpha"], st.Namespaces["beta"]
	require.Equal(t, int64(2), alpha.States[store.StatePending])
	require.Equal(t, int64(1), alpha.States[store.StateCompleted])
	require.Equal(t, int64(1), alpha.States[store.StateTimedOut])
	require.Zero(t, alpha.States[store.StateCancelled])
	require.Equal(t, int64(1), alpha.Dispatch[store.DispatchPending])
	require.Zero(t, alpha.Dispatch[store.DispatchNone], "none is not counted")
	requireTime(t, t0, alpha.OldestPending)
	require.Equal(t, int64(1), beta.States[store.StatePending])
	require.Equal(t, int64(1), beta.States[store.StateCancelled])
	require.Equal(t, int64(1), beta.Dispatch[store.DispatchDone])
	require.Zero(t, beta.Dispatch[store.DispatchPending])
	requireTime(t, t0.Add(90*time.Second), beta.OldestPending)

	total := st.Total()
	require.Equal(t, int64(3), total.States[store.StatePending])
	requireTime(t, t0, total.OldestPending)

	only := e.stats("alpha")
	require.Equal(t, []string{"alpha"}, slices.Collect(maps.Keys(only.Namespaces)), "only the namespace asked for")
	require.Equal(t, alpha.States, only.Namespaces["alpha"].States)
	require.Equal(t, int64(2), only.EarlyReplies, "early replies are counted for the whole store")

	// The oldest pending moves on when it is decided.
	_, err = e.s.Cancel(e.ctx, nsRef("alpha", "st-a1"), "")
	require.NoError(t, err)
	alpha = e.stats("alpha").Namespaces["alpha"]
	requireTime(t, t0.Add(time.Minute), alpha.OldestPending)
	require.Equal(t, int64(1), alpha.States[store.StatePending])
	require.Equal(t, int64(1), alpha.States[store.StateCancelled])

	_, err = e.s.Cancel(e.ctx, nsRef("alpha", "st-a2"), "")
	require.NoError(t, err)
	require.True(t, e.stats("alpha").Namespaces["alpha"].OldestPending.IsZero(), "zero when none is pending")

	empty := e.stats("gamma")
	require.Zero(t, empty.Namespaces["gamma"].States[store.StatePending])
	require.NotContains(t, empty.Namespaces, "alpha")
}

// testStatsBytes: NamespaceStats.Bytes is the sum of StoredBytes (reply
// bodies, the late reply bodies kept, callback data) of the namespace's
// records, kept up by every write and taken back by Purge. Limits: MaxLate 2.
func testStatsBytes(t *testing.T, e *env) {
	bytesOf := func(ns string) int64 {
		t.Helper()
		return e.stats(ns).Namespaces[ns].Bytes
	}
	body := func(n int) []byte { return []byte(strings.Repeat("x", n)) }
	e.register(&store.Correlation{ID: "sb-g", Namespace: "alpha", Pattern: store.PatternGather, Expect: 2, Timeout: time.Hour})
	e.register(&store.Correlation{ID: "sb-h", Namespace: "alpha", Timeout: time.Hour,
		Callback: store.Callback{Handler: "h", Data: body(10)}})
	e.register(&store.Correlation{ID: "sb-b", Namespace: "beta", Timeout: time.Hour})
	require.Equal(t, int64(10), bytesOf("alpha"), "callback data counts from registration")
	require.Zero(t, bytesOf("beta"))

	e.deliver(nsRef("alpha", "sb-g"), store.Reply{ID: "1", Body: body(100)}, store.DeliverAccepted)
	require.Equal(t, int64(110), bytesOf("alpha"))
	e.deliver(nsRef("alpha", "sb-g"), store.Reply{ID: "1", Body: body(100)}, store.DeliverDuplicate)
	require.Equal(t, int64(110), bytesOf("alpha"), "a duplicate adds nothing")
	e.deliver(nsRef("alpha", "sb-g"), store.Reply{ID: "2", Body: body(1000)}, store.DeliverCompleted)
	require.Equal(t, int64(1110), bytesOf("alpha"))
	require.Zero(t, bytesOf("beta"), "per namespace")

	// Late replies count while kept: MaxLate 2 keeps the last two.
	e.deliver(nsRef("alpha", "sb-g"), store.Reply{ID: "3", Body: body(7)}, store.DeliverLate)
	e.deliver(nsRef("alpha", "sb-g"), store.Reply{ID: "4", Body: body(20)}, store.DeliverLate)
	require.Equal(t, int64(1137), bytesOf("alpha"))
	e.deliver(nsRef("alpha", "sb-g"), store.Reply{ID: "5", Body: body(30)}, store.DeliverLate)
	require.Equal(t, int64(1160), bytesOf("alpha"), "the late reply dropped is no longer counted")

	// A buffered early reply counts once registered, in its namespace.
	e.deliver(nsRef("beta", "sb-e"), store.Reply{ID: "e", Body: body(40)}, store.DeliverBuffered)
	require.Zero(t, bytesOf("beta"), "an early reply is not a namespace's until registered")
	res, err := e.s.Register(e.ctx, &store.Correlation{ID: "sb-e", Namespace: "beta", Timeout: time.Hour})
	require.NoError(t, err)
	require.Equal(t, 1, res.EarlyApplied)
	e.deliver(nsRef("beta", "sb-b"), store.Reply{Error: "failed"}, store.DeliverCompleted)
	require.Equal(t, int64(40), bytesOf("beta"), "an error without a body adds nothing")

	st := e.stats("")
	require.Equal(t, int64(1160), st.Namespaces["alpha"].Bytes)
	require.Equal(t, int64(40), st.Namespaces["beta"].Bytes)
	require.Equal(t, int64(1200), st.Total().Bytes)
	require.Equal(t, []string{"alpha"}, slices.Collect(maps.Keys(e.stats("alpha").Namespaces)))

	// Purge takes the bytes back once every record is gone.
	_, err = e.s.Cancel(e.ctx, nsRef("alpha", "sb-h"), "")
	require.NoError(t, err)
	for _, c := range e.claim("inst", time.Minute, 10) {
		_, err := e.s.AckDispatch(e.ctx, c.Ref(), c.Dispatch.Claim())
		require.NoError(t, err)
	}
	require.Equal(t, int64(1160), bytesOf("alpha"), "deciding a correlation keeps its bytes")
	e.clock.Add(time.Second)
	n, err := e.s.Purge(e.ctx, e.now(), 100)
	require.NoError(t, err)
	require.Equal(t, 4, n)
	require.Zero(t, bytesOf("alpha"))
	require.Zero(t, bytesOf("beta"))
	require.Zero(t, e.stats("").Total().Bytes)
}

func testPurge(t *testing.T, e *env) {
	t0 := e.now()
	e.register(single("pg-pending"))
	e.register(withHandler("pg-dispatch-pending"))
	e.register(withHandler("pg-dispatch-done"))
	e.register(withHandler("pg-dispatch-dead"))
	e.register(single("pg-completed"))
	e.register(single("pg-cancelled"))
	e.register(&store.Correlation{ID: "pg-timed-out", Timeout: time.Second})
	e.register(&store.Correlation{ID: "pg-keyed", IdempotencyKey: "purge-key", Timeout: time.Minute})
	e.register(&store.Correlation{ID: "pg-boundary", Timeout: 3 * time.Hour})
	e.register(&store.Correlation{ID: "pg-recent", Timeout: 3 * time.Hour})
	for _, id := range []string{"pg-dispatch-pending", "pg-dispatch-done", "pg-dispatch-dead", "pg-completed", "pg-keyed"} {
		e.deliver(ref(id), reply("r"), store.DeliverCompleted)
	}
	_, err := e.s.Cancel(e.ctx, ref("pg-cancelled"), "")
	require.NoError(t, err)
	e.clock.Add(time.Second)
	require.Equal(t, []string{"pg-timed-out"}, ids(e.expireDue(10)))
	for _, c := range e.claim("inst", time.Minute, 10) {
		switch c.ID {
		case "pg-dispatch-done":
			_, err = e.s.AckDispatch(e.ctx, c.Ref(), c.Dispatch.Claim())
		case "pg-dispatch-dead":
			_, err = e.s.NackDispatch(e.ctx, c.Ref(), c.Dispatch.Claim(), "gave up", time.Time{})
		default:
			_, err = e.s.NackDispatch(e.ctx, c.Ref(), c.Dispatch.Claim(), "retry", e.now().Add(time.Hour))
		}
		require.NoError(t, err)
	}
	e.clock.Set(t0.Add(time.Hour))
	e.deliver(ref("pg-boundary"), reply("r"), store.DeliverCompleted)
	e.clock.Set(t0.Add(2 * time.Hour))
	e.deliver(ref("pg-recent"), reply("r"), store.DeliverCompleted)
	e.clock.Add(7 * 24 * time.Hour)

	n, err := e.s.Purge(e.ctx, t0.Add(time.Hour), 100)
	require.NoError(t, err)
	purged := []string{"pg-dispatch-done", "pg-completed", "pg-cancelled", "pg-timed-out", "pg-keyed"}
	require.Equal(t, len(purged), n)
	for _, id := range purged {
		e.requireGone(ref(id))
	}
	for _, id := range []string{"pg-pending", "pg-dispatch-pending", "pg-dispatch-dead", "pg-boundary", "pg-recent"} {
		e.get(ref(id))
	}
	require.NotContains(t, ids(e.listAll(store.Filter{})), "pg-completed")
	total := e.stats("").Total()
	require.Equal(t, int64(4), total.States[store.StateCompleted], "stats no longer count the purged records")
	require.Zero(t, total.States[store.StateCancelled])
	require.Zero(t, total.States[store.StateTimedOut])
	require.Equal(t, int64(1), total.States[store.StatePending])

	n, err = e.s.Purge(e.ctx, t0.Add(time.Hour), 100)
	require.NoError(t, err)
	require.Zero(t, n, "a second purge finds nothing")

	n, err = e.s.Purge(e.ctx, e.now().Add(time.Hour), 100)
	require.NoError(t, err)
	require.Equal(t, 2, n, "pg-boundary and pg-recent")
	require.ElementsMatch(t, []string{"pg-pending", "pg-dispatch-pending", "pg-dispatch-dead"}, ids(e.listAll(store.Filter{})),
		"never pending, never dispatch pending or dead")

	// A purged ID, or idempotency key, may be registered afresh.
	e.register(single("pg-completed"))
	again := e.register(&store.Correlation{IdempotencyKey: "purge-key", Timeout: time.Minute})
	require.Equal(t, store.DeriveID(store.DefaultNamespace, "purge-key"), again.ID)

	_, err = e.s.Purge(e.ctx, e.now(), 0)
	require.ErrorIs(t, err, store.ErrInvalid)
}

func testPurgeLimit(t *testing.T, e *env) {
	for i := range 5 {
		id := fmt.Sprintf("pl-%d", i)
		e.register(single(id))
		e.deliver(ref(id), reply("r"), store.DeliverCompleted)
	}
	e.clock.Add(time.Hour)
	for _, want := range []int{2, 2, 1, 0} {
		n, err := e.s.Purge(e.ctx, e.now(), 2)
		require.NoError(t, err)
		require.Equal(t, want, n)
	}
	require.Empty(t, e.listAll(store.Filter{}))
}

func testDropEarlyReplies(t *testing.T, e *env) {
	t0 := e.now()
	for _, id := range []string{"de-a", "de-b", "de-c"} {
		e.deliver(ref(id), reply("r"), store.DeliverBuffered)
	}
	e.clock.Add(time.Minute)
	e.deliver(ref("de-boundary"), reply("r"), store.DeliverBuffered)
	e.clock.Add(time.Minute)
	e.deliver(ref("de-d"), reply("r"), store.DeliverBuffered)
	e.deliver(ref("de-e"), reply("r"), store.DeliverBuffered)
	require.Equal(t, int64(6), e.stats("").EarlyReplies)

	before := t0.Add(time.Minute)
	n, err := e.s.DropEarlyReplies(e.ctx, before, 2)
	require.NoError(t, err)
	require.Equal(t, 2, n, "limit honoured")
	n, err = e.s.DropEarlyReplies(e.ctx, before, 10)
	require.NoError(t, err)
	require.Equal(t, 1, n)
	n, err = e.s.DropEarlyReplies(e.ctx, before, 10)
	require.NoError(t, err)
	require.Zero(t, n, "nothing older is left; one received exactly at before stays")
	require.Equal(t, int64(3), e.stats("").EarlyReplies)

	for _, id := range []string{"de-a", "de-b", "de-c"} {
		res, err := e.s.Register(e.ctx, single(id))
		require.NoError(t, err)
		require.Zero(t, res.EarlyApplied, "%s: its early reply was dropped", id)
		require.Equal(t, store.StatePending, e.get(ref(id)).State)
	}
	res, err := e.s.Register(e.ctx, single("de-d"))
	require.NoError(t, err)
	require.Equal(t, 1, res.EarlyApplied)
	require.Equal(t, int64(2), e.stats("").EarlyReplies)

	_, err = e.s.DropEarlyReplies(e.ctx, e.now(), 0)
	require.ErrorIs(t, err, store.ErrInvalid)
}
