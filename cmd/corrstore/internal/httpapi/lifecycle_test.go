package httpapi

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestLifeOfACorrelation(t *testing.T) {
	e := newEnv(t, envOpts{})
	reg := obj{"id": "order-42", "timeout": "30s", "destination": "payments", "reply_to": "orders.replies",
		"callback": obj{"handler": "resume-order", "data": obj{"order": 42}}, "labels": obj{"workflow": "w1"}}
	r := e.want(e.do("POST", "/v1/correlations", "", reg), http.StatusCreated)
	if r.str("state") != "pending" || r.str("reply_token") == "" || r.header.Get("Location") != "/v1/correlations/order-42?namespace=default" {
		t.Fatalf("register answer: %s", r.raw)
	}
	if got := r.str("deadline"); got != epoch.Add(30*time.Second).Format(time.RFC3339) {
		t.Errorf("deadline %s", got)
	}
	if d := r.field("callback.data.order"); d != float64(42) {
		t.Errorf("callback.data round trip: %s", r.raw)
	}
	token := r.str("reply_token")
	// Repeating the registration is idempotent.
	r2 := e.want(e.do("POST", "/v1/correlations", "", reg), http.StatusOK)
	if r2.str("reply_token") != token {
		t.Errorf("repeat gave another reply token")
	}
	reg["destination"] = "elsewhere"
	e.wantError(e.do("POST", "/v1/correlations", "", reg), http.StatusConflict, "")

	g := e.want(e.do("GET", "/v1/correlations/order-42", "", nil), http.StatusOK)
	if g.header.Get("ETag") != `"1"` {
		t.Errorf("ETag %q, want \"1\"", g.header.Get("ETag"))
	}
	e.want(e.do("GET", "/v1/correlations/order-42/outcome", "", nil), http.StatusAccepted)

	// A long poll wakes on the reply.
	waiting := e.waiting
	done := make(chan resp, 1)
	go func() { done <- e.do("GET", "/v1/correlations/order-42/outcome?wait=30s", "", nil) }()
	<-waiting
	start := time.Now()
	d := e.want(e.do("POST", "/v1/replies/"+token, "", obj{"id": "r1", "body": obj{"paid": true}}), http.StatusOK)
	if d.str("status") != "completed" || d.str("correlation.state") != "completed" {
		t.Fatalf("deliver: %s", d.raw)
	}
	o := e.want(<-done, http.StatusOK)
	if time.Since(start) > 10*time.Second || o.str("outcome.state") != "completed" {
		t.Fatalf("long poll: %s", o.raw)
	}
	replies := o.field("replies").([]any)
	if len(replies) != 1 || replies[0].(obj)["body"].(obj)["paid"] != true {
		t.Errorf("replies: %s", o.raw)
	}

	// The same reply again is a duplicate; a new one is late.
	e.want(e.do("POST", "/v1/correlations/order-42/replies", "", obj{"id": "r1", "body": obj{"paid": true}}), http.StatusOK)
	dup := e.do("POST", "/v1/correlations/order-42/replies", "", obj{"id": "r1", "body": obj{"paid": true}})
	if dup.str("status") != "duplicate" {
		t.Errorf("duplicate: %s", dup.raw)
	}
	late := e.want(e.do("POST", "/v1/correlations/order-42/replies", "", obj{"id": "r2", "body": "again"}), http.StatusConflict)
	if late.str("status") != "late" || late.str("outcome.state") != "completed" || late.str("correlation.id") != "order-42" {
		t.Errorf("late: %s", late.raw)
	}
	for _, op := range []string{"extend", "cancel", "expire"} {
		body := any(nil)
		if op == "extend" {
			body = obj{"timeout": "1m"}
		}
		e.wantError(e.do("POST", "/v1/correlations/order-42/"+op, "", body), http.StatusConflict, "")
	}
	// The outcome waits for dispatch to its callback handler: a redispatch is a no-op.
	rd := e.want(e.do("POST", "/v1/correlations/order-42/redispatch", "", nil), http.StatusOK)
	if rd.str("dispatch.state") != "pending" {
		t.Errorf("redispatch: %s", rd.raw)
	}

	l := e.want(e.do("GET", "/v1/correlations?state=completed&label=workflow=w1&limit=10", "", nil), http.StatusOK)
	if items := l.field("items").([]any); len(items) != 1 {
		t.Errorf("list: %s", l.raw)
	}
	s := e.want(e.do("GET", "/v1/stats", "", nil), http.StatusOK)
	if s.field("total.states.completed") != float64(1) {
		t.Errorf("stats: %s", s.raw)
	}
	e.want(e.do("GET", "/v1/correlations/nope", "", nil), http.StatusNotFound)
	e.want(e.do("GET", "/healthz", "", nil), http.StatusOK)
	e.want(e.do("GET", "/readyz", "", nil), http.StatusOK)
}

