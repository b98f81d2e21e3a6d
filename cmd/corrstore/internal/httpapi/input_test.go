package httpapi

import (
	"net/http"
	"strings"
	"testing"
)

func TestBadInputNamesTheField(t *testing.T) {
	e := newEnv(t, envOpts{maxBody: 4096})
	e.want(e.do("POST", "/v1/correlations", "", obj{"id": "x"}), http.StatusCreated)
	big := `{"id":"y","labels":{"k":"` + strings.Repeat("v", 5000) + `"}}`
	r := e.do("POST", "/v1/correlations", "", big)
	e.wantError(r, http.StatusRequestEntityTooLarge, "body")
	if !strings.Contains(r.str("error.message"), "4096") {
		t.Errorf("413 does not give the limit: %s", r.raw)
	}
	e.wantError(e.do("POST", "/v1/correlations/x/replies", "", `{"body":"`+strings.Repeat("x", 5000)+`"}`), http.StatusRequestEntityTooLarge, "body")

	for _, c := range []struct {
		name, method, path, body string
		code                     int
		field                    string
	}{
		{"bad json", "POST", "/v1/correlations", `{"id": `, 400, "body"},
		{"not json", "POST", "/v1/correlations", `hello`, 400, "body"},
		{"empty", "POST", "/v1/correlations", ``, 400, "body"},
		{"trailing", "POST", "/v1/correlations", `{} {}`, 400, "body"},
		{"unknown field", "POST", "/v1/correlations", `{"id":"z","timeoutt":"3s"}`, 400, "timeoutt"},
		{"unknown nested", "POST", "/v1/correlations", `{"callback":{"handler":"h","date":1}}`, 400, "callback.date"},
		{"wrong type", "POST", "/v1/correlations", `{"expect":"two"}`, 400, "expect"},
		{"bad duration", "POST", "/v1/correlations", `{"timeout":"5 parsecs"}`, 400, "timeout"},
		{"negative duration", "POST", "/v1/correlations", `{"timeout":"-5s"}`, 400, "timeout"},
		{"bad deadline", "POST", "/v1/correlations", `{"deadline":"tomorrow"}`, 400, "deadline"},
		{"deadline too far", "POST", "/v1/correlations", `{"deadline":"2099-01-01T00:00:00Z"}`, 400, "deadline"},
		{"bad id", "POST", "/v1/correlations", `{"id":"a b"}`, 400, "id"},
		{"dot id", "POST", "/v1/correlations", `{"id":"."}`, 400, "id"},
		{"dot dot id", "POST", "/v1/correlations", `{"id":".."}`, 400, "id"},
		{"bad pattern", "POST", "/v1/correlations", `{"pattern":"fanout"}`, 400, "pattern"},
		{"gather without expect", "POST", "/v1/correlations", `{"pattern":"gather"}`, 400, "expect"},
		{"bad namespace", "POST", "/v1/correlations", `{"namespace":"Team A"}`, 400, "namespace"},
		{"reply seq", "POST", "/v1/correlations/x/replies", `{"seq":-1}`, 400, "reply.seq"},
		{"reply unknown", "POST", "/v1/correlations/x/replies", `{"bdy":1}`, 400, "bdy"},
		{"extend both", "POST", "/v1/correlations/x/extend", `{"timeout":"1m","deadline":"2026-01-02T03:05:05Z"}`, 400, "deadline"},
		{"extend bad", "POST", "/v1/correlations/x/extend", `{"timeout":"soon"}`, 400, "timeout"},
		{"cancel unknown", "POST", "/v1/correlations/x/cancel", `{"why":"x"}`, 400, "why"},
		{"wait", "GET", "/v1/correlations/x/outcome?wait=abc", ``, 400, "wait"},
		{"wait param", "GET", "/v1/correlations/x/outcome?timeout=1s", ``, 400, "timeout"},
		{"limit zero", "GET", "/v1/correlations?limit=0", ``, 400, "limit"},
		{"limit big", "GET", "/v1/correlations?limit=5000", ``, 400, "limit"},
		{"limit word", "GET", "/v1/correlations?limit=ten", ``, 400, "limit"},
		{"older_than", "GET", "/v1/correlations?older_than=old", ``, 400, "older_than"},
		{"state", "GET", "/v1/correlations?state=done", ``, 400, "state"},
		{"dispatch", "GET", "/v1/correlations?dispatch=x", ``, 400, "dispatch"},
		{"order", "GET", "/v1/correlations?order=up", ``, 400, "order"},
		{"cursor", "GET", "/v1/correlations?cursor=!!", ``, 400, "cursor"},
		{"label", "GET", "/v1/correlations?label=novalue", ``, 400, "label"},
		{"created_after", "GET", "/v1/correlations?created_after=yesterday", ``, 400, "created_after"},
		{"unknown param", "GET", "/v1/correlations?stat=pending", ``, 400, "stat"},
		{"stats namespace", "GET", "/v1/stats?namespace=A!", ``, 400, "namespace"},

		// Field names are exact; encoding/json alone would fold case.
		{"ID", "POST", "/v1/correlations", `{"ID":"z"}`, 400, "ID"},
		{"Timeout", "POST", "/v1/correlations", `{"id":"z","Timeout":"1s"}`, 400, "Timeout"},
		{"nested case", "POST", "/v1/correlations", `{"callback":{"Handler":"h"}}`, 400, "callback.Handler"},
		{"reply Body", "POST", "/v1/correlations/x/replies", `{"Body":1}`, 400, "Body"},
		{"escaped name", "POST", "/v1/correlations", `{"\u0049D":"z"}`, 400, "ID"},
		{"repeated name", "POST", "/v1/correlations", `{"id":"a","id":"b"}`, 400, "id"},
		{"repeated label", "POST", "/v1/correlations", `{"labels":{"k":"a","k":"b"}}`, 400, "labels.k"},
		{"not an object", "POST", "/v1/correlations", `["id"]`, 400, "body"},
		// Invalid UTF-8 anywhere, named.
		{"utf8 id", "POST", "/v1/correlations", "{\"id\":\"a\xffb\"}", 400, "id"},
		{"utf8 label", "POST", "/v1/correlations", "{\"labels\":{\"k\":\"\xc3\"}}", 400, "labels.k"},
		{"utf8 data", "POST", "/v1/correlations", "{\"callback\":{\"handler\":\"h\",\"data\":{\"x\":[\"\xed\xa0\x80\"]}}}", 400, "callback.data"},
		{"utf8 body", "POST", "/v1/correlations/x/replies", "{\"body\":\"caf\xe9\"}", 400, "body"},
		{"utf8 key", "POST", "/v1/correlations", "{\"i\xffd\":1}", 400, "body"},
		{"utf8 reason", "POST", "/v1/correlations/x/cancel", "{\"reason\":\"\xfe\"}", 400, "reason"},
		// Control characters in name-like fields (the store refuses them).
		{"control id", "POST", "/v1/correlations", `{"id":"a\u0007b"}`, 400, "id"},
		{"control destination", "POST", "/v1/correlations", `{"destination":"q\u001b[2J"}`, 400, "destination"},
		{"control label", "POST", "/v1/correlations", `{"labels":{"k":"v\nforged line"}}`, 400, "labels.k"},
		{"control reason", "POST", "/v1/correlations/x/cancel", `{"reason":"a\rb"}`, 400, "reason"},
		{"control from", "POST", "/v1/correlations/x/replies", `{"from":"\u0000"}`, 400, "reply.from"},
		// Timeouts are positive.
		{"zero timeout", "POST", "/v1/correlations", `{"timeout":"0s"}`, 400, "timeout"},
		{"zero extend", "POST", "/v1/correlations/x/extend", `{"timeout":"0s"}`, 400, "timeout"},
		{"negative extend", "POST", "/v1/correlations/x/extend", `{"timeout":"-1m"}`, 400, "timeout"},
		// Bytes as JSON or base64, not both.
		{"body twice", "POST", "/v1/correlations/x/replies", `{"body":1,"body_base64":"AQ=="}`, 400, "body"},
		{"bad base64", "POST", "/v1/correlations/x/replies", `{"body_base64":"not base64!"}`, 400, "body_base64"},
		{"data twice", "POST", "/v1/correlations", `{"callback":{"handler":"h","data":1,"data_base64":"AQ=="}}`, 400, "callback.data"},
		// Query strings.
		{"bad escape", "GET", "/v1/correlations?state=%zz", ``, 400, "state"},
		{"bad key escape", "GET", "/v1/correlations?%zz=1", ``, 400, "query"},
		{"semicolon", "GET", "/v1/correlations?state=pending;limit=1", ``, 400, "state"},
		{"repeated state", "GET", "/v1/correlations?state=pending&state=completed", ``, 400, "state"},
		{"repeated namespace", "GET", "/v1/correlations/x?namespace=a&namespace=b", ``, 400, "namespace"},
		{"repeated wait", "GET", "/v1/correlations/x/outcome?wait=1s&wait=2s", ``, 400, "wait"},
		{"query on get", "GET", "/v1/correlations/x?verbose=1", ``, 400, "verbose"},
		{"query on reply", "POST", "/v1/correlations/x/replies?from=y", `{}`, 400, "from"},
		{"query on register", "POST", "/v1/correlations?namespace=a", `{}`, 400, "namespace"},
		{"utf8 query", "GET", "/v1/correlations?owner=%ff", ``, 400, "owner"},
		{"control query", "GET", "/v1/correlations?owner=a%0Ab", ``, 400, "owner"},
		{"namespace query", "GET", "/v1/correlations/x?namespace=Team!", ``, 400, "namespace"},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := e.do(c.method, c.path, "", c.body)
			e.wantError(r, c.code, c.field)
		})
	}
}

func TestRepeatableLabelAndExactNamesAccepted(t *testing.T) {
	e := newEnv(t, envOpts{})
	e.want(e.do("POST", "/v1/correlations", "", obj{"id": "l", "labels": obj{"a": "1", "b": "2"}}), http.StatusCreated)
	l := e.want(e.do("GET", "/v1/correlations?label=a=1&label=b=2", "", nil), http.StatusOK)
	if items := l.field("items").([]any); len(items) != 1 {
		t.Errorf("two labels: %s", l.raw)
	}
	l = e.want(e.do("GET", "/v1/correlations?label=a=1&label=b=3", "", nil), http.StatusOK)
	if items := l.field("items").([]any); len(items) != 0 {
		t.Errorf("labels filter AND: %s", l.raw)
	}
	// A body with any content, names and case included, is the caller's.
	r := e.want(e.do("POST", "/v1/correlations/l/replies", "", `{"body":{"ID":1,"id":2,"Id":{"ID":[1]}}}`), http.StatusOK)
	if r.str("status") != "completed" {
		t.Errorf("reply: %s", r.raw)
	}
}
