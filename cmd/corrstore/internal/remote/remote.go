// Package remote is the part of store.Store the operator commands use,
// over the HTTP API of a running corrstore serve: the commands are written
// once against an interface, and --server picks this implementation where
// --store picks a store.
package remote

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/corrstore/corrstore/store"
)

// Errors of the server that have no store sentinel.
var (
	ErrUnauthorized = errors.New("the server refused the token (401): check --token-file or CORRSTORE_TOKEN")
	ErrForbidden    = errors.New("the token's role or namespaces do not allow this (403)")
	ErrUnreachable  = errors.New("server unreachable")
)

// Client talks to one corrstore server.
type Client struct {
	base  string
	token string
	hc    *http.Client
}

// New returns a client for the server at base (http://host:port), sending
// token as a bearer token when it is not empty. hc nil: a client with a 30s
// timeout.
func New(base, token string, hc *http.Client) (*Client, error) {
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("--server %q: want http://HOST:PORT or https://HOST:PORT", base)
	}
	if hc == nil {
		hc = &http.Client{Timeout: 30 * time.Second}
	}
	return &Client{base: strings.TrimRight(u.String(), "/"), token: token, hc: hc}, nil
}

// Close releases idle connections.
func (c *Client) Close() error {
	c.hc.CloseIdleConnections()
	return nil
}

// apiError is the error answer of the API.
type apiError struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
		Field   string `json:"field"`
	} `json:"error"`
}

// do sends a request and decodes a 2xx answer into out (a 409 too when
// accept409). Error answers map to the store's sentinels.
func (c *Client) do(ctx context.Context, method, path string, q url.Values, body, out any, accept409 bool) (int, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, err
		}
		rd = bytes.NewReader(b)
	}
	u := c.base + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return 0, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	res, err := c.hc.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		return 0, fmt.Errorf("%w: %s %s: %w", ErrUnreachable, method, c.base, unwrapURL(err))
	}
	defer res.Body.Close()
	data, err := io.ReadAll(io.LimitReader(res.Body, 64<<20))
	if err != nil {
		return res.StatusCode, fmt.Errorf("%s %s: reading the answer: %w", method, path, err)
	}
	if res.StatusCode/100 == 2 || (accept409 && res.StatusCode == http.StatusConflict && !isError(data)) {
		if out != nil && res.StatusCode != http.StatusNoContent {
			if err := json.Unmarshal(data, out); err != nil {
				return res.StatusCode, fmt.Errorf("%s %s: the server's answer is not what this client reads: %w", method, path, err)
			}
		}
		return res.StatusCode, nil
	}
	return res.StatusCode, errorOf(res.StatusCode, data)
}

// isError tells an error answer from a 409 that carries a result (a late reply).
func isError(data []byte) bool {
	var e apiError
	return json.Unmarshal(data, &e) != nil || e.Error.Code != ""
}

func unwrapURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

func errorOf(status int, data []byte) error {
	var e apiError
	msg := strings.TrimSpace(string(data))
	if json.Unmarshal(data, &e) == nil && e.Error.Message != "" {
		msg = e.Error.Message
	}
	if len(msg) > 300 {
		msg = msg[:300] + "…"
	}
	var sentinel error
	switch {
	case status == http.StatusUnauthorized:
		return ErrUnauthorized
	case status == http.StatusForbidden:
		return fmt.Errorf("%w: %s", ErrForbidden, msg)
	case e.Error.Code == "not_found" || status == http.StatusNotFound:
		sentinel = store.ErrNotFound
	case e.Error.Code == "not_pending":
		sentinel = store.ErrNotPending
	case e.Error.Code == "conflict":
		sentinel = store.ErrConflict
	case e.Error.Code == "too_large" || status == http.StatusRequestEntityTooLarge:
		sentinel = store.ErrTooLarge
	case e.Error.Code == "corrupt":
		sentinel = store.ErrCorrupt
	case status == http.StatusBadRequest:
		sentinel = store.ErrInvalid
	default:
		return fmt.Errorf("server answered %d: %s", status, msg)
	}
	return &serverError{status: status, msg: msg, sentinel: sentinel}
}

