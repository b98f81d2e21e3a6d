package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"regexp"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/corrstore/corrstore/cmd/corrstore/internal/remote"
	"github.com/corrstore/corrstore/cmd/corrstore/internal/storeurl"
	"github.com/corrstore/corrstore/store"
)

// env is what a command talks to: its streams, the environment and the
// clock. main fills it from the process; tests from buffers.
type env struct {
	stdout, stderr io.Writer
	stdin          io.Reader
	// terminal: stderr is a terminal (progress bars) and stdin can be asked.
	terminal bool
	getenv   func(string) string
	now      func() time.Time
	// noSync opens bolt stores without fsync (tests).
	noSync bool
}

func processEnv() *env {
	return &env{
		stdout: os.Stdout, stderr: os.Stderr, stdin: os.Stdin,
		terminal: isTerminal(os.Stderr) && isTerminal(os.Stdin),
		getenv:   os.Getenv, now: time.Now,
	}
}

func isTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// backend is the part of store.Store the operator commands use. A store
// (--store) is one; remote.Client (--server) is the other.
type backend interface {
	Register(ctx context.Context, c *store.Correlation) (store.RegisterResult, error)
	Deliver(ctx context.Context, ref store.Ref, r store.Reply) (store.DeliverResult, error)
	Get(ctx context.Context, ref store.Ref) (*store.Correlation, error)
	Extend(ctx context.Context, ref store.Ref, deadline time.Time) (store.Result, error)
	Cancel(ctx context.Context, ref store.Ref, reason string) (store.Result, error)
	Expire(ctx context.Context, ref store.Ref, reason string) (store.Result, error)
	Redispatch(ctx context.Context, ref store.Ref) (store.Result, error)
	List(ctx context.Context, f store.Filter) (store.Page, error)
	Stats(ctx context.Context, namespace string) (store.Stats, error)
	Close() error
}

var (
	_ backend = store.Store(nil)
	_ backend = (*remote.Client)(nil)
)

// command is an operator subcommand.
type command struct {
	name, args, summary string
	run                 func(ctx context.Context, e *env, args []string) error
}

func commands() []command {
	return []command{
		{"ls", "[flags]", "list correlations by state, namespace, age, owner, destination, label, dispatch", runLs},
		{"show", "[NS/]ID", "one correlation: record, replies, late replies, dispatch, timeline", runShow},
		{"stats", "[flags]", "counts per state and namespace, oldest pending, dispatch backlog", runStats},
		{"expire", "[NS/]ID…", "force the deadline outcome of pending correlations now", runExpire},
		{"cancel", "[NS/]ID… --reason R", "cancel pending correlations", runCancel},
		{"extend", "[NS/]ID --by 5m", "move a pending correlation's deadline", runExtend},
		{"redispatch", "[NS/]ID… | --all-matching", "hand dead (or done) outcomes to their handler again", runRedispatch},
		{"reap", "--once", "one reaper pass: expire what is due, purge, drop stale early replies", runReap},
		{"export", "[--to FILE]", "every correlation, as JSON lines", runExport},
		{"import", "FILE | --from URL", "correlations from an export or another store, verified", runImport},
		{"bench", "[flags]", "load: register→deliver, ops/s and latency", runBench},
		{"upgrade", "--store URL", "bring a store written by an older corrstore to this build's schema", runUpgrade},
	}
}

// errUsage marks an error the command already explained (usage printed).
var errUsage = errors.New("usage")

// conn are the flags that choose where a command works.
type conn struct {
	server    string
	tokenFile string
	storeURL  string
	output    string
	timeout   time.Duration
	envServer string // CORRSTORE_SERVER, which --store overrides
}

func (c *conn) flags(fs *cmdFlags, e *env) {
	c.envServer = e.getenv("CORRSTORE_SERVER")
	fs.StringVar(&c.server, "server", e.getenv("CORRSTORE_SERVER"), "a running corrstore serve, http://HOST:PORT (env CORRSTORE_SERVER)")
	fs.StringVar(&c.tokenFile, "token-file", "", "file whose first token is sent as the bearer token (default: env CORRSTORE_TOKEN)")
	fs.StringVar(&c.storeURL, "store", "", "work directly on a store: bolt://PATH, redis://HOST:PORT/DB, redis+cluster://H1:P1,H2:P2")
	fs.StringVar(&c.output, "o", "table", "output: table or json")
	fs.DurationVar(&c.timeout, "timeout", 30*time.Second, "bound on each call to the server or store, opening it included (the checked copy of a bolt file a server holds too: give 0, no bound, for a large one)")
}

