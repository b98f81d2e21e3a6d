package main

import (
	"bufio"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/corrstore/corrstore/internal/testenv"
	"github.com/corrstore/corrstore/redisstore/redistest"
)

// The receivers and the pull worker these tests run are the code blocks of
// docs/OPERATIONS.md, extracted as they are: the documented examples
// cannot rot. Each runs against a real serve over loopback.

var e2eSecret = "whsec_" + base64.StdEncoding.EncodeToString([]byte("corrstore-e2e-webhook-secret-32b"))

// docExample returns the code block of docs/OPERATIONS.md that follows the
// marker "<!-- example: name".
func docExample(t *testing.T, name string) string {
	t.Helper()
	doc, err := os.ReadFile(testenv.ModuleFile(t, "docs/OPERATIONS.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(doc), "<!-- example: "+name)
	if !ok {
		t.Fatalf("docs/OPERATIONS.md has no example %s", name)
	}
	_, rest, _ = strings.Cut(rest, "```")
	_, rest, _ = strings.Cut(rest, "\n") // the fence's language
	code, _, ok := strings.Cut(rest, "```")
	if !ok {
		t.Fatalf("docs/OPERATIONS.md: example %s has no closing fence", name)
	}
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(code), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func need(t *testing.T, program string) string {
	t.Helper()
	path, err := exec.LookPath(program)
	if err != nil {
		testenv.SkipOrFail(t, program+" is not installed: the documented "+program+" examples cannot run")
	}
	return path
}

// script is a running example; lines gets each line it prints.
type script struct {
	cmd   *exec.Cmd
	lines chan string
	mu    sync.Mutex
	out   strings.Builder
}

func runScript(t *testing.T, env []string, argv ...string) *script {
	t.Helper()
	s := &script{lines: make(chan string, 100)}
	s.cmd = exec.Command(argv[0], argv[1:]...)
	s.cmd.Env = append(os.Environ(), env...)
	stdout, err := s.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	s.cmd.Stderr = &lockedWriter{s}
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			s.write(sc.Text() + "\n")
			s.lines <- sc.Text()
		}
		close(s.lines)
	}()
	t.Cleanup(func() { s.cmd.Process.Kill(); s.cmd.Wait() })
	return s
}

type lockedWriter struct{ s *script }

func (w *lockedWriter) Write(p []byte) (int, error) { w.s.write(string(p)); return len(p), nil }

func (s *script) write(text string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.out.WriteString(text)
}

func (s *script) output() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.out.String()
}

// expect waits for the line want, failing with what the script and the
// servers said when it does not come within a minute.
func (s *script) expect(t *testing.T, want string, servers ...*proc) {
	t.Helper()
	timeout := time.After(time.Minute)
	for {
		select {
		case line, ok := <-s.lines:
			if !ok {
				t.Fatalf("%s exited before printing %q:\n%s", s.cmd.Path, want, s.output())
			}
			if line == want {
				return
			}
		case <-timeout:
			var logs string
			for _, p := range servers {
				logs += p.logText()
			}
			t.Fatalf("no %q within a minute; the script said:\n%s\nserve said:\n%s", want, s.output(), logs)
		}
	}
}

// freePort is a loopback port nothing listens on (yet).
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// eventually polls cond (a read of the server's state; the binary has no
// clock to drive) until it holds, for at most a minute.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("%s: not within a minute", what)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func dispatchOf(p *proc, id string) map[string]any {
	_, v, _ := p.call("GET", "/v1/correlations/"+id, nil)
	d, _ := v["dispatch"].(map[string]any)
	return d
}

func callbacksFile(t *testing.T, port int) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "callbacks.txt")
	text := fmt.Sprintf("# the e2e receivers\n* resume-order http://127.0.0.1:%d/hook %s\n* invoice pull\n", port, e2eSecret)
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// webhookFlags are serve's flags for a callbacks file, with a short retry
// so that the test's failed first attempt is retried soon, within a budget
// (10 attempts, about 13 s) that a slow start of the receiver does not use up.
func webhookFlags(file string) []string {
	return []string{"--callbacks-file", file, "--callbacks-strict", "--webhook-retry-min", "200ms", "--webhook-retry-max", "2s"}
}

