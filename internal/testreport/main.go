// Command testreport runs `go test -json` and prints what `go test` prints
// without -v, then which tests were skipped and why. make test runs its steps
// through it: CI runs without -v, and go test shows a skip's reason only
// with -v, so without this a skip would never reach the CI log.
//
//	go run ./internal/testreport [-step NAME] [-skips FILE] -- go test -json ARGS…
//	go run ./internal/testreport -summary FILE…
//
// The first form runs the command (its stderr passes through) and prints
// each package's output when the package ends, as go test does: "ok" lines,
// and the output of failed tests (unfinished ones too, e.g. after a timeout
// panic) without the "=== RUN" lines. Output of tests that passed or were
// skipped is dropped, as without -v. Then it lists the skipped tests with
// their reasons, or with -skips writes them to FILE as JSON lines for a
// -summary at the end of make test, which runs two steps side by side. It
// exits with the command's status, or 1 if it saw a failure the status
// did not report.
//
// The second form prints the skip lists of the given files as one summary.
//
// A skip that CI must not allow (a test of a real server whose tool is not
// installed) fails its test under CI=true instead: see testenv.SkipOrFail.
package main

import (
	"bufio"
	"cmp"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
)

func main() {
	step := flag.String("step", "", "name of the step, shown beside its skips (make test's test-race, test-norace)")
	skipsFile := flag.String("skips", "", "write the skips to this file (JSON lines) instead of listing them")
	summary := flag.Bool("summary", false, "print the skips in the files given as arguments, as one list")
	flag.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: testreport [-step NAME] [-skips FILE] -- go test -json ARGS…\n       testreport -summary FILE…")
		flag.PrintDefaults()
	}
	flag.Parse()
	if *summary {
		var all []skip
		for _, f := range flag.Args() {
			s, err := readSkips(f)
			if err != nil {
				fmt.Fprintln(os.Stderr, "testreport:", err)
				os.Exit(2)
			}
			all = append(all, s...)
		}
		printSkips(os.Stdout, all, modulePath())
		return
	}
	if flag.NArg() == 0 {
		flag.Usage()
		os.Exit(2)
	}
	os.Exit(runTests(os.Stdout, *step, *skipsFile, flag.Args()))
}

// runTests runs the go test command and reports it to w; it returns the
// exit status.
func runTests(w io.Writer, step, skipsFile string, args []string) int {
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdin, cmd.Stderr = os.Stdin, os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		fmt.Fprintln(os.Stderr, "testreport:", err)
		return 2
	}
	if err := cmd.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "testreport:", err)
		return 2
	}
	r := newReport(w, step)
	readErr := r.read(out)
	_, _ = io.Copy(io.Discard, out) // after a read error, so that go test never blocks on a full pipe
	waitErr := cmd.Wait()
	r.finish()
	if readErr != nil {
		fmt.Fprintln(os.Stderr, "testreport: reading go test's output:", readErr)
	}
	status := 0
	var exit *exec.ExitError
	switch {
	case errors.As(waitErr, &exit):
		status = exit.ExitCode()
	case waitErr != nil:
		fmt.Fprintln(os.Stderr, "testreport:", waitErr)
		status = 2
	case r.failed || readErr != nil:
		status = 1
	}
	if skipsFile != "" {
		if err := writeSkips(skipsFile, r.skips); err != nil {
			fmt.Fprintln(os.Stderr, "testreport:", err)
			return cmp.Or(status, 2)
		}
	} else {
		printSkips(w, r.skips, modulePath())
	}
	return status
}

// event is one line of go test -json (cmd/test2json).
type event struct {
	Action     string
	Package    string
	ImportPath string // build-output, build-fail
	Test       string
	Output     string
}

// skip is a skipped test and what it said.
type skip struct {
	Step    string `json:"step,omitempty"`
	Package string `json:"package"`
	Test    string `json:"test"`
	Reason  string `json:"reason"`
}

type line struct {
	test, text string
}

type pkgState struct {
	lines []line
	// status of each test that ended: pass, fail or skip.
	status map[string]string
}

type report struct {
	w      io.Writer
	step   string
	pkgs   map[string]*pkgState
	order  []string // packages in the order they started
	skips  []skip
	failed bool
}

func newReport(w io.Writer, step string) *report {
	return &report{w: w, step: step, pkgs: map[string]*pkgState{}}
}

func (r *report) pkg(name string) *pkgState {
	p := r.pkgs[name]
	if p == nil {
		p = &pkgState{status: map[string]string{}}
		r.pkgs[name] = p
		r.order = append(r.order, name)
	}
	return p
}

// read consumes the event stream; a line that is not an event is printed
// as it is.
func (r *report) read(in io.Reader) error {
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 0, 64<<10), 64<<20)
	for sc.Scan() {
		var e event
		if b := sc.Bytes(); len(b) == 0 || b[0] != '{' || json.Unmarshal(b, &e) != nil {
			fmt.Fprintln(r.w, sc.Text())
			continue
		}
		r.event(e)
	}
	return sc.Err()
}

