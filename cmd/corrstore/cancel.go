package main

import (
	"context"
	"errors"

	"github.com/spf13/cobra"

	"github.com/corrstore/corrstore/store"
)

const cancelAbout = `Cancels pending correlations: their outcome is cancelled with the reason, and is
dispatched to the handler as usual. Every ID is checked first; if one does not
exist or is not pending, nothing is changed.`

// cancelOptions are what cancel was asked.
type cancelOptions struct {
	conn
	namespace, reason string
}

func newCancelCmd(e *env) *cobra.Command {
	var o cancelOptions
	cmd := newCommand("cancel [NS/]ID… --reason R", "cancel pending correlations", cancelAbout)
	o.conn.flags(cmd)
	namespaceFlag(cmd.Flags(), &o.namespace, "", idsNamespaceUsage)
	cmd.Flags().StringVar(&o.reason, "reason", "", "why (required; recorded in the outcome)")
	cmd.RunE = func(cmd *cobra.Command, ids []string) error { return runCancel(cmd.Context(), e, &o, ids) }
	return cmd
}

func runCancel(ctx context.Context, e *env, o *cancelOptions, ids []string) error {
	c := &o.conn
	refs, err := writeRefs(o.namespace, ids)
	if err != nil {
		return err
	}
	if o.reason == "" {
		return errors.New("--reason: required (it is recorded in the outcome)")
	}
	if err := store.ValidateReason(o.reason); err != nil {
		return flagError(err)
	}
	b, err := writeBackend(ctx, e, c)
	if err != nil {
		return err
	}
	defer b.Close()
	return act(ctx, e, c, b, refs, action{
		verb:  "cancelled",
		ready: mustBePending,
		apply: func(ctx context.Context, b storeOrServer, r *store.Correlation) (store.Result, error) {
			return b.Cancel(ctx, r.Ref(), o.reason)
		},
	})
}
