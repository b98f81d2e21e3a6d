// Package synctrace checks that a store on a bbolt file makes each
// registration durable before it acknowledges it, by watching the system
// calls: a SIGKILL leaves written pages in the OS cache, so a crash test
// passes with fsync off; only the order of pwrite, fdatasync and the
// acknowledgement shows whether a commit reached the disk before its caller
// heard of it.
//
// A test package calls Child from an init function with the way its product
// opens a store, and Check from a test: Check runs the test binary again as
// a child under strace (Debian's strace), the child registers correlations
// from several goroutines and writes each ID to stdout after Register
// returned, and Check reads the trace. CORRSTORE_SYNCTRACE_N and
// CORRSTORE_SYNCTRACE_GOROUTINES size the run (make test-durability).
package synctrace

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/corrstore/corrstore/internal/testenv"
	"github.com/corrstore/corrstore/store"
)

// The child's environment: the data file, how many registrations, from how
// many goroutines.
const (
	envPath       = "CORRSTORE_SYNCTRACE_CHILD"
	envN          = "CORRSTORE_SYNCTRACE_N"
	envGoroutines = "CORRSTORE_SYNCTRACE_GOROUTINES"
)

// Opener opens the store at path the way the product does, and returns it
// with the function that closes it (and whatever opened it).
type Opener func(path string) (s store.Store, close func() error, err error)

// Child runs the child and exits when the environment says this process is
// one; otherwise it returns at once. Call it from an init function, so that
// it runs before the testing flags are parsed.
func Child(open Opener) {
	path := os.Getenv(envPath)
	if path == "" {
		return
	}
	n, _ := strconv.Atoi(os.Getenv(envN))
	g, _ := strconv.Atoi(os.Getenv(envGoroutines))
	s, closeStore, err := open(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, "synctrace child: open:", err)
		os.Exit(2)
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for w := range g {
		wg.Go(func() {
			for i := w; i < n; i += g {
				id := ID(i)
				if _, err := s.Register(context.Background(), correlation(id)); err != nil {
					fmt.Fprintf(os.Stderr, "synctrace child: register %s: %v\n", id, err)
					os.Exit(3)
				}
				// One write(2) per acknowledgement: the trace shows when
				// each caller heard that its registration was done.
				mu.Lock()
				_, err := os.Stdout.WriteString(id + "\n")
				mu.Unlock()
				if err != nil {
					os.Exit(4)
				}
			}
		})
	}
	wg.Wait()
	if err := closeStore(); err != nil {
		fmt.Fprintln(os.Stderr, "synctrace child: close:", err)
		os.Exit(5)
	}
	os.Exit(0)
}

// ID is the i-th registration's ID: fixed width, so that no ID is a prefix
// of another in the page bytes strace prints.
func ID(i int) string { return fmt.Sprintf("synctrace-%07d", i) }

// correlation is the registration of id: its callback data holds the ID
// again.
func correlation(id string) *store.Correlation {
	return &store.Correlation{ID: id, Timeout: time.Hour, Destination: "svc",
		Callback: store.Callback{Handler: "h", Data: []byte(`"` + id + `"`)}}
}

var idPattern = regexp.MustCompile(`synctrace-[0-9]{7}`)

