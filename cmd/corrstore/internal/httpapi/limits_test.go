package httpapi

import (
	"encoding/base64"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/corrstore/corrstore/store"
)

func TestPendingPerNamespaceLimit(t *testing.T) {
	e := newEnv(t, envOpts{auth: true, cfg: func(c *Config) { c.MaxPendingPerNamespace = 2 }})
	e.want(e.do("POST", "/v1/correlations", teamAWriter, obj{"id": "1"}), http.StatusCreated)
	e.want(e.do("POST", "/v1/correlations", teamAWriter, obj{"id": "2"}), http.StatusCreated)
	r := e.do("POST", "/v1/correlations", teamAWriter, obj{"id": "3"})
	e.wantError(r, http.StatusTooManyRequests, "namespace")
	if msg := r.str("error.message"); !strings.Contains(msg, "team-a") || !strings.Contains(msg, "limit is 2") {
		t.Errorf("429 does not name the namespace and the limit: %s", r.raw)
	}
	// A repeat of a stored registration is answered (a retry of a lost answer).
	e.want(e.do("POST", "/v1/correlations", teamAWriter, obj{"id": "2"}), http.StatusOK)
	// Another namespace has its own count.
	e.want(e.do("POST", "/v1/correlations", writerToken, obj{"id": "3", "namespace": "team-b"}), http.StatusCreated)
	s := e.want(e.do("GET", "/v1/stats", teamAWriter, nil), http.StatusOK)
	if s.field("namespaces.team-a.pending_limit") != float64(2) || s.field("namespaces.team-a.states.pending") != float64(2) {
		t.Errorf("stats: %s", s.raw)
	}
	// A decided correlation frees its place.
	e.want(e.do("POST", "/v1/correlations/1/cancel", teamAWriter, nil), http.StatusOK)
	e.want(e.do("POST", "/v1/correlations", teamAWriter, obj{"id": "3"}), http.StatusCreated)
}

func TestBytesPerNamespaceLimit(t *testing.T) {
	e := newEnv(t, envOpts{auth: true, cfg: func(c *Config) { c.MaxBytesPerNamespace = 100 }})
	data := base64.StdEncoding.EncodeToString([]byte(strings.Repeat("d", 40)))
	e.want(e.do("POST", "/v1/correlations", teamAWriter, obj{"id": "1", "pattern": "gather", "expect": 2,
		"callback": obj{"handler": "h", "data_base64": data}}), http.StatusCreated)
	s := e.want(e.do("GET", "/v1/stats", teamAWriter, nil), http.StatusOK)
	if s.field("namespaces.team-a.bytes") != float64(40) || s.field("namespaces.team-a.bytes_limit") != float64(100) {
		t.Errorf("stats after the callback data: %s", s.raw)
	}
	if s.field("namespaces.team-a.pending_limit") != nil {
		t.Errorf("no pending limit is set: %s", s.raw)
	}
	// Under the limit registrations pass; replies add to the count (and are
	// never refused for it).
	e.want(e.do("POST", "/v1/correlations", teamAWriter, obj{"id": "2"}), http.StatusCreated)
	body := base64.StdEncoding.EncodeToString([]byte(strings.Repeat("r", 60)))
	e.want(e.do("POST", "/v1/correlations/1/replies", teamAWriter, obj{"from": "a", "body_base64": body}), http.StatusOK)

	// At the limit (40 + 60): refused, naming the namespace and the limit.
	r := e.do("POST", "/v1/correlations", teamAWriter, obj{"id": "3"})
	e.wantError(r, http.StatusTooManyRequests, "namespace")
	if msg := r.str("error.message"); !strings.Contains(msg, `"team-a" holds 100 bytes`) ||
		!strings.Contains(msg, "limit is 100 (max_bytes_per_namespace)") {
		t.Errorf("429 does not name the namespace and the limit: %s", r.raw)
	}
	// A repeat of a stored registration is answered; another namespace has its own count.
	e.want(e.do("POST", "/v1/correlations", teamAWriter, obj{"id": "2"}), http.StatusOK)
	e.want(e.do("POST", "/v1/correlations", writerToken, obj{"id": "3", "namespace": "team-b"}), http.StatusCreated)
	s = e.want(e.do("GET", "/v1/stats?namespace=*", writerToken, nil), http.StatusOK)
	if s.field("namespaces.team-a.bytes") != float64(100) || s.field("namespaces.team-b.bytes") != float64(0) ||
		s.field("namespaces.team-b.bytes_limit") != float64(100) || s.field("total.bytes") != float64(100) {
		t.Errorf("stats at the limit: %s", s.raw)
	}

	// Purging the decided correlation takes its bytes back.
	e.want(e.do("POST", "/v1/correlations/1/cancel", teamAWriter, nil), http.StatusOK)
	e.want(e.do("POST", "/v1/correlations", teamAWriter, obj{"id": "3"}), http.StatusTooManyRequests)
	claimed, err := e.st.ClaimDispatch(t.Context(), store.ClaimRequest{Instance: "test", Handlers: []string{"h"}, Now: e.clock.Now(), Lease: time.Minute, Limit: 10})
	if err != nil || len(claimed) != 1 {
		t.Fatalf("claim: %v %v", claimed, err)
	}
	if _, err := e.st.AckDispatch(t.Context(), claimed[0].Ref(), claimed[0].Dispatch.Claim()); err != nil {
		t.Fatal(err)
	}
	e.clock.Add(time.Second)
	if n, err := e.st.Purge(t.Context(), e.clock.Now(), 10); err != nil || n != 1 {
		t.Fatalf("purge: %d %v", n, err)
	}
	e.want(e.do("POST", "/v1/correlations", teamAWriter, obj{"id": "3"}), http.StatusCreated)
}

// Both limits come from one read of the stats; the first reached refuses.
func TestBothNamespaceLimits(t *testing.T) {
	e := newEnv(t, envOpts{auth: true, cfg: func(c *Config) { c.MaxPendingPerNamespace = 5; c.MaxBytesPerNamespace = 10 }})
	data := base64.StdEncoding.EncodeToString([]byte(strings.Repeat("d", 10)))
	e.want(e.do("POST", "/v1/correlations", teamAWriter, obj{"id": "1", "callback": obj{"handler": "h", "data_base64": data}}), http.StatusCreated)
	r := e.do("POST", "/v1/correlations", teamAWriter, obj{"id": "2"})
	e.wantError(r, http.StatusTooManyRequests, "namespace")
	if msg := r.str("error.message"); !strings.Contains(msg, "max_bytes_per_namespace") {
		t.Errorf("the bytes limit refuses: %s", r.raw)
	}
	s := e.want(e.do("GET", "/v1/stats", teamAWriter, nil), http.StatusOK)
	if s.field("namespaces.team-a.pending_limit") != float64(5) || s.field("namespaces.team-a.bytes_limit") != float64(10) {
		t.Errorf("stats: %s", s.raw)
	}
}
