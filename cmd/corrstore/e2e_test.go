package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/corrstore/corrstore/cmd/corrstore/internal/apitest"
)

// binary builds the real corrstore binary once per test run.
var binary = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "corrstore-e2e")
	if err != nil {
		return "", err
	}
	binaryDir = dir
	bin := filepath.Join(dir, "corrstore")
	// -buildvcs=true, as make build: the revision for corrstore version,
	// whatever GOFLAGS says (this machine's go env says -buildvcs=false).
	out, err := exec.Command("go", "build", "-buildvcs=true", "-o", bin, ".").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build: %v\n%s", err, out)
	}
	return bin, nil
})

// binaryDir is removed by TestMain.
var binaryDir string

type proc struct {
	t    *testing.T
	cmd  *exec.Cmd
	base string
	logs *bytes.Buffer
	mu   *sync.Mutex
	done chan struct{}
	// token, when set, is sent as the bearer token.
	token string
}

// httpClient bounds every request of the end-to-end tests: a server that
// stops answering fails the test instead of hanging it (the longest long
// poll they make is 2 minutes).
var httpClient = &http.Client{Timeout: 3 * time.Minute}

// await returns what ch gives, or fails the test when it gives nothing for
// a minute.
func await[T any](t *testing.T, what string, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(time.Minute):
		t.Fatalf("no %s after a minute", what)
		panic("unreachable")
	}
}

var addrRE = regexp.MustCompile(`msg="corrstore serving".* addr=(\S+)`)

// start runs `corrstore serve` on dbPath and waits for its listen address.
func start(t *testing.T, dbPath string, args ...string) *proc {
	t.Helper()
	return startOn(t, "bolt://"+dbPath, args...)
}

// startOn runs `corrstore serve --store storeURL` and waits for its listen
// address.
func startOn(t *testing.T, storeURL string, args ...string) *proc {
	t.Helper()
	bin, err := binary()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, append([]string{"serve", "--listen", "127.0.0.1:0", "--store", storeURL}, args...)...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{t: t, cmd: cmd, logs: &bytes.Buffer{}, mu: &sync.Mutex{}, done: make(chan struct{})}
	addr := make(chan string, 1)
	go func() {
		defer close(p.done)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			p.mu.Lock()
			p.logs.WriteString(sc.Text() + "\n")
			p.mu.Unlock()
			if m := addrRE.FindStringSubmatch(sc.Text()); m != nil {
				addr <- m[1]
			}
		}
		close(addr)
	}()
	var a string
	ok := false
	select {
	case a, ok = <-addr:
	case <-time.After(time.Minute):
		cmd.Process.Kill()
	}
	if !ok {
		cmd.Wait()
		t.Fatalf("serve exited before listening:\n%s", p.logText())
	}
	p.base = "http://" + a
	t.Cleanup(func() { p.kill() })
	return p
}

func (p *proc) logText() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.logs.String()
}

func (p *proc) kill() {
	if p.cmd.ProcessState == nil {
		p.cmd.Process.Kill()
		select {
		case <-p.done:
		case <-time.After(time.Minute): // a child holding stderr open
		}
		p.cmd.Wait()
	}
}

// as returns p sending token as the bearer token.
func (p *proc) as(token string) *proc {
	q := *p
	q.token = token
	return &q
}

// stop sends SIGTERM and expects a clean exit.
func (p *proc) stop() {
	p.t.Helper()
	p.cmd.Process.Signal(syscall.SIGTERM)
	await(p.t, "exit after SIGTERM", p.done)
	if err := p.cmd.Wait(); err != nil {
		p.t.Errorf("exit after SIGTERM: %v\n%s", err, p.logText())
	}
	if !strings.Contains(p.logText(), "corrstore stopped") {
		p.t.Errorf("no clean stop in the log:\n%s", p.logText())
	}
}

// send sends body as JSON (no body when nil), with p's bearer token, and
// checks the answer against docs/openapi.yaml (apitest.Check).
func (p *proc) send(method, path string, body any) (*http.Response, error) {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, p.base+path, rd)
	if err != nil {
		return nil, err
	}
	if p.token != "" {
		req.Header.Set("Authorization", "Bearer "+p.token)
	}
	res, err := httpClient.Do(req)
	if err != nil {
		return nil, err
	}
	// Every answer is checked against docs/openapi.yaml. One cut short (a
	// server killed while answering) reaches the caller as it came.
	b, err := io.ReadAll(res.Body)
	res.Body.Close()
	if err != nil {
		res.Body = io.NopCloser(io.MultiReader(bytes.NewReader(b), errReader{err}))
		return res, nil
	}
	apitest.Check(p.t, req, res, b)
	res.Body = io.NopCloser(bytes.NewReader(b))
	return res, nil
}