// pushAndPull is the "done when": a correlation registered over
// HTTP (on reg) with a handler reaches the documented Python receiver,
// signed and verified with the standard library, after a failed first
// attempt (nothing listened yet); a documented Python pull worker claims
// and acks another one (from pull). Replies and cancels go to other.
func pushAndPull(t *testing.T, port int, reg, other, pull *proc) {
	python := need(t, "python3")
	receiver := docExample(t, "webhook_receiver.py")
	worker := docExample(t, "pull_worker.py")

	reg.must("POST", "/v1/correlations", m{"id": "order-42", "timeout": "5m",
		"callback": m{"handler": "resume-order", "data": m{"order": 42}}}, 201)
	other.must("POST", "/v1/correlations/order-42/replies", m{"from": "payments", "body": m{"paid": true}}, 200)
	// Nothing listens on the receiver's port yet: the first attempt fails.
	eventually(t, "a failed first attempt", func() bool {
		d := dispatchOf(reg, "order-42")
		n, _ := d["attempts"].(float64)
		return n >= 1 && strings.Contains(fmt.Sprint(d["last_error"]), "refused")
	})
	rec := runScript(t, []string{"WEBHOOK_SECRET=" + e2eSecret, fmt.Sprint("PORT=", port)}, python, receiver)
	rec.expect(t, "outcome default order-42 completed", reg, other)
	eventually(t, "dispatch done", func() bool { return dispatchOf(other, "order-42")["state"] == "done" })
	if n := dispatchOf(reg, "order-42")["attempts"].(float64); n < 2 {
		t.Errorf("done after %v attempts, want the failed one and more", n)
	}

	reg.must("POST", "/v1/correlations", m{"id": "inv-1", "timeout": "5m", "callback": m{"handler": "invoice"}}, 201)
	other.must("POST", "/v1/correlations/inv-1/cancel", m{"reason": "customer withdrew"}, 200)
	w := runScript(t, []string{"CORRSTORE_URL=" + pull.base, "HANDLER=invoice"}, python, worker)
	w.expect(t, "outcome default inv-1 cancelled", reg, other)
	eventually(t, "the pull worker's ack", func() bool { return dispatchOf(reg, "inv-1")["state"] == "done" })

	// The webhook handler cannot be pulled; an unknown handler is refused.
	pull.must("POST", "/v1/dispatch/claim", m{"handler": "resume-order"}, 409)
	reg.must("POST", "/v1/correlations", m{"id": "typo", "callback": m{"handler": "resume-ordr"}}, 400)
}

func TestWebhooksAndPullOnBolt(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("builds the binary")
	}
	port := freePort(t)
	p := start(t, filepath.Join(t.TempDir(), "c.db"), webhookFlags(callbacksFile(t, port))...)
	pushAndPull(t, port, p, p, p)
	p.stop()
}

// Two serve processes on one redis-server: the correlation is registered
// on A and decided on B; whichever replica claims makes each attempt.
func TestWebhooksAndPullOnTwoServersSharingRedis(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("builds the binary")
	}
	srv := redistest.StartServer(t, redistest.ServerOptions{Dir: redistest.MemDir(t)})
	port := freePort(t)
	flags := webhookFlags(callbacksFile(t, port))
	a := startOn(t, "redis://"+srv.Addr()+"/0", flags...)
	b := startOn(t, "redis://"+srv.Addr()+"/0", flags...)
	pushAndPull(t, port, a, b, b)
	a.stop()
	b.stop()
}

