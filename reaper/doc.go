// Package reaper is the background worker that keeps a correlation store
// moving: it decides the correlations whose deadline passed, purges decided
// ones past their retention, and drops early replies nobody registered for.
//
// # Passes
//
// A Reaper works in passes. Run starts one shortly after it is called, then
// one every Config.Interval until its context ends; RunOnce runs one pass
// now, for tests and for operator commands. A pass:
//
//  1. calls Store.ExpireDue with Config.Batch, again and again until a call
//     comes back with fewer: every correlation due is decided (timed_out;
//     completed and partial for a gather with its quorum; completed with no
//     reply for an optional one);
//  2. calls Store.Purge until it removes fewer than Config.PurgeBatch:
//     decided, dispatched correlations whose outcome is older than
//     Config.Retention;
//  3. calls Store.DropEarlyReplies likewise, for early replies older than
//     Config.EarlyReplyWindow.
//
// A pass is bounded by Config.PassTimeout. A phase that fails does not stop
// the next; Run logs the failure and tries again an interval later, so a
// store that is down is never a reason to exit or to spin. A store that
// cannot answer (an error wrapping store.ErrUnavailable) is logged as a
// warning, not as an error: nothing is wrong with the reaper.
//
// # Many reapers
//
// Any number of reapers, in one process or on many replicas, may run on one
// store: ExpireDue is exactly once across concurrent callers, so each
// correlation gets one outcome whoever gets there first. The deadline is
// exact whether or not a reaper ran: a reply (or an extend, a cancel) at or
// after the deadline finds the store deciding the deadline outcome in the
// same write, and is late. The reaper is the guarantee for the
// correlations nobody touches, and its lag is only how late their outcome
// is announced. Run shortens each
// wait by a random amount below Config.Jitter so that replicas drift apart
// instead of firing together; since a wait never exceeds Interval, the
// expiry lag (deadline to outcome) stays within Interval plus one pass.
// Package reapertest checks these promises on any backend.
//
// Each pass costs O(due), not O(stored): the store walks a deadline index
// (bbolt: a bucket keyed deadline‖ref; Redis: a sorted set per shard).
//
// # Corrupt records
//
// A record the store cannot decode is set aside by the store and reported
// in an error wrapping store.ErrCorrupt, next to the correlations it did
// decide. The reaper counts and logs it (Report.Corrupt, Metrics.Corrupt,
// one log line naming its key) and goes on; it is not a failed pass, and the
// store does not report it again.
//
// # Observability
//
// Every pass that did something logs one line with its counts, under
// "component"="reaper", and reports to Config.Metrics: correlations expired
// by outcome, purged, early replies dropped, corrupt records, failed
// phases, the pass duration and the expiry lag of each decision. Metrics is
// a small interface so that this package does not depend on Prometheus; the
// service adapts it.
//
// # Time
//
// Decisions use Config.Clock (store.FakeClock in tests): ExpireDue gets
// Clock.Now() for each batch, and the bounds of Purge and DropEarlyReplies
// count back from the pass's start. Waits between passes and pass durations
// use the system's monotonic clock.
package reaper
