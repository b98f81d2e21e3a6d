package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/corrstore/corrstore/store"
)

const extendAbout = `Moves the deadline of pending correlations: --by adds to the current deadline,
--deadline sets it. The store caps it at creation + the max timeout.`

// extendOptions are what extend was asked.
type extendOptions struct {
	conn
	namespace string
	by        time.Duration
	deadline  string
}

func newExtendCmd(e *env) *cobra.Command {
	var o extendOptions
	cmd := newCommand("extend [NS/]ID --by 5m", "move a pending correlation's deadline", extendAbout)
	o.conn.flags(cmd)
	namespaceFlag(cmd.Flags(), &o.namespace, "", idsNamespaceUsage)
	cmd.Flags().DurationVar(&o.by, "by", 0, "add this to the current deadline (5m, 2h)")
	cmd.Flags().StringVar(&o.deadline, "deadline", "", "new deadline, RFC 3339 (2026-01-02T15:04:05Z)")
	cmd.RunE = func(cmd *cobra.Command, ids []string) error { return runExtend(cmd.Context(), e, &o, ids) }
	return cmd
}

func runExtend(ctx context.Context, e *env, o *extendOptions, ids []string) error {
	c, by, at := &o.conn, &o.by, &o.deadline
	refs, err := writeRefs(o.namespace, ids)
	if err != nil {
		return err
	}
	var deadline time.Time
	switch {
	case (*by != 0) == (*at != ""):
		return errors.New("give --by DURATION or --deadline TIME, exactly one")
	case *by < 0:
		return fmt.Errorf("--by: must be positive, got %s", *by)
	case *at != "":
		if deadline, err = time.Parse(time.RFC3339Nano, *at); err != nil {
			return fmt.Errorf("--deadline: %q is not an RFC 3339 time like 2026-01-02T15:04:05Z", *at)
		}
	}
	b, err := writeBackend(ctx, e, c)
	if err != nil {
		return err
	}
	defer b.Close()
	return act(ctx, e, c, b, refs, action{
		verb:  "extended",
		ready: mustBePending,
		apply: func(ctx context.Context, b storeOrServer, r *store.Correlation) (store.Result, error) {
			d := deadline
			if *by > 0 {
				d = r.Deadline.Add(*by)
			}
			return b.Extend(ctx, r.Ref(), d)
		},
	})
}