// errReader fails every read with its error.
type errReader struct{ err error }

func (r errReader) Read([]byte) (int, error) { return 0, r.err }

func (p *proc) call(method, path string, body any) (int, map[string]any, error) {
	res, err := p.send(method, path, body)
	if err != nil {
		return 0, nil, err
	}
	defer res.Body.Close()
	var v map[string]any
	json.NewDecoder(res.Body).Decode(&v)
	return res.StatusCode, v, nil
}

func (p *proc) must(method, path string, body any, want int) map[string]any {
	p.t.Helper()
	code, v, err := p.call(method, path, body)
	if err != nil {
		p.t.Fatal(err)
	}
	if code != want {
		p.t.Fatalf("%s %s: %d, want %d: %v", method, path, code, want, v)
	}
	return v
}

type m = map[string]any

func TestEndToEnd(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("builds the binary")
	}
	dir := t.TempDir()
	p := start(t, filepath.Join(dir, "c.db"), "--reaper-interval", "50ms")

	// register → long poll → reply → outcome; duplicate and late.
	reg := p.must("POST", "/v1/correlations", m{"id": "one", "timeout": "1m"}, 201)
	poll := make(chan map[string]any, 1)
	go func() {
		_, v, _ := p.call("GET", "/v1/correlations/one/outcome?wait=30s", nil)
		poll <- v
	}()
	d := p.must("POST", "/v1/replies/"+reg["reply_token"].(string), m{"id": "r1", "body": m{"ok": true}}, 200)
	if d["status"] != "completed" {
		t.Fatalf("reply: %v", d)
	}
	if v := <-poll; v["state"] != "completed" {
		t.Fatalf("poll: %v", v)
	}
	if v := p.must("POST", "/v1/correlations/one/replies", m{"id": "r1", "body": m{"ok": true}}, 200); v["status"] != "duplicate" {
		t.Errorf("duplicate: %v", v)
	}
	if v := p.must("POST", "/v1/correlations/one/replies", m{"id": "r2"}, 409); v["status"] != "late" {
		t.Errorf("late: %v", v)
	}

	// Deadlines decided by the reaper: a gather with its quorum, a single with none.
	// The gather's reply comes first and is buffered, so it is in place at
	// registration however slow the machine is: no race with the deadline.
	if v := p.must("POST", "/v1/correlations/g/replies", m{"from": "a", "body": 1}, 200); v["status"] != "buffered" {
		t.Fatalf("early reply: %v", v)
	}
	p.must("POST", "/v1/correlations", m{"id": "g", "pattern": "gather", "expect": 3, "quorum": 1, "timeout": "300ms"}, 201)
	p.must("POST", "/v1/correlations", m{"id": "s", "timeout": "300ms"}, 201)
	g := p.must("GET", "/v1/correlations/g/outcome?wait=10s", nil, 200)
	if g["state"] != "completed" || g["outcome"].(map[string]any)["partial"] != true {
		t.Errorf("gather at deadline: %v", g)
	}
	if s := p.must("GET", "/v1/correlations/s/outcome?wait=10s", nil, 200); s["state"] != "timed_out" {
		t.Errorf("single at deadline: %v", s)
	}

	// A reply token outlives a restart: without --reply-secret-file the
	// server signs with a secret kept in the store.
	kept := p.must("POST", "/v1/correlations", m{"id": "kept", "timeout": "1h"}, 201)
	p.stop()
	p = start(t, filepath.Join(dir, "c.db"), "--reaper-interval", "50ms")
	if v := p.must("POST", "/v1/replies/"+kept["reply_token"].(string), m{"id": "r1"}, 200); v["status"] != "completed" {
		t.Errorf("a reply token made before the restart: %v", v)
	}
	p.stop()
}

