package storetest

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/corrstore/corrstore/store"
)

// A correlation is (namespace, id): the same ID in two namespaces names two
// independent correlations, in every record, index, idempotency mapping and
// early-reply buffer of the store.

func namespaceTests() []testCase {
	cases := []testCase{
		{name: "SameIDTwoCorrelations", run: testNamespaceSameID},
		{name: "IsolationAtDeadline", run: testNamespaceIsolationDeadline},
		{name: "IdempotencyKeys", run: testNamespaceIdempotency},
		{name: "EarlyReplies", limits: store.Limits{MaxEarlyPerID: 1}, run: testNamespaceEarly},
		{name: "ListAndCursors", run: testNamespaceList},
		{name: "WrongNamespaceNotFound", run: testNamespaceWrong},
		{name: "EmptyNamespaceIsDefault", run: testNamespaceEmptyIsDefault},
	}
	for _, st := range isolationSteps {
		cases = append(cases, testCase{name: "Isolation" + st.name, run: func(t *testing.T, e *env) { testNamespaceIsolation(t, e, st.name, st.do) }})
	}
	return cases
}

func testNamespaceSameID(t *testing.T, e *env) {
	a, b := nsRef("ns-a", "order-42"), nsRef("ns-b", "order-42")
	ca := e.register(&store.Correlation{ID: "order-42", Namespace: "ns-a", Destination: "to-a", Timeout: time.Minute})
	cb := e.register(&store.Correlation{ID: "order-42", Namespace: "ns-b", Pattern: store.PatternGather, Expect: 2,
		Destination: "to-b", Timeout: 2 * time.Minute})
	require.Equal(t, a, ca.Ref())
	require.Equal(t, b, cb.Ref())
	require.NotEqual(t, ca.Nonce, cb.Nonce, "two registrations")

	ga, gb := e.get(a), e.get(b)
	require.Equal(t, "to-a", ga.Destination)
	require.Equal(t, store.PatternSingle, ga.Pattern)
	require.Equal(t, "to-b", gb.Destination)
	require.Equal(t, store.PatternGather, gb.Pattern)
	requireTime(t, e.now().Add(2*time.Minute), gb.Deadline)
	e.requireGone(ref("order-42"))

	// Each is re-registered, or conflicts, on its own.
	res, err := e.s.Register(e.ctx, &store.Correlation{ID: "order-42", Namespace: "ns-b", Pattern: store.PatternGather, Expect: 2,
		Destination: "to-b", Timeout: 2 * time.Minute})
	require.NoError(t, err)
	require.False(t, res.Created)
	require.Equal(t, b, res.Correlation.Ref())
	require.Equal(t, "to-b", res.Correlation.Destination)
	_, err = e.s.Register(e.ctx, &store.Correlation{ID: "order-42", Namespace: "ns-a", Destination: "to-b", Timeout: time.Minute})
	require.ErrorIs(t, err, store.ErrConflict, "other content under a's ref")
	require.Equal(t, snap(ga), snap(e.get(a)))
	require.Equal(t, snap(gb), snap(e.get(b)))

	st := e.stats("")
	require.Equal(t, int64(1), st.Namespaces["ns-a"].States[store.StatePending])
	require.Equal(t, int64(1), st.Namespaces["ns-b"].States[store.StatePending])
	require.Equal(t, []string{"ns-a/order-42", "ns-b/order-42"}, refs(e.listAll(store.Filter{})))
}

// twins registers the same ID, with the same content, in namespaces
// "twin-a" and "twin-b", and returns both refs.
func (e *env) twins(id string, c func() *store.Correlation) (store.Ref, store.Ref) {
	e.t.Helper()
	for _, ns := range []string{"twin-a", "twin-b"} {
		x := c()
		x.ID, x.Namespace = id, ns
		e.register(x)
	}
	return nsRef("twin-a", id), nsRef("twin-b", id)
}

