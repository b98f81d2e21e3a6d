package main

import (
	"encoding/json"
	"io"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestFlagSyntax: GNU style everywhere — --flag value and --flag=value,
// flags before or after the arguments, -o and -n short forms, -- ends the
// flags — with the same result for each spelling.
func TestFlagSyntax(t *testing.T) {
	t.Parallel()
	f := newFixture(t, false)
	f.seed()
	srv := f.srv.URL
	for _, args := range [][]string{
		{"ls", "--state", "pending", "--namespace", "team-a", "--output", "json", "--server", srv},
		{"ls", "--state=pending", "--namespace=team-a", "--output=json", "--server=" + srv},
		{"ls", "-n", "team-a", "-o", "json", "--state", "pending", "--server", srv},
		{"ls", "-nteam-a", "-ojson", "--state", "pending", "--server", srv},
	} {
		out, _, err := f.run(args...)
		require.NoError(t, err, "%q", args)
		require.Equal(t, []string{"pend-2"}, lsIDs(t, out), "%q", args)
	}
	// Flags after the ID, before it, and -- before an argument.
	for i, args := range [][]string{
		{"show", "pend-2", "-n", "team-a", "-o", "json", "--server", srv},
		{"show", "-n", "team-a", "-o", "json", "--server", srv, "pend-2"},
		{"show", "-o=json", "--namespace=team-a", "--server=" + srv, "--", "pend-2"},
	} {
		out, _, err := f.run(args...)
		require.NoError(t, err, "%d %q", i, args)
		var c struct{ ID, Namespace string }
		require.NoError(t, json.Unmarshal([]byte(out), &c))
		require.Equal(t, "team-a", c.Namespace)
		require.Equal(t, "pend-2", c.ID)
	}
	_, _, err := f.run("cancel", "--reason=ops", "--server", srv, "pend-1")
	require.NoError(t, err)
	require.Equal(t, "ops", f.get("pend-1").Outcome.Reason)

	// A flag a command does not have, short or long, is one line.
	for args, want := range map[string]string{
		"ls --bogus":      "ls: unknown flag --bogus (see corrstore ls -h)",
		"ls -z":           "ls: unknown flag -z (see corrstore ls -h)",
		"ls --=x":         `ls: bad flag syntax "--=x" (see corrstore ls -h)`,
		"lss":             `unknown command "lss" (did you mean ls?); run 'corrstore --help'`,
		"frobnicate":      `unknown command "frobnicate"; run 'corrstore --help'`,
		"ls extra":        `ls: ls takes no arguments, got ["extra"]`,
		"serve extra":     `serve: serve takes no arguments, got ["extra"]`,
		"serve --version": "serve: unknown flag --version (see corrstore serve -h)",
		"ls -o":           "ls: --output needs a value (see corrstore ls -h)",
		"help nope":       `help: no command "nope"; run 'corrstore help'`,
	} {
		out, errOut, err := runAlone(strings.Fields(args)...)
		require.EqualError(t, err, want, args)
		require.Empty(t, out, args)
		require.Empty(t, errOut, args)
	}
}

// TestEnvironment: each command's help lists the CORRSTORE_* variables it
// reads, and each one listed is read: --server's, the token, and every
// flag of serve.
func TestEnvironment(t *testing.T) {
	t.Parallel()
	envRE := regexp.MustCompile(`(?m)^  (CORRSTORE_[A-Z_]+) +(.+)$`)
	for _, cmd := range subcommands() {
		help, _, err := runAlone(cmd.Name(), "--help")
		require.NoError(t, err)
		vars := map[string]string{}
		for _, m := range envRE.FindAllStringSubmatch(help, -1) {
			vars[m[1]] = m[2]
		}
		hasServer := strings.Contains(help, "--server string")
		require.Equal(t, hasServer, vars["CORRSTORE_SERVER"] == "--server", "%s: CORRSTORE_SERVER listed iff --server is", cmd.Name())
		require.Equal(t, hasServer, vars["CORRSTORE_TOKEN"] != "", "%s: CORRSTORE_TOKEN listed iff --server is", cmd.Name())
		if cmd.Name() == "serve" {
			// Every flag of serve, and nothing else.
			n := 0
			for _, m := range helpFlagRE.FindAllStringSubmatch(help, -1) {
				if m[1] == "help" {
					continue
				}
				n++
				name := "CORRSTORE_" + strings.ToUpper(strings.ReplaceAll(m[1], "-", "_"))
				require.Equal(t, "--"+m[1], vars[name], "serve --%s", m[1])
			}
			require.Len(t, vars, n)
			require.Contains(t, help, "Runs the HTTP API (/v1), the reaper and /metrics on one store", "serve --help describes it")
		}
	}

	// The variables are read: CORRSTORE_SERVER and CORRSTORE_TOKEN reach a
	// server that wants a token; --store wins over CORRSTORE_SERVER, and
	// --server over it.
	f := newFixture(t, true)
	f.seed()
	f.getenv["CORRSTORE_SERVER"] = f.srv.URL
	f.getenv["CORRSTORE_TOKEN"] = opsAdminToken
	out, _, err := f.run("ls", "-o", "json", "--state", "pending")
	require.NoError(t, err)
	require.Equal(t, []string{"pend-2", "pend-1"}, lsIDs(t, out))
	out, _, err = f.run("ls", "-o", "json", "--state", "pending", "--store", f.storeURL())
	require.NoError(t, err, "--store wins over CORRSTORE_SERVER")
	require.Equal(t, []string{"pend-2", "pend-1"}, lsIDs(t, out))
	_, _, err = f.run("ls", "--server", f.srv.URL, "--store", f.storeURL())
	require.EqualError(t, err, "ls: give --server or --store, not both")
	f.getenv["CORRSTORE_SERVER"] = "http://127.0.0.1:1"
	_, _, err = f.run("ls", "--server", f.srv.URL)
	require.NoError(t, err, "--server wins over CORRSTORE_SERVER")
	f.getenv["CORRSTORE_TOKEN"] = "wrong-token-0123456789"
	_, _, err = f.run("ls", "--server", f.srv.URL)
	require.ErrorContains(t, err, "the server refused the token (401)")

	// serve reads its variables through env too; a bad one is one line.
	e := &env{stdout: io.Discard, stderr: io.Discard, stdin: strings.NewReader(""),
		getenv: getenvOf(map[string]string{"CORRSTORE_MAX_WAIT": "forever"})}
	require.EqualError(t, run(t.Context(), e, []string{"serve"}),
		`serve: CORRSTORE_MAX_WAIT: "forever" is not a duration like 30s, 5m or 1h30m`)
}

// getenvOf is an env's getenv over vars.
func getenvOf(vars map[string]string) func(string) string {
	return func(k string) string { return vars[k] }
}

// TestStoreOnlyCommands: export, import and reap work on a store only: they
// list no --server or --token-file, and say why when given one.
func TestStoreOnlyCommands(t *testing.T) {
	t.Parallel()
	for name, why := range map[string]string{
		"export": "export reads a store directly",
		"import": "import writes to a store directly",
		"reap":   "reap works on --store",
	} {
		help, _, err := runAlone(name, "-h")
		require.NoError(t, err)
		require.NotContains(t, help, "--server")
		require.NotContains(t, help, "--token-file")
		require.NotContains(t, help, "CORRSTORE_SERVER")
		for _, flag := range []string{"--server", "--token-file"} {
			_, _, err = runAlone(name, flag, "x")
			require.ErrorContains(t, err, name+": "+flag+": "+why)
		}
	}
}

// TestOneJSONDocument: with -o json every command prints exactly one JSON
// document on standard output, also when nothing matches.
func TestOneJSONDocument(t *testing.T) {
	t.Parallel()
	f := newFixture(t, false)
	export := filepath.Join(f.dir, "empty.jsonl")
	_, _, err := f.run("export", "--store", f.storeURL(), "--to", export)
	require.NoError(t, err)
	f.seed()
	srv := []string{"--server", f.srv.URL, "-o", "json"}
	for _, args := range [][]string{
		{"ls", "--state", "timed_out"},        // nothing matches
		{"ls", "--state", "pending", "--all"}, // some match
		{"stats", "-n", "nobody"},             // an empty namespace
		{"redispatch", "--all-matching", "--yes", // nothing dead in team-a
			"-n", "team-a"},
		{"show", "pend-1"},
		{"expire", "pend-1"},
		{"extend", "pend-2", "-n", "team-a", "--by", "1m"},
		{"cancel", "pend-2", "-n", "team-a", "--reason", "r"},
		{"bench", "--duration", "50ms", "--concurrency", "1"},
	} {
		out, _, err := f.run(append(args, srv...)...)
		require.NoError(t, err, "%q", args)
		requireOneDocument(t, out, args)
	}
	f.stopDaemon()
	for _, args := range [][]string{
		{"version"},
		{"reap", "--once", "--store", f.storeURL()},
		{"import", export, "--store", "bolt://" + filepath.Join(f.dir, "other.db")},
	} {
		out, _, err := f.run(append(args, "-o", "json")...)
		require.NoError(t, err, "%q", args)
		requireOneDocument(t, out, args)
	}
}

func requireOneDocument(t *testing.T, out string, args []string) {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(out))
	var v any
	require.NoError(t, dec.Decode(&v), "%q: %s", args, out)
	require.NotNil(t, v, "%q", args)
	_, err := dec.Token()
	require.ErrorIs(t, err, io.EOF, "%q: one document, then nothing: %s", args, out)
}

