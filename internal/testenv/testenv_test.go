package testenv

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// fakeTB records what SkipOrFail asks of its test.
type fakeTB struct {
	testing.TB
	fatal, skip string
}

func (f *fakeTB) Helper()           {}
func (f *fakeTB) Fatal(args ...any) { f.fatal = args[0].(string) }
func (f *fakeTB) Skip(args ...any)  { f.skip = args[0].(string) }

// TestSkipOrFail: a skip for a missing tool fails the test under CI=true
// (.ci/run installs every tool), and is a skip elsewhere.
func TestSkipOrFail(t *testing.T) {
	t.Setenv("CI", "true")
	var tb fakeTB
	SkipOrFail(&tb, "redis-server is not on PATH")
	require.Equal(t, fakeTB{fatal: "redis-server is not on PATH — under CI=true this is a failure, not a skip"}, tb)

	t.Setenv("CI", "")
	tb = fakeTB{}
	SkipOrFail(&tb, "redis-server is not on PATH")
	require.Equal(t, fakeTB{skip: "redis-server is not on PATH"}, tb)
}

// TestModuleFile finds a file by its path from the module's root.
func TestModuleFile(t *testing.T) {
	require.FileExists(t, ModuleFile(t, "internal/testenv/testenv.go"))
	require.FileExists(t, ModuleFile(t, "go.mod"))
}
