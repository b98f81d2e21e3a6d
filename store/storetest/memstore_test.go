package storetest_test

import (
	"cmp"
	"context"
	"crypto/rand"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/corrstore/corrstore/internal/storekit"
	"github.com/corrstore/corrstore/store"
)

// memStore is the reference store.Store: one mutex over maps, every decision
// made by the pure methods of package store, the single-record mutations
// supplied by internal/storekit as for the real backends. It exists to run the suite
// before a real backend does, and as the suite's self-test.
//
// Everything is keyed by the ref ("ns/id", Ref.String), as the real
// backends key their records, indexes, idempotency mappings and early-reply
// buffers. Each mutating step works on a copy of the record and stores it
// when the step succeeded, or when it failed after raising Version (a step
// at or after the deadline settles the correlation first: see
// Correlation.SettleDue); every stored change that raised Version is
// published.
type memStore struct {
	clock store.Clock
	lim   store.Limits
	hub   storekit.Hub
	bug   string // a deliberate bug, for the mutation self-test (see mutants)

	mu      sync.Mutex
	closed  bool
	recs    map[string]*store.Correlation // key(ref) -> record
	idem    map[string]string             // namespace \x00 idempotency key -> key(ref)
	early   []earlyReply                  // in arrival order
	secrets map[string][]byte

	mutations // Extend, Cancel, Expire, AckDispatch, NackDispatch, Redispatch on mutate
}

type mutations = storekit.Mutations

type earlyReply struct {
	key string // key(ref)
	r   store.Reply
}

var _ store.Store = (*memStore)(nil)

func newMemStore(clock store.Clock, lim store.Limits) (*memStore, error) {
	lim = lim.WithDefaults()
	if err := lim.Validate(); err != nil {
		return nil, err
	}
	m := &memStore{clock: clock, lim: lim, recs: map[string]*store.Correlation{}, idem: map[string]string{},
		secrets: map[string][]byte{}, bug: *mutant}
	if m.bug == "limits-ignored" {
		m.lim = store.Limits{}.WithDefaults()
	}
	m.mutations = storekit.New(m.checkOpen, m.lim, m.mutate)
	return m, nil
}

// now reads the store's clock.
func (m *memStore) now() time.Time {
	if m.bug == "wall-clock" {
		return time.Now()
	}
	return m.clock.Now()
}

// key is the storage key of a ref.
func (m *memStore) key(r store.Ref) string {
	if m.bug == "ns-blind" {
		return r.ID
	}
	return r.Norm().String()
}

func idemKey(ns, key string) string { return ns + "\x00" + key }

// lock takes the mutex unless the store is closed; then it returns the
// first of the argument checks that failed. A closed store answers
// ErrClosed whatever the arguments.
func (m *memStore) lock(checks ...error) error {
	if m.bug == "closed-validates-first" {
		for _, err := range checks {
			if err != nil {
				return err
			}
		}
	}
	m.mu.Lock()
	if m.closed && m.bug != "close-noop" {
		m.mu.Unlock()
		return store.ErrClosed
	}
	for _, err := range checks {
		if err != nil {
			m.mu.Unlock()
			return err
		}
	}
	return nil
}

