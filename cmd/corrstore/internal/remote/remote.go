// Package remote is the part of store.Store the operator commands use,
// over the HTTP API of a running corrstore serve: the commands are written
// once against an interface, and --server picks this implementation where
// --store picks a store.
//
// Two differences from a store follow from the API. A Ref (or registration)
// with an empty Namespace leaves the namespace to the server's rule: the
// token's only namespace when it has exactly one, else "default". And
// Register, Deliver and the other writes answer a summary: the correlation
// without reply bodies, late replies and timeline (see wire.Summary); Get
// gives the full record.
package remote

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/corrstore/corrstore/cmd/corrstore/internal/wire"
	"github.com/corrstore/corrstore/store"
)

// Errors of the server that have no store sentinel.
var (
	ErrUnauthorized = errors.New("the server refused the token (401): check --token-file or CORRSTORE_TOKEN")
	ErrForbidden    = errors.New("the token's role or namespaces do not allow this (403)")
	ErrUnreachable  = errors.New("server unreachable")
	// ErrLimited: a limit of the server (e.g. pending correlations per
	// namespace) refused the call (429); the message names it.
	ErrLimited = errors.New("over a limit of the server (429)")
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
	var e wire.ErrorResponse
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
	var e wire.ErrorResponse
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
	case status == http.StatusServiceUnavailable:
		sentinel = store.ErrUnavailable
	case status == http.StatusTooManyRequests:
		sentinel = ErrLimited
	case status == http.StatusBadRequest:
		sentinel = store.ErrInvalid
	default:
		return fmt.Errorf("server answered %d: %s", status, msg)
	}
	if f := e.Error.Field; f != "" && (sentinel == store.ErrInvalid || sentinel == store.ErrTooLarge) {
		// The field the server named, as a store validation error names it.
		sentinel = &store.FieldError{Field: f, Reason: strings.TrimPrefix(msg, f+": "), Err: sentinel}
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

// refPath is the path of a per-id route; its query names the namespace
// when ref does.
func refPath(ref store.Ref, suffix string) (string, url.Values, error) {
	if err := store.ValidateID(ref.ID); err != nil {
		return "", nil, err
	}
	var q url.Values
	if ref.Namespace != "" {
		if err := store.ValidateNamespace(ref.Namespace); err != nil {
			return "", nil, err
		}
		q = url.Values{"namespace": {ref.Namespace}}
	}
	return "/v1/correlations/" + url.PathEscape(ref.ID) + suffix, q, nil
}

// Get implements the store.Store method over GET /v1/correlations/{id}:
// the full record.
func (c *Client) Get(ctx context.Context, ref store.Ref) (*store.Correlation, error) {
	path, q, err := refPath(ref, "")
	if err != nil {
		return nil, err
	}
	var j wire.Correlation
	if _, err := c.do(ctx, http.MethodGet, path, q, nil, &j, false); err != nil {
		return nil, err
	}
	return j.ToStore(), nil
}

func (c *Client) result(ctx context.Context, ref store.Ref, suffix string, body any) (store.Result, error) {
	path, q, err := refPath(ref, suffix)
	if err != nil {
		return store.Result{}, err
	}
	var j wire.Correlation
	if _, err := c.do(ctx, http.MethodPost, path, q, body, &j, false); err != nil {
		return store.Result{}, err
	}
	return store.Result{Correlation: j.ToStore()}, nil
}

// Extend moves the deadline (POST …/extend).
func (c *Client) Extend(ctx context.Context, ref store.Ref, deadline time.Time) (store.Result, error) {
	return c.result(ctx, ref, "/extend", wire.ExtendRequest{Deadline: deadline.UTC().Format(time.RFC3339Nano)})
}

// Cancel cancels a pending correlation (POST …/cancel).
func (c *Client) Cancel(ctx context.Context, ref store.Ref, reason string) (store.Result, error) {
	return c.result(ctx, ref, "/cancel", wire.ReasonRequest{Reason: reason})
}

// Expire forces the deadline outcome now (POST …/expire).
func (c *Client) Expire(ctx context.Context, ref store.Ref, reason string) (store.Result, error) {
	return c.result(ctx, ref, "/expire", wire.ReasonRequest{Reason: reason})
}

// Redispatch makes a dead or done dispatch due again (POST …/redispatch).
func (c *Client) Redispatch(ctx context.Context, ref store.Ref) (store.Result, error) {
	return c.result(ctx, ref, "/redispatch", nil)
}

// Register registers a correlation (POST /v1/correlations). Callback data
// that is not JSON travels as data_base64.
func (c *Client) Register(ctx context.Context, r *store.Correlation) (store.RegisterResult, error) {
	req := wire.RegisterRequest{
		ID: r.ID, Namespace: r.Namespace, Pattern: string(r.Pattern), Optional: r.Optional,
		Destination: r.Destination, ReplyTo: r.ReplyTo, Owner: r.Owner, Labels: r.Labels,
		IdempotencyKey: r.IdempotencyKey,
	}
	if r.Expect > 0 {
		req.Expect = r.Expect
	}
	if r.Quorum > 0 {
		req.Quorum = r.Quorum
	}
	if r.Timeout > 0 {
		req.Timeout = r.Timeout.String()
	}
	if !r.Deadline.IsZero() {
		req.Deadline = r.Deadline.UTC().Format(time.RFC3339Nano)
	}
	if r.Callback.Handler != "" || len(r.Callback.Data) > 0 {
		req.Callback = wire.NewCallbackRequest(r.Callback)
	}
	var j wire.Correlation
	status, err := c.do(ctx, http.MethodPost, "/v1/correlations", nil, req, &j, false)
	if err != nil {
		return store.RegisterResult{}, err
	}
	return store.RegisterResult{Correlation: j.ToStore(), Created: status == http.StatusCreated}, nil
}

// Deliver delivers a reply (POST …/replies). A body that is not JSON
// travels as body_base64. A reply bound to a registration (Reply.Nonce) is
// refused: the API binds replies by reply token only, and dropping the
// binding would let the reply reach another registration or be buffered.
func (c *Client) Deliver(ctx context.Context, ref store.Ref, r store.Reply) (store.DeliverResult, error) {
	if r.Nonce != nil {
		return store.DeliverResult{}, fmt.Errorf("%w: reply.nonce: a reply bound to a registration is delivered with its reply token, not through this client", store.ErrInvalid)
	}
	path, q, err := refPath(ref, "/replies")
	if err != nil {
		return store.DeliverResult{}, err
	}
	var out wire.DeliverResponse
	if _, err := c.do(ctx, http.MethodPost, path, q, wire.NewReplyRequest(r), &out, true); err != nil {
		return store.DeliverResult{}, err
	}
	return out.ToStore(), nil
}

// List lists a page (GET /v1/correlations) of summaries. As with a store,
// an empty f.Namespace lists every namespace (the token may read).
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
	q.Set("namespace", cmp.Or(f.Namespace, AllNamespaces))
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
	var out wire.ListResponse
	if _, err := c.do(ctx, http.MethodGet, "/v1/correlations", q, nil, &out, false); err != nil {
		return store.Page{}, err
	}
	page := out.ToStore()
	if f.Full { // list items are summaries: each full record is a Get
		for i, it := range page.Items {
			full, err := c.Get(ctx, it.Ref())
			if err != nil {
				return store.Page{}, err
			}
			page.Items[i] = full
		}
	}
	return page, nil
}

// Stats counts correlations (GET /v1/stats) of one namespace or, as with a
// store, of every namespace (the token may read) when namespace is "".
func (c *Client) Stats(ctx context.Context, namespace string) (store.Stats, error) {
	q := url.Values{"namespace": {cmp.Or(namespace, AllNamespaces)}}
	var out wire.StatsResponse
	if _, err := c.do(ctx, http.MethodGet, "/v1/stats", q, nil, &out, false); err != nil {
		return store.Stats{}, err
	}
	return out.ToStore(), nil
}

// Ready checks GET /readyz: the server is up and its store answers.
func (c *Client) Ready(ctx context.Context) error {
	_, err := c.do(ctx, http.MethodGet, "/readyz", nil, nil, nil, false)
	return err
}

// AllNamespaces is the ?namespace= of list and stats that asks for every
// namespace the token may read (httpapi.AllNamespaces).
const AllNamespaces = "*"
