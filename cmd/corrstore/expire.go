package main

import (
	"context"

	"github.com/spf13/cobra"

	"github.com/corrstore/corrstore/store"
)

const expireAbout = `Forces the deadline outcome of pending correlations now, as the reaper would at
their deadline: timed_out, or completed when a gather has its quorum or the reply
is optional. The outcome is then dispatched to the handler as usual. Every ID is
checked first; if one does not exist or is not pending, nothing is changed.`

// expireOptions are what expire was asked.
type expireOptions struct {
	conn
	namespace, reason string
}

func newExpireCmd(e *env) *cobra.Command {
	var o expireOptions
	cmd := newCommand("expire [NS/]ID…", "force the deadline outcome of pending correlations now", expireAbout)
	o.conn.flags(cmd)
	namespaceFlag(cmd.Flags(), &o.namespace, "", idsNamespaceUsage)
	cmd.Flags().StringVar(&o.reason, "reason", "expired by an operator", "reason recorded in the outcome")
	cmd.RunE = func(cmd *cobra.Command, ids []string) error { return runExpire(cmd.Context(), e, &o, ids) }
	return cmd
}

func runExpire(ctx context.Context, e *env, o *expireOptions, ids []string) error {
	c := &o.conn
	refs, err := writeRefs(o.namespace, ids)
	if err != nil {
		return err
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
		verb:  "expired",
		ready: mustBePending,
		apply: func(ctx context.Context, b storeOrServer, r *store.Correlation) (store.Result, error) {
			return b.Expire(ctx, r.Ref(), o.reason)
		},
	})
}
