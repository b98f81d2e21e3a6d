// Command corrstore is the corrstore daemon and its operator commands.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
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

// errUsage marks an error the command already explained (usage printed).
var errUsage = errors.New("usage")

// run runs the command args name. Its error is one line, prefixed with the
// command's name (main adds "corrstore: ").
func run(ctx context.Context, e *env, args []string) error {
	root := newRoot(e)
	if len(args) == 0 {
		root.SetOut(e.stderr)
		root.HelpFunc()(root, nil)
		return errUsage
	}
	if err := checkCommand(root, args[0]); err != nil {
		return err
	}
	root.SetArgs(args)
	cmd, err := root.ExecuteContextC(ctx)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, errUsage), cmd == nil || cmd == root:
		return err
	}
	return fmt.Errorf("%s: %w", strings.TrimPrefix(cmd.CommandPath(), root.Name()+" "), err)
}
