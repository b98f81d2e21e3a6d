package storetest

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/corrstore/corrstore/store"
)

func dispatchTests() []testCase {
	return []testCase{
		{name: "ClaimOnlyHandlerOutcomes", run: testClaimOnlyHandlerOutcomes},
		{name: "Ack", run: testDispatchAck},
		{name: "NackRetry", run: testDispatchNackRetry},
		{name: "NackGiveUp", run: testDispatchNackGiveUp},
		{name: "LeaseExpiry", run: testDispatchLeaseExpiry},
		{name: "DeadAfterMaxAttempts", limits: store.Limits{DispatchMaxAttempts: 2}, run: testDispatchDeadAfterMaxAttempts},
		{name: "DeadAfterLeaseExpiry", limits: store.Limits{DispatchMaxAttempts: 1}, run: testDispatchDeadAfterLeaseExpiry},
		{name: "Redispatch", run: testRedispatch},
		{name: "ClaimLimit", run: testClaimLimit},
		{name: "ConcurrentClaims", run: testConcurrentClaims},
		{name: "DeadlineOutcome", run: testDispatchDeadlineOutcome},
		{name: "InvalidClaim", run: testInvalidClaim},
		{name: "ClaimScope", run: testClaimScope},
		{name: "ClaimScopeOrder", run: testClaimScopeOrder},
		{name: "ExtendDispatch", run: testExtendDispatch},
		{name: "OldestDispatchDue", run: testOldestDispatchDue},
	}
}

// decided registers a correlation r with a handler and completes it.
func (e *env) decided(r store.Ref) *store.Correlation {
	e.t.Helper()
	c := withHandler(r.ID)
	c.Namespace = r.Namespace
	e.register(c)
	return e.deliver(r, reply("r"), store.DeliverCompleted).Correlation
}

// claimOne claims and requires exactly the correlation r.
func (e *env) claimOne(instance string, r store.Ref, lease time.Duration) store.Claim {
	e.t.Helper()
	got := e.claim(instance, lease, 10)
	require.Equal(e.t, []string{r.String()}, refs(got), "claim by %s", instance)
	c := got[0]
	require.Equal(e.t, instance, c.Dispatch.LeaseOwner)
	return c.Dispatch.Claim()
}

func testClaimOnlyHandlerOutcomes(t *testing.T, e *env) {
	e.decided(ref("dp-handler"))
	e.register(single("dp-no-handler"))
	e.deliver(ref("dp-no-handler"), reply("r"), store.DeliverCompleted)
	e.register(withHandler("dp-pending"))
	require.Equal(t, store.DispatchNone, e.get(ref("dp-no-handler")).Dispatch.State)
	require.Equal(t, store.DispatchNone, e.get(ref("dp-pending")).Dispatch.State)
	decided := e.get(ref("dp-handler"))
	require.Equal(t, store.DispatchPending, decided.Dispatch.State)

	e.clock.Add(time.Second)
	now := e.now()
	got := e.claim("inst-a", 30*time.Second, 10)
	require.Equal(t, []string{"dp-handler"}, ids(got), "only outcomes with a handler are dispatched")
	for name, c := range map[string]*store.Correlation{"result": got[0], "get": e.get(ref("dp-handler"))} {
		t.Run(name, func(t *testing.T) {
			d := c.Dispatch
			require.Equal(t, store.DispatchPending, d.State)
			require.Equal(t, 1, d.Attempts)
			require.Equal(t, "inst-a", d.LeaseOwner)
			requireTime(t, now, d.ClaimedAt)
			requireTime(t, now.Add(30*time.Second), d.NextAt, "leased until now + lease")
			require.Equal(t, store.Claim{Instance: "inst-a", Attempt: 1}, d.Claim())
			require.True(t, hasEvent(c, store.EventDispatchClaimed))
			require.Equal(t, []byte("step-dp-handler"), c.Callback.Data, "the handler gets its data")
			require.Equal(t, store.StateCompleted, c.State)
		})
	}
	require.Empty(t, e.claim("inst-a", 30*time.Second, 10), "leased")
	require.Empty(t, e.claim("inst-b", 30*time.Second, 10), "leased to another instance")
}

