package redisstore

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/corrstore/corrstore/store"
)

// maxAttempts bounds how often a pass (ExpireDue, ClaimDispatch, Purge)
// reads a record again after another writer changed it between its read and
// its compare-and-set: what it leaves is due again at the next pass. Single
// operations (Deliver, Extend, …) retry until their ctx ends instead.
const maxAttempts = 64

// newToken names one write, so that the same script sent again by go-redis
// (a retry after a lost answer) recognises that it is already in.
func newToken() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// loaded is a record as read: the header is what the update script compares.
type loaded struct {
	key    string // the ref string
	c      *store.Correlation
	header string
}

// decodeValue reads a stored value: header ‖ record. key is the ref string
// it was stored under; a record naming another ref is corrupt.
func decodeValue(key, v string) (*store.Correlation, error) {
	if _, ok := parseHeader(v); !ok {
		return nil, &store.CorruptError{ID: key, Err: fmt.Errorf("%w: value has no record header", store.ErrCorrupt)}
	}
	c, err := store.UnmarshalCorrelation([]byte(v[headerLen:]))
	if err != nil {
		return nil, &store.CorruptError{ID: key, Err: err}
	}
	if got := c.Ref().String(); got != key {
		return nil, &store.CorruptError{ID: key, Err: fmt.Errorf("%w: record holds %q", store.ErrCorrupt, got)}
	}
	return c, nil
}

// load reads a record: store.ErrNotFound, or a *store.CorruptError.
func (s *Store) load(ctx context.Context, ref store.Ref) (*loaded, error) {
	l, _, err := s.loadHeld(ctx, ref, nil)
	return l, err
}

// loadHeld reads a record and, in the same round trip, which of keys (see
// store.ReplyKeys) its replies stored apart are known under.
func (s *Store) loadHeld(ctx context.Context, ref store.Ref, keys []string) (*loaded, map[string]bool, error) {
	key := ref.String()
	sh := s.keys.shard(key)
	pipe := s.rdb.Pipeline()
	get := pipe.Get(ctx, s.keys.record(sh, key))
	q := pipe.HExists(ctx, s.keys.quarantine(sh), key)
	var hm *redis.SliceCmd
	if len(keys) > 0 {
		fields := make([]string, len(keys))
		for i, k := range keys {
			fields[i] = "k:" + k
		}
		hm = pipe.HMGet(ctx, s.keys.replies(sh, key), fields...)
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, nil, s.redisErr("read "+key, err)
	}
	held := map[string]bool{}
	if hm != nil {
		for i, v := range hm.Val() {
			if v != nil {
				held[keys[i]] = true
			}
		}
	}
	l, err := s.decodeGot(ref, sh, get, q)
	return l, held, err
}

func (s *Store) decodeGot(ref store.Ref, sh int, get *redis.StringCmd, q *redis.BoolCmd) (*loaded, error) {
	key := ref.String()
	v, err := get.Result()
	if errors.Is(err, redis.Nil) {
		if q.Val() {
			return nil, &store.CorruptError{ID: key, Err: fmt.Errorf("%w: record was set aside as undecodable (see %s)", store.ErrCorrupt, s.keys.quarantine(sh))}
		}
		return nil, store.NotFound(ref)
	}
	return s.decodeLoaded(key, v)
}

// attach gives each correlation the replies and the timeline stored apart
// for it, as Get returns them: one round trip for all, none when nothing is
// apart (store.Correlation.Apart).
func (s *Store) attach(ctx context.Context, cs ...*store.Correlation) error {
	pipe := s.rdb.Pipeline()
	cmds := make([][3]*redis.MapStringStringCmd, len(cs)) // replies, timeline, late
	for i, c := range cs {
		if c == nil {
			continue
		}
		key := c.Ref().String()
		sh := s.keys.shard(key)
		for j, k := range apartKeys(s.keys, sh, key, c) {
			if k != "" {
				cmds[i][j] = pipe.HGetAll(ctx, k)
			}
		}
	}
	if pipe.Len() == 0 {
		return nil
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return s.redisErr("read replies", err)
	}
	for i, c := range cs {
		if c == nil {
			continue
		}
		rs, err := decodeIndexed(c, fields(cmds[i][0]), "i:", 0, c.Held.Count, store.UnmarshalReply)
		if err != nil {
			return err
		}
		c.AttachReplies(rs)
		// A schema-2 record still holds its timeline and late ring: those
		// follow what is stored apart (indexes below EventBase, LateBase).
		evs, err := decodeIndexed(c, fields(cmds[i][1]), "", c.KeptFrom(s.lim), c.EventBase(), store.UnmarshalEvent)
		if err != nil {
			return err
		}
		c.AttachEvents(evs)
		late, err := decodeIndexed(c, fields(cmds[i][2]), "", c.LateFrom(), c.LateBase(), store.UnmarshalReply)
		if err != nil {
			return err
		}
		if late = append(late, c.Late...); len(late) > 0 {
			c.Late = late
		}
	}
	return nil
}

// apartKeys names the hashes c keeps apart from its record: replies,
// timeline, late ring; "" for each it has none in.
func apartKeys(l layout, sh int, key string, c *store.Correlation) [3]string {
	var out [3]string
	replies, events, late := c.Apart()
	if replies {
		out[0] = l.replies(sh, key)
	}
	if events {
		out[1] = l.timeline(sh, key)
	}
	if late {
		out[2] = l.late(sh, key)
	}
	return out
}

// fields is what an HGETALL answered; nothing when it was not sent.
func fields(cmd *redis.MapStringStringCmd) map[string]string {
	if cmd == nil {
		return nil
	}
	return cmd.Val()
}

