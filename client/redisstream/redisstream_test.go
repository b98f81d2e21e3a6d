package redisstream_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/corrstore/corrstore/bolt"
	"github.com/corrstore/corrstore/client"
	"github.com/corrstore/corrstore/client/redisstream"
	"github.com/corrstore/corrstore/store"
)

func TestMain(m *testing.M) {
	if runReplica() {
		return
	}
	goleak.VerifyTestMain(m)
}

func quiet() *slog.Logger { return slog.New(slog.DiscardHandler) }

func newRedis(t *testing.T) redis.UniversalClient {
	t.Helper()
	mr := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	t.Cleanup(func() { rdb.Close() })
	return rdb
}

// newTransport makes a transport that takes over entries idle for 50ms.
func newTransport(t *testing.T, rdb redis.UniversalClient, group, consumer string) *redisstream.Transport {
	t.Helper()
	return newTransportIdle(t, rdb, group, consumer, 50*time.Millisecond)
}

func newTransportIdle(t *testing.T, rdb redis.UniversalClient, group, consumer string, claimIdle time.Duration) *redisstream.Transport {
	t.Helper()
	tr, err := redisstream.New(rdb, redisstream.Config{
		Group: group, Consumer: consumer, Block: 20 * time.Millisecond,
		ClaimIdle: claimIdle, ClaimInterval: 10 * time.Millisecond, Logger: quiet(),
	})
	require.NoError(t, err)
	return tr
}

// receive runs tr.Receive on addr until the test ends or stop is called,
// passing each message to fn. stop returns once Receive has: every message
// handled by then has been acknowledged.
func receive(t *testing.T, tr client.Transport, addr string, fn func(context.Context, client.Message) error) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- tr.Receive(ctx, addr, fn) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			require.NoError(t, <-done)
		})
	}
	t.Cleanup(stop)
	return stop
}

type got struct {
	who string
	m   client.Message
}

func collect(ch chan got, who string) func(context.Context, client.Message) error {
	return func(_ context.Context, m client.Message) error {
		ch <- got{who, m}
		return nil
	}
}

func next(t *testing.T, ch chan got) got {
	t.Helper()
	select {
	case g := <-ch:
		return g
	case <-time.After(time.Minute):
		require.FailNow(t, "no message within a minute")
		return got{}
	}
}

// Replicas of a service share its messages; another service gets them all.
// Take-over is set beyond the test's length: an entry taken over from a
// stalled replica is rightly delivered twice (at least once), which is not
// what this test is about.
func TestGroups(t *testing.T) {
	rdb := newRedis(t)
	ch := make(chan got, 100)
	var stops []func()
	for _, r := range []struct{ group, consumer string }{{"orders", "a"}, {"orders", "b"}, {"audit", "c"}} {
		tr := newTransportIdle(t, rdb, r.group, r.consumer, time.Hour)
		stops = append(stops, receive(t, tr, "payments", collect(ch, r.group)))
	}

	sender := newTransport(t, rdb, "x", "x")
	const n = 20
	for i := range n {
		require.NoError(t, sender.Send(t.Context(), "payments", client.Message{CorrelationID: fmt.Sprintf("c-%d", i), ReplyTo: "r", Body: []byte("b")}))
	}
	count := map[string]map[string]int{"orders": {}, "audit": {}}
	for range 2 * n {
		g := next(t, ch)
		count[g.who][g.m.CorrelationID]++
		require.Equal(t, "r", g.m.ReplyTo)
		require.Equal(t, "b", string(g.m.Body))
	}
	for _, who := range []string{"orders", "audit"} {
		require.Len(t, count[who], n, who)
		for id, c := range count[who] {
			require.Equal(t, 1, c, "%s got %s %d times", who, id, c)
		}
	}
	// A handler's message is acknowledged after it returns: stop the
	// receivers, then everything must be acknowledged, nothing pending.
	for _, stop := range stops {
		stop()
	}
	for _, group := range []string{"orders", "audit"} {
		p, err := rdb.XPending(t.Context(), "corrstore:stream:payments", group).Result()
		require.NoError(t, err)
		require.Zero(t, p.Count, group)
	}
}

