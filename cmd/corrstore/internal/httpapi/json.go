package httpapi

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/corrstore/corrstore/store"
)

// registerRequest is the body of POST /v1/correlations. Durations and times
// are strings so that a bad one is reported with its field's name.
type registerRequest struct {
	ID             string            `json:"id"`
	Namespace      string            `json:"namespace"`
	Pattern        string            `json:"pattern"`
	Timeout        string            `json:"timeout"`
	Deadline       string            `json:"deadline"`
	Expect         int               `json:"expect"`
	Quorum         int               `json:"quorum"`
	Optional       bool              `json:"optional"`
	Destination    string            `json:"destination"`
	ReplyTo        string            `json:"reply_to"`
	Owner          string            `json:"owner"`
	Callback       *callbackRequest  `json:"callback"`
	Labels         map[string]string `json:"labels"`
	IdempotencyKey string            `json:"idempotency_key"`
}

type callbackRequest struct {
	Handler string          `json:"handler"`
	Data    json.RawMessage `json:"data"`
}

// toStore converts a registration; the store validates the rest.
func (r *registerRequest) toStore() (*store.Correlation, error) {
	c := &store.Correlation{
		ID:             r.ID,
		Namespace:      r.Namespace,
		Pattern:        store.Pattern(r.Pattern),
		Expect:         r.Expect,
		Quorum:         r.Quorum,
		Optional:       r.Optional,
		Destination:    r.Destination,
		ReplyTo:        r.ReplyTo,
		Owner:          r.Owner,
		Labels:         r.Labels,
		IdempotencyKey: r.IdempotencyKey,
	}
	var err error
	if c.Timeout, err = parseDuration("timeout", r.Timeout); err != nil {
		return nil, err
	}
	if c.Deadline, err = parseTime("deadline", r.Deadline); err != nil {
		return nil, err
	}
	if r.Callback != nil {
		c.Callback = store.Callback{Handler: r.Callback.Handler, Data: rawBytes(r.Callback.Data)}
	}
	return c, nil
}

// replyRequest is the body of a reply.
type replyRequest struct {
	ID    string          `json:"id"`
	From  string          `json:"from"`
	Seq   int             `json:"seq"`
	Final bool            `json:"final"`
	Body  json.RawMessage `json:"body"`
	Error string          `json:"error"`
}

func (r *replyRequest) toStore() store.Reply {
	return store.Reply{ID: r.ID, From: r.From, Seq: r.Seq, Final: r.Final, Body: rawBytes(r.Body), Error: r.Error}
}

// rawBytes keeps a JSON value as the bytes stored; null is no value.
func rawBytes(m json.RawMessage) []byte {
	if len(m) == 0 || string(m) == "null" {
		return nil
	}
	return []byte(m)
}

type extendRequest struct {
	Deadline string `json:"deadline"`
	Timeout  string `json:"timeout"`
}

type reasonRequest struct {
	Reason string `json:"reason"`
}

// correlationJSON is a correlation as the API shows it.
type correlationJSON struct {
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
	Callback       *callbackJSON     `json:"callback,omitempty"`
	Labels         map[string]string `json:"labels,omitempty"`
	IdempotencyKey string            `json:"idempotency_key,omitempty"`
	State          store.State       `json:"state"`
	CreatedAt      time.Time         `json:"created_at"`
	UpdatedAt      time.Time         `json:"updated_at"`
	Version        int64             `json:"version"`
	Replies        []replyJSON       `json:"replies"`
	Late           []replyJSON       `json:"late"`
	LateCount      int               `json:"late_count"`
	DuplicateCount int               `json:"duplicate_count"`
	Outcome        *outcomeJSON      `json:"outcome,omitempty"`
	Dispatch       dispatchJSON      `json:"dispatch"`
	Events         []eventJSON       `json:"events"`
	EventsDropped  int               `json:"events_dropped,omitempty"`
	ReplyToken     string            `json:"reply_token,omitempty"`
}

type callbackJSON struct {
	Handler string          `json:"handler"`
	Data    json.RawMessage `json:"data,omitempty"`
	// DataBase64 carries data that is not JSON (stored by a Go client).
	DataBase64 string `json:"data_base64,omitempty"`
}

