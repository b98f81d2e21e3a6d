package redisstore

import (
	"context"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"time"

	"github.com/corrstore/corrstore/store"
)

// Writers to one correlation meet at its compare-and-set. Within a process
// they never do: an operation holds its ref's lock from the read to the
// write, so concurrent replies to one correlation take turns instead of
// failing each other's compare-and-set (500 at once made 64 retries without
// a pause run out). Across processes they still may; the loser reads again
// after a jittered, growing pause, until its ctx ends.

// lockStripes is how many locks the refs share. Two refs on one stripe
// take turns for nothing, which costs little at this many.
const lockStripes = 1024

// refLocks is a striped lock table keyed by ref string. A lock is a channel
// of one slot, so that waiting for it ends with ctx.
type refLocks [lockStripes]chan struct{}

func newRefLocks() *refLocks {
	var l refLocks
	for i := range l {
		l[i] = make(chan struct{}, 1)
	}
	return &l
}

// lock takes the lock of key and returns its release; it fails, wrapping
// store.ErrUnavailable, when ctx ends first.
func (l *refLocks) lock(ctx context.Context, key string) (func(), error) {
	h := fnv.New32a()
	h.Write([]byte(key))
	ch := l[h.Sum32()%lockStripes]
	select {
	case ch <- struct{}{}:
		return func() { <-ch }, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("%w: redisstore: %s: waiting for this process's other writes to it: %w", store.ErrUnavailable, key, ctx.Err())
	}
}

// Pauses between compare-and-set attempts: full jitter over a range that
// doubles from backoffBase up to backoffMax.
const (
	backoffBase = 500 * time.Microsecond
	backoffMax  = 50 * time.Millisecond
)

// backoff paces the retries of one operation.
type backoff struct{ n int }

// wait pauses before the next attempt on key; when ctx ends first it
// returns an error wrapping store.ErrUnavailable and ctx's error.
func (b *backoff) wait(ctx context.Context, key string) error {
	b.n++
	if err := pause(ctx, b.n-1); err != nil {
		return contention(key, b.n, err)
	}
	return nil
}

// pause waits before attempt n of a pass (see backoff); the error is ctx's.
func pause(ctx context.Context, n int) error {
	t := time.NewTimer(rand.N(min(backoffBase<<min(n, 16), backoffMax)) + time.Microsecond)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func contention(key string, attempts int, cause error) error {
	return fmt.Errorf("%w: redisstore: %s: other writers kept changing the record (%d attempts): %w",
		store.ErrUnavailable, key, attempts, cause)
}
