package redisstore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/redis/go-redis/v9"

	"github.com/corrstore/corrstore/store"
)

// maxAttempts bounds how often an operation reads again after another
// writer changed the record between its read and its compare-and-set.
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
	id     string
	c      *store.Correlation
	header string
}

// decodeValue reads a stored value: header ‖ record.
func decodeValue(id, v string) (*store.Correlation, error) {
	if _, ok := parseHeader(v); !ok {
		return nil, &store.CorruptError{ID: id, Err: fmt.Errorf("%w: value has no record header", store.ErrCorrupt)}
	}
	c, err := store.UnmarshalCorrelation([]byte(v[headerLen:]))
	if err != nil {
		return nil, &store.CorruptError{ID: id, Err: err}
	}
	if c.ID != id {
		return nil, &store.CorruptError{ID: id, Err: fmt.Errorf("%w: record holds id %q", store.ErrCorrupt, c.ID)}
	}
	return c, nil
}

func notFound(id string) error { return fmt.Errorf("%w: correlation %s", store.ErrNotFound, id) }

// load reads a record: store.ErrNotFound, or a *store.CorruptError.
func (s *Store) load(ctx context.Context, id string) (*loaded, error) {
	sh := s.keys.shard(id)
	pipe := s.rdb.Pipeline()
	get := pipe.Get(ctx, s.keys.record(sh, id))
	q := pipe.HExists(ctx, s.keys.quarantine(sh), id)
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, s.redisErr("read "+id, err)
	}
	v, err := get.Result()
	if errors.Is(err, redis.Nil) {
		if q.Val() {
			return nil, &store.CorruptError{ID: id, Err: fmt.Errorf("%w: record was set aside as undecodable (see %s)", store.ErrCorrupt, s.keys.quarantine(sh))}
		}
		return nil, notFound(id)
	}
	return s.decodeLoaded(id, v)
}

func (s *Store) decodeLoaded(id, v string) (*loaded, error) {
	c, err := decodeValue(id, v)
	if err != nil {
		return nil, err
	}
	return &loaded{id: id, c: c, header: v[:headerLen]}, nil
}

// value encodes a record with its header.
// prev is the header read ("" for a new record); token names this write.
func value(c *store.Correlation, prev, token string) (string, error) {
	b, err := store.MarshalCorrelation(c)
	if err != nil {
		return "", err
	}
	return header(prev, token) + string(b), nil
}

func eventPayload(c *store.Correlation) string {
	b, _ := json.Marshal(store.EventOf(c)) // plain fields: cannot fail
	return string(b)
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
	sh := s.keys.shard(l.id)
	sc := newScript(s.keys.record(sh, l.id))
	sc.reindex(s.keys, sh, l.id, before, entriesOf(c))
	v, ev := "", ""
	if c != nil {
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
func (s *Store) updated(id string, cmd *redis.Cmd) (bool, error) {
	st, err := cmd.Text()
	if err != nil {
		return false, s.redisErr("write "+id, err)
	}
	switch st {
	case "ok", "done":
		return true, nil
	case "moved":
		return false, nil
	}
	return false, fmt.Errorf("redisstore: write %s: unexpected answer %q", id, st)
}

// update runs one compare-and-set.
func (s *Store) update(ctx context.Context, l *loaded, c *store.Correlation, before entries, publish bool) (bool, error) {
	cl, err := s.updateCall(l, c, before, publish, newToken())
	if err != nil {
		return false, err
	}
	return s.updated(l.id, s.run(ctx, []call{cl})[0])
}

func contention(id string) error {
	return fmt.Errorf("redisstore: %s: gave up after %d attempts: other writers kept changing the record", id, maxAttempts)
}
