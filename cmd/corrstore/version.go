package main

import (
	"fmt"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// versionInfo is what corrstore version reports, from the build info the
// go command writes into every binary: the module's version (a tag, or a
// pseudo-version of the commit, with go install module@version and with
// go build in a clone), the VCS revision and whether the tree had
// uncommitted changes (go build and make build in a git clone).
type versionInfo struct {
	Module   string `json:"module"`
	Version  string `json:"version"`
	Revision string `json:"revision,omitempty"`
	Time     string `json:"time,omitempty"`
	Dirty    bool   `json:"dirty"`
	Go       string `json:"go"`
}

// readBuildInfo is debug.ReadBuildInfo; tests replace it.
var readBuildInfo = debug.ReadBuildInfo

func buildVersion() versionInfo {
	bi, ok := readBuildInfo()
	if !ok {
		return versionInfo{Version: "unknown"}
	}
	return versionOf(bi)
}

func versionOf(bi *debug.BuildInfo) versionInfo {
	v := versionInfo{Module: bi.Main.Path, Version: bi.Main.Version, Go: bi.GoVersion}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			v.Revision = s.Value
		case "vcs.time":
			v.Time = s.Value
		case "vcs.modified":
			v.Dirty = s.Value == "true"
		}
	}
	if v.Version == "" {
		v.Version = "(devel)"
	}
	return v
}

// String is the one line of corrstore version: "v1.2.0 (revision 1a2b3c4d5e6f,
// 2026-12-04T17:07:08Z, dirty) go1.26.8".
func (v versionInfo) String() string {
	s := v.Version
	if v.Revision != "" {
		s += " (revision " + v.Revision[:min(12, len(v.Revision))]
		if v.Time != "" {
			s += ", " + v.Time
		}
		if v.Dirty {
			s += ", dirty"
		}
		s += ")"
	}
	if v.Go != "" {
		s += " " + v.Go
	}
	return s
}

func newVersionCmd(e *env) *cobra.Command {
	var c conn
	cmd := newCommand("version", "print the version, VCS revision and build of this binary", `Prints the module version, the VCS revision it was built from (with its commit
time, and "dirty" when the tree had uncommitted changes) and the Go version,
from the build info the go command writes into the binary. A binary built
outside a git clone has no revision.`)
	c.outputFlag(cmd)
	cmd.Args = noArgs
	cmd.RunE = func(*cobra.Command, []string) error {
		v := buildVersion()
		if c.json() {
			return writeJSON(e.stdout, v)
		}
		_, err := fmt.Fprintln(e.stdout, "corrstore", v)
		return err
	}
	return cmd
}
