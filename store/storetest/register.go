package storetest

import (
	"fmt"
	"maps"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/corrstore/corrstore/store"
)

func registerTests() []testCase {
	return []testCase{
		{name: "Created", run: testRegisterCreated},
		{name: "Defaults", limits: store.Limits{DefaultTimeout: 45 * time.Second}, run: testRegisterDefaults},
		{name: "ExplicitDeadline", run: testRegisterExplicitDeadline},
		{name: "GeneratedID", run: testRegisterGeneratedID},
		{name: "ExistingSameContent", run: testRegisterExisting},
		{name: "ExistingAfterChange", run: testRegisterExistingAfterChange},
		{name: "Conflict", run: testRegisterConflict},
		{name: "IdempotencyKey", run: testRegisterIdempotencyKey},
		{name: "IdempotencyKeyWithID", run: testRegisterIdempotencyKeyWithID},
		{name: "ConcurrentSameID", run: testRegisterConcurrent},
		{name: "ReturnsCopies", run: testRegisterReturnsCopies},
		{name: "Rejected", limits: store.Limits{MaxTimeout: 48 * time.Hour, MaxReplies: 10}, run: testRegisterRejected},
		{name: "Boundaries", limits: store.Limits{MaxTimeout: 48 * time.Hour, MaxReplies: 10}, run: testRegisterBoundaries},
		{name: "Nonce", run: testRegisterNonce},
	}
}

// The nonce tells one registration of a ref from a later one (reply tokens
// are bound to it): drawn at registration, kept as long as the record is.
func testRegisterNonce(t *testing.T, e *env) {
	first := e.register(&store.Correlation{ID: "reg-nonce", Namespace: "nonce", IdempotencyKey: "nk", Timeout: time.Minute})
	require.Len(t, first.Nonce, 22, "128 bits, unpadded base64")
	r := first.Ref()
	require.Equal(t, first.Nonce, e.get(r).Nonce)
	other := e.register(&store.Correlation{ID: "reg-nonce", Timeout: time.Minute})
	require.NotEqual(t, first.Nonce, other.Nonce, "another ref, another registration")

	e.clock.Add(time.Second)
	for _, again := range []*store.Correlation{
		{ID: "reg-nonce", Namespace: "nonce", IdempotencyKey: "nk", Timeout: time.Minute},
		{Namespace: "nonce", IdempotencyKey: "nk", Timeout: time.Minute},
	} {
		res, err := e.s.Register(e.ctx, again)
		require.NoError(t, err)
		require.False(t, res.Created)
		require.Equal(t, first.Nonce, res.Correlation.Nonce, "an existing registration keeps its nonce")
	}
	e.deliver(r, reply("r"), store.DeliverCompleted)
	_, err := e.s.Extend(e.ctx, ref("reg-nonce"), e.now().Add(time.Hour))
	require.NoError(t, err)
	require.Equal(t, first.Nonce, e.get(r).Nonce, "changes keep the nonce")
	require.Equal(t, other.Nonce, e.get(ref("reg-nonce")).Nonce)

	e.clock.Add(time.Second)
	n, err := e.s.Purge(e.ctx, e.now(), 10)
	require.NoError(t, err)
	require.Equal(t, 1, n)
	again := e.register(&store.Correlation{ID: "reg-nonce", Namespace: "nonce", IdempotencyKey: "nk", Timeout: time.Minute})
	require.Len(t, again.Nonce, 22)
	require.NotEqual(t, first.Nonce, again.Nonce, "a new registration of the same ref after a purge")
	require.Equal(t, again.Nonce, e.get(r).Nonce)
}

