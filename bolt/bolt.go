package bolt

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/corrstore/corrstore/store"
)

// ErrReadOnly is returned by every write on a store opened with ReadOnly.
var ErrReadOnly = errors.New("store opened read-only: writes need the process that holds the file (use the server)")

// Options configure Open. Zero fields take the defaults given.
type Options struct {
	// Path of the database file. Default "corrstore.db".
	Path string
	// LockTimeout bounds the wait for the file lock another process holds.
	// Default 5s; it never waits forever.
	LockTimeout time.Duration
	// ReadOnly opens the file with a shared lock, for reading a file the
	// daemon holds... once the daemon lets go of it: bbolt's locks are
	// exclusive for writers. Writes return ErrReadOnly.
	ReadOnly bool
	// NoSync skips fsync. Only for tests: a crash loses acknowledged writes.
	NoSync bool
	// MaxBatch bounds how many operations one group commit takes. Default 1024.
	MaxBatch int
	// Clock is the source of time. Default store.RealClock.
	Clock store.Clock
	// Limits the store enforces; zero fields take store defaults.
	Limits store.Limits
	// Logger for corrupt records and the like. Default slog.Default().
	Logger *slog.Logger
}

// Store is a store.Store on one bbolt file, owned by one process.
//
// Every write goes through one writer goroutine that collects the operations
// waiting at that moment, applies them in one transaction, fsyncs once, and
// then answers each caller (group commit). An operation that fails its checks
// fails alone: operations do every check before their first write, and if a
// write itself fails the batch is rolled back and each operation is retried
// in a transaction of its own.
type Store struct {
	db     *bbolt.DB
	path   string
	clock  store.Clock
	lim    store.Limits
	log    *slog.Logger
	max    int
	ro     bool
	reqs   chan *op
	stop   chan struct{}
	wg     sync.WaitGroup
	closed atomic.Bool
	once   sync.Once
	hub    store.Hub
	// commits counts group commits (one fsync'd transaction each), so that
	// tests and benchmarks can see how many operations share an fsync.
	commits atomic.Uint64
	// lastBatch and lastCommit (the size and duration of the last group
	// commit) belong to the writer goroutine; collect sizes the next batch
	// by them.
	lastBatch  int
	lastCommit time.Duration
	// noSync: commits are not fsync'd, so there is nothing for a batch to
	// share and collect does not wait.
	noSync bool
}

var _ store.Store = (*Store)(nil)

// Open opens (creating when needed, unless ReadOnly) the database file.
func Open(opts Options) (*Store, error) {
	s := &Store{
		path:   cmp.Or(opts.Path, "corrstore.db"),
		clock:  opts.Clock,
		lim:    opts.Limits.WithDefaults(),
		log:    cmp.Or(opts.Logger, slog.Default()).With("component", "bolt"),
		max:    cmp.Or(opts.MaxBatch, 1024),
		ro:     opts.ReadOnly,
		noSync: opts.NoSync,
		reqs:   make(chan *op),
		stop:   make(chan struct{}),
	}
	if s.clock == nil {
		s.clock = store.RealClock{}
	}
	if err := s.lim.Validate(); err != nil {
		return nil, err
	}
	if s.max < 1 {
		return nil, fmt.Errorf("%w: max_batch: must be at least 1, got %d", store.ErrInvalid, s.max)
	}
	timeout := cmp.Or(opts.LockTimeout, 5*time.Second)
	if opts.ReadOnly {
		if _, err := os.Stat(s.path); err != nil {
			return nil, fmt.Errorf("open %s read-only: %w", s.path, err)
		}
	}
	db, err := bbolt.Open(s.path, 0o600, &bbolt.Options{
		Timeout:      timeout,
		ReadOnly:     opts.ReadOnly,
		NoSync:       opts.NoSync,
		NoGrowSync:   opts.NoSync, // growing the file fsyncs too
		FreelistType: bbolt.FreelistMapType,
		// The freelist is rebuilt by a scan at open instead of written at
		// every commit: one page less to write and fsync per group commit.
		NoFreelistSync: true,
	})
	if errors.Is(err, bolterrors.ErrTimeout) {
		return nil, fmt.Errorf("open %s: another process holds the file (waited %s for its lock); stop it, or use its server: %w", s.path, timeout, err)
	}
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", s.path, err)
	}
	s.db = db
	if err := s.init(); err != nil {
		db.Close()
		return nil, err
	}
	if !s.ro {
		s.wg.Add(1)
		go s.writer()
	}
	return s, nil
}

func (s *Store) init() error {
	check := func(tx *bbolt.Tx) error {
		for _, name := range allBuckets {
			if tx.Bucket(name) == nil {
				return fmt.Errorf("open %s: bucket %q is missing: not a corrstore database", s.path, name)
			}
		}
		v := tx.Bucket(bucketMeta).Get(metaSchema)
		got, err := strconv.Atoi(string(v))
		if err != nil || got != schemaVersion {
			return fmt.Errorf("open %s: schema version %q, this build reads version %d", s.path, v, schemaVersion)
		}
		return nil
	}
	if s.ro {
		return s.db.View(check)
	}
	return s.db.Update(func(tx *bbolt.Tx) error {
		empty := true
		_ = tx.ForEach(func([]byte, *bbolt.Bucket) error { empty = false; return nil })
		if empty { // a new file: lay it out
			for _, name := range allBuckets {
				if _, err := tx.CreateBucket(name); err != nil {
					return err
				}
			}
			if err := tx.Bucket(bucketMeta).Put(metaSchema, []byte(strconv.Itoa(schemaVersion))); err != nil {
				return err
			}
		}
		return check(tx)
	})
}

