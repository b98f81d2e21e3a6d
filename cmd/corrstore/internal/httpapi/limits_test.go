package httpapi

import (
	"net/http"
	"strings"
	"testing"
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