func (c *conn) check() error {
	switch c.output {
	case "table", "json":
	default:
		return fmt.Errorf("-o %q: want table or json", c.output)
	}
	if c.timeout < 0 {
		return fmt.Errorf("--timeout: must not be negative, got %s", c.timeout)
	}
	if c.storeURL != "" && c.server == c.envServer {
		c.server = "" // --store wins over the environment
	}
	switch {
	case c.server != "" && c.storeURL != "":
		return errors.New("give --server or --store, not both")
	case c.server == "" && c.storeURL == "":
		return errors.New("give --server URL (a running corrstore serve) or --store URL (bolt://PATH, redis://…)")
	}
	return nil
}

// open connects to the server or opens the store. readOnly commands can
// read a bolt file a daemon holds (through a checked copy); writers get one
// line saying writes need the server. Each call of the backend is bounded
// by --timeout.
func (c *conn) open(ctx context.Context, e *env, readOnly bool) (backend, error) {
	if c.server != "" {
		token, err := c.token(e)
		if err != nil {
			return nil, err
		}
		// No client timeout: --timeout bounds each call through its context.
		cl, err := remote.New(c.server, token, &http.Client{})
		if err != nil {
			return nil, err
		}
		return timedBackend{cl, c}, nil
	}
	st, err := c.openStore(ctx, e, readOnly)
	if err != nil {
		return nil, err
	}
	return timedBackend{st, c}, nil
}

// openStore opens --store only (export, import, reap need the whole store),
// within --timeout. The store's calls are not bounded: wrap it in
// timedBackend or use timed.
func (c *conn) openStore(ctx context.Context, e *env, readOnly bool) (store.Store, error) {
	if c.storeURL == "" {
		return nil, errors.New("this command needs --store URL")
	}
	if c.timeout < 0 {
		return nil, fmt.Errorf("--timeout: must not be negative, got %s", c.timeout)
	}
	return timed(c, ctx, func(ctx context.Context) (store.Store, error) {
		return storeurl.Open(ctx, c.storeURL, storeurl.Options{
			Logger: quietLogger(), ReadOnly: readOnly, NoSync: e.noSync, LockTimeout: 200 * time.Millisecond,
			ContextTimeouts: true,
		})
	})
}

// timeoutError is the error of a call that --timeout cut short.
type timeoutError struct {
	where string
	d     time.Duration
}

func (e *timeoutError) Error() string {
	return fmt.Sprintf("%s did not answer within --timeout %s", e.where, e.d)
}

func (e *timeoutError) Unwrap() error { return context.DeadlineExceeded }

// timed runs one call to the server or store under --timeout (none when
// it is 0). A call that runs out of time fails with a timeoutError, which
// names the server or store and the flag, whatever the call made of its
// context's end; an interrupt (ctx's own end) keeps the call's error.
func timed[T any](c *conn, ctx context.Context, call func(context.Context) (T, error)) (T, error) {
	if c.timeout <= 0 {
		return call(ctx)
	}
	where := c.server
	if where == "" {
		where = storeurl.Redact(c.storeURL)
	}
	ctx, cancel := context.WithTimeoutCause(ctx, c.timeout, &timeoutError{where: where, d: c.timeout})
	defer cancel()
	v, err := call(ctx)
	var te *timeoutError
	if err != nil && errors.As(context.Cause(ctx), &te) {
		return v, te
	}
	return v, err
}

// timedBackend bounds each call of a backend by --timeout.
type timedBackend struct {
	b backend
	c *conn
}

func (t timedBackend) Register(ctx context.Context, x *store.Correlation) (store.RegisterResult, error) {
	return timed(t.c, ctx, func(ctx context.Context) (store.RegisterResult, error) { return t.b.Register(ctx, x) })
}

func (t timedBackend) Deliver(ctx context.Context, ref store.Ref, r store.Reply) (store.DeliverResult, error) {
	return timed(t.c, ctx, func(ctx context.Context) (store.DeliverResult, error) { return t.b.Deliver(ctx, ref, r) })
}

func (t timedBackend) Get(ctx context.Context, ref store.Ref) (*store.Correlation, error) {
	return timed(t.c, ctx, func(ctx context.Context) (*store.Correlation, error) { return t.b.Get(ctx, ref) })
}

func (t timedBackend) Extend(ctx context.Context, ref store.Ref, deadline time.Time) (store.Result, error) {
	return timed(t.c, ctx, func(ctx context.Context) (store.Result, error) { return t.b.Extend(ctx, ref, deadline) })
}

