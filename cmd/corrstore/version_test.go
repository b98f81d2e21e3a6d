package main

import (
	"encoding/json"
	"os/exec"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestVersionOf: what corrstore version makes of the build info of each
// kind of build.
func TestVersionOf(t *testing.T) {
	t.Parallel()
	mod := debug.Module{Path: "github.com/corrstore/corrstore", Version: "v0.0.0-20261204170708-90b3b7a05fe0+dirty"}
	clone := &debug.BuildInfo{GoVersion: "go1.26.8", Main: mod, Settings: []debug.BuildSetting{
		{Key: "-buildmode", Value: "exe"},
		{Key: "vcs", Value: "git"},
		{Key: "vcs.revision", Value: "90b3b7a05fe0f8b0af47ddb4c27d256e74ab74b2"},
		{Key: "vcs.time", Value: "2026-12-04T17:07:08Z"},
		{Key: "vcs.modified", Value: "true"},
	}}
	v := versionOf(clone)
	require.Equal(t, versionInfo{Module: mod.Path, Version: mod.Version, Revision: "90b3b7a05fe0f8b0af47ddb4c27d256e74ab74b2",
		Time: "2026-12-04T17:07:08Z", Dirty: true, Go: "go1.26.8"}, v)
	require.Equal(t, "v0.0.0-20261204170708-90b3b7a05fe0+dirty (revision 90b3b7a05fe0, 2026-12-04T17:07:08Z, dirty) go1.26.8", v.String())

	// go install module@version: a tag, no VCS settings.
	installed := &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Path: mod.Path, Version: "v1.2.0"}}
	require.Equal(t, "v1.2.0 go1.26.8", versionOf(installed).String())
	require.False(t, versionOf(installed).Dirty)

	// A build outside a clone.
	require.Equal(t, "(devel) go1.26.8", versionOf(&debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Path: mod.Path}}).String())
}

// TestVersionOfBinary: the binary the end-to-end tests build reports what
// `go version -m` reads from it, and, when it was built in a git clone,
// the revision that clone has checked out.
func TestVersionOfBinary(t *testing.T) {
	t.Parallel()
	bin, err := binary()
	require.NoError(t, err)
	out, err := exec.Command(bin, "version", "-o", "json").Output()
	require.NoError(t, err)
	var got versionInfo
	require.NoError(t, json.Unmarshal(out, &got))

	meta, err := exec.Command("go", "version", "-m", bin).Output()
	require.NoError(t, err)
	want := versionInfo{Dirty: false}
	for _, line := range strings.Split(string(meta), "\n") {
		f := strings.Split(strings.TrimSpace(line), "\t")
		switch {
		case len(f) >= 3 && f[0] == "mod":
			want.Module, want.Version = f[1], f[2]
		case len(f) == 2 && f[0] == "build":
			k, v, _ := strings.Cut(f[1], "=")
			switch k {
			case "vcs.revision":
				want.Revision = v
			case "vcs.time":
				want.Time = v
			case "vcs.modified":
				want.Dirty = v == "true"
			}
		}
	}
	want.Go = got.Go
	require.Equal(t, want, got)
	require.Equal(t, "github.com/corrstore/corrstore", got.Module)
	require.True(t, strings.HasPrefix(got.Go, "go1."), got.Go)

	text, err := exec.Command(bin, "version").Output()
	require.NoError(t, err)
	require.Equal(t, "corrstore "+got.String()+"\n", string(text))

	if got.Revision == "" {
		t.Log("the binary has no VCS revision: built outside a git clone (a git worktree is not one to the go command)")
		return
	}
	head, err := exec.Command("git", "rev-parse", "HEAD").Output()
	require.NoError(t, err)
	require.Equal(t, strings.TrimSpace(string(head)), got.Revision)
	status, err := exec.Command("git", "status", "--porcelain", "--untracked-files=no").Output()
	require.NoError(t, err)
	if len(status) > 0 {
		require.True(t, got.Dirty, "a changed tracked file makes the build dirty")
	}
}
