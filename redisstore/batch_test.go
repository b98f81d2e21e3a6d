package redisstore

import (
	"context"
	"fmt"
	"net"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
)

// roundTrips records what a client sends: one entry per round trip, the
// names of its commands.
type roundTrips struct {
	mu    sync.Mutex
	trips [][]string
}

func (h *roundTrips) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *roundTrips) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.add([]redis.Cmder{cmd})
		return next(ctx, cmd)
	}
}

func (h *roundTrips) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		h.add(cmds)
		return next(ctx, cmds)
	}
}

// add records the script calls (and SCRIPT commands) of a round trip,
// leaving out what go-redis sends to set up a connection.
func (h *roundTrips) add(cmds []redis.Cmder) {
	var names []string
	for _, c := range cmds {
		if n := c.Name(); strings.HasPrefix(n, "eval") || n == "script" {
			names = append(names, n)
		}
	}
	if names == nil {
		return
	}
	h.mu.Lock()
	h.trips = append(h.trips, names)
	h.mu.Unlock()
}

func (h *roundTrips) take() [][]string {
	h.mu.Lock()
	defer h.mu.Unlock()
	t := h.trips
	h.trips = nil
	return t
}

var scriptIncr = redis.NewScript(`return redis.call('INCRBY', KEYS[1], ARGV[1])`)

func newBatchTest(t *testing.T) (*batcher, *roundTrips, *miniredis.Miniredis) {
	t.Helper()
	mr := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr(), PoolSize: 2 * maxFlying})
	t.Cleanup(func() { rdb.Close() })
	h := &roundTrips{}
	rdb.AddHook(h)
	return newBatcher(rdb), h, mr
}

// busy takes every place on the wire, so that calls queue.
func (b *batcher) busy() {
	b.mu.Lock()
	b.flying = maxFlying
	b.mu.Unlock()
}

// waitState waits until the batcher holds queued callers and has flying
// pipelines on the wire.
func waitState(t *testing.T, b *batcher, queued, flying int) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		b.mu.Lock()
		q, f := len(b.queue), b.flying
		b.mu.Unlock()
		if q == queued && f == flying {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d callers queued and %d pipelines on the wire, want %d and %d", q, f, queued, flying)
		}
		runtime.Gosched()
	}
}

func TestBatchLoneCallGoesAlone(t *testing.T) {
	b, h, _ := newBatchTest(t)
	for i, want := range []int64{1, 3, 6} {
		got, err := b.run(context.Background(), []call{{scriptIncr, []string{"k"}, []any{i + 1}}})[0].Int64()
		require.NoError(t, err)
		require.Equal(t, want, got)
	}
	// The first call finds the server without the script (EVALSHA, then
	// EVAL); after that, one EVALSHA per call, each its own round trip.
	require.Equal(t, [][]string{{"evalsha"}, {"eval"}, {"evalsha"}, {"evalsha"}}, h.take())
	waitState(t, b, 0, 0)
}

func TestBatchSharesRoundTrips(t *testing.T) {
	b, h, mr := newBatchTest(t)
	const callers = 20
	for round := range 2 {
		b.busy()
		var wg sync.WaitGroup
		got := make([]int64, callers)
		errs := make([]error, callers)
		for i := range callers {
			wg.Go(func() {
				cmds := b.run(context.Background(), []call{
					{scriptIncr, []string{fmt.Sprintf("k%d", i)}, []any{i}},
					{scriptIncr, []string{fmt.Sprintf("k%d", i)}, []any{1000}},
				})
				got[i], errs[i] = cmds[0].Int64()
				if errs[i] == nil {
					_, errs[i] = cmds[1].Int64()
				}
			})
		}
		waitState(t, b, callers, maxFlying)
		b.next() // as a pipeline on the wire does when it comes back
		wg.Wait()
		for i := range callers {
			require.NoError(t, errs[i], "caller %d", i)
			require.Equal(t, int64(i+round*(i+1000)), got[i], "caller %d has its own answer", i)
			v, err := mr.Get(fmt.Sprintf("k%d", i))
			require.NoError(t, err)
			require.Equal(t, fmt.Sprint((round+1)*(i+1000)), v)
		}
		trips := h.take()
		if round == 0 {
			// The server does not have the script yet: one pipeline of
			// EVALSHA answered NOSCRIPT, the script loaded once, and the
			// pipeline of EVALSHA again — the source is sent once, not
			// with each call.
			require.Len(t, trips, 3)
			require.Equal(t, []string{"script"}, trips[1])
			require.Len(t, trips[2], 2*callers)
			require.Equal(t, []string{"evalsha"}, slices.Compact(trips[2]))
		} else {
			require.Len(t, trips, 1, "every queued call in one round trip")
		}
		require.Len(t, trips[0], 2*callers)
		require.Equal(t, "evalsha", trips[0][0])
		waitState(t, b, 0, maxFlying-1) // the pipeline's place given back
	}
}

