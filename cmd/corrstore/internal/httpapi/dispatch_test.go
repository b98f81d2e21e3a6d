package httpapi

import (
	"encoding/base64"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/corrstore/corrstore/cmd/corrstore/internal/webhook"
)

var testSecret = webhook.SecretPrefix + base64.StdEncoding.EncodeToString([]byte("0123456789abcdef0123456789abcdef"))

func withCallbacks(t *testing.T, text string, strict bool) func(*Config) {
	cb, err := webhook.ParseCallbacks("callbacks.txt", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	return func(c *Config) {
		c.Callbacks = func() *webhook.Callbacks { return cb }
		c.StrictHandlers = strict
		c.Backoff = func(n int) time.Duration { return time.Duration(n) * time.Minute }
	}
}

// decided registers id in team-a with handler and completes it with a reply.
func (e *env) decided(id, handler string) {
	e.t.Helper()
	e.want(e.do("POST", "/v1/correlations", teamAWriter, obj{"id": id, "callback": obj{"handler": handler, "data": obj{"step": 1}}}), http.StatusCreated)
	e.want(e.do("POST", "/v1/correlations/"+id+"/replies", teamAWriter, obj{"from": "svc", "body": obj{"ok": true}}), http.StatusOK)
}

func items(r resp) []any { v, _ := r.field("items").([]any); return v }

func item(r resp, i int) map[string]any { return items(r)[i].(map[string]any) }

// A pull worker claims an outcome of its handler with its replies, and
// acks it; a second claim finds nothing; the ack repeated is harmless.
func TestPullClaimAck(t *testing.T) {
	e := newEnv(t, envOpts{auth: true, cfg: withCallbacks(t, "team-a hook http://127.0.0.1:9/ "+testSecret+"\nteam-a worker pull\n", false)})
	e.decided("o1", "worker")
	e.decided("o2", "hook")
	e.decided("o3", "other")

	r := e.want(e.do("POST", "/v1/dispatch/claim", teamAWriter, obj{"handler": "worker", "lease": "1m"}), http.StatusOK)
	if len(items(r)) != 1 {
		t.Fatalf("claimed %s, want o1 only", r.raw)
	}
	it := item(r, 0)
	view := it["correlation"].(map[string]any)
	if view["id"] != "o1" || view["namespace"] != "team-a" || it["attempt"] != float64(1) {
		t.Fatalf("item %v", it)
	}
	if reps := view["replies"].([]any); len(reps) != 1 || reps[0].(map[string]any)["body"].(map[string]any)["ok"] != true {
		t.Fatalf("the view carries the replies with their bodies: %s", r.raw)
	}
	if it["lease_until"] != e.clock.Now().Add(time.Minute).Format(time.RFC3339) {
		t.Errorf("lease_until %v", it["lease_until"])
	}
	claim := it["claim"].(string)
	if r := e.want(e.do("POST", "/v1/dispatch/claim", teamAWriter, obj{"handler": "worker"}), http.StatusOK); len(items(r)) != 0 {
		t.Fatalf("leased: nothing more to claim, got %s", r.raw)
	}
	a := e.want(e.do("POST", "/v1/correlations/o1/dispatch/ack", teamAWriter, obj{"claim": claim}), http.StatusOK)
	if a.str("dispatch.state") != "done" {
		t.Fatalf("ack: %s", a.raw)
	}
	e.want(e.do("POST", "/v1/correlations/o1/dispatch/ack", teamAWriter, obj{"claim": claim}), http.StatusOK)
	if got := e.want(e.do("GET", "/v1/correlations/o2?namespace=team-a", teamAWriter, nil), http.StatusOK); got.field("dispatch.attempts") != float64(0) {
		t.Errorf("the pushed handler's outcome was touched: %s", got.raw)
	}
}

// Handlers the callbacks file pushes cannot be claimed by pull.
func TestPullRefusesPushedHandler(t *testing.T) {
	e := newEnv(t, envOpts{auth: true, cfg: withCallbacks(t, "* hook http://127.0.0.1:9/ "+testSecret+"\n", false)})
	e.decided("o1", "hook")
	r := e.do("POST", "/v1/dispatch/claim", teamAWriter, obj{"handler": "hook"})
	e.wantError(r, http.StatusConflict, "handler")
	if r.str("error.code") != "pushed" {
		t.Errorf("code %q", r.str("error.code"))
	}
}

// A nack makes the outcome due again after retry_in, or the backoff;
// a lost lease answers 409; extend keeps it; dead gives up.
func TestPullNackExtendLeaseLost(t *testing.T) {
	e := newEnv(t, envOpts{auth: true, cfg: withCallbacks(t, "", false)})
	e.decided("o1", "worker")
	claimOne := func() string {
		t.Helper()
		r := e.want(e.do("POST", "/v1/dispatch/claim", teamAWriter, obj{"handler": "worker", "lease": "30s"}), http.StatusOK)
		if len(items(r)) != 1 {
			t.Fatalf("claim: %s", r.raw)
		}
		return item(r, 0)["claim"].(string)
	}
	c1 := claimOne()
	n := e.want(e.do("POST", "/v1/correlations/o1/dispatch/nack", teamAWriter, obj{"claim": c1, "error": "db down", "retry_in": "10s"}), http.StatusOK)
	if n.str("dispatch.state") != "pending" || n.str("dispatch.last_error") != "db down" {
		t.Fatalf("nack: %s", n.raw)
	}
	e.clock.Add(9 * time.Second)
	if r := e.want(e.do("POST", "/v1/dispatch/claim", teamAWriter, obj{"handler": "worker"}), http.StatusOK); len(items(r)) != 0 {
		t.Fatalf("before retry_in: %s", r.raw)
	}
	e.clock.Add(time.Second)
	c2 := claimOne()

	// Extend past the lease; the old lease's claim is lost.
	x := e.want(e.do("POST", "/v1/correlations/o1/dispatch/extend", teamAWriter, obj{"claim": c2, "lease": "5m"}), http.StatusOK)
	if x.str("lease_until") != e.clock.Now().Add(5*time.Minute).Format(time.RFC3339) {
		t.Errorf("extend: %s", x.raw)
	}
	e.clock.Add(time.Minute)
	if r := e.want(e.do("POST", "/v1/dispatch/claim", teamAWriter, obj{"handler": "worker"}), http.StatusOK); len(items(r)) != 0 {
		t.Fatalf("the extended lease holds: %s", r.raw)
	}
	r := e.do("POST", "/v1/correlations/o1/dispatch/ack", teamAWriter, obj{"claim": c1})
	e.wantError(r, http.StatusConflict, "claim")

	// The extended lease runs out; another worker claims; the first one's ack is 409.
	e.clock.Add(5 * time.Minute)
	c3 := claimOne()
	e.wantError(e.do("POST", "/v1/correlations/o1/dispatch/ack", teamAWriter, obj{"claim": c2}), http.StatusConflict, "claim")

	// A nack without retry_in waits the server's backoff (attempt 3: 3m here).
	e.want(e.do("POST", "/v1/correlations/o1/dispatch/nack", teamAWriter, obj{"claim": c3}), http.StatusOK)
	got := e.want(e.do("GET", "/v1/correlations/o1?namespace=team-a", teamAWriter, nil), http.StatusOK)
	if got.str("dispatch.next_at") != e.clock.Now().Add(3*time.Minute).Format(time.RFC3339) {
		t.Errorf("backoff: %s", got.raw)
	}
	e.clock.Add(3 * time.Minute)
	c4 := claimOne()
	d := e.want(e.do("POST", "/v1/correlations/o1/dispatch/nack", teamAWriter, obj{"claim": c4, "dead": true, "error": "bad data"}), http.StatusOK)
	if d.str("dispatch.state") != "dead" {
		t.Fatalf("dead: %s", d.raw)
	}
}

func TestPullBadInput(t *testing.T) {
	e := newEnv(t, envOpts{auth: true, cfg: withCallbacks(t, "", false)})
	e.decided("o1", "worker")
	for _, tc := range []struct {
		path  string
		body  obj
		field string
	}{
		{"/v1/dispatch/claim", obj{}, "handler"},
		{"/v1/dispatch/claim", obj{"handler": "w\u0001"}, "handler"},
		{"/v1/dispatch/claim", obj{"handler": "worker", "lease": "2h"}, "lease"},
		{"/v1/dispatch/claim", obj{"handler": "worker", "limit": 101}, "limit"},
		{"/v1/dispatch/claim", obj{"handler": "worker", "wait": "1h"}, "wait"},
		{"/v1/correlations/o1/dispatch/ack", obj{}, "claim"},
		{"/v1/correlations/o1/dispatch/ack", obj{"claim": "not-a-claim"}, "claim"},
		{"/v1/correlations/o1/dispatch/ack", obj{"claim": encodeClaimForTest("pull-x", 1), "retry_in": "1s"}, "retry_in"},
		{"/v1/correlations/o1/dispatch/nack", obj{"claim": encodeClaimForTest("pull-x", 1), "retry_in": "soon"}, "retry_in"},
		{"/v1/correlations/o1/dispatch/nack", obj{"claim": encodeClaimForTest("pull-x", 1), "error": strings.Repeat("e", 2000)}, "error"},
		{"/v1/correlations/o1/dispatch/extend", obj{"claim": encodeClaimForTest("pull-x", 1), "lease": "3h"}, "lease"},
	} {
		e.wantError(e.do("POST", tc.path, teamAWriter, tc.body), http.StatusBadRequest, tc.field)
	}
	// Another namespace: the claim route refuses, the per-id routes answer 404.
	e.wantError(e.do("POST", "/v1/dispatch/claim?namespace=team-b", teamAWriter, obj{"handler": "worker"}), http.StatusForbidden, "namespace")
	e.want(e.do("POST", "/v1/correlations/o1/dispatch/ack?namespace=team-b", teamAWriter, obj{"claim": encodeClaimForTest("pull-x", 1)}), http.StatusNotFound)
	// Readers cannot claim.
	e.want(e.do("POST", "/v1/dispatch/claim", teamAReader, obj{"handler": "worker"}), http.StatusForbidden)
}

func encodeClaimForTest(inst string, attempt int) string {
	return base64.RawURLEncoding.EncodeToString([]byte(inst + " " + strconv.Itoa(attempt)))
}

// A long-polled claim returns as soon as an outcome of its handler is decided.
func TestPullClaimWaits(t *testing.T) {
	e := newEnv(t, envOpts{auth: true, cfg: withCallbacks(t, "", false)})
	e.want(e.do("POST", "/v1/correlations", teamAWriter, obj{"id": "w1", "callback": obj{"handler": "worker"}}), http.StatusCreated)
	done := make(chan resp)
	go func() {
		done <- e.do("POST", "/v1/dispatch/claim", teamAWriter, obj{"handler": "worker", "wait": "20s"})
	}()
	start := time.Now()
	e.want(e.do("POST", "/v1/correlations/w1/cancel", teamAWriter, nil), http.StatusOK)
	r := e.want(<-done, http.StatusOK)
	if len(items(r)) != 1 || time.Since(start) > 15*time.Second {
		t.Fatalf("claim after %s: %s", time.Since(start), r.raw)
	}
}

// --callbacks-strict refuses a handler the file does not name, naming the field.
func TestStrictHandlers(t *testing.T) {
	e := newEnv(t, envOpts{auth: true, cfg: withCallbacks(t, "team-a hook http://127.0.0.1:9/ "+testSecret+"\n* worker pull\n", true)})
	e.want(e.do("POST", "/v1/correlations", teamAWriter, obj{"id": "a", "callback": obj{"handler": "hook"}}), http.StatusCreated)
	e.want(e.do("POST", "/v1/correlations", teamAWriter, obj{"id": "b", "callback": obj{"handler": "worker"}}), http.StatusCreated)
	e.want(e.do("POST", "/v1/correlations", teamAWriter, obj{"id": "c"}), http.StatusCreated)
	e.wantError(e.do("POST", "/v1/correlations", teamAWriter, obj{"id": "d", "callback": obj{"handler": "typo"}}), http.StatusBadRequest, "callback.handler")
	e.wantError(e.do("POST", "/v1/correlations", writerToken, obj{"id": "e", "namespace": "team-b", "callback": obj{"handler": "hook"}}), http.StatusBadRequest, "callback.handler")
}

// GET …/outcome answers the outcome view once decided: what webhooks carry.
func TestOutcomeIsTheView(t *testing.T) {
	e := newEnv(t, envOpts{auth: true})
	e.decided("o1", "h")
	r := e.want(e.do("GET", "/v1/correlations/o1/outcome?namespace=team-a", teamAReader, nil), http.StatusOK)
	for _, absent := range []string{"dispatch", "events", "version", "late", "updated_at"} {
		if r.field(absent) != nil {
			t.Errorf("%s in the outcome view: %s", absent, r.raw)
		}
	}
	if r.str("outcome.state") != "completed" || r.str("callback.handler") != "h" {
		t.Errorf("view: %s", r.raw)
	}
}
