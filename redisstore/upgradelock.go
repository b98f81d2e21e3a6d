package redisstore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/corrstore/corrstore/store"
)

// One Upgrade at a time: a run holds {prefix:0}:upgrade (SET NX, TTL
// liveTTL, renewed every liveEvery) from its first write to its last. Two
// runs at once would each move records from what they had read: the one
// behind could write back schema 1 values over records an instance of this
// schema had changed since the other run finished, and set the counters
// from an old count. A run that loses the lock (it expired while Redis was
// out of reach) stops.

// ErrUpgradeRunning is the refusal, by Upgrade and by New, of a prefix that
// an Upgrade holds.
var ErrUpgradeRunning = errors.New("an upgrade is running on the prefix")

// errLockLost is the cause that ends a run whose lock was lost.
var errLockLost = errors.New("the upgrade lost its lock")

type upgradeLock struct {
	rdb   redis.UniversalClient
	keys  layout
	value string // this run's: host, pid, start, a random token

	renewal  renewal
	released bool
}

// takeUpgradeLock takes the lock of the prefix of keys, or says who holds
// it (ErrUpgradeRunning).
func takeUpgradeLock(ctx context.Context, rdb redis.UniversalClient, keys layout) (*upgradeLock, error) {
	l := &upgradeLock{rdb: rdb, keys: keys, value: liveValue() + " run=" + newToken()}
	key := keys.upgradeLock()
	for range 3 { // a holder that ends between SET NX and GET is gone: try again
		ok, err := rdb.SetNX(ctx, key, l.value, liveTTL).Result()
		if err != nil {
			return nil, unavailable("take "+key, err)
		}
		if ok {
			return l, nil
		}
		if err := upgradeRunning(ctx, rdb, keys); err != nil {
			return nil, err
		}
	}
	return nil, fmt.Errorf("%w: redis prefix %s: %s keeps being taken and released by other runs", ErrUpgradeRunning, keys.prefix, key)
}

// upgradeRunning is ErrUpgradeRunning naming the lock's holder, or nil
// when no upgrade holds the prefix.
func upgradeRunning(ctx context.Context, rdb redis.UniversalClient, keys layout) error {
	key := keys.upgradeLock()
	pipe := rdb.Pipeline()
	get, ttl := pipe.Get(ctx, key), pipe.PTTL(ctx, key)
	if _, err := pipe.Exec(ctx); errors.Is(err, redis.Nil) {
		return nil
	} else if err != nil {
		return unavailable("read "+key, err)
	}
	return fmt.Errorf("%w: redis prefix %s: %s (%s, expires in %s): wait for it to finish (a killed upgrade's lock expires within %s)",
		ErrUpgradeRunning, keys.prefix, key, get.Val(), ttl.Val().Round(time.Second), liveTTL)
}

// keep renews the lock every interval until release; the context it
// returns ends, with a cause wrapping errLockLost, when the lock is found
// lost. beat, when set, is told each renewal's verdict (tests).
func (l *upgradeLock) keep(ctx context.Context, every time.Duration, log *slog.Logger, beat func(held bool)) context.Context {
	return l.renewal.start(ctx, every, log, "upgrade lock not renewed", l.keys.upgradeLock(), func(ctx context.Context) error {
		held, err := l.call(ctx, "renew", strconv.FormatInt(liveTTL.Milliseconds(), 10))
		if err != nil {
			return err
		}
		if beat != nil {
			beat(held)
		}
		if !held {
			l.renewal.cancel(fmt.Errorf("%w: redis prefix %s: %w: %s expired (Redis out of reach for over %s?) or was deleted; run the upgrade again",
				store.ErrUnavailable, l.keys.prefix, errLockLost, l.keys.upgradeLock(), liveTTL))
		}
		return nil
	})
}

// finish marks the prefix at schema and frees the lock in one step, if
// the run still holds it.
func (l *upgradeLock) finish(ctx context.Context, schema int) error {
	held, err := l.call(ctx, "done", strconv.Itoa(schema))
	if err != nil {
		return unavailable("mark "+l.keys.meta(), err)
	}
	if !held {
		return fmt.Errorf("%w: redis prefix %s: %w: %s is not this run's; schema left unchanged; run the upgrade again",
			store.ErrUnavailable, l.keys.prefix, errLockLost, l.keys.upgradeLock())
	}
	l.released = true
	return nil
}

// release stops the renewal and frees the lock if the run still holds it
// (best effort: it expires anyway).
func (l *upgradeLock) release(log *slog.Logger) {
	l.renewal.stop()
	if l.released {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if _, err := l.call(ctx, "release"); err != nil {
		log.Warn("upgrade lock not released; it expires on its own", "key", l.keys.upgradeLock(), "err", err)
	}
	l.released = true
}

func (l *upgradeLock) call(ctx context.Context, op string, args ...any) (bool, error) {
	n, err := scriptUpgradeLock.Run(ctx, l.rdb, []string{l.keys.upgradeLock(), l.keys.meta()},
		append([]any{l.value, op}, args...)...).Int()
	return n == 1, err
}
