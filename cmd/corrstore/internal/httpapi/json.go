package httpapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

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
	if c.Timeout, err = parseDuration("timeout", r.Timeout); err != nil {
		return nil, err
	}
	if c.Deadline, err = parseTime("deadline", r.Deadline); err != nil {
		return nil, err
	}
	if r.Callback != nil {
		c.Callback = r.Callback.ToStore()
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

// parseDuration reads a Go duration ("30s"); "" is zero.
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

// decode reads one JSON object from the body into v, capped at max bytes,
// refusing unknown fields and trailing data. An empty body is allowed only
// when optional.
func decode(w http.ResponseWriter, r *http.Request, max int64, v any, optional bool) error {
	body := http.MaxBytesReader(w, r.Body, max)
	dec := json.NewDecoder(body)
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if errors.Is(err, io.EOF) && optional {
		return nil
	}
	if err == nil {
		if _, terr := dec.Token(); !errors.Is(terr, io.EOF) {
			err = errTrailing
			var mbe *http.MaxBytesError
			if errors.As(terr, &mbe) {
				err = terr
			}
		}
	}
	if err == nil {
		return nil
	}
	return decodeError(err, max)
}

var errTrailing = errors.New("trailing data")

func decodeError(err error, max int64) *apiError {
	var (
		mbe  *http.MaxBytesError
		syn  *json.SyntaxError
		typ  *json.UnmarshalTypeError
		aerr *apiError
	)
	switch {
	case errors.As(err, &aerr):
		return aerr
	case errors.As(err, &mbe):
		return errorf(http.StatusRequestEntityTooLarge, "too_large", "body", "body: larger than the limit of %d bytes", max)
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

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	_ = enc.Encode(v) // the client went away, or the status line is sent: nothing left to do
}

func writeError(w http.ResponseWriter, e *apiError) {
	writeJSON(w, e.Status, wire.ErrorResponse{Error: wire.Error{Code: e.Code, Message: e.Message, Field: e.Field}})
}
