package store

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/google/uuid"
)

// idNamespace is the UUIDv5 namespace of IDs derived from idempotency keys.
var idNamespace = uuid.MustParse("6f1d2c1e-7c1b-4e55-9d0a-3c5b1b8f0c11")

// DeriveID returns the ID a registration with an idempotency key and no ID
// gets: a UUIDv5 of (namespace, key), so a retry lands on the same record.
func DeriveID(namespace, idempotencyKey string) string {
	return uuid.NewSHA1(idNamespace, []byte(namespace+"\x00"+idempotencyKey)).String()
}

// NewID returns a time-ordered UUIDv7.
func NewID() string {
	id, err := uuid.NewV7()
	if err != nil { // only when crypto/rand fails
		return uuid.NewString()
	}
	return id.String()
}

// ValidateID checks an ID: 1–200 characters of A-Za-z0-9._:-
func ValidateID(id string) error { return validateID("id", id) }

func validateID(field, id string) error {
	if id == "" {
		return invalid(field, "must not be empty")
	}
	if len(id) > MaxIDLen {
		return invalid(field, "is %d characters, the limit is %d", len(id), MaxIDLen)
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == ':' || c == '-') {
			return invalid(field, "character %q at %d is not one of A-Za-z0-9._:-", c, i)
		}
	}
	return nil
}

// ValidateNamespace checks a namespace: 1–64 characters of a-z0-9_-
func ValidateNamespace(ns string) error {
	if ns == "" {
		return invalid("namespace", "must not be empty")
	}
	if len(ns) > MaxNamespaceLen {
		return invalid("namespace", "is %d characters, the limit is %d", len(ns), MaxNamespaceLen)
	}
	for i := 0; i < len(ns); i++ {
		c := ns[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return invalid("namespace", "character %q at %d is not one of a-z0-9_-", c, i)
		}
	}
	return nil
}

func maxLen(field, s string, limit int) error {
	if len(s) > limit {
		return invalid(field, "is %d bytes, the limit is %d", len(s), limit)
	}
	return nil
}

