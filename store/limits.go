package store

import (
	"cmp"
	"time"
)

// Limits are the bounds a store enforces. The zero value of each field means
// its default; WithDefaults fills them in.
type Limits struct {
	// DefaultTimeout applies when a registration has neither Timeout nor
	// Deadline. Default 30s.
	DefaultTimeout time.Duration
	// MaxTimeout bounds Deadline - CreatedAt, at registration and on Extend.
	// Default 366 days.
	MaxTimeout time.Duration
	// MaxReplies bounds accepted replies per correlation (and so Expect and
	// stream Seq). Default 1,000.
	MaxReplies int
	// MaxBodyBytes bounds one reply's Body. Default 1 MiB.
	MaxBodyBytes int
	// MaxRecordBytes bounds the reply bytes (bodies) one correlation holds.
	// Default 16 MiB. A reply that would pass it is ErrTooLarge.
	MaxRecordBytes int
	// MaxLate is how many late replies are kept (the count goes on). Default 16.
	MaxLate int
	// MaxLateBytes bounds the bodies of the late replies kept: the oldest go
	// first, and a late reply whose body alone is larger is counted, not
	// kept. Default 1 MiB. It keeps a decided correlation's record from
	// growing with what is sent to it after the outcome.
	MaxLateBytes int
	// MaxEvents is how many timeline events are kept (the count of dropped ones
	// goes on). Default 200.
	MaxEvents int
	// EarlyReplyWindow is how long a reply for an unknown ID is kept for a
	// registration that may follow. Default 5 minutes. Negative: buffering off,
	// and Deliver to an unknown ID returns ErrNotFound.
	EarlyReplyWindow time.Duration
	// MaxEarlyReplies bounds buffered early replies in the whole store.
	// Default 10,000. When full, Deliver to an unknown ID returns ErrTooLarge.
	MaxEarlyReplies int
	// MaxEarlyPerID bounds buffered early replies for one ID. Default 100.
	MaxEarlyPerID int
	// DispatchMaxAttempts is how many claims an outcome gets before its
	// dispatch is dead. Default 10.
	DispatchMaxAttempts int
}

// Fixed bounds of the data model (DESIGN §2).
const (
	MaxIDLen          = 200
	MaxNamespaceLen   = 64
	MaxAddressLen     = 512 // Destination, ReplyTo, Owner
	MaxHandlerLen     = 128
	MaxCallbackData   = 64 << 10
	MaxLabels         = 32
	MaxLabelLen       = 256 // a label key or value
	MaxReasonLen      = 1024
	MaxReplyFieldLen  = 512 // Reply.ID, Reply.From
	MaxReplyErrorLen  = 4096
	MaxIdempotencyLen = 256
	DefaultNamespace  = "default"
)

// WithDefaults returns l with every zero field set to its default.
func (l Limits) WithDefaults() Limits {
	l.DefaultTimeout = cmp.Or(l.DefaultTimeout, 30*time.Second)
	l.MaxTimeout = cmp.Or(l.MaxTimeout, 366*24*time.Hour)
	l.MaxReplies = cmp.Or(l.MaxReplies, 1000)
	l.MaxBodyBytes = cmp.Or(l.MaxBodyBytes, 1<<20)
	l.MaxRecordBytes = cmp.Or(l.MaxRecordBytes, 16<<20)
	l.MaxLate = cmp.Or(l.MaxLate, 16)
	l.MaxLateBytes = cmp.Or(l.MaxLateBytes, 1<<20)
	l.MaxEvents = cmp.Or(l.MaxEvents, 200)
	l.EarlyReplyWindow = cmp.Or(l.EarlyReplyWindow, 5*time.Minute)
	l.MaxEarlyReplies = cmp.Or(l.MaxEarlyReplies, 10000)
	l.MaxEarlyPerID = cmp.Or(l.MaxEarlyPerID, 100)
	l.DispatchMaxAttempts = cmp.Or(l.DispatchMaxAttempts, 10)
	return l
}

// Validate reports a limit that makes no sense. It expects defaults applied.
func (l Limits) Validate() error {
	switch {
	case l.DefaultTimeout < 0:
		return invalid("limits.default_timeout", "must not be negative, got %s", l.DefaultTimeout)
	case l.MaxTimeout < l.DefaultTimeout:
		return invalid("limits.max_timeout", "must be at least default_timeout (%s), got %s", l.DefaultTimeout, l.MaxTimeout)
	case l.MaxReplies < 1:
		return invalid("limits.max_replies", "must be at least 1, got %d", l.MaxReplies)
	case l.MaxBodyBytes < 1:
		return invalid("limits.max_body_bytes", "must be at least 1, got %d", l.MaxBodyBytes)
	case l.MaxRecordBytes < l.MaxBodyBytes:
		return invalid("limits.max_record_bytes", "must be at least max_body_bytes (%d), got %d", l.MaxBodyBytes, l.MaxRecordBytes)
	case l.MaxLateBytes < 0:
		return invalid("limits.max_late_bytes", "must not be negative, got %d", l.MaxLateBytes)
	case l.MaxLate < 1, l.MaxEvents < 1, l.MaxEarlyReplies < 1, l.MaxEarlyPerID < 1, l.DispatchMaxAttempts < 1:
		return invalid("limits", "max_late, max_events, max_early_replies, max_early_per_id and dispatch_max_attempts must be at least 1")
	}
	return nil
}

// EarlyBuffering reports whether replies for unknown IDs are buffered.
func (l Limits) EarlyBuffering() bool { return l.EarlyReplyWindow > 0 }
