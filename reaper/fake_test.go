package reaper_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/corrstore/corrstore/store"
)

// fakeStore is the smallest store the reaper can work on: the three calls
// a pass makes, each scriptable to fail, over an in-memory table decided by
// the real state machine. Other Store methods panic (the nil embedded
// interface): the reaper must not call them.
type fakeStore struct {
	store.Store

	mu      sync.Mutex
	lim     store.Limits
	pending []*store.Correlation
	corrupt map[string]bool // pending IDs whose record "does not decode"
	aside   []string        // corrupt IDs set aside

	purgeable  int // decided records past any retention
	early      int // early replies past any window
	purgeAt    []time.Time
	dropAt     []time.Time
	limits     map[string][]int // limits passed, per method
	failExpire func(call int) error
	failPurge  error
	calls      map[string]int
}

func newFakeStore() *fakeStore {
	return &fakeStore{lim: store.Limits{}.WithDefaults(), corrupt: map[string]bool{},
		limits: map[string][]int{}, calls: map[string]int{}}
}

// add registers a pending correlation due at deadline.
func (f *fakeStore) add(c *store.Correlation, created time.Time) *store.Correlation {
	p, err := store.Prepare(c, created, f.lim)
	if err != nil {
		panic(err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.pending = append(f.pending, p)
	return p
}

// addDue registers n single correlations with the given deadline.
func (f *fakeStore) addDue(n int, deadline time.Time) {
	for i := range n {
		f.add(&store.Correlation{ID: fmt.Sprintf("due-%d-%d", deadline.UnixNano(), i), Deadline: deadline},
			deadline.Add(-time.Minute))
	}
}

// Register adds a pending correlation, for benchmarks on the real clock.
func (f *fakeStore) Register(_ context.Context, c *store.Correlation) (store.RegisterResult, error) {
	p, err := store.Prepare(c, time.Now(), f.lim)
	if err != nil {
		return store.RegisterResult{}, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.pending = append(f.pending, p)
	return store.RegisterResult{Correlation: p.Clone(), Created: true}, nil
}

func (f *fakeStore) count(method string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[method]
}

func (f *fakeStore) ExpireDue(ctx context.Context, now time.Time, limit int) ([]*store.Correlation, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls["ExpireDue"]++
	f.limits["ExpireDue"] = append(f.limits["ExpireDue"], limit)
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if f.failExpire != nil {
		if err := f.failExpire(f.calls["ExpireDue"]); err != nil {
			return nil, err
		}
	}
	slices.SortStableFunc(f.pending, func(a, b *store.Correlation) int { return a.Deadline.Compare(b.Deadline) })
	var decided []*store.Correlation
	var errs []error
	taken := 0
	for taken < limit && taken < len(f.pending) && !f.pending[taken].Deadline.After(now) {
		c := f.pending[taken]
		taken++
		if f.corrupt[c.ID] {
			f.aside = append(f.aside, c.ID)
			errs = append(errs, &store.CorruptError{ID: c.ID, Err: errors.New("invalid character 'x' looking for beginning of value")})
			continue
		}
		c.DecideAtDeadline(now, store.ReasonDeadline, f.lim)
		decided = append(decided, c.Clone())
	}
	f.pending = f.pending[taken:]
	return decided, errors.Join(errs...)
}

func (f *fakeStore) Purge(ctx context.Context, before time.Time, limit int) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls["Purge"]++
	f.limits["Purge"] = append(f.limits["Purge"], limit)
	f.purgeAt = append(f.purgeAt, before)
	if f.failPurge != nil {
		return 0, f.failPurge
	}
	n := min(limit, f.purgeable)
	f.purgeable -= n
	return n, ctx.Err()
}

func (f *fakeStore) DropEarlyReplies(ctx context.Context, before time.Time, limit int) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls["DropEarlyReplies"]++
	f.limits["DropEarlyReplies"] = append(f.limits["DropEarlyReplies"], limit)
	f.dropAt = append(f.dropAt, before)
	n := min(limit, f.early)
	f.early -= n
	return n, ctx.Err()
}
