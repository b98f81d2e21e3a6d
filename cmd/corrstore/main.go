// Command corrstore is the corrstore daemon and its operator commands.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, processEnv(), os.Args[1:]); err != nil {
		if !errors.Is(err, errUsage) {
			fmt.Fprintln(os.Stderr, "corrstore:", oneLine(err))
		}
		os.Exit(1)
	}
}

// oneLine keeps an error to the one line an operator reads, with any
// control character a server or a record put in it escaped.
func oneLine(err error) string {
	s := err.Error()
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i] + " (…)"
	}
	return printable(s)
}

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

func usage() string {
	var b strings.Builder
	b.WriteString(`corrstore is a durable correlation store for asynchronous request-reply.

Usage:
`)
	tw := tabwriter.NewWriter(&b, 0, 0, 3, ' ', 0)
	fmt.Fprintln(tw, "  corrstore serve [flags]\trun the HTTP API, the reaper and /metrics on one store")
	for _, c := range commands() {
		fmt.Fprintf(tw, "  corrstore %s %s\t%s\n", c.name, c.args, c.summary)
	}
	fmt.Fprintln(tw, "  corrstore --version\tprint the version")
	tw.Flush()
	b.WriteString(`
The operator commands work on a running server (--server http://HOST:PORT, token from
--token-file or CORRSTORE_TOKEN) or directly on a store (--store bolt://PATH, redis://…).
A correlation is an ID in a namespace: give --namespace NS (-n) or NS/ID; without
either, the namespace is "default" (on --server: the token's, when it has only one).
Run 'corrstore COMMAND -h' for a command's flags; docs/OPERATIONS.md has the runbook.
`)
	return b.String()
}

func run(ctx context.Context, e *env, args []string) error {
	if len(args) == 0 {
		fmt.Fprint(e.stderr, usage())
		return errUsage
	}
	switch args[0] {
	case "serve":
		return serve(ctx, args[1:])
	case "--version", "-version", "version":
		fmt.Fprintln(e.stdout, "corrstore", version)
		return nil
	case "-h", "--help", "help":
		fmt.Fprint(e.stdout, usage())
		return nil
	}
	for _, c := range commands() {
		if c.name == args[0] {
			err := c.run(ctx, e, args[1:])
			switch {
			case err == nil, errors.Is(err, flag.ErrHelp):
				return nil
			case errors.Is(err, errUsage):
				return err
			}
			return fmt.Errorf("%s: %w", c.name, err)
		}
	}
	return fmt.Errorf("unknown command %q; run 'corrstore --help'", args[0])
}

func serve(ctx context.Context, args []string) error {
	m := NewMain()
	if err := m.ParseFlags(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if m.ShowVersion {
		fmt.Println("corrstore", version)
		return nil
	}
	if err := m.Run(ctx); err != nil {
		m.Close()
		return err
	}
	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-m.Done():
	}
	return errors.Join(serveErr, m.Close())
}
