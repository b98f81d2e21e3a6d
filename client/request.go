package client

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"time"

	"github.com/corrstore/corrstore/store"
)

// Errors of Request, Gather and Stream. Check them with errors.Is.
var (
	// ErrTimedOut: the deadline came before the replies did.
	ErrTimedOut = errors.New("client: timed out")
	// ErrCancelled: the correlation was cancelled (its send failed, or an
	// operator cancelled it).
	ErrCancelled = errors.New("client: cancelled")
	// ErrNoReply: an Optional request reached its deadline with no reply.
	ErrNoReply = errors.New("client: no reply")
	// ErrStopped: Run ended while the call waited.
	ErrStopped = errors.New("client: Run stopped")
	// ErrSend: the transport did not take the request; the correlation was
	// cancelled with the reason.
	ErrSend = errors.New("client: send failed")
)

// ReplyError is a responder-side error carried by a reply.
type ReplyError struct {
	From string
	Text string
}

func (e *ReplyError) Error() string {
	if e.From == "" {
		return "reply error: " + e.Text
	}
	return fmt.Sprintf("reply error from %s: %s", e.From, e.Text)
}

// Options describe a request. The zero value is a request with the store's
// default timeout and no callback handler.
type Options struct {
	// ID of the correlation, in the client's namespace; default a new
	// UUIDv7, or one derived from IdempotencyKey. A call repeated with the
	// same ID or key lands on the same correlation: it sends again only
	// while that one is pending.
	ID             string
	IdempotencyKey string
	// Timeout or Deadline (not both); default the store's (30s).
	Timeout  time.Duration
	Deadline time.Time
	// Optional: at the deadline with no reply the outcome is completed with
	// no reply instead of timed out.
	Optional bool
	// Expect is how many replies complete a Gather (default: one per
	// destination); at the deadline, Quorum (> 0) replies are a partial success.
	Expect int
	Quorum int
	// Handler names the callback handler that gets the outcome (see
	// Client.Handle), on whichever replica claims it, after a restart too;
	// Data is what it needs to resume the workflow.
	Handler string
	Data    []byte
	// Labels for operators (workflow id, step...).
	Labels map[string]string
}

// waitFor says what register waits on: nothing (Send), outcomes, or
// every change (Stream).
type waitFor int

const (
	waitNone waitFor = iota
	waitOutcome
	waitEvery
)

// register stores the correlation and starts a wait on it. A correlation
// that already existed (a repeated call) is sent again only while pending.
func (c *Client) register(ctx context.Context, p store.Pattern, dests []string, opts Options, wf waitFor) (corr *store.Correlation, wt *wait, send bool, err error) {
	if wf != waitNone {
		if err := c.w.ready(ctx); err != nil {
			return nil, nil, false, err
		}
	}
	dest := ""
	if len(dests) == 1 {
		dest = dests[0]
	}
	reg := &store.Correlation{
		ID: opts.ID, Namespace: c.cfg.Namespace, Pattern: p,
		Quorum: opts.Quorum, Optional: opts.Optional,
		Timeout: opts.Timeout, Deadline: opts.Deadline,
		Destination: dest, ReplyTo: c.cfg.ReplyTo, Owner: c.cfg.Instance,
		Callback: store.Callback{Handler: opts.Handler, Data: opts.Data},
		Labels:   opts.Labels, IdempotencyKey: opts.IdempotencyKey,
	}
	if p == store.PatternGather {
		reg.Expect = opts.Expect
		if reg.Expect == 0 {
			reg.Expect = len(dests)
		}
	}
	res, err := c.st.Register(ctx, reg)
	if err != nil {
		return nil, nil, false, fmt.Errorf("client: register: %w", err)
	}
	corr = res.Correlation
	if wf != waitNone {
		if wt, err = c.w.add(corr, wf == waitEvery); err != nil {
			return nil, nil, false, err
		}
	}
	return corr, wt, !corr.State.Terminal(), nil
}

// send hands the request to every destination. When the transport fails
// the correlation is cancelled with the reason, so that nobody waits for a
// reply to a request that never left.
func (c *Client) send(ctx context.Context, corr *store.Correlation, dests []string, body []byte) error {
	for _, d := range dests {
		m := Message{CorrelationID: corr.ID, Namespace: corr.Namespace, ReplyTo: c.cfg.ReplyTo, Body: body}
		err := c.tr.Send(ctx, d, m)
		c.cfg.Metrics.Sent(d, err)
		if err == nil {
			continue
		}
		reason := fmt.Sprintf("send to %s failed: %v", d, err)
		if len(reason) > store.MaxReasonLen {
			reason = reason[:store.MaxReasonLen]
		}
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if _, cerr := c.st.Cancel(cctx, corr.Ref(), reason); cerr != nil && !errors.Is(cerr, store.ErrNotPending) {
			c.log.Error("cannot cancel a correlation whose send failed; it will time out", "ref", corr.Ref().String(), "err", cerr)
		}
		return fmt.Errorf("%w: %s to %s: %w", ErrSend, corr.ID, d, err)
	}
	return nil
}

