package reaper

import "time"

// Metrics receives what every pass did, for export (the service wires it to
// Prometheus; this package does not depend on it). Calls come from the
// goroutine running the pass; a Metrics shared by several reapers must be
// safe for concurrent use.
type Metrics interface {
	// Expired counts correlations a pass decided at their deadline, by
	// outcome: one of OutcomeCompleted, OutcomePartial, OutcomeNoReply,
	// OutcomeTimedOut. Called once per outcome per batch, with n > 0.
	Expired(outcome string, n int)
	// Purged counts decided correlations removed after their retention
	// (once per pass, n > 0).
	Purged(n int)
	// EarlyDropped counts early replies dropped after their window (once
	// per pass, n > 0).
	EarlyDropped(n int)
	// Corrupt counts undecodable records the store reported and set aside
	// (n > 0).
	Corrupt(n int)
	// PassFailed counts passes that failed, by phase: "expire", "purge" or
	// "drop_early".
	PassFailed(phase string)
	// PassDuration observes the duration of every pass.
	PassDuration(d time.Duration)
	// ExpiryLag observes, for each correlation a pass decided, the time from
	// its deadline to its outcome (both from the store's clock).
	ExpiryLag(d time.Duration)
}

// NopMetrics discards everything. Embed it to implement only some of Metrics.
type NopMetrics struct{}

func (NopMetrics) Expired(string, int)        {}
func (NopMetrics) Purged(int)                 {}
func (NopMetrics) EarlyDropped(int)           {}
func (NopMetrics) Corrupt(int)                {}
func (NopMetrics) PassFailed(string)          {}
func (NopMetrics) PassDuration(time.Duration) {}
func (NopMetrics) ExpiryLag(time.Duration)    {}

var _ Metrics = NopMetrics{}
