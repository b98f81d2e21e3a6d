package storetest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/corrstore/corrstore/store"
)

func closedTests() []testCase {
	return []testCase{
		{name: "EveryMethodAfterClose", run: testClosed},
		{name: "CloseEndsSubscriptions", run: testCloseEndsSubscriptions},
	}
}

func testClosed(t *testing.T, e *env) {
	e.register(single("cl-existing"))
	e.decided("cl-decided")
	require.NoError(t, e.s.Close())
	require.NotPanics(t, func() {
		err := e.s.Close()
		if err != nil {
			require.ErrorIs(t, err, store.ErrClosed, "a second Close returns nil or ErrClosed")
		}
	})

	ctx := e.ctx
	now := e.now()
	cl := store.Claim{Instance: "inst", Attempt: 1}
	calls := map[string]func() error{
		"Register":       func() error { _, err := e.s.Register(ctx, single("cl-new")); return err },
		"RegisterAgain":  func() error { _, err := e.s.Register(ctx, single("cl-existing")); return err },
		"Deliver":        func() error { _, err := e.s.Deliver(ctx, "cl-existing", reply("r")); return err },
		"DeliverUnknown": func() error { _, err := e.s.Deliver(ctx, "cl-unknown", reply("r")); return err },
		"Get":            func() error { _, err := e.s.Get(ctx, "cl-existing"); return err },
		"Extend":         func() error { _, err := e.s.Extend(ctx, "cl-existing", now.Add(time.Hour)); return err },
		"Cancel":         func() error { _, err := e.s.Cancel(ctx, "cl-existing", ""); return err },
		"Expire":         func() error { _, err := e.s.Expire(ctx, "cl-existing", ""); return err },
		"ExpireDue":      func() error { _, err := e.s.ExpireDue(ctx, now.Add(time.Hour), 10); return err },
		"ClaimDispatch":  func() error { _, err := e.s.ClaimDispatch(ctx, "inst", now, time.Minute, 10); return err },
		"AckDispatch":    func() error { _, err := e.s.AckDispatch(ctx, "cl-decided", cl); return err },
		"NackDispatch": func() error {
			_, err := e.s.NackDispatch(ctx, "cl-decided", cl, "boom", now.Add(time.Minute))
			return err
		},
		"Redispatch":       func() error { _, err := e.s.Redispatch(ctx, "cl-decided"); return err },
		"List":             func() error { _, err := e.s.List(ctx, store.Filter{}); return err },
		"Stats":            func() error { _, err := e.s.Stats(ctx, ""); return err },
		"Purge":            func() error { _, err := e.s.Purge(ctx, now.Add(time.Hour), 10); return err },
		"DropEarlyReplies": func() error { _, err := e.s.DropEarlyReplies(ctx, now.Add(time.Hour), 10); return err },
		"Subscribe": func() error {
			ch, err := e.s.Subscribe(ctx)
			if err == nil && ch != nil {
				return errAlive
			}
			return err
		},
	}
	for name, call := range calls {
		require.ErrorIs(t, call(), store.ErrClosed, name)
	}
}

var errAlive = errors.New("Subscribe after Close returned a channel")

func testCloseEndsSubscriptions(t *testing.T, e *env) {
	ctx, cancel := context.WithCancel(e.ctx)
	defer cancel()
	ev := e.subscribe(ctx)
	e.register(single("cl-sub"))
	e.deliver("cl-sub", reply("r"), store.DeliverCompleted)
	ev.waitEvent("cl-sub", store.StateCompleted, 1)
	require.NoError(t, e.s.Close())
	ev.waitClosed("after Close")
}