// serverError is an error answer that maps to a store sentinel: its text is
// the server's message, errors.Is finds the sentinel.
type serverError struct {
	status   int
	msg      string
	sentinel error
}

func (e *serverError) Error() string { return e.msg }
func (e *serverError) Unwrap() error { return e.sentinel }

func idPath(id string, suffix string) string {
	return "/v1/correlations/" + url.PathEscape(id) + suffix
}

// Get implements the store.Store method over GET /v1/correlations/{id}.
func (c *Client) Get(ctx context.Context, id string) (*store.Correlation, error) {
	if err := store.ValidateID(id); err != nil {
		return nil, err
	}
	var j correlationJSON
	if _, err := c.do(ctx, http.MethodGet, idPath(id, ""), nil, nil, &j, false); err != nil {
		return nil, err
	}
	return j.toStore(), nil
}

func (c *Client) result(ctx context.Context, id, suffix string, body any) (store.Result, error) {
	if err := store.ValidateID(id); err != nil {
		return store.Result{}, err
	}
	var j correlationJSON
	if _, err := c.do(ctx, http.MethodPost, idPath(id, suffix), nil, body, &j, false); err != nil {
		return store.Result{}, err
	}
	return store.Result{Correlation: j.toStore()}, nil
}

// Extend moves the deadline (POST …/extend).
func (c *Client) Extend(ctx context.Context, id string, deadline time.Time) (store.Result, error) {
	return c.result(ctx, id, "/extend", map[string]string{"deadline": deadline.UTC().Format(time.RFC3339Nano)})
}

// Cancel cancels a pending correlation (POST …/cancel).
func (c *Client) Cancel(ctx context.Context, id, reason string) (store.Result, error) {
	return c.result(ctx, id, "/cancel", map[string]string{"reason": reason})
}

// Expire forces the deadline outcome now (POST …/expire).
func (c *Client) Expire(ctx context.Context, id, reason string) (store.Result, error) {
	return c.result(ctx, id, "/expire", map[string]string{"reason": reason})
}

// Redispatch makes a dead or done dispatch due again (POST …/redispatch).
func (c *Client) Redispatch(ctx context.Context, id string) (store.Result, error) {
	return c.result(ctx, id, "/redispatch", nil)
}

// Register registers a correlation (POST /v1/correlations). Callback data
// must be JSON: the API carries it as a JSON value.
func (c *Client) Register(ctx context.Context, r *store.Correlation) (store.RegisterResult, error) {
	req := map[string]any{"pattern": r.Pattern}
	set := func(k string, v any, ok bool) {
		if ok {
			req[k] = v
		}
	}
	set("id", r.ID, r.ID != "")
	set("namespace", r.Namespace, r.Namespace != "")
	set("timeout", r.Timeout.String(), r.Timeout > 0)
	set("deadline", r.Deadline.UTC().Format(time.RFC3339Nano), !r.Deadline.IsZero())
	set("expect", r.Expect, r.Expect > 0)
	set("quorum", r.Quorum, r.Quorum > 0)
	set("optional", r.Optional, r.Optional)
	set("destination", r.Destination, r.Destination != "")
	set("reply_to", r.ReplyTo, r.ReplyTo != "")
	set("owner", r.Owner, r.Owner != "")
	set("labels", r.Labels, len(r.Labels) > 0)
	set("idempotency_key", r.IdempotencyKey, r.IdempotencyKey != "")
	if r.Callback.Handler != "" || len(r.Callback.Data) > 0 {
		cb := map[string]any{"handler": r.Callback.Handler}
		if len(r.Callback.Data) > 0 {
			cb["data"] = json.RawMessage(r.Callback.Data)
		}
		req["callback"] = cb
	}
	var j correlationJSON
	status, err := c.do(ctx, http.MethodPost, "/v1/correlations", nil, req, &j, false)
	if err != nil {
		return store.RegisterResult{}, err
	}
	return store.RegisterResult{Correlation: j.toStore(), Created: status == http.StatusCreated}, nil
}

