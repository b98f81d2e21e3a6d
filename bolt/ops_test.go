package bolt_test

import (
	"context"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.etcd.io/bbolt"

	"github.com/corrstore/corrstore/bolt"
	"github.com/corrstore/corrstore/store"
)

// events collects what a subscription delivers until n events came.
func events(t *testing.T, ch <-chan store.Event, n int) []store.Event {
	t.Helper()
	var got []store.Event
	timeout := time.After(10 * time.Second)
	for len(got) < n {
		select {
		case e, ok := <-ch:
			require.True(t, ok, "subscription closed after %d events: %+v", len(got), got)
			got = append(got, e)
		case <-timeout:
			require.FailNow(t, "events missing", "got %d of %d: %+v", len(got), n, got)
		}
	}
	select {
	case e := <-ch:
		require.FailNow(t, "one event too many", "%+v", e)
	default:
	}
	return got
}

// Every change that raises a record's Version publishes one event of its
// kind (store.EventOf); a registration publishes none, and neither does a
// purge. A reply that finds the deadline passed stores the deadline outcome
// and the late reply in one change: one event, whose state is the outcome.
func TestEveryChangeHasAnEvent(t *testing.T) {
	clk := store.NewFakeClock(t0)
	s := open(t, bolt.Options{Clock: clk, NoSync: true})
	ctx := context.Background()
	sub, err := s.Subscribe(ctx)
	require.NoError(t, err)
	r := ref("shop", "ev-1")
	_, err = s.Register(ctx, &store.Correlation{ID: r.ID, Namespace: r.Namespace, Timeout: time.Minute,
		Callback: store.Callback{Handler: "h"}})
	require.NoError(t, err)
	_, err = s.Extend(ctx, r, t0.Add(2*time.Minute))
	require.NoError(t, err)
	clk.Set(t0.Add(2 * time.Minute)) // at the deadline: decided, whatever comes
	d, err := s.Deliver(ctx, r, store.Reply{Body: []byte(`"x"`)})
	require.NoError(t, err)
	require.Equal(t, store.DeliverLate, d.Status)
	require.Equal(t, store.StateTimedOut, d.Correlation.State)
	require.Equal(t, store.ReasonDeadline, d.Correlation.Outcome.Reason)
	claimed, err := s.ClaimDispatch(ctx, store.ClaimRequest{Instance: "i", Handlers: []string{"h"}, Now: clk.Now(), Lease: time.Minute, Limit: 10})
	require.NoError(t, err)
	require.Len(t, claimed, 1)
	_, err = s.NackDispatch(ctx, r, store.Claim{Instance: "i", Attempt: 1}, "down", clk.Now())
	require.NoError(t, err)
	_, err = s.ClaimDispatch(ctx, store.ClaimRequest{Instance: "i", Handlers: []string{"h"}, Now: clk.Now(), Lease: time.Minute, Limit: 10})
	require.NoError(t, err)
	_, err = s.AckDispatch(ctx, r, store.Claim{Instance: "i", Attempt: 2})
	require.NoError(t, err)
	_, err = s.Redispatch(ctx, r)
	require.NoError(t, err)
	n, err := s.Purge(ctx, t0.Add(time.Hour), 10)
	require.NoError(t, err)
	require.Zero(t, n, "its dispatch is pending again")

	got := events(t, sub, 7)
	want := []struct {
		kind    store.EventKind
		version int64
	}{
		{store.ChangeExtended, 2}, {store.ChangeOutcome, 4}, // 3: the deadline outcome, decided by the late reply's write
		{store.ChangeDispatch, 5}, {store.ChangeDispatch, 6}, {store.ChangeDispatch, 7}, {store.ChangeDispatch, 8},
		{store.ChangeDispatch, 9},
	}
	for i, e := range got {
		require.Equal(t, r, e.Ref())
		require.Equal(t, want[i].kind, e.Kind, "event %d: %+v", i, e)
		require.Equal(t, want[i].version, e.Version, "event %d: %+v", i, e)
	}
	require.True(t, got[0].Deadline.Equal(t0.Add(2*time.Minute)))
	require.Equal(t, store.StateTimedOut, got[1].State)
	require.Equal(t, store.ReasonDeadline, got[1].Outcome.Reason)
	require.Equal(t, store.DispatchPending, got[6].Dispatch)
	c, err := s.Get(ctx, r)
	require.NoError(t, err)
	require.EqualValues(t, 9, c.Version)
}