// Path returns the database file's path.
func (s *Store) Path() string { return s.path }

// DBStats returns bbolt's statistics for the file: among them, summed over
// every closed transaction, the B+tree nodes a write touched and the pages
// it wrote. A measure of work that a slow or busy machine does not change,
// for benchmarks and diagnostics.
func (s *Store) DBStats() bbolt.Stats { return s.db.Stats() }

// Close stops the writer once the batch in flight is answered, closes every
// subscription and the file. Calls after Close return store.ErrClosed.
func (s *Store) Close() error {
	var err error
	s.once.Do(func() {
		s.closed.Store(true)
		close(s.stop)
		s.wg.Wait()
		s.hub.Close()
		err = s.db.Close()
	})
	return err
}

// op is one write waiting for the group commit.
type op struct {
	ctx context.Context
	// fn does every check before its first write and returns a *writeError
	// only for a failed write. It may run twice (batch, then alone), so it
	// must set its results afresh each time.
	fn     func(tx *bbolt.Tx) error
	events []store.Event // published after the commit
	err    error
	done   chan struct{}
}

// writeError is a failed bbolt write: it spoils the whole transaction.
type writeError struct{ err error }

func (e *writeError) Error() string { return e.err.Error() }
func (e *writeError) Unwrap() error { return e.err }

func (s *Store) write(ctx context.Context, fn func(tx *bbolt.Tx, o *op) error) error {
	if s.closed.Load() {
		return store.ErrClosed
	}
	if s.ro {
		return ErrReadOnly
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	o := &op{ctx: ctx, done: make(chan struct{})}
	o.fn = func(tx *bbolt.Tx) error {
		o.events = o.events[:0]
		return fn(tx, o)
	}
	select {
	case s.reqs <- o:
	case <-s.stop:
		return store.ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
	// Once queued, wait for the writer even if ctx ends: the operation's
	// results are written by the writer goroutine, and returning early would
	// let the caller read them while they are written. A cancelled operation
	// that has not started is skipped by commit (o.err = ctx.Err()), so this
	// waits at most for the commit in progress.
	<-o.done
	return o.err
}

func (s *Store) writer() {
	defer s.wg.Done()
	batch := make([]*op, 0, s.max)
	for {
		select {
		case o := <-s.reqs:
			batch = append(batch[:0], o)
		case <-s.stop:
			return
		}
		batch = s.collect(batch)
		s.commit(batch)
	}
}

// collect adds what is waiting to the batch. When all callers are released
// at once by a commit, they come back one by one while they prepare their
// next operation; committing the first few alone would split them into a
// small batch and a large one, each paying a whole fsync. So when the batch
// is smaller than the last one, collect waits for the rest, at most half as
// long as the last commit took, and commits as soon as the batch is as large
// as the last. A lone caller (last batch of one) never waits, nor does a
// store opened with NoSync.
func (s *Store) collect(batch []*op) []*op {
	batch = s.drain(batch)
	want := min(s.lastBatch, s.max)
	if len(batch) >= want || s.noSync {
		return batch
	}
	wait := min(s.lastCommit/2, maxCollectWait)
	if wait <= 0 {
		return batch
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for len(batch) < want {
		select {
		case o := <-s.reqs:
			batch = s.drain(append(batch, o))
		case <-timer.C:
			return batch
		case <-s.stop:
			return batch
		}
	}
	return batch
}

// maxCollectWait bounds how long a batch waits to fill, whatever a commit
// costs.
const maxCollectWait = 10 * time.Millisecond

// drain adds, without blocking, what is already waiting.
func (s *Store) drain(batch []*op) []*op {
	for len(batch) < s.max {
		select {
		case o := <-s.reqs:
			batch = append(batch, o)
		default:
			return batch
		}
	}
	return batch
}

// commit runs a batch in one transaction; on a write failure it runs each
// operation alone so that only the failing one fails.
func (s *Store) commit(batch []*op) {
	live := batch[:0:0]
	for _, o := range batch {
		if err := o.ctx.Err(); err != nil {
			o.err = err
			close(o.done)
			continue
		}
		live = append(live, o)
	}
	if len(live) == 0 {
		return
	}
	s.commits.Add(1)
	s.lastBatch = len(live)
	began := time.Now()
	defer func() { s.lastCommit = time.Since(began) }()
	err := s.db.Update(func(tx *bbolt.Tx) error {
		for _, o := range live {
			o.err = o.fn(tx)
			var we *writeError
			if errors.As(o.err, &we) {
				return we
			}
		}
		return nil
	})
	var we *writeError
	if errors.As(err, &we) && len(live) > 1 {
		for _, o := range live {
			err := s.db.Update(func(tx *bbolt.Tx) error {
				o.err = o.fn(tx)
				return o.err
			})
			s.finish(o, err)
		}
		return
	}
	for _, o := range live {
		s.finish(o, err)
	}
}

func (s *Store) finish(o *op, txErr error) {
	var we *writeError
	switch {
	case errors.As(o.err, &we):
		o.err = fmt.Errorf("write %s: %w", s.path, we.err)
	case o.err == nil && txErr != nil:
		o.err = fmt.Errorf("commit %s: %w", s.path, txErr)
	}
	if o.err == nil {
		s.hub.Publish(o.events...)
	}
	close(o.done)
}

// view runs a read transaction.
func (s *Store) view(fn func(tx *bbolt.Tx) error) error {
	if s.closed.Load() {
		return store.ErrClosed
	}
	err := s.db.View(fn)
	if errors.Is(err, bolterrors.ErrDatabaseNotOpen) {
		return store.ErrClosed
	}
	return err
}
