package reaper

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/corrstore/corrstore/store"
)

// Outcomes of a correlation decided at its deadline, as reported to
// Metrics.Expired and counted in Expired.
const (
	OutcomeCompleted = "completed" // completed at the deadline, neither partial nor no-reply
	OutcomePartial   = "partial"   // a gather that reached its quorum
	OutcomeNoReply   = "no_reply"  // an optional correlation with no reply
	OutcomeTimedOut  = "timed_out"
)

// Pass phases, as reported to Metrics.PassFailed and logged.
const (
	PhaseExpire    = "expire"
	PhasePurge     = "purge"
	PhaseDropEarly = "drop_early"
)

// maxCorruptIDs bounds Report.CorruptIDs.
const maxCorruptIDs = 100

// Reaper decides correlations whose deadline passed, purges decided ones
// past their retention and drops stale early replies. Any number of reapers,
// in one process or on many replicas, may work on one store at once: the
// store decides each outcome exactly once.
type Reaper struct {
	st      store.Store
	cfg     Config
	log     *slog.Logger
	running atomic.Bool

	// afterPass, when set (by tests), is called after each pass of Run.
	afterPass func(Report, error)
}

// New returns a Reaper working on st. It fails with an error wrapping
// store.ErrInvalid, naming the field, when cfg makes no sense.
func New(st store.Store, cfg Config) (*Reaper, error) {
	if st == nil {
		return nil, errors.New("reaper: store is nil")
	}
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	return &Reaper{st: st, cfg: cfg, log: cfg.Logger.With("component", "reaper")}, nil
}

// Config returns the reaper's configuration with its defaults filled in.
func (r *Reaper) Config() Config { return r.cfg }

// Run runs a pass shortly after it starts (within Jitter), then one every
// Interval (minus jitter), until ctx ends; then it returns nil. A failed pass
// is logged and the next one comes a full interval later, so a store that
// is down is neither hammered nor a reason to stop. Run must not be called
// again while it runs.
func (r *Reaper) Run(ctx context.Context) error {
	if !r.running.CompareAndSwap(false, true) {
		return errors.New("reaper: Run is already running")
	}
	defer r.running.Store(false)
	r.log.Debug("reaper started", "interval", r.cfg.Interval, "jitter", max(r.cfg.Jitter, 0))
	defer r.log.Debug("reaper stopped")

	timer := time.NewTimer(r.jitter())
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-timer.C:
		}
		start := time.Now()
		rep, err := r.RunOnce(ctx)
		if r.afterPass != nil {
			r.afterPass(rep, err)
		}
		wait := r.cfg.Interval - r.jitter()
		if err == nil {
			// Ticker-like: passes start at most Interval apart however long
			// one takes, which bounds the expiry lag by Interval plus a pass.
			wait -= time.Since(start)
		}
		timer.Reset(max(wait, 0))
	}
}

// jitter returns a random duration in [0, Jitter).
func (r *Reaper) jitter() time.Duration {
	if r.cfg.Jitter <= 0 {
		return 0
	}
	return rand.N(r.cfg.Jitter)
}

// Report is what one pass did.
type Report struct {
	// Now is the clock reading at the start of the pass: the bounds of Purge
	// and DropEarlyReplies count back from it. (ExpireDue gets a fresh
	// reading for each batch.)
	Now time.Time
	// Expired counts the correlations the pass decided at their deadline.
	Expired Expired
	// Purged counts decided correlations removed after their retention.
	Purged int
	// EarlyDropped counts early replies dropped after their window.
	EarlyDropped int
	// Corrupt counts undecodable records the store reported (and set aside);
	// CorruptIDs names the first 100 of them whose key is known, as the store
	// names them (a ref string, namespace/id).
	Corrupt    int
	CorruptIDs []string
	// Duration is how long the pass took.
	Duration time.Duration
	// MaxLag and MeanLag sum up the expiry lags (deadline to outcome) of the
	// correlations decided; zero when none was.
	MaxLag, MeanLag time.Duration
}

// Empty reports whether the pass did nothing at all.
func (rep Report) Empty() bool {
	return rep.Expired.Total() == 0 && rep.Purged == 0 && rep.EarlyDropped == 0 && rep.Corrupt == 0
}

