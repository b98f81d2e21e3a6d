package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

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
