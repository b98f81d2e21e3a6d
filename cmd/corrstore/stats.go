package main

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/spf13/cobra"

	"github.com/corrstore/corrstore/cmd/corrstore/internal/wire"
	"github.com/corrstore/corrstore/store"
)

// statsNS is one namespace of stats's table. (stats -o json prints the
// API's stats, wire.StatsResponse.)
type statsNS struct {
	States               map[store.State]int64         `json:"states"`
	Dispatch             map[store.DispatchState]int64 `json:"dispatch"`
	OldestPending        *time.Time                    `json:"oldest_pending,omitempty"`
	OldestPendingSeconds float64                       `json:"oldest_pending_age_seconds"`
	// Bytes is what the records hold: reply bodies, late reply bodies and
	// callback data (store.Correlation.StoredBytes).
	Bytes int64 `json:"bytes"`
}

type statsOut struct {
	Namespaces   map[string]statsNS `json:"namespaces"`
	Total        statsNS            `json:"total"`
	EarlyReplies int64              `json:"early_replies"`
}

func toStatsNS(n store.NamespaceStats, now time.Time) statsNS {
	s := statsNS{States: map[store.State]int64{}, Dispatch: map[store.DispatchState]int64{}, Bytes: n.Bytes}
	for _, st := range store.States {
		s.States[st] = n.States[st]
	}
	for _, d := range []store.DispatchState{store.DispatchPending, store.DispatchDone, store.DispatchDead} {
		s.Dispatch[d] = n.Dispatch[d]
	}
	if !n.OldestPending.IsZero() {
		t := n.OldestPending.UTC()
		s.OldestPending = &t
		s.OldestPendingSeconds = n.OldestPendingAge(now).Seconds()
	}
	return s
}

const statsAbout = `Counts correlations per namespace and state, the age of the oldest pending one,
the dispatch backlog (outcomes waiting for their handler), dead dispatches
(outcomes no handler took: fix the handler, then corrstore redispatch) and the
bytes stored (reply bodies, late reply bodies and callback data: what
--max-bytes-per-namespace of the server limits).`

// statsOptions are what stats was asked.
type statsOptions struct {
	conn
	namespace string
}

func newStatsCmd(e *env) *cobra.Command {
	var o statsOptions
	cmd := newCommand("stats [flags]", "counts per state and namespace, oldest pending, dispatch backlog", statsAbout)
	o.conn.flags(cmd)
	namespaceFlag(cmd.Flags(), &o.namespace, "", "only this namespace (default: every namespace the store holds, or the token may read)")
	cmd.Args = noArgs
	cmd.RunE = func(cmd *cobra.Command, _ []string) error { return runStats(cmd.Context(), e, &o) }
	return cmd
}

func runStats(ctx context.Context, e *env, o *statsOptions) error {
	c, ns := &o.conn, o.namespace
	if err := c.check(); err != nil {
		return err
	}
	if ns != "" {
		if err := store.ValidateNamespace(ns); err != nil {
			return flagError(err)
		}
	}
	b, err := c.open(ctx, e, true)
	if err != nil {
		return err
	}
	defer b.Close()
	st, err := b.Stats(ctx, ns)
	if err != nil {
		return err
	}
	now := e.now()
	if c.json() {
		return writeJSON(e.stdout, wire.StatsFromStore(st, now))
	}
	out := statsOut{Namespaces: map[string]statsNS{}, Total: toStatsNS(st.Total(), now), EarlyReplies: st.EarlyReplies}
	for n, v := range st.Namespaces {
		out.Namespaces[n] = toStatsNS(v, now)
	}
	tw := table(e.stdout)
	fmt.Fprintln(tw, "NAMESPACE\tPENDING\tCOMPLETED\tTIMED_OUT\tCANCELLED\tOLDEST_PENDING\tDISPATCH_BACKLOG\tDISPATCH_DEAD\tBYTES")
	line := func(name string, s statsNS) {
		oldest := "-"
		if s.OldestPending != nil {
			oldest = age(time.Duration(s.OldestPendingSeconds * float64(time.Second)))
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%s\t%d\t%d\t%d\n", printable(name), s.States[store.StatePending], s.States[store.StateCompleted],
			s.States[store.StateTimedOut], s.States[store.StateCancelled], oldest, s.Dispatch[store.DispatchPending], s.Dispatch[store.DispatchDead], s.Bytes)
	}
	names := make([]string, 0, len(out.Namespaces))
	for n := range out.Namespaces {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		line(n, out.Namespaces[n])
	}
	if len(names) != 1 {
		line("TOTAL", out.Total)
	}
	tw.Flush()
	fmt.Fprintf(e.stdout, "early replies buffered: %d\n", out.EarlyReplies)
	return nil
}
