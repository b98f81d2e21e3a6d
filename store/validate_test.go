package store_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/corrstore/corrstore/store"
)

func requireField(t *testing.T, err, sentinel error, field string) {
	t.Helper()
	require.ErrorIs(t, err, sentinel)
	var fe *store.FieldError
	require.ErrorAs(t, err, &fe)
	require.Equal(t, field, fe.Field, "%v", err)
	require.NotEmpty(t, fe.Reason)
	require.Contains(t, err.Error(), field, "the message names the field")
}

func TestDeriveID(t *testing.T) {
	a := store.DeriveID("ns", "key")
	require.Equal(t, a, store.DeriveID("ns", "key"), "deterministic")
	require.NotEqual(t, a, store.DeriveID("ns2", "key"))
	require.NotEqual(t, a, store.DeriveID("ns", "key2"))
	require.NotEqual(t, store.DeriveID("ab", "c"), store.DeriveID("a", "bc"), "namespace and key are separated")
	u, err := uuid.Parse(a)
	require.NoError(t, err)
	require.Equal(t, uuid.Version(5), u.Version())
	require.NoError(t, store.ValidateID(a))
}

func TestNewID(t *testing.T) {
	prev := ""
	for range 100 {
		id := store.NewID()
		u, err := uuid.Parse(id)
		require.NoError(t, err)
		require.Equal(t, uuid.Version(7), u.Version())
		require.NoError(t, store.ValidateID(id))
		require.Greater(t, id, prev, "time-ordered")
		prev = id
	}
}

func TestValidateID(t *testing.T) {
	for _, ok := range []string{"a", "A-Z_a.z:0-9", strings.Repeat("x", store.MaxIDLen)} {
		require.NoError(t, store.ValidateID(ok), ok)
	}
	for _, bad := range []string{"", strings.Repeat("x", store.MaxIDLen+1), "a b", "a/b", "a\x00", "é", "a+b", "a#b"} {
		requireField(t, store.ValidateID(bad), store.ErrInvalid, "id")
	}
}

func TestValidateNamespace(t *testing.T) {
	for _, ok := range []string{"default", "a", "a-b_c0", strings.Repeat("n", store.MaxNamespaceLen)} {
		require.NoError(t, store.ValidateNamespace(ok), ok)
	}
	for _, bad := range []string{"", "A", "a.b", "a:b", "a b", strings.Repeat("n", store.MaxNamespaceLen+1)} {
		requireField(t, store.ValidateNamespace(bad), store.ErrInvalid, "namespace")
	}
}

func TestPrepareFillsIn(t *testing.T) {
	in := &store.Correlation{ID: "p", Timeout: 90 * time.Second, Labels: map[string]string{}}
	orig := in.Clone()
	c, err := store.Prepare(in, t0, lim)
	require.NoError(t, err)
	require.Equal(t, orig, in, "the input is not modified")
	require.Equal(t, store.DefaultNamespace, c.Namespace)
	require.Equal(t, store.PatternSingle, c.Pattern)
	require.Equal(t, t0.Add(90*time.Second), c.Deadline)
	require.Zero(t, c.Timeout)
	require.Nil(t, c.Labels, "empty labels are nil")
	require.Equal(t, store.StatePending, c.State)
	require.Equal(t, int64(1), c.Version)
	require.Equal(t, t0, c.CreatedAt)
	require.Equal(t, t0, c.UpdatedAt)
	require.Equal(t, store.Dispatch{State: store.DispatchNone}, c.Dispatch)
	require.Len(t, c.Fingerprint, 32)
	require.Equal(t, []store.EventType{store.EventRegistered}, eventTypes(c))

	c, err = store.Prepare(&store.Correlation{}, t0, lim)
	require.NoError(t, err)
	require.Equal(t, t0.Add(lim.DefaultTimeout), c.Deadline)
	_, err = uuid.Parse(c.ID)
	require.NoError(t, err, "a generated ID")

	c, err = store.Prepare(&store.Correlation{Namespace: "n", IdempotencyKey: "k"}, t0, lim)
	require.NoError(t, err)
	require.Equal(t, store.DeriveID("n", "k"), c.ID)
}

