package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/corrstore/corrstore/reaper"
	"github.com/corrstore/corrstore/store"
)

const reapAbout = `Runs one reaper pass on a store: decides every pending correlation whose
deadline passed, purges decided and dispatched ones older than --retention,
and drops stale early replies. A running corrstore serve reaps by itself every
--reaper-interval, so this is for a store no server runs on (or a stopped one).`

// reapOut is reap -o json. The field names are stable.
type reapOut struct {
	Expired struct {
		Total     int `json:"total"`
		TimedOut  int `json:"timed_out"`
		Completed int `json:"completed"`
		Partial   int `json:"partial"`
		NoReply   int `json:"no_reply"`
	} `json:"expired"`
	Purged          int      `json:"purged"`
	EarlyDropped    int      `json:"early_replies_dropped"`
	Corrupt         int      `json:"corrupt"`
	CorruptIDs      []string `json:"corrupt_ids,omitempty"`
	DurationSeconds float64  `json:"duration_seconds"`
	MaxLagSeconds   float64  `json:"max_lag_seconds"`
	Error           string   `json:"error,omitempty"`
}

func runReap(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "reap", "--once [flags]", reapAbout)
	var c conn
	c.flags(fs, e)
	once := fs.Bool("once", false, "run one pass and exit (required: the server runs the reaper continuously)")
	retention := fs.Duration("retention", reaper.DefaultRetention, "purge decided, dispatched correlations whose outcome is older than this; negative: keep all")
	window := fs.Duration("early-reply-window", reaper.DefaultEarlyReplyWindow, "drop early replies older than this")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return fmt.Errorf("reap takes no arguments, got %q", pos)
	}
	if !*once {
		return errors.New("--once is required: to reap continuously, run corrstore serve")
	}
	if err := c.check(); err != nil {
		return err
	}
	if c.server != "" {
		return errors.New("reap works on --store: a running server reaps by itself every --reaper-interval (see corrstore_reaper_* in /metrics); to force one correlation's outcome use corrstore expire ID --server")
	}
	st, err := c.openStore(ctx, e, false)
	if err != nil {
		return err
	}
	defer st.Close()
	r, err := reaper.New(timedReaper{st, &c}, reaper.Config{
		Retention: *retention, EarlyReplyWindow: *window,
		Logger: slog.New(slog.DiscardHandler), PassTimeout: 10 * time.Minute,
	})
	if err != nil {
		return err
	}
	rep, passErr := r.RunOnce(ctx)
	var out reapOut
	out.Expired.Total, out.Expired.TimedOut, out.Expired.Completed = rep.Expired.Total(), rep.Expired.TimedOut, rep.Expired.Completed
	out.Expired.Partial, out.Expired.NoReply = rep.Expired.Partial, rep.Expired.NoReply
	out.Purged, out.EarlyDropped, out.Corrupt, out.CorruptIDs = rep.Purged, rep.EarlyDropped, rep.Corrupt, rep.CorruptIDs
	out.DurationSeconds, out.MaxLagSeconds = rep.Duration.Seconds(), rep.MaxLag.Seconds()
	if passErr != nil {
		out.Error = passErr.Error()
	}
	if c.output == "json" {
		if err := writeJSON(e.stdout, out); err != nil {
			return err
		}
	} else {
		tw := table(e.stdout)
		fmt.Fprintf(tw, "expired:\t%d\t(timed_out %d, completed %d, partial %d, no reply %d)\n", out.Expired.Total,
			out.Expired.TimedOut, out.Expired.Completed, out.Expired.Partial, out.Expired.NoReply)
		fmt.Fprintf(tw, "purged:\t%d\n", out.Purged)
		fmt.Fprintf(tw, "early replies dropped:\t%d\n", out.EarlyDropped)
		if out.Corrupt > 0 {
			fmt.Fprintf(tw, "corrupt, set aside:\t%d\t%s\n", out.Corrupt, printable(strings.Join(out.CorruptIDs, " ")))
		}
		fmt.Fprintf(tw, "took:\t%s\n", rep.Duration.Round(time.Millisecond))
		tw.Flush()
	}
	if passErr != nil {
		return fmt.Errorf("the pass failed part way (what it did is above): %w", passErr)
	}
	return nil
}

// timedReaper bounds each call of a reaper pass by --timeout (the pass as a
// whole by its PassTimeout).
type timedReaper struct {
	store.Store
	c *conn
}

func (t timedReaper) ExpireDue(ctx context.Context, now time.Time, limit int) ([]*store.Correlation, error) {
	return timed(t.c, ctx, func(ctx context.Context) ([]*store.Correlation, error) { return t.Store.ExpireDue(ctx, now, limit) })
}

func (t timedReaper) Purge(ctx context.Context, before time.Time, limit int) (int, error) {
	return timed(t.c, ctx, func(ctx context.Context) (int, error) { return t.Store.Purge(ctx, before, limit) })
}

func (t timedReaper) DropEarlyReplies(ctx context.Context, before time.Time, limit int) (int, error) {
	return timed(t.c, ctx, func(ctx context.Context) (int, error) { return t.Store.DropEarlyReplies(ctx, before, limit) })
}
