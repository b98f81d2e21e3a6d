package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/corrstore/corrstore/cmd/corrstore/internal/wire"
	"github.com/corrstore/corrstore/store"
)

// registration converts a registration; the store validates the rest.
func registration(r *wire.RegisterRequest) (*store.Correlation, error) {
	c := &store.Correlation{
		ID:             r.ID,
		Namespace:      r.Namespace,
		Pattern:        store.Pattern(r.Pattern),
		Expect:         r.Expect,
		Quorum:         r.Quorum,
		Optional:       r.Optional,
		Destination:    r.Destination,
		ReplyTo:        r.ReplyTo,
		Owner:          r.Owner,
		Labels:         r.Labels,
		IdempotencyKey: r.IdempotencyKey,
	}
	var err error
	if c.Timeout, err = parseTimeout("timeout", r.Timeout); err != nil {
		return nil, err
	}
	if c.Deadline, err = parseTime("deadline", r.Deadline); err != nil {
		return nil, err
	}
	if r.Callback != nil {
		if c.Callback, err = r.Callback.ToStore(); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// apiError is an error answer, sent as a wire.ErrorResponse.
type apiError struct {
	Status  int
	Code    string
	Message string
	Field   string
}

func (e *apiError) Error() string { return e.Message }

func errorf(status int, code, field, format string, args ...any) *apiError {
	return &apiError{Status: status, Code: code, Field: field, Message: fmt.Sprintf(format, args...)}
}

func badField(field, format string, args ...any) *apiError {
	return errorf(http.StatusBadRequest, "invalid", field, "%s: %s", field, fmt.Sprintf(format, args...))
}

// parseDuration reads a Go duration ("30s") that is not negative; "" is zero.
func parseDuration(field, s string) (time.Duration, error) {
	if s == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, badField(field, "%q is not a duration like 30s, 5m or 1h30m", s)
	}
	if d < 0 {
		return 0, badField(field, "must not be negative, got %s", s)
	}
	return d, nil
}

// parseTimeout reads a timeout: a positive Go duration; "" is none (zero).
func parseTimeout(field, s string) (time.Duration, error) {
	d, err := parseDuration(field, s)
	if err == nil && s != "" && d <= 0 {
		err = badField(field, "must be positive, got %s", s)
	}
	return d, err
}

// parseTime reads an RFC 3339 time; "" is zero.
func parseTime(field, s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, badField(field, "%q is not an RFC 3339 time like 2006-01-02T15:04:05Z", s)
	}
	return t, nil
}

// decode reads one JSON object from the body into v (a pointer to a
// struct), capped at max bytes. It is stricter than encoding/json: the
// document must be valid UTF-8 throughout, field names must match the json
// tags exactly (encoding/json folds case), no name may repeat, and nothing
// may follow the object. An empty body is allowed only when optional.
func decode(c *call, max int64, v any, optional bool) error {
	body, err := io.ReadAll(http.MaxBytesReader(c.w, c.r.Body, max))
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		return errorf(http.StatusRequestEntityTooLarge, "too_large", "body", "body: larger than the limit of %d bytes", max)
	case err != nil:
		return errorf(http.StatusBadRequest, "bad_json", "body", "body: reading it failed: %v", err)
	case optional && len(bytes.TrimSpace(body)) == 0:
		return nil
	}
	if err := checkDocument(body, reflect.TypeOf(v).Elem()); err != nil {
		return decodeError(err)
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return decodeError(err)
	}
	return nil
}

var errTrailing = errors.New("trailing data")

func decodeError(err error) *apiError {
	var (
		syn  *json.SyntaxError
		typ  *json.UnmarshalTypeError
		aerr *apiError
	)
	switch {
	case errors.As(err, &aerr):
		return aerr
	case errors.Is(err, io.EOF):
		return errorf(http.StatusBadRequest, "bad_json", "body", "body: empty; a JSON object is required")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return errorf(http.StatusBadRequest, "bad_json", "body", "body: JSON ends too early")
	case errors.Is(err, errTrailing):
		return errorf(http.StatusBadRequest, "bad_json", "body", "body: unexpected data after the JSON object")
	case errors.As(err, &syn):
		return errorf(http.StatusBadRequest, "bad_json", "body", "body: invalid JSON at byte %d: %v", syn.Offset, syn)
	case errors.As(err, &typ):
		field := typ.Field
		if field == "" {
			field = "body"
		}
		return errorf(http.StatusBadRequest, "invalid", field, "%s: expected %s, got JSON %s", field, jsonKind(typ.Type.Kind().String()), typ.Value)
	}
	msg := err.Error()
	if f, ok := strings.CutPrefix(msg, "json: unknown field "); ok {
		f = strings.Trim(f, `"`)
		return errorf(http.StatusBadRequest, "unknown_field", f, "%s: unknown field", f)
	}
	return errorf(http.StatusBadRequest, "bad_json", "body", "body: %v", err)
}

func jsonKind(k string) string {
	switch k {
	case "int", "int64", "float64":
		return "a number"
	case "string":
		return "a string"
	case "bool":
		return "true or false"
	case "map", "struct", "ptr":
		return "an object"
	case "slice":
		return "an array"
	}
	return k
}

