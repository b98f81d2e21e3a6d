// Package docs holds the API document, docs/openapi.yaml, the one source that
// corrstore serve answers at GET /openapi.yaml and that the tests check every
// response against.
package docs

import _ "embed"

// OpenAPI is docs/openapi.yaml.
//
//go:embed openapi.yaml
var OpenAPI []byte