// A message sent before any receiver existed is not lost.
func TestSentBeforeGroup(t *testing.T) {
	rdb := newRedis(t)
	tr := newTransport(t, rdb, "orders", "a")
	require.NoError(t, tr.Send(t.Context(), "payments", client.Message{CorrelationID: "early"}))
	ch := make(chan got, 1)
	receive(t, tr, "payments", collect(ch, "a"))
	require.Equal(t, "early", next(t, ch).m.CorrelationID)
}

// An entry whose receiver died before acknowledging it is taken over by
// another after ClaimIdle; a failed handler's entry too.
func TestCrashedReceiverTakenOver(t *testing.T) {
	rdb := newRedis(t)
	sender := newTransport(t, rdb, "x", "x")
	require.NoError(t, sender.Send(t.Context(), "jobs", client.Message{CorrelationID: "c-1"}))
	require.NoError(t, sender.Send(t.Context(), "jobs", client.Message{CorrelationID: "c-2"}))

	// The first receiver takes c-1 and dies in its handler.
	dying := newTransport(t, rdb, "workers", "dying")
	ctx, kill := context.WithCancel(context.Background())
	entered := make(chan struct{})
	done := make(chan error, 1)
	var once sync.Once
	go func() {
		done <- dying.Receive(ctx, "jobs", func(ctx context.Context, m client.Message) error {
			once.Do(func() { close(entered) })
			<-ctx.Done()
			return ctx.Err()
		})
	}()
	<-entered
	kill()
	require.NoError(t, <-done)

	// The survivor fails c-2 once; both come to it in the end.
	ch := make(chan got, 10)
	failed := false
	receive(t, newTransport(t, rdb, "workers", "survivor"), "jobs", func(ctx context.Context, m client.Message) error {
		if m.CorrelationID == "c-2" && !failed {
			failed = true
			return errors.New("try later")
		}
		return collect(ch, "survivor")(ctx, m)
	})
	ids := map[string]bool{next(t, ch).m.CorrelationID: true, next(t, ch).m.CorrelationID: true}
	require.Equal(t, map[string]bool{"c-1": true, "c-2": true}, ids)
	require.True(t, failed)
}

func TestConfig(t *testing.T) {
	_, err := redisstream.New(nil, redisstream.Config{})
	require.ErrorIs(t, err, store.ErrInvalid)
	_, err = redisstream.New(newRedis(t), redisstream.Config{Batch: -1})
	require.ErrorIs(t, err, store.ErrInvalid)
}

// The client end to end on Redis Streams: a responder replica, a requester
// whose replies any of its two replicas may take in.
func TestClientOverStreams(t *testing.T) {
	rdb := newRedis(t)
	st, err := bolt.Open(bolt.Options{Path: filepath.Join(t.TempDir(), "c.db"), NoSync: true, Logger: quiet()})
	require.NoError(t, err)
	t.Cleanup(func() { st.Close() })

	newClient := func(group, instance string) *client.Client {
		c, err := client.New(client.Config{Store: st, Transport: newTransport(t, rdb, group, instance),
			Service: group, Instance: instance, Logger: quiet()})
		require.NoError(t, err)
		return c
	}
	a, b := newClient("orders", "orders-1"), newClient("orders", "orders-2")
	responder := newClient("payments", "payments-1")
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _ = a.Run(ctx) })
	wg.Go(func() { _ = b.Run(ctx) })
	wg.Go(func() {
		_ = responder.Serve(ctx, "payments", func(_ context.Context, in client.Incoming) ([]byte, error) {
			return append([]byte("paid "), in.Body...), nil
		})
	})
	defer func() { cancel(); wg.Wait() }()

	for i := range 10 {
		c := []*client.Client{a, b}[i%2]
		r, err := c.Request(t.Context(), "payments", fmt.Appendf(nil, "%d", i), client.Options{Timeout: 10 * time.Second})
		require.NoError(t, err)
		require.Equal(t, fmt.Sprintf("paid %d", i), string(r.Body))
	}
}