// await waits until done(corr) holds for a fresh read of the correlation,
// or it is decided. It never decides before the stored deadline: its alarm
// follows the deadline as extends move it (events, or the re-read when the
// alarm goes off), and at the deadline it asks the store, which decides
// with its own clock (see atDeadline). So a waiter does not depend on a
// reaper being near, and does not cut a heartbeat short.
func (c *Client) await(ctx context.Context, wt *wait, corr *store.Correlation, done func(*store.Correlation) bool) (*store.Correlation, error) {
	al := c.newAlarm()
	defer al.Stop()
	armed := wt.stored()
	al.Set(armed)
	for {
		if wt.recheck.Swap(false) {
			got, err := c.st.Get(ctx, wt.ref)
			switch {
			case err == nil:
				corr = got
				if corr.State.Terminal() || done(corr) {
					return corr, nil
				}
				wt.learn(corr.Version, corr.Deadline)
			case ctx.Err() != nil:
				return nil, ctx.Err()
			case errors.Is(err, store.ErrNotFound):
				return nil, fmt.Errorf("client: waiting for %s: %w", wt.ref, err)
			default:
				// The store is down: keep waiting, the next wake, the
				// poll or the alarm tries again.
				c.log.Warn("cannot read a correlation being waited for", "ref", wt.ref.String(), "err", err)
			}
		}
		if d := wt.stored(); !d.Equal(armed) {
			armed = d
			al.Set(armed)
		}
		select {
		case <-wt.wake:
		case <-wt.run.stopped:
			return nil, ErrStopped
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-al.C():
			got, retry, err := c.atDeadline(ctx, wt, done)
			switch {
			case err != nil:
				return nil, err
			case got != nil:
				return got, nil
			case retry:
				// Try again after a while; armed stays, so that a deadline
				// learnt meanwhile sets the alarm again.
				al.Set(c.clock.Now().Add(c.cfg.PollInterval))
			default:
				armed = wt.stored()
				al.Set(armed)
			}
		}
	}
}

// atDeadline runs when a waiter's alarm goes off. It re-reads the record:
// an extend the waiter has not heard of yet moves the alarm (it returns
// neither a correlation nor retry). When the stored deadline has come by
// the client's clock, the store decides, not the waiter: Extend with a zero
// deadline settles a due correlation (its deadline outcome, stored in the
// same atomic write, answered with ErrNotPending) and moves nothing when it
// is not due by the store's clock (a duplicate: ask again soon). Expire
// would decide now whatever the stored deadline, overriding an extend that
// got in between the read and the call; Extend to the deadline read could
// set such an extend back when the store's clock is behind the client's.
//
// It returns the correlation when it is decided or done holds, or retry
// when the waiter should ask again after PollInterval (the store could not
// answer, or its clock is behind the client's), or ctx's error, or an
// error when the record is gone (purged or never there).
func (c *Client) atDeadline(ctx context.Context, wt *wait, done func(*store.Correlation) bool) (_ *store.Correlation, retry bool, err error) {
	got, err := c.st.Get(ctx, wt.ref)
	switch {
	case err == nil:
	case ctx.Err() != nil:
		return nil, false, ctx.Err()
	case errors.Is(err, store.ErrNotFound):
		return nil, false, fmt.Errorf("client: waiting for %s: %w", wt.ref, err)
	default:
		c.log.Warn("cannot read a correlation at its deadline", "ref", wt.ref.String(), "err", err)
		return nil, true, nil
	}
	if got.State.Terminal() || done(got) {
		return got, false, nil
	}
	wt.learn(got.Version, got.Deadline)
	if c.clock.Now().Before(got.Deadline) {
		return nil, false, nil // extended: the alarm moves to the new deadline
	}
	_, err = c.st.Extend(ctx, wt.ref, time.Time{})
	switch {
	case err == nil:
		return nil, true, nil // pending by the store's clock: ask again soon
	case errors.Is(err, store.ErrNotPending):
		wt.notify() // decided, by this call or another: re-read
		return nil, false, nil
	case errors.Is(err, store.ErrNotFound):
		return nil, false, fmt.Errorf("client: waiting for %s: %w", wt.ref, err)
	case ctx.Err() != nil:
		return nil, false, ctx.Err()
	default:
		c.log.Warn("cannot ask the store for the deadline outcome", "ref", wt.ref.String(), "err", err)
		return nil, true, nil
	}
}

