package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/corrstore/corrstore/store"
)

const redispatchAbout = `Hands decided outcomes to their callback handler again, with a fresh budget of
attempts: after a handler was fixed, for outcomes whose dispatch is dead (or done,
to run the handler again). Give IDs (in --namespace, or NS/ID), or --all-matching
with the filters of ls (default --dispatch dead; every namespace unless
--namespace); it asks before it acts unless --yes.`

// redispatchOptions are what redispatch was asked.
type redispatchOptions struct {
	conn
	filter      filterFlags
	allMatching bool
	yes         bool
}

func newRedispatchCmd(e *env) *cobra.Command {
	var o redispatchOptions
	cmd := newCommand("redispatch [NS/]ID… | --all-matching", "hand dead (or done) outcomes to their handler again", redispatchAbout)
	o.conn.flags(cmd)
	o.filter.flags(cmd)
	cmd.Flags().BoolVar(&o.allMatching, "all-matching", false, "redispatch every correlation the filters match")
	cmd.Flags().BoolVar(&o.yes, "yes", false, "do not ask for confirmation")
	cmd.RunE = func(cmd *cobra.Command, ids []string) error {
		filtered := slices.ContainsFunc(filterNames, cmd.Flags().Changed)
		return runRedispatch(cmd.Context(), e, &o, ids, filtered)
	}
	return cmd
}

// filterNames are the flags of filterFlags that filter (--namespace and
// --order do not: they say where and in what order).
var filterNames = []string{"state", "older-than", "owner", "destination", "handler", "dispatch", "label"}

// runRedispatch redispatches ids, or with --all-matching what the filters
// match; filtered says whether any filter was given.
func runRedispatch(ctx context.Context, e *env, o *redispatchOptions, ids []string, filtered bool) error {
	c, f, allMatching, yes := &o.conn, &o.filter, &o.allMatching, &o.yes
	switch {
	case *allMatching && len(ids) > 0:
		return errors.New("give IDs or --all-matching, not both")
	case !*allMatching && filtered:
		return errors.New("filters need --all-matching (or give IDs)")
	case !*allMatching && len(ids) == 0:
		return errors.New("give IDs, or --all-matching with filters")
	}
	var refs []store.Ref
	if !*allMatching {
		var err error
		if refs, err = writeRefs(f.namespace, ids); err != nil {
			return err
		}
		f.namespace = "" // the IDs' namespace, not a filter
	}
	if *allMatching && f.dispatch == "" {
		f.dispatch = string(store.DispatchDead)
	}
	sf, err := f.filter(e.now())
	if err != nil {
		return err
	}
	b, err := writeBackend(ctx, e, c)
	if err != nil {
		return err
	}
	defer b.Close()
	if *allMatching {
		sf.Limit = store.MaxListLimit
		err := eachMatching(ctx, b, sf, func(cs []*store.Correlation) error {
			for _, x := range cs {
				refs = append(refs, x.Ref())
			}
			return nil
		})
		if err != nil {
			return err
		}
		if len(refs) == 0 {
			if c.json() {
				return writeJSON(e.stdout, actOut{Action: "redispatched", Results: []actResult{}})
			}
			fmt.Fprintln(e.stdout, "nothing matches; nothing to redispatch")
			return nil
		}
		if !*yes {
			if err := confirm(e, fmt.Sprintf("redispatch %s (%s)", plural(len(refs), "correlation"), sample(refs))); err != nil {
				return err
			}
		}
	}
	return act(ctx, e, c, b, refs, action{
		verb: "redispatched",
		ready: func(r *store.Correlation) string {
			if d := r.Dispatch.State; d != store.DispatchDead && d != store.DispatchDone {
				return fmt.Sprintf("dispatch is %s; only dead or done outcomes can be redispatched", d)
			}
			return ""
		},
		apply: func(ctx context.Context, b storeOrServer, r *store.Correlation) (store.Result, error) {
			return b.Redispatch(ctx, r.Ref())
		},
	})
}

func sample(refs []store.Ref) string {
	var s []string
	for _, r := range refs[:min(len(refs), 3)] {
		s = append(s, label(r))
	}
	if len(refs) > 3 {
		s = append(s, "…")
	}
	return strings.Join(s, ", ")
}

// confirm asks on the terminal; without one it refuses and names --yes.
func confirm(e *env, question string) error {
	if !e.terminal {
		return fmt.Errorf("this would %s; there is no terminal to ask, so nothing was changed: add --yes", question)
	}
	fmt.Fprintf(e.stderr, "%s? [y/N] ", strings.ToUpper(question[:1])+question[1:])
	line, _ := bufio.NewReader(e.stdin).ReadString('\n')
	switch strings.ToLower(strings.TrimSpace(line)) {
	case "y", "yes":
		return nil
	}
	return errors.New("not confirmed; nothing was changed")
}