func testDispatchAck(t *testing.T, e *env) {
	e.decided(ref("dp-ack"))
	cl := e.claimOne("inst-a", ref("dp-ack"), time.Minute)
	e.clock.Add(5 * time.Second)
	res, err := e.s.AckDispatch(e.ctx, ref("dp-ack"), cl)
	require.NoError(t, err)
	require.False(t, res.Duplicate)
	c := e.get(ref("dp-ack"))
	require.Equal(t, store.DispatchDone, c.Dispatch.State)
	requireTime(t, e.now(), c.Dispatch.DoneAt)
	require.True(t, hasEvent(c, store.EventDispatchAcked))

	res, err = e.s.AckDispatch(e.ctx, ref("dp-ack"), cl)
	require.NoError(t, err)
	require.True(t, res.Duplicate)
	require.Equal(t, snap(c), snap(e.get(ref("dp-ack"))))

	_, err = e.s.NackDispatch(e.ctx, ref("dp-ack"), cl, "boom", e.now().Add(time.Minute))
	require.ErrorIs(t, err, store.ErrConflict, "the attempt was already acked")
	_, err = e.s.AckDispatch(e.ctx, ref("dp-ack"), store.Claim{Instance: "inst-b", Attempt: 1})
	require.ErrorIs(t, err, store.ErrNotPending, "another claim on a done dispatch")

	e.clock.Add(time.Hour)
	require.Empty(t, e.claim("inst-a", time.Minute, 10), "a done dispatch is not claimed again")
	require.Equal(t, snap(c), snap(e.get(ref("dp-ack"))))

	// A correlation with no dispatch cannot be acked.
	e.register(single("dp-ack-none"))
	_, err = e.s.AckDispatch(e.ctx, ref("dp-ack-none"), store.Claim{Instance: "inst-a", Attempt: 1})
	require.ErrorIs(t, err, store.ErrNotPending)
}

func testDispatchNackRetry(t *testing.T, e *env) {
	e.decided(ref("dp-nack"))
	first := e.claimOne("inst-a", ref("dp-nack"), 30*time.Second)
	retryAt := e.now().Add(time.Minute)
	res, err := e.s.NackDispatch(e.ctx, ref("dp-nack"), first, "handler: connection refused", retryAt)
	require.NoError(t, err)
	require.False(t, res.Duplicate)
	c := e.get(ref("dp-nack"))
	require.Equal(t, store.DispatchPending, c.Dispatch.State)
	require.Equal(t, "handler: connection refused", c.Dispatch.LastError)
	requireTime(t, retryAt, c.Dispatch.NextAt)
	require.True(t, hasEvent(c, store.EventDispatchFailed))

	res, err = e.s.NackDispatch(e.ctx, ref("dp-nack"), first, "handler: connection refused", retryAt)
	require.NoError(t, err)
	require.True(t, res.Duplicate)
	require.Equal(t, snap(c), snap(e.get(ref("dp-nack"))))

	e.clock.Add(59 * time.Second)
	require.Empty(t, e.claim("inst-b", 30*time.Second, 10), "not before the retry time")
	e.clock.Add(time.Second)
	second := e.claimOne("inst-b", ref("dp-nack"), 30*time.Second)
	require.Equal(t, 2, second.Attempt)

	_, err = e.s.AckDispatch(e.ctx, ref("dp-nack"), first)
	require.ErrorIs(t, err, store.ErrConflict, "the first attempt's claim is stale")

	// A retry time in the past means now.
	_, err = e.s.NackDispatch(e.ctx, ref("dp-nack"), second, "again", e.now().Add(-time.Hour))
	require.NoError(t, err)
	third := e.claimOne("inst-c", ref("dp-nack"), 30*time.Second)
	require.Equal(t, 3, third.Attempt)
	_, err = e.s.AckDispatch(e.ctx, ref("dp-nack"), third)
	require.NoError(t, err)
	require.Equal(t, store.DispatchDone, e.get(ref("dp-nack")).Dispatch.State)
}

