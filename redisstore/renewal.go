package redisstore

import (
	"context"
	"log/slog"
	"time"
)

// renewal is a goroutine that renews a key at an interval: a store's
// liveness key (liveness) and an upgrade's lock (upgradeLock).
type renewal struct {
	cancel context.CancelCauseFunc
	done   chan struct{}
}

// start calls renew every interval until stop, or until renew ends the
// context it is given (r.cancel with a cause). An error renew returns is
// logged as msg, with key, unless that context has ended; the next turn
// tries again. The context returned is the one renew gets.
func (r *renewal) start(ctx context.Context, every time.Duration, log *slog.Logger, msg, key string, renew func(ctx context.Context) error) context.Context {
	ctx, r.cancel = context.WithCancelCause(ctx)
	r.done = make(chan struct{})
	go func() {
		defer close(r.done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			if err := renew(ctx); err != nil && ctx.Err() == nil {
				log.Warn(msg, "key", key, "err", err)
			}
			if ctx.Err() != nil {
				return
			}
		}
	}()
	return ctx
}

// stop ends the renewal and waits for its goroutine. It reports false when
// the renewal was never started.
func (r *renewal) stop() bool {
	if r.cancel == nil {
		return false
	}
	r.cancel(nil)
	<-r.done
	return true
}