func TestPrepareClearsStoreFields(t *testing.T) {
	in := &store.Correlation{ID: "p", State: store.StateCompleted, Outcome: &store.Outcome{State: store.StateCompleted},
		Replies: []store.Reply{{ID: "r"}}, Late: []store.Reply{{ID: "l"}}, LateCount: 3, DuplicateCount: 4,
		Dispatch: store.Dispatch{State: store.DispatchDead, Attempts: 9}, Version: 42, Fingerprint: "forged",
		Events: []store.TimelineEvent{{Type: store.EventOutcome}}, EventsDropped: 7}
	c, err := store.Prepare(in, t0, lim)
	require.NoError(t, err)
	require.Equal(t, store.StatePending, c.State)
	require.Nil(t, c.Outcome)
	require.Empty(t, c.Replies)
	require.Empty(t, c.Late)
	require.Zero(t, c.LateCount+c.DuplicateCount+c.EventsDropped)
	require.Equal(t, store.Dispatch{State: store.DispatchNone}, c.Dispatch)
	require.Equal(t, int64(1), c.Version)
	require.NotEqual(t, "forged", c.Fingerprint)
	require.Len(t, c.Events, 1)
}

func TestPrepareRejects(t *testing.T) {
	l := lim
	l.MaxReplies = 10
	l.MaxTimeout = time.Hour
	for _, tc := range []struct {
		name     string
		c        *store.Correlation
		sentinel error
		field    string
	}{
		{"nil", nil, store.ErrInvalid, "correlation"},
		{"id", &store.Correlation{ID: "a b"}, store.ErrInvalid, "id"},
		{"namespace", &store.Correlation{Namespace: "NS"}, store.ErrInvalid, "namespace"},
		{"idempotency key", &store.Correlation{IdempotencyKey: strings.Repeat("k", store.MaxIdempotencyLen+1)}, store.ErrInvalid, "idempotency_key"},
		{"pattern", &store.Correlation{Pattern: "fanout"}, store.ErrInvalid, "pattern"},
		{"gather expect 0", &store.Correlation{Pattern: store.PatternGather}, store.ErrInvalid, "expect"},
		{"gather expect > max replies", &store.Correlation{Pattern: store.PatternGather, Expect: 11}, store.ErrInvalid, "expect"},
		{"gather quorum > expect", &store.Correlation{Pattern: store.PatternGather, Expect: 2, Quorum: 3}, store.ErrInvalid, "quorum"},
		{"gather quorum < 0", &store.Correlation{Pattern: store.PatternGather, Expect: 2, Quorum: -1}, store.ErrInvalid, "quorum"},
		{"single expect", &store.Correlation{Expect: 1}, store.ErrInvalid, "expect"},
		{"stream quorum", &store.Correlation{Pattern: store.PatternStream, Quorum: 1}, store.ErrInvalid, "quorum"},
		{"negative timeout", &store.Correlation{Timeout: -1}, store.ErrInvalid, "timeout"},
		{"timeout and deadline", &store.Correlation{Timeout: time.Second, Deadline: t0.Add(time.Minute)}, store.ErrInvalid, "timeout"},
		{"deadline now", &store.Correlation{Deadline: t0}, store.ErrInvalid, "deadline"},
		{"deadline past", &store.Correlation{Deadline: t0.Add(-time.Second)}, store.ErrInvalid, "deadline"},
		{"deadline too far", &store.Correlation{Deadline: t0.Add(time.Hour + 1)}, store.ErrInvalid, "deadline"},
		{"timeout too long", &store.Correlation{Timeout: time.Hour + 1}, store.ErrInvalid, "timeout"},
		{"destination", &store.Correlation{Destination: strings.Repeat("d", store.MaxAddressLen+1)}, store.ErrInvalid, "destination"},
		{"reply_to", &store.Correlation{ReplyTo: strings.Repeat("r", store.MaxAddressLen+1)}, store.ErrInvalid, "reply_to"},
		{"owner", &store.Correlation{Owner: strings.Repeat("o", store.MaxAddressLen+1)}, store.ErrInvalid, "owner"},
		{"handler", &store.Correlation{Callback: store.Callback{Handler: strings.Repeat("h", store.MaxHandlerLen+1)}}, store.ErrInvalid, "callback.handler"},
		{"callback data", &store.Correlation{Callback: store.Callback{Handler: "h", Data: make([]byte, store.MaxCallbackData+1)}}, store.ErrTooLarge, "callback.data"},
		{"data without handler", &store.Correlation{Callback: store.Callback{Data: []byte("x")}}, store.ErrInvalid, "callback.handler"},
		{"labels count", &store.Correlation{Labels: manyLabels(store.MaxLabels + 1)}, store.ErrTooLarge, "labels"},
		{"label empty key", &store.Correlation{Labels: map[string]string{"": "v"}}, store.ErrInvalid, "labels"},
		{"label long key", &store.Correlation{Labels: map[string]string{strings.Repeat("k", store.MaxLabelLen+1): "v"}}, store.ErrInvalid, "labels." + strings.Repeat("k", 32) + "…"},
		{"label long value", &store.Correlation{Labels: map[string]string{"k": strings.Repeat("v", store.MaxLabelLen+1)}}, store.ErrInvalid, "labels.k"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := store.Prepare(tc.c, t0, l)
			require.Nil(t, c)
			requireField(t, err, tc.sentinel, tc.field)
		})
	}
}

