package storetest_test

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/corrstore/corrstore/store"
)

// memStore is the reference store.Store: one mutex over maps, every decision
// made by the pure methods of package store. It exists to run the suite
// before a real backend does, and as the suite's self-test.
type memStore struct {
	clock store.Clock
	lim   store.Limits
	hub   store.Hub
	bug   string // a deliberate bug, for the mutation self-test (see mutants)

	mu     sync.Mutex
	closed bool
	recs   map[string]*store.Correlation
	idem   map[string]string // namespace \x00 idempotency key -> ID
	early  []earlyReply      // in arrival order
}

type earlyReply struct {
	id string
	r  store.Reply
}

var _ store.Store = (*memStore)(nil)

func newMemStore(clock store.Clock, lim store.Limits) (*memStore, error) {
	lim = lim.WithDefaults()
	if err := lim.Validate(); err != nil {
		return nil, err
	}
	m := &memStore{clock: clock, lim: lim, recs: map[string]*store.Correlation{}, idem: map[string]string{}, bug: *mutant}
	if m.bug == "limits-ignored" {
		m.lim = store.Limits{}.WithDefaults()
	}
	return m, nil
}

// now reads the store's clock.
func (m *memStore) now() time.Time {
	if m.bug == "wall-clock" {
		return time.Now()
	}
	return m.clock.Now()
}

func idemKey(ns, key string) string { return ns + "\x00" + key }

// lock takes the mutex unless the store is closed.
func (m *memStore) lock() error {
	m.mu.Lock()
	if m.closed && m.bug != "close-noop" {
		m.mu.Unlock()
		return store.ErrClosed
	}
	return nil
}

func (m *memStore) Register(_ context.Context, c *store.Correlation) (store.RegisterResult, error) {
	if err := m.lock(); err != nil {
		return store.RegisterResult{}, err
	}
	defer m.mu.Unlock()
	now := m.now()
	n, err := store.Prepare(c, now, m.lim)
	if err != nil {
		return store.RegisterResult{}, err
	}
	id := n.ID
	if n.IdempotencyKey != "" && m.bug != "no-idempotency-index" {
		if known, ok := m.idem[idemKey(n.Namespace, n.IdempotencyKey)]; ok {
			id = known
		}
	}
	if old, ok := m.recs[id]; ok && m.bug != "register-overwrites" {
		if err := old.Registration(n); err != nil && m.bug != "register-no-conflict" {
			return store.RegisterResult{}, err
		}
		return store.RegisterResult{Correlation: old.Clone()}, nil
	}
	var mine []store.Reply
	m.early = slices.DeleteFunc(m.early, func(e earlyReply) bool {
		if e.id == n.ID {
			r := e.r
			if m.bug == "early-arrival-lost" {
				r.ReceivedAt = time.Time{}
			}
			mine = append(mine, r)
			return m.bug != "early-kept"
		}
		return false
	})
	applied := n.ApplyEarly(mine, now, m.lim)
	m.recs[n.ID] = n
	if n.IdempotencyKey != "" {
		m.idem[idemKey(n.Namespace, n.IdempotencyKey)] = n.ID
	}
	if applied > 0 {
		m.hub.Publish(store.EventOf(n))
	}
	return store.RegisterResult{Correlation: n.Clone(), Created: true, EarlyApplied: applied}, nil
}

