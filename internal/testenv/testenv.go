// Package testenv reads the environment variables that size the long runs
// of the tests (make crash, make import-100k, make test-redis, …), decides
// what a test does without a tool it needs, and finds the module's test
// data from any package's tests.
package testenv

import (
	"os"
	"path/filepath"
	"runtime"
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

// ModuleFile is the path of rel, a file named from the module's root
// (bolt/testdata/schema1.db), for a test running in any package's
// directory. It is found from this source file's path, which the test
// binary records (go test without -trimpath).
func ModuleFile(tb testing.TB, rel string) string {
	tb.Helper()
	_, self, _, ok := runtime.Caller(0)
	if !ok {
		tb.Fatalf("testenv: no source path to find %s from", rel)
	}
	return filepath.Join(filepath.Dir(self), "..", "..", filepath.FromSlash(rel))
}
