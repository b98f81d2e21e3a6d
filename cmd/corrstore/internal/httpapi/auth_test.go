package httpapi

import (
	"encoding/base64"
	"math/rand/v2"
	"net/http"
	"strings"
	"testing"
	"time"
)

// pathOf fills a route's wildcards.
func pathOf(rt Route, id, token string) string {
	return strings.NewReplacer("{id}", id, "{token}", token).Replace(rt.Path)
}

func TestEveryRouteNeedsABearerToken(t *testing.T) {
	e := newEnv(t, envOpts{auth: true})
	e.want(e.do("POST", "/v1/correlations", adminToken, obj{"id": "x"}), http.StatusCreated)
	for _, rt := range Routes() {
		for _, tok := range []string{"", "not-a-known-token-at-all"} {
			r := e.do(rt.Method, pathOf(rt, "x", "bogus"), tok, obj{})
			if rt.Role == RolePublic {
				if r.code == http.StatusUnauthorized && rt.Path != "/v1/replies/{token}" {
					t.Errorf("%s (public) answered 401", rt.Pattern())
				}
				continue
			}
			if r.code != http.StatusUnauthorized || r.header.Get("WWW-Authenticate") == "" {
				t.Errorf("%s with token %q: %d, want 401: %s", rt.Pattern(), tok, r.code, r.raw)
			}
		}
	}
}

func TestRolesAndNamespaces(t *testing.T) {
	e := newEnv(t, envOpts{auth: true})
	e.want(e.do("POST", "/v1/correlations", writerToken, obj{"id": "other", "namespace": "team-b"}), http.StatusCreated)
	mine := e.want(e.do("POST", "/v1/correlations", teamAWriter, obj{"id": "mine"}), http.StatusCreated)
	if mine.str("namespace") != "team-a" {
		t.Fatalf("a one-namespace token registers in its namespace: %s", mine.raw)
	}
	// A reader may read and never write: every route above its role is 403.
	for _, rt := range Routes() {
		if rt.Role == RolePublic {
			continue
		}
		r := e.do(rt.Method, pathOf(rt, "mine", "x"), readerToken, obj{})
		switch {
		case rt.Role > RoleReader && r.code != http.StatusForbidden:
			t.Errorf("reader on %s: %d, want 403: %s", rt.Pattern(), r.code, r.raw)
		case rt.Role <= RoleReader && (r.code == http.StatusForbidden || r.code == http.StatusUnauthorized):
			t.Errorf("reader on %s: %d", rt.Pattern(), r.code)
		}
	}
	// A writer cannot do the operator's actions.
	e.want(e.do("POST", "/v1/correlations/mine/expire", teamAWriter, nil), http.StatusForbidden)
	e.want(e.do("POST", "/v1/correlations/mine/redispatch", writerToken, nil), http.StatusForbidden)

	// Another namespace's record is not found, whatever the route.
	for _, rt := range Routes() {
		if !strings.Contains(rt.Path, "{id}") || rt.Role > RoleWriter {
			continue
		}
		body := any(obj{})
		if strings.HasSuffix(rt.Path, "/extend") {
			body = obj{"timeout": "1m"}
		}
		tok := teamAWriter
		if rt.Method == "GET" {
			tok = teamAReader
		}
		e.wantError(e.do(rt.Method, pathOf(rt, "other", ""), tok, body), http.StatusNotFound, "id")
	}
	// An unknown ID is not buffered for a token limited to some namespaces.
	e.want(e.do("POST", "/v1/correlations/unknown/replies", teamAWriter, obj{"body": 1}), http.StatusNotFound)
	e.want(e.do("POST", "/v1/correlations/unknown/replies", writerToken, obj{"body": 1}), http.StatusOK)
	e.wantError(e.do("POST", "/v1/correlations", teamAWriter, obj{"namespace": "team-b"}), http.StatusForbidden, "namespace")
	e.want(e.do("GET", "/v1/correlations?namespace=team-b", teamAReader, nil), http.StatusForbidden)
	e.wantError(e.do("GET", "/v1/correlations", teamAReader, nil), http.StatusBadRequest, "namespace")
	l := e.want(e.do("GET", "/v1/correlations", teamAWriter, nil), http.StatusOK)
	if items := l.field("items").([]any); len(items) != 1 || items[0].(obj)["id"] != "mine" {
		t.Errorf("list for team-a: %s", l.raw)
	}
	s := e.want(e.do("GET", "/v1/stats", teamAReader, nil), http.StatusOK)
	if ns := s.field("namespaces").(obj); len(ns) != 2 || ns["team-b"] != nil {
		t.Errorf("stats for team-a,team-x: %s", s.raw)
	}
	e.want(e.do("GET", "/metrics", teamAReader, nil), http.StatusForbidden)
}

