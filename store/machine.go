package store

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strconv"
	"time"
)

// The methods in this file are the state machine of a correlation, named
// Apply… so that none reads like the Store method of the same action: they
// are pure, they change the record in memory and say what happened, and
// store nothing. Every backend calls them inside its own atomic step (a
// bbolt transaction, a compare-and-set on Redis), so all backends decide
// alike.

// DeliverStatus says what a delivered reply did.
type DeliverStatus string

const (
	// DeliverAccepted: recorded; the correlation is still pending.
	DeliverAccepted DeliverStatus = "accepted"
	// DeliverCompleted: this reply decided the outcome.
	DeliverCompleted DeliverStatus = "completed"
	// DeliverDuplicate: a reply with the same dedupe key was already taken.
	DeliverDuplicate DeliverStatus = "duplicate"
	// DeliverLate: the outcome was already decided; the reply is kept and counted.
	DeliverLate DeliverStatus = "late"
	// DeliverBuffered: no such correlation yet; kept as an early reply.
	DeliverBuffered DeliverStatus = "buffered"
)

// DedupeKey returns a reply's dedupe key under a pattern: ID if set; else
// "from:"+From for a gather; else "seq:"+Seq for a stream; "" when none.
func DedupeKey(p Pattern, r Reply) string {
	switch {
	case r.ID != "":
		return "id:" + r.ID
	case p == PatternGather && r.From != "":
		return "from:" + r.From
	case p == PatternStream:
		return "seq:" + strconv.Itoa(r.Seq)
	}
	return ""
}

// SameContent reports whether two replies carry the same content (arrival time aside).
func (a Reply) SameContent(b Reply) bool {
	return a.ID == b.ID && a.From == b.From && a.Seq == b.Seq && a.Final == b.Final &&
		a.Error == b.Error && bytes.Equal(a.Body, b.Body)
}

// CheckRegistration is the check Deliver makes before anything else for a
// reply bound to one registration (Reply.Nonce set): c is the record stored
// under ref, nil when there is none. It answers nil when the reply may go
// on (it is not bound, or c is its registration), else an error wrapping
// ErrNotFound that names ref: the caller changes nothing and buffers
// nothing.
func (a Reply) CheckRegistration(ref Ref, c *Correlation) error {
	switch {
	case a.Nonce == nil:
		return nil
	case c == nil:
		return fmt.Errorf("%w: correlation %s (the reply is bound to a registration, so it is not buffered)", ErrNotFound, ref.Norm())
	case c.Nonce != *a.Nonce:
		return fmt.Errorf("%w: correlation %s is not the registration the reply is bound to (registered again)", ErrNotFound, ref.Norm())
	}
	return nil
}

func (c *Correlation) touch(now time.Time) {
	c.Version++
	c.UpdatedAt = now
}

func (c *Correlation) addEvent(now time.Time, t EventType, detail string, lim Limits) {
	c.Events = append(c.Events, TimelineEvent{At: now, Type: t, Detail: detail})
	c.EventSeq++
	// The timeline keeps the last MaxEvents: those of index EventSeq-MaxEvents
	// on. Backends drop the older ones they store apart.
	if d := c.EventSeq - lim.MaxEvents; d > c.EventsDropped {
		c.EventsDropped = d
	}
	if over := len(c.Events) - lim.MaxEvents; over > 0 {
		c.Events = append(c.Events[:0:0], c.Events[over:]...)
	}
}

func describeReply(r Reply) string {
	s := fmt.Sprintf("id=%q from=%q seq=%d", r.ID, r.From, r.Seq)
	if r.Final {
		s += " final"
	}
	if r.Error != "" {
		s += " error=" + strconv.Quote(truncate(r.Error, 64))
	}
	return s
}