func manyLabels(n int) map[string]string {
	m := make(map[string]string, n)
	for i := range n {
		m[fmt.Sprint("k", i)] = "v"
	}
	return m
}

func TestPrepareAcceptsLimits(t *testing.T) {
	l := lim
	l.MaxTimeout = time.Hour
	for _, c := range []*store.Correlation{
		{Deadline: t0.Add(time.Hour)},
		{Timeout: time.Hour},
		{Deadline: t0.Add(time.Nanosecond)},
		{Destination: strings.Repeat("d", store.MaxAddressLen), ReplyTo: strings.Repeat("r", store.MaxAddressLen), Owner: strings.Repeat("o", store.MaxAddressLen)},
		{Callback: store.Callback{Handler: strings.Repeat("h", store.MaxHandlerLen), Data: make([]byte, store.MaxCallbackData)}},
		{Labels: manyLabels(store.MaxLabels)},
		{Labels: map[string]string{strings.Repeat("k", store.MaxLabelLen): strings.Repeat("v", store.MaxLabelLen)}},
		{Pattern: store.PatternGather, Expect: l.MaxReplies, Quorum: l.MaxReplies},
		{IdempotencyKey: strings.Repeat("k", store.MaxIdempotencyLen)},
	} {
		_, err := store.Prepare(c, t0, l)
		require.NoError(t, err, "%+v", c)
	}
}