func testRegisterCreated(t *testing.T, e *env) {
	now := e.now()
	in := &store.Correlation{
		ID:          "reg-created",
		Namespace:   "billing",
		Timeout:     90 * time.Second,
		Destination: "svc.payments",
		ReplyTo:     "svc.orders.replies",
		Owner:       "orders-7f9c",
		Callback:    store.Callback{Handler: "orders.resume", Data: []byte{0, 1, 2, 0xff}},
		Labels:      map[string]string{"workflow": "wf-1", "step": "charge"},
	}
	orig := in.Clone()
	res, err := e.s.Register(e.ctx, in)
	require.NoError(t, err)
	require.True(t, res.Created)
	require.Zero(t, res.EarlyApplied)
	require.Equal(t, orig, in, "Register must not modify its argument")

	for name, c := range map[string]*store.Correlation{"result": res.Correlation, "get": e.get(nsRef("billing", "reg-created"))} {
		t.Run(name, func(t *testing.T) {
			require.Equal(t, "reg-created", c.ID)
			require.Equal(t, "billing", c.Namespace)
			require.Equal(t, store.PatternSingle, c.Pattern)
			require.Equal(t, store.StatePending, c.State)
			require.Nil(t, c.Outcome)
			require.Equal(t, int64(1), c.Version)
			requireTime(t, now, c.CreatedAt, "created_at")
			requireTime(t, now, c.UpdatedAt, "updated_at")
			requireTime(t, now.Add(90*time.Second), c.Deadline, "deadline = now + timeout")
			require.Zero(t, c.Timeout, "timeout is an input only")
			require.Equal(t, "svc.payments", c.Destination)
			require.Equal(t, "svc.orders.replies", c.ReplyTo)
			require.Equal(t, "orders-7f9c", c.Owner)
			require.Equal(t, "orders.resume", c.Callback.Handler)
			require.Equal(t, []byte{0, 1, 2, 0xff}, c.Callback.Data)
			require.Equal(t, map[string]string{"workflow": "wf-1", "step": "charge"}, c.Labels)
			require.Equal(t, store.DispatchNone, c.Dispatch.State)
			require.Empty(t, c.Replies)
			require.Empty(t, c.Late)
			require.NotEmpty(t, c.Fingerprint)
			require.Len(t, c.Events, 1)
			require.Equal(t, store.EventRegistered, c.Events[0].Type)
			requireTime(t, now, c.Events[0].At)
		})
	}
}

func testRegisterDefaults(t *testing.T, e *env) {
	now := e.now()
	c := e.register(&store.Correlation{ID: "reg-defaults"})
	require.Equal(t, store.DefaultNamespace, c.Namespace)
	require.Equal(t, store.PatternSingle, c.Pattern)
	requireTime(t, now.Add(45*time.Second), c.Deadline, "the configured DefaultTimeout applies")
	requireTime(t, now.Add(45*time.Second), e.get(ref("reg-defaults")).Deadline)
}

func testRegisterExplicitDeadline(t *testing.T, e *env) {
	e.clock.Add(time.Hour)
	deadline := e.now().Add(17*time.Minute + 3*time.Millisecond)
	c := e.register(&store.Correlation{ID: "reg-deadline", Deadline: deadline})
	requireTime(t, deadline, c.Deadline)
	requireTime(t, deadline, e.get(ref("reg-deadline")).Deadline)
	requireTime(t, e.now(), c.CreatedAt, "created_at comes from the store's clock")
}

func testRegisterGeneratedID(t *testing.T, e *env) {
	a := e.register(&store.Correlation{Timeout: time.Minute})
	b := e.register(&store.Correlation{Timeout: time.Minute})
	require.NotEqual(t, a.ID, b.ID)
	for _, id := range []string{a.ID, b.ID} {
		u, err := uuid.Parse(id)
		require.NoError(t, err, "a generated ID is a UUID")
		require.Equal(t, uuid.Version(7), u.Version(), "a generated ID is a UUIDv7")
		e.get(ref(id))
	}
}

