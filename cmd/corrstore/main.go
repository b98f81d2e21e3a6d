// Command corrstore is the corrstore daemon and its operator commands.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:]); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "corrstore:", err)
		}
		os.Exit(1)
	}
}

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

const usage = `corrstore is a durable correlation store for asynchronous request-reply.

Usage:
  corrstore serve [flags]   run the HTTP API, the reaper and /metrics on one store
  corrstore --version       print the version

Run 'corrstore serve -h' for the flags.
`

func run(ctx context.Context, args []string) error {
	if len(args) == 0 {
		fmt.Fprint(os.Stderr, usage)
		return flag.ErrHelp
	}
	switch args[0] {
	case "serve":
		m := NewMain()
		if err := m.ParseFlags(args[1:]); err != nil {
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
	case "--version", "-version", "version":
		fmt.Println("corrstore", version)
		return nil
	case "-h", "--help", "help":
		fmt.Print(usage)
		return nil
	default:
		return fmt.Errorf("unknown command %q; run 'corrstore --help'", args[0])
	}
}
