package httpapi

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/corrstore/corrstore/store"
)

func TestUnknownRouteAndWrongMethod(t *testing.T) {
	e := newEnv(t, envOpts{auth: true})
	for _, path := range []string{"/", "/v2/correlations", "/v1/correlations/x/y/z", "/v1/correlation", "/v1/replies/"} {
		r := e.do("GET", path, "", nil)
		e.want(r, http.StatusNotFound)
		if r.str("error.code") != "no_route" || r.header.Get("Content-Type") != "application/json" {
			t.Errorf("GET %s: %s", path, r.raw)
		}
	}
	for _, c := range []struct{ method, path, allow string }{
		{"DELETE", "/v1/correlations", "GET, HEAD, POST"},
		{"PUT", "/v1/correlations/x", "GET, HEAD"},
		{"GET", "/v1/correlations/x/replies", "POST"},
		{"GET", "/v1/replies/tok", "POST"},
		{"POST", "/healthz", "GET, HEAD"},
	} {
		r := e.do(c.method, c.path, "", nil)
		e.want(r, http.StatusMethodNotAllowed)
		if r.header.Get("Allow") != c.allow || r.str("error.code") != "method_not_allowed" {
			t.Errorf("%s %s: Allow %q, %s", c.method, c.path, r.header.Get("Allow"), r.raw)
		}
	}
}

// A store that cannot answer is 503 with Retry-After, never 500.
func TestStoreUnavailableIs503(t *testing.T) {
	e := newEnv(t, envOpts{auth: true})
	e.want(e.do("POST", "/v1/correlations", writerToken, obj{"id": "x"}), http.StatusCreated)
	for _, cause := range []error{
		fmt.Errorf("%w: redis: connection refused", store.ErrUnavailable),
		fmt.Errorf("%w: write /data/c.db: no space left on device", store.ErrUnavailable),
		fmt.Errorf("redis: i/o timeout: %w", context.DeadlineExceeded),
	} {
		e.st.fail(cause, true)
		for _, c := range []struct {
			method, path string
			body         any
		}{
			{"POST", "/v1/correlations", obj{"id": "y"}},
			{"GET", "/v1/correlations/x", nil},
			{"POST", "/v1/correlations/x/replies", obj{"body": 1}},
			{"GET", "/v1/stats", nil},
		} {
			r := e.do(c.method, c.path, writerToken, c.body)
			e.want(r, http.StatusServiceUnavailable)
			if r.str("error.code") != "unavailable" || r.header.Get("Retry-After") == "" {
				t.Errorf("%s %s with %v: %s (Retry-After %q)", c.method, c.path, cause, r.raw, r.header.Get("Retry-After"))
			}
			if strings.Contains(string(r.raw), "no space") || strings.Contains(string(r.raw), "redis") {
				t.Errorf("the answer tells the store's internals: %s", r.raw)
			}
		}
	}
}

