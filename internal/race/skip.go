package race

import "testing"

// SkipTest skips t in a build with -race, saying why: for tests that run
// only without it (make test's second step, make test-redis).
func SkipTest(t testing.TB, why string) {
	t.Helper()
	if Enabled {
		t.Skip(why)
	}
}
