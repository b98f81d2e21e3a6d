package webhook_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/corrstore/corrstore/bolt"
	"github.com/corrstore/corrstore/cmd/corrstore/internal/webhook"
	"github.com/corrstore/corrstore/cmd/corrstore/internal/wire"
	"github.com/corrstore/corrstore/store"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var t0 = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

// secretText is a valid whsec_ secret; secretKey what it decodes to.
var (
	secretKey  = []byte("0123456789abcdef0123456789abcdef")
	secretText = webhook.SecretPrefix + base64.StdEncoding.EncodeToString(secretKey)
	oldKey     = []byte("fedcba9876543210fedcba9876543210")
	oldText    = webhook.SecretPrefix + base64.StdEncoding.EncodeToString(oldKey)
)

type env struct {
	st    store.Store
	clock *store.FakeClock
}

func newEnv(t *testing.T, lim store.Limits) *env {
	t.Helper()
	clock := store.NewFakeClock(t0)
	st, err := bolt.Open(bolt.Options{Path: filepath.Join(t.TempDir(), "c.db"), Clock: clock, NoSync: true,
		Logger: slog.New(slog.DiscardHandler), Limits: lim})
	require.NoError(t, err)
	t.Cleanup(func() { st.Close() })
	return &env{st: st, clock: clock}
}

// decide registers ref with handler and a reply, which completes it.
func (e *env) decide(t *testing.T, r store.Ref, handler string) *store.Correlation {
	t.Helper()
	_, err := e.st.Register(t.Context(), &store.Correlation{ID: r.ID, Namespace: r.Namespace, Timeout: time.Hour,
		Callback: store.Callback{Handler: handler, Data: []byte(`{"order":42}`)}})
	require.NoError(t, err)
	res, err := e.st.Deliver(t.Context(), r, store.Reply{From: "payments", Body: []byte(`{"ok":true}`)})
	require.NoError(t, err)
	require.Equal(t, store.DeliverCompleted, res.Status)
	return res.Correlation
}

func (e *env) get(t *testing.T, r store.Ref) *store.Correlation {
	t.Helper()
	c, err := e.st.Get(t.Context(), r)
	require.NoError(t, err)
	return c
}

func callbacks(t *testing.T, text string) *webhook.Callbacks {
	t.Helper()
	cb, err := webhook.ParseCallbacks("callbacks.txt", []byte(text))
	require.NoError(t, err)
	return cb
}

func (e *env) dispatcher(t *testing.T, cb *webhook.Callbacks, edit func(*webhook.Config)) *webhook.Dispatcher {
	t.Helper()
	cfg := webhook.Config{Store: e.st, Clock: e.clock, Logger: slog.New(slog.DiscardHandler), Instance: "serve-test",
		Timeout: 2 * time.Second, Backoff: func(n int) time.Duration { return time.Duration(n) * time.Minute }}
	if edit != nil {
		edit(&cfg)
	}
	d, err := webhook.New(cfg, cb)
	require.NoError(t, err)
	return d
}

// delivery is one request a receiver took.
type delivery struct {
	id, ts, sig string
	body        []byte
}

// receiver is a loopback webhook receiver that verifies every signature
// the way Standard Webhooks describes it, and answers with statuses from
// a script (200 once the script runs out).
type receiver struct {
	srv  *httptest.Server
	keys [][]byte
	mu   sync.Mutex
	got  []delivery
	bad  []string
	plan []int
}

func newReceiver(t *testing.T, keys [][]byte, plan ...int) *receiver {
	r := &receiver{keys: keys, plan: plan}
	r.srv = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) serve(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	d := delivery{id: req.Header.Get("webhook-id"), ts: req.Header.Get("webhook-timestamp"), sig: req.Header.Get("webhook-signature"), body: body}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, d)
	if err := verify(d, r.keys); err != nil {
		r.bad = append(r.bad, err.Error())
	}
	status := http.StatusOK
	if len(r.plan) > 0 {
		status, r.plan = r.plan[0], r.plan[1:]
	}
	w.WriteHeader(status)
	fmt.Fprintf(w, "status %d", status)
}