// isolationSteps act on a's ref; b, the same ID in another namespace, must
// not change.
var isolationSteps = []struct {
	name string
	do   func(e *env, a store.Ref)
}{
	{"Deliver", func(e *env, a store.Ref) {
		e.deliver(a, store.Reply{From: "x"}, store.DeliverAccepted)
		e.deliver(a, store.Reply{From: "y"}, store.DeliverCompleted)
		e.deliver(a, store.Reply{From: "z"}, store.DeliverLate)
		e.deliver(a, store.Reply{From: "x"}, store.DeliverDuplicate)
	}},
	{"Extend", func(e *env, a store.Ref) {
		_, err := e.s.Extend(e.ctx, a, e.now().Add(time.Hour))
		require.NoError(e.t, err)
	}},
	{"Cancel", func(e *env, a store.Ref) {
		_, err := e.s.Cancel(e.ctx, a, "only a")
		require.NoError(e.t, err)
	}},
	{"Expire", func(e *env, a store.Ref) {
		_, err := e.s.Expire(e.ctx, a, "only a")
		require.NoError(e.t, err)
	}},
	{"Dispatch", func(e *env, a store.Ref) {
		_, err := e.s.Cancel(e.ctx, a, "")
		require.NoError(e.t, err)
		cl := e.claimOne("inst", a, time.Minute)
		_, err = e.s.AckDispatch(e.ctx, a, cl)
		require.NoError(e.t, err)
		_, err = e.s.Redispatch(e.ctx, a)
		require.NoError(e.t, err)
		cl = e.claimOne("inst", a, time.Minute)
		_, err = e.s.NackDispatch(e.ctx, a, cl, "gave up", time.Time{})
		require.NoError(e.t, err)
		require.Equal(e.t, store.DispatchDead, e.get(a).Dispatch.State)
	}},
	{"Purge", func(e *env, a store.Ref) {
		_, err := e.s.Expire(e.ctx, a, "")
		require.NoError(e.t, err)
		cl := e.claimOne("inst", a, time.Minute)
		_, err = e.s.AckDispatch(e.ctx, a, cl)
		require.NoError(e.t, err)
		n, err := e.s.Purge(e.ctx, e.now().Add(time.Second), 10)
		require.NoError(e.t, err)
		require.Equal(e.t, 1, n)
		e.requireGone(a)
	}},
}

func testNamespaceIsolation(t *testing.T, e *env, name string, step func(e *env, a store.Ref)) {
	a, b := e.twins("iso-"+name, func() *store.Correlation {
		return &store.Correlation{Pattern: store.PatternGather, Expect: 2, Callback: store.Callback{Handler: "h"},
			IdempotencyKey: "key-" + name, Timeout: time.Minute}
	})
	before := e.get(b)
	step(e, a)
	after := e.get(b)
	require.Equal(t, snap(before), snap(after), "%s on %s changed %s", name, a, b)
	require.Equal(t, before.DuplicateCount, after.DuplicateCount)

	// b goes on alone, and still answers to its idempotency key.
	var aAfter *store.Correlation
	if c, err := e.s.Get(e.ctx, a); err == nil {
		aAfter = c
	}
	res, err := e.s.Register(e.ctx, &store.Correlation{Namespace: b.Namespace, Pattern: store.PatternGather, Expect: 2,
		Callback: store.Callback{Handler: "h"}, IdempotencyKey: "key-" + name, Timeout: time.Minute})
	require.NoError(t, err)
	require.False(t, res.Created)
	require.Equal(t, b, res.Correlation.Ref())
	e.deliver(b, store.Reply{From: "x"}, store.DeliverAccepted)
	e.deliver(b, store.Reply{From: "y"}, store.DeliverCompleted)
	if aAfter != nil {
		require.Equal(t, snap(aAfter), snap(e.get(a)), "replies to %s changed %s", b, a)
	} else {
		e.requireGone(a)
	}
}

func testNamespaceIsolationDeadline(t *testing.T, e *env) {
	// The same ID with two deadlines: the reaper and the exact deadline
	// decide each alone.
	e.register(&store.Correlation{ID: "iso-due", Namespace: "twin-a", Callback: store.Callback{Handler: "h"}, Timeout: time.Minute})
	e.register(&store.Correlation{ID: "iso-due", Namespace: "twin-b", Callback: store.Callback{Handler: "h"}, Timeout: 2 * time.Minute})
	e.register(&store.Correlation{ID: "iso-late", Namespace: "twin-a", Timeout: time.Minute})
	e.register(&store.Correlation{ID: "iso-late", Namespace: "twin-b", Timeout: 2 * time.Minute})
	e.clock.Add(time.Minute)

	e.deliver(nsRef("twin-a", "iso-late"), reply("r"), store.DeliverLate)
	e.deliver(nsRef("twin-b", "iso-late"), reply("r"), store.DeliverCompleted)
	require.Equal(t, []string{"twin-a/iso-due"}, refs(e.expireDue(10)))
	require.Equal(t, store.StatePending, e.get(nsRef("twin-b", "iso-due")).State)
	got := e.claim("inst", time.Minute, 10)
	require.Equal(t, []string{"twin-a/iso-due"}, refs(got))
	_, err := e.s.AckDispatch(e.ctx, got[0].Ref(), got[0].Dispatch.Claim())
	require.NoError(t, err)

	e.clock.Add(time.Minute)
	require.Equal(t, []string{"twin-b/iso-due"}, refs(e.expireDue(10)))
	require.Equal(t, []string{"twin-b/iso-due"}, refs(e.claim("inst", time.Minute, 10)))
}

