package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/spf13/cobra"

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

// reapOptions are what reap was asked.
type reapOptions struct {
	conn
	once              bool
	retention, window time.Duration
}

func newReapCmd(e *env) *cobra.Command {
	var o reapOptions
	cmd := newCommand("reap --once [flags]", "one reaper pass: expire what is due, purge, drop stale early replies", reapAbout)
	o.conn.storeOnlyFlags(cmd, "the store: bolt://PATH, redis://HOST:PORT/DB, redis+cluster://H1:P1,H2:P2",
		"reap works on --store: a running server reaps by itself every --reaper-interval (see corrstore_reaper_* in /metrics); to force one correlation's outcome use corrstore expire ID --server")
	o.conn.outputFlag(cmd)
	cmd.Flags().BoolVar(&o.once, "once", false, "run one pass and exit (required: the server runs the reaper continuously)")
	cmd.Flags().DurationVar(&o.retention, "retention", reaper.DefaultRetention, "purge decided, dispatched correlations whose outcome is older than this; negative: keep all")
	cmd.Flags().DurationVar(&o.window, "early-reply-window", reaper.DefaultEarlyReplyWindow, "drop early replies older than this")
	cmd.Args = noArgs
	cmd.RunE = func(cmd *cobra.Command, _ []string) error { return runReap(cmd.Context(), e, &o) }
	return cmd
}

func runReap(ctx context.Context, e *env, o *reapOptions) error {
	c := &o.conn
	if !o.once {
		return errors.New("--once is required: to reap continuously, run corrstore serve")
	}
	if err := c.check(); err != nil {
		return err
	}
	st, err := c.openStore(ctx, e, false)
	if err != nil {
		return err
	}
	defer st.Close()
	r, err := reaper.New(timedReaper{st, c}, reaper.Config{
		Retention: o.retention, EarlyReplyWindow: o.window,
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
	if c.json() {
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