func (c *Client) awaitOutcome(ctx context.Context, wt *wait, corr *store.Correlation) (*store.Correlation, error) {
	if corr.State.Terminal() {
		return c.whole(ctx, corr)
	}
	start := time.Now()
	corr, err := c.await(ctx, wt, corr, func(*store.Correlation) bool { return false })
	if err == nil {
		c.cfg.Metrics.Waited(corr.State, time.Since(start))
	}
	return corr, err
}

// whole returns corr with its replies: the answers to writes carry none
// (Held counts them); Get has them.
func (c *Client) whole(ctx context.Context, corr *store.Correlation) (*store.Correlation, error) {
	if len(corr.Replies) >= corr.Held.Count {
		return corr, nil
	}
	return c.st.Get(ctx, corr.Ref())
}

// OutcomeErr returns the error a decided correlation stands for: nil when
// completed (a single's reply error aside), ErrNoReply, ErrTimedOut or
// ErrCancelled, wrapped with the ID and the reason.
func OutcomeErr(corr *store.Correlation) error {
	if corr.Outcome == nil {
		return fmt.Errorf("client: correlation %s is %s", corr.ID, corr.State)
	}
	o := corr.Outcome
	switch o.State {
	case store.StateTimedOut:
		return fmt.Errorf("%w: %s (%s, %d replies)", ErrTimedOut, corr.ID, o.Reason, corr.Held.Count)
	case store.StateCancelled:
		return fmt.Errorf("%w: %s: %s", ErrCancelled, corr.ID, o.Reason)
	}
	if o.NoReply {
		return fmt.Errorf("%w: %s (optional)", ErrNoReply, corr.ID)
	}
	if corr.Pattern == store.PatternSingle && len(corr.Replies) > 0 {
		return replyErr(corr.Replies[0])
	}
	return nil
}

func replyErr(r store.Reply) error {
	if r.Error == "" {
		return nil
	}
	return &ReplyError{From: r.From, Text: r.Error}
}

// Request registers a correlation, sends body to dest, and waits for the
// reply. It returns the reply, with a *ReplyError when the responder
// answered with an error; ErrTimedOut at the stored deadline (which Extend
// moves); ErrNoReply for an Optional request nobody answered.
//
// Nothing is sent unless the registration is stored. When ctx ends first,
// Request returns ctx.Err() but the correlation stays: the store decides it
// (a reply, or the reaper at the deadline) and its handler, if
// opts.Handler names one, gets the outcome.
func (c *Client) Request(ctx context.Context, dest string, body []byte, opts Options) (store.Reply, error) {
	corr, wt, send, err := c.register(ctx, store.PatternSingle, []string{dest}, opts, waitOutcome)
	if err != nil {
		return store.Reply{}, err
	}
	defer c.w.remove(wt)
	if send {
		if err := c.send(ctx, corr, []string{dest}, body); err != nil {
			return store.Reply{}, err
		}
	}
	corr, err = c.awaitOutcome(ctx, wt, corr)
	if err != nil {
		return store.Reply{}, err
	}
	var r store.Reply
	if corr.State == store.StateCompleted && len(corr.Replies) > 0 {
		r = corr.Replies[0]
	}
	return r, OutcomeErr(corr)
}

// Send registers a correlation and sends body to dest, and returns its ID
// without waiting: the outcome goes to the handler opts.Handler names, on
// whichever replica runs it (see Client.Handle). Send does not need Run.
func (c *Client) Send(ctx context.Context, dest string, body []byte, opts Options) (string, error) {
	corr, _, send, err := c.register(ctx, store.PatternSingle, []string{dest}, opts, waitNone)
	if err != nil {
		return "", err
	}
	if send {
		if err := c.send(ctx, corr, []string{dest}, body); err != nil {
			return corr.ID, err
		}
	}
	return corr.ID, nil
}

