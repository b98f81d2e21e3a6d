// Package wire holds the JSON documents of the HTTP API (DESIGN §7), defined
// once for both ends: the server (package httpapi) encodes its answers with
// these types and the operator client (package remote) decodes them with the
// same ones, so the two cannot drift apart. docs/openapi.yaml describes the
// same documents; a change of a json tag here is a change of the API.
//
// # Correlations
//
// [FromStore] turns a store.Correlation into a [Correlation], the full record
// that GET /v1/correlations/{id} answers, and [Correlation.ToStore] turns it
// back. [Summary] is the same document without reply bodies, late replies and
// timeline (reply_count and reply_bytes say what is stored): what the answers
// to writes and the items of a list carry, so that an answer costs what the
// request did, not what the record holds.
//
// Callback data and reply bodies are bytes. They travel as a JSON value
// (data, body) when they are valid JSON in valid UTF-8, else as standard
// base64 (data_base64, body_base64); requests may use either form, not both.
// Times are sent in UTC. What the API does not show (Timeout, Fingerprint,
// Nonce, the dispatch lease and its bookkeeping) does not come back;
// everything else does, except that JSON bytes come back as encoding/json
// re-encodes them (compacted, with <, > and & escaped).
//
// # Requests
//
// The request bodies are here too, so that the client sends what the server
// reads. Their omitempty tags only trim what a client sends: the server
// decodes an absent field and a zero one alike.
package wire

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/corrstore/corrstore/store"
)

// Correlation is a correlation as the API shows it.
type Correlation struct {
	ID             string            `json:"id"`
	Namespace      string            `json:"namespace"`
	Pattern        store.Pattern     `json:"pattern"`
	Expect         int               `json:"expect,omitempty"`
	Quorum         int               `json:"quorum,omitempty"`
	Optional       bool              `json:"optional,omitempty"`
	Deadline       time.Time         `json:"deadline"`
	Destination    string            `json:"destination,omitempty"`
	ReplyTo        string            `json:"reply_to,omitempty"`
	Owner          string            `json:"owner,omitempty"`
	Callback       *Callback         `json:"callback,omitempty"`
	Labels         map[string]string `json:"labels,omitempty"`
	IdempotencyKey string            `json:"idempotency_key,omitempty"`
	State          store.State       `json:"state"`
	CreatedAt      time.Time         `json:"created_at"`
	UpdatedAt      time.Time         `json:"updated_at"`
	Version        int64             `json:"version"`
	// ReplyCount and ReplyBytes count the accepted replies and the bytes of
	// their bodies (which max_record_bytes bounds), in full records and
	// summaries alike.
	ReplyCount int `json:"reply_count"`
	ReplyBytes int `json:"reply_bytes"`
	// Replies, Late and Events are in full records only ([] when empty);
	// a summary omits them.
	Replies        []Reply  `json:"replies,omitzero"`
	Late           []Reply  `json:"late,omitzero"`
	LateCount      int      `json:"late_count"`
	DuplicateCount int      `json:"duplicate_count"`
	Outcome        *Outcome `json:"outcome,omitempty"`
	Dispatch       Dispatch `json:"dispatch"`
	Events         []Event  `json:"events,omitzero"`
	EventsDropped  int      `json:"events_dropped,omitempty"`
	// ReplyToken is set by the server on register and extend; the store
	// has no such field.
	ReplyToken string `json:"reply_token,omitempty"`
}

// Callback is a correlation's callback.
type Callback struct {
	Handler string          `json:"handler"`
	Data    json.RawMessage `json:"data,omitempty"`
	// DataBase64 carries data that is not JSON (stored by a Go client).
	DataBase64 string `json:"data_base64,omitempty"`
}

// Reply is a reply as the API shows it.
type Reply struct {
	ID    string          `json:"id,omitempty"`
	From  string          `json:"from,omitempty"`
	Seq   int             `json:"seq"`
	Final bool            `json:"final,omitempty"`
	Body  json.RawMessage `json:"body,omitempty"`
	// BodyBase64 carries a body that is not JSON (stored by a Go client).
	BodyBase64 string    `json:"body_base64,omitempty"`
	Error      string    `json:"error,omitempty"`
	ReceivedAt time.Time `json:"received_at"`
}

