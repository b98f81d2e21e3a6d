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
		{"unknown nested", "POST", "/v1/correlations", `{"callback":{"handler":"h","date":1}}`, 400, "date"},
		{"wrong type", "POST", "/v1/correlations", `{"expect":"two"}`, 400, "expect"},
		{"bad duration", "POST", "/v1/correlations", `{"timeout":"5 parsecs"}`, 400, "timeout"},
		{"negative duration", "POST", "/v1/correlations", `{"timeout":"-5s"}`, 400, "timeout"},
		{"bad deadline", "POST", "/v1/correlations", `{"deadline":"tomorrow"}`, 400, "deadline"},
		{"deadline too far", "POST", "/v1/correlations", `{"deadline":"2099-01-01T00:00:00Z"}`, 400, "deadline"},
		{"bad id", "POST", "/v1/correlations", `{"id":"a b"}`, 400, "id"},
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
	} {
		t.Run(c.name, func(t *testing.T) {
			r := e.do(c.method, c.path, "", c.body)
			e.wantError(r, c.code, c.field)
		})
	}
}
