package wire

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/corrstore/corrstore/store"
)

// notOnWire are the fields the API does not show, so a round trip loses them.
var notOnWire = map[string]bool{
	"Correlation.Timeout":     true, // an input of Register only
	"Correlation.Fingerprint": true,
	"Correlation.Nonce":       true, // binds reply tokens; never shown
	"Correlation.EventSeq":    true, // where the backend files the next event
	"Correlation.LateSeq":     true, // likewise for the late ring
	"Correlation.LateRing":    true, // describes the ring inside the record
	"Dispatch.LeaseOwner":     true,
	"Dispatch.ClaimedAt":      true,
	"Dispatch.AttemptLimit":   true,
	"Dispatch.Settled":        true,
	"Dispatch.DoneAt":         true,
}

func full() *store.Correlation {
	at := func(sec int) time.Time { return time.Date(2025, 3, 4, 5, 6, sec, 789_000_000, time.UTC) }
	reply := func(id string, seq int, body []byte, sec int) store.Reply {
		return store.Reply{ID: id, From: "svc-" + id, Seq: seq, Final: true, Body: body, Error: "err " + id, ReceivedAt: at(sec)}
	}
	return &store.Correlation{
		ID: "c1", Namespace: "ns", Pattern: store.PatternGather, Expect: 3, Quorum: 2, Optional: true,
		Deadline: at(50), Destination: "dest", ReplyTo: "reply.q", Owner: "owner-1",
		Callback:       store.Callback{Handler: "resume", Data: []byte(`{"order":42,"tags":["a","b"]}`)},
		Labels:         map[string]string{"team": "pay", "env": "prod"},
		IdempotencyKey: "idem-1",
		State:          store.StateCompleted,
		Outcome:        &store.Outcome{State: store.StateCompleted, At: at(40), Reason: "quorum", Partial: true, NoReply: true},
		Replies: []store.Reply{
			reply("r1", 1, []byte(`{"ok":true}`), 10),
			reply("r2", 2, []byte{0xff, 0x00, 0x01, 'x'}, 11),
		},
		Held:           store.ReplyStats{Count: 2, Bytes: 15},
		Late:           []store.Reply{reply("r3", 3, []byte(`"late"`), 45), reply("r4", 4, []byte("not json"), 46)},
		LateCount:      2,
		DuplicateCount: 5,
		Dispatch:       store.Dispatch{State: store.DispatchPending, Attempts: 2, NextAt: at(55), LastError: "handler: timeout"},
		Events: []store.TimelineEvent{
			{At: at(1), Type: store.EventRegistered},
			{At: at(40), Type: store.EventOutcome, Detail: "completed"},
		},
		EventsDropped: 7,
		Version:       9,
		CreatedAt:     at(1),
		UpdatedAt:     at(46),
	}
}

// roundTrip sends c over the wire and back.
func roundTrip(t *testing.T, c *store.Correlation) (*store.Correlation, []byte) {
	t.Helper()
	b, err := json.Marshal(FromStore(c))
	if err != nil {
		t.Fatal(err)
	}
	var j Correlation
	if err := json.Unmarshal(b, &j); err != nil {
		t.Fatal(err)
	}
	return j.ToStore(), b
}

func TestRoundTrip(t *testing.T) {
	// A field added to the store must be set here or listed in notOnWire.
	c := full()
	assertSet(t, "Correlation", reflect.ValueOf(*c))
	assertSet(t, "Dispatch", reflect.ValueOf(c.Dispatch))

	binary := full()
	binary.Callback.Data = []byte{0x00, 0xfe, 'h', 'i'}

	for name, c := range map[string]*store.Correlation{"json callback data": c, "binary callback data": binary} {
		t.Run(name, func(t *testing.T) {
			got, b := roundTrip(t, c)
			if !reflect.DeepEqual(got, c) {
				t.Errorf("round trip differs\n got: %+v\nwant: %+v\njson: %s", got, c, b)
			}
		})
	}

	// Bytes that are JSON travel as JSON, the others as base64.
	_, b := roundTrip(t, binary)
	var m struct {
		Callback map[string]any   `json:"callback"`
		Replies  []map[string]any `json:"replies"`
	}
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	if _, ok := m.Callback["data_base64"]; !ok || m.Callback["data"] != nil {
		t.Errorf("binary callback data: want data_base64 only, got %v", m.Callback)
	}
	if m.Replies[0]["body"] == nil || m.Replies[1]["body_base64"] == nil || m.Replies[1]["body"] != nil {
		t.Errorf("replies: want a JSON body then a base64 one, got %v", m.Replies)
	}
}

func assertSet(t *testing.T, typ string, v reflect.Value) {
	t.Helper()
	for i := range v.NumField() {
		name := typ + "." + v.Type().Field(i).Name
		if v.Field(i).IsZero() && !notOnWire[name] {
			t.Errorf("%s is zero in the fixture and not in notOnWire: set it, or list it if the API does not show it", name)
		}
	}
}