// Extend moves the deadline of the pending correlation id, in the client's
// namespace, to deadline: the heartbeat of work that takes longer than
// planned. The store caps it at the correlation's creation plus its
// Limits.MaxTimeout; the returned correlation has the deadline stored.
// Waiters on every replica keep waiting until it, and the responder's
// reply before it is not late. A deadline that is not in the future is
// store.ErrInvalid. At or after the stored deadline it is too late: the
// store decides the deadline outcome and Extend returns an error wrapping
// store.ErrNotPending, as it does for a decided correlation. Other errors:
// store.ErrNotFound.
func (c *Client) Extend(ctx context.Context, id string, deadline time.Time) (*store.Correlation, error) {
	ref := c.ref(id)
	if deadline.IsZero() {
		// The store reads a zero deadline as "settle only"; a heartbeat that
		// forgot its deadline must not look like one that worked.
		return nil, fmt.Errorf("client: extend %s: %w", ref, &store.FieldError{Field: "deadline", Reason: "is zero", Err: store.ErrInvalid})
	}
	res, err := c.st.Extend(ctx, ref, deadline)
	if err != nil {
		return nil, fmt.Errorf("client: extend %s: %w", ref, err)
	}
	return res.Correlation, nil
}

// Cancel decides the pending correlation id, in the client's namespace, as
// cancelled with reason: its waiters return ErrCancelled and its handler
// gets the outcome. A repeat with the same reason changes nothing and
// returns the correlation. A decided correlation (at or after its deadline
// too: the store decides the deadline outcome instead) is an error
// wrapping store.ErrNotPending. Other errors: store.ErrNotFound,
// store.ErrInvalid (the reason is too long).
func (c *Client) Cancel(ctx context.Context, id, reason string) (*store.Correlation, error) {
	ref := c.ref(id)
	res, err := c.st.Cancel(ctx, ref, reason)
	if err != nil {
		return nil, fmt.Errorf("client: cancel %s: %w", ref, err)
	}
	return res.Correlation, nil
}

// Gathered is the result of a Gather.
type Gathered struct {
	ID      string
	Replies []store.Reply
	// Partial: the deadline came with fewer than Expect replies but at
	// least Quorum.
	Partial bool
}

// Gather sends body to every destination and waits for opts.Expect replies
// (default one per destination). At the deadline, Quorum (> 0) replies are
// a partial success (Partial, no error); fewer is ErrTimedOut, with the
// replies that came. Responder errors stay in each reply's Error.
func (c *Client) Gather(ctx context.Context, dests []string, body []byte, opts Options) (Gathered, error) {
	if len(dests) == 0 {
		return Gathered{}, fmt.Errorf("%w: destinations: a gather needs at least one", store.ErrInvalid)
	}
	corr, wt, send, err := c.register(ctx, store.PatternGather, dests, opts, waitOutcome)
	if err != nil {
		return Gathered{}, err
	}
	defer c.w.remove(wt)
	if send {
		if err := c.send(ctx, corr, dests, body); err != nil {
			return Gathered{ID: corr.ID}, err
		}
	}
	id := corr.ID
	corr, err = c.awaitOutcome(ctx, wt, corr)
	if err != nil {
		return Gathered{ID: id}, err
	}
	g := Gathered{ID: corr.ID, Replies: corr.Replies, Partial: corr.Outcome != nil && corr.Outcome.Partial}
	if corr.State == store.StateCompleted {
		return g, nil
	}
	return g, OutcomeErr(corr)
}

// Stream sends body to dest and yields the replies in Seq order, whatever
// order they arrive in, until the one marked Final. A reply carrying a
// responder error is yielded with a *ReplyError; a stream that ends
// otherwise (deadline, cancel) ends with ErrTimedOut or ErrCancelled.
//
// The request is registered and sent when the iteration starts. Breaking
// out of the loop leaves the correlation to the store, like a cancelled
// Request.
func (c *Client) Stream(ctx context.Context, dest string, body []byte, opts Options) iter.Seq2[store.Reply, error] {
	return func(yield func(store.Reply, error) bool) {
		corr, wt, send, err := c.register(ctx, store.PatternStream, []string{dest}, opts, waitEvery)
		if err != nil {
			yield(store.Reply{}, err)
			return
		}
		defer c.w.remove(wt)
		if send {
			if err := c.send(ctx, corr, []string{dest}, body); err != nil {
				yield(store.Reply{}, err)
				return
			}
		}
		if corr, err = c.whole(ctx, corr); err != nil {
			yield(store.Reply{}, err)
			return
		}
		next := 0
		has := func(corr *store.Correlation) bool {
			for _, r := range corr.Replies {
				if r.Seq == next {
					return true
				}
			}
			return false
		}
		for {
			for _, r := range corr.Replies { // kept in Seq order by the store
				if r.Seq < next {
					continue
				}
				if r.Seq > next {
					break
				}
				if !yield(r, replyErr(r)) {
					return
				}
				next++
			}
			if corr.State.Terminal() {
				if err := OutcomeErr(corr); err != nil {
					yield(store.Reply{}, err)
				}
				return
			}
			if corr, err = c.await(ctx, wt, corr, has); err != nil {
				yield(store.Reply{}, err)
				return
			}
		}
	}
}
