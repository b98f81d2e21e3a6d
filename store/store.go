package store

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"maps"
	"time"
)

// Store is the durable correlation table. Every method takes ctx first, is
// atomic per correlation, and is safe to repeat: calling it again with the
// same arguments leaves the same state and says so (Existing, Duplicate)
// instead of applying twice. Every method returns ErrClosed after Close.
type Store interface {
	// Register stores a new pending correlation, durably, before it returns.
	// See Prepare for the fields it fills in. A second Register of the same ID
	// (or the same namespace and idempotency key) with the same content returns
	// the stored record with Created false; other content is ErrConflict. Early
	// replies buffered for the ID are applied. Errors: ErrInvalid, ErrTooLarge
	// (wrapped in *FieldError), ErrConflict.
	Register(ctx context.Context, c *Correlation) (RegisterResult, error)

	// Deliver matches a reply to a correlation (see DeliverStatus). A reply to
	// an unknown ref is buffered as an early reply, or ErrNotFound when
	// buffering is off. A reply at or after the stored deadline of a pending
	// correlation finds it decided: the store gives it its deadline outcome
	// in the same write (as ExpireDue would) and the reply is late.
	// A reply bound to one registration (Reply.Nonce set) is checked against
	// the record in the same write: a missing ref or a record with another
	// nonce answers ErrNotFound, changes nothing and buffers nothing (see
	// Reply.CheckRegistration).
	// Errors: ErrInvalid, ErrTooLarge (a reply over MaxBodyBytes, a record
	// over MaxReplies or MaxRecordBytes), ErrNotFound.
	Deliver(ctx context.Context, ref Ref, r Reply) (DeliverResult, error)

	// Get returns a correlation. Errors: ErrNotFound, ErrCorrupt.
	Get(ctx context.Context, ref Ref) (*Correlation, error)

	// Extend moves the deadline of a pending correlation (heartbeat), capped at
	// CreatedAt + MaxTimeout. At or after the stored deadline the correlation
	// takes its deadline outcome instead (stored) and Extend answers
	// ErrNotPending. A zero deadline moves nothing and only does that
	// settling (Duplicate when not due): a waiter whose clock says the
	// deadline has come lets the store decide with its own clock, and can
	// never set back a deadline that a heartbeat moved meanwhile.
	// Errors: ErrNotFound, ErrNotPending, ErrInvalid.
	Extend(ctx context.Context, ref Ref, deadline time.Time) (Result, error)

	// Cancel decides a pending correlation as cancelled. At or after the
	// stored deadline it takes its deadline outcome instead, as Extend.
	// Errors: ErrNotFound, ErrNotPending, ErrInvalid (reason too long).
	Cancel(ctx context.Context, ref Ref, reason string) (Result, error)

	// Expire is the operator's force-timeout: the deadline outcome, now.
	// Errors: ErrNotFound, ErrNotPending, ErrInvalid.
	Expire(ctx context.Context, ref Ref, reason string) (Result, error)

	// ExpireDue decides up to limit pending correlations whose deadline is at
	// or before now (see DecideAtDeadline) and returns them. Exactly once across
	// any number of concurrent callers; cost O(due), through a deadline index.
	// Undecodable records are set aside and reported in an error wrapping
	// ErrCorrupt, next to the correlations that were decided.
	ExpireDue(ctx context.Context, now time.Time, limit int) ([]*Correlation, error)

	// ClaimDispatch leases up to r.Limit outcomes due at r.Now whose handler
	// is one of r.Handlers, in r.Namespace ("" for every namespace), to
	// r.Instance until r.Now+r.Lease, earliest due first, each with its
	// replies as Get returns it (the handler gets them). An outcome whose
	// attempts are used up turns dead instead. Its cost is what it claims
	// (the dispatch index is keyed by handler and namespace), never a scan
	// past other handlers' backlog. Errors: ErrInvalid (see ValidateClaim).
	ClaimDispatch(ctx context.Context, r ClaimRequest) ([]*Correlation, error)

	// OldestDispatchDue returns the earliest next attempt time (a leased
	// one: its lease end) among the outcomes waiting for handler in
	// namespace ("" for every namespace), zero when none waits: how
	// overdue the handler's most overdue outcome is (an operator's alert on
	// outcomes nobody takes). It reads the head of the dispatch index: its
	// cost is one probe per namespace. Errors: ErrInvalid.
	OldestDispatchDue(ctx context.Context, namespace, handler string) (time.Time, error)

	// ExtendDispatch moves the end of a held lease to until (see
	// Correlation.ExtendLease), for a handler that needs longer than its
	// lease. Errors: ErrNotFound, ErrConflict (not the current lease, or it
	// ran out), ErrNotPending.
	ExtendDispatch(ctx context.Context, ref Ref, claim Claim, until time.Time) (Result, error)

	// AckDispatch marks a claimed outcome delivered. Errors: ErrNotFound,
	// ErrConflict (the lease was lost to another claim), ErrNotPending.
	AckDispatch(ctx context.Context, ref Ref, claim Claim) (Result, error)

	// NackDispatch records a failed attempt; the outcome is due again at
	// retryAt, or dead when retryAt is zero or the attempts are used up.
	// Errors as AckDispatch.
	NackDispatch(ctx context.Context, ref Ref, claim Claim, errText string, retryAt time.Time) (Result, error)

	// Redispatch makes a dead or done dispatch due again with a fresh budget
	// of attempts. Errors: ErrNotFound, ErrNotPending (nothing to dispatch).
	Redispatch(ctx context.Context, ref Ref) (Result, error)

	// List returns a page of correlations matching f. Errors: ErrInvalid.
	List(ctx context.Context, f Filter) (Page, error)

	// Stats counts correlations of one namespace, or of all when namespace is "".
	Stats(ctx context.Context, namespace string) (Stats, error)

	// Purge removes up to limit decided correlations whose outcome is before
	// before and whose dispatch is none or done; it returns how many.
	Purge(ctx context.Context, before time.Time, limit int) (int, error)

	// DropEarlyReplies removes up to limit early replies received before
	// before; it returns how many.
	DropEarlyReplies(ctx context.Context, before time.Time, limit int) (int, error)

	// Subscribe returns a channel of changes (see EventKind) until ctx ends.
	// Every backend publishes every kind, on every replica sharing the store. A subscriber that falls behind has its channel closed
	// rather than stall writers: when the channel closes before ctx ends,
	// changes may have been missed, so re-read and subscribe again.
	Subscribe(ctx context.Context) (<-chan Event, error)

	// Secret returns the store's secret of that name (32 random bytes),
	// making it on the first call: every process sharing the store gets the
	// same bytes, and they survive restarts (the HTTP API signs reply tokens
	// with it when no secret file is given). Errors: ErrInvalid (name).
	Secret(ctx context.Context, name string) ([]byte, error)

	// Close releases the store. Calls after Close return ErrClosed.
	Close() error
}