func (m *memStore) Deliver(_ context.Context, id string, r store.Reply) (store.DeliverResult, error) {
	if err := m.lock(); err != nil {
		return store.DeliverResult{}, err
	}
	defer m.mu.Unlock()
	if err := store.ValidateID(id); err != nil {
		return store.DeliverResult{}, err
	}
	if err := store.ValidateReply(r, m.lim); err != nil {
		return store.DeliverResult{}, err
	}
	now := m.now()
	r.ReceivedAt = now
	c, ok := m.recs[id]
	if !ok {
		if !m.lim.EarlyBuffering() {
			return store.DeliverResult{}, fmt.Errorf("%w: no correlation %s, and early replies are not buffered", store.ErrNotFound, id)
		}
		if len(m.early) >= m.lim.MaxEarlyReplies && m.bug != "early-no-cap" {
			return store.DeliverResult{}, fmt.Errorf("%w: early replies: the store holds %d, the limit", store.ErrTooLarge, len(m.early))
		}
		perID := 0
		for _, e := range m.early {
			if e.id == id {
				perID++
			}
		}
		if perID >= m.lim.MaxEarlyPerID {
			return store.DeliverResult{}, fmt.Errorf("%w: early replies for %s: %d, the limit", store.ErrTooLarge, id, perID)
		}
		m.early = append(m.early, earlyReply{id: id, r: r})
		return store.DeliverResult{Status: store.DeliverBuffered}, nil
	}
	if m.bug == "late-not-saved" && c.State.Terminal() {
		c = c.Clone()
	}
	st, err := c.ApplyReply(r, now, m.lim)
	if err != nil {
		return store.DeliverResult{}, err
	}
	if m.bug == "deliver-reapplies" && st == store.DeliverDuplicate {
		st = store.DeliverAccepted
	}
	if st == store.DeliverAccepted || st == store.DeliverCompleted {
		m.hub.Publish(store.EventOf(c))
	}
	return store.DeliverResult{Status: st, Correlation: c.Clone()}, nil
}

func (m *memStore) Get(_ context.Context, id string) (*store.Correlation, error) {
	if err := m.lock(); err != nil {
		return nil, err
	}
	defer m.mu.Unlock()
	c, ok := m.recs[id]
	if !ok {
		return nil, fmt.Errorf("%w: correlation %s", store.ErrNotFound, id)
	}
	return c.Clone(), nil
}

// update applies fn to the record id and publishes an event when fn decided
// an outcome.
func (m *memStore) update(id string, fn func(c *store.Correlation, now time.Time) (bool, error)) (store.Result, error) {
	if err := m.lock(); err != nil {
		return store.Result{}, err
	}
	defer m.mu.Unlock()
	c, ok := m.recs[id]
	if !ok {
		return store.Result{}, fmt.Errorf("%w: correlation %s", store.ErrNotFound, id)
	}
	wasPending := c.State == store.StatePending
	dup, err := fn(c, m.now())
	if err != nil {
		return store.Result{}, err
	}
	if wasPending && c.State.Terminal() {
		m.hub.Publish(store.EventOf(c))
	}
	return store.Result{Correlation: c.Clone(), Duplicate: dup}, nil
}

func (m *memStore) Extend(_ context.Context, id string, deadline time.Time) (store.Result, error) {
	return m.update(id, func(c *store.Correlation, now time.Time) (bool, error) {
		return c.Extend(now, deadline, m.lim)
	})
}

func (m *memStore) Cancel(_ context.Context, id, reason string) (store.Result, error) {
	if err := store.ValidateReason(reason); err != nil {
		return store.Result{}, err
	}
	return m.update(id, func(c *store.Correlation, now time.Time) (bool, error) {
		return c.Cancel(now, reason, m.lim)
	})
}

func (m *memStore) Expire(_ context.Context, id, reason string) (store.Result, error) {
	if err := store.ValidateReason(reason); err != nil {
		return store.Result{}, err
	}
	return m.update(id, func(c *store.Correlation, now time.Time) (bool, error) {
		return c.Expire(now, reason, m.lim)
	})
}

func (m *memStore) AckDispatch(_ context.Context, id string, cl store.Claim) (store.Result, error) {
	return m.update(id, func(c *store.Correlation, now time.Time) (bool, error) {
		return c.AckDispatch(cl, now, m.lim)
	})
}

func (m *memStore) NackDispatch(_ context.Context, id string, cl store.Claim, errText string, retryAt time.Time) (store.Result, error) {
	return m.update(id, func(c *store.Correlation, now time.Time) (bool, error) {
		return c.NackDispatch(cl, errText, retryAt, now, m.lim)
	})
}

func (m *memStore) Redispatch(_ context.Context, id string) (store.Result, error) {
	return m.update(id, func(c *store.Correlation, now time.Time) (bool, error) {
		return c.Redispatch(now, m.lim)
	})
}

