package httpapi

import (
	"bytes"
	"context"
	"net/http"
	"os"
	"slices"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/corrstore/corrstore/cmd/corrstore/internal/apitest"
)

// TestOpenAPIValid loads docs/openapi.yaml from the file with kin-openapi and
// validates it.
func TestOpenAPIValid(t *testing.T) {
	doc, err := openapi3.NewLoader().LoadFromFile("../../../../docs/openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatal(err)
	}
	apitest.Doc(t)
}

// TestOpenAPIMatchesRoutes: the document's operations are the route table's.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	doc, _ := apitest.Doc(t)
	var inDoc []string
	for path, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			inDoc = append(inDoc, method+" "+path)
		}
	}
	var table []string
	for _, rt := range Routes() {
		table = append(table, rt.Pattern())
	}
	slices.Sort(inDoc)
	slices.Sort(table)
	if !slices.Equal(inDoc, table) {
		t.Errorf("docs/openapi.yaml and the route table differ:\ndoc:   %q\ntable: %q", inDoc, table)
	}
}

// GET /openapi.yaml serves docs/openapi.yaml byte for byte, without a token
// when the server has a token file.
func TestServesOpenAPI(t *testing.T) {
	e := newEnv(t, envOpts{auth: true})
	r := e.want(e.do("GET", "/openapi.yaml", "", nil), http.StatusOK)
	if ct := r.header.Get("Content-Type"); ct != "application/yaml" {
		t.Errorf("Content-Type %q", ct)
	}
	file, err := os.ReadFile("../../../../docs/openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(r.raw, file) {
		t.Error("GET /openapi.yaml is not docs/openapi.yaml")
	}
	if _, err := openapi3.NewLoader().LoadFromData(r.raw); err != nil {
		t.Error(err)
	}
}

// The routes without query parameters answer one they do not take with the
// 400 the document gives them.
func TestNoParamRoutesRefuseQueries(t *testing.T) {
	e := newEnv(t, envOpts{})
	for _, path := range []string{"/healthz", "/readyz", "/openapi.yaml"} {
		e.wantError(e.do("GET", path+"?x=1", "", nil), http.StatusBadRequest, "x")
	}
}