// Extend and Cancel at the deadline answer ErrNotPending, and the deadline
// outcome they found is stored (with its indexes: open's cleanup verifies
// them) and announced.
func TestRefusedStepStoresTheDeadlineOutcome(t *testing.T) {
	clk := store.NewFakeClock(t0)
	s := open(t, bolt.Options{Clock: clk, NoSync: true})
	ctx := context.Background()
	sub, err := s.Subscribe(ctx)
	require.NoError(t, err)
	for _, id := range []string{"ex", "ca"} {
		_, err := s.Register(ctx, &store.Correlation{ID: id, Timeout: time.Minute, Pattern: store.PatternGather, Expect: 2, Quorum: 1})
		require.NoError(t, err)
		_, err = s.Deliver(ctx, store.RefOf(id), store.Reply{From: "a"})
		require.NoError(t, err)
	}
	events(t, sub, 2)
	clk.Add(time.Minute)
	_, err = s.Extend(ctx, store.RefOf("ex"), clk.Now().Add(time.Hour))
	require.ErrorIs(t, err, store.ErrNotPending)
	_, err = s.Cancel(ctx, store.RefOf("ca"), "too late")
	require.ErrorIs(t, err, store.ErrNotPending)
	for i, e := range events(t, sub, 2) {
		require.Equal(t, store.ChangeOutcome, e.Kind, "event %d", i)
		require.Equal(t, store.StateCompleted, e.State)
		require.True(t, e.Outcome.Partial)
	}
	for _, id := range []string{"ex", "ca"} {
		c, err := s.Get(ctx, store.RefOf(id))
		require.NoError(t, err)
		require.Equal(t, store.StateCompleted, c.State, id)
		require.Equal(t, store.ReasonDeadline, c.Outcome.Reason, id)
	}
	due, err := s.ExpireDue(ctx, clk.Now(), 10)
	require.NoError(t, err)
	require.Empty(t, due, "decided already: out of the deadline index")
}

func TestSecret(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.db")
	s, err := bolt.Open(bolt.Options{Path: path, NoSync: true})
	require.NoError(t, err)
	ctx := context.Background()
	a, err := s.Secret(ctx, "reply-token")
	require.NoError(t, err)
	require.Len(t, a, 32)
	again, err := s.Secret(ctx, "reply-token")
	require.NoError(t, err)
	require.Equal(t, a, again)
	other, err := s.Secret(ctx, "webhook")
	require.NoError(t, err)
	require.NotEqual(t, a, other)
	_, err = s.Secret(ctx, "Bad Name")
	require.ErrorIs(t, err, store.ErrInvalid)
	require.NoError(t, s.Close())
	_, err = s.Secret(ctx, "reply-token")
	require.ErrorIs(t, err, store.ErrClosed)

	ro, err := bolt.Open(bolt.Options{Path: path, ReadOnly: true})
	require.NoError(t, err)
	defer ro.Close()
	kept, err := ro.Secret(ctx, "reply-token")
	require.NoError(t, err)
	require.Equal(t, a, kept, "the secret survives a restart")
	_, err = ro.Secret(ctx, "never-made")
	require.ErrorIs(t, err, bolt.ErrReadOnly)
}

