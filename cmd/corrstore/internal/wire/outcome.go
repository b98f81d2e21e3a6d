package wire

import (
	"time"

	"github.com/corrstore/corrstore/store"
)

// OutcomeView is a decided correlation as its callback receives it: the
// document a webhook carries (in [WebhookPayload]), a pull claim hands out
// and GET /v1/correlations/{id}/outcome answers once decided. It is defined
// here once for all three. It holds the correlation's fields, its outcome
// and its accepted replies with their bodies — what was fixed when the
// outcome was decided — and nothing that changes afterwards (no late
// replies, no timeline, no dispatch bookkeeping, no version), so every
// retry of a webhook sends the same bytes.
type OutcomeView struct {
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
	Outcome        *Outcome          `json:"outcome"`
	Replies        []Reply           `json:"replies"`
}

// OutcomeOf returns the outcome view of a decided correlation c (its
// replies loaded); nil when c has no outcome yet.
func OutcomeOf(c *store.Correlation) *OutcomeView {
	if c.Outcome == nil {
		return nil
	}
	s := Summary(c)
	return &OutcomeView{
		ID: s.ID, Namespace: s.Namespace, Pattern: s.Pattern, Expect: s.Expect, Quorum: s.Quorum,
		Optional: s.Optional, Deadline: s.Deadline, Destination: s.Destination, ReplyTo: s.ReplyTo,
		Owner: s.Owner, Callback: s.Callback, Labels: s.Labels, IdempotencyKey: s.IdempotencyKey,
		State: s.State, CreatedAt: s.CreatedAt, Outcome: s.Outcome, Replies: fromReplies(c.Replies),
	}
}

// WebhookType is the type of every webhook serve sends.
const WebhookType = "correlation.outcome"

// WebhookPayload is the body of a webhook (Standard Webhooks 1.0): its
// timestamp is the outcome's time, so every retry carries the same bytes.
type WebhookPayload struct {
	Type      string       `json:"type"`
	Timestamp time.Time    `json:"timestamp"`
	Data      *OutcomeView `json:"data"`
}

// ClaimRequest is the body of POST /v1/dispatch/claim.
type ClaimRequest struct {
	Handler string `json:"handler"`
	// Lease is a Go duration ("30s"); default 30s.
	Lease string `json:"lease,omitempty"`
	// Limit is how many outcomes at most; default 10.
	Limit int `json:"limit,omitempty"`
	// Wait, a Go duration, long-polls until something is due.
	Wait string `json:"wait,omitempty"`
}

// ClaimedItem is one claimed outcome: the claim to ack, nack or extend it
// with, and the outcome.
type ClaimedItem struct {
	Claim       string       `json:"claim"`
	LeaseUntil  time.Time    `json:"lease_until"`
	Attempt     int          `json:"attempt"`
	Correlation *OutcomeView `json:"correlation"`
}

// ClaimResponse answers a claim; Items is [] when nothing is due.
type ClaimResponse struct {
	Items []ClaimedItem `json:"items"`
}

// SettleRequest is the body of …/dispatch/ack, …/nack and …/extend.
type SettleRequest struct {
	Claim string `json:"claim"`
	// Error (nack) says what went wrong; it is kept as the last error.
	Error string `json:"error,omitempty"`
	// RetryIn (nack), a Go duration: when to offer the outcome again;
	// absent: after the server's backoff for the attempt.
	RetryIn string `json:"retry_in,omitempty"`
	// Dead (nack) gives up: the outcome is dead at once (an operator can
	// redispatch it).
	Dead bool `json:"dead,omitempty"`
	// Lease (extend), a Go duration: the lease ends that long from now.
	Lease string `json:"lease,omitempty"`
}

// SettleResponse answers an ack, nack or extend.
type SettleResponse struct {
	Dispatch   Dispatch   `json:"dispatch"`
	LeaseUntil *time.Time `json:"lease_until,omitempty"`
}