// The documented Node receiver verifies with the standardwebhooks package
// (installed by .ci/run: npm ci in testdata/webhook-node).
func TestWebhookVerifiedByStandardWebhooksNode(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("builds the binary")
	}
	node := need(t, "node")
	modules := testenv.ModuleFile(t, "cmd/corrstore/testdata/webhook-node/node_modules")
	if _, err := os.Stat(filepath.Join(modules, "standardwebhooks")); err != nil {
		testenv.SkipOrFail(t, "the standardwebhooks npm package is not installed: run npm ci in cmd/corrstore/testdata/webhook-node (.ci/run does)")
	}
	receiver := docExample(t, "webhook_receiver.js")
	port := freePort(t)
	rec := runScript(t, []string{"WEBHOOK_SECRET=" + e2eSecret, fmt.Sprint("PORT=", port), "NODE_PATH=" + modules}, node, receiver)
	// The receiver listens once node has loaded it; until then attempts fail and are retried.
	p := start(t, filepath.Join(t.TempDir(), "c.db"), webhookFlags(callbacksFile(t, port))...)
	p.must("POST", "/v1/correlations", m{"id": "order-7", "namespace": "shop", "timeout": "5m",
		"callback": m{"handler": "resume-order", "data": m{"order": 7}}}, 201)
	p.must("POST", "/v1/correlations/order-7/expire?namespace=shop", m{"reason": "operator"}, 200)
	rec.expect(t, "outcome shop order-7 timed_out", p)
	eventually(t, "dispatch done", func() bool {
		_, v, _ := p.call("GET", "/v1/correlations/order-7?namespace=shop", nil)
		d, _ := v["dispatch"].(map[string]any)
		return d["state"] == "done"
	})
	// A receiver holding another secret refuses (401): the signature is checked.
	res, err := http.Post(fmt.Sprintf("http://127.0.0.1:%d/", port), "application/json", strings.NewReader(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusUnauthorized {
		t.Errorf("an unsigned request: %d, want 401", res.StatusCode)
	}
	p.stop()
}

// hangFirst is a webhook receiver whose first request never gets an
// answer (the attempt dies with its server); later ones are answered 204.
type hangFirst struct {
	mu      sync.Mutex
	ids     []string
	bodies  []string
	first   chan struct{}
	release chan struct{}
}

func (h *hangFirst) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	h.mu.Lock()
	h.ids = append(h.ids, r.Header.Get("webhook-id"))
	h.bodies = append(h.bodies, string(body))
	n := len(h.ids)
	h.mu.Unlock()
	if n == 1 {
		close(h.first)
		<-h.release
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// At least once across a kill -9 mid-attempt: the servers on one Redis die
// while the receiver holds the attempt; a new server makes it again after
// the lease, with the same webhook-id and body.
func TestWebhookSurvivesKillMidAttempt(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("builds the binary")
	}
	srv := redistest.StartServer(t, redistest.ServerOptions{Dir: redistest.MemDir(t)})
	h := &hangFirst{first: make(chan struct{}), release: make(chan struct{})}
	rec := httptest.NewServer(h)
	t.Cleanup(rec.Close)
	t.Cleanup(func() { close(h.release) }) // before rec.Close, which waits for the handler
	port := rec.Listener.Addr().(*net.TCPAddr).Port
	flags := append(webhookFlags(callbacksFile(t, port)), "--webhook-timeout", "1s") // lease 7s
	url := "redis://" + srv.Addr() + "/0"
	a := startOn(t, url, flags...)
	b := startOn(t, url, flags...)
	a.must("POST", "/v1/correlations", m{"id": "order-9", "timeout": "5m", "callback": m{"handler": "resume-order"}}, 201)
	b.must("POST", "/v1/correlations/order-9/cancel", nil, 200)
	await(t, "the first attempt", h.first)
	a.kill()
	b.kill()

	c := startOn(t, url, flags...)
	eventually(t, "the attempt made again after the lease", func() bool { return dispatchOf(c, "order-9")["state"] == "done" })
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.ids) != 2 || h.ids[0] != h.ids[1] || h.bodies[0] != h.bodies[1] {
		t.Fatalf("want the same webhook twice, got ids %q", h.ids)
	}
	c.stop()
}
