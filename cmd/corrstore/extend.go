package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/corrstore/corrstore/store"
)

const extendAbout = `Moves the deadline of pending correlations: --by adds to the current deadline,
--deadline sets it. The store caps it at creation + the max timeout.`

func runExtend(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "extend", "[NS/]ID… --by 5m | --deadline TIME", extendAbout)
	var c conn
	c.flags(fs, e)
	var ns string
	namespaceFlag(fs, &ns, idsNamespaceUsage)
	by := fs.Duration("by", 0, "add this to the current deadline (5m, 2h)")
	at := fs.String("deadline", "", "new deadline, RFC 3339 (2026-01-02T15:04:05Z)")
	ids, err := parse(fs, args)
	if err != nil {
		return err
	}
	refs, err := writeRefs(ns, ids)
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
	b, err := writeBackend(ctx, e, &c)
	if err != nil {
		return err
	}
	defer b.Close()
	return act(ctx, e, c, b, refs, action{
		verb:  "extended",
		ready: mustBePending,
		apply: func(ctx context.Context, b backend, r *store.Correlation) (store.Result, error) {
			d := deadline
			if *by > 0 {
				d = r.Deadline.Add(*by)
			}
			return b.Extend(ctx, r.Ref(), d)
		},
	})
}