// TestKillAndRestart SIGKILLs the server while clients register, restarts
// it on the same file, and checks that every registration that got a 201
// is there and is decided exactly once. Any answer but 201 before the kill
// fails it, and so does any wait that takes more than a minute.
func TestKillAndRestart(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("builds the binary")
	}
	db := filepath.Join(t.TempDir(), "c.db")
	p := start(t, db, "--reaper-interval", "50ms")
	var (
		mu      sync.Mutex
		acked   []string
		bad     []string // answers other than 201
		killed  atomic.Bool
		wg      sync.WaitGroup
		enough  = make(chan struct{})
		once    sync.Once
		stopped = make(chan struct{})
	)
	for w := range 8 {
		wg.Go(func() {
			for i := 0; i < 2000; i++ {
				id := fmt.Sprintf("k-%d-%d", w, i)
				code, v, err := p.call("POST", "/v1/correlations", m{"id": id, "timeout": "1s"})
				mu.Lock()
				switch {
				case err != nil && killed.Load():
					mu.Unlock()
					return // the server is gone
				case err != nil:
					bad = append(bad, fmt.Sprintf("%s: %v (before the kill)", id, err))
				case code != 201:
					bad = append(bad, fmt.Sprintf("%s: %d %v", id, code, v))
				default:
					acked = append(acked, id)
					if len(acked) == 300 {
						once.Do(func() { close(enough) })
					}
				}
				failed := len(bad) > 0
				mu.Unlock()
				if failed {
					return
				}
			}
		})
	}
	go func() { wg.Wait(); close(stopped) }()
	select {
	case <-enough:
	case <-stopped:
	case <-time.After(time.Minute):
	}
	killed.Store(true)
	p.cmd.Process.Signal(syscall.SIGKILL)
	await(t, "end of the clients after SIGKILL", stopped)
	await(t, "exit after SIGKILL", p.done)
	p.cmd.Wait()
	if len(bad) > 0 {
		t.Fatalf("%d answers were not 201 (%d were), first: %s\n%s", len(bad), len(acked), bad[0], p.logText())
	}
	if len(acked) < 300 {
		t.Fatalf("only %d registrations acknowledged in a minute\n%s", len(acked), p.logText())
	}

	p = start(t, db, "--reaper-interval", "50ms")
	for _, id := range acked {
		if c := p.must("GET", "/v1/correlations/"+id+"/outcome?wait=10s", nil, 200); c["state"] != "timed_out" {
			t.Fatalf("%s: %v", id, c["state"])
		}
		c := p.must("GET", "/v1/correlations/"+id, nil, 200) // the timeline: the outcome view has none
		n := 0
		for _, e := range c["events"].([]any) {
			if e.(map[string]any)["type"] == "outcome" {
				n++
			}
		}
		if n != 1 {
			t.Fatalf("%s decided %d times: %v", id, n, c["events"])
		}
	}
	t.Logf("%d acknowledged registrations survived SIGKILL, each decided once", len(acked))
	p.stop()
}

// raw is an answer as it came: status and body bytes, to compare two
// answers exactly.
type raw struct {
	code int
	body string
}

func (p *proc) raw(method, path string, body any) raw {
	p.t.Helper()
	res, err := p.send(method, path, body)
	if err != nil {
		p.t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		p.t.Fatal(err)
	}
	return raw{res.StatusCode, string(b)}
}