func testDispatchNackGiveUp(t *testing.T, e *env) {
	e.decided(ref("dp-give-up"))
	cl := e.claimOne("inst-a", ref("dp-give-up"), 30*time.Second)
	res, err := e.s.NackDispatch(e.ctx, ref("dp-give-up"), cl, "handler: unknown workflow", time.Time{})
	require.NoError(t, err)
	require.False(t, res.Duplicate)
	c := e.get(ref("dp-give-up"))
	require.Equal(t, store.DispatchDead, c.Dispatch.State, "no retry time: the handler gave up")
	require.Equal(t, "handler: unknown workflow", c.Dispatch.LastError)
	require.True(t, hasEvent(c, store.EventDispatchDead))

	res, err = e.s.NackDispatch(e.ctx, ref("dp-give-up"), cl, "handler: unknown workflow", time.Time{})
	require.NoError(t, err)
	require.True(t, res.Duplicate)
	_, err = e.s.AckDispatch(e.ctx, ref("dp-give-up"), cl)
	require.ErrorIs(t, err, store.ErrConflict, "the attempt was already nacked")

	e.clock.Add(time.Hour)
	require.Empty(t, e.claim("inst-a", time.Minute, 10))
	require.Equal(t, snap(c), snap(e.get(ref("dp-give-up"))))
	require.Equal(t, int64(1), e.stats("").Total().Dispatch[store.DispatchDead])
}

func testDispatchLeaseExpiry(t *testing.T, e *env) {
	e.decided(ref("dp-lease"))
	a := e.claimOne("inst-a", ref("dp-lease"), 30*time.Second)
	e.clock.Add(29 * time.Second)
	require.Empty(t, e.claim("inst-b", 30*time.Second, 10), "the lease holds")
	e.clock.Add(time.Second)
	b := e.claimOne("inst-b", ref("dp-lease"), 30*time.Second)
	require.Equal(t, store.Claim{Instance: "inst-b", Attempt: 2}, b, "an expired lease is claimable again")

	_, err := e.s.AckDispatch(e.ctx, ref("dp-lease"), a)
	require.ErrorIs(t, err, store.ErrConflict, "the stale claim lost its lease")
	_, err = e.s.NackDispatch(e.ctx, ref("dp-lease"), a, "late failure", e.now().Add(time.Minute))
	require.ErrorIs(t, err, store.ErrConflict)
	c := e.get(ref("dp-lease"))
	require.Equal(t, "inst-b", c.Dispatch.LeaseOwner)
	require.Equal(t, 2, c.Dispatch.Attempts)

	res, err := e.s.AckDispatch(e.ctx, ref("dp-lease"), b)
	require.NoError(t, err)
	require.False(t, res.Duplicate)
	require.Equal(t, store.DispatchDone, e.get(ref("dp-lease")).Dispatch.State)
}

func testDispatchDeadAfterMaxAttempts(t *testing.T, e *env) {
	// Limits: DispatchMaxAttempts 2.
	e.decided(ref("dp-dead"))
	for attempt := 1; attempt <= 2; attempt++ {
		cl := e.claimOne("inst-a", ref("dp-dead"), 30*time.Second)
		require.Equal(t, attempt, cl.Attempt)
		_, err := e.s.NackDispatch(e.ctx, ref("dp-dead"), cl, fmt.Sprintf("failure %d", attempt), e.now().Add(time.Second))
		require.NoError(t, err)
		e.clock.Add(time.Second)
	}
	c := e.get(ref("dp-dead"))
	require.Equal(t, store.DispatchDead, c.Dispatch.State, "dead after DispatchMaxAttempts")
	require.Equal(t, 2, c.Dispatch.Attempts)
	require.Equal(t, "failure 2", c.Dispatch.LastError)
	require.True(t, hasEvent(c, store.EventDispatchDead))
	e.clock.Add(time.Hour)
	require.Empty(t, e.claim("inst-a", time.Minute, 10))

	page, err := e.s.List(e.ctx, store.Filter{Dispatch: store.DispatchDead})
	require.NoError(t, err)
	require.Equal(t, []string{"dp-dead"}, ids(page.Items))

	res, err := e.s.Redispatch(e.ctx, ref("dp-dead"))
	require.NoError(t, err)
	require.False(t, res.Duplicate)
	c = e.get(ref("dp-dead"))
	require.Equal(t, store.DispatchPending, c.Dispatch.State)
	require.True(t, hasEvent(c, store.EventRedispatched))
	res, err = e.s.Redispatch(e.ctx, ref("dp-dead"))
	require.NoError(t, err)
	require.True(t, res.Duplicate, "a pending dispatch is not redispatched twice")
	require.Equal(t, snap(c), snap(e.get(ref("dp-dead"))))

	// A fresh budget of attempts.
	for attempt := 3; attempt <= 4; attempt++ {
		cl := e.claimOne("inst-b", ref("dp-dead"), 30*time.Second)
		require.Equal(t, attempt, cl.Attempt)
		_, err := e.s.NackDispatch(e.ctx, ref("dp-dead"), cl, "still failing", e.now().Add(time.Second))
		require.NoError(t, err)
		want := store.DispatchPending
		if attempt == 4 {
			want = store.DispatchDead
		}
		require.Equal(t, want, e.get(ref("dp-dead")).Dispatch.State, "after attempt %d", attempt)
		e.clock.Add(time.Second)
	}
}