type replyJSON struct {
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

type outcomeJSON struct {
	State   store.State `json:"state"`
	At      time.Time   `json:"at"`
	Reason  string      `json:"reason,omitempty"`
	Partial bool        `json:"partial"`
	NoReply bool        `json:"no_reply"`
}

type dispatchJSON struct {
	State     store.DispatchState `json:"state"`
	Attempts  int                 `json:"attempts"`
	NextAt    *time.Time          `json:"next_at,omitempty"`
	LastError string              `json:"last_error,omitempty"`
}

type eventJSON struct {
	At     time.Time       `json:"at"`
	Type   store.EventType `json:"type"`
	Detail string          `json:"detail,omitempty"`
}

// jsonOrBase64 returns b as raw JSON when it is JSON, else as base64.
func jsonOrBase64(b []byte) (json.RawMessage, string) {
	if len(b) == 0 {
		return nil, ""
	}
	if json.Valid(b) {
		return json.RawMessage(b), ""
	}
	return nil, base64.StdEncoding.EncodeToString(b)
}

func toReplies(rs []store.Reply) []replyJSON {
	out := make([]replyJSON, 0, len(rs))
	for _, r := range rs {
		j := replyJSON{ID: r.ID, From: r.From, Seq: r.Seq, Final: r.Final, Error: r.Error, ReceivedAt: r.ReceivedAt.UTC()}
		j.Body, j.BodyBase64 = jsonOrBase64(r.Body)
		out = append(out, j)
	}
	return out
}

func toJSON(c *store.Correlation) *correlationJSON {
	j := &correlationJSON{
		ID: c.ID, Namespace: c.Namespace, Pattern: c.Pattern, Expect: c.Expect, Quorum: c.Quorum,
		Optional: c.Optional, Deadline: c.Deadline.UTC(), Destination: c.Destination, ReplyTo: c.ReplyTo,
		Owner: c.Owner, Labels: c.Labels, IdempotencyKey: c.IdempotencyKey, State: c.State,
		CreatedAt: c.CreatedAt.UTC(), UpdatedAt: c.UpdatedAt.UTC(), Version: c.Version,
		Replies: toReplies(c.Replies), Late: toReplies(c.Late), LateCount: c.LateCount,
		DuplicateCount: c.DuplicateCount, EventsDropped: c.EventsDropped,
		Dispatch: dispatchJSON{State: c.Dispatch.State, Attempts: c.Dispatch.Attempts, LastError: c.Dispatch.LastError},
		Events:   make([]eventJSON, 0, len(c.Events)),
	}
	if c.Callback.Handler != "" || len(c.Callback.Data) > 0 {
		j.Callback = &callbackJSON{Handler: c.Callback.Handler}
		j.Callback.Data, j.Callback.DataBase64 = jsonOrBase64(c.Callback.Data)
	}
	if c.Outcome != nil {
		j.Outcome = &outcomeJSON{State: c.Outcome.State, At: c.Outcome.At.UTC(), Reason: c.Outcome.Reason,
			Partial: c.Outcome.Partial, NoReply: c.Outcome.NoReply}
	}
	if !c.Dispatch.NextAt.IsZero() {
		t := c.Dispatch.NextAt.UTC()
		j.Dispatch.NextAt = &t
	}
	for _, e := range c.Events {
		j.Events = append(j.Events, eventJSON{At: e.At.UTC(), Type: e.Type, Detail: e.Detail})
	}
	return j
}

// deliverResponse answers a reply.
type deliverResponse struct {
	Status      store.DeliverStatus `json:"status"`
	Correlation *correlationJSON    `json:"correlation,omitempty"`
	// Outcome repeats the correlation's outcome for a late reply.
	Outcome *outcomeJSON `json:"outcome,omitempty"`
}

type listResponse struct {
	Items      []*correlationJSON `json:"items"`
	NextCursor string             `json:"next_cursor,omitempty"`
}

type nsStatsJSON struct {
	States           map[store.State]int64         `json:"states"`
	Dispatch         map[store.DispatchState]int64 `json:"dispatch"`
	OldestPending    *time.Time                    `json:"oldest_pending,omitempty"`
	OldestPendingAge string                        `json:"oldest_pending_age,omitempty"`
}

type statsResponse struct {
	Namespaces   map[string]nsStatsJSON `json:"namespaces"`
	Total        nsStatsJSON            `json:"total"`
	EarlyReplies int64                  `json:"early_replies"`
}

func toNSStats(n store.NamespaceStats, now time.Time) nsStatsJSON {
	j := nsStatsJSON{States: n.States, Dispatch: n.Dispatch}
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

// apiError is an error answer: {"error": {"code", "message", "field"}}.
type apiError struct {
	Status  int    `json:"-"`
	Code    string `json:"code"`
	Message string `json:"message"`
	Field   string `json:"field,omitempty"`
}

func (e *apiError) Error() string { return e.Message }

func errorf(status int, code, field, format string, args ...any) *apiError {
	return &apiError{Status: status, Code: code, Field: field, Message: fmt.Sprintf(format, args...)}
}

func badField(field, format string, args ...any) *apiError {
	return errorf(http.StatusBadRequest, "invalid", field, "%s: %s", field, fmt.Sprintf(format, args...))
}

// parseDuration reads a Go duration ("30s"); "" is zero.
func parseDuration(field, s string) (time.Duration, error) {
	if s == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, badField(field, "%q is not a duration like 30s, 5m or 1h30m", s)
	}
	if d < 0 {
		return 0, badField(field, "must not be negative, got %s", s)
	}
	return d, nil
}

// parseTime reads an RFC 3339 time; "" is zero.
func parseTime(field, s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, badField(field, "%q is not an RFC 3339 time like 2006-01-02T15:04:05Z", s)
	}
	return t, nil
}

