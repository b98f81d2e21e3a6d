package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"regexp"
	"runtime/debug"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/spf13/cobra"
	"github.com/stretchr/testify/require"
)

// runAlone runs a command in process with no server, store or environment;
// a panic comes back as an error with its stack.
func runAlone(args ...string) (stdout, stderr string, err error) {
	var out, errb bytes.Buffer
	e := &env{
		stdout: &out, stderr: &errb, stdin: strings.NewReader(""),
		getenv: func(string) string { return "" }, now: time.Now, noSync: true,
	}
	func() {
		defer func() {
			if p := recover(); p != nil {
				err = fmt.Errorf("panic: %v\n%s", p, debug.Stack())
			}
		}()
		err = run(context.Background(), e, args)
	}()
	return out.String(), errb.String(), err
}

// helpFlagRE is a flag's line in a command's -h, as pflag writes it:
// "  -n, --name type   usage" ("--name[=true|false]" for a bool flag; the
// Value's Type for a flag.Value of the command's own).
var helpFlagRE = regexp.MustCompile(`(?m)^  (?:-\S, |    )--([a-z0-9-]+)(\[=true\|false\])?(?: (\S+))?  `)

// subcommands are corrstore's commands, serve included, without cobra's
// help and completion.
func subcommands() []*cobra.Command {
	var cmds []*cobra.Command
	for _, c := range newRoot(&env{getenv: func(string) string { return "" }}).Commands() {
		if c.Name() != "help" && c.Name() != "completion" && c.IsAvailableCommand() {
			cmds = append(cmds, c)
		}
	}
	return cmds
}

// TestBadFlagValues gives every flag of every command, as its -h lists it,
// a value it refuses: the command fails with one line that names the flag
// (--name) and the value, without a panic or a usage dump. A flag.Value of
// a command's own (--label) once panicked here, being no flag.Getter.
func TestBadFlagValues(t *testing.T) {
	t.Parallel()
	bad := map[string][]string{ // type in -h → values it refuses
		"":         {"maybe"}, // bool, given as --name=maybe
		"int":      {"many", "99999999999999999999999"},
		"int64":    {"many", "99999999999999999999999"},
		"uint":     {"-1"},
		"float64":  {"much"},
		"duration": {"5", "5 minutes"},
	}
	custom := 0
	for _, cmd := range subcommands() {
		c := struct{ name string }{cmd.Name()}
		help, _, err := runAlone(c.name, "-h")
		require.NoError(t, err, c.name)
		flags := helpFlagRE.FindAllStringSubmatch(help, -1)
		require.NotEmpty(t, flags, "%s -h lists no flags", c.name)
		for _, m := range flags {
			name, typ := m[1], m[3]
			if m[2] != "" {
				typ = "" // bool
			}
			values, std := bad[typ]
			if typ == "string" {
				continue // any string parses; the commands check them later
			}
			if !std {
				// A flag.Value of the command's own: at least one of these
				// must be refused, or this test needs a value it refuses.
				custom++
				values = []string{"", "x", "=", "-"}
			}
			refused := false
			for _, v := range values {
				arg := "--" + name + "=" + v
				if !std {
					// The value as its own argument, the form that panicked.
					arg = "--" + name
				}
				args := []string{c.name, arg}
				if !std {
					args = append(args, v)
				}
				out, errOut, err := runAlone(args...)
				if err != nil && strings.HasPrefix(err.Error(), "panic") {
					t.Fatalf("%q: %v", args, err)
				}
				if err == nil || !strings.Contains(err.Error(), "--"+name) {
					require.False(t, std, "%q: want an error naming --%s, got %v", args, name, err)
					continue // a custom flag took this value; try the next
				}
				refused = true
				msg := err.Error()
				require.NotContains(t, msg, "panic", "%q", args)
				require.NotContains(t, msg, "\n", "%q: one line", args)
				require.True(t, strings.HasPrefix(msg, c.name+": --"+name+": "+fmt.Sprintf("%q", v)), "%q: %s", args, msg)
				require.Empty(t, out, "%q: no usage on stdout", args)
				require.Empty(t, errOut, "%q: nothing on stderr (main prints the one line)", args)
			}
			require.True(t, refused, "%s --%s (%s) took every value the test tried", c.name, name, typ)
		}
	}
	require.Positive(t, custom, "no command has a flag.Value of its own (ls --label has)")

	// The messages, for a standard flag of each kind and the custom one.
	for args, want := range map[string]string{
		"ls --label foo":              `ls: --label: "foo": want KEY=VALUE, like team=payments`,
		"ls --limit x":                `ls: --limit: "x" is not a whole number`,
		"ls --older-than 5":           `ls: --older-than: "5" is not a duration like 30s, 5m or 1h30m`,
		"ls --all=maybe":              `ls: --all: "maybe" is not true or false`,
		"ls --limit":                  `ls: --limit needs a value (see corrstore ls -h)`,
		"bench --duration 1":          `bench: --duration: "1" is not a duration like 30s, 5m or 1h30m`,
		"redispatch --all-matching=x": `redispatch: --all-matching: "x" is not true or false`,
	} {
		_, _, err := runAlone(strings.Fields(args)...)
		require.EqualError(t, err, want, args)
	}
}

