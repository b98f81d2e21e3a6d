package storetest

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/corrstore/corrstore/store"
)

func closedTests() []testCase {
	return []testCase{
		{name: "EveryMethodAfterClose", run: testClosed},
		{name: "CloseEndsSubscriptions", run: testCloseEndsSubscriptions},
		{name: "InvalidArgumentsAfterClose", run: testClosedInvalid},
		{name: "RefBeforeArguments", run: testRefBeforeArguments},
	}
}

func testClosed(t *testing.T, e *env) {
	e.register(single("cl-existing"))
	e.decided(ref("cl-decided"))
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
		"Deliver":        func() error { _, err := e.s.Deliver(ctx, ref("cl-existing"), reply("r")); return err },
		"DeliverUnknown": func() error { _, err := e.s.Deliver(ctx, ref("cl-unknown"), reply("r")); return err },
		"Get":            func() error { _, err := e.s.Get(ctx, ref("cl-existing")); return err },
		"Extend":         func() error { _, err := e.s.Extend(ctx, ref("cl-existing"), now.Add(time.Hour)); return err },
		"Cancel":         func() error { _, err := e.s.Cancel(ctx, ref("cl-existing"), ""); return err },
		"Expire":         func() error { _, err := e.s.Expire(ctx, ref("cl-existing"), ""); return err },
		"ExpireDue":      func() error { _, err := e.s.ExpireDue(ctx, now.Add(time.Hour), 10); return err },
		"ClaimDispatch":  func() error { _, err := e.s.ClaimDispatch(ctx, e.claimAll("inst", time.Minute, 10)); return err },
		"AckDispatch":    func() error { _, err := e.s.AckDispatch(ctx, ref("cl-decided"), cl); return err },
		"NackDispatch": func() error {
			_, err := e.s.NackDispatch(ctx, ref("cl-decided"), cl, "boom", now.Add(time.Minute))
			return err
		},
		"ExtendDispatch": func() error {
			_, err := e.s.ExtendDispatch(ctx, ref("cl-decided"), cl, now.Add(time.Hour))
			return err
		},
		"OldestDispatchDue": func() error { _, err := e.s.OldestDispatchDue(ctx, "", "h"); return err },
		"Redispatch":        func() error { _, err := e.s.Redispatch(ctx, ref("cl-decided")); return err },
		"List":              func() error { _, err := e.s.List(ctx, store.Filter{}); return err },
		"Stats":             func() error { _, err := e.s.Stats(ctx, ""); return err },
		"Purge":             func() error { _, err := e.s.Purge(ctx, now.Add(time.Hour), 10); return err },
		"DropEarlyReplies":  func() error { _, err := e.s.DropEarlyReplies(ctx, now.Add(time.Hour), 10); return err },
		"Secret":            func() error { _, err := e.s.Secret(ctx, "reply-token"); return err },
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

// A closed store answers ErrClosed before it looks at the arguments, so a
// caller can tell "retry elsewhere" from "fix the request" whatever it sent.
func testClosedInvalid(t *testing.T, e *env) {
	e.register(single("cl-invalid"))
	require.NoError(t, e.s.Close())
	ctx := e.ctx
	now := e.now()
	bad := nsRef("Not Valid", "has space")
	tooLong := strings.Repeat("r", store.MaxReasonLen+1)
	cl := store.Claim{}
	calls := map[string]func() error{
		"Register": func() error {
			_, err := e.s.Register(ctx, &store.Correlation{ID: "has space", Pattern: "x"})
			return err
		},
		"Deliver":          func() error { _, err := e.s.Deliver(ctx, bad, store.Reply{Seq: -1}); return err },
		"DeliverBadReply":  func() error { _, err := e.s.Deliver(ctx, ref("cl-invalid"), store.Reply{Seq: -1}); return err },
		"Get":              func() error { _, err := e.s.Get(ctx, bad); return err },
		"Extend":           func() error { _, err := e.s.Extend(ctx, bad, time.Time{}); return err },
		"ExtendBadTime":    func() error { _, err := e.s.Extend(ctx, ref("cl-invalid"), time.Time{}); return err },
		"Cancel":           func() error { _, err := e.s.Cancel(ctx, bad, tooLong); return err },
		"CancelBadReason":  func() error { _, err := e.s.Cancel(ctx, ref("cl-invalid"), tooLong); return err },
		"Expire":           func() error { _, err := e.s.Expire(ctx, bad, tooLong); return err },
		"ExpireBadReason":  func() error { _, err := e.s.Expire(ctx, ref("cl-invalid"), tooLong); return err },
		"ExpireDue":        func() error { _, err := e.s.ExpireDue(ctx, now, 0); return err },
		"ClaimDispatch":    func() error { _, err := e.s.ClaimDispatch(ctx, store.ClaimRequest{Now: now}); return err },
		"AckDispatch":      func() error { _, err := e.s.AckDispatch(ctx, bad, cl); return err },
		"AckBadClaim":      func() error { _, err := e.s.AckDispatch(ctx, ref("cl-invalid"), cl); return err },
		"NackDispatch":     func() error { _, err := e.s.NackDispatch(ctx, bad, cl, "", time.Time{}); return err },
		"NackBadClaim":     func() error { _, err := e.s.NackDispatch(ctx, ref("cl-invalid"), cl, "", time.Time{}); return err },
		"ExtendDispatch":   func() error { _, err := e.s.ExtendDispatch(ctx, bad, cl, time.Time{}); return err },
		"Redispatch":       func() error { _, err := e.s.Redispatch(ctx, bad); return err },
		"RedispatchNone":   func() error { _, err := e.s.Redispatch(ctx, ref("cl-invalid")); return err },
		"List":             func() error { _, err := e.s.List(ctx, store.Filter{Limit: -1, Cursor: "!"}); return err },
		"Stats":            func() error { _, err := e.s.Stats(ctx, "Not Valid"); return err },
		"Purge":            func() error { _, err := e.s.Purge(ctx, now, 0); return err },
		"DropEarlyReplies": func() error { _, err := e.s.DropEarlyReplies(ctx, now, -1); return err },
		"Secret":           func() error { _, err := e.s.Secret(ctx, "Not Valid"); return err },
	}
	for name, call := range calls {
		err := call()
		require.ErrorIs(t, err, store.ErrClosed, name)
		require.NotErrorIs(t, err, store.ErrInvalid, "%s: the closed store answered, not the arguments", name)
	}
}

// An open store given a bad ref and a bad argument answers about the ref:
// the checks run in one order (the store, the ref, the call's arguments),
// whichever backend answers.
func testRefBeforeArguments(t *testing.T, e *env) {
	ctx := e.ctx
	bad := nsRef("Not Valid", "has space")
	tooLong := strings.Repeat("r", store.MaxReasonLen+1)
	calls := map[string]func() error{
		"Cancel": func() error { _, err := e.s.Cancel(ctx, bad, tooLong); return err },
		"Expire": func() error { _, err := e.s.Expire(ctx, bad, tooLong); return err },
	}
	for name, call := range calls {
		err := call()
		require.ErrorIs(t, err, store.ErrInvalid, name)
		var fe *store.FieldError
		require.ErrorAs(t, err, &fe, name)
		require.Equal(t, "namespace", fe.Field, "%s: the ref is checked before the reason: %v", name, err)
	}
}

func testCloseEndsSubscriptions(t *testing.T, e *env) {
	ctx, cancel := context.WithCancel(e.ctx)
	defer cancel()
	ev := e.subscribe(ctx)
	e.register(single("cl-sub"))
	e.deliver(ref("cl-sub"), reply("r"), store.DeliverCompleted)
	ev.waitEvent(ref("cl-sub"), store.StateCompleted, 1)
	require.NoError(t, e.s.Close())
	ev.waitClosed("after Close")
}
