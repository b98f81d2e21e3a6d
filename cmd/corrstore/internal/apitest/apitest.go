// Package apitest checks HTTP answers against the API document,
// docs/openapi.yaml, so that the document and the server cannot disagree:
// the tests of the API (httpapi) and of the binary (cmd/corrstore) pass every
// answer they receive to Check.
package apitest

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"

	"github.com/corrstore/corrstore/docs"
)

var (
	apiDocOnce   sync.Once
	apiDoc       *openapi3.T
	apiDocRouter routers.Router
	apiDocErr    error
)

// Doc loads and validates docs/openapi.yaml (the embedded copy the
// server serves) once per test binary.
func Doc(t testing.TB) (*openapi3.T, routers.Router) {
	t.Helper()
	apiDocOnce.Do(func() {
		ctx := context.Background()
		doc, err := openapi3.NewLoader().LoadFromData(docs.OpenAPI)
		if err != nil {
			apiDocErr = err
			return
		}
		if err := doc.Validate(ctx); err != nil {
			apiDocErr = err
			return
		}
		// The router matches paths only; the servers entry would tie it to
		// one host.
		doc.Servers = nil
		// An answer may carry no property its schema does not list: a
		// field the server adds must be documented.
		closeObjects(doc)
		r, err := gorillamux.NewRouter(doc)
		apiDoc, apiDocRouter, apiDocErr = doc, r, err
	})
	if apiDocErr != nil {
		t.Fatalf("docs/openapi.yaml: %v", apiDocErr)
	}
	return apiDoc, apiDocRouter
}

// closeObjects makes every object schema that lists properties and says
// nothing of others refuse others (additionalProperties: false), for the
// response checks only: the document itself leaves them open.
func closeObjects(doc *openapi3.T) {
	seen := map[*openapi3.Schema]bool{}
	var walk func(ref *openapi3.SchemaRef)
	walk = func(ref *openapi3.SchemaRef) {
		if ref == nil || ref.Value == nil || seen[ref.Value] {
			return
		}
		s := ref.Value
		seen[s] = true
		if len(s.Properties) > 0 && s.AdditionalProperties.Has == nil && s.AdditionalProperties.Schema == nil {
			no := false
			s.AdditionalProperties.Has = &no
		}
		for _, p := range s.Properties {
			walk(p)
		}
		walk(s.Items)
		walk(s.AdditionalProperties.Schema)
		for _, l := range []openapi3.SchemaRefs{s.AllOf, s.AnyOf, s.OneOf} {
			for _, x := range l {
				walk(x)
			}
		}
	}
	for _, ref := range doc.Components.Schemas {
		walk(ref)
	}
	for _, item := range doc.Paths.Map() {
		for _, op := range item.Operations() {
			for _, r := range op.Responses.Map() {
				if r.Value == nil {
					continue
				}
				for _, mt := range r.Value.Content {
					walk(mt.Schema)
				}
			}
		}
	}
}