// decode reads one JSON object from the body into v, capped at max bytes,
// refusing unknown fields and trailing data. An empty body is allowed only
// when optional.
func decode(w http.ResponseWriter, r *http.Request, max int64, v any, optional bool) error {
	body := http.MaxBytesReader(w, r.Body, max)
	dec := json.NewDecoder(body)
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if errors.Is(err, io.EOF) && optional {
		return nil
	}
	if err == nil {
		if _, terr := dec.Token(); !errors.Is(terr, io.EOF) {
			err = errTrailing
			var mbe *http.MaxBytesError
			if errors.As(terr, &mbe) {
				err = terr
			}
		}
	}
	if err == nil {
		return nil
	}
	return decodeError(err, max)
}

var errTrailing = errors.New("trailing data")

func decodeError(err error, max int64) *apiError {
	var (
		mbe  *http.MaxBytesError
		syn  *json.SyntaxError
		typ  *json.UnmarshalTypeError
		aerr *apiError
	)
	switch {
	case errors.As(err, &aerr):
		return aerr
	case errors.As(err, &mbe):
		return errorf(http.StatusRequestEntityTooLarge, "too_large", "body", "body: larger than the limit of %d bytes", max)
	case errors.Is(err, io.EOF):
		return errorf(http.StatusBadRequest, "bad_json", "body", "body: empty; a JSON object is required")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return errorf(http.StatusBadRequest, "bad_json", "body", "body: JSON ends too early")
	case errors.Is(err, errTrailing):
		return errorf(http.StatusBadRequest, "bad_json", "body", "body: unexpected data after the JSON object")
	case errors.As(err, &syn):
		return errorf(http.StatusBadRequest, "bad_json", "body", "body: invalid JSON at byte %d: %v", syn.Offset, syn)
	case errors.As(err, &typ):
		field := typ.Field
		if field == "" {
			field = "body"
		}
		return errorf(http.StatusBadRequest, "invalid", field, "%s: expected %s, got JSON %s", field, jsonKind(typ.Type.Kind().String()), typ.Value)
	}
	msg := err.Error()
	if f, ok := strings.CutPrefix(msg, "json: unknown field "); ok {
		f = strings.Trim(f, `"`)
		return errorf(http.StatusBadRequest, "unknown_field", f, "%s: unknown field", f)
	}
	return errorf(http.StatusBadRequest, "bad_json", "body", "body: %v", err)
}

func jsonKind(k string) string {
	switch k {
	case "int", "int64", "float64":
		return "a number"
	case "string":
		return "a string"
	case "bool":
		return "true or false"
	case "map", "struct", "ptr":
		return "an object"
	case "slice":
		return "an array"
	}
	return k
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	_ = enc.Encode(v) // the client went away, or the status line is sent: nothing left to do
}

func writeError(w http.ResponseWriter, e *apiError) {
	writeJSON(w, e.Status, map[string]*apiError{"error": e})
}
