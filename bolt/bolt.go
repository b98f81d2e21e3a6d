package bolt

import (
	"bytes"
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

	"github.com/corrstore/corrstore/internal/storekit"
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
	// Logger for the schema upgrade, corrupt records and the like. Default
	// slog.Default().
	Logger *slog.Logger
}

// Store is a store.Store on one bbolt file, owned by one process.
//
// Every write goes through one writer goroutine that applies the operations
// waiting at that moment, and those that arrive while the group fills, in
// one transaction, commits once, and then answers each caller (group
// commit). An operation that fails its checks
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
	hub    storekit.Hub
	// commits counts group commits (one fsync'd transaction each), so that
	// tests and benchmarks can see how many operations share an fsync.
	commits atomic.Uint64
	// lastBatch and lastCommit (how many operations the last group commit
	// applied, and how long its commit took, not counting the time the
	// operations took while the group filled) belong to the writer
	// goroutine; fill sizes the next group by them.
	lastBatch  int
	lastCommit time.Duration
	// noSync: commits are not fsync'd, so there is nothing for a batch to
	// share and fill does not wait.
	noSync bool
	// upgraded is what Open's upgrade did (From == To when nothing).
	upgraded UpgradeReport
	// listLoad, set by tests, is told each record List reads.
	listLoad func(ref string)

	// mutations supplies Extend, Cancel, Expire, AckDispatch, NackDispatch
	// and Redispatch on mutate (ops.go).
	mutations
}

// mutations is the embedded storekit.Mutations, unexported.
type mutations = storekit.Mutations

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
	s.mutations = storekit.New(s.checkOpen, s.lim, s.mutate)
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

// SchemaError is Open's answer for a file whose layout this build cannot
// use as it is: a newer schema (a newer corrstore wrote it), or schema 1
// opened read-only (only a read-write open upgrades it). Its message is one
// line that says what to do.
type SchemaError struct {
	Path string
	Have int // the file's schema
	Want int // the schema this build reads and writes
}

func (e *SchemaError) Error() string {
	if e.Have > e.Want {
		return fmt.Sprintf("corrstore: %s has schema %d; this build reads up to %d: upgrade corrstore", e.Path, e.Have, e.Want)
	}
	return fmt.Sprintf("corrstore: %s has schema %d; this build reads %d and upgrades the file on a read-write open: "+
		"open it read-write once (run `corrstore serve` on it, or `corrstore upgrade --store bolt://%s`)", e.Path, e.Have, e.Want, e.Path)
}

// schemaOf reads the file's schema number and checks that every bucket is
// there.
func (s *Store) schemaOf(tx *bbolt.Tx) (int, error) {
	meta := tx.Bucket(bucketMeta)
	if meta == nil {
		return 0, fmt.Errorf("open %s: bucket %q is missing: not a corrstore database", s.path, bucketMeta)
	}
	v := meta.Get(metaSchema)
	got, err := strconv.Atoi(string(v))
	if err != nil || got < 1 {
		return 0, fmt.Errorf("open %s: schema version %q is not one corrstore writes: not a corrstore database", s.path, v)
	}
	for _, name := range allBuckets {
		if got < 3 && (bytes.Equal(name, bucketReplies) || bytes.Equal(name, bucketReplyKeys) || bytes.Equal(name, bucketTimeline) || bytes.Equal(name, bucketLate)) {
			continue // added by schema 3: the upgrade makes them
		}
		if tx.Bucket(name) == nil {
			return 0, fmt.Errorf("open %s: bucket %q is missing: not a corrstore database", s.path, name)
		}
	}
	return got, nil
}