func testRegisterExisting(t *testing.T, e *env) {
	first := e.register(&store.Correlation{ID: "reg-existing", Pattern: store.PatternGather, Expect: 2,
		Destination: "d", Labels: map[string]string{"a": "1", "b": "2"}, Timeout: time.Minute})
	e.clock.Add(5 * time.Second)

	// The deadline is not part of the identity: a retry computes its own.
	for i, again := range []*store.Correlation{
		{ID: "reg-existing", Pattern: store.PatternGather, Expect: 2, Destination: "d",
			Labels: map[string]string{"b": "2", "a": "1"}, Timeout: time.Minute},
		{ID: "reg-existing", Pattern: store.PatternGather, Expect: 2, Destination: "d",
			Labels: map[string]string{"a": "1", "b": "2"}, Timeout: 3 * time.Hour},
		{ID: "reg-existing", Pattern: store.PatternGather, Expect: 2, Destination: "d",
			Labels: map[string]string{"a": "1", "b": "2"}, Deadline: e.now().Add(time.Hour)},
	} {
		res, err := e.s.Register(e.ctx, again)
		require.NoError(t, err, "retry %d", i)
		require.False(t, res.Created, "retry %d", i)
		require.NotNil(t, res.Correlation)
		require.Equal(t, int64(1), res.Correlation.Version)
		requireTime(t, first.CreatedAt, res.Correlation.CreatedAt, "the stored record is returned")
		requireTime(t, first.Deadline, res.Correlation.Deadline, "retry %d must not move the deadline", i)
	}
	got := e.get(ref("reg-existing"))
	require.Equal(t, snap(first), snap(got))
}

func testRegisterExistingAfterChange(t *testing.T, e *env) {
	e.register(single("reg-changed"))
	e.clock.Add(time.Second)
	e.deliver(ref("reg-changed"), reply("r1"), store.DeliverCompleted)
	want := e.get(ref("reg-changed"))

	e.clock.Add(time.Second)
	res, err := e.s.Register(e.ctx, single("reg-changed"))
	require.NoError(t, err)
	require.False(t, res.Created)
	require.Equal(t, store.StateCompleted, res.Correlation.State, "the stored record is returned as it is now")
	require.Equal(t, want.Version, res.Correlation.Version)
	require.Equal(t, 1, res.Correlation.Held.Count)
	require.Equal(t, snap(want), snap(e.get(ref("reg-changed"))), "re-registering must change nothing")
}

func testRegisterConflict(t *testing.T, e *env) {
	base := func(id string) *store.Correlation {
		return &store.Correlation{ID: id, Timeout: time.Minute, Destination: "dest", ReplyTo: "rt", Owner: "me",
			Callback: store.Callback{Handler: "h", Data: []byte("data")}, Labels: map[string]string{"k": "v"}}
	}
	for i, change := range []func(c *store.Correlation){
		func(c *store.Correlation) { c.Destination = "other" },
		func(c *store.Correlation) { c.ReplyTo = "other" },
		func(c *store.Correlation) { c.Owner = "other" },
		func(c *store.Correlation) { c.Callback.Handler = "other" },
		func(c *store.Correlation) { c.Callback.Data = []byte("other") },
		func(c *store.Correlation) { c.Labels = map[string]string{"k": "other"} },
		func(c *store.Correlation) { c.Labels = nil },
		func(c *store.Correlation) { c.Optional = true },
		func(c *store.Correlation) { c.Pattern = store.PatternStream },
		func(c *store.Correlation) { c.Pattern, c.Expect = store.PatternGather, 1 },
		// (Another namespace is another correlation: see Namespaces.)
	} {
		id := fmt.Sprintf("reg-conflict-%d", i)
		first := e.register(base(id))
		other := base(id)
		change(other)
		res, err := e.s.Register(e.ctx, other)
		require.ErrorIs(t, err, store.ErrConflict, "change %d", i)
		require.Nil(t, res.Correlation)
		got := e.get(ref(id))
		require.Equal(t, snap(first), snap(got), "a conflicting registration must change nothing")
		require.Equal(t, "dest", got.Destination)
	}
}