// RegisterResult is what Register did.
type RegisterResult struct {
	Correlation *Correlation
	// Created is false when the record already existed under the same ID, or
	// the same namespace and idempotency key, with the same content: the
	// stored record is returned unchanged. (Other content is ErrConflict.)
	Created bool
	// EarlyApplied counts buffered early replies applied at registration.
	EarlyApplied int
}

// DeliverResult is what Deliver did.
type DeliverResult struct {
	Status DeliverStatus
	// Correlation is the record after the reply; nil when Buffered.
	Correlation *Correlation
}

// Result is what Extend, Cancel, Expire, AckDispatch, NackDispatch and
// Redispatch did.
type Result struct {
	Correlation *Correlation
	// Duplicate: the call repeated one already applied; nothing changed.
	Duplicate bool
}

// EventKind says what changed.
type EventKind string

const (
	// ChangeReply: a reply was accepted (or an early one applied); still pending.
	ChangeReply EventKind = "reply_accepted"
	// ChangeExtended: the deadline moved; Event.Deadline is the new one.
	ChangeExtended EventKind = "deadline_extended"
	// ChangeOutcome: the outcome was decided; Event.Outcome says which.
	ChangeOutcome EventKind = "outcome"
	// ChangeDispatch: the dispatch of the outcome changed (claimed, acked,
	// failed, dead, redispatched); Event.Dispatch is its state.
	ChangeDispatch EventKind = "dispatch"
	// ChangeLate: a late reply was recorded; the outcome did not change.
	ChangeLate EventKind = "reply_late"
)

