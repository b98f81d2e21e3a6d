package store

import "time"

// Pattern says how replies decide a correlation's outcome.
type Pattern string

const (
	// PatternSingle: the first reply completes the correlation.
	PatternSingle Pattern = "single"
	// PatternGather: Expect replies complete it; at the deadline, at least
	// Quorum replies (when Quorum > 0) give a partial completion.
	PatternGather Pattern = "gather"
	// PatternStream: replies carry Seq 0..N and the one marked Final has Seq N;
	// the correlation completes when all of 0..N have arrived.
	PatternStream Pattern = "stream"
)

// State is a correlation's lifecycle state: pending, then exactly one outcome.
type State string

const (
	StatePending   State = "pending"
	StateCompleted State = "completed"
	StateTimedOut  State = "timed_out"
	StateCancelled State = "cancelled"
)

// States lists every state in lifecycle order.
var States = []State{StatePending, StateCompleted, StateTimedOut, StateCancelled}

// Terminal reports whether s is an outcome.
func (s State) Terminal() bool {
	return s == StateCompleted || s == StateTimedOut || s == StateCancelled
}

func (s State) valid() bool { return s == StatePending || s.Terminal() }

// DispatchState is where the delivery of the outcome to the callback handler stands.
type DispatchState string

const (
	// DispatchNone: no callback handler, or no outcome yet.
	DispatchNone DispatchState = "none"
	// DispatchPending: an outcome waits to be claimed and handed to its handler
	// (it may be leased to an instance right now).
	DispatchPending DispatchState = "pending"
	// DispatchDone: a handler acknowledged the outcome.
	DispatchDone DispatchState = "done"
	// DispatchDead: MaxAttempts were used up, or the handler gave up. An
	// operator can redispatch it.
	DispatchDead DispatchState = "dead"
)

// DispatchStates lists every dispatch state.
var DispatchStates = []DispatchState{DispatchNone, DispatchPending, DispatchDone, DispatchDead}

func (s DispatchState) valid() bool {
	return s == DispatchNone || s == DispatchPending || s == DispatchDone || s == DispatchDead
}

