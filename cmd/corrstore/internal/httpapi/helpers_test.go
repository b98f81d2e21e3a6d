package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/corrstore/corrstore/bolt"
	"github.com/corrstore/corrstore/cmd/corrstore/internal/apitest"
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
	path  string // the bolt file
	st    *probe
	api   *Server
	srv   *httptest.Server
	cfg   Config
	// waiting receives the ref of each long poll that goes to sleep.
	waiting chan store.Ref
}

type envOpts struct {
	auth    bool
	maxBody int64
	limits  store.Limits
	cfg     func(*Config)
}

// newEnv serves the API on a bolt store in a temp file, with a fake clock.
func newEnv(t *testing.T, o envOpts) *env {
	t.Helper()
	e := &env{t: t, clock: store.NewFakeClock(epoch), path: filepath.Join(t.TempDir(), "c.db")}
	e.st = &probe{Store: e.openStore(o.limits)}
	e.cfg = Config{Store: e.st, Clock: e.clock, MaxBody: o.maxBody, MaxWait: 30 * time.Second, Logger: discardLogger()}
	if o.auth {
		var err error
		if e.cfg.Tokens, err = ParseTokens(strings.NewReader(testTokenFile)); err != nil {
			t.Fatal(err)
		}
	}
	if o.cfg != nil {
		o.cfg(&e.cfg)
	}
	e.serve()
	t.Cleanup(func() {
		e.stop()
		e.st.Close()
	})
	return e
}

func (e *env) openStore(lim store.Limits) *bolt.Store {
	e.t.Helper()
	st, err := bolt.Open(bolt.Options{Path: e.path, NoSync: true, Clock: e.clock, Limits: lim})
	if err != nil {
		e.t.Fatal(err)
	}
	return st
}

// serve starts a Server on e.st with e.cfg.
func (e *env) serve() {
	e.t.Helper()
	api, err := New(e.cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	e.waiting = make(chan store.Ref, 64)
	waiting := e.waiting
	api.testHookWaiting = func(ref store.Ref) { waiting <- ref }
	e.api, e.srv = api, httptest.NewServer(api)
}

func (e *env) stop() {
	e.api.Drain()
	e.srv.Close()
	e.api.Close()
}

// restart stops the server, closes and reopens the store's file and serves
// it with a new Server: what a process restart keeps.
func (e *env) restart() {
	e.t.Helper()
	e.stop()
	if err := e.st.Store.Close(); err != nil {
		e.t.Fatal(err)
	}
	e.st.Store = e.openStore(store.Limits{})
	e.serve()
}

// probe wraps the store: it counts the reads of each ref and, when failWith
// is set, fails every call with it (as a store that cannot answer would).
type probe struct {
	store.Store
	mu       sync.Mutex
	reads    map[store.Ref]int
	failWith error
	failRead bool // failWith applies to reads too, not only to writes
	// beforeDeliver, when set, runs at the start of each Deliver (before
	// the wrapped store's), with the ref: what another process could do
	// just then.
	beforeDeliver func(ref store.Ref)
}

func (p *probe) fail(err error, reads bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.failWith, p.failRead = err, reads
}

func (p *probe) failing(write bool) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if write || p.failRead {
		return p.failWith
	}
	return nil
}

func (p *probe) touched(ref store.Ref) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.reads[ref.Norm()]
}

func (p *probe) note(ref store.Ref) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.reads == nil {
		p.reads = map[store.Ref]int{}
	}
	p.reads[ref.Norm()]++
}

func (p *probe) Register(ctx context.Context, c *store.Correlation) (store.RegisterResult, error) {
	if err := p.failing(true); err != nil {
		return store.RegisterResult{}, err
	}
	return p.Store.Register(ctx, c)
}

func (p *probe) Get(ctx context.Context, ref store.Ref) (*store.Correlation, error) {
	p.note(ref)
	if err := p.failing(false); err != nil {
		return nil, err
	}
	return p.Store.Get(ctx, ref)
}

func (p *probe) Deliver(ctx context.Context, ref store.Ref, r store.Reply) (store.DeliverResult, error) {
	p.note(ref)
	if err := p.failing(true); err != nil {
		return store.DeliverResult{}, err
	}
	p.mu.Lock()
	hook := p.beforeDeliver
	p.mu.Unlock()
	if hook != nil {
		hook(ref)
	}
	return p.Store.Deliver(ctx, ref, r)
}

func (p *probe) onDeliver(hook func(ref store.Ref)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.beforeDeliver = hook
}

func (p *probe) Extend(ctx context.Context, ref store.Ref, d time.Time) (store.Result, error) {
	p.note(ref)
	return p.Store.Extend(ctx, ref, d)
}

func (p *probe) Cancel(ctx context.Context, ref store.Ref, reason string) (store.Result, error) {
	p.note(ref)
	return p.Store.Cancel(ctx, ref, reason)
}

func (p *probe) Expire(ctx context.Context, ref store.Ref, reason string) (store.Result, error) {
	p.note(ref)
	return p.Store.Expire(ctx, ref, reason)
}

func (p *probe) Redispatch(ctx context.Context, ref store.Ref) (store.Result, error) {
	p.note(ref)
	return p.Store.Redispatch(ctx, ref)
}

func (p *probe) Stats(ctx context.Context, ns string) (store.Stats, error) {
	if err := p.failing(false); err != nil {
		return store.Stats{}, err
	}
	return p.Store.Stats(ctx, ns)
}

func (p *probe) Secret(ctx context.Context, name string) ([]byte, error) {
	if err := p.failing(false); err != nil {
		return nil, err
	}
	return p.Store.Secret(ctx, name)
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
	return e.doAuth(method, path, "Bearer "+token, body, token != "")
}

// doAuth sends a request with the Authorization header auth (when send)
// and checks the answer against docs/openapi.yaml (apitest.Check).
func (e *env) doAuth(method, path, auth string, body any, send bool) resp {
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
	if send {
		req.Header.Set("Authorization", auth)
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
	apitest.Check(e.t, req, res, raw)
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
