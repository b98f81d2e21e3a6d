// Package storekit supplies the store.Store methods that every backend
// would otherwise write the same way: the single-record mutations
// Extend, Cancel, Expire, AckDispatch, NackDispatch, ExtendDispatch and
// Redispatch. A backend implements one mutate primitive (load a record, run a step, save it when
// its Version rose, publish) and embeds Mutations, which validates each
// call up front, in one order, and hands the primitive the step:
//
//  1. the store itself: closed (or otherwise unusable) answers first,
//     whatever the arguments, so a caller can tell "retry elsewhere" from
//     "fix the request";
//  2. the ref (normalised, then validated);
//  3. the call's own arguments (the reason of Cancel and Expire).
//
// storetest's "InvalidArgumentsAfterClose" and "RefBeforeArguments" pin
// that order for every backend.
package storekit

import (
	"context"
	"time"

	"github.com/corrstore/corrstore/store"
)

// Step is one state-machine step on a record: a method of *store.Correlation
// bound to its arguments. It reports a repeat (duplicate) or refuses (err);
// a step that refuses after raising c.Version (a correlation found past its
// deadline takes its deadline outcome first) still has its change saved.
type Step func(c *store.Correlation, now time.Time) (duplicate bool, err error)

// MutateFunc is a backend's mutate primitive. It is given a normalised,
// valid ref on a store that was open when the call began. It loads the
// record (store.ErrNotFound when there is none), runs step with the store's
// clock, saves the record when its Version rose — also when step then
// refused, before that error is returned — and publishes every saved change
// that raised the Version. It answers step's error, or the record and
// whether step called it a duplicate.
type MutateFunc func(ctx context.Context, ref store.Ref, step Step) (store.Result, error)

// Mutations implements Extend, Cancel, Expire, AckDispatch, NackDispatch and
// Redispatch of store.Store on a backend's mutate primitive. A backend embeds
// it (through an unexported alias, so that it adds no exported field) and
// sets it with New when it is built.
type Mutations struct {
	check  func() error
	lim    store.Limits
	mutate MutateFunc
}

// New returns the Mutations of a backend: check answers store.ErrClosed (or
// another error that makes the store unusable) or nil; lim are the store's
// limits (with defaults); mutate is its primitive.
func New(check func() error, lim store.Limits, mutate MutateFunc) Mutations {
	return Mutations{check: check, lim: lim, mutate: mutate}
}

// run checks the store, then the ref, then the call's arguments (args, in
// order), and hands step to the primitive.
func (m Mutations) run(ctx context.Context, ref store.Ref, step Step, args ...error) (store.Result, error) {
	if err := m.check(); err != nil {
		return store.Result{}, err
	}
	ref = ref.Norm()
	if err := ref.Validate(); err != nil {
		return store.Result{}, err
	}
	for _, err := range args {
		if err != nil {
			return store.Result{}, err
		}
	}
	return m.mutate(ctx, ref, step)
}

// Extend implements store.Store.
func (m Mutations) Extend(ctx context.Context, ref store.Ref, deadline time.Time) (store.Result, error) {
	return m.run(ctx, ref, func(c *store.Correlation, now time.Time) (bool, error) {
		return c.ApplyExtend(now, deadline, m.lim)
	})
}

// Cancel implements store.Store.
func (m Mutations) Cancel(ctx context.Context, ref store.Ref, reason string) (store.Result, error) {
	return m.run(ctx, ref, func(c *store.Correlation, now time.Time) (bool, error) {
		return c.ApplyCancel(now, reason, m.lim)
	}, store.ValidateReason(reason))
}

// Expire implements store.Store.
func (m Mutations) Expire(ctx context.Context, ref store.Ref, reason string) (store.Result, error) {
	return m.run(ctx, ref, func(c *store.Correlation, now time.Time) (bool, error) {
		return c.ApplyExpire(now, reason, m.lim)
	}, store.ValidateReason(reason))
}

// AckDispatch implements store.Store.
func (m Mutations) AckDispatch(ctx context.Context, ref store.Ref, claim store.Claim) (store.Result, error) {
	return m.run(ctx, ref, func(c *store.Correlation, now time.Time) (bool, error) {
		return c.ApplyAck(claim, now, m.lim)
	})
}

// NackDispatch implements store.Store.
func (m Mutations) NackDispatch(ctx context.Context, ref store.Ref, claim store.Claim, errText string, retryAt time.Time) (store.Result, error) {
	return m.run(ctx, ref, func(c *store.Correlation, now time.Time) (bool, error) {
		return c.ApplyNack(claim, errText, retryAt, now, m.lim)
	})
}

// ExtendDispatch implements store.Store.
func (m Mutations) ExtendDispatch(ctx context.Context, ref store.Ref, claim store.Claim, until time.Time) (store.Result, error) {
	return m.run(ctx, ref, func(c *store.Correlation, now time.Time) (bool, error) {
		return c.ExtendLease(claim, until, now)
	}, store.ValidateLeaseEnd(until))
}

// Redispatch implements store.Store.
func (m Mutations) Redispatch(ctx context.Context, ref store.Ref) (store.Result, error) {
	return m.run(ctx, ref, func(c *store.Correlation, now time.Time) (bool, error) {
		return c.ApplyRedispatch(now, m.lim)
	})
}
