package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/corrstore/corrstore/store"
)

// actResult is one line of what expire, cancel, extend and redispatch did.
// The field names are stable.
type actResult struct {
	Namespace string              `json:"namespace"`
	ID        string              `json:"id"`
	State     store.State         `json:"state,omitempty"`
	Dispatch  store.DispatchState `json:"dispatch,omitempty"`
	Deadline  *time.Time          `json:"deadline,omitempty"`
	Duplicate bool                `json:"duplicate,omitempty"`
	Error     string              `json:"error,omitempty"`
}

// actOut is what expire, cancel, extend and redispatch print with -o json.
type actOut struct {
	Action  string      `json:"action"`
	Results []actResult `json:"results"`
}

// action is one of the write commands, applied to a list of correlations.
type action struct {
	verb string
	// ready says why a correlation cannot take the action ("" when it can).
	ready func(c *store.Correlation) string
	apply func(ctx context.Context, b storeOrServer, c *store.Correlation) (store.Result, error)
}

// act checks every correlation first — it exists and can take the action —
// and changes nothing when one cannot; then it applies the action to each
// and prints what happened.
func act(ctx context.Context, e *env, c *conn, b storeOrServer, refs []store.Ref, a action) error {
	if len(refs) == 0 {
		return errors.New("give at least one ID")
	}
	seen := map[store.Ref]bool{} // pend-1 and default/pend-1 are one
	var recs []*store.Correlation
	for _, ref := range refs {
		r, err := b.Get(ctx, ref)
		if err != nil {
			return fmt.Errorf("%s: %s; nothing was changed", label(ref), describeErr(err))
		}
		if why := a.ready(r); why != "" {
			return fmt.Errorf("%s: %s; nothing was changed", label(r.Ref()), why)
		}
		if !seen[r.Ref()] {
			seen[r.Ref()] = true
			recs = append(recs, r)
		}
	}
	results := make([]actResult, 0, len(recs))
	failed := 0
	for _, r := range recs {
		res, err := a.apply(ctx, b, r)
		out := actResult{Namespace: r.Namespace, ID: r.ID}
		if err != nil {
			failed++
			out.Error = describeErr(err)
		} else {
			out.State, out.Dispatch, out.Duplicate = res.Correlation.State, res.Correlation.Dispatch.State, res.Duplicate
			if res.Correlation.State == store.StatePending {
				d := res.Correlation.Deadline.UTC()
				out.Deadline = &d
			}
		}
		results = append(results, out)
	}
	if c.json() {
		if err := writeJSON(e.stdout, actOut{a.verb, results}); err != nil {
			return err
		}
	} else {
		tw := table(e.stdout)
		fmt.Fprintln(tw, "ID\tNAMESPACE\tSTATE\tDISPATCH\tRESULT")
		for _, r := range results {
			res := a.verb
			switch {
			case r.Error != "":
				res = "failed: " + printable(r.Error)
			case r.Duplicate:
				res = "already " + a.verb + " (no change)"
			case r.Deadline != nil:
				res = a.verb + ", deadline " + r.Deadline.Format(time.RFC3339) + " (" + relative(r.Deadline.Sub(e.now())) + ")"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", orDash(r.ID), orDash(r.Namespace), orDash(string(r.State)), orDash(string(r.Dispatch)), res)
		}
		tw.Flush()
	}
	if failed > 0 {
		return fmt.Errorf("%d of %d failed", failed, len(results))
	}
	return nil
}

func mustBePending(c *store.Correlation) string {
	if c.State != store.StatePending {
		return fmt.Sprintf("is %s, not pending", c.State)
	}
	return ""
}

// writeBackend checks the connection flags and opens the store or server for writing.
func writeBackend(ctx context.Context, e *env, c *conn) (storeOrServer, error) {
	if err := c.check(); err != nil {
		return nil, err
	}
	return c.open(ctx, e, false)
}

// writeRefs reads the ID arguments of a write command (see refsOf).
func writeRefs(ns string, args []string) ([]store.Ref, error) {
	refs, err := refsOf(ns, args)
	if err != nil {
		return nil, fmt.Errorf("%w; nothing was changed", err)
	}
	return refs, nil
}