// TestCompletion: corrstore completion writes each shell's script, and the
// scripts' questions (cobra's __complete) are answered with corrstore's
// commands, flags and values.
func TestCompletion(t *testing.T) {
	t.Parallel()
	for shell, want := range map[string]string{
		"bash": "__start_corrstore",
		"zsh":  "#compdef corrstore",
		"fish": "complete -c corrstore",
	} {
		out, _, err := runAlone("completion", shell)
		require.NoError(t, err, shell)
		require.Contains(t, out, want, shell)
	}
	_, _, err := runAlone("completion", "tcsh")
	require.EqualError(t, err, `completion: "tcsh": want bash, zsh, fish or powershell`)
	for args, want := range map[string][]string{
		"__complete re":             {"redispatch", "reap"},
		"__complete ls --st":        {"--state", "--store"},
		"__complete ls -o ":         {"table", "json"},
		"__complete ls --state ":    {"pending", "completed", "timed_out", "cancelled"},
		"__complete serve --log-f":  {"--log-format"},
		"__complete serve --log-fo": {"--log-format"},
	} {
		out, _, err := runAlone(strings.Split(args, " ")...)
		require.NoError(t, err, args)
		var got []string
		for _, line := range strings.Split(out, "\n") {
			if line != "" && !strings.HasPrefix(line, ":") {
				got = append(got, strings.SplitN(line, "\t", 2)[0])
			}
		}
		require.ElementsMatch(t, want, got, args)
	}
}