// A write whose caller's ctx ended before it was applied is ErrUnavailable
// and the ctx's error both, and nothing is written.
func TestGivenUpWriteIsUnavailable(t *testing.T) {
	s := open(t, bolt.Options{NoSync: true})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := s.Register(ctx, &store.Correlation{ID: "gone"})
	require.ErrorIs(t, err, store.ErrUnavailable)
	require.ErrorIs(t, err, context.Canceled)
	_, err = s.Get(context.Background(), store.RefOf("gone"))
	require.ErrorIs(t, err, store.ErrNotFound)
}

// A record that does not decode is set aside by the pass that meets it;
// its idempotency key still leads to it (Register reports it). (Its other
// index entries and its counter stay: Verify reports them, as schema 1 did.)
func TestCorruptRecordSetAside(t *testing.T) {
	clk := store.NewFakeClock(t0)
	path := filepath.Join(t.TempDir(), "c.db")
	s, err := bolt.Open(bolt.Options{Path: path, Clock: clk, NoSync: true})
	require.NoError(t, err)
	ctx := context.Background()
	c := &store.Correlation{Namespace: "shop", IdempotencyKey: "k-1", Timeout: time.Second}
	res, err := s.Register(ctx, c)
	require.NoError(t, err)
	r := res.Correlation.Ref()
	require.NoError(t, s.Close())
	rawUpdate(t, path, func(tx *bbolt.Tx) error {
		return tx.Bucket([]byte("corr")).Put([]byte(r.String()), []byte("\x01{"))
	})

	s, err = bolt.Open(bolt.Options{Path: path, Clock: clk, NoSync: true, Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	defer s.Close()
	clk.Add(time.Second)
	due, err := s.ExpireDue(ctx, clk.Now(), 10)
	require.ErrorIs(t, err, store.ErrCorrupt)
	require.ErrorContains(t, err, r.String())
	require.Empty(t, due)
	_, err = s.Get(ctx, r)
	require.ErrorIs(t, err, store.ErrCorrupt)
	_, err = s.Register(ctx, c)
	require.ErrorIs(t, err, store.ErrCorrupt)
	require.NotContains(t, s.Verify(ctx).Error(), "idempotency", "the key of a record set aside is not reported")
}

// Verify checks the stored-bytes counter against the records: a counter
// off by one byte, or missing, is reported.
func TestVerifyChecksStoredBytes(t *testing.T) {
	clk := store.NewFakeClock(t0)
	path := filepath.Join(t.TempDir(), "c.db")
	s, err := bolt.Open(bolt.Options{Path: path, Clock: clk, NoSync: true})
	require.NoError(t, err)
	ctx := context.Background()
	_, err = s.Register(ctx, &store.Correlation{ID: "b-1", Namespace: "shop", Timeout: time.Hour,
		Callback: store.Callback{Handler: "h", Data: []byte("12345")}})
	require.NoError(t, err)
	_, err = s.Deliver(ctx, ref("shop", "b-1"), store.Reply{Body: []byte("abc")})
	require.NoError(t, err)
	st, err := s.Stats(ctx, "shop")
	require.NoError(t, err)
	require.Equal(t, int64(8), st.Namespaces["shop"].Bytes)
	require.NoError(t, s.Verify(ctx))
	require.NoError(t, s.Close())

	key := []byte("shop\x00b:stored")
	for name, change := range map[string]func(b *bbolt.Bucket) error{
		"wrong":   func(b *bbolt.Bucket) error { return b.Put(key, []byte{0, 0, 0, 0, 0, 0, 0, 9}) },
		"missing": func(b *bbolt.Bucket) error { return b.Delete(key) },
	} {
		rawUpdate(t, path, func(tx *bbolt.Tx) error { return change(tx.Bucket([]byte("counts"))) })
		s, err := bolt.Open(bolt.Options{Path: path, Clock: clk, NoSync: true, ReadOnly: true})
		require.NoError(t, err)
		err = s.Verify(ctx)
		require.ErrorContains(t, err, `counter "shop\x00b:stored"`, name)
		require.ErrorContains(t, err, "the records count 8", name)
		require.NoError(t, s.Close())
	}
}