// ReplyKeys returns the keys under which a reply accepted by a correlation
// of pattern p is known, so that a resent reply is recognised by point
// lookups: its DedupeKey, or the digest of its content when it has none; a
// stream reply is known by its Seq too. Backends keep these keys of every
// accepted reply next to the replies they store apart.
func ReplyKeys(p Pattern, r Reply) []string {
	k := DedupeKey(p, r)
	switch {
	case k == "":
		return []string{contentKey(r)}
	case p == PatternStream && r.ID != "":
		return []string{k, "seq:" + strconv.Itoa(r.Seq)}
	}
	return []string{k}
}

// CandidateKeys returns every key ReplyKeys may give for r under any
// pattern: what a backend that has not read the record yet looks up.
func CandidateKeys(r Reply) []string {
	out := []string{"seq:" + strconv.Itoa(r.Seq), contentKey(r)}
	if r.ID != "" {
		out = append(out, "id:"+r.ID)
	}
	if r.From != "" {
		out = append(out, "from:"+r.From)
	}
	return out
}

// contentKey names a reply's content (arrival time aside): how a keyless
// reply sent again is recognised.
func contentKey(r Reply) string {
	h := sha256.New()
	for _, f := range []string{r.ID, r.From, strconv.Itoa(r.Seq), strconv.FormatBool(r.Final), r.Error} {
		h.Write([]byte(strconv.Itoa(len(f))))
		h.Write([]byte{':'})
		h.Write([]byte(f))
	}
	h.Write(r.Body)
	return "sum:" + hex.EncodeToString(h.Sum(nil)[:16])
}

// ApplyReply records a reply. The reply must have passed ValidateReply; its
// ReceivedAt is kept when set (an early reply) and set to now otherwise. Its
// Nonce is not looked at (the caller checks CheckRegistration first) and is
// dropped from what is kept. Every accepted reply is in c.Replies, so this
// is the form for a correlation held whole in memory; backends that keep
// replies apart use ApplyReplyApart.
//
// A duplicate only bumps DuplicateCount: it is no new fact, so it changes
// neither Version nor the timeline, and a retried Deliver leaves the same state.
func (c *Correlation) ApplyReply(r Reply, now time.Time, lim Limits) (DeliverStatus, error) {
	return c.ApplyReplyApart(r, now, lim, nil)
}

// ApplyReplyApart is ApplyReply for a record whose accepted replies are
// kept apart: held reports whether a reply stored apart is known under a key
// (see ReplyKeys); c.Replies holds only replies not stored apart yet. An
// accepted reply joins c.Replies (a stream's in Seq order) and is counted in
// c.Held; the caller then stores every reply in c.Replies apart, under the
// indexes c.Held.Count-len(c.Replies) … c.Held.Count-1, with its ReplyKeys.
func (c *Correlation) ApplyReplyApart(r Reply, now time.Time, lim Limits, held func(key string) bool) (DeliverStatus, error) {
	r.Nonce = nil // the binding is checked by Deliver, never stored
	if r.ReceivedAt.IsZero() {
		r.ReceivedAt = now
	}
	key := DedupeKey(c.Pattern, r)
	if c.Pattern == PatternGather && key == "" {
		return "", invalid("reply.from", "a gather reply needs id or from, so that a resent reply is not counted twice")
	}
	if c.seen(r, key, held) {
		c.DuplicateCount++
		return DeliverDuplicate, nil
	}
	c.SettleDue(now, lim)
	if c.State.Terminal() {
		lk := lateKeys(c.Pattern, r)
		for _, e := range c.LateRing {
			if slices.ContainsFunc(e.Keys, func(k string) bool { return slices.Contains(lk, k) }) {
				c.DuplicateCount++
				return DeliverDuplicate, nil
			}
		}
		c.LateCount++
		detail := describeReply(r)
		if len(r.Body) <= lim.MaxLateBytes {
			c.keepLate(r, lim)
		} else {
			detail += fmt.Sprintf(" (counted, not kept: its body of %d bytes is over max_late_bytes %d)", len(r.Body), lim.MaxLateBytes)
		}
		c.addEvent(now, EventReplyLate, detail, lim)
		c.touch(now)
		return DeliverLate, nil
	}
	if c.Held.Count >= lim.MaxReplies {
		return "", tooLarge("replies", "correlation %s already has %d replies, the limit is %d", c.ID, c.Held.Count, lim.MaxReplies)
	}
	if held := c.Held.Bytes; held+len(r.Body) > lim.MaxRecordBytes {
		return "", tooLarge("reply.body", "correlation %s holds %d bytes of replies; %d more would pass the limit of %d (max_record_bytes)",
			c.ID, held, len(r.Body), lim.MaxRecordBytes)
	}
	if c.Pattern == PatternStream {
		if err := c.checkStreamReply(r); err != nil {
			return "", err
		}
	}
	if c.Pattern == PatternStream {
		i, _ := slices.BinarySearchFunc(c.Replies, r.Seq, func(a Reply, seq int) int { return a.Seq - seq })
		c.Replies = slices.Insert(c.Replies, i, r)
	} else {
		c.Replies = append(c.Replies, r)
	}
	c.Held.add(c.Pattern, r)
	c.addEvent(now, EventReplyAccepted, describeReply(r), lim)
	c.touch(now)
	if c.complete() {
		c.decide(StateCompleted, now, "", false, false, lim)
		return DeliverCompleted, nil
	}
	return DeliverAccepted, nil
}