// TestNamespacesIsolate runs the binary with a token per namespace: the same
// ID registered in both is two correlations, each token sees only its own,
// and a token asking for the other namespace's ID gets exactly the answer it
// gets for an ID that does not exist. The operator commands, given a token,
// see what it may see.
func TestNamespacesIsolate(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("builds the binary")
	}
	dir := t.TempDir()
	const (
		tokA  = "token-team-a-0123456789"
		tokB  = "token-team-b-0123456789"
		tokOp = "token-operator-0123456789"
	)
	tokens := filepath.Join(dir, "tokens")
	if err := os.WriteFile(tokens, []byte(tokA+" writer team-a a\n"+tokB+" writer team-b b\n"+tokOp+" admin * ops\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	p := start(t, filepath.Join(dir, "c.db"), "--token-file", tokens, "--reaper-interval", "1h")
	a, b, op := p.as(tokA), p.as(tokB), p.as(tokOp)

	// Before team-a holds secret-1, what team-b gets when it asks for it.
	probes := []struct{ method, path string }{
		{"GET", "/v1/correlations/secret-1?namespace=team-a"},
		{"GET", "/v1/correlations/secret-1/outcome?namespace=team-a"},
		{"POST", "/v1/correlations/secret-1/extend?namespace=team-a"},
		{"POST", "/v1/correlations/secret-1/cancel?namespace=team-a"},
		{"GET", "/v1/correlations/secret-1"}, // in team-b, B's only namespace
	}
	bodies := map[string]any{"extend": m{"timeout": "1m"}, "cancel": m{"reason": "probe"}}
	probe := func() []raw {
		var out []raw
		for _, pr := range probes {
			var body any
			for k, v := range bodies {
				if strings.HasSuffix(pr.path, "/"+k+"?namespace=team-a") {
					body = v
				}
			}
			out = append(out, b.raw(pr.method, pr.path, body))
		}
		return out
	}
	missing := probe()
	if missing[0].code != 404 || missing[4].code != 404 {
		t.Fatalf("a missing ID: %v", missing)
	}

	// The same ID in both namespaces: two registrations, no conflict.
	ra := a.must("POST", "/v1/correlations", m{"id": "order-42", "timeout": "1h", "destination": "from-a"}, 201)
	rb := b.must("POST", "/v1/correlations", m{"id": "order-42", "namespace": "team-b", "timeout": "1h", "destination": "from-b"}, 201)
	if ra["namespace"] != "team-a" || rb["namespace"] != "team-b" {
		t.Fatalf("namespaces: %v / %v", ra["namespace"], rb["namespace"])
	}
	a.must("POST", "/v1/correlations", m{"id": "secret-1", "namespace": "team-a", "timeout": "1h"}, 201)
	if got := probe(); fmt.Sprint(got) != fmt.Sprint(missing) {
		t.Errorf("team-b learns that team-a holds secret-1:\nmissing: %v\nforeign: %v", missing, got)
	}
	if got := a.must("GET", "/v1/correlations/order-42", nil, 200); got["destination"] != "from-a" {
		t.Errorf("A reads %v", got)
	}
	if got := b.must("GET", "/v1/correlations/order-42", nil, 200); got["destination"] != "from-b" {
		t.Errorf("B reads %v", got)
	}

	// A's reply token completes A's order-42, not B's.
	d := p.must("POST", "/v1/replies/"+ra["reply_token"].(string), m{"id": "r1", "body": m{"ok": true}}, 200)
	if d["status"] != "completed" {
		t.Fatalf("reply: %v", d)
	}
	if got := op.must("GET", "/v1/correlations/order-42?namespace=team-b", nil, 200); got["state"] != "pending" {
		t.Errorf("team-b's order-42 after A's reply: %v", got["state"])
	}

	// The operator commands, with each token.
	bin, err := binary()
	if err != nil {
		t.Fatal(err)
	}
	cli := func(token string, args ...string) (string, error) {
		tf := filepath.Join(dir, "cli-token")
		if err := os.WriteFile(tf, []byte(token+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(bin, append(args, "--server", p.base, "--token-file", tf)...).CombinedOutput()
		return string(out), err
	}
	out, err := cli(tokB, "ls", "-o", "json")
	if err != nil || !strings.Contains(out, `"namespace": "team-b"`) || strings.Contains(out, "team-a") {
		t.Errorf("ls with B's token: %v\n%s", err, out)
	}
	out, err = cli(tokOp, "ls", "-o", "json")
	if err != nil || !strings.Contains(out, `"namespace": "team-b"`) || !strings.Contains(out, `"namespace": "team-a"`) {
		t.Errorf("ls with the operator's token lists every namespace: %v\n%s", err, out)
	}
	if out, err = cli(tokB, "show", "order-42"); err != nil || !strings.Contains(out, "from-b") {
		t.Errorf("show with B's token: %v\n%s", err, out)
	}
	if out, err = cli(tokOp, "show", "team-a/order-42"); err != nil || !strings.Contains(out, "from-a") {
		t.Errorf("show team-a/order-42 with the operator's token: %v\n%s", err, out)
	}
	out, err = cli(tokB, "show", "team-a/secret-1")
	if want := "corrstore: show: team-a/secret-1: not found\n"; err == nil || out != want {
		t.Errorf("show of a foreign ID with B's token: %v %q, want %q", err, out, want)
	}
	p.stop()
}

// TestExactDeadlineOverHTTP: with the reaper far away, a reply after the
// deadline is late, and the correlation has its deadline outcome at once.
func TestExactDeadlineOverHTTP(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("builds the binary")
	}
	p := start(t, filepath.Join(t.TempDir(), "c.db"), "--reaper-interval", "1h")
	reg := p.must("POST", "/v1/correlations", m{"id": "due", "timeout": "200ms"}, 201)
	deadline, err := time.Parse(time.RFC3339Nano, reg["deadline"].(string))
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Until(deadline) + 20*time.Millisecond) // the real clock is what is tested
	v := p.must("POST", "/v1/replies/"+reg["reply_token"].(string), m{"id": "r1"}, 409)
	if v["status"] != "late" {
		t.Errorf("a reply after the deadline: %v", v)
	}
	c := p.must("GET", "/v1/correlations/due", nil, 200)
	o, _ := c["outcome"].(map[string]any)
	if c["state"] != "timed_out" || o == nil || o["reason"] != "deadline" {
		t.Errorf("after a late reply, before any reaper pass: %v %v", c["state"], c["outcome"])
	}
	p.stop()
}

// TestLimitsOverHTTP: --max-record-bytes bounds the reply bytes one
// correlation holds (413 past it), and --max-pending-per-namespace the
// pending correlations of a namespace (429 past it, other namespaces free).
func TestLimitsOverHTTP(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("builds the binary")
	}
	p := start(t, filepath.Join(t.TempDir(), "c.db"), "--reaper-interval", "1h",
		"--max-record-bytes", "4096", "--max-pending-per-namespace", "2", "--max-bytes-per-namespace", "5000")
	p.must("POST", "/v1/correlations", m{"id": "g", "pattern": "gather", "expect": 3, "timeout": "1h"}, 201)
	body := strings.Repeat("x", 2500)
	p.must("POST", "/v1/correlations/g/replies", m{"from": "a", "body": body}, 200)
	v := p.must("POST", "/v1/correlations/g/replies", m{"from": "b", "body": body}, 413)
	if msg := fmt.Sprint(v["error"]); !strings.Contains(msg, "4096") {
		t.Errorf("the 413 names the limit: %v", msg)
	}

	p.must("POST", "/v1/correlations", m{"id": "p2", "timeout": "1h"}, 201)
	v = p.must("POST", "/v1/correlations", m{"id": "p3", "timeout": "1h"}, 429)
	if msg := fmt.Sprint(v["error"]); !strings.Contains(msg, "default") {
		t.Errorf("the 429 names the namespace: %v", msg)
	}
	p.must("POST", "/v1/correlations", m{"id": "p3", "namespace": "other", "timeout": "1h"}, 201)

	// Stored bytes: a body of 2500 x's is stored as the JSON string, 2502
	// bytes. Two such replies in namespace big reach the 5000 bytes limit:
	// no registration there, while default (2502 bytes) still registers.
	for _, id := range []string{"b1", "b2"} {
		p.must("POST", "/v1/correlations", m{"id": id, "namespace": "big", "timeout": "1h"}, 201)
		p.must("POST", "/v1/correlations/"+id+"/replies?namespace=big", m{"body": body}, 200)
	}
	v = p.must("POST", "/v1/correlations", m{"id": "b3", "namespace": "big", "timeout": "1h"}, 429)
	if msg := fmt.Sprint(v["error"]); !strings.Contains(msg, `"big" holds 5004 bytes`) || !strings.Contains(msg, "limit is 5000 (max_bytes_per_namespace)") {
		t.Errorf("the 429 names the namespace and the bytes limit: %v", msg)
	}
	p.must("POST", "/v1/correlations", m{"id": "b1", "namespace": "big", "timeout": "1h"}, 200) // a repeat is answered
	v = p.must("GET", "/v1/stats?namespace=*", nil, 200)
	ns := v["namespaces"].(map[string]any)
	for name, want := range map[string]float64{"big": 5004, "default": 2502, "other": 0} {
		got := ns[name].(map[string]any)
		if got["bytes"] != want || got["bytes_limit"] != float64(5000) || got["pending_limit"] != float64(2) {
			t.Errorf("stats of %s: bytes %v of %v, want %v of 5000 (pending limit %v)", name, got["bytes"], got["bytes_limit"], want, got["pending_limit"])
		}
	}
	p.stop()
}