// TestJSONIsTheAPIs: ls, show and stats with -o json print the API's own
// documents — the same fields and encodings (bodies and callback data as
// JSON, durations as the API writes them, next_cursor) — from a server
// and from a store alike.
func TestJSONIsTheAPIs(t *testing.T) {
	t.Parallel()
	f := newFixture(t, false)
	f.seed()
	decode := func(s string) any {
		var v any
		require.NoError(t, json.Unmarshal([]byte(s), &v), s)
		return v
	}
	api := func(path string) any {
		code, body := httpCall(t, "GET", f.srv.URL+path, "", "")
		require.Equal(t, 200, code, path)
		return body
	}
	// Stats's ages move between two calls.
	noAges := func(v any) any {
		m := v.(map[string]any)
		delete(m["total"].(map[string]any), "oldest_pending_age")
		for _, ns := range m["namespaces"].(map[string]any) {
			delete(ns.(map[string]any), "oldest_pending_age")
		}
		return m
	}
	for _, tc := range []struct {
		path string
		args []string
		norm func(any) any
	}{
		{"/v1/correlations?namespace=*&limit=50", []string{"ls"}, nil},
		{"/v1/correlations?namespace=*&limit=2", []string{"ls", "--limit", "2"}, nil}, // with next_cursor
		{"/v1/correlations?state=pending&namespace=team-a&limit=50", []string{"ls", "--state", "pending", "-n", "team-a"}, nil},
		{"/v1/correlations/done-1", []string{"show", "done-1"}, nil}, // replies, late, events
		{"/v1/correlations/pend-2?namespace=team-a", []string{"show", "team-a/pend-2"}, nil},
		{"/v1/stats?namespace=*", []string{"stats"}, noAges},
	} {
		want := api(tc.path)
		if tc.norm != nil {
			want = tc.norm(want)
		}
		for _, out := range f.both(append(tc.args, "-o", "json")...) {
			got := decode(out)
			if tc.norm != nil {
				got = tc.norm(got)
			}
			require.Equal(t, want, got, "%q against GET %s", tc.args, tc.path)
		}
	}
	// The reply body is JSON, not base64.
	out := f.both("show", "done-1", "-o", "json")[0]
	require.Contains(t, out, `"paid": true`)
}