// verify checks that some v1 signature matches one of keys, in constant time.
func verify(d delivery, keys [][]byte) error {
	if d.id == "" || d.ts == "" || d.sig == "" {
		return fmt.Errorf("missing header: %+v", d)
	}
	if _, err := strconv.ParseInt(d.ts, 10, 64); err != nil {
		return fmt.Errorf("webhook-timestamp %q", d.ts)
	}
	for _, key := range keys {
		m := hmac.New(sha256.New, key)
		m.Write([]byte(d.id + "." + d.ts + "."))
		m.Write(d.body)
		want := m.Sum(nil)
		for _, s := range strings.Fields(d.sig) {
			v, ok := strings.CutPrefix(s, "v1,")
			got, err := base64.StdEncoding.DecodeString(v)
			if ok && err == nil && hmac.Equal(got, want) {
				return nil
			}
		}
	}
	return fmt.Errorf("no signature of %q matches", d.sig)
}

func (r *receiver) deliveries() []delivery {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]delivery(nil), r.got...)
}

func (r *receiver) requireVerified(t *testing.T) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	require.Empty(t, r.bad)
}

func TestDeliverSigned(t *testing.T) {
	e := newEnv(t, store.Limits{})
	rec := newReceiver(t, [][]byte{secretKey})
	d := e.dispatcher(t, callbacks(t, "shop resume-order "+rec.srv.URL+"/hook "+secretText+"\n"), nil)
	c := e.decide(t, store.Ref{Namespace: "shop", ID: "order-42"}, "resume-order")

	require.Equal(t, 1, d.RunOnce(t.Context()))
	got := rec.deliveries()
	require.Len(t, got, 1)
	rec.requireVerified(t)
	require.Equal(t, strconv.FormatInt(t0.Unix(), 10), got[0].ts, "the store's clock")
	require.Equal(t, webhook.MessageID(c), got[0].id)

	var p struct {
		Type      string           `json:"type"`
		Timestamp time.Time        `json:"timestamp"`
		Data      wire.OutcomeView `json:"data"`
	}
	require.NoError(t, json.Unmarshal(got[0].body, &p))
	require.Equal(t, "correlation.outcome", p.Type)
	require.Equal(t, c.Outcome.At, p.Timestamp)
	require.Equal(t, "order-42", p.Data.ID)
	require.Equal(t, "shop", p.Data.Namespace)
	require.Equal(t, store.StateCompleted, p.Data.State)
	require.Len(t, p.Data.Replies, 1)
	require.JSONEq(t, `{"ok":true}`, string(p.Data.Replies[0].Body))
	require.JSONEq(t, `{"order":42}`, string(p.Data.Callback.Data))
	require.NotContains(t, string(got[0].body), `"dispatch"`, "no dispatch bookkeeping in the view")
	require.NotContains(t, string(got[0].body), `"events"`)

	after := e.get(t, c.Ref())
	require.Equal(t, store.DispatchDone, after.Dispatch.State)
	require.Zero(t, d.RunOnce(t.Context()), "done: nothing more to send")
}

// A failed first attempt is retried after the backoff with the same
// webhook-id and the same body; the last error names the status.
func TestRetryAfterFailure(t *testing.T) {
	e := newEnv(t, store.Limits{})
	rec := newReceiver(t, [][]byte{secretKey}, http.StatusServiceUnavailable)
	d := e.dispatcher(t, callbacks(t, "* resume "+rec.srv.URL+" "+secretText), nil)
	r := store.Ref{Namespace: "tenant-a", ID: "o1"}
	e.decide(t, r, "resume")

	require.Equal(t, 1, d.RunOnce(t.Context()))
	c := e.get(t, r)
	require.Equal(t, store.DispatchPending, c.Dispatch.State)
	require.Contains(t, c.Dispatch.LastError, "HTTP 503 Service Unavailable: status 503")
	require.Equal(t, t0.Add(time.Minute), c.Dispatch.NextAt, "the backoff of attempt 1")

	e.clock.Add(59 * time.Second)
	require.Zero(t, d.RunOnce(t.Context()), "not before the backoff")
	e.clock.Add(time.Second)
	require.Equal(t, 1, d.RunOnce(t.Context()))
	require.Equal(t, store.DispatchDone, e.get(t, r).Dispatch.State)

	got := rec.deliveries()
	require.Len(t, got, 2)
	rec.requireVerified(t)
	require.Equal(t, got[0].id, got[1].id, "the same webhook-id on every retry, so receivers dedupe")
	require.Equal(t, got[0].body, got[1].body, "the same bytes on every retry")
	require.NotEqual(t, got[0].ts, got[1].ts, "the timestamp of each attempt")
}