// Correlation is one pending request and, once decided, its outcome.
//
// The caller fills the request fields (ID to Labels, plus Timeout or
// Deadline, and IdempotencyKey); the store owns the rest.
type Correlation struct {
	ID        string  `json:"id"`
	Namespace string  `json:"namespace"`
	Pattern   Pattern `json:"pattern"`
	// Expect is how many replies complete a gather (required for gather).
	Expect int `json:"expect,omitempty"`
	// Quorum is the minimum for a partial success of a gather at the deadline; 0: none.
	Quorum int `json:"quorum,omitempty"`
	// Optional: at the deadline with no reply the outcome is completed with NoReply.
	Optional bool `json:"optional,omitempty"`

	// Timeout is an input only: Register sets Deadline = now + Timeout when
	// Deadline is zero (DefaultTimeout when both are zero).
	Timeout  time.Duration `json:"timeout,omitempty"`
	Deadline time.Time     `json:"deadline"`

	Destination    string            `json:"destination,omitempty"`
	ReplyTo        string            `json:"reply_to,omitempty"`
	Owner          string            `json:"owner,omitempty"`
	Callback       Callback          `json:"callback,omitzero"`
	Labels         map[string]string `json:"labels,omitempty"`
	IdempotencyKey string            `json:"idempotency_key,omitempty"`

	State   State    `json:"state"`
	Outcome *Outcome `json:"outcome,omitempty"`
	// Held counts and sizes the accepted replies, which backends keep apart
	// from the record so that a Deliver costs what its reply costs.
	Held ReplyStats `json:"held,omitzero"`
	// Replies are the accepted replies, in arrival order (a stream's by Seq).
	// Get, ClaimDispatch, export and the outcome view carry all of them; the
	// correlation in a DeliverResult, RegisterResult, Result, Page or the
	// answer of ExpireDue carries none (Held counts them). Inside a backend's
	// write step they are the replies not yet stored apart: the one a step
	// accepted, or those of a record written before schema 3.
	Replies []Reply `json:"replies,omitempty"`
	// Late is the ring of late replies kept (the last MaxLate, at most
	// MaxLateBytes of bodies) in what Get returns; backends keep it apart
	// from the record, like Replies, and other answers carry only the late
	// reply of their own step. LateRing describes it inside the record.
	Late     []Reply     `json:"late,omitempty"`
	LateRing []LateEntry `json:"late_ring,omitempty"`
	// LateSeq counts the late replies ever kept: the next one's index.
	LateSeq        int      `json:"late_seq,omitempty"`
	LateCount      int      `json:"late_count,omitempty"`
	DuplicateCount int      `json:"duplicate_count,omitempty"`
	Dispatch       Dispatch `json:"dispatch"`
	// Events is the timeline: its last Limits.MaxEvents entries in what Get
	// returns. Once it has had more than InlineEvents, backends keep it apart
	// from the record, like Replies. The answers of writes carry the events
	// that were not apart before their step: the whole timeline while it is
	// kept inside the record (and in the step that moves it out), then the
	// step's own. Inside a backend's write step they are the events not
	// stored apart.
	Events        []TimelineEvent `json:"events,omitempty"`
	EventsDropped int             `json:"events_dropped,omitempty"`
	// EventSeq counts the events ever added: the next one's index.
	EventSeq int `json:"event_seq,omitempty"`

	// Fingerprint identifies the registration's content; a second Register
	// of the same ID with another fingerprint is ErrConflict.
	Fingerprint string `json:"fingerprint"`
	// Nonce is 128 random bits drawn at registration: it tells this
	// registration of the ref from any later one (reply tokens and webhook
	// ids are bound to it). Empty on records written before schema 2.
	Nonce string `json:"nonce,omitempty"`

	Version   int64     `json:"version"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// LateEntry describes a late reply kept in the ring: enough to bound the
// ring and to recognise the reply sent again without reading it.
type LateEntry struct {
	Bytes int      `json:"b"`
	Keys  []string `json:"k"` // see lateKeys
}

// ReplyStats summarises a correlation's accepted replies: what the state
// machine needs to decide without reading them.
type ReplyStats struct {
	// Count is how many replies were accepted.
	Count int `json:"count"`
	// Bytes is the size of their bodies, which Limits.MaxRecordBytes bounds.
	Bytes int `json:"bytes,omitempty"`
	// MaxSeq is the highest Seq among a stream's replies (when Count > 0).
	MaxSeq int `json:"max_seq,omitempty"`
	// Final reports that a stream's reply marked Final came; FinalSeq is its Seq.
	Final    bool `json:"final,omitempty"`
	FinalSeq int  `json:"final_seq,omitempty"`
}

// add counts one more accepted reply.
func (s *ReplyStats) add(p Pattern, r Reply) {
	if p == PatternStream && (s.Count == 0 || r.Seq > s.MaxSeq) {
		s.MaxSeq = r.Seq
	}
	if p == PatternStream && r.Final {
		s.Final, s.FinalSeq = true, r.Seq
	}
	s.Count++
	s.Bytes += len(r.Body)
}

// TraceparentLabel is the label that keeps the W3C traceparent of the
// context a correlation was registered in (the client sets it; a callback
// handler continues that trace). It is not part of the registration's
// fingerprint: a retry of the same registration runs in another span and
// lands on the record the first one made, whose traceparent stays.
const TraceparentLabel = "traceparent"

// Callback names the handler that any replica runs with the outcome, and the
// data it needs to resume the workflow.
type Callback struct {
	Handler string `json:"handler,omitempty"`
	Data    []byte `json:"data,omitempty"`
}

// Outcome is how a correlation ended.
type Outcome struct {
	State  State     `json:"state"`
	At     time.Time `json:"at"`
	Reason string    `json:"reason,omitempty"`
	// Partial: a gather completed at its deadline with fewer than Expect but at
	// least Quorum replies.
	Partial bool `json:"partial,omitempty"`
	// NoReply: an optional correlation reached its deadline with no reply.
	NoReply bool `json:"no_reply,omitempty"`
}

// Reply is a response matched to a correlation.
type Reply struct {
	// ID is the dedupe key when set.
	ID   string `json:"id,omitempty"`
	From string `json:"from,omitempty"`
	Seq  int    `json:"seq,omitempty"`
	// Final marks the last reply of a stream.
	Final bool   `json:"final,omitempty"`
	Body  []byte `json:"body,omitempty"`
	// Error is a responder-side error. The reply still counts; the error is
	// carried to the handler.
	Error      string    `json:"error,omitempty"`
	ReceivedAt time.Time `json:"received_at"`

	// Nonce, when not nil, binds the reply to one registration: Deliver
	// applies it only if the stored correlation's Nonce equals *Nonce (""
	// for a record registered before nonces, schema 1). A missing ref or
	// another nonce answers ErrNotFound (wrapped, naming the ref), and the
	// reply is never buffered as an early reply. It is never stored: a
	// reply kept in a record or in the early buffer has Nonce nil.
	Nonce *string `json:"-"`
}

// Dispatch tracks the at-least-once delivery of the outcome to the callback handler.
type Dispatch struct {
	State DispatchState `json:"state"`
	// Attempts counts claims so far.
	Attempts int `json:"attempts,omitempty"`
	// NextAt is when the outcome may next be claimed: the retry time after a
	// nack, or the end of the current lease.
	NextAt time.Time `json:"next_at,omitzero"`
	// LeaseOwner is the instance holding the current lease.
	LeaseOwner string    `json:"lease_owner,omitempty"`
	ClaimedAt  time.Time `json:"claimed_at,omitzero"`
	// AttemptLimit is the attempt number after which the dispatch is dead;
	// a redispatch raises it by DispatchMaxAttempts.
	AttemptLimit int `json:"attempt_limit,omitempty"`
	// Settled is the attempt number last acked or nacked, so a repeated
	// ack or nack of that attempt is recognised as a duplicate.
	Settled   int       `json:"settled,omitempty"`
	LastError string    `json:"last_error,omitempty"`
	DoneAt    time.Time `json:"done_at,omitzero"`
}

// Claim identifies one lease on a correlation's dispatch: Ack and Nack take it
// back so that a lease lost to another instance is detected.
type Claim struct {
	Instance string `json:"instance"`
	Attempt  int    `json:"attempt"`
}

// Claim returns the claim of the current lease.
func (d Dispatch) Claim() Claim { return Claim{Instance: d.LeaseOwner, Attempt: d.Attempts} }

// EventType names an entry of a correlation's timeline.
type EventType string

const (
	EventRegistered      EventType = "registered"
	EventReplyAccepted   EventType = "reply_accepted"
	EventReplyLate       EventType = "reply_late"
	EventEarlyApplied    EventType = "early_reply_applied"
	EventExtended        EventType = "extended"
	EventOutcome         EventType = "outcome"
	EventDispatchClaimed EventType = "dispatch_claimed"
	EventDispatchAcked   EventType = "dispatch_acked"
	EventDispatchFailed  EventType = "dispatch_failed"
	EventDispatchDead    EventType = "dispatch_dead"
	EventRedispatched    EventType = "redispatched"
)

// TimelineEvent is one entry of a correlation's timeline, kept for operators.
type TimelineEvent struct {
	At     time.Time `json:"at"`
	Type   EventType `json:"type"`
	Detail string    `json:"detail,omitempty"`
}

// StoredBytes is what a correlation counts toward its namespace's stored
// bytes (NamespaceStats.Bytes, the limit --max-bytes-per-namespace): the
// bodies of its accepted replies (Held.Bytes) and of the late replies kept,
// plus its callback data — the payloads callers choose the size of. The
// fixed-size fields, labels, timeline and encoding overhead are not counted:
// the bounds of the data model cap them per record. Every backend keeps the
// per-namespace sum as a counter derived from the record, like the state
// counts.
func (c *Correlation) StoredBytes() int64 {
	n := int64(c.Held.Bytes + len(c.Callback.Data))
	for _, e := range c.LateRing {
		n += int64(e.Bytes)
	}
	return n
}

// Clone returns a deep copy of c.
func (c *Correlation) Clone() *Correlation {
	if c == nil {
		return nil
	}
	n := *c
	n.Callback.Data = cloneBytes(c.Callback.Data)
	if c.Labels != nil {
		n.Labels = make(map[string]string, len(c.Labels))
		for k, v := range c.Labels {
			n.Labels[k] = v
		}
	}
	if c.Outcome != nil {
		o := *c.Outcome
		n.Outcome = &o
	}
	n.Replies = cloneReplies(c.Replies)
	n.Late = cloneReplies(c.Late)
	if c.LateRing != nil {
		n.LateRing = make([]LateEntry, len(c.LateRing))
		for i, e := range c.LateRing {
			n.LateRing[i] = LateEntry{Bytes: e.Bytes, Keys: append([]string(nil), e.Keys...)}
		}
	}
	if c.Events != nil {
		n.Events = append([]TimelineEvent(nil), c.Events...)
	}
	return &n
}

func cloneReplies(rs []Reply) []Reply {
	if rs == nil {
		return nil
	}
	out := make([]Reply, len(rs))
	for i, r := range rs {
		r.Body = cloneBytes(r.Body)
		out[i] = r
	}
	return out
}

func cloneBytes(b []byte) []byte {
	if b == nil {
		return nil
	}
	return append([]byte(nil), b...)
}