// Outcome is how a correlation ended.
type Outcome struct {
	State   store.State `json:"state"`
	At      time.Time   `json:"at"`
	Reason  string      `json:"reason,omitempty"`
	Partial bool        `json:"partial"`
	NoReply bool        `json:"no_reply"`
}

// Dispatch is the part of a correlation's dispatch the API shows.
type Dispatch struct {
	State     store.DispatchState `json:"state"`
	Attempts  int                 `json:"attempts"`
	NextAt    *time.Time          `json:"next_at,omitempty"`
	LastError string              `json:"last_error,omitempty"`
}

// Event is one entry of a correlation's timeline.
type Event struct {
	At     time.Time       `json:"at"`
	Type   store.EventType `json:"type"`
	Detail string          `json:"detail,omitempty"`
}

// FromStore returns c as the API shows it in full, without a reply token.
func FromStore(c *store.Correlation) *Correlation {
	j := Summary(c)
	j.Replies, j.Late = fromReplies(c.Replies), fromReplies(c.Late)
	j.Events = make([]Event, 0, len(c.Events))
	for _, e := range c.Events {
		j.Events = append(j.Events, Event{At: e.At.UTC(), Type: e.Type, Detail: e.Detail})
	}
	return j
}

// Summary returns c as the answers to writes and list items show it: the
// full record without replies, late replies and timeline.
func Summary(c *store.Correlation) *Correlation {
	j := &Correlation{
		ID: c.ID, Namespace: c.Namespace, Pattern: c.Pattern, Expect: c.Expect, Quorum: c.Quorum,
		Optional: c.Optional, Deadline: c.Deadline.UTC(), Destination: c.Destination, ReplyTo: c.ReplyTo,
		Owner: c.Owner, Labels: c.Labels, IdempotencyKey: c.IdempotencyKey, State: c.State,
		CreatedAt: c.CreatedAt.UTC(), UpdatedAt: c.UpdatedAt.UTC(), Version: c.Version,
		ReplyCount: c.Held.Count, ReplyBytes: c.Held.Bytes, LateCount: c.LateCount,
		DuplicateCount: c.DuplicateCount, EventsDropped: c.EventsDropped,
		Dispatch: Dispatch{State: c.Dispatch.State, Attempts: c.Dispatch.Attempts, LastError: c.Dispatch.LastError},
	}
	if c.Callback.Handler != "" || len(c.Callback.Data) > 0 {
		j.Callback = &Callback{Handler: c.Callback.Handler}
		j.Callback.Data, j.Callback.DataBase64 = jsonOrBase64(c.Callback.Data)
	}
	if c.Outcome != nil {
		j.Outcome = &Outcome{State: c.Outcome.State, At: c.Outcome.At.UTC(), Reason: c.Outcome.Reason,
			Partial: c.Outcome.Partial, NoReply: c.Outcome.NoReply}
	}
	if !c.Dispatch.NextAt.IsZero() {
		t := c.Dispatch.NextAt.UTC()
		j.Dispatch.NextAt = &t
	}
	return j
}

// IsSummary reports whether j is a summary (it has no replies list).
func (j *Correlation) IsSummary() bool { return j.Replies == nil }

// ToStore returns the correlation j shows; it inverts [FromStore]. Empty
// lists come back nil. A summary has no replies to give back: its
// correlation holds none, and Held.Count and Held.Bytes count them.
func (j *Correlation) ToStore() *store.Correlation {
	c := &store.Correlation{
		ID: j.ID, Namespace: j.Namespace, Pattern: j.Pattern, Expect: j.Expect, Quorum: j.Quorum,
		Optional: j.Optional, Deadline: j.Deadline, Destination: j.Destination, ReplyTo: j.ReplyTo,
		Owner: j.Owner, Labels: j.Labels, IdempotencyKey: j.IdempotencyKey, State: j.State,
		Replies: toReplies(j.Replies), Late: toReplies(j.Late), LateCount: j.LateCount,
		DuplicateCount: j.DuplicateCount, EventsDropped: j.EventsDropped, Version: j.Version,
		CreatedAt: j.CreatedAt, UpdatedAt: j.UpdatedAt,
		Dispatch: store.Dispatch{State: j.Dispatch.State, Attempts: j.Dispatch.Attempts, LastError: j.Dispatch.LastError},
	}
	if j.Dispatch.NextAt != nil {
		c.Dispatch.NextAt = *j.Dispatch.NextAt
	}
	c.Held.Count, c.Held.Bytes = j.ReplyCount, j.ReplyBytes
	if j.Callback != nil {
		c.Callback = store.Callback{Handler: j.Callback.Handler, Data: bytesOf(j.Callback.Data, j.Callback.DataBase64)}
	}
	if j.Outcome != nil {
		c.Outcome = j.Outcome.ToStore()
	}
	for _, e := range j.Events {
		c.Events = append(c.Events, store.TimelineEvent{At: e.At, Type: e.Type, Detail: e.Detail})
	}
	return c
}