// Prepare validates a registration and fills in what the store owns: the ID
// (derived from the idempotency key, or a new UUIDv7), the namespace and
// pattern defaults, the deadline, state, times, version, fingerprint and the
// first event. It returns a new Correlation; c is not modified.
func Prepare(c *Correlation, now time.Time, lim Limits) (*Correlation, error) {
	if c == nil {
		return nil, invalid("correlation", "is nil")
	}
	n := c.Clone()
	if n.Namespace == "" {
		n.Namespace = DefaultNamespace
	}
	if err := ValidateNamespace(n.Namespace); err != nil {
		return nil, err
	}
	if err := maxLen("idempotency_key", n.IdempotencyKey, MaxIdempotencyLen); err != nil {
		return nil, err
	}
	if n.ID == "" {
		if n.IdempotencyKey != "" {
			n.ID = DeriveID(n.Namespace, n.IdempotencyKey)
		} else {
			n.ID = NewID()
		}
	}
	if err := ValidateID(n.ID); err != nil {
		return nil, err
	}
	// Refused for new registrations only: records stored before this rule
	// keep their ids and stay addressable.
	if n.ID == "." || n.ID == ".." {
		return nil, invalid("id", "must not be %q (it names a path segment in URLs)", n.ID)
	}
	if n.Pattern == "" {
		n.Pattern = PatternSingle
	}
	switch n.Pattern {
	case PatternGather:
		if n.Expect < 1 || n.Expect > lim.MaxReplies {
			return nil, invalid("expect", "gather needs 1 to %d expected replies, got %d", lim.MaxReplies, n.Expect)
		}
		if n.Quorum < 0 || n.Quorum > n.Expect {
			return nil, invalid("quorum", "must be between 0 and expect (%d), got %d", n.Expect, n.Quorum)
		}
	case PatternSingle, PatternStream:
		if n.Expect != 0 {
			return nil, invalid("expect", "only a gather takes expect, this is a %s", n.Pattern)
		}
		if n.Quorum != 0 {
			return nil, invalid("quorum", "only a gather takes quorum, this is a %s", n.Pattern)
		}
	default:
		return nil, invalid("pattern", "must be single, gather or stream, got %q", n.Pattern)
	}
	switch {
	case n.Timeout < 0:
		return nil, invalid("timeout", "must be positive, got %s", n.Timeout)
	case n.Timeout > 0 && !n.Deadline.IsZero():
		return nil, invalid("timeout", "give timeout or deadline, not both")
	case n.Timeout > 0:
		n.Deadline = now.Add(n.Timeout)
	case n.Deadline.IsZero():
		n.Deadline = now.Add(lim.DefaultTimeout)
	}
	if !n.Deadline.After(now) {
		return nil, invalid("deadline", "%s is not in the future (now %s)", n.Deadline.UTC().Format(time.RFC3339Nano), now.UTC().Format(time.RFC3339Nano))
	}
	if d := n.Deadline.Sub(now); d > lim.MaxTimeout {
		if n.Timeout > 0 { // name the field the caller sent
			return nil, invalid("timeout", "%s is over the limit of %s", n.Timeout, lim.MaxTimeout)
		}
		return nil, invalid("deadline", "is %s away, the limit is %s", d.Round(time.Second), lim.MaxTimeout)
	}
	for _, f := range []struct {
		name, v string
		limit   int
	}{
		{"destination", n.Destination, MaxAddressLen},
		{"reply_to", n.ReplyTo, MaxAddressLen},
		{"owner", n.Owner, MaxAddressLen},
		{"callback.handler", n.Callback.Handler, MaxHandlerLen},
	} {
		if err := nameLike(f.name, f.v, f.limit); err != nil {
			return nil, err
		}
	}
	if len(n.Callback.Data) > MaxCallbackData {
		return nil, tooLarge("callback.data", "is %d bytes, the limit is %d", len(n.Callback.Data), MaxCallbackData)
	}
	if n.Callback.Handler == "" && len(n.Callback.Data) > 0 {
		return nil, invalid("callback.handler", "must be set when callback.data is")
	}
	if len(n.Labels) > MaxLabels {
		return nil, tooLarge("labels", "has %d pairs, the limit is %d", len(n.Labels), MaxLabels)
	}
	for k, v := range n.Labels {
		if k == "" {
			return nil, invalid("labels", "a key is empty")
		}
		if len(k) > MaxLabelLen || len(v) > MaxLabelLen {
			return nil, invalid("labels."+truncate(k, 32), "key and value are limited to %d bytes each", MaxLabelLen)
		}
		if err := nameLike("labels", k, MaxLabelLen); err != nil {
			return nil, err
		}
		if err := nameLike("labels."+k, v, MaxLabelLen); err != nil {
			return nil, err
		}
	}
	if len(n.Labels) == 0 {
		n.Labels = nil
	}

	n.Timeout = 0
	n.Fingerprint = fingerprint(n)
	n.State = StatePending
	n.Outcome = nil
	n.Replies, n.Late, n.Events, n.Held, n.LateRing, n.LateSeq = nil, nil, nil, ReplyStats{}, nil, 0
	n.LateCount, n.DuplicateCount, n.EventsDropped, n.EventSeq = 0, 0, 0, 0
	n.Dispatch = Dispatch{State: DispatchNone}
	n.Version = 1
	n.Nonce = NewNonce()
	n.CreatedAt, n.UpdatedAt = now, now
	n.addEvent(now, EventRegistered, fmt.Sprintf("pattern=%s deadline=%s", n.Pattern, n.Deadline.UTC().Format(time.RFC3339Nano)), lim)
	return n, nil
}

// fingerprint hashes the content of a registration, to tell a retry from
// a different registration under the same ID or idempotency key. The ID is
// the record's key, so it is left out; so is the deadline, on purpose: a
// retry computes a fresh deadline from its own clock and must still land on
// the record it created (use Extend to move a deadline); and so is the
// label TraceparentLabel: a retry runs in a span of its own.
func fingerprint(c *Correlation) string {
	labels := make([]string, 0, 2*len(c.Labels))
	for k, v := range c.Labels {
		if k == TraceparentLabel {
			continue // which trace retried it is no part of what was registered
		}
		labels = append(labels, k+"\x00"+v)
	}
	slices.Sort(labels)
	b, _ := json.Marshal([]any{c.Namespace, c.Pattern, c.Expect, c.Quorum, c.Optional,
		c.Destination, c.ReplyTo, c.Owner, c.Callback.Handler, c.Callback.Data, labels, c.IdempotencyKey})
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:16])
}