func testNamespaceIdempotency(t *testing.T, e *env) {
	// The same explicit ID and the same key in two namespaces.
	for _, ns := range []string{"key-a", "key-b"} {
		c := e.register(&store.Correlation{ID: "keyed", Namespace: ns, IdempotencyKey: "charge-1", Destination: "to-" + ns, Timeout: time.Minute})
		require.Equal(t, nsRef(ns, "keyed"), c.Ref())
	}
	// A retry naming only the key lands on its own namespace's record.
	for _, ns := range []string{"key-a", "key-b"} {
		res, err := e.s.Register(e.ctx, &store.Correlation{Namespace: ns, IdempotencyKey: "charge-1", Destination: "to-" + ns, Timeout: time.Minute})
		require.NoError(t, err, ns)
		require.False(t, res.Created, ns)
		require.Equal(t, nsRef(ns, "keyed"), res.Correlation.Ref())
		require.Equal(t, "to-"+ns, res.Correlation.Destination)
	}
	b := e.get(nsRef("key-b", "keyed"))
	_, err := e.s.Register(e.ctx, &store.Correlation{Namespace: "key-a", IdempotencyKey: "charge-1", Destination: "to-key-b", Timeout: time.Minute})
	require.ErrorIs(t, err, store.ErrConflict, "b's content under a's key")
	require.Equal(t, snap(b), snap(e.get(nsRef("key-b", "keyed"))))

	// Keys alone: derived IDs.
	for _, ns := range []string{"key-a", "key-b"} {
		c := e.register(&store.Correlation{Namespace: ns, IdempotencyKey: "charge-2", Timeout: time.Minute})
		require.Equal(t, nsRef(ns, store.DeriveID(ns, "charge-2")), c.Ref())
	}
}

func testNamespaceEarly(t *testing.T, e *env) {
	// Limits: MaxEarlyPerID 1 (per ref).
	a, b := nsRef("early-a", "ear"), nsRef("early-b", "ear")
	e.deliver(a, store.Reply{ID: "for-a", Body: []byte("a's")}, store.DeliverBuffered)
	e.deliver(b, store.Reply{ID: "for-b", Body: []byte("b's")}, store.DeliverBuffered)
	_, err := e.s.Deliver(e.ctx, b, store.Reply{ID: "for-b-2"})
	require.ErrorIs(t, err, store.ErrTooLarge, "the cap per ref")
	require.Equal(t, int64(2), e.stats("").EarlyReplies)

	res, err := e.s.Register(e.ctx, &store.Correlation{ID: "ear", Namespace: "early-b", Pattern: store.PatternGather, Expect: 2, Timeout: time.Minute})
	require.NoError(t, err)
	require.Equal(t, 1, res.EarlyApplied, "only b's early reply")
	c := e.get(b)
	require.Len(t, c.Replies, 1)
	require.Equal(t, "for-b", c.Replies[0].ID)
	require.Equal(t, int64(1), e.stats("").EarlyReplies, "a's is still buffered")

	e.register(&store.Correlation{ID: "ear", Namespace: "early-c", Timeout: time.Minute})
	require.Empty(t, e.get(nsRef("early-c", "ear")).Replies, "nothing buffered for early-c/ear")

	res, err = e.s.Register(e.ctx, &store.Correlation{ID: "ear", Namespace: "early-a", Timeout: time.Minute})
	require.NoError(t, err)
	require.Equal(t, 1, res.EarlyApplied)
	c = e.get(a)
	require.Equal(t, store.StateCompleted, c.State)
	require.Equal(t, []byte("a's"), c.Replies[0].Body)
	require.Zero(t, e.stats("").EarlyReplies)
	require.Len(t, e.get(b).Replies, 1, "b got nothing of a's")
}

