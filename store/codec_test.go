package store_test

import (
	"encoding/json"
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
	require.True(t, c.ClaimDispatch("inst", t0.Add(4*time.Second), time.Minute, lim))
	_, err := c.NackDispatch(c.Dispatch.Claim(), "boom", t0.Add(time.Hour), t0.Add(5*time.Second), lim)
	require.NoError(t, err)
	return c
}

func TestCodecRoundTrip(t *testing.T) {
	c := fullRecord(t)
	b, err := store.MarshalCorrelation(c)
	require.NoError(t, err)
	require.Equal(t, byte(1), b[0], "version byte")
	got, err := store.UnmarshalCorrelation(b)
	require.NoError(t, err)
	require.Equal(t, c, got)
}

func TestCodecCorrupt(t *testing.T) {
	valid, err := store.MarshalCorrelation(fullRecord(t))
	require.NoError(t, err)
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
		"unknown version":  append([]byte{2}, valid[1:]...),
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
