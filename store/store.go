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
	// an unknown ID is buffered as an early reply, or ErrNotFound when
	// buffering is off. Errors: ErrInvalid, ErrTooLarge, ErrNotFound.
	Deliver(ctx context.Context, id string, r Reply) (DeliverResult, error)

	// Get returns a correlation. Errors: ErrNotFound, ErrCorrupt.
	Get(ctx context.Context, id string) (*Correlation, error)

	// Extend moves the deadline of a pending correlation (heartbeat), capped at
	// CreatedAt + MaxTimeout. Errors: ErrNotFound, ErrNotPending, ErrInvalid.
	Extend(ctx context.Context, id string, deadline time.Time) (Result, error)

	// Cancel decides a pending correlation as cancelled. Errors: ErrNotFound,
	// ErrNotPending, ErrInvalid (reason too long).
	Cancel(ctx context.Context, id, reason string) (Result, error)

	// Expire is the operator's force-timeout: the deadline outcome, now.
	// Errors: ErrNotFound, ErrNotPending, ErrInvalid.
	Expire(ctx context.Context, id, reason string) (Result, error)

	// ExpireDue decides up to limit pending correlations whose deadline is at
	// or before now (see DecideAtDeadline) and returns them. Exactly once across
	// any number of concurrent callers; cost O(due), through a deadline index.
	// Undecodable records are set aside and reported in an error wrapping
	// ErrCorrupt, next to the correlations that were decided.
	ExpireDue(ctx context.Context, now time.Time, limit int) ([]*Correlation, error)

	// ClaimDispatch leases up to limit outcomes due for dispatch to instance
	// until now+lease. An outcome whose attempts are used up turns dead instead.
	ClaimDispatch(ctx context.Context, instance string, now time.Time, lease time.Duration, limit int) ([]*Correlation, error)

	// AckDispatch marks a claimed outcome delivered. Errors: ErrNotFound,
	// ErrConflict (the lease was lost to another claim), ErrNotPending.
	AckDispatch(ctx context.Context, id string, claim Claim) (Result, error)

	// NackDispatch records a failed attempt; the outcome is due again at
	// retryAt, or dead when retryAt is zero or the attempts are used up.
	// Errors as AckDispatch.
	NackDispatch(ctx context.Context, id string, claim Claim, errText string, retryAt time.Time) (Result, error)

	// Redispatch makes a dead or done dispatch due again with a fresh budget
	// of attempts. Errors: ErrNotFound, ErrNotPending (nothing to dispatch).
	Redispatch(ctx context.Context, id string) (Result, error)

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

	// Subscribe returns a channel of changes (accepted replies and outcomes)
	// until ctx ends. A subscriber that falls behind has its channel closed
	// rather than stall writers: when the channel closes before ctx ends,
	// changes may have been missed, so re-read and subscribe again.
	Subscribe(ctx context.Context) (<-chan Event, error)

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

// Event tells a subscriber that a correlation changed: a reply was accepted,
// or its outcome was decided.
type Event struct {
	ID        string
	Namespace string
	State     State
	Outcome   *Outcome
	Replies   int
	Version   int64
}

// EventOf returns the subscription event for a correlation's current state.
func EventOf(c *Correlation) Event {
	e := Event{ID: c.ID, Namespace: c.Namespace, State: c.State, Replies: len(c.Replies), Version: c.Version}
	if c.Outcome != nil {
		o := *c.Outcome
		e.Outcome = &o
	}
	return e
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
// returned: its creation time and ID.
func EncodeCursor(created time.Time, id string) string {
	b := binary.BigEndian.AppendUint64(nil, uint64(created.UnixNano()))
	return base64.RawURLEncoding.EncodeToString(append(b, id...))
}

// DecodeCursor reads a cursor made by EncodeCursor.
func DecodeCursor(s string) (time.Time, string, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(b) < 9 {
		return time.Time{}, "", invalid("cursor", "is not a cursor this store returned")
	}
	id := string(b[8:])
	if err := ValidateID(id); err != nil {
		return time.Time{}, "", invalid("cursor", "is not a cursor this store returned")
	}
	return time.Unix(0, int64(binary.BigEndian.Uint64(b[:8]))), id, nil
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

// ValidateClaim checks the arguments of ClaimDispatch.
func ValidateClaim(instance string, lease time.Duration, limit int) error {
	if instance == "" || len(instance) > MaxAddressLen {
		return invalid("instance", "must be 1 to %d bytes, got %d", MaxAddressLen, len(instance))
	}
	if lease <= 0 {
		return invalid("lease", "must be positive, got %s", lease)
	}
	return ValidateLimit(limit)
}

// Describe names a correlation for messages.
func Describe(c *Correlation) string {
	return fmt.Sprintf("%s/%s (%s, %s)", c.Namespace, c.ID, c.Pattern, c.State)
}
