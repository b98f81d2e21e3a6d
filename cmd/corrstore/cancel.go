package main

import (
	"context"
	"errors"

	"github.com/corrstore/corrstore/store"
)

const cancelAbout = `Cancels pending correlations: their outcome is cancelled with the reason, and is
dispatched to the handler as usual. Every ID is checked first; if one does not
exist or is not pending, nothing is changed.`

func runCancel(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "cancel", "[NS/]ID… --reason R", cancelAbout)
	var c conn
	c.flags(fs, e)
	var ns string
	namespaceFlag(fs, &ns, idsNamespaceUsage)
	reason := fs.String("reason", "", "why (required; recorded in the outcome)")
	ids, err := parse(fs, args)
	if err != nil {
		return err
	}
	refs, err := writeRefs(ns, ids)
	if err != nil {
		return err
	}
	if *reason == "" {
		return errors.New("--reason: required (it is recorded in the outcome)")
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
		verb:  "cancelled",
		ready: mustBePending,
		apply: func(ctx context.Context, b backend, r *store.Correlation) (store.Result, error) {
			return b.Cancel(ctx, r.Ref(), *reason)
		},
	})
}