// Check validates one answer against docs/openapi.yaml: the route is
// one of the document's, the status is documented for it, and the headers
// and body match the schema given for that status and content type.
// Answers to paths no route takes (404 no_route, 405) are checked as error
// documents.
func Check(t testing.TB, req *http.Request, res *http.Response, body []byte) {
	t.Helper()
	doc, router := Doc(t)
	route, params, err := router.FindRoute(req)
	if err != nil {
		if res.StatusCode == http.StatusNotFound || res.StatusCode == http.StatusMethodNotAllowed {
			checkErrorDoc(t, doc, req, res, body)
			return
		}
		t.Errorf("openapi: %s %s answered %d: no route in docs/openapi.yaml: %v", req.Method, req.URL.Path, res.StatusCode, err)
		return
	}
	in := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{
			Request: req, PathParams: params, Route: route,
			Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc},
		},
		Status: res.StatusCode,
		Header: res.Header,
		Body:   io.NopCloser(bytes.NewReader(body)),
		Options: &openapi3filter.Options{
			IncludeResponseStatus: true,
			MultiError:            true,
		},
	}
	if err := openapi3filter.ValidateResponse(req.Context(), in); err != nil {
		t.Errorf("openapi: %s %s answered %d, which docs/openapi.yaml does not describe: %v\nbody: %s",
			req.Method, req.URL.Path, res.StatusCode, err, clip(body))
		return
	}
	if res.StatusCode/100 == 2 {
		checkAccepted(t, req, route, params)
	}
	// ValidateResponse checks the headers the document lists; these the
	// server sends must be listed too.
	described := route.Operation.Responses.Status(res.StatusCode)
	if described == nil || described.Value == nil {
		return
	}
	for _, h := range checkedHeaders {
		if res.Header.Get(h) != "" && described.Value.Headers[h] == nil {
			t.Errorf("openapi: %s %s answered %d with a %s header, which docs/openapi.yaml does not list for it",
				req.Method, req.URL.Path, res.StatusCode, h)
		}
	}
}

// checkAccepted checks a request the server accepted (2xx) against the
// document: its parameters and body, so that the document refuses nothing
// the server takes. The body is read again through req.GetBody (set by
// http.NewRequest for in-memory bodies); without it only the parameters
// are checked. The server reads JSON whatever the Content-Type: a request
// without one is checked as application/json.
func checkAccepted(t testing.TB, req *http.Request, route *routers.Route, params map[string]string) {
	t.Helper()
	r := req.Clone(context.Background())
	opts := &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc, MultiError: true}
	if req.GetBody != nil {
		b, err := req.GetBody()
		if err != nil {
			t.Errorf("openapi: %s %s: the request body cannot be read again: %v", req.Method, req.URL.Path, err)
			return
		}
		r.Body = b
	} else {
		r.Body = http.NoBody
		opts.ExcludeRequestBody = true
	}
	if r.Header.Get("Content-Type") == "" {
		r.Header.Set("Content-Type", "application/json")
	}
	in := &openapi3filter.RequestValidationInput{Request: r, PathParams: params, Route: route, Options: opts}
	if err := openapi3filter.ValidateRequest(context.Background(), in); err != nil {
		t.Errorf("openapi: the server accepted %s %s, which docs/openapi.yaml refuses: %v", req.Method, req.URL.String(), err)
	}
}

// checkedHeaders are the response headers the server sets that a client
// acts on; the document lists each where it is sent.
var checkedHeaders = []string{"ETag", "Location", "Retry-After", "WWW-Authenticate"}

// checkErrorDoc checks an answer outside every route against the Error
// schema.
func checkErrorDoc(t testing.TB, doc *openapi3.T, req *http.Request, res *http.Response, body []byte) {
	t.Helper()
	if ct := res.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("openapi: %s %s answered %d with Content-Type %q, not an error document", req.Method, req.URL.Path, res.StatusCode, ct)
		return
	}
	v, err := decodeJSON(body)
	if err == nil {
		err = doc.Components.Schemas["Error"].Value.VisitJSON(v)
	}
	if err != nil {
		t.Errorf("openapi: %s %s answered %d, not an Error document: %v\nbody: %s", req.Method, req.URL.Path, res.StatusCode, err, clip(body))
	}
}

func decodeJSON(b []byte) (any, error) {
	var v any
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	if err := d.Decode(&v); err != nil {
		return nil, err
	}
	return jsonNumbers(v), nil
}

// jsonNumbers turns json.Numbers into float64, which VisitJSON takes.
func jsonNumbers(v any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			x[k] = jsonNumbers(e)
		}
	case []any:
		for i, e := range x {
			x[i] = jsonNumbers(e)
		}
	case json.Number:
		f, _ := x.Float64()
		return f
	}
	return v
}

func clip(b []byte) []byte {
	if len(b) > 2000 {
		return append(b[:2000:2000], "…"...)
	}
	return b
}