// seen reports whether r repeats an accepted reply: one in c.Replies, or
// one stored apart that held knows under one of r's ReplyKeys.
func (c *Correlation) seen(r Reply, key string, held func(string) bool) bool {
	if held != nil {
		for _, k := range ReplyKeys(c.Pattern, r) {
			if held(k) {
				return true
			}
		}
	}
	for _, a := range c.Replies {
		// A keyless reply (single) identical to one accepted is its retry.
		if (key != "" && DedupeKey(c.Pattern, a) == key) || (key == "" && a.SameContent(r)) ||
			(c.Pattern == PatternStream && a.Seq == r.Seq) {
			return true
		}
	}
	return false
}

// AttachEvents gives c the timeline events stored apart from its record,
// oldest first: they come before any c holds already (a record written
// before schema 3).
func (c *Correlation) AttachEvents(apart []TimelineEvent) {
	c.Events = append(apart, c.Events...)
}

// ReplyBase is the index, among the replies stored apart, of c.Replies[0]
// inside a backend's write step.
func (c *Correlation) ReplyBase() int { return c.Held.Count - len(c.Replies) }

// EventBase is the index of c.Events[0] inside a backend's write step; the
// timeline keeps the events of index KeptFrom(lim) on.
func (c *Correlation) EventBase() int { return c.EventSeq - len(c.Events) }

// InlineEvents is how many events a timeline may have had (EventSeq) and
// still be kept inside the record: most correlations live their whole life
// in fewer (registered, a reply, the outcome, a dispatch claim and ack), so
// they need no second key. Past it, backends keep the timeline apart.
const InlineEvents = 8

// EventsInline reports whether c's timeline is kept inside its record.
func (c *Correlation) EventsInline() bool { return c.EventSeq <= InlineEvents }

// Apart reports what of c a backend keeps apart from its record, as c was
// read: accepted replies, a timeline past InlineEvents, a late ring. A
// reader skips what is not there (a pending correlation has none of it).
func (c *Correlation) Apart() (replies, events, late bool) {
	return c.Held.Count > len(c.Replies), !c.EventsInline(), c.LateSeq > len(c.Late)
}

// KeptFrom is the index of the oldest timeline event kept under lim.
func (c *Correlation) KeptFrom(lim Limits) int { return max(0, c.EventSeq-lim.MaxEvents) }