func testRegisterIdempotencyKey(t *testing.T, e *env) {
	in := &store.Correlation{Namespace: "shop", IdempotencyKey: "order-42/charge", Timeout: time.Minute, Destination: "pay"}
	first := e.register(in)
	require.Equal(t, store.DeriveID("shop", "order-42/charge"), first.ID, "the ID is derived from namespace and key")
	require.Equal(t, "order-42/charge", first.IdempotencyKey)

	e.clock.Add(10 * time.Second)
	retry := &store.Correlation{Namespace: "shop", IdempotencyKey: "order-42/charge", Timeout: time.Hour, Destination: "pay"}
	res, err := e.s.Register(e.ctx, retry)
	require.NoError(t, err)
	require.False(t, res.Created, "a retry with the same key is Existing")
	require.Equal(t, first.ID, res.Correlation.ID)
	requireTime(t, first.Deadline, res.Correlation.Deadline, "a retry must not move the deadline")
	require.Equal(t, int64(1), res.Correlation.Version)

	other := &store.Correlation{Namespace: "shop", IdempotencyKey: "order-42/charge", Timeout: time.Minute, Destination: "refund"}
	_, err = e.s.Register(e.ctx, other)
	require.ErrorIs(t, err, store.ErrConflict, "same key, other content")

	// The same key in another namespace is another correlation.
	elsewhere := e.register(&store.Correlation{Namespace: "shop-eu", IdempotencyKey: "order-42/charge", Timeout: time.Minute, Destination: "pay"})
	require.Equal(t, store.DeriveID("shop-eu", "order-42/charge"), elsewhere.ID)
	require.NotEqual(t, first.ID, elsewhere.ID)
	require.Equal(t, "pay", e.get(first.Ref()).Destination)
}

func testRegisterIdempotencyKeyWithID(t *testing.T, e *env) {
	first := e.register(&store.Correlation{ID: "reg-keyed", IdempotencyKey: "k-1", Timeout: time.Minute, Destination: "x"})
	e.clock.Add(time.Second)
	// A retry that names only the key lands on the record the key was first
	// registered with.
	res, err := e.s.Register(e.ctx, &store.Correlation{IdempotencyKey: "k-1", Timeout: time.Minute, Destination: "x"})
	require.NoError(t, err)
	require.False(t, res.Created)
	require.Equal(t, first.ID, res.Correlation.ID)
	_, err = e.s.Register(e.ctx, &store.Correlation{IdempotencyKey: "k-1", Timeout: time.Minute, Destination: "y"})
	require.ErrorIs(t, err, store.ErrConflict)
	e.requireGone(ref(store.DeriveID(store.DefaultNamespace, "k-1")))
}

func testRegisterConcurrent(t *testing.T, e *env) {
	const n = 16
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		created int
		errs    []error
	)
	for range n {
		wg.Go(func() {
			res, err := e.s.Register(e.ctx, &store.Correlation{ID: "reg-race", Destination: "d", Timeout: time.Minute})
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
			} else if res.Created {
				created++
			}
		})
	}
	wg.Wait()
	require.Empty(t, errs)
	require.Equal(t, 1, created, "exactly one of the concurrent registrations creates the record")
	require.Equal(t, int64(1), e.get(ref("reg-race")).Version)
}

func testRegisterReturnsCopies(t *testing.T, e *env) {
	in := &store.Correlation{ID: "reg-copy", Labels: map[string]string{"k": "v"},
		Callback: store.Callback{Handler: "h", Data: []byte("data")}, Timeout: time.Minute}
	res, err := e.s.Register(e.ctx, in)
	require.NoError(t, err)
	in.Labels["k"] = "changed by caller"
	in.Callback.Data[0] = 'X'
	res.Correlation.Labels["k"] = "changed"
	res.Correlation.Events[0].Detail = "changed"
	got := e.get(ref("reg-copy"))
	got.Labels["k"] = "changed again"
	got = e.get(ref("reg-copy"))
	require.Equal(t, "v", got.Labels["k"], "the store keeps its own copy")
	require.Equal(t, []byte("data"), got.Callback.Data)
	require.NotEqual(t, "changed", got.Events[0].Detail)
}