func testNamespaceList(t *testing.T, e *env) {
	// Four IDs in three namespaces, all created at the same instant: only
	// the ref tells them apart, in the order and in the cursor.
	namespaces := []string{"ls-a", "ls-b", "ls-c"}
	var all []string
	for _, id := range []string{"x-1", "x-2", "x-3", "x-4"} {
		for _, ns := range namespaces {
			e.register(&store.Correlation{ID: id, Namespace: ns, Timeout: time.Minute})
			all = append(all, ns+"/"+id)
		}
	}
	e.register(&store.Correlation{ID: "x-1", Timeout: time.Minute}) // default/x-1
	all = append(all, "default/x-1")
	for _, order := range []store.Order{store.NewestFirst, store.OldestFirst} {
		for _, size := range []int{1, 2, 5, 13, 14} {
			t.Run(fmt.Sprintf("%s/%d", order, size), func(t *testing.T) {
				e := e.in(t)
				got := e.listAll(store.Filter{Order: order, Limit: size})
				require.Equal(t, sorted(all...), refs(got), "every ref exactly once")
				requireNoRepeat(t, got)
				for _, ns := range namespaces {
					got := e.listAll(store.Filter{Namespace: ns, Order: order, Limit: size})
					require.Equal(t, sorted(ns+"/x-1", ns+"/x-2", ns+"/x-3", ns+"/x-4"), refs(got), "namespace %s", ns)
				}
			})
		}
	}
}

// requireNoRepeat requires each ref at most once in cs.
func requireNoRepeat(t *testing.T, cs []*store.Correlation) {
	t.Helper()
	seen := map[store.Ref]bool{}
	for _, c := range cs {
		require.False(t, seen[c.Ref()], "%s listed twice", c.Ref())
		seen[c.Ref()] = true
	}
}

func testNamespaceWrong(t *testing.T, e *env) {
	a := nsRef("mine", "wrong-ns")
	e.decided(a)
	cl := e.claimOne("inst", a, time.Minute)
	before := e.get(a)
	for _, other := range []store.Ref{nsRef("theirs", "wrong-ns"), ref("wrong-ns")} {
		_, err := e.s.Get(e.ctx, other)
		require.ErrorIs(t, err, store.ErrNotFound, "Get %s", other)
		_, err = e.s.Extend(e.ctx, other, e.now().Add(time.Hour))
		require.ErrorIs(t, err, store.ErrNotFound, "Extend %s", other)
		_, err = e.s.Cancel(e.ctx, other, "")
		require.ErrorIs(t, err, store.ErrNotFound, "Cancel %s", other)
		_, err = e.s.Expire(e.ctx, other, "")
		require.ErrorIs(t, err, store.ErrNotFound, "Expire %s", other)
		_, err = e.s.AckDispatch(e.ctx, other, cl)
		require.ErrorIs(t, err, store.ErrNotFound, "AckDispatch %s", other)
		_, err = e.s.NackDispatch(e.ctx, other, cl, "boom", e.now().Add(time.Minute))
		require.ErrorIs(t, err, store.ErrNotFound, "NackDispatch %s", other)
		_, err = e.s.Redispatch(e.ctx, other)
		require.ErrorIs(t, err, store.ErrNotFound, "Redispatch %s", other)
		// A reply to the other ref is not a's: it waits for its own registration.
		e.deliver(other, reply("not-for-a"), store.DeliverBuffered)
	}
	require.Equal(t, snap(before), snap(e.get(a)), "nothing reached %s", a)
	require.Equal(t, before.DuplicateCount, e.get(a).DuplicateCount)
	_, err := e.s.AckDispatch(e.ctx, a, cl)
	require.NoError(t, err, "the lease is still a's")
}

func testNamespaceEmptyIsDefault(t *testing.T, e *env) {
	c := e.register(&store.Correlation{ID: "dflt", Timeout: time.Minute})
	require.Equal(t, store.DefaultNamespace, c.Namespace)
	bare := store.Ref{ID: "dflt"}
	require.Equal(t, snap(e.get(nsRef(store.DefaultNamespace, "dflt"))), snap(e.get(bare)))
	res, err := e.s.Extend(e.ctx, bare, e.now().Add(time.Hour))
	require.NoError(t, err)
	require.Equal(t, nsRef(store.DefaultNamespace, "dflt"), res.Correlation.Ref())
	e.deliver(bare, reply("r"), store.DeliverCompleted)
	require.Equal(t, store.StateCompleted, e.get(ref("dflt")).State)

	e.deliver(store.Ref{ID: "dflt-early"}, reply("r"), store.DeliverBuffered)
	res2, err := e.s.Register(e.ctx, &store.Correlation{ID: "dflt-early", Namespace: store.DefaultNamespace, Timeout: time.Minute})
	require.NoError(t, err)
	require.Equal(t, 1, res2.EarlyApplied, "an early reply to the bare ID waits in the default namespace")
}
