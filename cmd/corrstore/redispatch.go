package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"strings"

	"github.com/corrstore/corrstore/store"
)

const redispatchAbout = `Hands decided outcomes to their callback handler again, with a fresh budget of
attempts: after a handler was fixed, for outcomes whose dispatch is dead (or done,
to run the handler again). Give IDs (in --namespace, or NS/ID), or --all-matching
with the filters of ls (default --dispatch dead; every namespace unless
--namespace); it asks before it acts unless --yes.`

func runRedispatch(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "redispatch", "[NS/]ID… | --all-matching [filters] [--yes]", redispatchAbout)
	var c conn
	var f filterFlags
	c.flags(fs, e)
	f.flags(fs)
	allMatching := fs.Bool("all-matching", false, "redispatch every correlation the filters match")
	yes := fs.Bool("yes", false, "do not ask for confirmation")
	ids, err := parse(fs, args)
	if err != nil {
		return err
	}
	filtered := false
	fs.Visit(func(fl *flag.Flag) {
		switch fl.Name {
		case "state", "older-than", "owner", "destination", "handler", "dispatch", "label":
			filtered = true
		}
	})
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
	b, err := writeBackend(ctx, e, &c)
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
		apply: func(ctx context.Context, b backend, r *store.Correlation) (store.Result, error) {
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