// The attempts run out: dead with the last status; a redispatch starts
// over, and the next success makes it done.
func TestDeadThenRedispatch(t *testing.T) {
	e := newEnv(t, store.Limits{DispatchMaxAttempts: 2})
	rec := newReceiver(t, [][]byte{secretKey}, 500, 500)
	d := e.dispatcher(t, callbacks(t, "default h "+rec.srv.URL+" "+secretText), nil)
	r := store.RefOf("o-dead")
	e.decide(t, r, "h")

	require.Equal(t, 1, d.RunOnce(t.Context()))
	e.clock.Add(time.Minute)
	require.Equal(t, 1, d.RunOnce(t.Context()))
	c := e.get(t, r)
	require.Equal(t, store.DispatchDead, c.Dispatch.State)
	require.Contains(t, c.Dispatch.LastError, "HTTP 500")
	e.clock.Add(time.Hour)
	require.Zero(t, d.RunOnce(t.Context()), "dead stays dead")

	_, err := e.st.Redispatch(t.Context(), r)
	require.NoError(t, err)
	require.Equal(t, 1, d.RunOnce(t.Context()))
	require.Equal(t, store.DispatchDone, e.get(t, r).Dispatch.State)
	require.Len(t, rec.deliveries(), 3)
}

// Rotation: every secret signs, so receivers with either one verify.
func TestSecretRotation(t *testing.T) {
	e := newEnv(t, store.Limits{})
	old := newReceiver(t, [][]byte{oldKey})
	cur := newReceiver(t, [][]byte{secretKey})
	d := e.dispatcher(t, callbacks(t, fmt.Sprintf("a h %s %s,%s\nb h %s %s,%s\n", old.srv.URL, secretText, oldText, cur.srv.URL, secretText, oldText)), nil)
	e.decide(t, store.Ref{Namespace: "a", ID: "x"}, "h")
	e.decide(t, store.Ref{Namespace: "b", ID: "x"}, "h")
	require.Equal(t, 2, d.RunOnce(t.Context()))
	for _, r := range []*receiver{old, cur} {
		require.Len(t, r.deliveries(), 1)
		r.requireVerified(t)
		require.Len(t, strings.Fields(r.deliveries()[0].sig), 2)
	}
	require.NotEqual(t, old.deliveries()[0].id, cur.deliveries()[0].id, "the same id in two namespaces: two webhook ids")
}

// Only the handlers and namespaces of the file are claimed: another
// tenant's outcome for a handler of the same name, and pull-only
// handlers, are left alone with their attempts untouched.
func TestClaimsOnlyPushedHandlers(t *testing.T) {
	e := newEnv(t, store.Limits{})
	rec := newReceiver(t, [][]byte{secretKey})
	d := e.dispatcher(t, callbacks(t, "shop h "+rec.srv.URL+" "+secretText+"\nshop p pull\n"), nil)
	e.decide(t, store.Ref{Namespace: "other", ID: "x"}, "h")
	e.decide(t, store.Ref{Namespace: "shop", ID: "y"}, "p")
	e.decide(t, store.Ref{Namespace: "shop", ID: "z"}, "go-handler")
	require.Zero(t, d.RunOnce(t.Context()))
	for _, r := range []store.Ref{{Namespace: "other", ID: "x"}, {Namespace: "shop", ID: "y"}, {Namespace: "shop", ID: "z"}} {
		require.Zero(t, e.get(t, r).Dispatch.Attempts, "%s", r)
	}
	require.Empty(t, rec.deliveries())
}

