package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestReproRecord is issue 16 §4's repro through a real `corrstore serve`
// on a bolt file (durable, default limits): with a reply token alone, 1 MiB
// replies to a gather (expect 1000) until the server refuses, then 40 late
// 1 MiB replies to a finished single. It prints each answer's size and
// latency, the server's RSS, and p50/p99 of registrations from 8 other
// clients beside each phase next to the same registrations run alone
// first. It asserts only that the refusal is 413; the figures go to
// docs/BENCHMARKS.md. Off unless CORRSTORE_REPRO_RECORD=1 (make
// repro-record): it sends ~60 MiB and takes a minute.
func TestReproRecord(t *testing.T) {
	if os.Getenv("CORRSTORE_REPRO_RECORD") != "1" {
		t.Skip("CORRSTORE_REPRO_RECORD=1 runs it (make repro-record)")
	}
	db := filepath.Join(t.TempDir(), "repro.db")
	p := start(t, db)
	r := &repro{t: t, base: p.base, pid: p.cmd.Process.Pid, db: db,
		hc: &http.Client{Timeout: 3 * time.Minute, Transport: &http.Transport{MaxIdleConnsPerHost: 16}}}
	defer r.hc.CloseIdleConnections()
	body := mib()

	alone := r.registrations("alone", 8, 50, nil)
	t.Logf("registrations alone: 8 clients × 50: %s", alone)
	t.Logf("server RSS before: %s", r.rss())

	tok := r.register(`{"id":"big-gather","pattern":"gather","expect":1000,"timeout":"1h"}`)
	stop := make(chan struct{})
	beside := r.background("beside-gather", stop)
	var accepted, out int
	var last reproAnswer
	for i := 0; ; i++ {
		last = r.reply(tok, i, body)
		out += last.size
		t.Logf("gather reply %2d: %d %-9s answer %6d B in %s", i+1, last.code, last.status, last.size, last.took.Round(time.Microsecond))
		if last.code != http.StatusOK {
			break
		}
		accepted++
		if i == 200 {
			t.Fatal("200 replies of 1 MiB accepted: no limit")
		}
	}
	close(stop)
	if last.code != http.StatusRequestEntityTooLarge {
		t.Fatalf("the refusal is %d, want 413: %s", last.code, last.text)
	}
	t.Logf("gather: %d replies of 1 MiB accepted, then 413: %s", accepted, strings.TrimSpace(last.text))
	t.Logf("gather: %d MiB sent in, %d B answered", accepted+1, out)
	t.Logf("registrations beside the gather: %s", <-beside)
	t.Logf("server RSS after the gather: %s", r.rss())

	tok = r.register(`{"id":"done-single","timeout":"1h"}`)
	if a := r.reply(tok, -1, []byte(`{"ok":true}`)); a.code != http.StatusOK || a.status != "completed" {
		t.Fatalf("first reply to the single: %d %s", a.code, a.text)
	}
	stop = make(chan struct{})
	beside = r.background("beside-late", stop)
	out = 0
	var took []time.Duration
	codes := map[int]int{}
	for i := range 40 {
		a := r.reply(tok, i, body)
		codes[a.code]++
		out += a.size
		took = append(took, a.took)
	}
	close(stop)
	t.Logf("late replies to a finished single: 40 MiB sent in, %d B answered; answers %v; latency %s", out, codes, latencyText(took))
	t.Logf("registrations beside the late replies: %s", <-beside)
	t.Logf("server RSS after the late replies: %s", r.rss())
}

type repro struct {
	t    *testing.T
	base string
	pid  int
	db   string
	hc   *http.Client
}

type reproAnswer struct {
	code   int
	status string // the deliver status, when the answer has one
	size   int    // bytes of the answer's body
	text   string // the answer's body when it is short
	took   time.Duration
}

// mib is a reply body of exactly 1 MiB: a JSON string.
func mib() []byte {
	return []byte(`"` + strings.Repeat("x", 1<<20-2) + `"`)
}

