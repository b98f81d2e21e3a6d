package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/corrstore/corrstore/bolt"
	"github.com/corrstore/corrstore/cmd/corrstore/internal/apitest"
	"github.com/corrstore/corrstore/cmd/corrstore/internal/httpapi"
	"github.com/corrstore/corrstore/store"
)

const (
	opsAdminToken  = "ops-admin-token-0123456789"
	opsReaderToken = "ops-reader-token-0123456789"
)

// fixture is a "daemon" in the test process: a bolt store holding its file
// (so --store reads go through a snapshot) and the HTTP API on it.
type fixture struct {
	t      *testing.T
	dir    string
	dbPath string
	st     *bolt.Store
	api    *httpapi.Server
	srv    *httptest.Server
	// tokenFile holds opsAdminToken, when auth is on.
	tokenFile string
	getenv    map[string]string
	stdin     string
	terminal  bool
	// now, when set, is the commands' clock (so tables are comparable).
	now time.Time
}

func newFixture(t *testing.T, auth bool) *fixture {
	t.Helper()
	dir := t.TempDir()
	f := &fixture{t: t, dir: dir, dbPath: filepath.Join(dir, "c.db"), getenv: map[string]string{}}
	var err error
	f.st, err = bolt.Open(bolt.Options{Path: f.dbPath, NoSync: true, Logger: quiet()})
	require.NoError(t, err)
	cfg := httpapi.Config{Store: f.st, Logger: quiet()}
	if auth {
		tf := filepath.Join(dir, "tokens")
		require.NoError(t, os.WriteFile(tf, []byte(opsAdminToken+" admin *\n"+opsReaderToken+" reader *\n"), 0o600))
		cfg.Tokens, _, err = httpapi.LoadTokens(tf)
		require.NoError(t, err)
		f.tokenFile = filepath.Join(dir, "admin-token")
		require.NoError(t, os.WriteFile(f.tokenFile, []byte("# ops\n"+opsAdminToken+"\n"), 0o600))
	}
	f.api, err = httpapi.New(cfg)
	require.NoError(t, err)
	f.srv = httptest.NewServer(f.api)
	t.Cleanup(f.stopDaemon)
	return f
}

// stopDaemon closes the server and lets go of the file.
func (f *fixture) stopDaemon() {
	if f.srv == nil {
		return
	}
	f.srv.Close()
	f.api.Close()
	f.st.Close()
	f.srv = nil
}

func (f *fixture) storeURL() string { return "bolt://" + f.dbPath }

// run runs a command in process; err is what main would print after "corrstore: ".
func (f *fixture) run(args ...string) (stdout, stderr string, err error) {
	f.t.Helper()
	var out, errb bytes.Buffer
	e := &env{
		stdout: &out, stderr: &errb, stdin: strings.NewReader(f.stdin), terminal: f.terminal,
		getenv: func(k string) string { return f.getenv[k] }, now: time.Now, noSync: true,
	}
	if !f.now.IsZero() {
		e.now = func() time.Time { return f.now }
	}
	err = run(context.Background(), e, args)
	return out.String(), errb.String(), err
}

// both runs a command against the server, then against the store.
func (f *fixture) both(args ...string) [2]string {
	f.t.Helper()
	var outs [2]string
	for i, where := range [][]string{{"--server", f.srv.URL}, {"--store", f.storeURL()}} {
		out, _, err := f.run(append(args, where...)...)
		require.NoError(f.t, err, "%v %v", args, where)
		outs[i] = out
	}
	return outs
}

