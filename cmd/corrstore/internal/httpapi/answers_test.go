package httpapi

import (
	"context"
	"encoding/base64"
	"net/http"
	"strings"
	"testing"

	"github.com/corrstore/corrstore/store"
)

// The answer to a write and the items of a list carry the correlation
// without reply bodies; GET carries them.
func TestAnswersCarryNoReplyBodies(t *testing.T) {
	e := newEnv(t, envOpts{})
	e.want(e.do("POST", "/v1/correlations", "", obj{"id": "g", "pattern": "gather", "expect": 3, "timeout": "1h"}), http.StatusCreated)
	big := strings.Repeat("x", 100_000)
	var last resp
	for i := range 2 {
		last = e.want(e.do("POST", "/v1/correlations/g/replies", "", obj{"from": string(rune('a' + i)), "body": big}), http.StatusOK)
		if len(last.raw) > 4096 {
			t.Errorf("reply %d answered %d bytes", i, len(last.raw))
		}
	}
	if last.field("correlation.replies") != nil || last.field("correlation.events") != nil ||
		last.field("correlation.reply_count") != float64(2) || last.field("correlation.reply_bytes") != float64(2*(len(big)+2)) {
		t.Errorf("reply answer: %.300s", last.raw)
	}
	l := e.want(e.do("GET", "/v1/correlations", "", nil), http.StatusOK)
	item := l.field("items").([]any)[0].(obj)
	if item["replies"] != nil || item["reply_count"] != float64(2) || len(l.raw) > 4096 {
		t.Errorf("list item: %.300s", l.raw)
	}
	for _, op := range []string{"extend", "cancel"} {
		var body any
		if op == "extend" {
			body = obj{"timeout": "2h"}
		}
		x := e.want(e.do("POST", "/v1/correlations/g/"+op, "", body), http.StatusOK)
		if x.field("replies") != nil || len(x.raw) > 4096 {
			t.Errorf("%s answer: %.300s", op, x.raw)
		}
	}
	late := e.want(e.do("POST", "/v1/correlations/g/replies", "", obj{"from": "c", "body": big}), http.StatusConflict)
	if late.field("correlation.late") != nil || len(late.raw) > 4096 {
		t.Errorf("late answer: %.300s", late.raw)
	}
	g := e.want(e.do("GET", "/v1/correlations/g", "", nil), http.StatusOK)
	if rs := g.field("replies").([]any); len(rs) != 2 || rs[0].(obj)["body"] != big || len(g.field("events").([]any)) == 0 {
		t.Errorf("GET carries the replies: %.300s", g.raw)
	}
}

func TestRecordLimitIs413(t *testing.T) {
	e := newEnv(t, envOpts{limits: store.Limits{MaxBodyBytes: 1000, MaxRecordBytes: 2500}})
	e.want(e.do("POST", "/v1/correlations", "", obj{"id": "g", "pattern": "gather", "expect": 5}), http.StatusCreated)
	body := strings.Repeat("y", 998) // 1000 bytes as a JSON string
	e.want(e.do("POST", "/v1/correlations/g/replies", "", obj{"from": "1", "body": body}), http.StatusOK)
	e.want(e.do("POST", "/v1/correlations/g/replies", "", obj{"from": "2", "body": body}), http.StatusOK)
	r := e.do("POST", "/v1/correlations/g/replies", "", obj{"from": "3", "body": body})
	e.want(r, http.StatusRequestEntityTooLarge)
	if msg := r.str("error.message"); !strings.Contains(msg, "2500") || !strings.Contains(msg, "max_record_bytes") {
		t.Errorf("413 does not name the limit: %s", r.raw)
	}
}

// Bytes are bytes: JSON in UTF-8 shows as body, other bytes as body_base64,
// and either form may be sent.
func TestBodiesAndDataAreBytes(t *testing.T) {
	e := newEnv(t, envOpts{})
	bin := []byte{0xff, 0x00, 'h', 'i'}
	b64 := base64.StdEncoding.EncodeToString(bin)
	e.want(e.do("POST", "/v1/correlations", "", obj{"id": "b", "pattern": "gather", "expect": 3,
		"callback": obj{"handler": "h", "data_base64": b64}}), http.StatusCreated)
	e.want(e.do("POST", "/v1/correlations/b/replies", "", obj{"from": "1", "body_base64": b64}), http.StatusOK)
	// Bytes that are JSON, sent as base64, show as JSON.
	e.want(e.do("POST", "/v1/correlations/b/replies", "", obj{"from": "2", "body_base64": base64.StdEncoding.EncodeToString([]byte(`{"ok":true}`))}), http.StatusOK)
	e.want(e.do("POST", "/v1/correlations/b/replies", "", obj{"from": "3", "body": []int{1, 2}}), http.StatusOK)
	g := e.want(e.do("GET", "/v1/correlations/b", "", nil), http.StatusOK)
	if g.str("callback.data_base64") != b64 || g.field("callback.data") != nil {
		t.Errorf("callback: %s", g.raw)
	}
	rs := g.field("replies").([]any)
	if rs[0].(obj)["body_base64"] != b64 || rs[0].(obj)["body"] != nil {
		t.Errorf("binary reply: %v", rs[0])
	}
	if m, ok := rs[1].(obj)["body"].(obj); !ok || m["ok"] != true {
		t.Errorf("JSON bytes sent as base64: %v", rs[1])
	}
	if _, ok := rs[2].(obj)["body"].([]any); !ok {
		t.Errorf("JSON reply: %v", rs[2])
	}
}

// Bytes survive the round trip exactly: JSON comes back as sent (compact,
// '<' and '&' unescaped); bytes an encoder would change go as base64.
func TestBodiesRoundTripByteForByte(t *testing.T) {
	e := newEnv(t, envOpts{})
	e.want(e.do("POST", "/v1/correlations", "", obj{"id": "rt", "pattern": "gather", "expect": 3}), http.StatusCreated)
	html := `{"html":"<b>&amp;</b>"}`
	e.want(e.do("POST", "/v1/correlations/rt/replies", "", `{"from":"1","body":`+html+`}`), http.StatusOK)
	for from, b := range map[string]string{"2": "null", "3": "{\"a\": 1}\n"} {
		e.want(e.do("POST", "/v1/correlations/rt/replies", "", obj{"from": from,
			"body_base64": base64.StdEncoding.EncodeToString([]byte(b))}), http.StatusOK)
	}
	g := e.want(e.do("GET", "/v1/correlations/rt", "", nil), http.StatusOK)
	if !strings.Contains(string(g.raw), `"body":`+html) {
		t.Errorf("JSON body not sent back as it came: %s", g.raw)
	}
	c, err := e.st.Get(context.Background(), store.RefOf("rt"))
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, r := range c.Replies {
		got[r.From] = string(r.Body)
	}
	if got["1"] != html || got["2"] != "null" || got["3"] != "{\"a\": 1}\n" {
		t.Errorf("stored bodies: %q", got)
	}
	for _, r := range g.field("replies").([]any) {
		m := r.(obj)
		if m["from"] != "1" && m["body_base64"] == nil {
			t.Errorf("bytes an encoder would change are not base64: %v", m)
		}
	}
}