func (t timedBackend) Cancel(ctx context.Context, ref store.Ref, reason string) (store.Result, error) {
	return timed(t.c, ctx, func(ctx context.Context) (store.Result, error) { return t.b.Cancel(ctx, ref, reason) })
}

func (t timedBackend) Expire(ctx context.Context, ref store.Ref, reason string) (store.Result, error) {
	return timed(t.c, ctx, func(ctx context.Context) (store.Result, error) { return t.b.Expire(ctx, ref, reason) })
}

func (t timedBackend) Redispatch(ctx context.Context, ref store.Ref) (store.Result, error) {
	return timed(t.c, ctx, func(ctx context.Context) (store.Result, error) { return t.b.Redispatch(ctx, ref) })
}

func (t timedBackend) List(ctx context.Context, f store.Filter) (store.Page, error) {
	return timed(t.c, ctx, func(ctx context.Context) (store.Page, error) { return t.b.List(ctx, f) })
}

func (t timedBackend) Stats(ctx context.Context, namespace string) (store.Stats, error) {
	return timed(t.c, ctx, func(ctx context.Context) (store.Stats, error) { return t.b.Stats(ctx, namespace) })
}

func (t timedBackend) Close() error { return t.b.Close() }

func (c *conn) token(e *env) (string, error) {
	if c.tokenFile == "" {
		return strings.TrimSpace(e.getenv("CORRSTORE_TOKEN")), nil
	}
	f, err := os.Open(c.tokenFile)
	if err != nil {
		return "", fmt.Errorf("--token-file: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		return strings.Fields(line)[0], nil
	}
	if err := sc.Err(); err != nil {
		return "", fmt.Errorf("--token-file %s: %w", c.tokenFile, err)
	}
	return "", fmt.Errorf("--token-file %s: no token in the file", c.tokenFile)
}

// quietLogger drops the stores' info lines; the commands say what matters.
func quietLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
}

// cmdFlags is a command's flag set with its help text.
type cmdFlags struct {
	*flag.FlagSet
	help func()
}