func testDispatchDeadAfterLeaseExpiry(t *testing.T, e *env) {
	// Limits: DispatchMaxAttempts 1.
	e.decided(ref("dp-lease-dead"))
	cl := e.claimOne("inst-a", ref("dp-lease-dead"), 10*time.Second)
	e.clock.Add(10 * time.Second)
	require.Empty(t, e.claim("inst-b", 10*time.Second, 10), "the last attempt's lease expired: dead, not claimed")
	c := e.get(ref("dp-lease-dead"))
	require.Equal(t, store.DispatchDead, c.Dispatch.State)
	require.Equal(t, 1, c.Dispatch.Attempts)
	require.NotEmpty(t, c.Dispatch.LastError)
	_, err := e.s.AckDispatch(e.ctx, ref("dp-lease-dead"), cl)
	require.ErrorIs(t, err, store.ErrNotPending, "too late to ack a dead dispatch")

	res, err := e.s.Redispatch(e.ctx, ref("dp-lease-dead"))
	require.NoError(t, err)
	require.False(t, res.Duplicate)
	cl = e.claimOne("inst-b", ref("dp-lease-dead"), 10*time.Second)
	require.Equal(t, 2, cl.Attempt)
	_, err = e.s.AckDispatch(e.ctx, ref("dp-lease-dead"), cl)
	require.NoError(t, err)
}

func testRedispatch(t *testing.T, e *env) {
	e.decided(ref("dp-redispatch"))
	cl := e.claimOne("inst-a", ref("dp-redispatch"), time.Minute)
	_, err := e.s.AckDispatch(e.ctx, ref("dp-redispatch"), cl)
	require.NoError(t, err)
	res, err := e.s.Redispatch(e.ctx, ref("dp-redispatch"))
	require.NoError(t, err, "a done dispatch can be redispatched")
	require.False(t, res.Duplicate)
	require.Equal(t, store.DispatchPending, e.get(ref("dp-redispatch")).Dispatch.State)
	cl = e.claimOne("inst-b", ref("dp-redispatch"), time.Minute)
	require.Equal(t, 2, cl.Attempt)
	_, err = e.s.AckDispatch(e.ctx, ref("dp-redispatch"), store.Claim{Instance: "inst-a", Attempt: 1})
	require.ErrorIs(t, err, store.ErrConflict)

	e.register(withHandler("dp-redispatch-pending"))
	_, err = e.s.Redispatch(e.ctx, ref("dp-redispatch-pending"))
	require.ErrorIs(t, err, store.ErrNotPending, "no outcome, nothing to dispatch")
	e.register(single("dp-redispatch-nohandler"))
	e.deliver(ref("dp-redispatch-nohandler"), reply("r"), store.DeliverCompleted)
	before := e.get(ref("dp-redispatch-nohandler"))
	_, err = e.s.Redispatch(e.ctx, ref("dp-redispatch-nohandler"))
	require.ErrorIs(t, err, store.ErrNotPending, "no handler, nothing to dispatch")
	require.Equal(t, snap(before), snap(e.get(ref("dp-redispatch-nohandler"))))
}