// Deliver delivers a reply (POST …/replies). The body must be JSON.
func (c *Client) Deliver(ctx context.Context, id string, r store.Reply) (store.DeliverResult, error) {
	req := replyJSON{ID: r.ID, From: r.From, Seq: r.Seq, Final: r.Final, Error: r.Error}
	if len(r.Body) > 0 {
		req.Body = json.RawMessage(r.Body)
	}
	var out struct {
		Status      store.DeliverStatus `json:"status"`
		Correlation *correlationJSON    `json:"correlation"`
	}
	if _, err := c.do(ctx, http.MethodPost, idPath(id, "/replies"), nil, req, &out, true); err != nil {
		return store.DeliverResult{}, err
	}
	res := store.DeliverResult{Status: out.Status}
	if out.Correlation != nil {
		res.Correlation = out.Correlation.toStore()
	}
	return res, nil
}

// List lists a page (GET /v1/correlations).
func (c *Client) List(ctx context.Context, f store.Filter) (store.Page, error) {
	q := url.Values{}
	add := func(k, v string) {
		if v != "" {
			q.Set(k, v)
		}
	}
	addTime := func(k string, t time.Time) {
		if !t.IsZero() {
			q.Set(k, t.UTC().Format(time.RFC3339Nano))
		}
	}
	add("namespace", f.Namespace)
	add("state", string(f.State))
	add("owner", f.Owner)
	add("destination", f.Destination)
	add("handler", f.Handler)
	add("dispatch", string(f.Dispatch))
	add("order", string(f.Order))
	add("cursor", f.Cursor)
	if f.Limit > 0 {
		q.Set("limit", strconv.Itoa(f.Limit))
	}
	addTime("created_after", f.CreatedAfter)
	addTime("created_before", f.CreatedBefore)
	addTime("deadline_after", f.DeadlineAfter)
	addTime("deadline_before", f.DeadlineBefore)
	for k, v := range f.Labels {
		q.Add("label", k+"="+v)
	}
	var out struct {
		Items      []*correlationJSON `json:"items"`
		NextCursor string             `json:"next_cursor"`
	}
	if _, err := c.do(ctx, http.MethodGet, "/v1/correlations", q, nil, &out, false); err != nil {
		return store.Page{}, err
	}
	page := store.Page{NextCursor: out.NextCursor, Items: make([]*store.Correlation, 0, len(out.Items))}
	for _, j := range out.Items {
		page.Items = append(page.Items, j.toStore())
	}
	return page, nil
}

// Stats counts correlations (GET /v1/stats).
func (c *Client) Stats(ctx context.Context, namespace string) (store.Stats, error) {
	q := url.Values{}
	if namespace != "" {
		q.Set("namespace", namespace)
	}
	var out struct {
		Namespaces map[string]struct {
			States        map[store.State]int64         `json:"states"`
			Dispatch      map[store.DispatchState]int64 `json:"dispatch"`
			OldestPending *time.Time                    `json:"oldest_pending"`
		} `json:"namespaces"`
		EarlyReplies int64 `json:"early_replies"`
	}
	if _, err := c.do(ctx, http.MethodGet, "/v1/stats", q, nil, &out, false); err != nil {
		return store.Stats{}, err
	}
	st := store.Stats{Namespaces: map[string]store.NamespaceStats{}, EarlyReplies: out.EarlyReplies}
	for ns, n := range out.Namespaces {
		v := store.NamespaceStats{States: n.States, Dispatch: n.Dispatch}
		if n.OldestPending != nil {
			v.OldestPending = *n.OldestPending
		}
		st.Namespaces[ns] = v
	}
	return st, nil
}

// Ready checks GET /readyz: the server is up and its store answers.
func (c *Client) Ready(ctx context.Context) error {
	_, err := c.do(ctx, http.MethodGet, "/readyz", nil, nil, nil, false)
	return err
}