// newFlags makes a command's flag set: errors come back to run, which prints
// them as one line; -h prints the usage and succeeds.
func newFlags(e *env, name, args, about string) *cmdFlags {
	fs := flag.NewFlagSet("corrstore "+name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {} // a bad flag is one line, not the whole usage
	help := func() {
		w := e.stdout
		fmt.Fprintf(w, "Usage: corrstore %s %s\n\n%s\n\nFlags:\n", name, args, about)
		fs.SetOutput(w)
		fs.PrintDefaults()
		fs.SetOutput(io.Discard)
	}
	return &cmdFlags{FlagSet: fs, help: help}
}

// parse parses args, allowing flags after the positional arguments
// (corrstore cancel ID --reason x).
func parse(fs *cmdFlags, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				fs.help()
				return nil, err
			}
			return nil, flagErr(fs, err)
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		if args[0] == "--" {
			return append(pos, args[1:]...), nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

// The flag package's errors (Go 1.26, flag.go failf): the value is %q, the
// flag's own error %v.
var (
	badValueRE = regexp.MustCompile(`(?s)^invalid (?:boolean )?value ("(?:[^"\\]|\\.)*") for (?:flag )?-(\S+): (.*)$`)
	noValueRE  = regexp.MustCompile(`^flag needs an argument: -(\S+)$`)
)

// flagErr makes an error of the flag package one line naming the flag as
// users type it (--name). It relies only on what every flag.Value has: a
// standard flag (a flag.Getter whose Get is a number, a bool or a duration)
// fails with the flag package's bare "parse error", which this replaces by
// what was expected; any other Value says what is wrong in its Set error,
// which is kept.
func flagErr(fs *cmdFlags, err error) error {
	msg := err.Error()
	if m := badValueRE.FindStringSubmatch(msg); m != nil {
		value, name, why := m[1], m[2], m[3]
		if f := fs.Lookup(name); f != nil {
			if want := expected(f); want != "" && (why == "parse error" || why == "value out of range") {
				if why == "value out of range" {
					want = "out of range for a " + strings.TrimPrefix(want, "not a ")
				}
				return fmt.Errorf("--%s: %s is %s", name, value, want)
			}
		}
		return fmt.Errorf("--%s: %s: %s", name, value, why)
	}
	if m := noValueRE.FindStringSubmatch(msg); m != nil {
		return fmt.Errorf("--%s needs a value (see corrstore %s -h)", m[1], strings.TrimPrefix(fs.Name(), "corrstore "))
	}
	if name, ok := strings.CutPrefix(msg, "flag provided but not defined: -"); ok {
		return fmt.Errorf("unknown flag --%s (see corrstore %s -h)", name, strings.TrimPrefix(fs.Name(), "corrstore "))
	}
	return errors.New(printable(msg))
}

// expected says what a standard flag's value must be ("" for any other
// Value, which explains itself). It never assumes a flag.Getter.
func expected(f *flag.Flag) string {
	g, ok := f.Value.(flag.Getter)
	if !ok {
		return ""
	}
	switch g.Get().(type) {
	case time.Duration:
		return "not a duration like 30s, 5m or 1h30m"
	case int, int64, uint, uint64:
		return "not a whole number"
	case float64:
		return "not a number"
	case bool:
		return "not true or false"
	}
	return ""
}

// writeJSON prints v for an operator: indented, with every control
// character escaped (see escapeJSON).
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(escapeJSON{w})
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func table(w io.Writer) *tabwriter.Writer {
	return tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
}

// age prints a duration for a table: 3s, 4m12s, 2h05m, 3d04h.
func age(d time.Duration) string {
	neg := d < 0
	if neg {
		d = -d
	}
	var s string
	switch {
	case d < time.Second:
		s = d.Round(time.Millisecond).String()
	case d < time.Minute:
		s = fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		s = fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	case d < 48*time.Hour:
		s = fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
	default:
		s = fmt.Sprintf("%dd%02dh", int(d.Hours())/24, int(d.Hours())%24)
	}
	if neg {
		return "-" + s
	}
	return s
}

// orDash is s for a table cell (see printable), "-" when empty.
func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return printable(s)
}

// namespaceFlag adds --namespace and its short form -n.
func namespaceFlag(fs *cmdFlags, p *string, usage string) {
	fs.StringVar(p, "namespace", "", usage)
	fs.StringVar(p, "n", "", "short for --namespace")
}

const idsNamespaceUsage = `namespace of the IDs (default "default"; on --server, a token's namespace when it has only one); an argument NS/ID names its own`

// refsOf reads the ID arguments of a per-ID command: ID in namespace ns
// (empty: the default, or on --server the token's only namespace), or
// NS/ID. It checks each before anything is opened.
func refsOf(ns string, args []string) ([]store.Ref, error) {
	if ns != "" {
		if err := store.ValidateNamespace(ns); err != nil {
			return nil, flagError(err)
		}
	}
	refs := make([]store.Ref, 0, len(args))
	for _, a := range args {
		r := store.Ref{Namespace: ns, ID: a}
		var err error
		if strings.Contains(a, "/") {
			r, err = store.ParseRef(a)
			if err == nil && ns != "" && r.Namespace != ns {
				return nil, fmt.Errorf("%s is in namespace %s, but --namespace is %s", printable(a), r.Namespace, ns)
			}
		} else {
			err = store.ValidateID(a)
		}
		if err != nil {
			return nil, fmt.Errorf("%q: %s", a, fieldReason(err))
		}
		refs = append(refs, r)
	}
	return refs, nil
}

// fieldReason is a validation error without the sentinel's word: "id: must be …".
func fieldReason(err error) string {
	var fe *store.FieldError
	if errors.As(err, &fe) {
		return fe.Field + ": " + fe.Reason
	}
	return err.Error()
}

// label names a correlation in messages: its ID alone in the default
// namespace (what a single-tenant operator typed), NS/ID elsewhere.
func label(r store.Ref) string {
	if r.Namespace == "" || r.Namespace == store.DefaultNamespace {
		return printable(r.ID)
	}
	return printable(r.String())
}

// describeErr makes a store or server error one line an operator can act on.
func describeErr(err error) string {
	switch {
	case errors.Is(err, store.ErrNotFound):
		return "not found"
	case errors.Is(err, store.ErrNotPending):
		return "not pending: " + err.Error()
	}
	return err.Error()
}

// group runs goroutines and keeps the first error, cancelling the others'
// context (errgroup's shape, without the dependency).
type group struct {
	wg     sync.WaitGroup
	once   sync.Once
	err    error
	cancel context.CancelFunc
}

func newGroup(ctx context.Context) (*group, context.Context) {
	ctx, cancel := context.WithCancel(ctx)
	return &group{cancel: cancel}, ctx
}

func (g *group) Go(fn func() error) {
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		if err := fn(); err != nil {
			g.once.Do(func() { g.err = err; g.cancel() })
		}
	}()
}

func (g *group) Wait() error {
	g.wg.Wait()
	g.cancel()
	return g.err
}
