package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"github.com/corrstore/corrstore/cmd/corrstore/internal/wire"
	"github.com/corrstore/corrstore/store"
)

const showAbout = `Shows one correlation — ID in --namespace, or NS/ID: the record, its replies,
late replies, dispatch state and the event timeline. -o json prints the record
as the API's GET /v1/correlations/{id} answers it.`

// showOptions are what show was asked.
type showOptions struct {
	conn
	namespace string
}

func newShowCmd(e *env) *cobra.Command {
	var o showOptions
	cmd := newCommand("show [NS/]ID", "one correlation: record, replies, late replies, dispatch, timeline", showAbout)
	o.conn.flags(cmd)
	namespaceFlag(cmd.Flags(), &o.namespace, "", idsNamespaceUsage)
	cmd.Args = func(cmd *cobra.Command, args []string) error {
		if len(args) != 1 {
			return fmt.Errorf("show takes one ID, got %d arguments", len(args))
		}
		return nil
	}
	cmd.RunE = func(cmd *cobra.Command, args []string) error { return runShow(cmd.Context(), e, &o, args[0]) }
	return cmd
}

func runShow(ctx context.Context, e *env, o *showOptions, id string) error {
	c := &o.conn
	if err := c.check(); err != nil {
		return err
	}
	refs, err := refsOf(o.namespace, []string{id})
	if err != nil {
		return err
	}
	b, err := c.open(ctx, e, true)
	if err != nil {
		return err
	}
	defer b.Close()
	r, err := b.Get(ctx, refs[0])
	if err != nil {
		return fmt.Errorf("%s: %s", label(refs[0]), describeErr(err))
	}
	if c.json() {
		return writeJSON(e.stdout, wire.FromStore(r))
	}
	printRecord(e.stdout, r, e.now())
	return nil
}

// printRecord prints r for a terminal: every text from the record goes
// through printable (or preview), since records stored before schema 2 may
// hold control characters.
func printRecord(w io.Writer, r *store.Correlation, now time.Time) {
	printFields(w, r, now)
	printReplies(w, r, "Replies", r.Replies, dupNote(r.DuplicateCount))
	lateExtra := ""
	if r.LateCount > len(r.Late) {
		lateExtra = fmt.Sprintf(" kept of %d", r.LateCount)
	}
	printReplies(w, r, "Late replies", r.Late, lateExtra)
	printTimeline(w, r)
}

// printFields prints the record's fields, one "name: value" a line.
func printFields(w io.Writer, r *store.Correlation, now time.Time) {
	tw := table(w)
	row := func(k, v string) {
		if v != "" {
			fmt.Fprintf(tw, "%s:\t%s\n", k, printable(v))
		}
	}
	ts := func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return t.UTC().Format(time.RFC3339Nano) + " (" + relative(t.Sub(now)) + ")"
	}
	row("id", r.ID)
	row("namespace", r.Namespace)
	p := string(r.Pattern)
	if r.Pattern == store.PatternGather {
		p += fmt.Sprintf(" (expect %d, quorum %d)", r.Expect, r.Quorum)
	}
	if r.Optional {
		p += ", reply optional"
	}
	row("pattern", p)
	row("state", string(r.State))
	if r.Outcome != nil {
		o := fmt.Sprintf("%s at %s", r.Outcome.State, ts(r.Outcome.At))
		if r.Outcome.Partial {
			o += ", partial"
		}
		if r.Outcome.NoReply {
			o += ", no reply"
		}
		if r.Outcome.Reason != "" {
			o += ": " + r.Outcome.Reason
		}
		row("outcome", o)
	}
	row("created", ts(r.CreatedAt))
	row("deadline", ts(r.Deadline))
	row("updated", ts(r.UpdatedAt))
	row("destination", r.Destination)
	row("reply to", r.ReplyTo)
	row("owner", r.Owner)
	if r.Callback.Handler != "" || len(r.Callback.Data) > 0 {
		row("handler", orDash(r.Callback.Handler))
		row("callback data", preview(r.Callback.Data))
	}
	if len(r.Labels) > 0 {
		var ls []string
		for k, v := range r.Labels {
			ls = append(ls, k+"="+v)
		}
		slices.Sort(ls)
		row("labels", strings.Join(ls, " "))
	}
	row("idempotency key", r.IdempotencyKey)
	d := string(r.Dispatch.State)
	if r.Dispatch.Attempts > 0 {
		d += fmt.Sprintf(", %d attempts", r.Dispatch.Attempts)
	}
	if r.Dispatch.LeaseOwner != "" {
		d += ", leased to " + r.Dispatch.LeaseOwner
	}
	if !r.Dispatch.NextAt.IsZero() && r.Dispatch.State == store.DispatchPending {
		d += ", next at " + ts(r.Dispatch.NextAt)
	}
	row("dispatch", d)
	row("last error", r.Dispatch.LastError)
	row("version", fmt.Sprint(r.Version))
	tw.Flush()
}

// printReplies prints a titled table of replies (r's accepted or late ones).
func printReplies(w io.Writer, r *store.Correlation, title string, rs []store.Reply, extra string) {
	fmt.Fprintf(w, "\n%s (%d%s):\n", title, len(rs), extra)
	if len(rs) == 0 {
		return
	}
	tw := table(w)
	fmt.Fprintln(tw, "  RECEIVED\tID\tFROM\tSEQ\tBODY")
	for _, x := range rs {
		body := preview(x.Body)
		if x.Error != "" {
			body = "error: " + x.Error
		}
		seq := "-"
		if r.Pattern == store.PatternStream {
			seq = fmt.Sprint(x.Seq)
			if x.Final {
				seq += " final"
			}
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\n", x.ReceivedAt.UTC().Format(time.RFC3339), orDash(x.ID), orDash(x.From), seq, printable(body))
	}
	tw.Flush()
}

// printTimeline prints r's events, oldest first.
func printTimeline(w io.Writer, r *store.Correlation) {
	fmt.Fprintf(w, "\nTimeline (%d events", len(r.Events))
	if r.EventsDropped > 0 {
		fmt.Fprintf(w, ", %d older dropped", r.EventsDropped)
	}
	fmt.Fprintln(w, "):")
	tw := table(w)
	for _, ev := range r.Events {
		fmt.Fprintf(tw, "  %s\t%s\t%s\n", ev.At.UTC().Format(time.RFC3339Nano), printable(string(ev.Type)), printable(ev.Detail))
	}
	tw.Flush()
}

func dupNote(n int) string {
	if n == 0 {
		return ""
	}
	return fmt.Sprintf(", %d duplicates ignored", n)
}

func relative(d time.Duration) string {
	if d < 0 {
		return age(-d) + " ago"
	}
	return "in " + age(d)
}

// preview shows a body on one line: JSON as is (printable: a JSON string may
// hold invalid UTF-8 or C1 controls), other bytes as a count.
func preview(b []byte) string {
	if len(b) == 0 {
		return "-"
	}
	if !json.Valid(b) {
		return fmt.Sprintf("(%d bytes, not JSON)", len(b))
	}
	s := printable(strings.Join(strings.Fields(string(b)), " "))
	if len(s) > 80 {
		cut := 77
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "…"
	}
	return s
}
