package main

import (
	"bytes"
	"context"
	"fmt"
	"regexp"
	"runtime/debug"
	"strings"
	"testing"
	"time"

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

// helpFlagRE is a flag's line in a command's -h: "  -name type" (no type
// for a bool flag; "value" for a flag.Value of the command's own).
var helpFlagRE = regexp.MustCompile(`(?m)^  -(\S+)(?: (\S+))?$`)

// TestBadFlagValues gives every flag of every command, as its -h lists it,
// a value it refuses: the command fails with one line that names the flag
// (--name) and the value, without a panic or a usage dump. A flag.Value of
// a command's own (--label) once panicked here, being no flag.Getter.
func TestBadFlagValues(t *testing.T) {
	t.Parallel()
	bad := map[string][]string{ // type in -h → values it refuses
		"":         {"maybe"}, // bool, given as --name=maybe
		"int":      {"many", "99999999999999999999999"},
		"uint":     {"-1"},
		"float":    {"much"},
		"duration": {"5", "5 minutes"},
	}
	custom := 0
	for _, c := range commands() {
		help, _, err := runAlone(c.name, "-h")
		require.NoError(t, err, c.name)
		flags := helpFlagRE.FindAllStringSubmatch(help, -1)
		require.NotEmpty(t, flags, "%s -h lists no flags", c.name)
		for _, m := range flags {
			name, typ := m[1], m[2]
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