// Check runs the test binary as a child under strace, registering
// CORRSTORE_SYNCTRACE_N correlations (40) from CORRSTORE_SYNCTRACE_GOROUTINES
// goroutines (8) into a new bbolt file, and fails t unless each
// acknowledgement came after the registration's page was written, the
// commit's meta page was written after it, and the file was fdatasync'd or
// fsync'd after that.
//
// Without strace, or where it cannot trace, the test is skipped with a
// message; under CI=true (.ci/run installs strace) that is a failure.
func Check(t *testing.T) {
	t.Helper()
	n := testenv.Int(t, envN, 40)
	goroutines := testenv.Int(t, envGoroutines, 8)
	requireStrace(t)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "synctrace.db")
	tracePath := filepath.Join(dir, "strace.out")
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "strace", "-f", "-qq", "-e", "signal=none",
		"-e", "trace=openat,close,pwrite64,write,fdatasync,fsync",
		"-s", strconv.Itoa(4<<20), "-o", tracePath,
		"--", exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), envPath+"="+path, envN+"="+strconv.Itoa(n), envGoroutines+"="+strconv.Itoa(goroutines))
	cmd.WaitDelay = 10 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	if err := cmd.Run(); err != nil {
		t.Fatalf("child under strace: %v; stderr: %s", err, stderr.String())
	}
	if got := strings.Count(stdout.String(), "\n"); got != n {
		t.Fatalf("the child acknowledged %d registrations, want %d; stderr: %s", got, n, stderr.String())
	}
	trace, err := os.ReadFile(tracePath)
	if err != nil {
		t.Fatal(err)
	}
	r := analyse(string(trace), path, os.Getpagesize())
	if r.opened == 0 {
		t.Fatalf("the trace shows no open of %s: was the store opened elsewhere, or did strace's output format change?", path)
	}
	if len(r.acked) != n {
		t.Fatalf("the trace shows %d acknowledgements, the child printed %d", len(r.acked), n)
	}
	if len(r.bad) > 0 {
		shown := r.bad[:min(len(r.bad), 5)]
		t.Fatalf("%d of %d acknowledged registrations were not on disk when acknowledged: the store's open path does not fsync its commits (bbolt NoSync?):\n%s",
			len(r.bad), n, strings.Join(shown, "\n"))
	}
	t.Logf("%d registrations from %d goroutines: each acknowledged after its page, its commit's meta page and an fdatasync of the file (%d syncs, %d trace lines, %s)",
		n, goroutines, r.syncs, r.lines, time.Since(start).Round(time.Millisecond))
}

// requireStrace skips t, or fails it under CI=true, when strace is missing
// or cannot trace here (no ptrace in a container, for instance).
func requireStrace(t *testing.T) {
	t.Helper()
	why := ""
	if _, err := exec.LookPath("strace"); err != nil {
		why = "strace is not on PATH"
	} else if out, err := exec.Command("strace", "-qq", "-o", os.DevNull, "-e", "trace=none", "true").CombinedOutput(); err != nil {
		why = fmt.Sprintf("strace cannot trace here (%v: %s)", err, bytes.TrimSpace(out))
	}
	if why == "" {
		return
	}
	msg := why + ", so the check that commits are fsync'd before they are acknowledged does not run; install Debian's strace (apt-get install strace), as .ci/run does"
	testenv.SkipOrFail(t, msg)
}

// result is what analyse found in a trace.
type result struct {
	opened int      // opens of the data file
	acked  []string // IDs acknowledged, in order
	bad    []string // one line per acknowledgement that came too early
	syncs  int      // completed fdatasync/fsync calls on the data file
	lines  int
}

// stage is how far a registration had got on its way to the disk.
type stage int

const (
	unwritten stage = iota // no page holding its ID written yet
	written                // a page holding it written; the commit's meta page not yet
	committed              // the meta page written after it; no sync since
	durable                // synced after its commit
)

// where says, for one registration, at which trace lines it got how far.
type where struct {
	stage          stage
	page, meta, at int // trace lines: first page holding the ID, the meta page after it
}