// ToStore returns the outcome o shows.
func (o *Outcome) ToStore() *store.Outcome {
	return &store.Outcome{State: o.State, At: o.At, Reason: o.Reason, Partial: o.Partial, NoReply: o.NoReply}
}

// ToStore returns the reply r shows.
func (r Reply) ToStore() store.Reply {
	return store.Reply{ID: r.ID, From: r.From, Seq: r.Seq, Final: r.Final, Body: bytesOf(r.Body, r.BodyBase64),
		Error: r.Error, ReceivedAt: r.ReceivedAt}
}

// fromReplies never returns nil: the API shows an empty list as [].
func fromReplies(rs []store.Reply) []Reply {
	out := make([]Reply, 0, len(rs))
	for _, r := range rs {
		j := Reply{ID: r.ID, From: r.From, Seq: r.Seq, Final: r.Final, Error: r.Error, ReceivedAt: r.ReceivedAt.UTC()}
		j.Body, j.BodyBase64 = jsonOrBase64(r.Body)
		out = append(out, j)
	}
	return out
}

func toReplies(rs []Reply) []store.Reply {
	var out []store.Reply
	for _, r := range rs {
		out = append(out, r.ToStore())
	}
	return out
}

// jsonOrBase64 returns b as raw JSON when those bytes come back unchanged
// through a JSON document: valid UTF-8 (which json.Valid alone does not
// check), valid JSON, already compact (an encoder compacts raw JSON) and not
// null (which reads as no bytes). Anything else goes as base64, so that
// bytes always survive the round trip. The server's encoder does not escape
// HTML, so '<' and '&' stay as they are.
func jsonOrBase64(b []byte) (json.RawMessage, string) {
	if len(b) == 0 {
		return nil, ""
	}
	if utf8.Valid(b) && json.Valid(b) && string(b) != "null" {
		var c bytes.Buffer
		if json.Compact(&c, b) == nil && bytes.Equal(c.Bytes(), b) {
			return json.RawMessage(b), ""
		}
	}
	return nil, base64.StdEncoding.EncodeToString(b)
}

// bytesOf inverts jsonOrBase64 for answers this package wrote; base64 that
// does not decode is no bytes. Requests go through [BytesOf], which refuses.
func bytesOf(raw json.RawMessage, b64 string) []byte {
	b, _ := BytesOf("", raw, b64)
	return b
}

// BytesOf reads bytes sent as a JSON value (raw) or as standard base64
// (b64), at most one of the two: field names the JSON field (body, data)
// in the *store.FieldError (ErrInvalid) it returns for both, or for base64
// that is not canonical. JSON null is no bytes.
func BytesOf(field string, raw json.RawMessage, b64 string) ([]byte, error) {
	hasRaw := len(raw) > 0 && string(raw) != "null"
	switch {
	case hasRaw && b64 != "":
		return nil, &store.FieldError{Field: field, Err: store.ErrInvalid,
			Reason: fmt.Sprintf("give %s or %s_base64, not both", field, field)}
	case hasRaw:
		// A JSON value's bytes are its compact form: what any encoder
		// sends back, whatever white space the request had.
		var c bytes.Buffer
		if err := json.Compact(&c, raw); err != nil {
			return nil, &store.FieldError{Field: field, Err: store.ErrInvalid, Reason: "is not valid JSON"}
		}
		return c.Bytes(), nil
	case b64 == "":
		return nil, nil
	}
	b, err := base64.StdEncoding.Strict().DecodeString(b64)
	if err != nil || base64.StdEncoding.EncodeToString(b) != b64 {
		return nil, &store.FieldError{Field: field + "_base64", Err: store.ErrInvalid,
			Reason: "is not standard base64 with padding (RFC 4648 §4)"}
	}
	return b, nil
}

