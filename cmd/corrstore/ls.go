package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/corrstore/corrstore/cmd/corrstore/internal/wire"
	"github.com/corrstore/corrstore/store"
)

// filterFlags are the filters of ls, shared with redispatch --all-matching.
type filterFlags struct {
	state, namespace, owner, destination, handler, dispatch, order string
	olderThan                                                      time.Duration
	labels                                                         labelFlag
}

// labelFlag is --label KEY=VALUE, repeatable. Its Set error is what parse
// prints after the flag and the value.
type labelFlag map[string]string

func (l *labelFlag) String() string { return "" }
func (l *labelFlag) Type() string   { return "KEY=VALUE" }
func (l *labelFlag) Set(s string) error {
	k, v, ok := strings.Cut(s, "=")
	if !ok || k == "" {
		return errors.New("want KEY=VALUE, like team=payments")
	}
	if *l == nil {
		*l = labelFlag{}
	}
	(*l)[k] = v
	return nil
}

func (f *filterFlags) flags(cmd *cobra.Command) {
	fs := cmd.Flags()
	fs.StringVar(&f.state, "state", "", "pending, completed, timed_out or cancelled")
	namespaceFlag(fs, &f.namespace, "", "only this namespace (default: every namespace the store holds, or the token may read)")
	fs.DurationVar(&f.olderThan, "older-than", 0, "created more than this long ago (5m, 2h)")
	fs.StringVar(&f.owner, "owner", "", "registered by this instance")
	fs.StringVar(&f.destination, "destination", "", "request sent to this destination")
	fs.StringVar(&f.handler, "handler", "", "callback handler name")
	fs.StringVar(&f.dispatch, "dispatch", "", "dispatch state: none, pending, done or dead")
	fs.Var(&f.labels, "label", "KEY=VALUE label to match (repeat for several)")
	fs.StringVar(&f.order, "order", "newest", "newest or oldest first")
	completeWith(cmd, "state", "pending", "completed", "timed_out", "cancelled")
	completeWith(cmd, "dispatch", "none", "pending", "done", "dead")
	completeWith(cmd, "order", "newest", "oldest")
}

// filter builds the store filter; now anchors --older-than.
func (f *filterFlags) filter(now time.Time) (store.Filter, error) {
	if f.olderThan < 0 {
		return store.Filter{}, fmt.Errorf("--older-than: must not be negative, got %s", f.olderThan)
	}
	sf := store.Filter{
		Namespace: f.namespace, State: store.State(f.state), Owner: f.owner, Destination: f.destination,
		Handler: f.handler, Dispatch: store.DispatchState(f.dispatch), Order: store.Order(f.order),
		Labels: f.labels,
	}
	if f.olderThan > 0 {
		sf.CreatedBefore = now.Add(-f.olderThan)
	}
	check := sf
	if err := check.Normalize(); err != nil {
		return store.Filter{}, flagError(err)
	}
	return sf, nil
}

// flagError names the flag of a store validation error (--state, not state).
func flagError(err error) error {
	var fe *store.FieldError
	if errors.As(err, &fe) {
		return fmt.Errorf("--%s: %s", strings.ReplaceAll(fe.Field, "_", "-"), fe.Reason)
	}
	return err
}

// eachMatching pages through every correlation f matches, calling fn per page.
func eachMatching(ctx context.Context, b storeOrServer, f store.Filter, fn func([]*store.Correlation) error) error {
	for {
		page, err := b.List(ctx, f)
		if err != nil {
			return err
		}
		if err := fn(page.Items); err != nil {
			return err
		}
		if page.NextCursor == "" {
			return nil
		}
		f.Cursor = page.NextCursor
	}
}

const lsAbout = `Lists correlations, newest first, of every namespace (that the token may read)
or of --namespace. Filters combine (all must match). Without --all it prints one
page of --limit; with --all it pages through everything.
The DEADLINE column is the time left for pending ones (negative: overdue, the
reaper has not decided it yet).`

// lsOptions are what ls was asked.
type lsOptions struct {
	conn
	filter filterFlags
	limit  int
	all    bool
	cursor string
}

func newLsCmd(e *env) *cobra.Command {
	var o lsOptions
	cmd := newCommand("ls [flags]", "list correlations by state, namespace, age, owner, destination, label, dispatch", lsAbout)
	o.conn.flags(cmd)
	o.filter.flags(cmd)
	cmd.Flags().IntVar(&o.limit, "limit", 50, "how many to show (with --all: page size)")
	cmd.Flags().BoolVar(&o.all, "all", false, "page through every match")
	cmd.Flags().StringVar(&o.cursor, "cursor", "", "start after the page whose next_cursor (ls -o json) this is; the same filters and --order as that ls")
	cmd.Args = noArgs
	cmd.RunE = func(cmd *cobra.Command, _ []string) error { return runLs(cmd.Context(), e, &o) }
	return cmd
}

func runLs(ctx context.Context, e *env, o *lsOptions) error {
	c, f := &o.conn, &o.filter
	if err := c.check(); err != nil {
		return err
	}
	if o.limit < 1 || o.limit > store.MaxListLimit {
		return fmt.Errorf("--limit: must be between 1 and %d, got %d", store.MaxListLimit, o.limit)
	}
	now := e.now()
	sf, err := f.filter(now)
	if err != nil {
		return err
	}
	sf.Limit, sf.Cursor = o.limit, o.cursor
	b, err := c.open(ctx, e, true)
	if err != nil {
		return err
	}
	defer b.Close()

	var page store.Page
	if o.all {
		err = eachMatching(ctx, b, sf, func(cs []*store.Correlation) error {
			page.Items = append(page.Items, cs...)
			return nil
		})
	} else {
		page, err = b.List(ctx, sf)
	}
	if err != nil {
		return flagError(err) // a filter the store refused is a flag: --cursor
	}
	if c.json() {
		return writeJSON(e.stdout, wire.ListFromStore(page))
	}
	renderLs(e, page, now)
	return nil
}

// renderLs prints a page of ls as a table; now anchors the ages.
func renderLs(e *env, page store.Page, now time.Time) {
	tw := table(e.stdout)
	fmt.Fprintln(tw, "ID\tNAMESPACE\tSTATE\tAGE\tDEADLINE\tDESTINATION\tHANDLER\tREPLIES\tDISPATCH")
	for _, c := range page.Items {
		dl := "-"
		if c.State == store.StatePending {
			dl = age(c.Deadline.Sub(now))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\n", orDash(c.ID), orDash(c.Namespace), orDash(string(c.State)),
			age(now.Sub(c.CreatedAt)), dl, orDash(c.Destination), orDash(c.Callback.Handler),
			c.Held.Count, orDash(string(c.Dispatch.State)))
	}
	tw.Flush()
	switch n := len(page.Items); {
	case n == 0:
		fmt.Fprintln(e.stdout, "(none)")
	case page.NextCursor != "":
		fmt.Fprintf(e.stdout, "%d shown; more match: raise --limit or give --all\n", n)
	default:
		fmt.Fprintf(e.stdout, "%s\n", plural(n, "correlation"))
	}
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return strconv.Itoa(n) + " " + what + "s"
}
