package httpapi

import (
	"net/http"
	"strings"
	"testing"
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
		e.wantError(e.do(rt.Method, pathOf(rt, "other", "")+"?namespace=team-b", tok, body), http.StatusNotFound, "id")
	}
	// An unknown ID is buffered in the token's own namespace, never another's.
	if r := e.want(e.do("POST", "/v1/correlations/unknown/replies", teamAWriter, obj{"body": 1}), http.StatusOK); r.str("status") != "buffered" {
		t.Errorf("early reply of team-a: %s", r.raw)
	}
	e.wantError(e.do("POST", "/v1/correlations/unknown/replies?namespace=team-b", teamAWriter, obj{"body": 1}), http.StatusNotFound, "id")
	e.want(e.do("POST", "/v1/correlations/unknown/replies", writerToken, obj{"body": 1}), http.StatusOK)
	e.wantError(e.do("POST", "/v1/correlations", teamAWriter, obj{"namespace": "team-b"}), http.StatusForbidden, "namespace")
	e.want(e.do("GET", "/v1/correlations?namespace=team-b", teamAReader, nil), http.StatusForbidden)
	// Two namespaces and none asked: the rule says default, which it may not read.
	e.wantError(e.do("GET", "/v1/correlations", teamAReader, nil), http.StatusForbidden, "namespace")
	e.wantError(e.do("GET", "/v1/correlations?namespace=*", teamAReader, nil), http.StatusBadRequest, "namespace")
	for _, q := range []string{"", "?namespace=*", "?namespace=team-a"} {
		l := e.want(e.do("GET", "/v1/correlations"+q, teamAWriter, nil), http.StatusOK)
		if items := l.field("items").([]any); len(items) != 1 || items[0].(obj)["id"] != "mine" {
			t.Errorf("list%s for team-a: %s", q, l.raw)
		}
	}
	s := e.want(e.do("GET", "/v1/stats?namespace=*", teamAReader, nil), http.StatusOK)
	if ns := s.field("namespaces").(obj); len(ns) != 2 || ns["team-b"] != nil {
		t.Errorf("stats for team-a,team-x: %s", s.raw)
	}
	if s.field("early_replies") != nil {
		t.Errorf("a scoped token is shown the store's early-reply count, other tenants' included: %s", s.raw)
	}
	e.want(e.do("GET", "/v1/stats", teamAReader, nil), http.StatusForbidden)
	s = e.want(e.do("GET", "/v1/stats?namespace=*", adminToken, nil), http.StatusOK)
	if ns := s.field("namespaces").(obj); ns["team-a"] == nil || ns["team-b"] == nil || s.field("early_replies") == nil {
		t.Errorf("stats of every namespace: %s", s.raw)
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

func TestBearerSchemeIsCaseInsensitive(t *testing.T) {
	e := newEnv(t, envOpts{auth: true})
	for _, scheme := range []string{"Bearer", "bearer", "BEARER", "bEaReR"} {
		e.want(e.doAuth("GET", "/v1/stats", scheme+" "+readerToken, nil, true), http.StatusOK)
	}
	for _, auth := range []string{"Basic " + readerToken, "Bearer", readerToken, "Bearer" + readerToken} {
		e.want(e.doAuth("GET", "/v1/stats", auth, nil, true), http.StatusUnauthorized)
	}
}