// selectSorted returns the records that pass keep, sorted by cmp.
func (m *memStore) selectSorted(keep func(*store.Correlation) bool, order func(a, b *store.Correlation) int) []*store.Correlation {
	var out []*store.Correlation
	for _, c := range m.recs {
		if keep(c) {
			out = append(out, c)
		}
	}
	slices.SortFunc(out, order)
	return out
}

func (m *memStore) ExpireDue(_ context.Context, now time.Time, limit int) ([]*store.Correlation, error) {
	if err := m.lock(); err != nil {
		return nil, err
	}
	defer m.mu.Unlock()
	if err := store.ValidateLimit(limit); err != nil {
		return nil, err
	}
	due := m.selectSorted(
		func(c *store.Correlation) bool {
			switch m.bug {
			case "expire-decided":
				return !c.Deadline.After(now)
			case "expire-strict":
				return c.State == store.StatePending && c.Deadline.Before(now)
			}
			return c.State == store.StatePending && !c.Deadline.After(now)
		},
		func(a, b *store.Correlation) int {
			return cmp.Or(a.Deadline.Compare(b.Deadline), strings.Compare(a.ID, b.ID))
		})
	var out []*store.Correlation
	if m.bug == "expire-no-limit" {
		limit = len(due)
	}
	for _, c := range due[:min(limit, len(due))] {
		c.DecideAtDeadline(now, store.ReasonDeadline, m.lim)
		if m.bug != "expire-silent" {
			m.hub.Publish(store.EventOf(c))
		}
		out = append(out, c.Clone())
	}
	return out, nil
}

func (m *memStore) ClaimDispatch(_ context.Context, instance string, now time.Time, lease time.Duration, limit int) ([]*store.Correlation, error) {
	if err := m.lock(); err != nil {
		return nil, err
	}
	defer m.mu.Unlock()
	if err := store.ValidateClaim(instance, lease, limit); err != nil {
		return nil, err
	}
	due := m.selectSorted(
		func(c *store.Correlation) bool { return c.DispatchDue(now) },
		func(a, b *store.Correlation) int {
			return cmp.Or(a.Dispatch.NextAt.Compare(b.Dispatch.NextAt), strings.Compare(a.ID, b.ID))
		})
	var out []*store.Correlation
	for _, c := range due {
		if len(out) == limit && m.bug != "claim-no-limit" {
			break
		}
		if c.ClaimDispatch(instance, now, lease, m.lim) {
			out = append(out, c.Clone())
		}
	}
	return out, nil
}

func (m *memStore) List(_ context.Context, f store.Filter) (store.Page, error) {
	if err := m.lock(); err != nil {
		return store.Page{}, err
	}
	defer m.mu.Unlock()
	if err := f.Normalize(); err != nil {
		return store.Page{}, err
	}
	order := func(a, b *store.Correlation) int {
		return cmp.Or(a.CreatedAt.Compare(b.CreatedAt), strings.Compare(a.ID, b.ID))
	}
	if f.Order == store.NewestFirst && m.bug != "list-order-ignored" {
		order = func(a, b *store.Correlation) int {
			return cmp.Or(b.CreatedAt.Compare(a.CreatedAt), strings.Compare(b.ID, a.ID))
		}
	}
	keep := f.Match
	if m.bug == "list-offset-cursor" {
		return m.listByOffset(f, order)
	}
	if f.Cursor != "" {
		created, id, err := store.DecodeCursor(f.Cursor)
		if err != nil {
			return store.Page{}, err
		}
		at := &store.Correlation{ID: id, CreatedAt: created}
		keep = func(c *store.Correlation) bool { return f.Match(c) && order(at, c) < 0 }
	}
	items := m.selectSorted(keep, order)
	var p store.Page
	for _, c := range items[:min(f.Limit, len(items))] {
		p.Items = append(p.Items, c.Clone())
	}
	if len(items) > f.Limit {
		last := items[f.Limit-1]
		p.NextCursor = store.EncodeCursor(last.CreatedAt, last.ID)
	}
	return p, nil
}

