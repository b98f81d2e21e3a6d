package redisstore

import (
	"cmp"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/redis/go-redis/v9"

	"github.com/corrstore/corrstore/internal/storekit"
	"github.com/corrstore/corrstore/store"
)

// Config configures New. Zero fields take the defaults given.
type Config struct {
	// Prefix starts every key and the event channel. Default "corrstore".
	// Stores that share a server and a Prefix share their data; a test gets an
	// isolated store on a shared server with a unique Prefix. It must not
	// contain '{' or '}' (they delimit the hash tag).
	Prefix string
	// Shards is how many hash-tag shards the keys spread over; default 16.
	// Keys look like "{corrstore:7}:c:<namespace>/<id>", so one script
	// touches one slot.
	// Every store on a Prefix must use the same number: New refuses a
	// mismatch with what the Prefix was created with.
	Shards int
	// Strict refuses to start when the server's persistence or eviction
	// settings can lose acknowledged correlations, or cannot be read.
	// Otherwise New logs a warning and goes on.
	Strict bool
	// Clock is the source of time. Default store.RealClock.
	Clock store.Clock
	// Limits the store enforces; zero fields take store defaults (the early
	// reply window and caps live here).
	Limits store.Limits
	// Logger for warnings and corrupt records. Default slog.Default().
	Logger *slog.Logger
}

// DefaultPrefix and DefaultShards are the Config defaults.
const (
	DefaultPrefix = "corrstore"
	DefaultShards = 16
	// MaxShards bounds Config.Shards.
	MaxShards = 1024
)

// Store is a store.Store on Redis. It is safe for concurrent use, and any
// number of Stores on any number of processes may share one Prefix.
type Store struct {
	rdb      redis.UniversalClient
	keys     layout
	clock    store.Clock
	lim      store.Limits
	log      *slog.Logger
	closed   atomic.Bool
	fenced   atomic.Pointer[error]
	once     sync.Once
	subs     subscriber
	batch    *batcher
	locks    *refLocks
	instance string
	live     liveness

	// mutations supplies Extend, Cancel, Expire, AckDispatch, NackDispatch
	// and Redispatch on mutate (ops.go).
	mutations
}

// mutations is the embedded storekit.Mutations, unexported.
type mutations = storekit.Mutations

var _ store.Store = (*Store)(nil)

// New returns a Store on rdb. It checks the server's durability settings
// (see Config.Strict), and the shard count and schema recorded for the
// Prefix: a prefix written by an older corrstore (schema 1) must be brought
// to this one with Upgrade first, and one written by a newer corrstore is
// refused (see SchemaError), as is one an Upgrade holds (ErrUpgradeRunning).
// The Store then keeps a liveness key for itself until Close, so that
// Upgrade can tell it is running.
//
// The Store does not own rdb: Close leaves it open, and the caller closes it
// after closing the Store.
func New(ctx context.Context, rdb redis.UniversalClient, cfg Config) (*Store, error) {
	if rdb == nil {
		return nil, fmt.Errorf("%w: redis client: must not be nil", store.ErrInvalid)
	}
	prefix := cmp.Or(cfg.Prefix, DefaultPrefix)
	if strings.ContainsAny(prefix, "{}") {
		return nil, fmt.Errorf("%w: prefix: %q must not contain '{' or '}'", store.ErrInvalid, prefix)
	}
	shards := cmp.Or(cfg.Shards, DefaultShards)
	if shards < 1 || shards > MaxShards {
		return nil, fmt.Errorf("%w: shards: must be 1 to %d, got %d", store.ErrInvalid, MaxShards, shards)
	}
	s := &Store{
		rdb:      rdb,
		batch:    newBatcher(rdb),
		keys:     newLayout(prefix, shards),
		clock:    cfg.Clock,
		lim:      cfg.Limits.WithDefaults(),
		log:      cmp.Or(cfg.Logger, slog.Default()).With("component", "redisstore"),
		locks:    newRefLocks(),
		instance: newToken(),
	}
	if s.clock == nil {
		s.clock = store.RealClock{}
	}
	if err := s.lim.Validate(); err != nil {
		return nil, err
	}
	s.mutations = storekit.New(s.check, s.lim, s.mutate)
	if err := s.checkDurability(ctx, cfg.Strict); err != nil {
		return nil, err
	}
	if err := s.checkMeta(ctx); err != nil {
		return nil, err
	}
	if err := s.live.start(ctx, s); err != nil {
		return nil, err
	}
	s.subs.init(s)
	return s, nil
}

// Close ends every subscription, stops refreshing the liveness key and
// removes it, and makes later calls return store.ErrClosed. It does not
// close the Redis client passed to New.
func (s *Store) Close() error {
	s.once.Do(func() {
		s.closed.Store(true)
		s.subs.close()
		s.live.stop(s)
	})
	return nil
}

// Prefix returns the key prefix in use.
func (s *Store) Prefix() string { return s.keys.prefix }

// Shards returns the number of shards in use.
func (s *Store) Shards() int { return s.keys.shards }

func (s *Store) check() error {
	if s.closed.Load() {
		return store.ErrClosed
	}
	if err := s.fenced.Load(); err != nil {
		return *err
	}
	return nil
}

// fence stops the store: every later call answers err (a schema changed
// under it).
func (s *Store) fence(err error) {
	err = fmt.Errorf("%w: %w", store.ErrUnavailable, err)
	if s.fenced.CompareAndSwap(nil, &err) {
		s.log.Error("store stopped: the prefix changed under it", "err", err)
	}
}

// redisErr wraps an error of the Redis client — a refused connection, a
// timeout, ctx ending before the answer, an error reply — in
// store.ErrUnavailable, naming what was being done; after Close it is
// store.ErrClosed. The cause stays in the chain (errors.Is finds
// context.DeadlineExceeded, for one).
func (s *Store) redisErr(what string, err error) error {
	if err == nil {
		return nil
	}
	if s.closed.Load() {
		return store.ErrClosed
	}
	return unavailable(what, err)
}

func unavailable(what string, err error) error {
	if errors.Is(err, store.ErrUnavailable) {
		return err
	}
	return fmt.Errorf("%w: redisstore: %s: %w", store.ErrUnavailable, what, err)
}

// unexpected is a script's answer this build does not know: a server or
// script out of step with this build, reported as the store not answering.
func unexpected(what string, answer any) error {
	return fmt.Errorf("%w: redisstore: %s: unexpected answer %v", store.ErrUnavailable, what, answer)
}

// Secret implements store.Store: the first caller's SET NX makes it, every
// caller reads what won.
func (s *Store) Secret(ctx context.Context, name string) ([]byte, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	if err := store.ValidateSecretName(name); err != nil {
		return nil, err
	}
	k := s.keys.secret(name)
	fresh := make([]byte, secretLen)
	_, _ = rand.Read(fresh)
	pipe := s.rdb.Pipeline()
	pipe.SetNX(ctx, k, fresh, 0)
	get := pipe.Get(ctx, k)
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, s.redisErr("secret "+name, err)
	}
	b, _ := get.Bytes()
	if len(b) != secretLen {
		return nil, fmt.Errorf("%w: redisstore: %s holds %d bytes, a secret is %d", store.ErrCorrupt, k, len(b), secretLen)
	}
	return b, nil
}

// secretLen is the size of a store secret.
const secretLen = 32