func labels(n int) map[string]string {
	m := make(map[string]string, n)
	for i := range n {
		m[fmt.Sprintf("k%02d", i)] = "v"
	}
	return m
}

func testRegisterRejected(t *testing.T, e *env) {
	// Limits: MaxTimeout 48h, MaxReplies 10.
	now := e.now()
	cases := []struct {
		name     string
		c        store.Correlation // ID is set per case unless idSet
		idSet    bool
		sentinel error
		field    string
	}{
		{"id too long", store.Correlation{ID: strings.Repeat("a", store.MaxIDLen+1)}, true, store.ErrInvalid, "id"},
		{"id bad char space", store.Correlation{ID: "has space"}, true, store.ErrInvalid, "id"},
		{"id bad char slash", store.Correlation{ID: "a/b"}, true, store.ErrInvalid, "id"},
		{"id bad char unicode", store.Correlation{ID: "caf\u00e9"}, true, store.ErrInvalid, "id"},
		{"namespace uppercase", store.Correlation{Namespace: "Billing"}, false, store.ErrInvalid, "namespace"},
		{"namespace dot", store.Correlation{Namespace: "a.b"}, false, store.ErrInvalid, "namespace"},
		{"namespace too long", store.Correlation{Namespace: strings.Repeat("n", store.MaxNamespaceLen+1)}, false, store.ErrInvalid, "namespace"},
		{"pattern unknown", store.Correlation{Pattern: "broadcast"}, false, store.ErrInvalid, "pattern"},
		{"gather without expect", store.Correlation{Pattern: store.PatternGather}, false, store.ErrInvalid, "expect"},
		{"gather expect above max replies", store.Correlation{Pattern: store.PatternGather, Expect: 11}, false, store.ErrInvalid, "expect"},
		{"gather quorum above expect", store.Correlation{Pattern: store.PatternGather, Expect: 3, Quorum: 4}, false, store.ErrInvalid, "quorum"},
		{"gather negative quorum", store.Correlation{Pattern: store.PatternGather, Expect: 3, Quorum: -1}, false, store.ErrInvalid, "quorum"},
		{"single with expect", store.Correlation{Expect: 2}, false, store.ErrInvalid, "expect"},
		{"stream with quorum", store.Correlation{Pattern: store.PatternStream, Quorum: 1}, false, store.ErrInvalid, "quorum"},
		{"negative timeout", store.Correlation{Timeout: -time.Second}, false, store.ErrInvalid, "timeout"},
		{"timeout and deadline", store.Correlation{Timeout: time.Minute, Deadline: now.Add(time.Minute)}, false, store.ErrInvalid, "timeout"},
		{"deadline now", store.Correlation{Deadline: now}, false, store.ErrInvalid, "deadline"},
		{"deadline past", store.Correlation{Deadline: now.Add(-time.Hour)}, false, store.ErrInvalid, "deadline"},
		{"deadline beyond max timeout", store.Correlation{Deadline: now.Add(48*time.Hour + time.Nanosecond)}, false, store.ErrInvalid, "deadline"},
		{"timeout beyond max timeout", store.Correlation{Timeout: 49 * time.Hour}, false, store.ErrInvalid, "timeout"},
		{"destination too long", store.Correlation{Destination: strings.Repeat("d", store.MaxAddressLen+1)}, false, store.ErrInvalid, "destination"},
		{"reply_to too long", store.Correlation{ReplyTo: strings.Repeat("r", store.MaxAddressLen+1)}, false, store.ErrInvalid, "reply_to"},
		{"owner too long", store.Correlation{Owner: strings.Repeat("o", store.MaxAddressLen+1)}, false, store.ErrInvalid, "owner"},
		{"handler too long", store.Correlation{Callback: store.Callback{Handler: strings.Repeat("h", store.MaxHandlerLen+1)}}, false, store.ErrInvalid, "callback.handler"},
		{"callback data too large", store.Correlation{Callback: store.Callback{Handler: "h", Data: make([]byte, store.MaxCallbackData+1)}}, false, store.ErrTooLarge, "callback.data"},
		{"callback data without handler", store.Correlation{Callback: store.Callback{Data: []byte("x")}}, false, store.ErrInvalid, "callback.handler"},
		{"too many labels", store.Correlation{Labels: labels(store.MaxLabels + 1)}, false, store.ErrTooLarge, "labels"},
		{"empty label key", store.Correlation{Labels: map[string]string{"": "v"}}, false, store.ErrInvalid, "labels"},
		{"label value too long", store.Correlation{Labels: map[string]string{"k": strings.Repeat("v", store.MaxLabelLen+1)}}, false, store.ErrInvalid, "labels.k"},
		{"idempotency key too long", store.Correlation{IdempotencyKey: strings.Repeat("i", store.MaxIdempotencyLen+1)}, false, store.ErrInvalid, "idempotency_key"},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := tc.c
			if !tc.idSet {
				c.ID = fmt.Sprintf("reg-rejected-%d", i)
			}
			res, err := e.s.Register(e.ctx, &c)
			requireFieldError(t, err, tc.sentinel, tc.field)
			require.Nil(t, res.Correlation)
			if !tc.idSet {
				e.in(t).requireGone(ref(c.ID))
			}
		})
	}
	// Nothing was stored, under any ID.
	require.Empty(t, e.listAll(store.Filter{}))
	require.Zero(t, e.stats("").Total().States[store.StatePending])
}