func (m *memStore) Stats(_ context.Context, namespace string) (store.Stats, error) {
	if err := m.lock(); err != nil {
		return store.Stats{}, err
	}
	defer m.mu.Unlock()
	if namespace != "" {
		if err := store.ValidateNamespace(namespace); err != nil {
			return store.Stats{}, err
		}
	}
	st := store.Stats{Namespaces: map[string]store.NamespaceStats{}, EarlyReplies: int64(len(m.early))}
	get := func(ns string) store.NamespaceStats {
		n, ok := st.Namespaces[ns]
		if !ok {
			n = store.NamespaceStats{States: map[store.State]int64{}, Dispatch: map[store.DispatchState]int64{}}
		}
		return n
	}
	if namespace != "" {
		st.Namespaces[namespace] = get(namespace)
	}
	for _, c := range m.recs {
		if namespace != "" && c.Namespace != namespace {
			continue
		}
		n := get(c.Namespace)
		n.States[c.State]++
		if c.Dispatch.State != store.DispatchNone || m.bug == "stats-count-none" {
			n.Dispatch[c.Dispatch.State]++
		}
		if c.State == store.StatePending && (n.OldestPending.IsZero() || c.CreatedAt.Before(n.OldestPending)) {
			n.OldestPending = c.CreatedAt
		}
		st.Namespaces[c.Namespace] = n
	}
	return st, nil
}

func (m *memStore) Purge(_ context.Context, before time.Time, limit int) (int, error) {
	if err := m.lock(); err != nil {
		return 0, err
	}
	defer m.mu.Unlock()
	if err := store.ValidateLimit(limit); err != nil {
		return 0, err
	}
	old := m.selectSorted(
		func(c *store.Correlation) bool {
			switch m.bug {
			case "purge-any-dispatch":
				return c.State.Terminal() && c.Outcome.At.Before(before)
			case "purge-inclusive":
				return c.State.Terminal() && !c.Outcome.At.After(before) &&
					(c.Dispatch.State == store.DispatchNone || c.Dispatch.State == store.DispatchDone)
			}
			return c.State.Terminal() && c.Outcome.At.Before(before) &&
				(c.Dispatch.State == store.DispatchNone || c.Dispatch.State == store.DispatchDone)
		},
		func(a, b *store.Correlation) int {
			return cmp.Or(a.Outcome.At.Compare(b.Outcome.At), strings.Compare(a.ID, b.ID))
		})
	old = old[:min(limit, len(old))]
	for _, c := range old {
		delete(m.recs, c.ID)
		if c.IdempotencyKey != "" {
			delete(m.idem, idemKey(c.Namespace, c.IdempotencyKey))
		}
	}
	return len(old), nil
}

func (m *memStore) DropEarlyReplies(_ context.Context, before time.Time, limit int) (int, error) {
	if err := m.lock(); err != nil {
		return 0, err
	}
	defer m.mu.Unlock()
	if err := store.ValidateLimit(limit); err != nil {
		return 0, err
	}
	n := 0
	m.early = slices.DeleteFunc(m.early, func(e earlyReply) bool {
		if n < limit && e.r.ReceivedAt.Before(before) {
			n++
			return true
		}
		return false
	})
	return n, nil
}

func (m *memStore) Subscribe(ctx context.Context) (<-chan store.Event, error) {
	if err := m.lock(); err != nil {
		return nil, err
	}
	m.mu.Unlock()
	return m.hub.Subscribe(ctx)
}

func (m *memStore) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.closed {
		m.closed = true
		if m.bug != "close-keeps-subscribers" {
			m.hub.Close()
		}
	}
	return nil
}

// listByOffset pages by position, the classic bug: an insert before the
// cursor shifts every later page.
func (m *memStore) listByOffset(f store.Filter, order func(a, b *store.Correlation) int) (store.Page, error) {
	offset := 0
	if f.Cursor != "" {
		at, _, err := store.DecodeCursor(f.Cursor)
		if err != nil {
			return store.Page{}, err
		}
		offset = int(at.UnixNano())
	}
	items := m.selectSorted(f.Match, order)
	items = items[min(offset, len(items)):]
	var p store.Page
	for _, c := range items[:min(f.Limit, len(items))] {
		p.Items = append(p.Items, c.Clone())
	}
	if len(items) > f.Limit {
		p.NextCursor = store.EncodeCursor(time.Unix(0, int64(offset+f.Limit)), "offset")
	}
	return p, nil
}
