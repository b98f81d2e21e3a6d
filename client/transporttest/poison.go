package transporttest

import (
	"context"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/corrstore/corrstore/bolt"
	"github.com/corrstore/corrstore/client"
	"github.com/corrstore/corrstore/store"
)

// statuses records what the store did with each reply the client took in.
type statuses struct {
	client.NopMetrics
	mu   sync.Mutex
	seen []store.DeliverStatus
	ch   chan struct{}
}

func (r *statuses) ReplyDelivered(s store.DeliverStatus) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.seen = append(r.seen, s)
	select {
	case r.ch <- struct{}{}:
	default:
	}
}

func (r *statuses) get() []store.DeliverStatus {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.seen)
}

// waitFor waits until n replies were taken in.
func (r *statuses) waitFor(t *testing.T, n int) []store.DeliverStatus {
	t.Helper()
	deadline := timeout()
	for {
		if seen := r.get(); len(seen) >= n {
			return seen
		}
		select {
		case <-r.ch:
		case <-deadline:
			t.Fatalf("%d of %d replies taken in within %s: %v", len(r.get()), n, Wait, r.get())
		}
	}
}

// Replies the store refuses for good — invalid (an ID over its limit), too
// large for the store, or for a namespace the client may not write — are
// acknowledged once and dropped with a count, never delivered again; a
// reply for an unknown correlation is buffered by the store (an early
// reply) and acknowledged; the good reply after them is taken in.
func testPoisonReplies(t *testing.T, newTransport NewTransport) {
	addr := address(t)
	st, err := bolt.Open(bolt.Options{Path: filepath.Join(t.TempDir(), "c.db"), NoSync: true,
		Limits: store.Limits{MaxBodyBytes: 16}})
	require.NoError(t, err)
	t.Cleanup(func() { st.Close() })
	metrics := &statuses{ch: make(chan struct{}, 1)}
	c, err := client.New(client.Config{Store: st, Transport: newTransport(t, "svc"), Service: "svc", ReplyTo: addr,
		Metrics: metrics, ReplyReceivers: 1, Logger: quietLogger()})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			cancel()
			require.NoError(t, <-done)
		}
	}
	t.Cleanup(stop)

	responder := newTransport(t, "responder")
	id, err := c.Send(t.Context(), address(t), []byte("request"), client.Options{Timeout: time.Hour})
	require.NoError(t, err)
	corr := struct{ ID string }{id}
	poison := []client.Message{
		{CorrelationID: "unknown", ID: "r-1", Body: []byte("x")},
		{CorrelationID: corr.ID, ID: strings.Repeat("i", store.MaxReplyFieldLen+1)},
		{CorrelationID: corr.ID, ID: "r-big", Body: []byte(strings.Repeat("b", 17))},
		{CorrelationID: corr.ID, Namespace: "other", ID: "r-ns"},
	}
	for _, m := range poison {
		send(t, responder, addr, m)
	}
	seen := metrics.waitFor(t, len(poison))
	slices.Sort(seen)
	require.Equal(t, []store.DeliverStatus{store.DeliverBuffered, "rejected", "rejected", "rejected"}, seen)
	send(t, responder, addr, client.Message{CorrelationID: corr.ID, ID: "r-good", Body: []byte("ok")})
	ref := store.Ref{Namespace: store.DefaultNamespace, ID: id}
	for deadline := time.Now().Add(Wait); ; {
		got, err := st.Get(t.Context(), ref)
		require.NoError(t, err)
		if got.State == store.StateCompleted {
			break
		}
		require.True(t, time.Now().Before(deadline), "the good reply after the poison ones not taken in within %s", Wait)
		time.Sleep(5 * time.Millisecond) // polling the store under a deadline
	}
	stop()
	require.Len(t, metrics.get(), len(poison)+1, "a poison reply was delivered again: %v", metrics.get())

	// Nothing is left at the address: a receiver of the same service gets
	// only what is sent now.
	ch := make(chan got, 10)
	receive(t, newTransport(t, "svc"), addr, collect(ch, "after"))
	send(t, responder, addr, client.Message{CorrelationID: "marker"})
	require.Equal(t, "marker", next(t, ch).m.CorrelationID)
}
