package docs

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestArchitectureListsEveryPackage: the package list of ARCHITECTURE.md
// names every directory of the module that holds Go code, and nothing
// that is gone.
func TestArchitectureListsEveryPackage(t *testing.T) {
	doc, err := os.ReadFile("ARCHITECTURE.md")
	if err != nil {
		t.Fatal(err)
	}
	_, block, _ := strings.Cut(string(doc), "## Packages\n\n```\n")
	block, _, _ = strings.Cut(block, "```")
	// "store/storetest/  …" at the start of a line, or "  internal/httpapi/  …"
	// under cmd/corrstore/.
	lineRE := regexp.MustCompile(`(?m)^( *)(\S+)/ `)
	var listed []string
	parent := ""
	for _, m := range lineRE.FindAllStringSubmatch(block, -1) {
		if m[1] == "" {
			parent = m[2]
			listed = append(listed, m[2])
		} else {
			listed = append(listed, parent+"/"+m[2])
		}
	}

	var found []string
	err = filepath.WalkDir("..", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		if d.IsDir() && path != ".." && (strings.HasPrefix(name, ".") || name == "testdata" || name == "node_modules") {
			return filepath.SkipDir
		}
		if !d.IsDir() && strings.HasSuffix(name, ".go") {
			dir := filepath.ToSlash(filepath.Dir(strings.TrimPrefix(path, "../")))
			if !slices.Contains(found, dir) && dir != "." {
				found = append(found, dir)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(found)
	slices.Sort(listed)
	for _, d := range found {
		if !slices.Contains(listed, d) {
			t.Errorf("ARCHITECTURE.md's package list does not name %s/", d)
		}
	}
	for _, d := range listed {
		if !slices.Contains(found, d) {
			t.Errorf("ARCHITECTURE.md's package list names %s/, which holds no Go code", d)
		}
	}
}
