package httpapi

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"

	"github.com/corrstore/corrstore/store"
)

// Role is what a bearer token may do: each role may do what the ones below it may.
type Role int

const (
	// RolePublic routes need no bearer token (health checks, replies with a
	// signed reply token).
	RolePublic Role = iota
	// RoleReader reads correlations, outcomes and stats.
	RoleReader
	// RoleWriter also registers, replies, extends and cancels.
	RoleWriter
	// RoleAdmin also forces timeouts and redispatches: the operator's actions.
	RoleAdmin
)

func (r Role) String() string {
	switch r {
	case RolePublic:
		return "public"
	case RoleReader:
		return "reader"
	case RoleWriter:
		return "writer"
	case RoleAdmin:
		return "admin"
	}
	return fmt.Sprintf("Role(%d)", int(r))
}

func parseRole(s string) (Role, bool) {
	switch s {
	case "reader":
		return RoleReader, true
	case "writer":
		return RoleWriter, true
	case "admin":
		return RoleAdmin, true
	}
	return 0, false
}

// MinTokenLen is the shortest bearer token a token file may hold.
const MinTokenLen = 16

// Principal is who a request comes from: a token's role and namespaces.
type Principal struct {
	Name string // the token's name in the file, for logs; never the token
	Role Role
	// All: every namespace; otherwise only Namespaces.
	All        bool
	Namespaces []string
}

// Allows reports whether p may touch namespace ns.
func (p *Principal) Allows(ns string) bool {
	return p.All || slices.Contains(p.Namespaces, ns)
}

// openPrincipal is everyone when no token file is given.
var openPrincipal = &Principal{Name: "open", Role: RoleAdmin, All: true}

// Tokens are the bearer tokens a server accepts. They are kept as SHA-256
// hashes and compared in constant time.
type Tokens struct {
	entries []tokenEntry
}

type tokenEntry struct {
	hash [sha256.Size]byte
	p    *Principal
}

// ParseTokens reads a token file. Each line that is not blank or a comment
// (#) is
//
//	TOKEN ROLE NAMESPACES [NAME]
//
// TOKEN is at least MinTokenLen characters without spaces; ROLE is reader,
// writer or admin; NAMESPACES is * (every namespace) or a comma-separated
// list; NAME, optional, names the token in logs (default: line N).
func ParseTokens(r io.Reader) (*Tokens, error) {
	t := &Tokens{}
	seen := map[[sha256.Size]byte]int{}
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		if len(f) < 3 || len(f) > 4 {
			return nil, fmt.Errorf("line %d: want TOKEN ROLE NAMESPACES [NAME], got %d fields", n, len(f))
		}
		if len(f[0]) < MinTokenLen {
			return nil, fmt.Errorf("line %d: token is %d characters, at least %d are required", n, len(f[0]), MinTokenLen)
		}
		role, ok := parseRole(f[1])
		if !ok {
			return nil, fmt.Errorf("line %d: role %q is not one of reader, writer, admin", n, f[1])
		}
		p := &Principal{Name: fmt.Sprintf("line %d", n), Role: role}
		if len(f) == 4 {
			p.Name = f[3]
		}
		if f[2] == "*" {
			p.All = true
		} else {
			for ns := range strings.SplitSeq(f[2], ",") {
				if err := store.ValidateNamespace(ns); err != nil {
					return nil, fmt.Errorf("line %d: namespaces: %w", n, err)
				}
				p.Namespaces = append(p.Namespaces, ns)
			}
		}
		h := sha256.Sum256([]byte(f[0]))
		if prev, dup := seen[h]; dup {
			return nil, fmt.Errorf("line %d: the same token as line %d", n, prev)
		}
		seen[h] = n
		t.entries = append(t.entries, tokenEntry{hash: h, p: p})
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(t.entries) == 0 {
		return nil, fmt.Errorf("no tokens: an empty token file would lock everyone out")
	}
	return t, nil
}

// LoadTokens reads a token file (see ParseTokens). It returns a warning
// when the file is readable by others than its owner.
func LoadTokens(path string) (*Tokens, string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, "", fmt.Errorf("token file: %w", err)
	}
	t, err := ParseTokens(bytes.NewReader(b))
	if err != nil {
		return nil, "", fmt.Errorf("token file %s: %w", path, err)
	}
	var warn string
	if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o077 != 0 {
		warn = fmt.Sprintf("token file %s is readable by group or others (mode %v); chmod 600 it", path, fi.Mode().Perm())
	}
	return t, warn, nil
}

// Len is how many tokens there are.
func (t *Tokens) Len() int { return len(t.entries) }

// lookup finds the principal of a bearer token. It compares the token's
// hash with every entry, in constant time, whatever matches.
func (t *Tokens) lookup(token string) *Principal {
	h := sha256.Sum256([]byte(token))
	var found *Principal
	for _, e := range t.entries {
		if subtle.ConstantTimeCompare(h[:], e.hash[:]) == 1 {
			found = e.p
		}
	}
	return found
}

// bearer returns the token of an Authorization header in the Bearer scheme
// (the scheme name is case-insensitive, RFC 7235), or "".
func bearer(r *http.Request) string {
	scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return ""
	}
	return strings.TrimSpace(token)
}

// authenticate returns the request's principal, or an error answer.
func (s *Server) authenticate(r *http.Request, need Role, global bool) (*Principal, *apiError) {
	if need == RolePublic {
		return nil, nil
	}
	if s.cfg.Tokens == nil {
		return openPrincipal, nil
	}
	token := bearer(r)
	if token == "" {
		return nil, errorf(http.StatusUnauthorized, "unauthorized", "Authorization", "Authorization: a bearer token is required (Authorization: Bearer TOKEN)")
	}
	p := s.cfg.Tokens.lookup(token)
	if p == nil {
		return nil, errorf(http.StatusUnauthorized, "unauthorized", "Authorization", "Authorization: the bearer token is not known")
	}
	if p.Role < need {
		return nil, errorf(http.StatusForbidden, "forbidden", "", "this route needs the %s role; the token has %s", need, p.Role)
	}
	if global && !p.All {
		return nil, errorf(http.StatusForbidden, "forbidden", "", "this route needs a token for every namespace (*)")
	}
	return p, nil
}

// mayKnowInternals reports whether a public route may tell r's sender an
// internal error: in open mode, or to a bearer token for every namespace
// (an error text can name any tenant's refs or the store's paths).
func (s *Server) mayKnowInternals(r *http.Request) bool {
	if s.cfg.Tokens == nil {
		return true
	}
	token := bearer(r)
	if token == "" {
		return false
	}
	p := s.cfg.Tokens.lookup(token)
	return p != nil && p.All
}