func TestBatchLeavesOutCallersThatGaveUp(t *testing.T) {
	b, h, mr := newBatchTest(t)
	b.busy()
	ctx, cancel := context.WithCancel(context.Background())
	gaveUp := make(chan error)
	go func() {
		gaveUp <- b.run(ctx, []call{{scriptIncr, []string{"abandoned"}, []any{1}}})[0].Err()
	}()
	waitState(t, b, 1, maxFlying)
	cancel()
	require.ErrorIs(t, <-gaveUp, context.Canceled)

	done := make(chan error)
	go func() {
		done <- b.run(context.Background(), []call{{scriptIncr, []string{"kept"}, []any{1}}})[0].Err()
	}()
	waitState(t, b, 2, maxFlying)
	b.next()
	require.NoError(t, <-done)
	require.False(t, mr.Exists("abandoned"), "a call whose caller gave up before it left is not sent")
	require.True(t, mr.Exists("kept"))
	for _, trip := range h.take() {
		require.Len(t, trip, 1, "only the kept call is sent")
	}
}

func TestBatchFailsEveryCallOnConnectionError(t *testing.T) {
	// A server that accepts and hangs up: every call in the pipeline gets
	// the error, none is left without an answer.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	rdb := redis.NewClient(&redis.Options{Addr: ln.Addr().String(), MaxRetries: -1, Protocol: 2, DisableIdentity: true})
	defer rdb.Close()
	b := newBatcher(rdb)
	b.busy()
	var wg sync.WaitGroup
	errs := make([]error, 5)
	for i := range errs {
		wg.Go(func() { errs[i] = b.run(context.Background(), []call{{scriptIncr, []string{"k"}, []any{1}}})[0].Err() })
	}
	waitState(t, b, len(errs), maxFlying)
	b.next()
	wg.Wait()
	for i, err := range errs {
		require.Error(t, err, "caller %d", i)
	}
}

func TestBatchKeepsPipelinesBounded(t *testing.T) {
	b, h, _ := newBatchTest(t)
	// Load the script, so that each pipeline is one round trip.
	require.NoError(t, b.run(context.Background(), []call{{scriptIncr, []string{"k"}, []any{1}}})[0].Err())
	h.take()
	b.busy()
	const perCaller = 300 // two callers exceed maxBatch together
	var wg sync.WaitGroup
	for c := range 2 {
		wg.Go(func() {
			calls := make([]call, perCaller)
			for i := range calls {
				calls[i] = call{scriptIncr, []string{fmt.Sprintf("c%d", c)}, []any{1}}
			}
			for i, cmd := range b.run(context.Background(), calls) {
				if v, err := cmd.Int64(); err != nil || v != int64(i+1) {
					t.Errorf("caller %d call %d: %d, %v", c, i, v, err)
				}
			}
		})
	}
	waitState(t, b, 2, maxFlying)
	b.next()
	wg.Wait()
	trips := h.take()
	require.Len(t, trips, 2, "one pipeline per caller: together they exceed %d calls", maxBatch)
	require.Len(t, trips[0], perCaller)
	require.Len(t, trips[1], perCaller)
}

func TestBatchSharedContext(t *testing.T) {
	soon, later := time.Now().Add(time.Minute), time.Now().Add(time.Hour)
	withDeadline := func(d time.Time) context.Context {
		ctx, cancel := context.WithDeadline(context.Background(), d)
		t.Cleanup(cancel)
		return ctx
	}
	ctx, cancel := sharedContext([]*batchCall{{ctx: withDeadline(soon)}, {ctx: withDeadline(later)}})
	d, ok := ctx.Deadline()
	cancel()
	require.True(t, ok)
	require.Equal(t, later, d, "the latest of the callers' deadlines")

	ctx, cancel = sharedContext([]*batchCall{{ctx: withDeadline(soon)}, {ctx: context.Background()}})
	_, ok = ctx.Deadline()
	cancel()
	require.False(t, ok, "no deadline when a caller has none")

	gone, stop := context.WithCancel(context.Background())
	stop()
	ctx, cancel = sharedContext([]*batchCall{{ctx: gone}, {ctx: context.Background()}})
	defer cancel()
	require.NoError(t, ctx.Err(), "a caller's cancellation does not end the others' pipeline")
}

func TestBatchNotSharedOnCluster(t *testing.T) {
	rdb := redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{"127.0.0.1:1"}})
	defer rdb.Close()
	require.False(t, newBatcher(rdb).shared)
	single := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	defer single.Close()
	require.True(t, newBatcher(single).shared)
}
