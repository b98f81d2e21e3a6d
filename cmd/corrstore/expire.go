package main

import (
	"context"

	"github.com/corrstore/corrstore/store"
)

const expireAbout = `Forces the deadline outcome of pending correlations now, as the reaper would at
their deadline: timed_out, or completed when a gather has its quorum or the reply
is optional. The outcome is then dispatched to the handler as usual. Every ID is
checked first; if one does not exist or is not pending, nothing is changed.`

func runExpire(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "expire", "[NS/]ID…", expireAbout)
	var c conn
	c.flags(fs, e)
	var ns string
	namespaceFlag(fs, &ns, idsNamespaceUsage)
	reason := fs.String("reason", "expired by an operator", "reason recorded in the outcome")
	ids, err := parse(fs, args)
	if err != nil {
		return err
	}
	refs, err := writeRefs(ns, ids)
	if err != nil {
		return err
	}
	if err := store.ValidateReason(*reason); err != nil {
		return flagError(err)
	}
	b, err := writeBackend(ctx, e, &c)
	if err != nil {
		return err
	}
	defer b.Close()
	return act(ctx, e, c, b, refs, action{
		verb:  "expired",
		ready: mustBePending,
		apply: func(ctx context.Context, b backend, r *store.Correlation) (store.Result, error) {
			return b.Expire(ctx, r.Ref(), *reason)
		},
	})
}