// AttachReplies gives c the replies stored apart from its record: they
// follow any c holds already (a record written before schema 3), a
// stream's ordered by Seq.
func (c *Correlation) AttachReplies(apart []Reply) {
	c.Replies = append(c.Replies, apart...)
	if c.Pattern == PatternStream {
		slices.SortStableFunc(c.Replies, func(a, b Reply) int { return a.Seq - b.Seq })
	}
}

// keepLate adds r to the ring of late replies, dropping the oldest until
// the ring holds at most MaxLate replies and MaxLateBytes of bodies: a
// decided correlation's record stops growing, whatever is sent to it.
// c.Late gets r (backends store it apart, under index LateSeq-1, and drop
// the ones before LateFrom); c.LateRing describes the ring.
func (c *Correlation) keepLate(r Reply, lim Limits) {
	c.Late = append(c.Late, r)
	c.LateRing = append(c.LateRing, LateEntry{Bytes: len(r.Body), Keys: lateKeys(c.Pattern, r)})
	c.LateSeq++
	n := 0
	for _, e := range c.LateRing {
		n += e.Bytes
	}
	drop := 0
	for ; len(c.LateRing)-drop > lim.MaxLate || n > lim.MaxLateBytes; drop++ {
		n -= c.LateRing[drop].Bytes
	}
	if drop > 0 {
		c.LateRing = append(c.LateRing[:0:0], c.LateRing[drop:]...)
	}
	if over := len(c.Late) - len(c.LateRing); over > 0 {
		c.Late = append(c.Late[:0:0], c.Late[over:]...)
	}
}

// lateKeys are the keys a late reply kept in the ring is recognised by when
// sent again: its dedupe key (digested: a ring entry stays small) and the
// digest of its content.
func lateKeys(p Pattern, r Reply) []string {
	out := []string{contentKey(r)}
	if k := DedupeKey(p, r); k != "" {
		sum := sha256.Sum256([]byte(k))
		out = append(out, "key:"+hex.EncodeToString(sum[:12]))
	}
	return out
}

// LateBase is the index of c.Late[0] inside a backend's write step.
func (c *Correlation) LateBase() int { return c.LateSeq - len(c.Late) }

// LateFrom is the index of the oldest late reply kept in the ring.
func (c *Correlation) LateFrom() int { return c.LateSeq - len(c.LateRing) }

// FinalSeq returns the Seq of the stream reply marked Final, if one came.
func (c *Correlation) FinalSeq() (int, bool) { return c.Held.FinalSeq, c.Held.Final }

func (c *Correlation) checkStreamReply(r Reply) error {
	final, ok := c.FinalSeq()
	switch {
	case ok && r.Final:
		return invalid("reply.final", "stream %s already ended at seq %d, got another final at seq %d", c.ID, final, r.Seq)
	case ok && r.Seq > final:
		return invalid("reply.seq", "stream %s ended at seq %d, got seq %d", c.ID, final, r.Seq)
	case r.Final && c.Held.Count > 0 && c.Held.MaxSeq > r.Seq:
		return invalid("reply.final", "final seq %d is below seq %d already received", r.Seq, c.Held.MaxSeq)
	}
	return nil
}

func (c *Correlation) complete() bool {
	switch c.Pattern {
	case PatternGather:
		return c.Held.Count >= c.Expect
	case PatternStream:
		final, ok := c.FinalSeq()
		return ok && c.Held.Count == final+1
	default:
		return c.Held.Count > 0
	}
}

// decide records the outcome and, when there is a callback handler, makes the
// outcome due for dispatch.
func (c *Correlation) decide(state State, now time.Time, reason string, partial, noReply bool, lim Limits) {
	c.State = state
	c.Outcome = &Outcome{State: state, At: now, Reason: reason, Partial: partial, NoReply: noReply}
	detail := string(state)
	switch {
	case partial:
		detail += " (partial)"
	case noReply:
		detail += " (no reply)"
	}
	if reason != "" {
		detail += ": " + reason
	}
	c.addEvent(now, EventOutcome, detail, lim)
	if c.Callback.Handler != "" {
		c.Dispatch = Dispatch{State: DispatchPending, NextAt: now, AttemptLimit: lim.DispatchMaxAttempts}
	}
	c.touch(now)
}