func (rep Report) attrs() []slog.Attr {
	return []slog.Attr{
		slog.Int("expired", rep.Expired.Total()),
		slog.Int(OutcomeTimedOut, rep.Expired.TimedOut),
		slog.Int(OutcomePartial, rep.Expired.Partial),
		slog.Int(OutcomeNoReply, rep.Expired.NoReply),
		slog.Int(OutcomeCompleted, rep.Expired.Completed),
		slog.Int("purged", rep.Purged),
		slog.Int("early_dropped", rep.EarlyDropped),
		slog.Int("corrupt", rep.Corrupt),
		slog.Duration("duration", rep.Duration),
		slog.Duration("max_lag", rep.MaxLag),
		slog.Duration("mean_lag", rep.MeanLag),
	}
}

// Expired counts correlations decided at their deadline, by outcome.
type Expired struct {
	Completed, Partial, NoReply, TimedOut int
}

// Total is the number of correlations decided.
func (e Expired) Total() int { return e.Completed + e.Partial + e.NoReply + e.TimedOut }

// add counts a decided correlation and returns its outcome ("" when it has none).
func (e *Expired) add(c *store.Correlation) string {
	o := OutcomeOf(c)
	switch o {
	case OutcomeCompleted:
		e.Completed++
	case OutcomePartial:
		e.Partial++
	case OutcomeNoReply:
		e.NoReply++
	case OutcomeTimedOut:
		e.TimedOut++
	default:
		return ""
	}
	return o
}

// OutcomeOf names the outcome of a decided correlation as Metrics.Expired
// reports it; a cancelled one is "cancelled", a pending one "".
func OutcomeOf(c *store.Correlation) string {
	switch {
	case c.Outcome == nil || !c.State.Terminal():
		return ""
	case c.State == store.StateTimedOut:
		return OutcomeTimedOut
	case c.State == store.StateCompleted && c.Outcome.Partial:
		return OutcomePartial
	case c.State == store.StateCompleted && c.Outcome.NoReply:
		return OutcomeNoReply
	case c.State == store.StateCompleted:
		return OutcomeCompleted
	}
	return string(c.State)
}

// RunOnce runs one pass, within PassTimeout: ExpireDue in batches until
// nothing is due, then Purge in batches, then DropEarlyReplies in batches.
// A phase that fails does not stop the next one. Corrupt records the store
// reports are counted and logged, not failures. The error joins the
// failures of the phases; the report counts what was done regardless.
func (r *Reaper) RunOnce(ctx context.Context) (Report, error) {
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, r.cfg.PassTimeout)
	defer cancel()

	now := r.cfg.Clock.Now()
	rep := Report{Now: now}
	var lagSum time.Duration
	var errs []error
	fail := func(phase string, err error) {
		r.cfg.Metrics.PassFailed(phase)
		errs = append(errs, fmt.Errorf("reaper: %s: %w", phase, err))
	}

	if err := r.expire(ctx, &rep, &lagSum); err != nil {
		fail(PhaseExpire, err)
	}
	if r.cfg.Retention > 0 && ctx.Err() == nil {
		before := now.Add(-r.cfg.Retention)
		n, err := r.drain(ctx, &rep, func(ctx context.Context, limit int) (int, error) {
			return r.st.Purge(ctx, before, limit)
		})
		rep.Purged += n
		if n > 0 {
			r.cfg.Metrics.Purged(n)
		}
		if err != nil {
			fail(PhasePurge, err)
		}
	}
	if r.cfg.EarlyReplyWindow > 0 && ctx.Err() == nil {
		before := now.Add(-r.cfg.EarlyReplyWindow)
		n, err := r.drain(ctx, &rep, func(ctx context.Context, limit int) (int, error) {
			return r.st.DropEarlyReplies(ctx, before, limit)
		})
		rep.EarlyDropped += n
		if n > 0 {
			r.cfg.Metrics.EarlyDropped(n)
		}
		if err != nil {
			fail(PhaseDropEarly, err)
		}
	}

	if n := rep.Expired.Total(); n > 0 {
		rep.MeanLag = lagSum / time.Duration(n)
	}
	rep.Duration = time.Since(start)
	r.cfg.Metrics.PassDuration(rep.Duration)
	err := errors.Join(errs...)
	r.logPass(ctx, rep, err)
	return rep, err
}