// A redirect is an answer like any non-2xx: not followed, retried.
func TestRedirectNotFollowed(t *testing.T) {
	e := newEnv(t, store.Limits{})
	target := newReceiver(t, [][]byte{secretKey})
	redirect := httptest.NewServer(http.RedirectHandler(target.srv.URL, http.StatusMovedPermanently))
	t.Cleanup(redirect.Close)
	d := e.dispatcher(t, callbacks(t, "default h "+redirect.URL+" "+secretText), nil)
	e.decide(t, store.RefOf("o"), "h")
	require.Equal(t, 1, d.RunOnce(t.Context()))
	c := e.get(t, store.RefOf("o"))
	require.Equal(t, store.DispatchPending, c.Dispatch.State)
	require.Contains(t, c.Dispatch.LastError, "HTTP 301 Moved Permanently (redirects are not followed")
	require.Empty(t, target.deliveries(), "the redirect target never hears of it")
}

// A receiver that never answers costs one attempt's timeout, then a retry.
func TestHangingReceiver(t *testing.T) {
	e := newEnv(t, store.Limits{})
	ln, err := net.Listen("tcp", "127.0.0.1:0") // accepts (the kernel does) but never answers
	require.NoError(t, err)
	t.Cleanup(func() { ln.Close() })
	var conns []net.Conn
	var mu sync.Mutex
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	d := e.dispatcher(t, callbacks(t, "default h http://"+ln.Addr().String()+"/ "+secretText), func(c *webhook.Config) {
		c.Timeout = 200 * time.Millisecond
	})
	e.decide(t, store.RefOf("o"), "h")
	start := time.Now()
	require.Equal(t, 1, d.RunOnce(t.Context()))
	require.Less(t, time.Since(start), 5*time.Second, "bounded by the attempt's timeout")
	c := e.get(t, store.RefOf("o"))
	require.Equal(t, store.DispatchPending, c.Dispatch.State)
	require.Contains(t, c.Dispatch.LastError, "no answer within 200ms")
}

// endless is an answer body that never ends (2 GB and more): the read is
// capped, so the attempt neither buffers it nor waits for its end.
type endless struct{}

func (endless) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = 'x'
	}
	return len(p), nil
}

func TestHugeAnswerCapped(t *testing.T) {
	for _, status := range []int{http.StatusOK, http.StatusInternalServerError} {
		t.Run(strconv.Itoa(status), func(t *testing.T) {
			e := newEnv(t, store.Limits{})
			var sent int64
			var mu sync.Mutex
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Length", strconv.FormatInt(2<<30, 10)) // 2 GB announced
				w.WriteHeader(status)
				n, _ := io.Copy(w, io.LimitReader(endless{}, 2<<30))
				mu.Lock()
				sent = n
				mu.Unlock()
			}))
			t.Cleanup(srv.Close)
			d := e.dispatcher(t, callbacks(t, "default h "+srv.URL+" "+secretText), nil)
			e.decide(t, store.RefOf("o"), "h")
			require.Equal(t, 1, d.RunOnce(t.Context()))
			c := e.get(t, store.RefOf("o"))
			if status == http.StatusOK {
				require.Equal(t, store.DispatchDone, c.Dispatch.State)
			} else {
				require.Equal(t, store.DispatchPending, c.Dispatch.State)
				require.Contains(t, c.Dispatch.LastError, "HTTP 500")
				require.Less(t, len(c.Dispatch.LastError), 1024, "the error keeps the head of the answer only")
			}
			srv.Close() // the handler returns once its writes fail
			mu.Lock()
			defer mu.Unlock()
			require.Less(t, sent, int64(64<<20), "the dispatcher stopped reading far before 2 GB")
		})
	}
}