// Due reports whether c is pending at or after its deadline: whatever
// touches it now must find the deadline outcome decided.
func (c *Correlation) Due(now time.Time) bool {
	return c.State == StatePending && !now.Before(c.Deadline)
}

// SettleDue gives a due correlation its deadline outcome (reason
// ReasonDeadline, exactly as ExpireDue would) and reports whether it did.
// Every step that acts on a pending correlation calls it first, so the
// deadline is exact whether or not a reaper ran. A step that then refuses
// (Extend, Cancel: ErrNotPending) has still changed the record: backends
// store a record whose Version rose even when the step returned an error.
func (c *Correlation) SettleDue(now time.Time, lim Limits) bool {
	if !c.Due(now) {
		return false
	}
	c.DecideAtDeadline(now, ReasonDeadline, lim)
	return true
}

// ReasonDeadline is the outcome reason of a correlation decided by its deadline.
const ReasonDeadline = "deadline"

// ReasonExpired is the default outcome reason of an operator's Expire.
const ReasonExpired = "expired by operator"

// DecideAtDeadline gives a pending correlation its deadline outcome:
// completed with NoReply when Optional and no reply came; completed and
// Partial when a gather has at least Quorum (> 0) replies; timed_out
// otherwise, keeping the replies that came.
func (c *Correlation) DecideAtDeadline(now time.Time, reason string, lim Limits) {
	n := c.Held.Count
	switch {
	case c.Optional && n == 0:
		c.decide(StateCompleted, now, reason, false, true, lim)
	case c.Pattern == PatternGather && c.Quorum > 0 && n >= c.Quorum:
		c.decide(StateCompleted, now, reason, true, false, lim)
	default:
		c.decide(StateTimedOut, now, reason, false, false, lim)
	}
}

// ApplyExpire is the operator's force-timeout: the deadline outcome, now. A repeat
// with the same reason is a duplicate; otherwise a decided correlation is
// ErrNotPending.
func (c *Correlation) ApplyExpire(now time.Time, reason string, lim Limits) (duplicate bool, err error) {
	if reason == "" {
		reason = ReasonExpired
	}
	if c.State.Terminal() {
		if c.Outcome.Reason == reason && c.State != StateCancelled {
			return true, nil
		}
		return false, c.notPending()
	}
	c.DecideAtDeadline(now, reason, lim)
	return false, nil
}

// ApplyCancel decides the correlation as cancelled. A repeat with the same reason
// is a duplicate; otherwise a decided correlation is ErrNotPending.
func (c *Correlation) ApplyCancel(now time.Time, reason string, lim Limits) (duplicate bool, err error) {
	if c.SettleDue(now, lim) {
		return false, c.notPending()
	}
	if c.State.Terminal() {
		if c.State == StateCancelled && c.Outcome.Reason == reason {
			return true, nil
		}
		return false, c.notPending()
	}
	c.decide(StateCancelled, now, reason, false, false, lim)
	return false, nil
}