func testRegisterBoundaries(t *testing.T, e *env) {
	// Limits: MaxTimeout 48h, MaxReplies 10. Every value at its limit is accepted.
	now := e.now()
	longLabels := labels(store.MaxLabels)
	longLabels[strings.Repeat("k", store.MaxLabelLen)] = strings.Repeat("v", store.MaxLabelLen)
	delete(longLabels, "k00")
	cases := []store.Correlation{
		{ID: strings.Repeat("a", store.MaxIDLen)},
		{ID: "AZaz09._:-"},
		{ID: "bound-ns", Namespace: strings.Repeat("n", store.MaxNamespaceLen)},
		{ID: "bound-ns-chars", Namespace: "a-z_0-9"},
		{ID: "bound-deadline", Deadline: now.Add(48 * time.Hour)},
		{ID: "bound-timeout", Timeout: 48 * time.Hour},
		{ID: "bound-addresses", Destination: strings.Repeat("d", store.MaxAddressLen),
			ReplyTo: strings.Repeat("r", store.MaxAddressLen), Owner: strings.Repeat("o", store.MaxAddressLen)},
		{ID: "bound-callback", Callback: store.Callback{Handler: strings.Repeat("h", store.MaxHandlerLen), Data: make([]byte, store.MaxCallbackData)}},
		{ID: "bound-labels", Labels: longLabels},
		{ID: "bound-gather", Pattern: store.PatternGather, Expect: 10, Quorum: 10},
		{ID: "bound-key", IdempotencyKey: strings.Repeat("i", store.MaxIdempotencyLen)},
	}
	for _, c := range cases {
		in := c
		got := e.register(&in)
		require.Equal(t, c.ID, got.ID)
		stored := e.get(c.Ref())
		require.Equal(t, cmpOrDefault(c.Namespace), stored.Namespace)
		require.Equal(t, c.Destination, stored.Destination)
		require.Equal(t, len(c.Callback.Data), len(stored.Callback.Data))
		if len(c.Labels) > 0 {
			require.True(t, maps.Equal(c.Labels, stored.Labels), "labels round-trip")
		}
	}
	requireTime(t, now.Add(48*time.Hour), e.get(ref("bound-timeout")).Deadline)
}

func cmpOrDefault(ns string) string {
	if ns == "" {
		return store.DefaultNamespace
	}
	return ns
}