func TestFingerprint(t *testing.T) {
	base := func() *store.Correlation {
		return &store.Correlation{ID: "f", Namespace: "ns", Pattern: store.PatternGather, Expect: 3, Quorum: 2,
			Destination: "d", ReplyTo: "r", Owner: "o", Callback: store.Callback{Handler: "h", Data: []byte("x")},
			Labels: map[string]string{"a": "1", "b": "2"}, IdempotencyKey: "k"}
	}
	fp := func(c *store.Correlation, at time.Time) string {
		t.Helper()
		p, err := store.Prepare(c, at, lim)
		require.NoError(t, err)
		return p.Fingerprint
	}
	want := fp(base(), t0)

	// What is not content: the deadline, the time, the ID (the record's key), label order.
	same := []func(c *store.Correlation){
		func(c *store.Correlation) { c.Timeout = time.Hour },
		func(c *store.Correlation) { c.Deadline = t0.Add(time.Hour) },
		func(c *store.Correlation) { c.ID = "other-id" },
		func(c *store.Correlation) { c.ID = "" },
		func(c *store.Correlation) { c.Labels = map[string]string{"b": "2", "a": "1"} },
	}
	for i, change := range same {
		c := base()
		change(c)
		require.Equal(t, want, fp(c, t0.Add(time.Minute)), "same content %d", i)
	}
	differs := []func(c *store.Correlation){
		func(c *store.Correlation) { c.Namespace = "ns2" },
		func(c *store.Correlation) { c.Expect = 4 },
		func(c *store.Correlation) { c.Quorum = 1 },
		func(c *store.Correlation) { c.Optional = true },
		func(c *store.Correlation) { c.Destination = "d2" },
		func(c *store.Correlation) { c.ReplyTo = "r2" },
		func(c *store.Correlation) { c.Owner = "o2" },
		func(c *store.Correlation) { c.Callback.Handler = "h2" },
		func(c *store.Correlation) { c.Callback.Data = []byte("y") },
		func(c *store.Correlation) { c.Labels = map[string]string{"a": "1"} },
		func(c *store.Correlation) { c.Labels = map[string]string{"a": "1", "b": "3"} },
		func(c *store.Correlation) { c.IdempotencyKey = "k2" },
		func(c *store.Correlation) { c.Pattern, c.Expect, c.Quorum = store.PatternStream, 0, 0 },
	}
	for i, change := range differs {
		c := base()
		change(c)
		require.NotEqual(t, want, fp(c, t0), "other content %d", i)
	}
}

func TestValidateReply(t *testing.T) {
	l := lim
	l.MaxReplies = 5
	l.MaxBodyBytes = 3
	require.NoError(t, store.ValidateReply(store.Reply{ID: strings.Repeat("i", store.MaxReplyFieldLen),
		From: strings.Repeat("f", store.MaxReplyFieldLen), Error: strings.Repeat("e", store.MaxReplyErrorLen), Seq: 4, Body: []byte("abc")}, l))
	for _, tc := range []struct {
		r        store.Reply
		sentinel error
		field    string
	}{
		{store.Reply{ID: strings.Repeat("i", store.MaxReplyFieldLen+1)}, store.ErrInvalid, "reply.id"},
		{store.Reply{From: strings.Repeat("f", store.MaxReplyFieldLen+1)}, store.ErrInvalid, "reply.from"},
		{store.Reply{Error: strings.Repeat("e", store.MaxReplyErrorLen+1)}, store.ErrInvalid, "reply.error"},
		{store.Reply{Seq: -1}, store.ErrInvalid, "reply.seq"},
		{store.Reply{Seq: 5}, store.ErrInvalid, "reply.seq"},
		{store.Reply{Body: []byte("abcd")}, store.ErrTooLarge, "reply.body"},
	} {
		requireField(t, store.ValidateReply(tc.r, l), tc.sentinel, tc.field)
	}
}

func TestValidateReason(t *testing.T) {
	require.NoError(t, store.ValidateReason(""))
	require.NoError(t, store.ValidateReason(strings.Repeat("r", store.MaxReasonLen)))
	requireField(t, store.ValidateReason(strings.Repeat("r", store.MaxReasonLen+1)), store.ErrInvalid, "reason")
}

// A retry of a registration runs in another span: its traceparent label
// differs, and it must still be the same registration.
func TestFingerprintLeavesOutTraceparent(t *testing.T) {
	lim := store.Limits{}.WithDefaults()
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	prep := func(labels map[string]string) string {
		c, err := store.Prepare(&store.Correlation{ID: "x", Labels: labels}, now, lim)
		require.NoError(t, err)
		return c.Fingerprint
	}
	a := prep(map[string]string{"k": "v", store.TraceparentLabel: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"})
	b := prep(map[string]string{"k": "v", store.TraceparentLabel: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"})
	require.Equal(t, a, b)
	require.Equal(t, a, prep(map[string]string{"k": "v"}))
	require.NotEqual(t, a, prep(map[string]string{"k": "w"}), "other labels still count")
}
