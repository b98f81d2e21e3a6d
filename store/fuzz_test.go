package store_test

import (
	"reflect"
	"testing"
	"time"

	"github.com/corrstore/corrstore/store"
)

// FuzzUnmarshalCorrelation feeds arbitrary bytes to the record decoder: it
// must never panic, and whatever it accepts must survive a round trip.
func FuzzUnmarshalCorrelation(f *testing.F) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	lim := store.Limits{}.WithDefaults()
	c, err := store.Prepare(&store.Correlation{ID: "seed", Pattern: store.PatternGather, Expect: 2, Quorum: 1,
		Callback: store.Callback{Handler: "h", Data: []byte("d")}, Labels: map[string]string{"k": "v"}}, now, lim)
	if err != nil {
		f.Fatal(err)
	}
	if _, err := c.ApplyReply(store.Reply{From: "a", Body: []byte("x")}, now, lim); err != nil {
		f.Fatal(err)
	}
	seed, err := store.MarshalCorrelation(c)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(seed)
	f.Add([]byte{})
	f.Add([]byte{1})
	f.Add([]byte{1, '{', '}'})
	f.Add([]byte{2, '{', '}'})
	f.Add(append([]byte{1}, `{"id":"x","namespace":"default","pattern":"single","state":"completed","version":1}`...))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := store.UnmarshalCorrelation(b)
		if err != nil {
			return
		}
		again, err := store.MarshalCorrelation(c)
		if err != nil {
			t.Fatalf("decoded record does not encode: %v", err)
		}
		c2, err := store.UnmarshalCorrelation(again)
		if err != nil {
			t.Fatalf("re-encoded record does not decode: %v", err)
		}
		if !reflect.DeepEqual(normalize(c), normalize(c2)) {
			t.Fatalf("round trip changed the record:\n%+v\n%+v", c, c2)
		}
	})
}

// normalize drops what JSON cannot round-trip exactly (monotonic clock
// readings, time zones, nil versus empty).
func normalize(c *store.Correlation) string {
	b, _ := store.MarshalCorrelation(c)
	return string(b)
}

// FuzzUnmarshalApart feeds arbitrary bytes to the decoders of what backends
// store apart from the record (replies, late replies, timeline events):
// they must never panic, and what they accept must survive a round trip
// (the bytes may differ: a varint can be written longer than needed).
func FuzzUnmarshalApart(f *testing.F) {
	rb, _ := store.MarshalReply(store.Reply{ID: "r", From: "f", Seq: 2, Final: true, Body: []byte{0, 1}, Error: "e",
		ReceivedAt: time.Date(2030, 1, 1, 0, 0, 0, 1, time.UTC)})
	f.Add(rb)
	f.Add(store.MarshalEvent(store.TimelineEvent{At: time.Date(2030, 1, 1, 0, 0, 0, 1, time.UTC), Type: store.EventOutcome, Detail: "d"}))
	f.Add([]byte{2})
	f.Fuzz(func(t *testing.T, b []byte) {
		if r, err := store.UnmarshalReply(b); err == nil {
			again, _ := store.MarshalReply(r)
			if r2, err := store.UnmarshalReply(again); err != nil || !reflect.DeepEqual(r, r2) {
				t.Fatalf("reply %x: round trip gave %+v, %v", b, r2, err)
			}
		}
		if ev, err := store.UnmarshalEvent(b); err == nil {
			if ev2, err := store.UnmarshalEvent(store.MarshalEvent(ev)); err != nil || !reflect.DeepEqual(ev, ev2) {
				t.Fatalf("event %x: round trip gave %+v, %v", b, ev2, err)
			}
		}
	})
}