func TestZeroNextAtAndNilOutcomeOmitted(t *testing.T) {
	c := full()
	c.Outcome = nil
	c.Dispatch.NextAt = time.Time{}
	c.State = store.StatePending
	b, err := json.Marshal(FromStore(c))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	if _, ok := m["outcome"]; ok {
		t.Errorf("a nil outcome is sent: %s", b)
	}
	var d map[string]json.RawMessage
	if err := json.Unmarshal(m["dispatch"], &d); err != nil {
		t.Fatal(err)
	}
	if _, ok := d["next_at"]; ok {
		t.Errorf("a zero next_at is sent: %s", m["dispatch"])
	}
	got, _ := roundTrip(t, c)
	if got.Outcome != nil || !got.Dispatch.NextAt.IsZero() {
		t.Errorf("back from the wire: outcome %v, next_at %v; want nil and zero", got.Outcome, got.Dispatch.NextAt)
	}
	if strings.Contains(string(b), "0001-01-01") {
		t.Errorf("a zero time is sent: %s", b)
	}
}

func TestSummaryHasNoBodies(t *testing.T) {
	c := full()
	b, err := json.Marshal(Summary(c))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"replies", "late", "events"} {
		if _, ok := m[k]; ok {
			t.Errorf("a summary has %s: %s", k, b)
		}
	}
	if string(m["reply_count"]) != "2" || string(m["reply_bytes"]) != "15" || string(m["late_count"]) != "2" {
		t.Errorf("summary counts: %s", b)
	}
	var j Correlation
	if err := json.Unmarshal(b, &j); err != nil {
		t.Fatal(err)
	}
	if back := j.ToStore(); !j.IsSummary() || len(back.Replies) != 0 || back.Held != c.Held {
		t.Errorf("a summary read back: summary %v, %d replies, held %+v", j.IsSummary(), len(back.Replies), back.Held)
	}
	// A full record with nothing in its lists shows them empty, not absent.
	empty := full()
	empty.Replies, empty.Late, empty.Events, empty.Held = nil, nil, nil, store.ReplyStats{}
	b, _ = json.Marshal(FromStore(empty))
	for _, k := range []string{`"replies":[]`, `"late":[]`, `"events":[]`, `"reply_count":0`} {
		if !strings.Contains(string(b), k) {
			t.Errorf("full record without %s: %s", k, b)
		}
	}
}

func TestBytesAreJSONOnlyWhenValidUTF8(t *testing.T) {
	for _, c := range []struct {
		in      []byte
		b64     bool
		comment string
	}{
		{[]byte(`{"a":1}`), false, "JSON"},
		{[]byte("\"caf\xe9\""), true, "a JSON string holding invalid UTF-8"},
		{[]byte("not json"), true, "not JSON"},
		{[]byte{0, 1, 2}, true, "binary"},
		{[]byte("null"), true, "the bytes null (JSON null reads as no bytes)"},
		{[]byte("{\"a\": 1}\n"), true, "JSON an encoder would compact"},
		{[]byte(`{"html":"<b>&amp;</b>","ls":" "}`), false, "compact JSON with HTML characters"},
	} {
		raw, b64 := jsonOrBase64(c.in)
		if (b64 != "") != c.b64 || (raw != nil) == c.b64 {
			t.Errorf("%s: raw %q, base64 %q", c.comment, raw, b64)
		}
		req := NewReplyRequest(store.Reply{Body: c.in})
		got, err := req.ToStore()
		if err != nil || string(got.Body) != string(c.in) {
			t.Errorf("%s: reply request round trip: %q, %v", c.comment, got.Body, err)
		}
	}
}

func TestBytesOfRefuses(t *testing.T) {
	for _, c := range []struct {
		raw, b64, field string
	}{
		{`1`, "AQ==", "body"},       // both
		{``, "AQ", "body_base64"},   // no padding
		{``, "AR==", "body_base64"}, // spare bits
		{``, "A Q==", "body_base64"},
		{``, "AQ==\n", "body_base64"},
		{``, "_-8=", "body_base64"}, // URL alphabet
	} {
		_, err := BytesOf("body", json.RawMessage(c.raw), c.b64)
		var fe *store.FieldError
		if !errors.As(err, &fe) || fe.Field != c.field || !errors.Is(err, store.ErrInvalid) {
			t.Errorf("BytesOf(%q, %q) = %v, want a FieldError on %s", c.raw, c.b64, err, c.field)
		}
	}
	if b, err := BytesOf("body", json.RawMessage("null"), ""); err != nil || b != nil {
		t.Errorf("null: %q, %v", b, err)
	}
	if b, err := BytesOf("body", json.RawMessage("{ \"a\" : [1, 2] }"), ""); err != nil || string(b) != `{"a":[1,2]}` {
		t.Errorf("a JSON value's bytes are its compact form: %q, %v", b, err)
	}
	if b, err := BytesOf("body", nil, "AQI="); err != nil || string(b) != "\x01\x02" {
		t.Errorf("base64: %q, %v", b, err)
	}
}