func TestExtendCancelExpireAndTimeout(t *testing.T) {
	e := newEnv(t, envOpts{})
	for _, id := range []string{"a", "b", "c"} {
		e.want(e.do("POST", "/v1/correlations", "", obj{"id": id, "pattern": "gather", "expect": 3, "quorum": 1, "timeout": "10s"}), http.StatusCreated)
	}
	x := e.want(e.do("POST", "/v1/correlations/a/extend", "", obj{"timeout": "1h"}), http.StatusOK)
	if x.str("deadline") != epoch.Add(time.Hour).Format(time.RFC3339) || x.str("reply_token") == "" {
		t.Errorf("extend: %s", x.raw)
	}
	e.wantError(e.do("POST", "/v1/correlations/a/extend", "", obj{}), http.StatusBadRequest, "deadline")
	c := e.want(e.do("POST", "/v1/correlations/a/cancel", "", obj{"reason": "send failed"}), http.StatusOK)
	if c.str("state") != "cancelled" || c.str("outcome.reason") != "send failed" {
		t.Errorf("cancel: %s", c.raw)
	}
	// b: a quorum reply, then the operator forces the deadline outcome.
	e.want(e.do("POST", "/v1/correlations/b/replies", "", obj{"from": "svc-1", "body": 1}), http.StatusOK)
	x = e.want(e.do("POST", "/v1/correlations/b/expire", "", nil), http.StatusOK)
	if x.str("state") != "completed" || x.field("outcome.partial") != true {
		t.Errorf("expire with quorum: %s", x.raw)
	}
	x = e.want(e.do("POST", "/v1/correlations/c/expire", "", obj{"reason": "stuck"}), http.StatusOK)
	if x.str("state") != "timed_out" {
		t.Errorf("expire: %s", x.raw)
	}
	// No callback handler: nothing to redispatch.
	e.want(e.do("POST", "/v1/correlations/c/redispatch", "", nil), http.StatusConflict)
	// A long poll answers 202 when its wait runs out, and ends with its client.
	e.want(e.do("POST", "/v1/correlations", "", obj{"id": "d", "timeout": "10s"}), http.StatusCreated)
	waiting := e.waiting
	e.want(e.do("GET", "/v1/correlations/d/outcome?wait=1ms", "", nil), http.StatusAccepted)
	<-waiting
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		req, _ := http.NewRequestWithContext(ctx, "GET", e.srv.URL+"/v1/correlations/d/outcome?wait=30s", nil)
		res, err := e.srv.Client().Do(req)
		if err == nil {
			res.Body.Close()
		}
		errc <- err
	}()
	<-waiting
	cancel()
	if err := <-errc; err == nil || !strings.Contains(err.Error(), "canceled") {
		t.Errorf("cancelled long poll: %v", err)
	}
}

func TestDrainAnswersLongPolls(t *testing.T) {
	e := newEnv(t, envOpts{})
	e.want(e.do("POST", "/v1/correlations", "", obj{"id": "d"}), http.StatusCreated)
	waiting := e.waiting
	done := make(chan resp, 1)
	go func() { done <- e.do("GET", "/v1/correlations/d/outcome?wait=30s", "", nil) }()
	<-waiting
	e.api.Drain()
	e.want(<-done, http.StatusAccepted)
	e.want(e.do("GET", "/readyz", "", nil), http.StatusServiceUnavailable)
}
