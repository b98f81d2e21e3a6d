// Package testenv reads the environment variables that size the long runs
// of the tests (make crash, make import-100k, make test-redis, …).
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
