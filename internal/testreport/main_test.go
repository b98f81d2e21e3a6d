package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestRealGoTest runs go test -json on a small module through testreport:
// the output is what go test prints without -v, the skips come with their
// reasons, and the exit status is go test's.
func TestRealGoTest(t *testing.T) {
	t.Parallel()
	gobin, err := exec.LookPath("go")
	require.NoError(t, err, "go is not on PATH")
	dir := t.TempDir()
	write := func(name, text string) {
		require.NoError(t, os.MkdirAll(filepath.Dir(filepath.Join(dir, name)), 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644))
	}
	write("go.mod", "module example.com/m\n\ngo 1.22\n")
	write("a/a_test.go", `package a

import "testing"

func TestPass(t *testing.T) { t.Log("a passing test's log") }

func TestSkip(t *testing.T) {
	t.Log("said before the skip")
	t.Skip("redis-server is not on PATH:\nsecond line")
}

func TestParent(t *testing.T) {
	t.Run("ok", func(t *testing.T) { t.Log("a passing subtest's log") })
	t.Run("off", func(t *testing.T) { t.Skip("not on this engine") })
}
`)
	write("b/b_test.go", `package b

import "testing"

func TestFail(t *testing.T) {
	t.Run("bad", func(t *testing.T) { t.Error("boom") })
	t.Run("good", func(t *testing.T) {})
}
`)
	write("c/c.go", "package c\n")

	run := func(skipsFile string, pkgs ...string) (string, int) {
		var out bytes.Buffer
		args := append([]string{gobin, "-C", dir, "test", "-json", "-count=1"}, pkgs...)
		status := runTests(&out, "step1", skipsFile, args)
		return out.String(), status
	}

	out, status := run("", "./a/", "./c/")
	require.Equal(t, 0, status, out)
	require.Regexp(t, `(?m)^ok  \texample.com/m/a\t`, out)
	require.Contains(t, out, "?   \texample.com/m/c\t[no test files]")
	require.NotContains(t, out, "=== RUN")
	require.NotContains(t, out, "passing")
	require.NotContains(t, out, "--- SKIP")
	require.True(t, strings.HasSuffix(out, "skipped: 2 tests (go test says why only with -v):\n"+
		"  step1 example.com/m/a TestParent/off: not on this engine\n"+
		"  step1 example.com/m/a TestSkip: redis-server is not on PATH: second line\n"), out)

	skips := filepath.Join(t.TempDir(), "skips.json")
	out, status = run(skips, "./...")
	require.Equal(t, 1, status, out)
	require.Contains(t, out, "b_test.go:6: boom\n--- FAIL: TestFail/bad")
	require.Contains(t, out, "--- FAIL: TestFail (")
	require.Regexp(t, `(?m)^FAIL\texample.com/m/b\t`, out)
	require.NotContains(t, out, "TestFail/good")
	require.NotContains(t, out, "skipped", "with -skips, the list goes to the file")

	got, err := readSkips(skips)
	require.NoError(t, err)
	require.ElementsMatch(t, []skip{
		{Step: "step1", Package: "example.com/m/a", Test: "TestSkip", Reason: "redis-server is not on PATH: second line"},
		{Step: "step1", Package: "example.com/m/a", Test: "TestParent/off", Reason: "not on this engine"},
	}, got)

	var sum bytes.Buffer
	printSkips(&sum, append(got, skip{Step: "step0", Package: "example.com/m/a", Test: "TestSkip", Reason: "another"}), "example.com/m")
	require.Equal(t, "skipped: 3 tests (go test says why only with -v):\n"+
		"  step0 ./a TestSkip: another\n"+
		"  step1 ./a TestParent/off: not on this engine\n"+
		"  step1 ./a TestSkip: redis-server is not on PATH: second line\n", sum.String())
}

// TestUnfinished: a package whose end never came (go test killed, or a
// timeout panic) is printed with what it said, and counts as a failure.
func TestUnfinished(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	r := newReport(&out, "")
	require.NoError(t, r.read(strings.NewReader(`{"Action":"start","Package":"p"}
{"Action":"run","Package":"p","Test":"TestHang"}
{"Action":"output","Package":"p","Test":"TestHang","Output":"=== RUN   TestHang\n"}
{"Action":"output","Package":"p","Test":"TestHang","Output":"panic: test timed out after 1s\n"}
not an event
`)))
	r.finish()
	require.True(t, r.failed)
	require.Equal(t, "not an event\npanic: test timed out after 1s\nFAIL\tp\t(no end: go test stopped)\n", out.String())
}
