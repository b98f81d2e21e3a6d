package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/corrstore/corrstore/cmd/corrstore/internal/remote"
	"github.com/corrstore/corrstore/cmd/corrstore/internal/storeurl"
	"github.com/corrstore/corrstore/store"
)

// storeOrServer is where an operator command works: a store (--store) or
// a running server (remote.Client, --server). It is the part of store.Store
// the commands use.
type storeOrServer interface {
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
	_ storeOrServer = store.Store(nil)
	_ storeOrServer = (*remote.Client)(nil)
)

// conn are the flags that choose where a command works and how it prints.
type conn struct {
	server    string
	tokenFile string
	storeURL  string
	output    outputFlag
	timeout   time.Duration
	// fs says which flags the command line gave (--store wins over
	// CORRSTORE_SERVER, not over --server).
	fs *pflag.FlagSet
}

// flags adds the flags of a command that works on a running server or
// directly on a store.
func (c *conn) flags(cmd *cobra.Command) {
	fs := cmd.Flags()
	fs.StringVar(&c.server, "server", "", "a running corrstore serve, http://HOST:PORT")
	bindEnv(fs, "server", "CORRSTORE_SERVER")
	fs.StringVar(&c.tokenFile, "token-file", "", "file whose first token is sent to --server as the bearer token (default: CORRSTORE_TOKEN)")
	envDoc(cmd, "CORRSTORE_TOKEN", "the bearer token sent to --server when no --token-file is given")
	c.storeFlags(cmd, "work directly on a store: bolt://PATH, redis://HOST:PORT/DB, redis+cluster://H1:P1,H2:P2")
	c.outputFlag(cmd)
}

// storeOnlyFlags adds the flags of a command that works on a store only:
// --store (what is the store, in usage) and --timeout. It refuses --server
// and --token-file in one line, with why.
func (c *conn) storeOnlyFlags(cmd *cobra.Command, usage, why string) {
	c.storeFlags(cmd, usage)
	refuseFlag(cmd, "server", why)
	refuseFlag(cmd, "token-file", why)
}

// storeFlags adds --store and --timeout.
func (c *conn) storeFlags(cmd *cobra.Command, usage string) {
	fs := cmd.Flags()
	c.fs = fs
	fs.StringVar(&c.storeURL, "store", "", usage)
	fs.DurationVar(&c.timeout, "timeout", 30*time.Second, "bound on each call to the server or store, opening it included (the checked copy of a bolt file a server holds too: give 0, no bound, for a large one)")
}

// outputFlag adds -o/--output.
func (c *conn) outputFlag(cmd *cobra.Command) {
	c.output = "table"
	cmd.Flags().VarP(&c.output, "output", "o", "table, or json: one JSON document")
	completeWith(cmd, "output", "table", "json")
}

// outputFlag is -o: table or json.
type outputFlag string

func (o *outputFlag) String() string { return string(*o) }
func (o *outputFlag) Type() string   { return "table|json" }
func (o *outputFlag) Set(s string) error {
	if s != "table" && s != "json" {
		return errors.New("want table or json")
	}
	*o = outputFlag(s)
	return nil
}

func (c *conn) json() bool { return c.output == "json" }

func (c *conn) check() error {
	if c.timeout < 0 {
		return fmt.Errorf("--timeout: must not be negative, got %s", c.timeout)
	}
	if c.storeURL != "" && c.fs != nil && !c.fs.Changed("server") {
		c.server = "" // --store wins over CORRSTORE_SERVER
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
// line saying writes need the server. Each call is bounded
// by --timeout.
func (c *conn) open(ctx context.Context, e *env, readOnly bool) (storeOrServer, error) {
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
		return timedCalls{cl, c}, nil
	}
	st, err := c.openStore(ctx, e, readOnly)
	if err != nil {
		return nil, err
	}
	return timedCalls{st, c}, nil
}

// openStore opens --store only (export, import, reap need the whole store),
// within --timeout. The store's calls are not bounded: wrap it in
// timedCalls or use timed.
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

// timedCalls bounds each call of a storeOrServer by --timeout.
type timedCalls struct {
	b storeOrServer
	c *conn
}

func (t timedCalls) Register(ctx context.Context, x *store.Correlation) (store.RegisterResult, error) {
	return timed(t.c, ctx, func(ctx context.Context) (store.RegisterResult, error) { return t.b.Register(ctx, x) })
}

func (t timedCalls) Deliver(ctx context.Context, ref store.Ref, r store.Reply) (store.DeliverResult, error) {
	return timed(t.c, ctx, func(ctx context.Context) (store.DeliverResult, error) { return t.b.Deliver(ctx, ref, r) })
}

func (t timedCalls) Get(ctx context.Context, ref store.Ref) (*store.Correlation, error) {
	return timed(t.c, ctx, func(ctx context.Context) (*store.Correlation, error) { return t.b.Get(ctx, ref) })
}

func (t timedCalls) Extend(ctx context.Context, ref store.Ref, deadline time.Time) (store.Result, error) {
	return timed(t.c, ctx, func(ctx context.Context) (store.Result, error) { return t.b.Extend(ctx, ref, deadline) })
}

func (t timedCalls) Cancel(ctx context.Context, ref store.Ref, reason string) (store.Result, error) {
	return timed(t.c, ctx, func(ctx context.Context) (store.Result, error) { return t.b.Cancel(ctx, ref, reason) })
}

func (t timedCalls) Expire(ctx context.Context, ref store.Ref, reason string) (store.Result, error) {
	return timed(t.c, ctx, func(ctx context.Context) (store.Result, error) { return t.b.Expire(ctx, ref, reason) })
}

func (t timedCalls) Redispatch(ctx context.Context, ref store.Ref) (store.Result, error) {
	return timed(t.c, ctx, func(ctx context.Context) (store.Result, error) { return t.b.Redispatch(ctx, ref) })
}

func (t timedCalls) List(ctx context.Context, f store.Filter) (store.Page, error) {
	return timed(t.c, ctx, func(ctx context.Context) (store.Page, error) { return t.b.List(ctx, f) })
}

func (t timedCalls) Stats(ctx context.Context, namespace string) (store.Stats, error) {
	return timed(t.c, ctx, func(ctx context.Context) (store.Stats, error) { return t.b.Stats(ctx, namespace) })
}

func (t timedCalls) Close() error { return t.b.Close() }

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