// ValidateReply checks a reply against the limits.
func ValidateReply(r Reply, lim Limits) error {
	if err := nameLike("reply.id", r.ID, MaxReplyFieldLen); err != nil {
		return err
	}
	if err := nameLike("reply.from", r.From, MaxReplyFieldLen); err != nil {
		return err
	}
	if err := maxLen("reply.error", r.Error, MaxReplyErrorLen); err != nil {
		return err
	}
	if !utf8.ValidString(r.Error) {
		return invalid("reply.error", "is not valid UTF-8")
	}
	if r.Seq < 0 || r.Seq >= lim.MaxReplies {
		return invalid("reply.seq", "must be between 0 and %d, got %d", lim.MaxReplies-1, r.Seq)
	}
	if len(r.Body) > lim.MaxBodyBytes {
		return tooLarge("reply.body", "is %d bytes, the limit is %d", len(r.Body), lim.MaxBodyBytes)
	}
	return nil
}

// ValidateReason checks the reason given to Cancel or Expire.
func ValidateReason(reason string) error { return nameLike("reason", reason, MaxReasonLen) }

// nameLike checks a field an operator reads in a terminal: at most limit
// bytes of valid UTF-8 with no control characters, so that no stored text
// can move a cursor, clear a screen or forge a line of output.
func nameLike(field, s string, limit int) error {
	if err := maxLen(field, s, limit); err != nil {
		return err
	}
	if !utf8.ValidString(s) {
		return invalid(field, "is not valid UTF-8")
	}
	for i, r := range s {
		if unicode.IsControl(r) {
			return invalid(field, "holds control character %U at byte %d", r, i)
		}
	}
	return nil
}

// NewNonce returns 128 random bits, URL-safe base64: the nonce that tells
// one registration of a ref from a later one under the same ref.
func NewNonce() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// ValidateSecretName checks the name of a store secret: 1–64 of a-z0-9_-
func ValidateSecretName(name string) error {
	if err := ValidateNamespace(name); err != nil {
		return invalid("secret", "name %q: must be 1 to %d characters of a-z0-9_-", name, MaxNamespaceLen)
	}
	return nil
}

// validateStored checks a record read back from storage, so that a record
// written by a buggy or foreign writer is reported instead of acted upon.
func (c *Correlation) validateStored() error {
	if err := ValidateID(c.ID); err != nil {
		return err
	}
	if err := ValidateNamespace(c.Namespace); err != nil {
		return err
	}
	switch c.Pattern {
	case PatternSingle, PatternGather, PatternStream:
	default:
		return invalid("pattern", "unknown pattern %q", c.Pattern)
	}
	if !c.State.valid() {
		return invalid("state", "unknown state %q", c.State)
	}
	if c.State.Terminal() != (c.Outcome != nil) {
		return invalid("outcome", "state %s does not match the outcome", c.State)
	}
	if c.Outcome != nil && c.Outcome.State != c.State {
		return invalid("outcome.state", "is %q, the record's state is %q", c.Outcome.State, c.State)
	}
	if !c.Dispatch.State.valid() {
		return invalid("dispatch.state", "unknown dispatch state %q", c.Dispatch.State)
	}
	if c.Deadline.IsZero() || c.CreatedAt.IsZero() {
		return invalid("deadline", "deadline and created_at must be set")
	}
	if c.Version < 1 {
		return invalid("version", "must be at least 1, got %d", c.Version)
	}
	if h := c.Held; h.Count < 0 || h.Bytes < 0 || (h.Count > 0 && h.Count < len(c.Replies)) {
		return invalid("held", "count %d and bytes %d do not fit the %d replies in the record", h.Count, h.Bytes, len(c.Replies))
	}
	if c.LateSeq < len(c.LateRing) || (c.LateSeq > 0 && len(c.Late) > len(c.LateRing)) {
		return invalid("late_seq", "%d does not fit a ring of %d with %d late replies in the record", c.LateSeq, len(c.LateRing), len(c.Late))
	}
	if c.EventSeq < 0 || c.EventsDropped < 0 || (c.EventSeq > 0 && c.EventSeq < len(c.Events)) {
		return invalid("event_seq", "%d does not fit the %d events in the record", c.EventSeq, len(c.Events))
	}
	return nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