func TestParseTokensRejects(t *testing.T) {
	for name, file := range map[string]string{
		"short":     "short admin *",
		"role":      "0123456789abcdefgh root *",
		"namespace": "0123456789abcdefgh admin Team-A",
		"fields":    "0123456789abcdefgh admin",
		"duplicate": "0123456789abcdefgh admin *\n0123456789abcdefgh reader *",
		"empty":     "# nothing\n",
	} {
		if _, err := ParseTokens(strings.NewReader(file)); err == nil {
			t.Errorf("%s: accepted %q", name, file)
		}
	}
}

func TestReplyTokens(t *testing.T) {
	e := newEnv(t, envOpts{auth: true})
	a := e.want(e.do("POST", "/v1/correlations", writerToken, obj{"id": "a", "pattern": "gather", "expect": 1000, "timeout": "1h"}), http.StatusCreated)
	b := e.want(e.do("POST", "/v1/correlations", writerToken, obj{"id": "b", "namespace": "team-b", "timeout": "1h"}), http.StatusCreated)
	ta, tb := a.str("reply_token"), b.str("reply_token")
	rt := e.api.cfg.ReplyTokens

	ra, _ := base64.RawURLEncoding.DecodeString(ta)
	rb, _ := base64.RawURLEncoding.DecodeString(tb)
	rng := rand.New(rand.NewPCG(1, 2))
	forge := func(i int) string {
		x := append([]byte(nil), ra...)
		switch i % 6 {
		case 0: // flip one bit anywhere
			j := rng.IntN(len(x))
			x[j] ^= 1 << rng.IntN(8)
		case 1: // b's payload with a's MAC
			x = append(append([]byte(nil), rb[:len(rb)-32]...), ra[len(ra)-32:]...)
		case 2: // a's payload naming b
			x = append(append(append([]byte(nil), ra[:10]...), []byte("team-bb")...), ra[len(ra)-32:]...)
			x[9] = 6
		case 3: // random bytes of the right length
			for j := range x {
				x[j] = byte(rng.Uint32())
			}
		case 4: // cut
			x = x[:rng.IntN(len(x))]
		case 5: // later expiry
			x[1+rng.IntN(8)]++
		}
		return base64.RawURLEncoding.EncodeToString(x)
	}
	now := e.clock.Now()
	for i := range 10000 {
		f := forge(i)
		if f == ta {
			continue
		}
		if ns, id, err := rt.Verify(f, now); err == nil {
			t.Fatalf("forged token %d accepted for %s/%s", i, ns, id)
		}
	}
	// Over HTTP too, a sample: 401 and nothing delivered.
	for i := range 300 {
		r := e.do("POST", "/v1/replies/"+forge(i), "", obj{"from": "x", "body": i})
		if r.code != http.StatusUnauthorized && r.code != http.StatusNotFound {
			t.Fatalf("forged token %d: %d %s", i, r.code, r.raw)
		}
	}
	g := e.want(e.do("GET", "/v1/correlations/a", readerToken, nil), http.StatusOK)
	if n := len(g.field("replies").([]any)); n != 0 {
		t.Fatalf("forged tokens delivered %d replies", n)
	}
	// The genuine token works for its correlation only, with no bearer token.
	d := e.want(e.do("POST", "/v1/replies/"+ta, "", obj{"from": "svc", "body": "ok"}), http.StatusOK)
	if d.str("correlation.id") != "a" {
		t.Fatalf("deliver: %s", d.raw)
	}
	// Past deadline + grace it has expired: 410.
	e.clock.Add(time.Hour + DefaultReplyTokenGrace)
	e.wantError(e.do("POST", "/v1/replies/"+tb, "", obj{"body": 1}), http.StatusGone, "token")
}
