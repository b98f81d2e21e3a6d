package httpapi

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/corrstore/corrstore/bolt"
	"github.com/corrstore/corrstore/store"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// Bearer tokens of the test token file.
const (
	adminToken  = "admin-token-0123456789"
	writerToken = "writer-token-0123456789"
	readerToken = "reader-token-0123456789"
	teamAWriter = "team-a-writer-0123456789"
	teamAReader = "team-a-reader-0123456789"
)

const testTokenFile = `# role namespaces
` + adminToken + ` admin *
` + writerToken + ` writer * ci-writer
` + readerToken + ` reader *
` + teamAWriter + ` writer team-a
` + teamAReader + ` reader team-a,team-x
`

var epoch = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

type env struct {
	t     *testing.T
	clock *store.FakeClock
	st    *bolt.Store
	api   *Server
	srv   *httptest.Server
	// waiting receives the ID of each long poll that goes to sleep.
	waiting chan string
}

type envOpts struct {
	auth    bool
	maxBody int64
	cfg     func(*Config)
}

// newEnv serves the API on a bolt store in a temp file, with a fake clock.
func newEnv(t *testing.T, o envOpts) *env {
	t.Helper()
	clock := store.NewFakeClock(epoch)
	st, err := bolt.Open(bolt.Options{Path: filepath.Join(t.TempDir(), "c.db"), NoSync: true, Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{Store: st, Clock: clock, MaxBody: o.maxBody, MaxWait: 30 * time.Second,
		Logger: discardLogger()}
	if o.auth {
		if cfg.Tokens, err = ParseTokens(strings.NewReader(testTokenFile)); err != nil {
			t.Fatal(err)
		}
	}
	if o.cfg != nil {
		o.cfg(&cfg)
	}
	api, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	waiting := make(chan string, 64)
	api.testHookWaiting = func(id string) { waiting <- id }
	e := &env{t: t, clock: clock, st: st, api: api, srv: httptest.NewServer(api), waiting: waiting}
	t.Cleanup(func() {
		e.api.Drain()
		e.srv.Close()
		e.api.Close()
		st.Close()
	})
	return e
}

type resp struct {
	code   int
	header http.Header
	raw    []byte
	body   map[string]any
}

// field digs into the JSON answer: "correlation.state", "error.field".
func (r resp) field(path string) any {
	var v any = r.body
	for _, k := range strings.Split(path, ".") {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}

func (r resp) str(path string) string { s, _ := r.field(path).(string); return s }

func (e *env) do(method, path, token string, body any) resp {
	e.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			e.t.Fatal(err)
		}
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, e.srv.URL+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := e.srv.Client().Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(res.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	r := resp{code: res.StatusCode, header: res.Header, raw: raw}
	_ = json.Unmarshal(raw, &r.body)
	return r
}

func (e *env) want(r resp, code int) resp {
	e.t.Helper()
	if r.code != code {
		e.t.Fatalf("status %d, want %d: %s", r.code, code, r.raw)
	}
	return r
}

// wantError checks an error answer: status, and the field it names.
func (e *env) wantError(r resp, code int, field string) {
	e.t.Helper()
	e.want(r, code)
	if got := r.str("error.field"); got != field {
		e.t.Errorf("error.field = %q, want %q: %s", got, field, r.raw)
	}
	if msg := r.str("error.message"); field != "" && !strings.Contains(msg, field) {
		e.t.Errorf("error.message %q does not name %q", msg, field)
	}
}

type obj = map[string]any