// ApplyExtend moves the deadline of a pending correlation, never past
// CreatedAt + MaxTimeout (a later deadline is capped there). Extending to the
// current deadline is a duplicate. A zero deadline moves nothing: it only
// settles a due correlation (ErrNotPending then) and is a duplicate
// otherwise — how a waiter lets the store decide with the store's clock.
func (c *Correlation) ApplyExtend(now, deadline time.Time, lim Limits) (duplicate bool, err error) {
	if c.SettleDue(now, lim) || c.State.Terminal() {
		return false, c.notPending()
	}
	if deadline.IsZero() {
		return true, nil // settle only: pending by the store's clock, nothing moves
	}
	if !deadline.After(now) {
		return false, invalid("deadline", "%s is not in the future (now %s); use Expire to end it now",
			deadline.UTC().Format(time.RFC3339Nano), now.UTC().Format(time.RFC3339Nano))
	}
	limit := c.CreatedAt.Add(lim.MaxTimeout)
	detail := "to " + deadline.UTC().Format(time.RFC3339Nano)
	if deadline.After(limit) {
		deadline = limit
		detail = fmt.Sprintf("to %s (capped: created + %s)", limit.UTC().Format(time.RFC3339Nano), lim.MaxTimeout)
	}
	if deadline.Equal(c.Deadline) {
		return true, nil
	}
	c.Deadline = deadline
	c.addEvent(now, EventExtended, detail, lim)
	c.touch(now)
	return false, nil
}

func (c *Correlation) notPending() error {
	if c.Outcome != nil && c.Outcome.Reason == ReasonDeadline {
		return fmt.Errorf("%w: correlation %s is %s (deadline %s passed)", ErrNotPending, c.Ref(), c.State,
			c.Deadline.UTC().Format(time.RFC3339Nano))
	}
	return fmt.Errorf("%w: correlation %s is %s", ErrNotPending, c.Ref(), c.State)
}

// DispatchDue reports whether the outcome may be claimed now.
func (c *Correlation) DispatchDue(now time.Time) bool {
	return c.Dispatch.State == DispatchPending && !c.Dispatch.NextAt.After(now)
}

// ApplyClaim leases a due dispatch to instance until now+lease. It returns
// false when the dispatch is not due, or when its attempts are used up (a lease
// that expired on the last attempt): then the dispatch is now dead.
func (c *Correlation) ApplyClaim(instance string, now time.Time, lease time.Duration, lim Limits) bool {
	if !c.DispatchDue(now) {
		return false
	}
	d := &c.Dispatch
	if d.Attempts >= d.AttemptLimit {
		d.State = DispatchDead
		d.NextAt, d.LeaseOwner = time.Time{}, ""
		if d.Settled < d.Attempts {
			d.LastError = fmt.Sprintf("lease of attempt %d expired without ack", d.Attempts)
		}
		c.addEvent(now, EventDispatchDead, fmt.Sprintf("after %d attempts: %s", d.Attempts, d.LastError), lim)
		c.touch(now)
		return false
	}
	d.Attempts++
	d.LeaseOwner = instance
	d.ClaimedAt = now
	d.NextAt = now.Add(lease)
	c.addEvent(now, EventDispatchClaimed, fmt.Sprintf("attempt %d by %s, lease %s", d.Attempts, instance, lease), lim)
	c.touch(now)
	return true
}

// settle checks a claim for Ack or Nack: the current, unsettled lease, or a
// repeat of the same settlement (duplicate).
func (c *Correlation) settle(cl Claim, acked bool) (duplicate bool, err error) {
	d := c.Dispatch
	current := cl.Instance == d.LeaseOwner && cl.Attempt == d.Attempts && cl.Attempt > 0
	if current && d.Settled == cl.Attempt {
		if acked == (d.State == DispatchDone) {
			return true, nil
		}
		return false, fmt.Errorf("%w: attempt %d of %s was already settled the other way", ErrConflict, cl.Attempt, c.ID)
	}
	if d.State != DispatchPending {
		return false, fmt.Errorf("%w: dispatch of %s is %s", ErrNotPending, c.ID, d.State)
	}
	if !current {
		return false, fmt.Errorf("%w: claim %s#%d on %s is not the current lease (%s#%d)",
			ErrConflict, cl.Instance, cl.Attempt, c.ID, d.LeaseOwner, d.Attempts)
	}
	return false, nil
}

