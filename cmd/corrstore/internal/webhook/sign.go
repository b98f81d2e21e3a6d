package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"strconv"
	"strings"

	"github.com/corrstore/corrstore/store"
)

// Header names of Standard Webhooks 1.0.
const (
	HeaderID        = "webhook-id"
	HeaderTimestamp = "webhook-timestamp"
	HeaderSignature = "webhook-signature"
)

// MessageID is the webhook-id of a correlation's outcome: derived from its
// namespace, id and registration nonce, so it is the same on every retry
// (receivers dedupe on it) and never repeated by another tenant's
// correlation or by a later registration of the same ref.
func MessageID(c *store.Correlation) string {
	h := sha256.New()
	for _, s := range []string{c.Namespace, c.ID, c.Nonce} {
		h.Write([]byte(s))
		h.Write([]byte{0}) // names hold no NUL: the parts cannot run together
	}
	return "msg_" + hex.EncodeToString(h.Sum(nil)[:16])
}

// Sign returns the webhook-signature header of a message: one "v1,<base64
// HMAC-SHA256>" per secret, over "id.timestamp.body", space-separated.
func Sign(id string, timestamp int64, body []byte, secrets [][]byte) string {
	sigs := make([]string, 0, len(secrets))
	ts := strconv.FormatInt(timestamp, 10)
	for _, key := range secrets {
		m := hmac.New(sha256.New, key)
		m.Write([]byte(id))
		m.Write([]byte{'.'})
		m.Write([]byte(ts))
		m.Write([]byte{'.'})
		m.Write(body)
		sigs = append(sigs, "v1,"+base64.StdEncoding.EncodeToString(m.Sum(nil)))
	}
	return strings.Join(sigs, " ")
}