// publish announces c when the change raised its version.
func (m *memStore) publish(c *store.Correlation, before int64) {
	if c.Version <= before {
		return
	}
	ev := store.EventOf(c)
	if m.bug == "extend-silent" && ev.Kind == store.ChangeExtended {
		return
	}
	m.hub.Publish(ev)
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
	key := m.key(n.Ref())
	if n.IdempotencyKey != "" && m.bug != "no-idempotency-index" {
		if known, ok := m.idem[idemKey(n.Namespace, n.IdempotencyKey)]; ok {
			key = known
		}
	}
	if old, ok := m.recs[key]; ok && m.bug != "register-overwrites" {
		if err := old.Registration(n); err != nil && m.bug != "register-no-conflict" {
			return store.RegisterResult{}, err
		}
		if m.bug == "nonce-renewed" {
			old.Nonce = store.NewNonce()
		}
		return store.RegisterResult{Correlation: bare(old, old.EventSeq)}, nil
	}
	key = m.key(n.Ref())
	var mine []store.Reply
	m.early = slices.DeleteFunc(m.early, func(e earlyReply) bool {
		if e.key == key {
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
	m.recs[key] = n
	if n.IdempotencyKey != "" {
		m.idem[idemKey(n.Namespace, n.IdempotencyKey)] = key
	}
	m.publish(n, 1)
	return store.RegisterResult{Correlation: bare(n, 0), Created: true, EarlyApplied: applied}, nil
}

func (m *memStore) Deliver(_ context.Context, ref store.Ref, r store.Reply) (store.DeliverResult, error) {
	ref = ref.Norm()
	if err := m.lock(ref.Validate(), store.ValidateReply(r, m.lim)); err != nil {
		return store.DeliverResult{}, err
	}
	defer m.mu.Unlock()
	now := m.now()
	r.ReceivedAt = now
	key := m.key(ref)
	old, ok := m.recs[key]
	if m.bug == "nonce-ignored" {
		r.Nonce = nil
	}
	if err := r.CheckRegistration(ref, old); err != nil {
		return store.DeliverResult{}, err
	}
	if !ok {
		if !m.lim.EarlyBuffering() {
			return store.DeliverResult{}, fmt.Errorf("%w: no correlation %s, and early replies are not buffered", store.ErrNotFound, ref)
		}
		if len(m.early) >= m.lim.MaxEarlyReplies && m.bug != "early-no-cap" {
			return store.DeliverResult{}, store.EarlyStoreFull(int64(len(m.early)), m.lim)
		}
		perRef := 0
		for _, e := range m.early {
			if e.key == key {
				perRef++
			}
		}
		if perRef >= m.lim.MaxEarlyPerID {
			return store.DeliverResult{}, fmt.Errorf("%w: early replies for %s: %d, the limit", store.ErrTooLarge, ref, perRef)
		}
		m.early = append(m.early, earlyReply{key: key, r: r})
		return store.DeliverResult{Status: store.DeliverBuffered}, nil
	}
	c := old.Clone()
	lateAccepted := m.bug == "late-accepted" && c.Due(now)
	if lateAccepted {
		// A backend that goes by the stored state alone: until the reaper
		// passes, a correlation past its deadline looks pending.
		c.Deadline = now.Add(time.Nanosecond)
	}
	st, err := c.ApplyReply(r, now, m.lim)
	if lateAccepted {
		c.Deadline = old.Deadline
	}
	if err != nil {
		if c.Version > old.Version {
			m.recs[key] = c
			m.publish(c, old.Version)
		}
		return store.DeliverResult{}, err
	}
	if m.bug == "deliver-reapplies" && st == store.DeliverDuplicate {
		st = store.DeliverAccepted
	}
	if !(m.bug == "late-not-saved" && old.State.Terminal()) {
		m.recs[key] = c
		m.publish(c, old.Version)
	}
	return store.DeliverResult{Status: st, Correlation: bare(c, old.EventSeq)}, nil
}

func (m *memStore) Get(_ context.Context, ref store.Ref) (*store.Correlation, error) {
	if err := m.lock(ref.Validate()); err != nil {
		return nil, err
	}
	defer m.mu.Unlock()
	c, ok := m.recs[m.key(ref)]
	if !ok {
		return nil, store.NotFound(ref)
	}
	return c.Clone(), nil
}

// checkOpen answers ErrClosed once the store is closed.
func (m *memStore) checkOpen() error {
	if err := m.lock(); err != nil {
		return err
	}
	m.mu.Unlock()
	return nil
}

// mutate is the primitive of storekit.Mutations (Extend, Cancel, Expire,
// AckDispatch, NackDispatch, Redispatch), given a checked ref: it applies
// step to a copy of the record, and stores it when step succeeded or raised
// its version before it failed (a step at or after the deadline settles the
// correlation, then refuses).
func (m *memStore) mutate(_ context.Context, ref store.Ref, step storekit.Step) (store.Result, error) {
	if err := m.lock(); err != nil {
		return store.Result{}, err
	}
	defer m.mu.Unlock()
	key := m.key(ref)
	old, ok := m.recs[key]
	if !ok {
		return store.Result{}, store.NotFound(ref)
	}
	c := old.Clone()
	dup, err := step(c, m.now())
	if err != nil {
		if c.Version > old.Version && m.bug != "settle-not-saved" {
			m.recs[key] = c
			m.publish(c, old.Version)
		}
		return store.Result{}, err
	}
	m.recs[key] = c
	m.publish(c, old.Version)
	return store.Result{Correlation: bare(c, old.EventSeq), Duplicate: dup}, nil
}

// selectSorted returns the records that pass keep, sorted by order.
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

// byRef orders records of equal rank.
func byRef(a, b *store.Correlation) int { return strings.Compare(a.Ref().String(), b.Ref().String()) }

func (m *memStore) ExpireDue(_ context.Context, now time.Time, limit int) ([]*store.Correlation, error) {
	if err := m.lock(store.ValidateLimit(limit)); err != nil {
		return nil, err
	}
	defer m.mu.Unlock()
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
		func(a, b *store.Correlation) int { return cmp.Or(a.Deadline.Compare(b.Deadline), byRef(a, b)) })
	var out []*store.Correlation
	if m.bug == "expire-no-limit" {
		limit = len(due)
	}
	for _, c := range due[:min(limit, len(due))] {
		before, seq := c.Version, c.EventSeq
		c.DecideAtDeadline(now, store.ReasonDeadline, m.lim)
		if m.bug != "expire-silent" {
			m.publish(c, before)
		}
		out = append(out, bare(c, seq))
	}
	return out, nil
}

func (m *memStore) ClaimDispatch(_ context.Context, r store.ClaimRequest) ([]*store.Correlation, error) {
	if err := m.lock(store.ValidateClaim(r)); err != nil {
		return nil, err
	}
	defer m.mu.Unlock()
	instance, now, lease, limit := r.Instance, r.Now, r.Lease, r.Limit
	due := m.selectSorted(
		func(c *store.Correlation) bool {
			return c.DispatchDue(now) && (r.Serves(c) || m.bug == "claim-any-handler")
		},
		func(a, b *store.Correlation) int {
			return cmp.Or(a.Dispatch.NextAt.Compare(b.Dispatch.NextAt), byRef(a, b))
		})
	var out []*store.Correlation
	for _, c := range due {
		if len(out) == limit && m.bug != "claim-no-limit" {
			break
		}
		before := c.Version
		claimed := c.ApplyClaim(instance, now, lease, m.lim)
		m.publish(c, before) // claimed, or dead: its lease ran out on the last attempt
		if claimed {
			out = append(out, c.Clone())
		}
	}
	return out, nil
}

func (m *memStore) OldestDispatchDue(_ context.Context, namespace, handler string) (time.Time, error) {
	var check error
	if namespace != "" {
		check = store.ValidateNamespace(namespace)
	}
	if err := m.lock(check, store.ValidateHandler(handler)); err != nil {
		return time.Time{}, err
	}
	defer m.mu.Unlock()
	var oldest time.Time
	for _, c := range m.recs {
		if c.Dispatch.State == store.DispatchPending && c.Callback.Handler == handler && (namespace == "" || c.Namespace == namespace) &&
			(oldest.IsZero() || c.Dispatch.NextAt.Before(oldest)) {
			oldest = c.Dispatch.NextAt
		}
	}
	return oldest, nil
}

func (m *memStore) List(_ context.Context, f store.Filter) (store.Page, error) {
	if err := m.lock(f.Normalize()); err != nil {
		return store.Page{}, err
	}
	defer m.mu.Unlock()
	order := func(a, b *store.Correlation) int { return cmp.Or(a.CreatedAt.Compare(b.CreatedAt), byRef(a, b)) }
	if f.Order == store.NewestFirst && m.bug != "list-order-ignored" {
		order = func(a, b *store.Correlation) int { return cmp.Or(b.CreatedAt.Compare(a.CreatedAt), byRef(b, a)) }
	}
	keep := f.Match
	if m.bug == "list-offset-cursor" {
		return m.listByOffset(f, order)
	}
	if f.Cursor != "" {
		created, ref, err := store.DecodeCursor(f.Cursor)
		if err != nil {
			return store.Page{}, err
		}
		at := &store.Correlation{Namespace: ref.Namespace, ID: ref.ID, CreatedAt: created}
		if m.bug == "cursor-id-only" {
			at.Namespace = ""
		}
		keep = func(c *store.Correlation) bool { return f.Match(c) && order(at, c) < 0 }
	}
	items := m.selectSorted(keep, order)
	var p store.Page
	for _, c := range items[:min(f.Limit, len(items))] {
		p.Items = append(p.Items, listItem(f, c))
	}
	if len(items) > f.Limit {
		last := items[f.Limit-1]
		p.NextCursor = store.EncodeCursor(last.CreatedAt, last.Ref())
	}
	return p, nil
}

func (m *memStore) Stats(_ context.Context, namespace string) (store.Stats, error) {
	var check error
	if namespace != "" {
		check = store.ValidateNamespace(namespace)
	}
	if err := m.lock(check); err != nil {
		return store.Stats{}, err
	}
	defer m.mu.Unlock()
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
		n.Bytes += c.StoredBytes()
		if m.bug == "stats-bytes-no-late" {
			for _, r := range c.Late {
				n.Bytes -= int64(len(r.Body))
			}
		}
		st.Namespaces[c.Namespace] = n
	}
	return st, nil
}

func (m *memStore) Purge(_ context.Context, before time.Time, limit int) (int, error) {
	if err := m.lock(store.ValidateLimit(limit)); err != nil {
		return 0, err
	}
	defer m.mu.Unlock()
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
		func(a, b *store.Correlation) int { return cmp.Or(a.Outcome.At.Compare(b.Outcome.At), byRef(a, b)) })
	old = old[:min(limit, len(old))]
	for _, c := range old {
		delete(m.recs, m.key(c.Ref()))
		if c.IdempotencyKey != "" {
			delete(m.idem, idemKey(c.Namespace, c.IdempotencyKey))
		}
	}
	return len(old), nil
}