// checkDocument walks a JSON document against the Go type it decodes into
// (see decode). Values of type json.RawMessage (bodies, callback data) are
// the caller's bytes: only their UTF-8 is checked, not their names.
func checkDocument(doc []byte, t reflect.Type) error {
	w := &walker{dec: json.NewDecoder(bytes.NewReader(doc)), bad: -1}
	if !utf8.Valid(doc) {
		w.bad = int64(firstInvalidUTF8(doc))
	}
	tok, err := w.token("body")
	if err != nil {
		return err
	}
	if tok != json.Delim('{') {
		return errorf(http.StatusBadRequest, "bad_json", "body", "body: a JSON object is required")
	}
	if err := w.object(t, ""); err != nil {
		return err
	}
	if _, err := w.dec.Token(); !errors.Is(err, io.EOF) {
		return errTrailing
	}
	return nil
}

func firstInvalidUTF8(b []byte) int {
	for i := 0; i < len(b); {
		r, n := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && n <= 1 {
			return i
		}
		i += n
	}
	return -1
}

type walker struct {
	dec *json.Decoder
	bad int64 // offset of the first invalid UTF-8 byte, or -1
}

func invalidUTF8(field string) error {
	return badField(field, "is not valid UTF-8 (send bytes that are not UTF-8 text as base64)")
}

// covers reports whether the invalid byte lies in [from, the decoder's offset).
func (w *walker) covers(from int64) bool {
	return w.bad >= from && w.bad < w.dec.InputOffset()
}

// token reads the next token; field names the value it belongs to.
func (w *walker) token(field string) (json.Token, error) {
	from := w.dec.InputOffset()
	tok, err := w.dec.Token()
	if err != nil {
		return nil, err
	}
	if w.covers(from) {
		return nil, invalidUTF8(field)
	}
	return tok, nil
}

var rawMessageType = reflect.TypeFor[json.RawMessage]()

// value checks the next value, which decodes into t at path.
func (w *walker) value(t reflect.Type, path string) error {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == rawMessageType || t.Kind() == reflect.Interface {
		from := w.dec.InputOffset()
		var skip json.RawMessage
		if err := w.dec.Decode(&skip); err != nil {
			return err
		}
		if w.covers(from) {
			return invalidUTF8(path)
		}
		return nil
	}
	tok, err := w.token(path)
	if err != nil {
		return err
	}
	switch tok {
	case json.Delim('{'):
		return w.object(t, path)
	case json.Delim('['):
		elem := t
		if t.Kind() == reflect.Slice || t.Kind() == reflect.Array {
			elem = t.Elem()
		}
		for w.dec.More() {
			if err := w.value(elem, path); err != nil {
				return err
			}
		}
		_, err := w.token(path)
		return err
	}
	return nil // a scalar: json.Unmarshal checks its type
}

// object checks the members of an object (its '{' read) decoding into t.
func (w *walker) object(t reflect.Type, path string) error {
	var fields map[string]reflect.Type
	elem := t
	switch t.Kind() {
	case reflect.Struct:
		fields = jsonFields(t)
	case reflect.Map:
		elem = t.Elem()
	}
	seen := map[string]bool{}
	for w.dec.More() {
		tok, err := w.token(orBody(path))
		if err != nil {
			return err
		}
		key, _ := tok.(string)
		name := join(path, key)
		if seen[key] {
			return badField(printable(name), "given more than once")
		}
		seen[key] = true
		ft := elem
		if fields != nil {
			var ok bool
			if ft, ok = fields[key]; !ok {
				return unknownField(name, path, key, fields)
			}
		}
		if err := w.value(ft, name); err != nil {
			return err
		}
	}
	_, err := w.token(orBody(path))
	return err
}

func unknownField(name, path, key string, fields map[string]reflect.Type) error {
	name = printable(name)
	for f := range fields {
		if strings.EqualFold(f, key) {
			return errorf(http.StatusBadRequest, "unknown_field", name, "%s: unknown field (names are exact: did you mean %q?)", name, join(path, f))
		}
	}
	return errorf(http.StatusBadRequest, "unknown_field", name, "%s: unknown field", name)
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func orBody(path string) string {
	if path == "" {
		return "body"
	}
	return path
}

var fieldCache sync.Map // reflect.Type -> map[string]reflect.Type

// jsonFields maps the exact JSON names of a struct's fields to their types.
func jsonFields(t reflect.Type) map[string]reflect.Type {
	if m, ok := fieldCache.Load(t); ok {
		return m.(map[string]reflect.Type)
	}
	m := map[string]reflect.Type{}
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		switch name {
		case "-":
			continue
		case "":
			name = f.Name
		}
		m[name] = f.Type
	}
	fieldCache.Store(t, m)
	return m
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false) // reply bodies come back byte for byte (wire.jsonOrBase64)
	_ = enc.Encode(v)        // the client went away, or the status line is sent: nothing left to do
}

func writeError(w http.ResponseWriter, e *apiError) {
	writeJSON(w, e.Status, wire.ErrorResponse{Error: wire.Error{Code: e.Code, Message: e.Message, Field: e.Field}})
}
