package store

import (
	"errors"
	"fmt"
)

// Sentinel errors. Every error a Store returns wraps one of these, so callers
// branch with errors.Is and print the wrapped message, which names the field,
// the value's problem and the limit.
var (
	// ErrNotFound: no correlation with that ID (or, for Deliver with early
	// buffering off, nothing to match the reply to).
	ErrNotFound = errors.New("not found")

	// ErrConflict: the ID is already registered with different content, or a
	// dispatch claim is no longer the current one (the lease was lost).
	ErrConflict = errors.New("conflict")

	// ErrNotPending: the correlation's state forbids the change (it already has
	// an outcome, or its dispatch is not in a state the call can act on).
	ErrNotPending = errors.New("not pending")

	// ErrInvalid: bad input. The wrapping *FieldError names the field and the reason.
	ErrInvalid = errors.New("invalid")

	// ErrTooLarge: an input exceeds a size or count limit. The wrapping
	// *FieldError names the field and the limit.
	ErrTooLarge = errors.New("too large")

	// ErrClosed: the store was closed.
	ErrClosed = errors.New("store closed")

	// ErrUnavailable: the store could not answer (Redis down or busy past the
	// caller's deadline, disk full, a write that did not get through before
	// ctx ended). The call may succeed if retried later; nothing is known to
	// have been applied (a retry is safe: every method is).
	ErrUnavailable = errors.New("store unavailable")

	// ErrCorrupt: a stored record could not be decoded. Backends set such a
	// record aside (it is not retried on every reaper pass) and report its ID.
	ErrCorrupt = errors.New("corrupt record")
)

// FieldError is bad input on one field. It wraps ErrInvalid or ErrTooLarge.
type FieldError struct {
	Field  string // JSON name of the field, e.g. "callback.data" or "labels"
	Reason string // what is wrong, naming the limit
	Err    error  // ErrInvalid or ErrTooLarge
}

func (e *FieldError) Error() string { return fmt.Sprintf("%s: %s: %s", e.Err, e.Field, e.Reason) }
func (e *FieldError) Unwrap() error { return e.Err }

func invalid(field, format string, args ...any) error {
	return &FieldError{Field: field, Reason: fmt.Sprintf(format, args...), Err: ErrInvalid}
}

func tooLarge(field, format string, args ...any) error {
	return &FieldError{Field: field, Reason: fmt.Sprintf(format, args...), Err: ErrTooLarge}
}

// EarlyPerRefFull is the error of a reply that cannot be buffered because
// held replies already wait for ref (Limits.MaxEarlyPerID).
func EarlyPerRefFull(ref string, held int, lim Limits) error {
	return tooLarge("early_replies", "%s already has %d buffered, the limit is %d (max_early_per_id)", ref, held, lim.MaxEarlyPerID)
}

// EarlyStoreFull is the error of a reply that cannot be buffered because
// the store holds held early replies (Limits.MaxEarlyReplies).
func EarlyStoreFull(held int64, lim Limits) error {
	return tooLarge("early_replies", "the store holds %d, the limit is %d (max_early_replies)", held, lim.MaxEarlyReplies)
}

// CorruptError reports a stored record that could not be decoded.
type CorruptError struct {
	ID  string
	Err error
}

func (e *CorruptError) Error() string   { return fmt.Sprintf("corrupt record %q: %v", e.ID, e.Err) }
func (e *CorruptError) Unwrap() []error { return []error{ErrCorrupt, e.Err} }