// init lays out a new file, checks the schema of an existing one, and, on a
// read-write open, upgrades an older schema in the same transaction.
func (s *Store) init() error {
	s.upgraded = UpgradeReport{Path: s.path, From: schemaVersion, To: schemaVersion}
	if s.ro {
		return s.db.View(func(tx *bbolt.Tx) error {
			got, err := s.schemaOf(tx)
			if err == nil && got != schemaVersion {
				err = &SchemaError{Path: s.path, Have: got, Want: schemaVersion}
			}
			return err
		})
	}
	var report UpgradeReport
	err := s.db.Update(func(tx *bbolt.Tx) error {
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
		got, err := s.schemaOf(tx)
		switch {
		case err != nil:
			return err
		case got > schemaVersion:
			return &SchemaError{Path: s.path, Have: got, Want: schemaVersion}
		case got < schemaVersion:
			report, err = upgrade(txn{tx, s}, s.path, got)
			return err
		}
		return nil
	})
	if err != nil {
		return err
	}
	if report.From != 0 {
		s.upgraded = report
		s.log.Info("upgraded the file's schema", report.attrs()...)
	}
	return nil
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

// writeError is a failed bbolt write: it spoils the whole transaction. A
// bug (a record that does not encode) is not the store being unavailable.
type writeError struct {
	err error
	bug bool
}

func (e *writeError) Error() string { return e.err.Error() }
func (e *writeError) Unwrap() error { return e.err }

func newOp(ctx context.Context, fn func(tx *bbolt.Tx, o *op) error) *op {
	o := &op{ctx: ctx, done: make(chan struct{})}
	o.fn = func(tx *bbolt.Tx) error {
		o.events = o.events[:0]
		return fn(tx, o)
	}
	return o
}

func (s *Store) write(ctx context.Context, fn func(tx *bbolt.Tx, o *op) error) error {
	if s.closed.Load() {
		return store.ErrClosed
	}
	if s.ro {
		return ErrReadOnly
	}
	if err := ctx.Err(); err != nil {
		return notThrough(err)
	}
	o := newOp(ctx, fn)
	select {
	case s.reqs <- o:
	case <-s.stop:
		return store.ErrClosed
	case <-ctx.Done():
		return notThrough(ctx.Err())
	}
	// Once queued, wait for the writer even if ctx ends: the operation's
	// results are written by the writer goroutine, and returning early would
	// let the caller read them while they are written. An operation whose
	// ctx has ended when the writer takes it is not applied (o.err =
	// ctx.Err()), so this waits at most for the group being filled and its
	// commit.
	<-o.done
	return o.err
}

// notThrough is the error of a write whose caller's ctx ended before the
// writer applied it: nothing was written, and errors.Is finds both
// store.ErrUnavailable and the ctx's error.
func notThrough(ctxErr error) error {
	return fmt.Errorf("%w: the write was not applied before the caller's context ended: %w", store.ErrUnavailable, ctxErr)
}

func (s *Store) writer() {
	defer s.wg.Done()
	g := &group{s: s, live: make([]*op, 0, s.max)}
	for {
		select {
		case o := <-s.reqs:
			g.run(o)
		case <-s.stop:
			return
		}
	}
}

// group is one group commit: a write transaction that the operations join
// as they arrive, committed once. It belongs to the writer goroutine.
type group struct {
	s       *Store
	tx      *bbolt.Tx
	live    []*op // joined: applied, or waiting to run alone when spoiled
	n       int   // received, including those whose caller gave up
	spoiled bool  // an operation's write failed: the transaction is lost
}

// run commits first together with what arrives while the group fills (see
// fill). Each operation is applied when it arrives, so the time spent
// waiting for the rest of a group is also the time spent applying it; the
// commit (the fsync) follows the last one.
func (g *group) run(first *op) {
	s := g.s
	g.live, g.n, g.spoiled = g.live[:0], 0, false
	tx, err := s.db.Begin(true)
	if err != nil {
		first.err = fmt.Errorf("%w: begin a write on %s: %w", store.ErrUnavailable, s.path, err)
		close(first.done)
		return
	}
	g.tx = tx
	// After a commit or an earlier rollback this does nothing; after a
	// panic in an operation it leaves the file as it was.
	defer func() { _ = tx.Rollback() }()
	g.add(first)
	g.fill()
	if len(g.live) == 0 {
		return
	}
	s.commits.Add(1)
	s.lastBatch = len(g.live)
	began := time.Now()
	if g.spoiled {
		_ = tx.Rollback() // now: the operations' own transactions need the write lock
		if len(g.live) > 1 {
			g.alone()
		} else {
			s.finish(g.live[0], nil) // it failed alone already
		}
	} else {
		err = tx.Commit()
		for _, o := range g.live {
			s.finish(o, err)
		}
	}
	s.lastCommit = time.Since(began)
}

// join takes o into the group unless its caller has given up.
func (g *group) join(o *op) bool {
	g.n++
	if err := o.ctx.Err(); err != nil {
		o.err = notThrough(err)
		close(o.done)
		return false
	}
	g.live = append(g.live, o)
	return true
}

// add joins o and applies it, unless an earlier write failed: then it
// waits to run alone.
func (g *group) add(o *op) {
	if !g.join(o) || g.spoiled {
		return
	}
	o.err = o.fn(g.tx)
	var we *writeError
	if errors.As(o.err, &we) {
		g.spoiled = true
	}
}

// alone runs each operation of a spoiled group in a transaction of its
// own, so that only the failing one fails. An operation that answers an
// error after saving a change (a deadline outcome found on the way) is
// committed like one that succeeded.
func (g *group) alone() {
	for _, o := range g.live {
		err := g.s.db.Update(func(tx *bbolt.Tx) error {
			o.err = o.fn(tx)
			var we *writeError
			if errors.As(o.err, &we) {
				return o.err
			}
			return nil
		})
		g.s.finish(o, err)
	}
}

// fill adds what is waiting, then, when all callers are released at once
// by a commit, what comes back: they come back one by one while they
// prepare their next operation, and committing the first few alone would
// split them into a small group and a large one, each paying a whole
// fsync. So when the group is smaller than the last one, it waits for the
// rest, at most half as long as the last commit took, and stops as soon as
// the group is as large as the last. A lone caller (last group of one)
// never waits, nor does a store opened with NoSync.
func (g *group) fill() {
	s := g.s
	if !g.drain() {
		return
	}
	want := min(s.lastBatch, s.max)
	if g.n >= want || s.noSync {
		return
	}
	wait := min(s.lastCommit/2, maxFillWait)
	if wait <= 0 {
		return
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for g.n < want {
		select {
		case o := <-s.reqs:
			g.add(o)
			if !g.drain() {
				return
			}
		case <-timer.C:
			return
		case <-s.stop:
			return
		}
	}
}

// maxFillWait bounds how long a group waits to fill, whatever a commit
// costs.
const maxFillWait = 10 * time.Millisecond

// drain adds, without blocking, what is already waiting; false when the
// group is full.
func (g *group) drain() bool {
	for g.n < g.s.max {
		select {
		case o := <-g.s.reqs:
			g.add(o)
		default:
			return true
		}
	}
	return false
}

// finish answers o once its transaction committed (txErr nil) or failed.
// An operation may answer an error and still have changed a record (a
// deadline outcome found on the way): its events are published whenever
// the commit went through.
func (s *Store) finish(o *op, txErr error) {
	var we *writeError
	switch {
	case errors.As(o.err, &we) && we.bug:
		o.err = fmt.Errorf("write %s: %w", s.path, we.err)
	case errors.As(o.err, &we):
		o.err = fmt.Errorf("%w: write %s: %w", store.ErrUnavailable, s.path, we.err)
	case txErr != nil && (o.err == nil || len(o.events) > 0):
		// An answer that wrote nothing stands; one that did was not stored.
		o.err = fmt.Errorf("%w: commit %s: %w", store.ErrUnavailable, s.path, txErr)
	case txErr == nil:
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
