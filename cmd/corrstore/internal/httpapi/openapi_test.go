package httpapi

import (
	"bytes"
	"context"
	"io"
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

// Every route answers a query parameter it does not take with a 400 naming
// it, which the document gives every route (doAuth checks it).
func TestEveryRouteRefusesUnknownQueries(t *testing.T) {
	e := newEnv(t, envOpts{auth: true})
	e.want(e.do("POST", "/v1/correlations", adminToken, obj{"id": "x"}), http.StatusCreated)
	for _, rt := range Routes() {
		e.wantError(e.do(rt.Method, pathOf(rt, "x", "bogus")+"?zz=1", adminToken, obj{}), http.StatusBadRequest, "zz")
	}
}

// GET /v1/correlations/{id} answers 304 to a matching If-None-Match.
func TestNotModifiedIsDocumented(t *testing.T) {
	e := newEnv(t, envOpts{})
	r := e.want(e.do("POST", "/v1/correlations", "", obj{"id": "x"}), http.StatusCreated)
	req, err := http.NewRequest("GET", e.srv.URL+"/v1/correlations/x", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("If-None-Match", r.header.Get("ETag"))
	res, err := e.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	if res.StatusCode != http.StatusNotModified {
		t.Fatalf("status %d, want 304: %s", res.StatusCode, raw)
	}
	apitest.Check(t, req, res, raw)
}
