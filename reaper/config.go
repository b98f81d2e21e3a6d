package reaper

import (
	"cmp"
	"fmt"
	"log/slog"
	"time"

	"github.com/corrstore/corrstore/store"
)

// Defaults of Config.
const (
	DefaultInterval         = time.Second
	DefaultBatch            = 500
	DefaultPurgeBatch       = 1000
	DefaultRetention        = 7 * 24 * time.Hour
	DefaultEarlyReplyWindow = 5 * time.Minute
	DefaultPassTimeout      = 30 * time.Second

	// MaxBatch bounds Batch and PurgeBatch, so that one store call (one bbolt
	// write transaction, one Redis script) stays short and other writers are
	// not held up behind it.
	MaxBatch = 10000
)

// Config configures a Reaper. A zero field takes its default.
type Config struct {
	// Interval is the time between the starts of two passes of Run.
	// Default 1s.
	Interval time.Duration

	// Jitter shortens each wait of Run by a random amount in [0, Jitter), so
	// that reapers started together on several replicas drift apart instead
	// of hitting the store at the same instant. Waits never exceed Interval,
	// so the expiry lag stays bounded by Interval plus the pass time.
	// Default Interval/10; negative: no jitter. Must be below Interval.
	Jitter time.Duration

	// PassTimeout bounds one pass (RunOnce). A pass that runs out of time
	// leaves the rest for the next one. Default 30s.
	PassTimeout time.Duration

	// Batch is the limit of one ExpireDue call; a pass calls it again until a
	// call decides fewer. Default 500, at most MaxBatch.
	Batch int

	// PurgeBatch is the limit of one Purge or DropEarlyReplies call; a pass
	// calls them again until a call removes fewer. Default 1,000, at most
	// MaxBatch.
	PurgeBatch int

	// Retention is how long a decided and dispatched correlation is kept
	// after its outcome before Purge removes it. Default 7 days; negative:
	// keep everything (no purge).
	Retention time.Duration

	// EarlyReplyWindow is how long a reply for an unknown ID is kept for a
	// registration that may follow; set it to the store's
	// Limits.EarlyReplyWindow. Default 5 minutes; negative: do not drop early
	// replies (the store does not buffer them).
	EarlyReplyWindow time.Duration

	// Logger receives a line per pass that did something and per error, with
	// "component"="reaper". Default slog.Default().
	Logger *slog.Logger

	// Clock is the time the reaper hands the store (the "now" of ExpireDue,
	// the bounds of Purge and DropEarlyReplies). Default store.RealClock{}.
	// Pass durations and Run's waits use the monotonic system clock.
	Clock store.Clock

	// Metrics receives counts and timings of every pass. Default NopMetrics.
	Metrics Metrics
}

// withDefaults returns c with every zero field set to its default.
func (c Config) withDefaults() Config {
	c.Interval = cmp.Or(c.Interval, DefaultInterval)
	c.Jitter = cmp.Or(c.Jitter, c.Interval/10)
	c.PassTimeout = cmp.Or(c.PassTimeout, DefaultPassTimeout)
	c.Batch = cmp.Or(c.Batch, DefaultBatch)
	c.PurgeBatch = cmp.Or(c.PurgeBatch, DefaultPurgeBatch)
	c.Retention = cmp.Or(c.Retention, DefaultRetention)
	c.EarlyReplyWindow = cmp.Or(c.EarlyReplyWindow, DefaultEarlyReplyWindow)
	c.Logger = cmp.Or(c.Logger, slog.Default())
	c.Clock = cmp.Or(c.Clock, store.Clock(store.RealClock{}))
	c.Metrics = cmp.Or(c.Metrics, Metrics(NopMetrics{}))
	return c
}

// validate checks a config with defaults applied.
func (c Config) validate() error {
	switch {
	case c.Interval < 0:
		return configError("Interval", "must be positive, got %s", c.Interval)
	case c.Jitter >= c.Interval:
		return configError("Jitter", "must be below Interval (%s), got %s", c.Interval, c.Jitter)
	case c.PassTimeout < 0:
		return configError("PassTimeout", "must be positive, got %s", c.PassTimeout)
	case c.Batch < 1 || c.Batch > MaxBatch:
		return configError("Batch", "must be between 1 and %d, got %d", MaxBatch, c.Batch)
	case c.PurgeBatch < 1 || c.PurgeBatch > MaxBatch:
		return configError("PurgeBatch", "must be between 1 and %d, got %d", MaxBatch, c.PurgeBatch)
	}
	return nil
}

func configError(field, format string, args ...any) error {
	return fmt.Errorf("reaper: %w", &store.FieldError{
		Field:  "Config." + field,
		Reason: fmt.Sprintf(format, args...),
		Err:    store.ErrInvalid,
	})
}