// post sends body; an answer that did not arrive has code 0 and the error
// as text (post runs on the clients' goroutines too, so it cannot Fatal).
func (r *repro) post(path string, body []byte) reproAnswer {
	start := time.Now()
	res, err := r.hc.Post(r.base+path, "application/json", bytes.NewReader(body))
	if err != nil {
		return reproAnswer{text: err.Error(), took: time.Since(start)}
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(res.Body)
	if err != nil {
		return reproAnswer{text: err.Error(), took: time.Since(start)}
	}
	a := reproAnswer{code: res.StatusCode, size: len(raw), took: time.Since(start)}
	var v struct{ Status string }
	if json.Unmarshal(raw, &v) == nil {
		a.status = v.Status
	}
	if len(raw) < 1024 {
		a.text = string(raw)
	}
	return a
}

// register registers and returns the reply token.
func (r *repro) register(req string) string {
	r.t.Helper()
	a := r.post("/v1/correlations", []byte(req))
	var v struct {
		ReplyToken string `json:"reply_token"`
	}
	if a.code != http.StatusCreated || json.Unmarshal([]byte(a.text), &v) != nil || v.ReplyToken == "" {
		r.t.Fatalf("register %s: %d %s", req, a.code, a.text)
	}
	return v.ReplyToken
}

// reply posts a reply with id r-i (no id when i < 0) and the given body
// with the reply token alone.
func (r *repro) reply(tok string, i int, body []byte) reproAnswer {
	id := ""
	if i >= 0 {
		id = fmt.Sprintf(`"id":"r-%d",`, i)
	}
	req := make([]byte, 0, len(body)+64)
	req = append(req, `{`+id+`"from":"attacker","body":`...)
	req = append(append(req, body...), '}')
	return r.post("/v1/replies/"+tok, req)
}

// registrations has clients goroutines each register single correlations
// one after another: n each, or, with stop, until stop closes.
func (r *repro) registrations(prefix string, clients, n int, stop <-chan struct{}) string {
	var mu sync.Mutex
	var took []time.Duration
	var wg sync.WaitGroup
	for c := range clients {
		wg.Go(func() {
			for i := 0; stop != nil || i < n; i++ {
				if stop != nil {
					select {
					case <-stop:
						return
					default:
					}
				}
				a := r.post("/v1/correlations", fmt.Appendf(nil, `{"id":"%s-%d-%d","timeout":"1h"}`, prefix, c, i))
				if a.code != http.StatusCreated {
					r.t.Errorf("registration: %d %s", a.code, a.text)
					return
				}
				mu.Lock()
				took = append(took, a.took)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return latencyText(took)
}

// background runs registrations from 8 clients until stop closes.
func (r *repro) background(prefix string, stop <-chan struct{}) <-chan string {
	done := make(chan string, 1)
	go func() { done <- r.registrations(prefix, 8, 0, stop) }()
	return done
}

// latencyText prints what bench.go's latencies found.
func latencyText(d []time.Duration) string {
	l := latencies(d)
	return fmt.Sprintf("n=%d p50=%.2fms p99=%.2fms max=%.2fms", l.Count, l.P50, l.P99, l.Max)
}

// rss is the server's resident memory from /proc: VmRSS, of which RssAnon
// (heap and stacks) and RssFile (the bolt file's mapped pages), and its
// peak VmHWM; and the size of the bolt file.
func (r *repro) rss() string {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", r.pid))
	if err != nil {
		r.t.Fatal(err)
	}
	kB := map[string]float64{}
	for _, line := range strings.Split(string(raw), "\n") {
		k, v, _ := strings.Cut(line, ":")
		if n, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB")); err == nil {
			kB[k] = float64(n)
		}
	}
	fi, err := os.Stat(r.db)
	if err != nil {
		r.t.Fatal(err)
	}
	return fmt.Sprintf("VmRSS %.1f MB (RssAnon %.1f MB, RssFile %.1f MB), peak VmHWM %.1f MB; bolt file %.1f MB",
		kB["VmRSS"]/1000, kB["RssAnon"]/1000, kB["RssFile"]/1000, kB["VmHWM"]/1000, float64(fi.Size())/1e6)
}