func (r *report) event(e event) {
	switch e.Action {
	case "build-output":
		fmt.Fprint(r.w, e.Output)
		return
	case "build-fail":
		r.failed = true
		return
	}
	if e.Package == "" {
		return
	}
	p := r.pkg(e.Package)
	switch e.Action {
	case "output":
		p.lines = append(p.lines, line{e.Test, e.Output})
	case "pass", "fail", "skip":
		if e.Action == "fail" {
			r.failed = true
		}
		if e.Test != "" {
			p.status[e.Test] = e.Action
			if e.Action == "skip" {
				r.skips = append(r.skips, skip{Step: r.step, Package: e.Package, Test: e.Test, Reason: reason(p.lines, e.Test)})
			}
			return
		}
		r.flush(e.Package, p)
	}
}

// flush prints a package that ended: its own lines, and the lines of tests
// that neither passed nor were skipped, without go test -v's framing.
func (r *report) flush(name string, p *pkgState) {
	for _, l := range p.lines {
		if l.test == "" && l.text == "PASS\n" {
			continue // go test without -v does not print it
		}
		if st := p.status[l.test]; l.test != "" && (st == "pass" || st == "skip") {
			continue
		}
		if framing(l.text) {
			continue
		}
		fmt.Fprint(r.w, l.text)
	}
	delete(r.pkgs, name)
}

// finish prints the packages that never ended (go test was killed).
func (r *report) finish() {
	for _, name := range r.order {
		if p := r.pkgs[name]; p != nil {
			r.failed = true
			r.flush(name, p)
			fmt.Fprintf(r.w, "FAIL\t%s\t(no end: go test stopped)\n", name)
		}
	}
}

// framing is a line go test -v adds around a test's output.
func framing(s string) bool {
	for _, p := range []string{"=== RUN", "=== PAUSE", "=== CONT", "=== NAME"} {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}

// logPrefix is where t.Log and t.Skip put the file and line.
var logPrefix = regexp.MustCompile(`^\s*[\w.-]+\.go:\d+: `)

// reason is what a skipped test said last (the t.Skip message, after any
// t.Log), on one line, without its file:line prefix.
func reason(lines []line, test string) string {
	var last []string
	for _, l := range lines {
		if l.test != test || framing(l.text) || strings.HasPrefix(strings.TrimSpace(l.text), "--- SKIP") {
			continue
		}
		if logPrefix.MatchString(l.text) {
			last = last[:0] // a new log entry; its continuation lines have no prefix
		}
		if s := strings.TrimSpace(logPrefix.ReplaceAllString(l.text, "")); s != "" {
			last = append(last, s)
		}
	}
	if len(last) == 0 {
		return "(no reason given)"
	}
	return strings.Join(last, " ")
}

func writeSkips(path string, skips []skip) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	enc := json.NewEncoder(f)
	for _, s := range skips {
		if err := enc.Encode(s); err != nil {
			f.Close()
			return err
		}
	}
	return f.Close()
}

func readSkips(path string) ([]skip, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []skip
	dec := json.NewDecoder(f)
	for {
		var s skip
		if err := dec.Decode(&s); err == io.EOF {
			return out, nil
		} else if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		out = append(out, s)
	}
}

// printSkips lists the skips, one line per step, package and reason, with
// the tests that gave it.
func printSkips(w io.Writer, skips []skip, module string) {
	if len(skips) == 0 {
		fmt.Fprintln(w, "skipped: none")
		return
	}
	type key struct{ step, pkg, reason string }
	groups := map[key][]string{}
	var keys []key
	for _, s := range skips {
		k := key{s.Step, s.Package, s.Reason}
		if groups[k] == nil {
			keys = append(keys, k)
		}
		groups[k] = append(groups[k], s.Test)
	}
	slices.SortStableFunc(keys, func(a, b key) int {
		return cmp.Or(cmp.Compare(a.step, b.step), cmp.Compare(a.pkg, b.pkg), slices.Compare(groups[a], groups[b]))
	})
	what := "1 test"
	if len(skips) != 1 {
		what = fmt.Sprint(len(skips), " tests")
	}
	fmt.Fprintf(w, "skipped: %s (go test says why only with -v):\n", what)
	for _, k := range keys {
		pkg := k.pkg
		if rel, ok := strings.CutPrefix(pkg, module); ok && module != "" {
			pkg = "." + rel
			if pkg == "." {
				pkg = "./"
			}
		}
		step := ""
		if k.step != "" {
			step = k.step + " "
		}
		fmt.Fprintf(w, "  %s%s %s: %s\n", step, pkg, strings.Join(groups[k], ", "), k.reason)
	}
}

// modulePath is the module of go.mod in the working directory ("" without one).
func modulePath() string {
	b, err := os.ReadFile("go.mod")
	if err != nil {
		return ""
	}
	for _, l := range strings.Split(string(b), "\n") {
		if m, ok := strings.CutPrefix(strings.TrimSpace(l), "module "); ok {
			return strings.Trim(strings.TrimSpace(m), `"`)
		}
	}
	return ""
}