// ApplyAck marks the outcome delivered.
func (c *Correlation) ApplyAck(cl Claim, now time.Time, lim Limits) (duplicate bool, err error) {
	if dup, err := c.settle(cl, true); dup || err != nil {
		return dup, err
	}
	d := &c.Dispatch
	d.State, d.Settled, d.DoneAt, d.NextAt = DispatchDone, cl.Attempt, now, time.Time{}
	c.addEvent(now, EventDispatchAcked, fmt.Sprintf("attempt %d by %s", cl.Attempt, cl.Instance), lim)
	c.touch(now)
	return false, nil
}

// ApplyNack records a failed attempt. The dispatch is due again at
// retryAt, or dead when retryAt is zero (the handler gave up) or the attempts
// are used up.
func (c *Correlation) ApplyNack(cl Claim, errText string, retryAt, now time.Time, lim Limits) (duplicate bool, err error) {
	if dup, err := c.settle(cl, false); dup || err != nil {
		return dup, err
	}
	d := &c.Dispatch
	d.Settled = cl.Attempt
	d.LastError = truncate(errText, MaxReplyErrorLen)
	if retryAt.IsZero() || d.Attempts >= d.AttemptLimit {
		d.State, d.NextAt = DispatchDead, time.Time{}
		c.addEvent(now, EventDispatchDead, fmt.Sprintf("attempt %d of %d: %s", d.Attempts, d.AttemptLimit, d.LastError), lim)
	} else {
		d.NextAt = retryAt
		if retryAt.Before(now) {
			d.NextAt = now
		}
		c.addEvent(now, EventDispatchFailed, fmt.Sprintf("attempt %d: %s; retry at %s", d.Attempts, d.LastError, d.NextAt.UTC().Format(time.RFC3339Nano)), lim)
	}
	c.touch(now)
	return false, nil
}

// ApplyRedispatch makes a dead or done dispatch due again now, with a fresh
// budget of attempts. A dispatch already pending is a duplicate; a
// correlation with no dispatch (no outcome, or no handler) is ErrNotPending.
func (c *Correlation) ApplyRedispatch(now time.Time, lim Limits) (duplicate bool, err error) {
	d := &c.Dispatch
	switch d.State {
	case DispatchPending:
		return true, nil
	case DispatchDead, DispatchDone:
	default:
		return false, fmt.Errorf("%w: correlation %s has nothing to dispatch (state %s, handler %q)", ErrNotPending, c.ID, c.State, c.Callback.Handler)
	}
	prev := d.State
	d.State, d.NextAt, d.LeaseOwner = DispatchPending, now, ""
	d.AttemptLimit = d.Attempts + lim.DispatchMaxAttempts
	d.DoneAt = time.Time{}
	c.addEvent(now, EventRedispatched, fmt.Sprintf("was %s after %d attempts", prev, d.Attempts), lim)
	c.touch(now)
	return false, nil
}

// Registration checks a second Register of an existing record: the same
// content (fingerprint) is fine, other content is ErrConflict.
func (c *Correlation) Registration(again *Correlation) error {
	if c.Fingerprint == again.Fingerprint {
		return nil
	}
	return fmt.Errorf("%w: correlation %s is already registered with other content", ErrConflict, c.ID)
}

// ApplyEarly applies replies that arrived before the registration, oldest
// first, skipping those older than the window. It returns how many it applied.
func (c *Correlation) ApplyEarly(early []Reply, now time.Time, lim Limits) int {
	slices.SortStableFunc(early, func(a, b Reply) int { return a.ReceivedAt.Compare(b.ReceivedAt) })
	n := 0
	for _, r := range early {
		if now.Sub(r.ReceivedAt) > lim.EarlyReplyWindow || ValidateReply(r, lim) != nil {
			continue
		}
		st, err := c.ApplyReply(r, now, lim)
		if err != nil || st == DeliverDuplicate {
			continue
		}
		c.addEvent(now, EventEarlyApplied, fmt.Sprintf("%s, received %s", st, r.ReceivedAt.UTC().Format(time.RFC3339Nano)), lim)
		n++
	}
	return n
}