// A refused connection is a failed attempt like any other.
func TestRefusedConnection(t *testing.T) {
	e := newEnv(t, store.Limits{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	ln.Close()
	d := e.dispatcher(t, callbacks(t, "default h http://"+addr+" "+secretText), nil)
	e.decide(t, store.RefOf("o"), "h")
	require.Equal(t, 1, d.RunOnce(t.Context()))
	require.Contains(t, e.get(t, store.RefOf("o")).Dispatch.LastError, "refused")
}

// At most PerURL attempts are in flight to one URL.
func TestPerURLBound(t *testing.T) {
	e := newEnv(t, store.Limits{})
	release := make(chan struct{})
	var mu sync.Mutex
	inflight, most := 0, 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		inflight++
		most = max(most, inflight)
		mu.Unlock()
		<-release
		mu.Lock()
		inflight--
		mu.Unlock()
	}))
	t.Cleanup(srv.Close)
	d := e.dispatcher(t, callbacks(t, "default h "+srv.URL+" "+secretText), func(c *webhook.Config) { c.PerURL = 2 })
	for i := range 5 {
		e.decide(t, store.RefOf(fmt.Sprintf("o%d", i)), "h")
	}
	done := make(chan int)
	go func() { done <- d.RunOnce(t.Context()) }()
	require.Eventually(t, func() bool { mu.Lock(); defer mu.Unlock(); return inflight == 2 }, 5*time.Second, time.Millisecond)
	close(release)
	require.Equal(t, 2, <-done, "one pass claims only the free slots of the URL")
	mu.Lock()
	require.Equal(t, 2, most)
	mu.Unlock()
	require.Equal(t, 2, d.RunOnce(t.Context()))
	require.Equal(t, 1, d.RunOnce(t.Context()))
}

// Run stops when its context ends; an attempt cut short is handed back,
// due at once, for the next dispatcher.
func TestRunStopsAndHandsBack(t *testing.T) {
	e := newEnv(t, store.Limits{})
	entered := make(chan struct{}, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.ReadAll(r.Body) // the server notices a hang-up once the body is read
		entered <- struct{}{}
		<-r.Context().Done()
	}))
	t.Cleanup(srv.Close)
	d := e.dispatcher(t, callbacks(t, "default h "+srv.URL+" "+secretText), nil)
	e.decide(t, store.RefOf("o"), "h")
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error)
	go func() { done <- d.Run(ctx) }()
	<-entered
	cancel()
	require.NoError(t, <-done)
	c := e.get(t, store.RefOf("o"))
	require.Equal(t, store.DispatchPending, c.Dispatch.State)
	require.True(t, c.Dispatch.NextAt.Equal(e.clock.Now()), "due at once for the next dispatcher")
	require.Contains(t, c.Dispatch.LastError, "serve stopping")
}

func TestDefaultBackoff(t *testing.T) {
	for attempt, want := range map[int]time.Duration{1: 5 * time.Second, 2: 10 * time.Second, 5: 80 * time.Second, 11: time.Hour, 50: time.Hour} {
		for range 20 {
			got := webhook.DefaultBackoff(attempt)
			require.GreaterOrEqual(t, got, want*8/10, "attempt %d", attempt)
			require.LessOrEqual(t, got, want*12/10, "attempt %d", attempt)
		}
	}
}

// Run sends an outcome decided while it runs without waiting for its
// interval (an hour here): the store's outcome event wakes it, unless its
// first pass came after the outcome.
func TestRunWakesOnOutcome(t *testing.T) {
	e := newEnv(t, store.Limits{})
	got := make(chan string, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.ReadAll(r.Body)
		got <- r.Header.Get("webhook-id")
	}))
	t.Cleanup(srv.Close)
	d := e.dispatcher(t, callbacks(t, "default h "+srv.URL+" "+secretText), func(c *webhook.Config) { c.Interval = time.Hour })
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error)
	go func() { done <- d.Run(ctx) }()
	c := e.decide(t, store.RefOf("o"), "h")
	select {
	case id := <-got:
		require.Equal(t, webhook.MessageID(c), id)
	case <-time.After(time.Minute):
		t.Fatal("the outcome event did not wake the dispatcher")
	}
	cancel()
	require.NoError(t, <-done)
}