// decodeIndexed decodes the values of a hash of "<prefix><index>" → value
// whose index is in [from, until), in index order; other fields are not
// its. A value that does not decode makes the record corrupt.
func decodeIndexed[T any](c *store.Correlation, fields map[string]string, prefix string, from, until int, decode func([]byte) (T, error)) ([]T, error) {
	type indexed struct {
		i int
		v T
	}
	var got []indexed
	for f, raw := range fields {
		n, ok := strings.CutPrefix(f, prefix)
		if !ok {
			continue
		}
		idx, err := strconv.Atoi(n)
		if err == nil && (idx < from || idx >= until) {
			continue // pushed out of its window, or one the record itself still holds
		}
		v, derr := decode([]byte(raw))
		if err != nil || derr != nil {
			return nil, &store.CorruptError{ID: c.Ref().String(), Err: fmt.Errorf("%w: field %q: %v", store.ErrCorrupt, f, cmp.Or(derr, err))}
		}
		got = append(got, indexed{idx, v})
	}
	slices.SortFunc(got, func(a, b indexed) int { return a.i - b.i })
	out := make([]T, len(got))
	for j, g := range got {
		out[j] = g.v
	}
	return out, nil
}

func (s *Store) decodeLoaded(key, v string) (*loaded, error) {
	c, err := decodeValue(key, v)
	if err != nil {
		return nil, err
	}
	return &loaded{key: key, c: c, header: v[:headerLen]}, nil
}

// value encodes a record with its header, without c.Replies and c.Events:
// the write that carries it stores them apart (script.storeApart,
// script.storeEvents).
// prev is the header read ("" for a new record); token names this write.
func value(c *store.Correlation, prev, token string) (string, error) {
	bare := *c
	bare.Replies, bare.Late = nil, nil
	if !c.EventsInline() {
		bare.Events = nil
	}
	b, err := store.MarshalCorrelation(&bare)
	if err != nil {
		return "", err
	}
	return header(prev, token) + string(b), nil
}

// wireEvent is a store.Event on the event channel.
type wireEvent struct {
	Kind      store.EventKind     `json:"kind"`
	Namespace string              `json:"namespace"`
	ID        string              `json:"id"`
	State     store.State         `json:"state"`
	Deadline  time.Time           `json:"deadline"`
	Outcome   *store.Outcome      `json:"outcome,omitempty"`
	Dispatch  store.DispatchState `json:"dispatch"`
	Replies   int                 `json:"replies"`
	Version   int64               `json:"version"`
}

func eventPayload(c *store.Correlation) string {
	e := store.EventOf(c)
	b, _ := json.Marshal(wireEvent(e)) // plain fields: cannot fail
	return string(b)
}

func decodeEvent(payload string) (store.Event, error) {
	var w wireEvent
	if err := json.Unmarshal([]byte(payload), &w); err != nil {
		return store.Event{}, err
	}
	if err := (store.Ref{Namespace: w.Namespace, ID: w.ID}).Validate(); err != nil || w.Namespace == "" {
		return store.Event{}, fmt.Errorf("event names no correlation: %q/%q", w.Namespace, w.ID)
	}
	return store.Event(w), nil
}

// call is one script run.
type call struct {
	script *redis.Script
	keys   []string
	args   []any
}

// run runs calls in one round trip, shared with concurrent callers (see
// batch.go), and returns their answers in order.
func (s *Store) run(ctx context.Context, calls []call) []*redis.Cmd {
	if len(calls) == 0 {
		return nil
	}
	return s.batch.run(ctx, calls)
}

// updateCall is the compare-and-set that replaces the record read as l
// with c (nil deletes it), moving its index entries from before to what c
// implies, and publishing c's event when publish is set.
func (s *Store) updateCall(l *loaded, c *store.Correlation, before entries, publish bool, token string) (call, error) {
	sh := s.keys.shard(l.key)
	sc := newScript(s.keys.record(sh, l.key))
	sc.reindex(s.keys, sh, l.key, before, entriesOf(c))
	v, ev := "", ""
	if c == nil {
		for _, k := range apartKeys(s.keys, sh, l.key, l.c) {
			if k != "" {
				sc.del(k)
			}
		}
	} else {
		if err := sc.storeApart(s.keys, sh, l.key, c); err != nil {
			return call{}, err
		}
		if err := sc.storeEvents(s.keys, sh, l.key, c, s.lim); err != nil {
			return call{}, err
		}
		if err := sc.storeLate(s.keys, sh, l.key, c, s.lim); err != nil {
			return call{}, err
		}
		var err error
		if v, err = value(c, l.header, token); err != nil {
			return call{}, err
		}
		if publish {
			ev = eventPayload(c)
		}
	}
	args := append([]any{l.header, token, v, s.keys.channel(), ev}, sc.ops...)
	return call{scriptUpdate, sc.keys, args}, nil
}

// updated reads the answer of an update: true when written (now or by this
// very call sent before), false when another write came first.
func (s *Store) updated(key string, cmd *redis.Cmd) (bool, error) {
	st, err := cmd.Text()
	if err != nil {
		return false, s.redisErr("write "+key, err)
	}
	switch st {
	case "ok", "done":
		return true, nil
	case "moved":
		return false, nil
	}
	return false, unexpected("write "+key, st)
}

// update runs one compare-and-set.
func (s *Store) update(ctx context.Context, l *loaded, c *store.Correlation, before entries, publish bool) (bool, error) {
	cl, err := s.updateCall(l, c, before, publish, newToken())
	if err != nil {
		return false, err
	}
	return s.updated(l.key, s.run(ctx, []call{cl})[0])
}