// Event tells a subscriber that a correlation changed. Version orders the
// events of one correlation: a subscriber that sees version v has missed
// nothing of that correlation up to v only if it saw every version below.
type Event struct {
	Kind      EventKind
	Namespace string
	ID        string
	State     State
	Deadline  time.Time
	Outcome   *Outcome
	Dispatch  DispatchState
	Replies   int
	Version   int64
}

// Ref returns the address of the correlation that changed.
func (e Event) Ref() Ref { return Ref{Namespace: e.Namespace, ID: e.ID} }

// EventOf returns the subscription event for a correlation just changed by
// the state machine. Its kind is that of the last timeline entry the change
// added, except that an outcome decided in the same change (at UpdatedAt)
// outranks the late reply that found the deadline passed and the early
// replies applied at registration.
func EventOf(c *Correlation) Event {
	e := Event{Kind: ChangeReply, ID: c.ID, Namespace: c.Namespace, State: c.State, Deadline: c.Deadline,
		Dispatch: c.Dispatch.State, Replies: c.Held.Count, Version: c.Version}
	if len(c.Events) > 0 {
		e.Kind = changeOf(c.Events[len(c.Events)-1].Type)
	}
	if n := len(c.Events); n > 0 && (c.Events[n-1].Type == EventReplyLate || c.Events[n-1].Type == EventEarlyApplied) {
		for i := n - 1; i >= 0 && c.Events[i].At.Equal(c.UpdatedAt); i-- {
			if c.Events[i].Type == EventOutcome {
				e.Kind = ChangeOutcome
				break
			}
		}
	}
	if c.Outcome != nil {
		o := *c.Outcome
		e.Outcome = &o
	}
	return e
}

func changeOf(t EventType) EventKind {
	switch t {
	case EventExtended:
		return ChangeExtended
	case EventOutcome:
		return ChangeOutcome
	case EventReplyLate:
		return ChangeLate
	case EventDispatchClaimed, EventDispatchAcked, EventDispatchFailed, EventDispatchDead, EventRedispatched:
		return ChangeDispatch
	}
	return ChangeReply
}

// Order is the order of List results, by creation time.
type Order string

const (
	NewestFirst Order = "newest"
	OldestFirst Order = "oldest"
)

// List page sizes.
const (
	DefaultListLimit = 100
	MaxListLimit     = 1000
)

// Filter selects correlations for List. Zero fields match everything.
type Filter struct {
	Namespace   string
	State       State
	Owner       string
	Destination string
	Handler     string
	// Labels must all be present with these values.
	Labels         map[string]string
	CreatedAfter   time.Time // inclusive
	CreatedBefore  time.Time // exclusive
	DeadlineAfter  time.Time // inclusive
	DeadlineBefore time.Time // exclusive
	Dispatch       DispatchState
	Order          Order // default NewestFirst
	Limit          int   // default 100, at most 1,000
	// Cursor is the NextCursor of the previous page.
	Cursor string
	// Full makes each item the record as Get returns it, with its replies
	// and timeline (an export); by default items carry neither (Held counts
	// the replies).
	Full bool
}

// Normalize validates f and fills its defaults.
func (f *Filter) Normalize() error {
	if f.Namespace != "" {
		if err := ValidateNamespace(f.Namespace); err != nil {
			return err
		}
	}
	if f.State != "" && !f.State.valid() {
		return invalid("state", "must be one of pending, completed, timed_out, cancelled, got %q", f.State)
	}
	if f.Dispatch != "" && !f.Dispatch.valid() {
		return invalid("dispatch", "must be one of none, pending, done, dead, got %q", f.Dispatch)
	}
	switch f.Order {
	case "":
		f.Order = NewestFirst
	case NewestFirst, OldestFirst:
	default:
		return invalid("order", "must be newest or oldest, got %q", f.Order)
	}
	switch {
	case f.Limit == 0:
		f.Limit = DefaultListLimit
	case f.Limit < 0 || f.Limit > MaxListLimit:
		return invalid("limit", "must be between 1 and %d, got %d", MaxListLimit, f.Limit)
	}
	if f.Cursor != "" {
		if _, _, err := DecodeCursor(f.Cursor); err != nil {
			return err
		}
	}
	return nil
}

