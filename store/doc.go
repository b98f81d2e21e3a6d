// Package store is the domain of corrstore: the Correlation and its Reply,
// the state machine that decides one outcome per correlation, the sentinel
// errors, the Clock, and the Store interface that every backend implements.
//
// It imports only the standard library and google/uuid. Backends (bolt/,
// redisstore/) import it and never each other; store/storetest is the
// conformance suite that decides whether a backend is correct.
//
// # Lifecycle
//
// A correlation is registered pending, before its request is sent. Replies
// are matched by ID (Deliver): deduplicated by their dedupe key, kept in Seq
// order for a stream, buffered when they arrive before the registration,
// and recorded as late, without effect, after the outcome. Exactly one
// outcome is decided: completed (by replies, or at the deadline for an
// optional correlation or a gather that reached its quorum), timed_out, or
// cancelled. An outcome with a callback handler is then dispatched at least
// once: claimed with a lease, acked, or nacked and retried until dead.
//
// # Errors
//
// Every error wraps one of ErrNotFound, ErrConflict, ErrNotPending,
// ErrInvalid, ErrTooLarge, ErrClosed or ErrCorrupt; check with errors.Is.
// Bad input comes as a *FieldError naming the field and the limit.
//
// # Time
//
// Stores read time only from the injected Clock (RealClock, or FakeClock in
// tests); backends hand the readings to storage, so a server's clock never
// decides an outcome.
package store