func (m *memStore) DropEarlyReplies(_ context.Context, before time.Time, limit int) (int, error) {
	if err := m.lock(store.ValidateLimit(limit)); err != nil {
		return 0, err
	}
	defer m.mu.Unlock()
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

func (m *memStore) Secret(_ context.Context, name string) ([]byte, error) {
	if err := m.lock(store.ValidateSecretName(name)); err != nil {
		return nil, err
	}
	defer m.mu.Unlock()
	s, ok := m.secrets[name]
	if !ok || m.bug == "secret-per-call" {
		s = make([]byte, 32)
		_, _ = rand.Read(s)
		m.secrets[name] = s
	}
	return slices.Clone(s), nil
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
		p.Items = append(p.Items, listItem(f, c))
	}
	if len(items) > f.Limit {
		p.NextCursor = store.EncodeCursor(time.Unix(0, int64(offset+f.Limit)), store.RefOf("offset"))
	}
	return p, nil
}

// bare is c as answers other than Get and ClaimDispatch carry it: without
// its replies (Held counts them), with only the events of the step that
// made it (those after since; -1: none).
func bare(c *store.Correlation, since int) *store.Correlation {
	n := c.Clone()
	n.Replies = nil
	if since > store.InlineEvents { // else the timeline was inside the record: all of it
		n.Events = n.Events[len(n.Events)-min(len(n.Events), n.EventSeq-since):]
	}
	if len(n.Events) == 0 {
		n.Events = nil
	}
	return n
}

func listItem(f store.Filter, c *store.Correlation) *store.Correlation {
	if f.Full {
		return c.Clone()
	}
	n := bare(c, c.EventSeq)
	n.Events = nil // list items carry no timeline
	return n
}