// seed makes one correlation in each interesting state:
//
//	pend-1, pend-2  pending (pend-2: namespace team-a, label wf=w2, owner svc-b)
//	                (team-a/pend-1 does not exist: IDs are per namespace)
//	done-1          completed by a reply, dispatch pending; one late reply
//	dead-1          completed, dispatch dead after a failed handler
//	gone-1          cancelled
func (f *fixture) seed() {
	f.t.Helper()
	ctx := context.Background()
	reg := func(c *store.Correlation) {
		_, err := f.st.Register(ctx, c)
		require.NoError(f.t, err)
	}
	cb := store.Callback{Handler: "resume-order", Data: []byte(`{"order":1}`)}
	reg(&store.Correlation{ID: "pend-1", Timeout: time.Hour, Destination: "payments", Owner: "svc-a", Callback: cb})
	reg(&store.Correlation{ID: "pend-2", Namespace: "team-a", Timeout: time.Hour, Destination: "billing", Owner: "svc-b",
		Labels: map[string]string{"wf": "w2"}})
	reg(&store.Correlation{ID: "done-1", Timeout: time.Hour, Destination: "payments", Callback: cb})
	_, err := f.st.Deliver(ctx, store.RefOf("done-1"), store.Reply{ID: "r-1", Body: []byte(`{"paid":true}`)})
	require.NoError(f.t, err)
	_, err = f.st.Deliver(ctx, store.RefOf("done-1"), store.Reply{ID: "r-2", Body: []byte(`"too late"`)})
	require.NoError(f.t, err)
	reg(&store.Correlation{ID: "dead-1", Timeout: time.Hour, Destination: "payments", Callback: store.Callback{Handler: "ship-order"}})
	_, err = f.st.Deliver(ctx, store.RefOf("dead-1"), store.Reply{ID: "r-1"})
	require.NoError(f.t, err)
	claimed, err := f.st.ClaimDispatch(ctx, store.ClaimRequest{Instance: "worker-1", Handlers: []string{"resume-order", "ship-order"}, Now: time.Now().Add(time.Second), Lease: time.Minute, Limit: 10})
	require.NoError(f.t, err)
	for _, c := range claimed {
		if c.ID == "dead-1" {
			_, err = f.st.NackDispatch(ctx, c.Ref(), c.Dispatch.Claim(), "ship-order: warehouse API 503", time.Time{})
			require.NoError(f.t, err)
		} else {
			_, err = f.st.NackDispatch(ctx, c.Ref(), c.Dispatch.Claim(), "not yet", time.Now())
			require.NoError(f.t, err)
		}
	}
	reg(&store.Correlation{ID: "gone-1", Timeout: time.Hour})
	_, err = f.st.Cancel(ctx, store.RefOf("gone-1"), "send failed")
	require.NoError(f.t, err)
}

// get reads a record straight from the fixture's store: ID in the default
// namespace, or NS/ID.
func (f *fixture) get(ref string) *store.Correlation {
	f.t.Helper()
	c, err := f.st.Get(context.Background(), testRef(f.t, ref))
	require.NoError(f.t, err)
	return c
}

func testRef(t *testing.T, s string) store.Ref {
	t.Helper()
	if !strings.Contains(s, "/") {
		return store.RefOf(s)
	}
	r, err := store.ParseRef(s)
	require.NoError(t, err)
	return r
}

// lineWriter hands each line written to it to lines (a slog handler's
// output, read while the writer still writes).
type lineWriter struct {
	mu      sync.Mutex
	partial []byte
	lines   chan string
}

func newLineWriter() *lineWriter { return &lineWriter{lines: make(chan string, 10000)} }

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.partial = append(w.partial, p...)
	for {
		i := bytes.IndexByte(w.partial, '\n')
		if i < 0 {
			return len(p), nil
		}
		w.lines <- string(w.partial[:i])
		w.partial = w.partial[i+1:]
	}
}

// Close ends lines; nothing may write after it.
func (w *lineWriter) Close() { close(w.lines) }

func contextWithCancel(t *testing.T) (context.Context, context.CancelFunc) {
	return context.WithCancel(t.Context())
}

// httpCall sends one request to a server on loopback, checks the answer
// against docs/openapi.yaml and returns its status and JSON body.
func httpCall(t *testing.T, method, url, bearer, body string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	require.NoError(t, err)
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	res, err := httpClient.Do(req)
	require.NoError(t, err)
	defer res.Body.Close()
	raw, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	apitest.Check(t, req, res, raw)
	var v map[string]any
	json.Unmarshal(raw, &v)
	return res.StatusCode, v
}
