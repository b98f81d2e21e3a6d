package bolt

import (
	"context"
	"errors"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	"github.com/corrstore/corrstore/store"
)

// groupTest opens a store whose writer goroutine is stopped (see
// stopWriter).
func groupTest(t *testing.T) *Store {
	t.Helper()
	s := openTest(t, Options{})
	stopWriter(s)
	return s
}

func openTest(t *testing.T, opts Options) *Store {
	t.Helper()
	opts.Path, opts.NoSync = filepath.Join(t.TempDir(), "w.db"), true
	s, err := Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// stopWriter stops the writer goroutine: the test then queues operations
// and runs the group commit itself, so that it knows which operations
// share a group.
func stopWriter(s *Store) {
	close(s.stop)
	s.wg.Wait()
	s.stop = make(chan struct{})
	s.reqs = make(chan *op, 16)
}

// runGroup queues ops and runs one group commit of them; it returns each
// operation's error.
func runGroup(s *Store, ops ...*op) []error {
	for _, o := range ops {
		s.reqs <- o
	}
	g := &group{s: s}
	g.run(<-s.reqs)
	errs := make([]error, len(ops))
	for i, o := range ops {
		<-o.done
		errs[i] = o.err
	}
	return errs
}

// putMeta writes key in the meta bucket and counts its runs.
func putMeta(key string, runs *atomic.Int32) func(tx *bbolt.Tx, o *op) error {
	return func(tx *bbolt.Tx, o *op) error {
		runs.Add(1)
		return put(tx.Bucket(bucketMeta), []byte(key), []byte("v"))
	}
}

func hasMeta(t *testing.T, s *Store, key string) bool {
	t.Helper()
	var found bool
	if err := s.db.View(func(tx *bbolt.Tx) error {
		found = tx.Bucket(bucketMeta).Get([]byte(key)) != nil
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return found
}

func TestGroupCommitsTogether(t *testing.T) {
	s := groupTest(t)
	var runs [3]atomic.Int32
	ctx := context.Background()
	errs := runGroup(s,
		newOp(ctx, putMeta("test-a", &runs[0])),
		newOp(ctx, putMeta("test-b", &runs[1])),
		newOp(ctx, putMeta("test-c", &runs[2])))
	for i, err := range errs {
		if err != nil {
			t.Fatalf("operation %d: %v", i, err)
		}
		if runs[i].Load() != 1 {
			t.Errorf("operation %d ran %d times, want once", i, runs[i].Load())
		}
	}
	if s.Commits() != 1 || s.lastBatch != 3 {
		t.Errorf("%d commits of %d, want one of 3", s.Commits(), s.lastBatch)
	}
	for _, k := range []string{"test-a", "test-b", "test-c"} {
		if !hasMeta(t, s, k) {
			t.Errorf("%s not written", k)
		}
	}
}

func TestWriteFailureFailsOnlyItsOperation(t *testing.T) {
	s := groupTest(t)
	errDisk := errors.New("disk on fire")
	var runsA, runsC atomic.Int32
	ctx := context.Background()
	errs := runGroup(s,
		newOp(ctx, putMeta("test-a", &runsA)),
		newOp(ctx, func(tx *bbolt.Tx, o *op) error { return &writeError{err: errDisk} }),
		newOp(ctx, putMeta("test-c", &runsC)))
	if errs[0] != nil || errs[2] != nil {
		t.Fatalf("the good operations failed: %v, %v", errs[0], errs[2])
	}
	if !errors.Is(errs[1], errDisk) {
		t.Fatalf("the failing operation: err = %v, want %v", errs[1], errDisk)
	}
	// The group's transaction was lost with the failure: the operation
	// before the failure ran in the group and then alone, the one after
	// it only alone.
	if runsA.Load() != 2 || runsC.Load() != 1 {
		t.Errorf("good operations ran %d and %d times, want 2 and 1", runsA.Load(), runsC.Load())
	}
	for _, k := range []string{"test-a", "test-c"} {
		if !hasMeta(t, s, k) {
			t.Errorf("%s not written", k)
		}
	}
}

func TestGivenUpOperationIsNotApplied(t *testing.T) {
	s := groupTest(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var runsA, runsGone atomic.Int32
	errs := runGroup(s,
		newOp(context.Background(), putMeta("test-a", &runsA)),
		newOp(ctx, putMeta("test-gone", &runsGone)))
	if errs[0] != nil {
		t.Fatal(errs[0])
	}
	if !errors.Is(errs[1], context.Canceled) || !errors.Is(errs[1], store.ErrUnavailable) {
		t.Fatalf("err = %v, want context.Canceled and store.ErrUnavailable", errs[1])
	}
	if runsGone.Load() != 0 || hasMeta(t, s, "test-gone") {
		t.Error("an operation whose caller gave up before it was applied was applied")
	}
}

// waitQueued waits until n operations wait in s.reqs.
func waitQueued(t *testing.T, s *Store, n int) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for len(s.reqs) < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d operations queued, want %d", len(s.reqs), n)
		}
		runtime.Gosched()
	}
}

// A pass that shares its group with a failing write runs twice (in the
// group, then alone): it must answer with what its second run decided,
// not with both runs' records.
func TestSweepRunTwiceAnswersOnce(t *testing.T) {
	clk := store.NewFakeClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	s := openTest(t, Options{Clock: clk})
	ctx := context.Background()
	for _, id := range []string{"a", "b"} {
		if _, err := s.Register(ctx, &store.Correlation{ID: id, Timeout: time.Second}); err != nil {
			t.Fatal(err)
		}
	}
	stopWriter(s) // the test runs the next group itself

	type answer struct {
		cs  []*store.Correlation
		err error
	}
	expired := make(chan answer, 1)
	go func() {
		cs, err := s.ExpireDue(ctx, clk.Now().Add(time.Hour), 10)
		expired <- answer{cs, err}
	}()
	waitQueued(t, s, 1)
	errDisk := errors.New("disk on fire")
	failing := newOp(ctx, func(tx *bbolt.Tx, o *op) error { return &writeError{err: errDisk} })
	s.reqs <- failing
	(&group{s: s}).run(<-s.reqs)
	<-failing.done
	if !errors.Is(failing.err, errDisk) {
		t.Fatalf("failing operation: %v", failing.err)
	}
	got := <-expired
	if got.err != nil {
		t.Fatal(got.err)
	}
	if len(got.cs) != 2 {
		t.Fatalf("ExpireDue answered %d correlations, want the 2 it decided", len(got.cs))
	}
	for _, c := range got.cs {
		if c.State != store.StateTimedOut {
			t.Errorf("%s: state %s, want timed_out", c.ID, c.State)
		}
	}
}

// An operation that fails alone is answered once, not run again.
func TestLoneWriteFailureNotRunAgain(t *testing.T) {
	s := groupTest(t)
	errDisk := errors.New("disk on fire")
	var runs atomic.Int32
	errs := runGroup(s, newOp(context.Background(), func(tx *bbolt.Tx, o *op) error {
		runs.Add(1)
		return &writeError{err: errDisk}
	}))
	if !errors.Is(errs[0], errDisk) {
		t.Fatalf("err = %v, want %v", errs[0], errDisk)
	}
	if runs.Load() != 1 {
		t.Errorf("ran %d times, want once", runs.Load())
	}
}

// A group whose callers have all given up commits nothing.
func TestGroupOfGivenUpCommitsNothing(t *testing.T) {
	s := groupTest(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var runs atomic.Int32
	before := s.Commits()
	errs := runGroup(s, newOp(ctx, putMeta("test-gone", &runs)), newOp(ctx, putMeta("test-gone-too", &runs)))
	for _, err := range errs {
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v, want context.Canceled", err)
		}
	}
	if runs.Load() != 0 || s.Commits() != before {
		t.Errorf("%d runs and %d commits, want none", runs.Load(), s.Commits()-before)
	}
	// The writer goes on: the next group commits.
	var ok atomic.Int32
	if errs := runGroup(s, newOp(context.Background(), putMeta("test-next", &ok))); errs[0] != nil {
		t.Fatal(errs[0])
	}
	if !hasMeta(t, s, "test-next") {
		t.Error("the next group did not commit")
	}
}

// A failed write is the store being unavailable (disk full), not a bug;
// a record that does not encode is a bug.
func TestWriteFailureIsUnavailable(t *testing.T) {
	s := groupTest(t)
	ctx := context.Background()
	errs := runGroup(s,
		newOp(ctx, func(tx *bbolt.Tx, o *op) error { return &writeError{err: syscall.ENOSPC} }),
		newOp(ctx, func(tx *bbolt.Tx, o *op) error { return &writeError{err: errors.New("no encoding"), bug: true} }))
	if !errors.Is(errs[0], store.ErrUnavailable) || !errors.Is(errs[0], syscall.ENOSPC) {
		t.Errorf("disk full: %v, want store.ErrUnavailable and ENOSPC", errs[0])
	}
	if errs[1] == nil || errors.Is(errs[1], store.ErrUnavailable) {
		t.Errorf("a bug: %v, want an error that is not store.ErrUnavailable", errs[1])
	}
}

// A step that answers ErrNotPending after finding the deadline passed has
// its deadline outcome stored even when it runs alone after a spoiled group.
func TestRefusedStepStoredWhenAlone(t *testing.T) {
	clk := store.NewFakeClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	s := openTest(t, Options{Clock: clk})
	ctx := context.Background()
	if _, err := s.Register(ctx, &store.Correlation{ID: "late", Timeout: time.Second}); err != nil {
		t.Fatal(err)
	}
	clk.Add(time.Second)
	stopWriter(s)
	extended := make(chan error, 1)
	go func() {
		_, err := s.Extend(ctx, store.RefOf("late"), clk.Now().Add(time.Hour))
		extended <- err
	}()
	waitQueued(t, s, 1)
	failing := newOp(ctx, func(tx *bbolt.Tx, o *op) error { return &writeError{err: syscall.EIO} })
	s.reqs <- failing
	(&group{s: s}).run(<-s.reqs)
	<-failing.done
	if err := <-extended; !errors.Is(err, store.ErrNotPending) {
		t.Fatalf("extend: %v, want ErrNotPending", err)
	}
	c, err := s.Get(ctx, store.RefOf("late"))
	if err != nil {
		t.Fatal(err)
	}
	if c.State != store.StateTimedOut || c.Outcome.Reason != store.ReasonDeadline {
		t.Errorf("state %s, outcome %+v: want timed_out by the deadline", c.State, c.Outcome)
	}
	if err := s.Verify(ctx); err != nil {
		t.Error(err)
	}
}