// /readyz goes 503 when writes fail while reads work (a full disk), tells
// the cause only to a known token, and recovers.
func TestReadyzFollowsWrites(t *testing.T) {
	e := newEnv(t, envOpts{auth: true})
	e.want(e.do("GET", "/readyz", "", nil), http.StatusOK)
	cause := fmt.Errorf("%w: write /data/c.db: no space left on device", store.ErrUnavailable)
	e.st.fail(cause, false) // writes only
	e.want(e.do("POST", "/v1/correlations", writerToken, obj{"id": "y"}), http.StatusServiceUnavailable)

	anon := e.want(e.do("GET", "/readyz", "", nil), http.StatusServiceUnavailable)
	if strings.Contains(string(anon.raw), "no space") || anon.header.Get("Retry-After") == "" {
		t.Errorf("readyz to a caller without a token: %s", anon.raw)
	}
	known := e.want(e.do("GET", "/readyz", readerToken, nil), http.StatusServiceUnavailable)
	if !strings.Contains(known.str("error.message"), "no space left") {
		t.Errorf("readyz to a token for every namespace does not tell the cause: %s", known.raw)
	}
	// An error text can name any tenant's refs: a scoped token is not told.
	scoped := e.want(e.do("GET", "/readyz", teamAReader, nil), http.StatusServiceUnavailable)
	if strings.Contains(string(scoped.raw), "no space") {
		t.Errorf("readyz to a token of one namespace tells the cause: %s", scoped.raw)
	}
	// Still failing after the hold: readyz probes, and the next failed write
	// holds it down again.
	e.clock.Add(writeFailureHold)
	e.want(e.do("POST", "/v1/correlations", writerToken, obj{"id": "y"}), http.StatusServiceUnavailable)
	e.want(e.do("GET", "/readyz", "", nil), http.StatusServiceUnavailable)
	// Writes work again: one succeeds, ready at once.
	e.st.fail(nil, false)
	e.want(e.do("POST", "/v1/correlations", writerToken, obj{"id": "y"}), http.StatusCreated)
	e.want(e.do("GET", "/readyz", "", nil), http.StatusOK)

	// A store that answers nothing is not ready either.
	e.st.fail(fmt.Errorf("%w: redis: dial tcp: connection refused", store.ErrUnavailable), true)
	anon = e.want(e.do("GET", "/readyz", "", nil), http.StatusServiceUnavailable)
	if strings.Contains(string(anon.raw), "redis") {
		t.Errorf("readyz to a caller without a token: %s", anon.raw)
	}
	e.st.fail(nil, false)
	e.clock.Add(time.Second)
	e.want(e.do("GET", "/readyz", "", nil), http.StatusOK)
}

// Without a secret file the signer is the store's secret: a store that
// cannot give it fails registration with 503 before anything is written.
func TestRegisterWithoutSecretIs503(t *testing.T) {
	e := newEnv(t, envOpts{})
	e.st.fail(fmt.Errorf("%w: down", store.ErrUnavailable), true)
	e.want(e.do("POST", "/v1/correlations", "", obj{"id": "x"}), http.StatusServiceUnavailable)
	e.st.fail(nil, false)
	if _, err := e.st.Get(context.Background(), store.RefOf("x")); err == nil {
		t.Error("registered although the answer was 503")
	}
	e.want(e.do("POST", "/v1/correlations", "", obj{"id": "x"}), http.StatusCreated)
}

// A caller that hangs up before its write got through says nothing about
// the store: /readyz stays up (else clients with short timeouts, or anyone
// with a reply token, could drain healthy instances).
func TestReadyzIgnoresCallersThatHangUp(t *testing.T) {
	keys, err := NewReplyTokens([]byte(strings.Repeat("k", MinSecretLen)))
	if err != nil {
		t.Fatal(err)
	}
	// A secret of its own, so that registration asks the store nothing before the write.
	e := newEnv(t, envOpts{cfg: func(c *Config) { c.ReplyTokens = keys }})
	// The store answers ErrUnavailable (not wrapping Canceled) to a caller
	// who has hung up: the server must not count it against the store.
	e.st.fail(fmt.Errorf("%w: gave up waiting for the writer", store.ErrUnavailable), false)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	req := httptest.NewRequest("POST", "/v1/correlations", strings.NewReader(`{"id":"gone"}`)).WithContext(ctx)
	rec := httptest.NewRecorder()
	e.api.ServeHTTP(rec, req)
	if rec.Code != http.StatusServiceUnavailable {
		t.Fatalf("the write did not fail as set up: %d %s", rec.Code, rec.Body)
	}
	e.st.fail(nil, false)
	e.want(e.do("GET", "/readyz", "", nil), http.StatusOK)

	var h writeHealth
	h.note(epoch, fmt.Errorf("%w: %w", store.ErrUnavailable, context.Canceled))
	if err := h.failing(epoch); err != nil {
		t.Errorf("a cancelled write counted as a store failure: %v", err)
	}
}
