package httpapi

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/corrstore/corrstore/store"
)

// call is one request to a route: who sent it and its checked query.
type call struct {
	w http.ResponseWriter
	r *http.Request
	p *Principal // nil on public routes
	q url.Values
}

// get returns a query parameter (given at most once: parseQuery checked).
func (c *call) get(name string) string { return c.q.Get(name) }

// repeatable are the query parameters that may be given more than once.
var repeatable = []string{"label"}

// parseQuery reads a query string strictly: a malformed pair, a parameter
// the route does not take, a repeated one (other than label) or a value
// that is not printable UTF-8 is 400 naming it. net/url's parser would drop
// a malformed pair silently and take the first of repeated ones.
func parseQuery(raw string, allowed []string) (url.Values, error) {
	q := url.Values{}
	if raw == "" {
		return q, nil
	}
	for pair := range strings.SplitSeq(raw, "&") {
		if pair == "" {
			continue
		}
		rawKey, rawValue, _ := strings.Cut(pair, "=")
		key, err := url.QueryUnescape(rawKey)
		if err != nil || strings.Contains(rawKey, ";") {
			return nil, badField("query", "%q is not a KEY=VALUE pair of a query string (RFC 3986 escapes, & between pairs)", truncate(pair, 64))
		}
		if !slices.Contains(allowed, key) {
			if len(allowed) == 0 {
				return nil, badField(printable(key), "unknown query parameter; this route takes none")
			}
			return nil, badField(printable(key), "unknown query parameter; this route takes %s", strings.Join(allowed, ", "))
		}
		value, err := url.QueryUnescape(rawValue)
		if err != nil || strings.Contains(rawValue, ";") {
			return nil, badField(key, "%q is not a valid query value (RFC 3986 escapes)", truncate(rawValue, 64))
		}
		if err := checkText(value); err != "" {
			return nil, badField(key, "%s", err)
		}
		if q.Has(key) && !slices.Contains(repeatable, key) {
			return nil, badField(key, "given more than once; only %s may be repeated", strings.Join(repeatable, ", "))
		}
		q.Add(key, value)
	}
	return q, nil
}

// checkText says what is wrong with s as a name-like input, or "".
func checkText(s string) string {
	if !utf8.ValidString(s) {
		return "is not valid UTF-8"
	}
	for i, r := range s {
		if unicode.IsControl(r) {
			return fmt.Sprintf("holds control character %U at byte %d", r, i)
		}
	}
	return ""
}

// namespace applies the namespace rule to the namespace a request gave
// (ns, possibly ""): the request's, else the token's only namespace when
// it has exactly one, else store.DefaultNamespace. A namespace that is not
// valid is 400.
func namespace(p *Principal, ns string) (string, error) {
	if ns == "" {
		ns = store.DefaultNamespace
		if p != nil && !p.All && len(p.Namespaces) == 1 {
			ns = p.Namespaces[0]
		}
	}
	if err := store.ValidateNamespace(ns); err != nil {
		return "", err
	}
	return ns, nil
}

// ref returns the correlation a per-id route addresses: the {id} of the
// path in the namespace of ?namespace= (see namespace). A namespace the
// token may not touch answers exactly what a missing record does, before
// any record is read.
func (c *call) ref() (store.Ref, error) {
	id := c.r.PathValue("id")
	if err := store.ValidateID(id); err != nil {
		return store.Ref{}, err
	}
	ns, err := namespace(c.p, c.get("namespace"))
	if err != nil {
		return store.Ref{}, err
	}
	ref := store.Ref{Namespace: ns, ID: id}
	if !c.p.Allows(ns) {
		return store.Ref{}, notFound(ref)
	}
	return ref, nil
}

// printable makes a name from a request safe to echo in a message.
func printable(s string) string {
	if checkText(s) == "" {
		return truncate(s, 64)
	}
	return truncate(strings.ToValidUTF8(strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return '?'
		}
		return r
	}, s), "?"), 64)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}
