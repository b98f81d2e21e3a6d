package redisstore

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/corrstore/corrstore/store"
)

// resendWrites plays what go-redis does when the answer to a script call
// is lost on the way back (the server ran it): it sends the same call again
// and returns the second answer. Armed, it does so once, for the first
// pipeline or command that runs a script, and disarms.
type resendWrites struct{ armed atomic.Bool }

func (h *resendWrites) take(cmds []redis.Cmder) bool {
	for _, c := range cmds {
		if n := strings.ToLower(c.Name()); n == "evalsha" || n == "eval" {
			return h.armed.CompareAndSwap(true, false)
		}
	}
	return false
}

func (h *resendWrites) DialHook(next redis.DialHook) redis.DialHook { return next }

// ProcessHook treats a lone command as a pipeline of one.
func (h *resendWrites) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	pipe := h.ProcessPipelineHook(func(ctx context.Context, cmds []redis.Cmder) error { return next(ctx, cmds[0]) })
	return func(ctx context.Context, cmd redis.Cmder) error { return pipe(ctx, []redis.Cmder{cmd}) }
}

func (h *resendWrites) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if !h.take(cmds) {
			return next(ctx, cmds)
		}
		_ = next(ctx, cmds) // ran; the answers are lost
		for _, c := range cmds {
			c.SetErr(nil)
		}
		return next(ctx, cmds)
	}
}

// A Purge whose removals were sent twice (the first answers lost) removes
// what the same Purge without the fault removes: the records found gone on
// the resend take their places in the batch, not records beyond limit.
// (TestRetryDroppedReplies found this through a real proxy: the resend found
// nothing to remove, the sweep refilled the places and removed more.)
func TestPurgeResentRemovalTakesItsPlace(t *testing.T) {
	clock := store.NewFakeClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	s, _, rdb := openMini(t, Config{Clock: clock})
	ctx := t.Context()
	const n, limit = 6, 2
	for i := range n {
		id := fmt.Sprintf("c-%d", i)
		_, err := s.Register(ctx, &store.Correlation{ID: id, Timeout: time.Hour})
		require.NoError(t, err)
		_, err = s.Cancel(ctx, store.RefOf(id), "done")
		require.NoError(t, err)
		clock.Add(time.Second) // distinct outcome times: a fixed purge order
	}
	clock.Add(time.Hour)
	left := func() int {
		t.Helper()
		k := 0
		for i := range n {
			if _, err := s.Get(ctx, store.RefOf(fmt.Sprintf("c-%d", i))); err == nil {
				k++
			} else {
				require.ErrorIs(t, err, store.ErrNotFound)
			}
		}
		return k
	}

	h := &resendWrites{}
	rdb.AddHook(h)
	h.armed.Store(true)
	got, err := s.Purge(ctx, clock.Now(), limit)
	require.NoError(t, err)
	require.False(t, h.armed.Load(), "the removals were sent twice")
	require.Equal(t, n-limit, left(), "a Purge of %d removed %d records", limit, n-left())
	require.LessOrEqual(t, got, limit)

	// Without the fault, the same call removes the same number.
	got, err = s.Purge(ctx, clock.Now(), limit)
	require.NoError(t, err)
	require.Equal(t, limit, got)
	require.Equal(t, n-2*limit, left())
}