// DeliverResponse answers a reply.
type DeliverResponse struct {
	Status store.DeliverStatus `json:"status"`
	// Correlation is a summary (no reply bodies); absent when buffered.
	Correlation *Correlation `json:"correlation,omitempty"`
	// Outcome repeats the correlation's outcome for a late reply.
	Outcome *Outcome `json:"outcome,omitempty"`
}

// DeliverFromStore returns the answer to a reply that had result res.
func DeliverFromStore(res store.DeliverResult) DeliverResponse {
	out := DeliverResponse{Status: res.Status}
	if res.Correlation != nil {
		out.Correlation = Summary(res.Correlation)
		if res.Status == store.DeliverLate {
			out.Outcome = out.Correlation.Outcome
		}
	}
	return out
}

// ToStore returns the result d shows.
func (d *DeliverResponse) ToStore() store.DeliverResult {
	res := store.DeliverResult{Status: d.Status}
	if d.Correlation != nil {
		res.Correlation = d.Correlation.ToStore()
	}
	return res
}

// ListResponse is a page of correlations, as summaries.
type ListResponse struct {
	Items      []*Correlation `json:"items"`
	NextCursor string         `json:"next_cursor,omitempty"`
}

// ListFromStore returns page as the API shows it.
func ListFromStore(page store.Page) ListResponse {
	out := ListResponse{Items: make([]*Correlation, 0, len(page.Items)), NextCursor: page.NextCursor}
	for _, c := range page.Items {
		out.Items = append(out.Items, Summary(c))
	}
	return out
}

// ToStore returns the page l shows.
func (l *ListResponse) ToStore() store.Page {
	page := store.Page{NextCursor: l.NextCursor, Items: make([]*store.Correlation, 0, len(l.Items))}
	for _, j := range l.Items {
		page.Items = append(page.Items, j.ToStore())
	}
	return page
}

// NSStats counts one namespace's correlations.
type NSStats struct {
	States           map[store.State]int64         `json:"states"`
	Dispatch         map[store.DispatchState]int64 `json:"dispatch"`
	OldestPending    *time.Time                    `json:"oldest_pending,omitempty"`
	OldestPendingAge string                        `json:"oldest_pending_age,omitempty"`
	// PendingLimit is the server's limit on pending correlations per
	// namespace (states.pending is the usage); absent when there is none.
	PendingLimit int64 `json:"pending_limit,omitempty"`
	// Bytes is what the namespace's records hold: reply bodies, late reply
	// bodies and callback data (store.Correlation.StoredBytes).
	Bytes int64 `json:"bytes"`
	// BytesLimit is the server's limit on Bytes per namespace; absent when
	// there is none.
	BytesLimit int64 `json:"bytes_limit,omitempty"`
}

// StatsResponse counts correlations by namespace.
type StatsResponse struct {
	Namespaces map[string]NSStats `json:"namespaces"`
	Total      NSStats            `json:"total"`
	// EarlyReplies counts the early replies buffered in the whole store;
	// absent for a token limited to some namespaces (the buffer is shared).
	EarlyReplies *int64 `json:"early_replies,omitempty"`
}

// StatsFromStore returns st as the API shows it, with ages as of now.
func StatsFromStore(st store.Stats, now time.Time) StatsResponse {
	early := st.EarlyReplies
	out := StatsResponse{Namespaces: map[string]NSStats{}, Total: NSStatsFromStore(st.Total(), now), EarlyReplies: &early}
	for n, v := range st.Namespaces {
		out.Namespaces[n] = NSStatsFromStore(v, now)
	}
	return out
}

// NSStatsFromStore returns n as the API shows it, with every state counted
// (zero included) and the oldest pending age as of now.
func NSStatsFromStore(n store.NamespaceStats, now time.Time) NSStats {
	j := NSStats{States: n.States, Dispatch: n.Dispatch, Bytes: n.Bytes}
	if j.States == nil {
		j.States = map[store.State]int64{}
	}
	if j.Dispatch == nil {
		j.Dispatch = map[store.DispatchState]int64{}
	}
	for _, s := range store.States {
		j.States[s] += 0
	}
	if !n.OldestPending.IsZero() {
		t := n.OldestPending.UTC()
		j.OldestPending = &t
		j.OldestPendingAge = n.OldestPendingAge(now).Round(time.Millisecond).String()
	}
	return j
}

