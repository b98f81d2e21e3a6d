package store_test

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/corrstore/corrstore/store"
)

// fullRecord returns a record with every field set.
func fullRecord(t *testing.T) *store.Correlation {
	t.Helper()
	c := prepared(t, &store.Correlation{ID: "full", Namespace: "ns", Pattern: store.PatternGather, Expect: 2, Quorum: 1,
		Optional: true, Destination: "d", ReplyTo: "r", Owner: "o", IdempotencyKey: "k",
		Callback: store.Callback{Handler: "h", Data: []byte{0, 1, 2}}, Labels: map[string]string{"a": "b"}})
	apply(t, c, store.Reply{From: "a", Body: []byte("x"), Error: "e"}, t0.Add(time.Second), lim)
	apply(t, c, store.Reply{From: "b", ID: "rid", Seq: 0}, t0.Add(2*time.Second), lim)
	apply(t, c, store.Reply{From: "c"}, t0.Add(3*time.Second), lim)
	apply(t, c, store.Reply{From: "a"}, t0.Add(3*time.Second), lim)
	require.True(t, c.ApplyClaim("inst", t0.Add(4*time.Second), time.Minute, lim))
	_, err := c.ApplyNack(c.Dispatch.Claim(), "boom", t0.Add(time.Hour), t0.Add(5*time.Second), lim)
	require.NoError(t, err)
	return c
}

func TestCodecRoundTrip(t *testing.T) {
	c := fullRecord(t)
	b, err := store.MarshalCorrelation(c)
	require.NoError(t, err)
	require.Equal(t, byte(2), b[0], "version byte: binary")
	got, err := store.UnmarshalCorrelation(b)
	require.NoError(t, err)
	require.Equal(t, c, got)

	// A record written before schema 3 (JSON) still reads the same.
	legacy, err := json.Marshal(c)
	require.NoError(t, err)
	got, err = store.UnmarshalCorrelation(append([]byte{1}, legacy...))
	require.NoError(t, err)
	require.Equal(t, c, got)
	require.Less(t, len(b), len(legacy)/2, "binary %d bytes, JSON %d", len(b), len(legacy))
}

// everyField is a record with every field set to a value other than its
// zero, so that a field the binary encoding forgets fails the round trip.
func everyField() *store.Correlation {
	at := func(s int) time.Time { return time.Date(2030, 1, 2, 3, 4, s, 5, time.UTC) }
	r := func(id string) store.Reply {
		return store.Reply{ID: id, From: "f" + id, Seq: 3, Final: true, Body: []byte{0, 'b', 0xff}, Error: "e", ReceivedAt: at(9)}
	}
	return &store.Correlation{
		ID: "id", Namespace: "ns", Pattern: store.PatternStream, Expect: 4, Quorum: 2, Optional: true,
		Timeout: time.Minute, Deadline: at(1), Destination: "dest", ReplyTo: "rt", Owner: "own",
		Callback: store.Callback{Handler: "h", Data: []byte{1, 2}}, Labels: map[string]string{"b": "2", "a": "1"},
		IdempotencyKey: "ik", State: store.StateCancelled,
		Outcome: &store.Outcome{State: store.StateCancelled, At: at(2), Reason: "why", Partial: true, NoReply: true},
		Held:    store.ReplyStats{Count: 7, Bytes: 70, MaxSeq: 5, Final: true, FinalSeq: 5},
		Replies: []store.Reply{r("r1"), r("r2")}, Late: []store.Reply{r("l1")},
		LateRing: []store.LateEntry{{Bytes: 3, Keys: []string{"sum:x", "key:y"}}}, LateSeq: 4,
		LateCount: 5, DuplicateCount: 6,
		Dispatch: store.Dispatch{State: store.DispatchDead, Attempts: 3, NextAt: at(3), LeaseOwner: "inst", ClaimedAt: at(4),
			AttemptLimit: 10, Settled: 3, LastError: "boom", DoneAt: at(5)},
		Events:        []store.TimelineEvent{{At: at(6), Type: store.EventOutcome, Detail: "d"}},
		EventsDropped: 8, EventSeq: 9, Fingerprint: "fp", Nonce: "nonce", Version: 11, CreatedAt: at(7), UpdatedAt: at(8),
	}
}

// requireSet fails on any field of v (a struct, recursively) left at its
// zero value.
func requireSet(t *testing.T, path string, v reflect.Value) {
	t.Helper()
	if v.Kind() == reflect.Pointer {
		require.False(t, v.IsNil(), path)
		v = v.Elem()
	}
	if v.Kind() != reflect.Struct || v.Type() == reflect.TypeFor[time.Time]() {
		require.False(t, v.IsZero(), "%s is zero in everyField: set it, so the codecs are tested on it", path)
		return
	}
	for i := range v.NumField() {
		f := v.Type().Field(i)
		if !f.IsExported() || f.Name == "Nonce" && v.Type() == reflect.TypeFor[store.Reply]() {
			continue // Reply.Nonce is never stored
		}
		requireSet(t, path+"."+f.Name, v.Field(i))
	}
}