func testClaimLimit(t *testing.T, e *env) {
	for i := range 5 {
		e.decided(ref(fmt.Sprintf("dp-limit-%d", i)))
	}
	seen := map[string]bool{}
	for _, want := range []int{2, 2, 1, 0} {
		got := e.claim("inst-a", time.Minute, 2)
		require.Len(t, got, want)
		for _, c := range got {
			require.False(t, seen[c.ID], "%s claimed twice within its lease", c.ID)
			seen[c.ID] = true
		}
	}
	require.Len(t, seen, 5)
}

func testConcurrentClaims(t *testing.T, e *env) {
	const n, instances = 100, 8
	e.parallel(n, instances, func(i int) error {
		id := fmt.Sprintf("dp-conc-%03d", i)
		if _, err := e.s.Register(e.ctx, withHandler(id)); err != nil {
			return err
		}
		_, err := e.s.Deliver(e.ctx, ref(id), reply("r"))
		return err
	})
	var (
		mu    sync.Mutex
		owner = map[string]string{}
		errs  []error
		wg    sync.WaitGroup
	)
	now := e.now()
	for w := range instances {
		instance := fmt.Sprintf("inst-%d", w)
		wg.Go(func() {
			for {
				r := e.claimAll(instance, time.Minute, 9)
				r.Now = now
				got, err := e.s.ClaimDispatch(e.ctx, r)
				mu.Lock()
				if err != nil {
					errs = append(errs, err)
				}
				for _, c := range got {
					if prev, ok := owner[c.ID]; ok {
						errs = append(errs, fmt.Errorf("%s claimed by %s and %s", c.ID, prev, instance))
					}
					owner[c.ID] = instance
					if c.Dispatch.LeaseOwner != instance || c.Dispatch.Attempts != 1 {
						errs = append(errs, fmt.Errorf("%s: dispatch %+v after a claim by %s", c.ID, c.Dispatch, instance))
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
	require.Len(t, owner, n, "every outcome claimed exactly once")
	for _, id := range []string{"dp-conc-000", "dp-conc-099"} {
		c := e.get(ref(id))
		require.Equal(t, owner[id], c.Dispatch.LeaseOwner)
		require.Equal(t, 1, c.Dispatch.Attempts)
	}
}

func testDispatchDeadlineOutcome(t *testing.T, e *env) {
	e.register(withHandler("dp-deadline"))
	e.register(withHandler("dp-cancel"))
	_, err := e.s.Cancel(e.ctx, ref("dp-cancel"), "abandoned")
	require.NoError(t, err)
	e.clock.Add(time.Minute)
	require.Len(t, e.expireDue(10), 1)
	got := e.claim("inst-a", time.Minute, 10)
	require.Equal(t, []string{"dp-cancel", "dp-deadline"}, ids(got), "every kind of outcome is dispatched")
	for _, c := range got {
		require.True(t, c.State.Terminal())
	}
}

func testInvalidClaim(t *testing.T, e *env) {
	e.decided(ref("dp-invalid"))
	ok := e.claimAll("inst", time.Minute, 1)
	for _, tc := range []struct {
		field string
		edit  func(r *store.ClaimRequest)
	}{
		{"instance", func(r *store.ClaimRequest) { r.Instance = "" }},
		{"lease", func(r *store.ClaimRequest) { r.Lease = 0 }},
		{"lease", func(r *store.ClaimRequest) { r.Lease = -time.Second }},
		{"limit", func(r *store.ClaimRequest) { r.Limit = 0 }},
		{"handlers", func(r *store.ClaimRequest) { r.Handlers = nil }},
		{"handlers", func(r *store.ClaimRequest) { r.Handlers = []string{"h", "h"} }},
		{"handlers", func(r *store.ClaimRequest) { r.Handlers = make([]string, store.MaxClaimHandlers+1) }},
		{"handler", func(r *store.ClaimRequest) { r.Handlers = []string{"h", ""} }},
		{"handler", func(r *store.ClaimRequest) { r.Handlers = []string{"bad\x00name"} }},
		{"namespace", func(r *store.ClaimRequest) { r.Namespace = "Not Valid" }},
	} {
		r := ok
		r.Handlers = slices.Clone(ok.Handlers)
		tc.edit(&r)
		_, err := e.s.ClaimDispatch(e.ctx, r)
		require.ErrorIs(t, err, store.ErrInvalid, "%s", tc.field)
		require.ErrorContains(t, err, tc.field)
	}
	require.Equal(t, 0, e.get(ref("dp-invalid")).Dispatch.Attempts)
	e.claimOne("inst", ref("dp-invalid"), time.Minute)
}

// decidedFor registers r with handler and completes it.
func (e *env) decidedFor(r store.Ref, handler string) {
	e.t.Helper()
	e.register(&store.Correlation{ID: r.ID, Namespace: r.Namespace, Timeout: time.Minute, Callback: store.Callback{Handler: handler}})
	e.deliver(r, reply("r"), store.DeliverCompleted)
}

// claimScoped claims for handlers in ns ("" every namespace).
func (e *env) claimScoped(instance, ns string, limit int, handlers ...string) []*store.Correlation {
	e.t.Helper()
	got, err := e.s.ClaimDispatch(e.ctx, store.ClaimRequest{Instance: instance, Namespace: ns, Handlers: handlers,
		Now: e.now(), Lease: time.Minute, Limit: limit})
	require.NoError(e.t, err)
	for _, c := range got {
		require.Contains(e.t, handlers, c.Callback.Handler, "%s claimed by a claimer of %v", c.Ref(), handlers)
		if ns != "" {
			require.Equal(e.t, ns, c.Namespace, "%s claimed in namespace %q", c.Ref(), ns)
		}
	}
	return got
}

// Claims never cross handlers or namespaces: a claimer takes only what it
// serves, and what it does not serve keeps its attempts.
func testClaimScope(t *testing.T, e *env) {
	e.decidedFor(nsRef("tenant-a", "sc-1"), "hook")
	e.decidedFor(nsRef("tenant-b", "sc-1"), "hook")
	e.decidedFor(nsRef("tenant-a", "sc-2"), "pull")
	e.decidedFor(nsRef("tenant-a", "sc-3"), "hook-2") // a name with "hook" as its prefix
	e.decidedFor(nsRef("tenant-ab", "sc-4"), "hook")  // a namespace with "tenant-a" as its prefix
	e.clock.Add(time.Second)

	require.Empty(t, e.claimScoped("w", "tenant-c", 10, "hook", "pull", "hook-2"), "nothing in another namespace")
	require.Empty(t, e.claimScoped("w", "", 10, "other"), "nothing for another handler")
	require.Equal(t, []string{"tenant-a/sc-1"}, refs(e.claimScoped("w", "tenant-a", 10, "hook")))
	require.Equal(t, []string{"tenant-ab/sc-4", "tenant-b/sc-1"}, refs(e.claimScoped("w", "", 10, "hook")), "every namespace")
	require.Equal(t, []string{"tenant-a/sc-2", "tenant-a/sc-3"}, refs(e.claimScoped("w", "tenant-a", 10, "pull", "hook-2")))
	for _, r := range []store.Ref{nsRef("tenant-a", "sc-2"), nsRef("tenant-a", "sc-3"), nsRef("tenant-b", "sc-1")} {
		require.Equal(t, 1, e.get(r).Dispatch.Attempts, "%s claimed once, by its own claimer", r)
	}

	// The lease of one handler's outcome runs out: only its claimers see it.
	e.clock.Add(2 * time.Minute)
	require.Empty(t, e.claimScoped("w2", "", 10, "other", "hook-3"))
	require.Equal(t, []string{"tenant-a/sc-2"}, refs(e.claimScoped("w2", "tenant-a", 10, "pull")))
	require.Equal(t, 1, e.get(nsRef("tenant-a", "sc-3")).Dispatch.Attempts, "not taken by a claimer of another handler")
}

// A claim over several handlers and namespaces gives the earliest due
// first, up to its limit.
func testClaimScopeOrder(t *testing.T, e *env) {
	e.decidedFor(nsRef("ns-b", "so-1"), "hook")
	e.clock.Add(time.Second)
	e.decidedFor(nsRef("ns-a", "so-2"), "pull")
	e.clock.Add(time.Second)
	e.decidedFor(nsRef("ns-a", "so-3"), "hook")
	e.clock.Add(time.Second)
	got := e.claimScoped("w", "", 2, "pull", "hook")
	require.Equal(t, []string{"so-1", "so-2"}, idsInOrder(got), "earliest first across handlers and namespaces")
	for _, c := range got {
		require.Len(t, c.Replies, 1, "%s: a claim carries the replies, as Get", c.Ref())
		require.Equal(t, reply("r").Body, c.Replies[0].Body)
	}
	require.Equal(t, []string{"so-3"}, idsInOrder(e.claimScoped("w", "", 2, "pull", "hook")))
}

func testExtendDispatch(t *testing.T, e *env) {
	r := ref("dp-extend")
	e.decided(r)
	cl := e.claimOne("inst-a", r, 30*time.Second)
	until := e.now().Add(10 * time.Minute)
	res, err := e.s.ExtendDispatch(e.ctx, r, cl, until)
	require.NoError(t, err)
	require.False(t, res.Duplicate)
	require.True(t, until.Equal(res.Correlation.Dispatch.NextAt))
	res, err = e.s.ExtendDispatch(e.ctx, r, cl, until)
	require.NoError(t, err)
	require.True(t, res.Duplicate, "the same end again")

	e.clock.Add(5 * time.Minute)
	require.Empty(t, e.claim("inst-b", time.Minute, 10), "the extended lease holds past the first one")
	_, err = e.s.ExtendDispatch(e.ctx, r, store.Claim{Instance: "inst-b", Attempt: 1}, until.Add(time.Hour))
	require.ErrorIs(t, err, store.ErrConflict, "not the holder")
	_, err = e.s.ExtendDispatch(e.ctx, r, cl, time.Time{})
	require.ErrorIs(t, err, store.ErrInvalid)
	_, err = e.s.ExtendDispatch(e.ctx, ref("dp-extend-missing"), cl, until)
	require.ErrorIs(t, err, store.ErrNotFound)

	e.clock.Add(5 * time.Minute)
	_, err = e.s.ExtendDispatch(e.ctx, r, cl, e.now().Add(time.Hour))
	require.ErrorIs(t, err, store.ErrConflict, "the lease ran out")
	e.claimOne("inst-b", r, time.Minute)
	_, err = e.s.AckDispatch(e.ctx, r, store.Claim{Instance: "inst-b", Attempt: 2})
	require.NoError(t, err)
	_, err = e.s.ExtendDispatch(e.ctx, r, store.Claim{Instance: "inst-b", Attempt: 2}, e.now().Add(time.Hour))
	require.ErrorIs(t, err, store.ErrNotPending)
}

func testOldestDispatchDue(t *testing.T, e *env) {
	oldest := func(ns, h string) time.Time {
		t.Helper()
		at, err := e.s.OldestDispatchDue(e.ctx, ns, h)
		require.NoError(t, err)
		return at
	}
	require.True(t, oldest("", "hook").IsZero(), "nothing waits")
	t0 := e.now()
	e.decidedFor(nsRef("ns-b", "od-1"), "hook")
	e.clock.Add(time.Second)
	e.decidedFor(nsRef("ns-a", "od-2"), "hook")
	e.decidedFor(nsRef("ns-a", "od-3"), "other")
	require.True(t, t0.Equal(oldest("", "hook")), "the oldest of every namespace")
	require.True(t, t0.Add(time.Second).Equal(oldest("ns-a", "hook")))
	require.True(t, oldest("ns-c", "hook").IsZero())
	require.True(t, t0.Add(time.Second).Equal(oldest("", "other")))

	// Claimed, the oldest waits until its lease ends; done, it is gone.
	got := e.claimScoped("w", "ns-b", 1, "hook")
	require.Len(t, got, 1)
	require.True(t, t0.Add(time.Second).Equal(oldest("", "hook")), "the other one is the oldest now")
	_, err := e.s.AckDispatch(e.ctx, got[0].Ref(), got[0].Dispatch.Claim())
	require.NoError(t, err)
	require.True(t, t0.Add(time.Second).Equal(oldest("", "hook")))

	_, err = e.s.OldestDispatchDue(e.ctx, "Not Valid", "hook")
	require.ErrorIs(t, err, store.ErrInvalid)
	_, err = e.s.OldestDispatchDue(e.ctx, "", "")
	require.ErrorIs(t, err, store.ErrInvalid)
}
