// Package testenv reads the environment variables that size the long runs
// of the tests (make crash, make import-100k, make test-redis, …), and
// decides what a test does without a tool it needs.
package testenv

import (
	"os"
	"strconv"
	"testing"
)

// Int is the integer in the environment variable name, def when it is
// unset; a value that is not an integer fails t, naming the variable.
func Int(t testing.TB, name string, def int) int {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		t.Fatalf("%s=%q: not an integer", name, v)
	}
	return n
}

// SkipOrFail skips tb for a reason outside the code, such as a tool that is
// not installed (redis-server, strace), or fails it with the same message
// under CI=true: .ci/run installs every tool the tests need, so there a skip
// would be a test that silently stopped running. make test lists the
// skips it saw at its end (internal/testreport).
func SkipOrFail(tb testing.TB, msg string) {
	tb.Helper()
	if os.Getenv("CI") == "true" {
		tb.Fatal(msg + " — under CI=true this is a failure, not a skip")
		return
	}
	tb.Skip(msg)
}
