package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/corrstore/corrstore/cmd/corrstore/internal/wire"
	"github.com/corrstore/corrstore/store"
)

func TestShow(t *testing.T) {
	t.Parallel()
	f := newFixture(t, false)
	f.seed()
	outs := f.both("show", "done-1")
	for _, out := range outs {
		require.Regexp(t, `state: +completed`, out)
		require.Contains(t, out, "Replies (1):")
		require.Contains(t, out, `{"paid":true}`)
		require.Contains(t, out, "Late replies (1):")
		require.Contains(t, out, `"too late"`)
		require.Contains(t, out, "reply_late")
	}
	out := f.both("show", "dead-1")[0]
	require.Regexp(t, `dispatch: +dead, 1 attempts`, out)
	require.Contains(t, out, "ship-order: warehouse API 503")

	for _, out := range f.both("show", "dead-1", "-o", "json") {
		var c wire.Correlation
		require.NoError(t, json.Unmarshal([]byte(out), &c))
		require.Equal(t, store.DispatchDead, c.Dispatch.State)
		require.Equal(t, "ship-order: warehouse API 503", c.Dispatch.LastError)
	}
}

func TestShowNamespaces(t *testing.T) {
	t.Parallel()
	f := newFixture(t, false)
	f.seed()
	// The same ID in another namespace is another correlation.
	_, err := f.st.Register(t.Context(), &store.Correlation{ID: "pend-1", Namespace: "team-a", Timeout: time.Hour, Destination: "ledger"})
	require.NoError(t, err)
	for _, args := range [][]string{{"show", "pend-1"}, {"show", "default/pend-1"}} {
		for _, out := range f.both(args...) {
			require.Regexp(t, `namespace: +default`, out)
			require.Regexp(t, `destination: +payments`, out)
		}
	}
	for _, args := range [][]string{{"show", "team-a/pend-1"}, {"show", "-n", "team-a", "pend-1"}, {"show", "pend-1", "--namespace", "team-a"}} {
		for _, out := range f.both(args...) {
			require.Regexp(t, `namespace: +team-a`, out)
			require.Regexp(t, `destination: +ledger`, out)
		}
	}
	_, _, err = f.run("show", "pend-2", "--store", f.storeURL())
	require.EqualError(t, err, "show: pend-2: not found")
	_, _, err = f.run("show", "team-b/pend-2", "--server", f.srv.URL)
	require.EqualError(t, err, "show: team-b/pend-2: not found")
}

// hostile is a record stored before names were checked for control
// characters: escapes that would retitle the terminal, clear the screen,
// return the carriage over what was printed, or reverse the line.
func hostile(now time.Time) *store.Correlation {
	c := synthetic(1, now) // completed, one reply, one late reply
	c.ID, c.Namespace = "evil-1", "default"
	c.Destination = "pay\x1b]0;pwned\x07ments"
	c.Owner = "svc\rOWNED"
	c.ReplyTo = "inbox\u009b2J"
	c.Callback.Handler = "h\x1b[2J"
	c.Labels = map[string]string{"k\x1b[31m": "v\u202egnp.exe"}
	c.Outcome.Reason = "done\x1b[1A\x1b[2K"
	c.Replies[0].From, c.Replies[0].Error = "peer\x7f", "boom\x1b[5m"
	c.Replies[0].Body = []byte("\"\u0085next line\"")
	c.Events[0].Detail = "detail\x1bc"
	return c
}

// requireNoControl fails when out holds a control character other than
// newline (tabwriter pads with spaces), or a bidi control.
func requireNoControl(t *testing.T, out string) {
	t.Helper()
	for i, r := range out {
		if r != '\n' && unsafeRune(r) {
			t.Fatalf("control character %U at byte %d of:\n%s", r, i, out)
		}
	}
}

// TestShowEscapesControlCharacters: ls and show print what a record stored
// before schema 2 holds without letting it reach the terminal as control
// characters, in tables (escaped) and in JSON (encoded).
func TestShowEscapesControlCharacters(t *testing.T) {
	t.Parallel()
	f := newFixture(t, false)
	created, err := f.st.Import(t.Context(), hostile(time.Now().Add(-time.Minute)))
	require.NoError(t, err)
	require.True(t, created)

	for _, out := range f.both("show", "evil-1") {
		requireNoControl(t, out)
		require.Contains(t, out, `pay\x1b]0;pwned\aments`)
		require.Contains(t, out, `svc\rOWNED`)
		require.Contains(t, out, `inbox\u009b2J`)
		require.Contains(t, out, `done\x1b[1A\x1b[2K`)
		require.Contains(t, out, `k\x1b[31m=v\u202egnp.exe`)
		require.Contains(t, out, `peer\x7f`)
		require.Contains(t, out, `boom\x1b[5m`)
		require.Contains(t, out, `detail\x1bc`)
	}
	for _, out := range f.both("ls") {
		requireNoControl(t, out)
		require.Contains(t, out, `pay\x1b]0;pwned\aments`)
		require.Contains(t, out, `h\x1b[2J`)
	}
	for _, out := range f.both("show", "evil-1", "-o", "json") {
		requireNoControl(t, out)
		var c wire.Correlation
		require.NoError(t, json.Unmarshal([]byte(out), &c))
		require.Equal(t, "pay\x1b]0;pwned\x07ments", c.Destination, "JSON keeps the text, escaped")
		require.Equal(t, "inbox\u009b2J", c.ReplyTo)
	}
	for _, out := range f.both("ls", "-o", "json") {
		requireNoControl(t, out)
		require.Equal(t, []string{"evil-1"}, lsIDs(t, out))
	}
}

func TestPrintable(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"plain":                "plain",
		"naïve ☃ \uFFFD":       "naïve ☃ \uFFFD",
		"a\x1b[2Jb":            `a\x1b[2Jb`,
		"cr\r\nlf\ttab":        `cr\r\nlf\ttab`,
		"del\x7f c1\u0085":     `del\x7f c1\u0085`,
		"bidi\u202eevil\u2066": `bidi\u202eevil\u2066`,
		"bad\xffutf8\xc3":      `bad\xffutf8\xc3`,
		"sep\u2028":            `sep\u2028`,
	} {
		require.Equal(t, want, printable(in), "%q", in)
	}
	var b strings.Builder
	require.NoError(t, writeJSON(&b, map[string]string{"k": "a\u009b\x7fz\x1b"}))
	require.Equal(t, "{\n  \"k\": \"a\\u009b\\u007fz\\u001b\"\n}\n", b.String())
}