func TestBinaryEveryField(t *testing.T) {
	c := everyField()
	requireSet(t, "Correlation", reflect.ValueOf(*c))
	requireSet(t, "Reply", reflect.ValueOf(c.Replies[0]))
	b, err := store.MarshalCorrelation(c)
	require.NoError(t, err)
	got, err := store.UnmarshalCorrelation(b)
	require.NoError(t, err)
	require.Equal(t, c, got)
	again, err := store.MarshalCorrelation(got)
	require.NoError(t, err)
	require.Equal(t, b, again, "one encoding per record (labels sorted)")
	// Every strict prefix is refused, and so is a trailing byte.
	for n := range len(b) {
		_, err := store.UnmarshalCorrelation(b[:n])
		require.ErrorIs(t, err, store.ErrCorrupt, "prefix of %d bytes", n)
	}
	_, err = store.UnmarshalCorrelation(append(b, 0))
	require.ErrorIs(t, err, store.ErrCorrupt)

	rb, err := store.MarshalReply(c.Replies[0])
	require.NoError(t, err)
	r, err := store.UnmarshalReply(rb)
	require.NoError(t, err)
	require.Equal(t, c.Replies[0], r)
	ev, err := store.UnmarshalEvent(store.MarshalEvent(c.Events[0]))
	require.NoError(t, err)
	require.Equal(t, c.Events[0], ev)
}

func TestCodecCorrupt(t *testing.T) {
	valid, err := json.Marshal(fullRecord(t)) // JSON, as schema 2 wrote records
	require.NoError(t, err)
	valid = append([]byte{1}, valid...)
	mutate := func(f func(m map[string]any)) []byte {
		var m map[string]any
		require.NoError(t, json.Unmarshal(valid[1:], &m))
		f(m)
		b, err := json.Marshal(m)
		require.NoError(t, err)
		return append([]byte{1}, b...)
	}
	for name, b := range map[string][]byte{
		"empty":            nil,
		"unknown version":  append([]byte{3}, valid[1:]...),
		"json as binary":   append([]byte{2}, valid[1:]...),
		"not json":         []byte("\x01{not json"),
		"truncated":        valid[:len(valid)/2],
		"bad id":           mutate(func(m map[string]any) { m["id"] = "a b" }),
		"bad namespace":    mutate(func(m map[string]any) { m["namespace"] = "NS" }),
		"bad pattern":      mutate(func(m map[string]any) { m["pattern"] = "fanout" }),
		"bad state":        mutate(func(m map[string]any) { m["state"] = "done" }),
		"pending outcome":  mutate(func(m map[string]any) { m["state"] = "pending" }),
		"outcome mismatch": mutate(func(m map[string]any) { m["state"] = "cancelled" }),
		"no outcome":       mutate(func(m map[string]any) { delete(m, "outcome") }),
		"bad dispatch":     mutate(func(m map[string]any) { m["dispatch"].(map[string]any)["state"] = "lost" }),
		"no deadline":      mutate(func(m map[string]any) { delete(m, "deadline") }),
		"no created_at":    mutate(func(m map[string]any) { delete(m, "created_at") }),
		"version 0":        mutate(func(m map[string]any) { m["version"] = 0 }),
		"wrong type":       mutate(func(m map[string]any) { m["version"] = "one" }),
	} {
		c, err := store.UnmarshalCorrelation(b)
		require.ErrorIs(t, err, store.ErrCorrupt, name)
		require.Nil(t, c, name)
	}
}

func TestCodecEarly(t *testing.T) {
	e := store.EarlyReply{CorrelationID: "x", Reply: store.Reply{ID: "r", Body: []byte("b"), ReceivedAt: t0}}
	b, err := store.MarshalEarly(e)
	require.NoError(t, err)
	got, err := store.UnmarshalEarly(b)
	require.NoError(t, err)
	require.Equal(t, e, got)

	bad, err := store.MarshalEarly(store.EarlyReply{CorrelationID: "a b"})
	require.NoError(t, err)
	for name, b := range map[string][]byte{"empty": nil, "version": {9, '{', '}'}, "json": []byte("\x01["), "id": bad} {
		_, err := store.UnmarshalEarly(b)
		require.ErrorIs(t, err, store.ErrCorrupt, name)
	}
}
