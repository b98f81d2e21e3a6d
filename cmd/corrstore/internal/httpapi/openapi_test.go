package httpapi

import (
	"bufio"
	"os"
	"slices"
	"strings"
	"testing"
)

// TestOpenAPIMatchesRoutes reads docs/openapi.yaml by indentation: the keys
// two spaces in under "paths:" are paths, four spaces in their methods.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	f, err := os.Open("../../../../docs/openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var doc []string
	inPaths, path := false, ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "paths:":
			inPaths = true
		case inPaths && line != "" && !strings.HasPrefix(line, " "):
			inPaths = false
		case inPaths && strings.HasPrefix(line, "  /"):
			path = strings.TrimSuffix(strings.TrimSpace(line), ":")
		case inPaths && len(line) > 4 && line[:4] == "    " && line[4] != ' ':
			key := strings.TrimSuffix(strings.TrimSpace(line), ":")
			switch key {
			case "get", "post", "put", "patch", "delete":
				doc = append(doc, strings.ToUpper(key)+" "+path)
			}
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	var table []string
	for _, rt := range Routes() {
		table = append(table, rt.Pattern())
	}
	slices.Sort(doc)
	slices.Sort(table)
	if !slices.Equal(doc, table) {
		t.Errorf("docs/openapi.yaml and the route table differ:\ndoc:   %q\ntable: %q", doc, table)
	}
}