// The API's JSON shapes, as this client reads them.
type correlationJSON struct {
	ID             string            `json:"id"`
	Namespace      string            `json:"namespace"`
	Pattern        store.Pattern     `json:"pattern"`
	Expect         int               `json:"expect"`
	Quorum         int               `json:"quorum"`
	Optional       bool              `json:"optional"`
	Deadline       time.Time         `json:"deadline"`
	Destination    string            `json:"destination"`
	ReplyTo        string            `json:"reply_to"`
	Owner          string            `json:"owner"`
	Callback       *callbackJSON     `json:"callback"`
	Labels         map[string]string `json:"labels"`
	IdempotencyKey string            `json:"idempotency_key"`
	State          store.State       `json:"state"`
	CreatedAt      time.Time         `json:"created_at"`
	UpdatedAt      time.Time         `json:"updated_at"`
	Version        int64             `json:"version"`
	Replies        []replyJSON       `json:"replies"`
	Late           []replyJSON       `json:"late"`
	LateCount      int               `json:"late_count"`
	DuplicateCount int               `json:"duplicate_count"`
	Outcome        *store.Outcome    `json:"outcome"`
	Dispatch       struct {
		State     store.DispatchState `json:"state"`
		Attempts  int                 `json:"attempts"`
		NextAt    *time.Time          `json:"next_at"`
		LastError string              `json:"last_error"`
	} `json:"dispatch"`
	Events        []store.TimelineEvent `json:"events"`
	EventsDropped int                   `json:"events_dropped"`
}

type callbackJSON struct {
	Handler    string          `json:"handler"`
	Data       json.RawMessage `json:"data"`
	DataBase64 string          `json:"data_base64"`
}

type replyJSON struct {
	ID         string          `json:"id,omitempty"`
	From       string          `json:"from,omitempty"`
	Seq        int             `json:"seq,omitempty"`
	Final      bool            `json:"final,omitempty"`
	Body       json.RawMessage `json:"body,omitempty"`
	BodyBase64 string          `json:"body_base64,omitempty"`
	Error      string          `json:"error,omitempty"`
	ReceivedAt time.Time       `json:"received_at,omitzero"`
}

func bytesOf(raw json.RawMessage, b64 string) []byte {
	if len(raw) > 0 {
		return []byte(raw)
	}
	if b64 != "" {
		if b, err := base64.StdEncoding.DecodeString(b64); err == nil {
			return b
		}
	}
	return nil
}

func (j *correlationJSON) toStore() *store.Correlation {
	c := &store.Correlation{
		ID: j.ID, Namespace: j.Namespace, Pattern: j.Pattern, Expect: j.Expect, Quorum: j.Quorum,
		Optional: j.Optional, Deadline: j.Deadline, Destination: j.Destination, ReplyTo: j.ReplyTo,
		Owner: j.Owner, Labels: j.Labels, IdempotencyKey: j.IdempotencyKey, State: j.State,
		Outcome: j.Outcome, LateCount: j.LateCount, DuplicateCount: j.DuplicateCount,
		Events: j.Events, EventsDropped: j.EventsDropped, Version: j.Version,
		CreatedAt: j.CreatedAt, UpdatedAt: j.UpdatedAt,
		Dispatch: store.Dispatch{State: j.Dispatch.State, Attempts: j.Dispatch.Attempts, LastError: j.Dispatch.LastError},
	}
	if j.Dispatch.NextAt != nil {
		c.Dispatch.NextAt = *j.Dispatch.NextAt
	}
	if j.Callback != nil {
		c.Callback = store.Callback{Handler: j.Callback.Handler, Data: bytesOf(j.Callback.Data, j.Callback.DataBase64)}
	}
	for _, r := range j.Replies {
		c.Replies = append(c.Replies, r.toStore())
	}
	for _, r := range j.Late {
		c.Late = append(c.Late, r.toStore())
	}
	return c
}

func (r replyJSON) toStore() store.Reply {
	return store.Reply{ID: r.ID, From: r.From, Seq: r.Seq, Final: r.Final, Body: bytesOf(r.Body, r.BodyBase64),
		Error: r.Error, ReceivedAt: r.ReceivedAt}
}
