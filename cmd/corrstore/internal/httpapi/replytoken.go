package httpapi

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/corrstore/corrstore/store"
)

// MinSecretLen is the shortest reply-token secret accepted, in bytes.
const MinSecretLen = 32

// Reply-token errors.
var (
	// ErrBadToken: the token is not one this server signed (tampered, cut,
	// or signed with another secret).
	ErrBadToken = errors.New("reply token is not valid")
	// ErrTokenExpired: the token was signed here but its expiry has passed.
	ErrTokenExpired = errors.New("reply token has expired")
)

// ReplyTokens signs and checks reply tokens: HMAC-SHA256, with the full
// 256-bit MAC, over (namespace, id, expiry). A token lets its holder deliver
// replies to one correlation without a bearer token.
//
// Layout before base64url: version (1) | expiry, Unix seconds (8) |
// len(namespace) (1) | namespace | id | MAC (32).
type ReplyTokens struct {
	key []byte
}

const replyTokenVersion = 1

// NewReplyTokens uses secret (at least MinSecretLen bytes) as the HMAC key.
func NewReplyTokens(secret []byte) (*ReplyTokens, error) {
	if len(secret) < MinSecretLen {
		return nil, fmt.Errorf("reply-token secret is %d bytes, at least %d are required", len(secret), MinSecretLen)
	}
	return &ReplyTokens{key: bytes.Clone(secret)}, nil
}

// GenerateReplyTokens uses a random secret: tokens die with the process.
func GenerateReplyTokens() *ReplyTokens {
	key := make([]byte, MinSecretLen)
	rand.Read(key) // never fails (crypto/rand)
	return &ReplyTokens{key: key}
}

// LoadReplyTokens reads the secret from a file (surrounding whitespace is
// ignored, so `openssl rand -hex 32 > file` works).
func LoadReplyTokens(path string) (*ReplyTokens, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reply-token secret file: %w", err)
	}
	t, err := NewReplyTokens(bytes.TrimSpace(b))
	if err != nil {
		return nil, fmt.Errorf("reply-token secret file %s: %w", path, err)
	}
	return t, nil
}

func (t *ReplyTokens) mac(payload []byte) []byte {
	m := hmac.New(sha256.New, t.key)
	m.Write([]byte("corrstore reply token\x00"))
	m.Write(payload)
	return m.Sum(nil)
}

// Sign returns the token for correlation (namespace, id), valid until expiry.
func (t *ReplyTokens) Sign(namespace, id string, expiry time.Time) string {
	p := make([]byte, 0, 10+len(namespace)+len(id)+sha256.Size)
	p = append(p, replyTokenVersion)
	p = binary.BigEndian.AppendUint64(p, uint64(expiry.Unix()))
	p = append(p, byte(len(namespace)))
	p = append(p, namespace...)
	p = append(p, id...)
	p = append(p, t.mac(p)...)
	return base64.RawURLEncoding.EncodeToString(p)
}

// Verify checks a token at now and returns the correlation it is for. The
// MAC is checked first, so an expiry is believed only from a genuine token.
func (t *ReplyTokens) Verify(token string, now time.Time) (namespace, id string, err error) {
	if len(token) > 1024 {
		return "", "", ErrBadToken
	}
	b, err := base64.RawURLEncoding.DecodeString(token)
	if err != nil || len(b) < 10+sha256.Size+2 || b[0] != replyTokenVersion {
		return "", "", ErrBadToken
	}
	payload, mac := b[:len(b)-sha256.Size], b[len(b)-sha256.Size:]
	if !hmac.Equal(mac, t.mac(payload)) {
		return "", "", ErrBadToken
	}
	expiry := time.Unix(int64(binary.BigEndian.Uint64(payload[1:9])), 0)
	nsLen := int(payload[9])
	rest := payload[10:]
	if nsLen > len(rest) {
		return "", "", ErrBadToken
	}
	namespace, id = string(rest[:nsLen]), string(rest[nsLen:])
	if store.ValidateNamespace(namespace) != nil || store.ValidateID(id) != nil {
		return "", "", ErrBadToken
	}
	if !now.Before(expiry) {
		return namespace, id, ErrTokenExpired
	}
	return namespace, id, nil
}