// ToStore returns the counts s shows; the total is derived, not read.
func (s *StatsResponse) ToStore() store.Stats {
	st := store.Stats{Namespaces: map[string]store.NamespaceStats{}}
	if s.EarlyReplies != nil {
		st.EarlyReplies = *s.EarlyReplies
	}
	for ns, n := range s.Namespaces {
		v := store.NamespaceStats{States: n.States, Dispatch: n.Dispatch, Bytes: n.Bytes}
		if n.OldestPending != nil {
			v.OldestPending = *n.OldestPending
		}
		st.Namespaces[ns] = v
	}
	return st
}

// ErrorResponse is every error answer.
type ErrorResponse struct {
	Error Error `json:"error"`
}

// Error says what went wrong: a code to branch on, a message for people and
// the field at fault, if one is.
type Error struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Field   string `json:"field,omitempty"`
}

// RegisterRequest is the body of POST /v1/correlations. Durations and times
// are strings so that the server can report a bad one with its field's name.
type RegisterRequest struct {
	ID             string            `json:"id,omitempty"`
	Namespace      string            `json:"namespace,omitempty"`
	Pattern        string            `json:"pattern"`
	Timeout        string            `json:"timeout,omitempty"`
	Deadline       string            `json:"deadline,omitempty"`
	Expect         int               `json:"expect,omitempty"`
	Quorum         int               `json:"quorum,omitempty"`
	Optional       bool              `json:"optional,omitempty"`
	Destination    string            `json:"destination,omitempty"`
	ReplyTo        string            `json:"reply_to,omitempty"`
	Owner          string            `json:"owner,omitempty"`
	Callback       *CallbackRequest  `json:"callback,omitempty"`
	Labels         map[string]string `json:"labels,omitempty"`
	IdempotencyKey string            `json:"idempotency_key,omitempty"`
}

// CallbackRequest is the callback of a registration; its data is a JSON
// value (data) or bytes in base64 (data_base64), at most one of the two.
type CallbackRequest struct {
	Handler    string          `json:"handler"`
	Data       json.RawMessage `json:"data,omitempty"`
	DataBase64 string          `json:"data_base64,omitempty"`
}

// NewCallbackRequest returns the request for cb, its data as JSON when it is.
func NewCallbackRequest(cb store.Callback) *CallbackRequest {
	r := &CallbackRequest{Handler: cb.Handler}
	r.Data, r.DataBase64 = jsonOrBase64(cb.Data)
	return r
}

// ToStore returns the callback r asks for. Errors: *store.FieldError naming
// callback.data or callback.data_base64.
func (r *CallbackRequest) ToStore() (store.Callback, error) {
	data, err := BytesOf("callback.data", r.Data, r.DataBase64)
	return store.Callback{Handler: r.Handler, Data: data}, err
}

// ReplyRequest is the body of a reply; its body is a JSON value (body) or
// bytes in base64 (body_base64), at most one of the two.
type ReplyRequest struct {
	ID         string          `json:"id,omitempty"`
	From       string          `json:"from,omitempty"`
	Seq        int             `json:"seq,omitempty"`
	Final      bool            `json:"final,omitempty"`
	Body       json.RawMessage `json:"body,omitempty"`
	BodyBase64 string          `json:"body_base64,omitempty"`
	Error      string          `json:"error,omitempty"`
}

// NewReplyRequest returns the request that delivers r, its body as JSON
// when it is.
func NewReplyRequest(r store.Reply) ReplyRequest {
	req := ReplyRequest{ID: r.ID, From: r.From, Seq: r.Seq, Final: r.Final, Error: r.Error}
	req.Body, req.BodyBase64 = jsonOrBase64(r.Body)
	return req
}

// ToStore returns the reply r asks to deliver. Errors: *store.FieldError
// naming body or body_base64.
func (r *ReplyRequest) ToStore() (store.Reply, error) {
	body, err := BytesOf("body", r.Body, r.BodyBase64)
	return store.Reply{ID: r.ID, From: r.From, Seq: r.Seq, Final: r.Final, Body: body, Error: r.Error}, err
}

// ExtendRequest is the body of POST …/extend: a deadline or a timeout from
// now, exactly one.
type ExtendRequest struct {
	Deadline string `json:"deadline,omitempty"`
	Timeout  string `json:"timeout,omitempty"`
}

// ReasonRequest is the optional body of POST …/cancel and …/expire.
type ReasonRequest struct {
	Reason string `json:"reason,omitempty"`
}
