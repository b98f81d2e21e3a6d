package store

import (
	"fmt"
	"slices"
	"time"
)

// MaxClaimHandlers bounds the handler names of one ClaimRequest.
const MaxClaimHandlers = 256

// ClaimRequest is what ClaimDispatch leases: up to Limit outcomes due at Now
// whose callback handler is one of Handlers, in Namespace, to Instance until
// Now+Lease.
//
// A claimer serves named handlers: the webhook dispatcher of serve the
// handlers of its callbacks file, a pull worker the handler it asks for, a
// Go client the handlers it registered with Handle. Claims never cross
// handlers, so none of them takes (and burns the attempts of) an outcome
// another one serves.
type ClaimRequest struct {
	Instance string
	// Namespace is the one namespace to claim in; "" claims in every
	// namespace (serve's callbacks file line with namespace "*": the
	// operator's explicit choice). A claim in one namespace costs what it
	// claims; a claim in every namespace costs, besides, one probe per
	// namespace holding a due or leased outcome.
	Namespace string
	// Handlers are the handler names served: 1 to MaxClaimHandlers.
	Handlers []string
	Now      time.Time
	Lease    time.Duration
	Limit    int
}

// Serves reports whether the request covers c's namespace and handler.
func (r ClaimRequest) Serves(c *Correlation) bool {
	return (r.Namespace == "" || r.Namespace == c.Namespace) && slices.Contains(r.Handlers, c.Callback.Handler)
}

// ValidateClaim checks the arguments of ClaimDispatch.
func ValidateClaim(r ClaimRequest) error {
	if r.Instance == "" || len(r.Instance) > MaxAddressLen {
		return invalid("instance", "must be 1 to %d bytes, got %d", MaxAddressLen, len(r.Instance))
	}
	if r.Namespace != "" {
		if err := ValidateNamespace(r.Namespace); err != nil {
			return err
		}
	}
	if len(r.Handlers) == 0 || len(r.Handlers) > MaxClaimHandlers {
		return invalid("handlers", "must name 1 to %d handlers, got %d", MaxClaimHandlers, len(r.Handlers))
	}
	for i, h := range r.Handlers {
		if err := ValidateHandler(h); err != nil {
			return err
		}
		if slices.Contains(r.Handlers[:i], h) {
			return invalid("handlers", "names %q twice", h)
		}
	}
	if r.Lease <= 0 {
		return invalid("lease", "must be positive, got %s", r.Lease)
	}
	return ValidateLimit(r.Limit)
}

// ValidateHandler checks a callback handler name: 1 to MaxHandlerLen bytes
// of UTF-8 with no control characters.
func ValidateHandler(h string) error {
	if h == "" {
		return invalid("handler", "must not be empty")
	}
	return nameLike("handler", h, MaxHandlerLen)
}

// ValidateLeaseEnd checks the end of lease given to ExtendDispatch.
func ValidateLeaseEnd(until time.Time) error {
	if until.IsZero() {
		return invalid("until", "must be set")
	}
	return nil
}

// ExtendLease moves the end of the current lease of a dispatch to until, for
// a handler that runs longer than its lease. The claim must be the current,
// unsettled one (ErrConflict otherwise; ErrNotPending when the dispatch is
// no longer pending); a lease is never shortened below what it holds, so
// repeating the call is harmless (Duplicate when nothing moved).
func (c *Correlation) ExtendLease(cl Claim, until, now time.Time) (duplicate bool, err error) {
	d := &c.Dispatch
	current := cl.Instance == d.LeaseOwner && cl.Attempt == d.Attempts && cl.Attempt > 0 && d.Settled < cl.Attempt
	switch {
	case d.State != DispatchPending:
		return false, fmt.Errorf("%w: dispatch of %s is %s", ErrNotPending, c.Ref(), d.State)
	case !current:
		return false, fmt.Errorf("%w: claim %s#%d on %s is not the current lease (%s#%d)",
			ErrConflict, cl.Instance, cl.Attempt, c.Ref(), d.LeaseOwner, d.Attempts)
	case !d.NextAt.After(now):
		// The lease ran out: another claimer may take it at any moment.
		return false, fmt.Errorf("%w: the lease of %s#%d on %s ended at %s", ErrConflict, cl.Instance, cl.Attempt,
			c.Ref(), d.NextAt.UTC().Format(time.RFC3339Nano))
	case !until.After(d.NextAt):
		return true, nil
	}
	d.NextAt = until
	c.touch(now)
	return false, nil
}