// expire decides due correlations in batches until a batch comes back short.
// Each batch reads the clock afresh, so that an outcome's time is when its
// batch ran, not when a long pass began.
func (r *Reaper) expire(ctx context.Context, rep *Report, lagSum *time.Duration) error {
	for {
		decided, err := r.st.ExpireDue(ctx, r.cfg.Clock.Now(), r.cfg.Batch)
		var batch Expired
		for _, c := range decided {
			outcome := batch.add(c)
			if outcome == "" {
				r.log.Error("store returned an undecided correlation from ExpireDue; not counted",
					"ref", c.Ref().String(), "state", c.State)
				continue
			}
			lag := c.Outcome.At.Sub(c.Deadline)
			*lagSum += lag
			rep.MaxLag = max(rep.MaxLag, lag)
			r.cfg.Metrics.ExpiryLag(lag)
		}
		for _, o := range []struct {
			name  string
			n     int
			total *int
		}{
			{OutcomeTimedOut, batch.TimedOut, &rep.Expired.TimedOut},
			{OutcomePartial, batch.Partial, &rep.Expired.Partial},
			{OutcomeNoReply, batch.NoReply, &rep.Expired.NoReply},
			{OutcomeCompleted, batch.Completed, &rep.Expired.Completed},
		} {
			if o.n > 0 {
				*o.total += o.n
				r.cfg.Metrics.Expired(o.name, o.n)
			}
		}
		corrupt, err := r.corrupt(rep, err)
		if err != nil {
			return err
		}
		// A short batch means nothing more is due at now. Corrupt records
		// count towards the batch (a store may include them in its limit);
		// a batch that decided nothing stops the loop, so a store that
		// failed to set a corrupt record aside cannot make it spin.
		if len(decided)+corrupt < r.cfg.Batch || len(decided) == 0 {
			return nil
		}
	}
}

// drain calls step with PurgeBatch until it removes fewer, and returns the
// total removed.
func (r *Reaper) drain(ctx context.Context, rep *Report, step func(context.Context, int) (int, error)) (int, error) {
	total := 0
	for {
		n, err := step(ctx, r.cfg.PurgeBatch)
		total += n
		corrupt, err := r.corrupt(rep, err)
		if err != nil {
			return total, err
		}
		if n+corrupt < r.cfg.PurgeBatch || n == 0 {
			return total, nil
		}
	}
}

// corrupt counts and logs the corrupt records err reports, and returns how
// many, and err unless it reports only corrupt records. A store reports them
// next to the work it did (ExpireDue: an error wrapping store.ErrCorrupt,
// with the correlations it decided), so they are not a failure of the pass.
func (r *Reaper) corrupt(rep *Report, err error) (int, error) {
	if err == nil || !errors.Is(err, store.ErrCorrupt) ||
		errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, store.ErrClosed) {
		return 0, err
	}
	var found []*store.CorruptError
	collectCorrupt(err, &found)
	for _, ce := range found {
		r.log.Error("corrupt record set aside by the store", "id", ce.ID, "err", ce.Err)
		if len(rep.CorruptIDs) < maxCorruptIDs {
			rep.CorruptIDs = append(rep.CorruptIDs, ce.ID)
		}
	}
	n := len(found)
	if n == 0 { // a store that did not say which record
		r.log.Error("corrupt record set aside by the store", "err", err)
		n = 1
	}
	rep.Corrupt += n
	r.cfg.Metrics.Corrupt(n)
	return n, nil
}

// collectCorrupt appends every *store.CorruptError in err's tree, so that
// several joined reports are all counted (errors.As would find the first).
func collectCorrupt(err error, found *[]*store.CorruptError) {
	if ce, ok := err.(*store.CorruptError); ok {
		*found = append(*found, ce)
		return
	}
	switch u := err.(type) {
	case interface{ Unwrap() error }:
		if e := u.Unwrap(); e != nil {
			collectCorrupt(e, found)
		}
	case interface{ Unwrap() []error }:
		for _, e := range u.Unwrap() {
			collectCorrupt(e, found)
		}
	}
}

func (r *Reaper) logPass(ctx context.Context, rep Report, err error) {
	switch {
	case err != nil && ctx.Err() != nil && errors.Is(err, context.Canceled):
		// Shutting down: the work done is in the report, the rest waits.
		r.log.LogAttrs(context.Background(), slog.LevelDebug, "reaper pass interrupted", rep.attrs()...)
	case err != nil && errors.Is(err, store.ErrUnavailable):
		// Not a bug: the store is down or busy; the next pass tries again.
		attrs := append(rep.attrs(), slog.Any("err", err))
		r.log.LogAttrs(context.Background(), slog.LevelWarn, "reaper pass incomplete: store unavailable", attrs...)
	case err != nil:
		attrs := append(rep.attrs(), slog.Any("err", err))
		r.log.LogAttrs(context.Background(), slog.LevelError, "reaper pass failed", attrs...)
	case !rep.Empty():
		r.log.LogAttrs(context.Background(), slog.LevelInfo, "reaper pass", rep.attrs()...)
	}
}
