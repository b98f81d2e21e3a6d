package httpapi

import (
	"net/http"
	"strings"
	"testing"

	"github.com/corrstore/corrstore/store"
)

// perIDRoutes are the routes that address one correlation by {id}, with a
// body each accepts.
func perIDRoutes(maxRole Role) []struct {
	rt   Route
	body any
} {
	var out []struct {
		rt   Route
		body any
	}
	for _, rt := range Routes() {
		if !strings.Contains(rt.Path, "{id}") || rt.Role > maxRole {
			continue
		}
		var body any
		switch {
		case strings.HasSuffix(rt.Path, "/extend"):
			body = obj{"timeout": "1m"}
		case strings.HasSuffix(rt.Path, "/replies"):
			body = obj{"body": 1}
		}
		out = append(out, struct {
			rt   Route
			body any
		}{rt, body})
	}
	return out
}

// A token that may not touch a namespace gets, for an id there, the very
// answer a missing id gets, and the record is not read.
func TestForeignIDIsAMissingID(t *testing.T) {
	e := newEnv(t, envOpts{auth: true})
	foreign := store.Ref{Namespace: "team-b", ID: "secret-order"}
	before := map[string]string{}
	for _, r := range perIDRoutes(RoleWriter) {
		path := pathOf(r.rt, foreign.ID, "") + "?namespace=team-b"
		got := e.want(e.do(r.rt.Method, path, teamAWriter, r.body), http.StatusNotFound)
		before[r.rt.Pattern()] = string(got.raw)
	}
	e.want(e.do("POST", "/v1/correlations", writerToken, obj{"id": foreign.ID, "namespace": "team-b", "callback": obj{"handler": "h", "data": strings.Repeat("x", 50000)}}), http.StatusCreated)
	reads := e.st.touched(foreign)
	for _, r := range perIDRoutes(RoleWriter) {
		path := pathOf(r.rt, foreign.ID, "") + "?namespace=team-b"
		got := e.want(e.do(r.rt.Method, path, teamAWriter, r.body), http.StatusNotFound)
		if string(got.raw) != before[r.rt.Pattern()] {
			t.Errorf("%s: a foreign record answers\n%s\na missing one\n%s", r.rt.Pattern(), got.raw, before[r.rt.Pattern()])
		}
		if r.rt.Method != "GET" {
			continue // a writer's reply to a missing id is buffered
		}
		// A token that may read team-b gets the same body for a missing id there.
		missing := e.want(e.do(r.rt.Method, pathOf(r.rt, "no-such", "")+"?namespace=team-b", writerToken, r.body), http.StatusNotFound)
		if want := strings.ReplaceAll(before[r.rt.Pattern()], foreign.ID, "no-such"); string(missing.raw) != want {
			t.Errorf("%s: missing answers %s, want %s", r.rt.Pattern(), missing.raw, want)
		}
	}
	if n := e.st.touched(foreign) - reads; n != 0 {
		t.Errorf("requests of a token that may not see namespace team-b read its record %d times", n)
	}
}

// The same id in two namespaces names two correlations.
func TestIDsAreScopedToTheirNamespace(t *testing.T) {
	e := newEnv(t, envOpts{auth: true})
	a := e.want(e.do("POST", "/v1/correlations", teamAWriter, obj{"id": "order-42", "destination": "a"}), http.StatusCreated)
	// Namespace b registering the same id is not a conflict and learns nothing.
	b := e.want(e.do("POST", "/v1/correlations", writerToken, obj{"id": "order-42", "namespace": "team-b", "destination": "b"}), http.StatusCreated)
	if a.str("namespace") != "team-a" || b.str("namespace") != "team-b" || a.str("reply_token") == b.str("reply_token") {
		t.Fatalf("a: %s\nb: %s", a.raw, b.raw)
	}
	if loc := b.header.Get("Location"); loc != "/v1/correlations/order-42?namespace=team-b" {
		t.Errorf("Location %q", loc)
	}
	e.want(e.do("POST", "/v1/correlations/order-42/replies?namespace=team-b", writerToken, obj{"body": "b"}), http.StatusOK)
	ga := e.want(e.do("GET", "/v1/correlations/order-42", teamAWriter, nil), http.StatusOK)
	gb := e.want(e.do("GET", "/v1/correlations/order-42?namespace=team-b", readerToken, nil), http.StatusOK)
	if ga.str("state") != "pending" || gb.str("state") != "completed" || ga.str("destination") != "a" {
		t.Errorf("a: %s\nb: %s", ga.raw, gb.raw)
	}
	// An admin without ?namespace= addresses default, where there is no order-42.
	e.wantError(e.do("GET", "/v1/correlations/order-42", adminToken, nil), http.StatusNotFound, "id")
	// A list cursor carries the namespace: paging over every namespace
	// sees both, once each.
	seen := map[string]bool{}
	cursor := ""
	for range 5 {
		l := e.want(e.do("GET", "/v1/correlations?namespace=*&limit=1&cursor="+cursor, adminToken, nil), http.StatusOK)
		for _, it := range l.field("items").([]any) {
			m := it.(obj)
			key := m["namespace"].(string) + "/" + m["id"].(string)
			if seen[key] {
				t.Errorf("%s listed twice", key)
			}
			seen[key] = true
		}
		if cursor = l.str("next_cursor"); cursor == "" {
			break
		}
	}
	if !seen["team-a/order-42"] || !seen["team-b/order-42"] {
		t.Errorf("listed %v", seen)
	}
}
