package httpapi

import (
	"bufio"
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/corrstore/corrstore/store"
)

// MinSecretLen is the shortest reply-token secret accepted, in bytes.
const MinSecretLen = 32

// ErrBadToken: the token is not one this server signed (tampered, cut, not
// in its canonical encoding, or signed with a secret the server does not
// hold).
var ErrBadToken = errors.New("reply token is not valid")

// ReplyTokens signs and checks reply tokens. A token lets its holder deliver
// replies to one registration of one correlation without a bearer token:
// it is an HMAC-SHA256 (the full 256 bits) over the correlation's
// namespace, id and nonce (store.Correlation.Nonce, drawn at registration),
// so it is valid exactly as long as that registration exists — it has no
// expiry of its own, and a registration made again under the same ref
// after a purge has another nonce.
//
// Layout before base64url (unpadded): version 2 (1 byte) | len(namespace)
// (1) | namespace | len(id) (1) | id | len(nonce) (1) | nonce | MAC (32).
//
// Several secrets may be held: the first signs, all verify, so a secret is
// rotated by putting the new one first and dropping the old one once the
// tokens it signed are no longer needed.
type ReplyTokens struct {
	keys [][]byte
}

const (
	replyTokenVersion  = 2
	legacyTokenVersion = 1 // (namespace, id, expiry): checked only for records without a nonce
	macLen             = sha256.Size
	maxReplyTokenLen   = 1024
	maxNonceLen        = 64
)

// NewReplyTokens uses secrets (each at least MinSecretLen bytes) as HMAC
// keys: the first signs, every one verifies.
func NewReplyTokens(secrets ...[]byte) (*ReplyTokens, error) {
	if len(secrets) == 0 {
		return nil, errors.New("reply-token secrets: none given")
	}
	t := &ReplyTokens{}
	for i, s := range secrets {
		if len(s) < MinSecretLen {
			return nil, fmt.Errorf("reply-token secret %d is %d bytes, at least %d are required", i+1, len(s), MinSecretLen)
		}
		t.keys = append(t.keys, bytes.Clone(s))
	}
	return t, nil
}

// ParseReplySecrets reads a secret file: one secret per line (surrounding
// whitespace trimmed, so `openssl rand -hex 32 > file` works), blank lines
// and # comments ignored. The first secret signs; all verify.
func ParseReplySecrets(r io.Reader) (*ReplyTokens, error) {
	var secrets [][]byte
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if len(line) < MinSecretLen {
			return nil, fmt.Errorf("line %d: the secret is %d bytes, at least %d are required (the file holds one secret per line; a secret wrapped over lines, as `openssl rand -base64 64` writes it, must be joined into one line)", n, len(line), MinSecretLen)
		}
		secrets = append(secrets, []byte(line))
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(secrets) == 0 {
		return nil, errors.New("no secret in the file")
	}
	return NewReplyTokens(secrets...)
}

// LoadReplyTokens reads a secret file (see ParseReplySecrets).
func LoadReplyTokens(path string) (*ReplyTokens, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reply-token secret file: %w", err)
	}
	t, err := ParseReplySecrets(bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("reply-token secret file %s: %w", path, err)
	}
	return t, nil
}

// Len is how many secrets verify.
func (t *ReplyTokens) Len() int { return len(t.keys) }

func mac(key []byte, domain string, payload []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(domain))
	m.Write(payload)
	return m.Sum(nil)
}

const (
	domainV2     = "corrstore reply token v2\x00"
	domainLegacy = "corrstore reply token\x00"
)

// Sign returns the token for the registration of ref whose nonce is nonce.
func (t *ReplyTokens) Sign(ref store.Ref, nonce string) string {
	ref = ref.Norm()
	p := make([]byte, 0, 4+len(ref.Namespace)+len(ref.ID)+len(nonce)+macLen)
	p = append(p, replyTokenVersion, byte(len(ref.Namespace)))
	p = append(p, ref.Namespace...)
	p = append(p, byte(len(ref.ID)))
	p = append(p, ref.ID...)
	p = append(p, byte(len(nonce)))
	p = append(p, nonce...)
	p = append(p, mac(t.keys[0], domainV2, p)...)
	return base64.RawURLEncoding.EncodeToString(p)
}

// ReplyToken is what a genuine token says.
type ReplyToken struct {
	Ref   store.Ref
	Nonce string
	// Legacy: signed by a version before nonces (schema 1); it is bound to
	// a registration without a nonce only.
	Legacy bool
}

// Matches reports whether the token belongs to the registration c.
func (tok ReplyToken) Matches(c *store.Correlation) bool {
	return c.Ref().Norm() == tok.Ref && c.Nonce == tok.Nonce
}

// Verify checks a token and returns what it says. Only the canonical
// encoding of a token signed with one of t's secrets is accepted: base64url
// without padding, spare bits zero, no whitespace, every length exact.
func (t *ReplyTokens) Verify(token string) (ReplyToken, error) {
	if len(token) > maxReplyTokenLen {
		return ReplyToken{}, ErrBadToken
	}
	// The decoder skips CR and LF even in strict mode: only a token equal to
	// the encoding of its bytes is canonical.
	b, err := base64.RawURLEncoding.Strict().DecodeString(token)
	if err != nil || base64.RawURLEncoding.EncodeToString(b) != token || len(b) < 1+macLen {
		return ReplyToken{}, ErrBadToken
	}
	payload, sum := b[:len(b)-macLen], b[len(b)-macLen:]
	domain := domainV2
	if payload[0] == legacyTokenVersion {
		domain = domainLegacy
	}
	if !t.verifies(domain, payload, sum) {
		return ReplyToken{}, ErrBadToken
	}
	var tok ReplyToken
	switch payload[0] {
	case replyTokenVersion:
		tok, err = parseV2(payload[1:])
	case legacyTokenVersion:
		tok, err = parseLegacy(payload[1:])
	default:
		err = ErrBadToken
	}
	if err != nil || tok.Ref.Validate() != nil {
		return ReplyToken{}, ErrBadToken
	}
	return tok, nil
}

func (t *ReplyTokens) verifies(domain string, payload, sum []byte) bool {
	ok := false
	for _, k := range t.keys {
		ok = hmac.Equal(sum, mac(k, domain, payload)) || ok
	}
	return ok
}

// field cuts a length-prefixed field off b.
func field(b []byte) (string, []byte, bool) {
	if len(b) < 1 || int(b[0]) > len(b)-1 {
		return "", nil, false
	}
	n := int(b[0])
	return string(b[1 : 1+n]), b[1+n:], true
}

func parseV2(b []byte) (ReplyToken, error) {
	ns, b, ok1 := field(b)
	id, b, ok2 := field(b)
	nonce, b, ok3 := field(b)
	if !ok1 || !ok2 || !ok3 || len(b) != 0 || ns == "" || len(nonce) > maxNonceLen {
		return ReplyToken{}, ErrBadToken
	}
	return ReplyToken{Ref: store.Ref{Namespace: ns, ID: id}, Nonce: nonce}, nil
}

// parseLegacy reads expiry (8, ignored: a token is valid as long as its
// registration) | len(namespace) (1) | namespace | id.
func parseLegacy(b []byte) (ReplyToken, error) {
	if len(b) < 9 {
		return ReplyToken{}, ErrBadToken
	}
	ns, id, ok := field(b[8:])
	if !ok || ns == "" {
		return ReplyToken{}, ErrBadToken
	}
	return ReplyToken{Ref: store.Ref{Namespace: ns, ID: string(id)}, Legacy: true}, nil
}
