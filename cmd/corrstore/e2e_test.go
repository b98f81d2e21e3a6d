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
	"syscall"
	"testing"
	"time"
)

// binary builds the real corrstore binary once per test run.
var binary = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "corrstore-e2e")
	if err != nil {
		return "", err
	}
	binaryDir = dir
	bin := filepath.Join(dir, "corrstore")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
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
		<-p.done
		p.cmd.Wait()
	}
}

// stop sends SIGTERM and expects a clean exit.
func (p *proc) stop() {
	p.t.Helper()
	p.cmd.Process.Signal(syscall.SIGTERM)
	<-p.done
	if err := p.cmd.Wait(); err != nil {
		p.t.Errorf("exit after SIGTERM: %v\n%s", err, p.logText())
	}
	if !strings.Contains(p.logText(), "corrstore stopped") {
		p.t.Errorf("no clean stop in the log:\n%s", p.logText())
	}
}

func (p *proc) call(method, path string, body any) (int, map[string]any, error) {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, p.base+path, rd)
	if err != nil {
		return 0, nil, err
	}
	res, err := http.DefaultClient.Do(req)
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
	p.stop()
}

// TestKillAndRestart SIGKILLs the server while clients register, restarts
// it on the same file, and checks that every registration that got a 201
// is there and is decided exactly once.
func TestKillAndRestart(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("builds the binary")
	}
	db := filepath.Join(t.TempDir(), "c.db")
	p := start(t, db, "--reaper-interval", "50ms")
	var (
		mu     sync.Mutex
		acked  []string
		wg     sync.WaitGroup
		enough = make(chan struct{})
		once   sync.Once
	)
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 2000; i++ {
				id := fmt.Sprintf("k-%d-%d", w, i)
				code, _, err := p.call("POST", "/v1/correlations", m{"id": id, "timeout": "1s"})
				if err != nil {
					return // the server is gone
				}
				if code == 201 {
					mu.Lock()
					acked = append(acked, id)
					if len(acked) == 300 {
						once.Do(func() { close(enough) })
					}
					mu.Unlock()
				}
			}
		}()
	}
	<-enough
	p.cmd.Process.Signal(syscall.SIGKILL)
	wg.Wait()
	<-p.done
	p.cmd.Wait()

	p = start(t, db, "--reaper-interval", "50ms")
	for _, id := range acked {
		c := p.must("GET", "/v1/correlations/"+id+"/outcome?wait=10s", nil, 200)
		if c["state"] != "timed_out" {
			t.Fatalf("%s: %v", id, c["state"])
		}
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
