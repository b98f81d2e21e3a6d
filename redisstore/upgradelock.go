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
//
// The lock fences the run's writes, not only its start: a run that was
// paused (SIGSTOP, a VM frozen) past the lock's TTL may resume after
// another run took the lock, finished and let instances change records.
// The renewal would notice within liveEvery, but the paused run's next
// writes would land first. So every write of a run is preceded by fence, a
// synchronous check (the renew script) that the lock is still this run's:
// the mark of the prefix and the final schema go through the lock's own
// script (the lock and the meta hash share the {prefix:0} slot, so those
// are atomic with the check), and each write pipeline on other slots (a
// batch of records, its idempotency mappings, the removal of the schema 1
// keys, early replies, quarantine, stale index entries, a shard's recount)
// is sent right after a fence that passed.
//
// What remains: a record key lives in another slot than the lock, and a
// Cluster cannot check one slot inside a script that writes another, so
// the check and the pipeline are two round trips. A run paused between a
// fence that passed and the send of its pipeline for longer than the TTL
// that fence set (liveTTL, 15 s), while another run takes the lock,
// finishes, and instances change what that pipeline touches, still writes
// that one pipeline (at most a batch of records, only where their keys are
// free; or one shard's counters) before its next fence stops it.

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
			l.renewal.cancel(l.lost())
		}
		return nil
	})
}

// lost is the error of a run that no longer holds its lock.
func (l *upgradeLock) lost() error {
	return fmt.Errorf("%w: redis prefix %s: %w: %s expired (Redis out of reach, or this process paused, for over %s?) or was deleted; run the upgrade again",
		store.ErrUnavailable, l.keys.prefix, errLockLost, l.keys.upgradeLock(), liveTTL)
}

// fence checks, synchronously, that the run still holds the lock, and
// renews it (to liveTTL): called right before each write pipeline. A lost
// lock ends the renewal's context with lost and is returned.
func (l *upgradeLock) fence(ctx context.Context) error {
	return l.step(ctx, "renew", l.keys.upgradeLock(), strconv.FormatInt(liveTTL.Milliseconds(), 10))
}

// step runs one of the lock script's steps that hold only while the run
// holds the lock; a lost lock ends the renewal's context and is returned.
func (l *upgradeLock) step(ctx context.Context, op, what, arg string) error {
	held, err := l.call(ctx, op, arg)
	if err != nil {
		return unavailable(op+" "+what, err)
	}
	if !held {
		err := l.lost()
		if l.renewal.cancel != nil {
			l.renewal.cancel(err)
		}
		return err
	}
	return nil
}

// mark sets the meta hash's "upgrading" mark to schema, if the run still
// holds the lock (one step, in the lock's slot): a run that lost it must
// not mark a prefix another run finished.
func (l *upgradeLock) mark(ctx context.Context, schema int) error {
	return l.step(ctx, "mark", l.keys.meta(), strconv.Itoa(schema))
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