// analyse reads strace -f output and follows each registration of path from
// its page write to its acknowledgement (a write to fd 1). bbolt commits
// by writing the dirty pages, then the meta page (page 0 or 1), syncing
// after each; a registration is durable once a sync of the file completed
// after the meta page that followed its page.
func analyse(trace, path string, pageSize int) result {
	var r result
	fds := map[int]bool{}           // descriptors of the data file
	pending := map[string]*call{}   // by pid: calls whose end is on a later line
	regs := map[string]*where{}     // by ID
	var inFlight, inCommit []string // IDs written, IDs committed but not synced
	for n, text := range strings.Split(trace, "\n") {
		lineNo := n + 1
		c, ok := parseLine(text)
		if !ok {
			continue
		}
		r.lines++
		start := !c.resumed // this line shows the call's arguments
		if c.resumed {
			begun := pending[c.pid]
			delete(pending, c.pid)
			if begun == nil {
				continue
			}
			begun.ret, begun.done = c.ret, c.done
			c = begun
		} else if !c.done {
			pending[c.pid] = c
		}
		// Writes and acknowledgements count from their start (the bytes
		// are in the arguments), opens and syncs from their end.
		switch c.name {
		case "openat":
			if c.done && c.str == path && c.ret >= 0 {
				fds[c.ret] = true
				r.opened++
			}
		case "close":
			if start {
				delete(fds, c.fd)
			}
		case "pwrite64":
			if !start || !fds[c.fd] {
				continue
			}
			for _, id := range idPattern.FindAllString(c.str, -1) {
				if regs[id] == nil {
					regs[id] = &where{stage: written, page: lineNo}
					inFlight = append(inFlight, id)
				}
			}
			if c.offset < int64(2*pageSize) { // a meta page: the commit point
				for _, id := range inFlight {
					regs[id].stage, regs[id].meta = committed, lineNo
				}
				inCommit = append(inCommit, inFlight...)
				inFlight = inFlight[:0]
			}
		case "fdatasync", "fsync":
			if c.done && c.ret == 0 && fds[c.fd] {
				r.syncs++
				for _, id := range inCommit {
					regs[id].stage = durable
				}
				inCommit = inCommit[:0]
			}
		case "write":
			if !start || c.fd != 1 {
				continue
			}
			id := strings.TrimSuffix(c.str, `\n`)
			if !idPattern.MatchString(id) {
				continue
			}
			r.acked = append(r.acked, id)
			w := regs[id]
			switch {
			case w == nil:
				r.bad = append(r.bad, fmt.Sprintf("  %s: acknowledged at trace line %d, no page holding it was written before", id, lineNo))
			case w.stage == written:
				r.bad = append(r.bad, fmt.Sprintf("  %s: page written at trace line %d, acknowledged at %d before the commit's meta page was written", id, w.page, lineNo))
			case w.stage == committed:
				r.bad = append(r.bad, fmt.Sprintf("  %s: page written at trace line %d, meta page at %d, acknowledged at %d with no fdatasync/fsync of the file in between", id, w.page, w.meta, lineNo))
			}
		}
	}
	return r
}

// call is one system call of the trace, or the part of it one line shows.
type call struct {
	pid     string
	name    string
	resumed bool   // the line ends a call an earlier line started
	done    bool   // the return value is known
	fd      int    // the first argument, -1 when it is not a number
	str     string // the first string argument, as strace prints it
	offset  int64  // pwrite64's offset
	ret     int
}

var retPattern = regexp.MustCompile(`\)\s*= (-?[0-9]+)`)

// parseLine reads a line of strace -f -o output: "PID name(args) = ret",
// "PID name(args <unfinished ...>" or "PID <... name resumed>args) = ret".
func parseLine(line string) (*call, bool) {
	pid, rest, ok := strings.Cut(line, " ")
	if !ok {
		return nil, false
	}
	rest = strings.TrimLeft(rest, " ") // strace pads the pid column
	c := &call{pid: pid, fd: -1}
	if after, found := strings.CutPrefix(rest, "<... "); found {
		name, tail, ok := strings.Cut(after, " resumed>")
		if !ok {
			return nil, false
		}
		c.name, c.resumed, rest = name, true, tail
	} else {
		name, tail, ok := strings.Cut(rest, "(")
		if !ok {
			return nil, false
		}
		c.name, rest = name, tail
		// The first string argument: everything between its quotes, an
		// escaped quote included; outside it the arguments hold no quote.
		if q := strings.IndexByte(rest, '"'); q >= 0 {
			end := q + 1
			for end < len(rest) && rest[end] != '"' {
				if rest[end] == '\\' {
					end++
				}
				end++
			}
			if end >= len(rest) {
				return nil, false
			}
			c.str = rest[q+1 : end]
			rest = rest[:q] + strings.TrimPrefix(rest[end+1:], "...")
		}
		first, _, _ := strings.Cut(rest, ",")
		first, _, _ = strings.Cut(first, ")")
		first, _, _ = strings.Cut(first, " ")
		if fd, err := strconv.Atoi(first); err == nil {
			c.fd = fd
		}
		if c.name == "pwrite64" { // pwrite64(fd, "…", count, offset
			f := strings.Split(rest, ", ")
			if len(f) >= 4 {
				off, _, _ := strings.Cut(f[3], ")")
				off, _, _ = strings.Cut(off, " ")
				c.offset, _ = strconv.ParseInt(off, 10, 64)
			}
		}
	}
	if strings.HasSuffix(rest, "<unfinished ...>") {
		return c, true
	}
	if m := retPattern.FindStringSubmatch(rest); m != nil {
		c.ret, _ = strconv.Atoi(m[1])
		c.done = true
		return c, true
	}
	return c, !c.resumed // "= ?" (the process left): an end without a value
}