// hangingListener accepts connections on 127.0.0.1 and never answers: it
// reads what it is sent and keeps the connection open until the test ends.
func hangingListener(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			go io.Copy(io.Discard, c)
		}
	}()
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return l.Addr().String()
}

// TestTimeout: every command that talks to a server or a store gives up
// after --timeout when the other side accepts the connection and never
// answers, with one line naming what did not answer and the flag (before,
// --timeout was read and not used: ls waited 30s on a server, 3s and
// go-redis's retries on a Redis).
func TestTimeout(t *testing.T) {
	t.Parallel()
	addr := hangingListener(t)
	server := "http://" + addr
	redis := "redis://" + addr + "/0"
	target := "bolt://" + filepath.Join(t.TempDir(), "target.db")
	onServer := []string{"--server", server, "--timeout", "300ms"}
	onRedis := []string{"--store", redis, "--timeout", "300ms"}
	for i, tc := range []struct {
		args  []string
		where string
	}{
		{append([]string{"ls"}, onServer...), server},
		{append([]string{"ls", "--all"}, onServer...), server},
		{append([]string{"show", "x"}, onServer...), server},
		{append([]string{"stats"}, onServer...), server},
		{append([]string{"expire", "x"}, onServer...), server},
		{append([]string{"cancel", "x", "--reason", "r"}, onServer...), server},
		{append([]string{"extend", "x", "--by", "5m"}, onServer...), server},
		{append([]string{"redispatch", "x"}, onServer...), server},
		{append([]string{"redispatch", "--all-matching", "--yes"}, onServer...), server},
		{append([]string{"bench", "--duration", "500ms", "--concurrency", "2"}, onServer...), server},
		{append([]string{"ls"}, onRedis...), redis},
		{append([]string{"show", "x"}, onRedis...), redis},
		{append([]string{"stats"}, onRedis...), redis},
		{append([]string{"export"}, onRedis...), redis},
		{append([]string{"reap", "--once"}, onRedis...), redis},
		{[]string{"import", "--from", redis, "--store", target, "--timeout", "300ms"}, redis},
		{[]string{"import", "-", "--store", redis, "--timeout", "300ms"}, redis},
	} {
		t.Run(fmt.Sprint(i, "-", tc.args[0]), func(t *testing.T) {
			t.Parallel()
			start := time.Now()
			out, errOut, err := runAlone(tc.args...)
			took := time.Since(start)
			require.Error(t, err, "%q", tc.args)
			msg := err.Error()
			if tc.args[0] == "bench" { // bench counts the failures and prints them
				require.EqualError(t, err, "bench: no lifecycle completed")
				msg = out
			}
			require.Contains(t, msg, tc.where+" did not answer within --timeout 300ms", "%q", tc.args)
			require.NotContains(t, err.Error(), "\n", "%q: one line", tc.args)
			require.Empty(t, errOut, "%q", tc.args)
			require.GreaterOrEqual(t, took, 300*time.Millisecond, "%q", tc.args)
			// The bound is 300ms a call; a few calls (bench's 500ms), under
			// -race on a loaded machine, stay far below the 3s of go-redis's
			// read timeout and the 30s of the old client timeout.
			require.Less(t, took, 2500*time.Millisecond, "%q", tc.args)
		})
	}
}

// TestHelpAligned: in corrstore help, every command's summary starts in the
// same column (counted in characters, as a terminal shows them).
func TestHelpAligned(t *testing.T) {
	t.Parallel()
	out, _, err := runAlone("help")
	require.NoError(t, err)
	lineRE := regexp.MustCompile(`^(  corrstore \S.*?\S {2,})\S`)
	col, n := -1, 0
	for _, line := range strings.Split(out, "\n") {
		if !strings.HasPrefix(line, "  corrstore ") {
			continue
		}
		m := lineRE.FindStringSubmatch(line)
		require.NotNil(t, m, "no summary column in %q", line)
		w := utf8.RuneCountInString(m[1])
		if col < 0 {
			col = w
		}
		require.Equal(t, col, w, "summary of %q starts at column %d, the first line's at %d", line, w, col)
		n++
	}
	require.Equal(t, len(subcommands())+2, n, "each command, completion and help have a line")
}