// Match reports whether c passes every field of f (Cursor, Order and Limit aside).
func (f *Filter) Match(c *Correlation) bool {
	switch {
	case f.Namespace != "" && c.Namespace != f.Namespace,
		f.State != "" && c.State != f.State,
		f.Owner != "" && c.Owner != f.Owner,
		f.Destination != "" && c.Destination != f.Destination,
		f.Handler != "" && c.Callback.Handler != f.Handler,
		f.Dispatch != "" && c.Dispatch.State != f.Dispatch,
		!f.CreatedAfter.IsZero() && c.CreatedAt.Before(f.CreatedAfter),
		!f.CreatedBefore.IsZero() && !c.CreatedAt.Before(f.CreatedBefore),
		!f.DeadlineAfter.IsZero() && c.Deadline.Before(f.DeadlineAfter),
		!f.DeadlineBefore.IsZero() && !c.Deadline.Before(f.DeadlineBefore):
		return false
	}
	for k, v := range f.Labels {
		if got, ok := c.Labels[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// Page is one page of List results.
type Page struct {
	Items []*Correlation
	// NextCursor fetches the next page; "" when this is the last.
	NextCursor string
}

// EncodeCursor makes a List cursor from the position of the last item
// returned: its creation time and its ref (an ID alone no longer identifies).
func EncodeCursor(created time.Time, ref Ref) string {
	b := binary.BigEndian.AppendUint64(nil, uint64(created.UnixNano()))
	return base64.RawURLEncoding.EncodeToString(append(b, ref.String()...))
}

// DecodeCursor reads a cursor made by EncodeCursor. It accepts only the
// canonical encoding.
func DecodeCursor(s string) (time.Time, Ref, error) {
	bad := invalid("cursor", "is not a cursor this store returned")
	b, err := base64.RawURLEncoding.Strict().DecodeString(s)
	if err != nil || len(b) < 9 {
		return time.Time{}, Ref{}, bad
	}
	ref, err := ParseRef(string(b[8:]))
	if err != nil {
		return time.Time{}, Ref{}, bad
	}
	return time.Unix(0, int64(binary.BigEndian.Uint64(b[:8]))), ref, nil
}

// Stats counts correlations per namespace.
type Stats struct {
	// Namespaces has one entry per namespace asked for (every namespace with
	// correlations when the namespace asked is "").
	Namespaces map[string]NamespaceStats
	// EarlyReplies counts buffered early replies in the whole store.
	EarlyReplies int64
}

// NamespaceStats counts one namespace's correlations.
type NamespaceStats struct {
	States   map[State]int64
	Dispatch map[DispatchState]int64 // none is not counted
	// OldestPending is the creation time of the oldest pending correlation,
	// zero when none is pending.
	OldestPending time.Time
	// Bytes is the sum of the namespace's Correlation.StoredBytes: reply
	// bodies, late reply bodies and callback data. Purge takes it back.
	Bytes int64
}

// Total sums the namespaces.
func (s Stats) Total() NamespaceStats {
	t := NamespaceStats{States: map[State]int64{}, Dispatch: map[DispatchState]int64{}}
	for _, ns := range s.Namespaces {
		for k, v := range ns.States {
			t.States[k] += v
		}
		for k, v := range ns.Dispatch {
			t.Dispatch[k] += v
		}
		t.Bytes += ns.Bytes
		if !ns.OldestPending.IsZero() && (t.OldestPending.IsZero() || ns.OldestPending.Before(t.OldestPending)) {
			t.OldestPending = ns.OldestPending
		}
	}
	return t
}

// OldestPendingAge is how long the oldest pending correlation has waited at now.
func (n NamespaceStats) OldestPendingAge(now time.Time) time.Duration {
	if n.OldestPending.IsZero() {
		return 0
	}
	return now.Sub(n.OldestPending)
}

// Clone returns a deep copy.
func (n NamespaceStats) Clone() NamespaceStats {
	n.States, n.Dispatch = maps.Clone(n.States), maps.Clone(n.Dispatch)
	return n
}

// ValidateLimit checks the limit of a batch call.
func ValidateLimit(limit int) error {
	if limit < 1 {
		return invalid("limit", "must be at least 1, got %d", limit)
	}
	return nil
}

// Describe names a correlation for messages.
func Describe(c *Correlation) string {
	return fmt.Sprintf("%s/%s (%s, %s)", c.Namespace, c.ID, c.Pattern, c.State)
}
