package bolt

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"time"

	"go.etcd.io/bbolt"

	"github.com/corrstore/corrstore/internal/storekit"
	"github.com/corrstore/corrstore/store"
)

// txn wraps a transaction with the record and index helpers.
type txn struct {
	tx *bbolt.Tx
	s  *Store
}

func put(b *bbolt.Bucket, k, v []byte) error {
	if err := b.Put(k, v); err != nil {
		return &writeError{err: fmt.Errorf("put: %w", err)}
	}
	return nil
}

func del(b *bbolt.Bucket, k []byte) error {
	if err := b.Delete(k); err != nil {
		return &writeError{err: err}
	}
	return nil
}

// checkRef normalizes and validates a ref given by a caller.
func checkRef(ref store.Ref) (store.Ref, error) {
	ref = ref.Norm()
	return ref, ref.Validate()
}

// load reads the record stored under key, a ref string: store.ErrNotFound,
// or a *store.CorruptError.
func (t txn) load(key string) (*store.Correlation, error) {
	v := t.tx.Bucket(bucketCorr).Get([]byte(key))
	if v == nil {
		if q := t.tx.Bucket(bucketQuarantine).Get([]byte(key)); q != nil {
			return nil, &store.CorruptError{ID: key, Err: errors.New("record was set aside as undecodable (see the quarantine bucket)")}
		}
		return nil, fmt.Errorf("%w: correlation %s", store.ErrNotFound, key)
	}
	c, err := store.UnmarshalCorrelation(v)
	if err != nil {
		return nil, &store.CorruptError{ID: key, Err: err}
	}
	if got := c.Ref().String(); got != key {
		return nil, &store.CorruptError{ID: key, Err: fmt.Errorf("record holds %s", got)}
	}
	return c, nil
}

// save writes a record and moves its index entries from before to what it
// implies now. The replies in c.Replies (accepted by this step, or held
// inside a record of an earlier schema) are stored apart and leave c; the
// events in c.Events are stored apart and stay.
// Every error it returns spoils the transaction.
func (t txn) save(c *store.Correlation, before entries) error {
	key := c.Ref().String()
	if err := t.storeApart(key, c); err != nil {
		return err
	}
	if err := t.storeEvents(key, c); err != nil {
		return err
	}
	if err := t.storeLate(key, c); err != nil {
		return err
	}
	bare := *c // c keeps this step's events: its change event names them
	bare.Late = nil
	if !c.EventsInline() {
		bare.Events = nil
	}
	b, err := store.MarshalCorrelation(&bare)
	if err != nil {
		return &writeError{err: err, bug: true}
	}
	if err := put(t.tx.Bucket(bucketCorr), []byte(key), b); err != nil {
		return err
	}
	return t.reindex(before, entriesOf(c))
}

// storeApart moves c.Replies to bucketReplies, under the indexes
// c.Held.Count-len(c.Replies) …, with their keys in bucketReplyKeys.
func (t txn) storeApart(key string, c *store.Correlation) error {
	if len(c.Replies) == 0 {
		return nil
	}
	if err := putIndexed(t.tx.Bucket(bucketReplies), key, c.ReplyBase(), c.Replies, store.MarshalReply); err != nil {
		return err
	}
	kb := t.tx.Bucket(bucketReplyKeys)
	for _, r := range c.Replies {
		for _, k := range store.ReplyKeys(c.Pattern, r) {
			if err := put(kb, append(replyPrefix(key), k...), []byte{}); err != nil {
				return err
			}
		}
	}
	c.Replies = nil
	return nil
}

// storeEvents stores c.Events in bucketTimeline under the indexes
// c.EventBase() …, and drops the events before c.KeptFrom: the timeline
// keeps its last MaxEvents entries. The events pushed out of the window are
// dropped 32 at a time: one write in 32 deletes, the others only add (Get
// reads from KeptFrom).
func (t txn) storeEvents(key string, c *store.Correlation) error {
	if c.EventsInline() {
		return nil // kept inside the record
	}
	tb, base, cut := t.tx.Bucket(bucketTimeline), c.EventBase(), c.KeptFrom(t.s.lim)
	if err := putIndexed(tb, key, base, c.Events, func(ev store.TimelineEvent) ([]byte, error) { return store.MarshalEvent(ev), nil }); err != nil {
		return err
	}
	if cut/dropEvery == (cut-len(c.Events))/dropEvery && cut > 0 && base > 0 {
		return nil
	}
	return dropBefore(tb, key, cut)
}

// dropEvery is how many timeline events, pushed out of the window, wait
// before they are deleted together.
const dropEvery = 32

// storeLate stores c.Late in bucketLate under the indexes c.LateBase() …,
// and drops the late replies before c.LateFrom(), pushed out of the ring.
func (t txn) storeLate(key string, c *store.Correlation) error {
	if len(c.Late) == 0 {
		return nil
	}
	lb := t.tx.Bucket(bucketLate)
	if err := putIndexed(lb, key, c.LateBase(), c.Late, store.MarshalReply); err != nil {
		return err
	}
	return dropBefore(lb, key, c.LateFrom())
}

// putIndexed puts vs under key's entries of b (ref\0index) from index base.
func putIndexed[T any](b *bbolt.Bucket, key string, base int, vs []T, encode func(T) ([]byte, error)) error {
	for i, v := range vs {
		raw, err := encode(v)
		if err != nil {
			return &writeError{err: err, bug: true}
		}
		if err := put(b, replyKey(key, base+i), raw); err != nil {
			return err
		}
	}
	return nil
}

// dropBefore deletes key's entries of b (ref\0index) below index cut.
func dropBefore(b *bbolt.Bucket, key string, cut int) error {
	p := replyPrefix(key)
	cur := b.Cursor()
	for k, _ := cur.Seek(p); k != nil && bytes.HasPrefix(k, p) && len(k) == len(p)+4 &&
		int(binary.BigEndian.Uint32(k[len(p):])) < cut; k, _ = cur.Seek(p) {
		if err := cur.Delete(); err != nil {
			return &writeError{err: err}
		}
	}
	return nil
}

// held answers whether a reply stored apart for key is known under a key
// (store.ReplyKeys): a point lookup, whatever the number of replies.
func (t txn) held(key string) func(string) bool {
	kb, p := t.tx.Bucket(bucketReplyKeys), replyPrefix(key)
	return func(k string) bool { return kb.Get(append(p[:len(p):len(p)], k...)) != nil }
}

// attach gives c the replies, the timeline and the late ring stored apart
// for it, as Get returns them; it reads only what c has apart
// (store.Correlation.Apart).
func (t txn) attach(c *store.Correlation) error {
	key := c.Ref().String()
	replies, events, late := c.Apart()
	if events {
		evs, err := readIndexed(t.tx, bucketTimeline, key, c.KeptFrom(t.s.lim), store.UnmarshalEvent)
		if err != nil {
			return err
		}
		c.Events = nil // those of the step that read it, if any: stored apart now
		c.AttachEvents(evs)
	}
	if late {
		rs, err := readIndexed(t.tx, bucketLate, key, c.LateFrom(), store.UnmarshalReply)
		if err != nil {
			return err
		}
		c.Late = rs
	}
	if replies {
		rs, err := readIndexed(t.tx, bucketReplies, key, 0, store.UnmarshalReply)
		if err != nil {
			return err
		}
		c.AttachReplies(rs)
	}
	return nil
}

// readIndexed decodes key's entries of bucket (ref\0index) from index from on,
// in index order.
func readIndexed[T any](tx *bbolt.Tx, bucket []byte, key string, from int, decode func([]byte) (T, error)) ([]T, error) {
	p := replyPrefix(key)
	b := tx.Bucket(bucket)
	var out []T
	cur := b.Cursor()
	for k, v := cur.Seek(replyKey(key, from)); k != nil && bytes.HasPrefix(k, p); k, v = cur.Next() {
		x, err := decode(v)
		if err != nil {
			return nil, &store.CorruptError{ID: key, Err: fmt.Errorf("%w: %s entry %x: %v", store.ErrCorrupt, bucket, k[len(p):], err)}
		}
		out = append(out, x)
	}
	return out, nil
}

// dropApart deletes the replies stored apart for key and their keys.
func (t txn) dropApart(key string) error {
	p := replyPrefix(key)
	for _, name := range [][]byte{bucketReplies, bucketReplyKeys, bucketTimeline, bucketLate} {
		cur := t.tx.Bucket(name).Cursor()
		for k, _ := cur.Seek(p); k != nil && bytes.HasPrefix(k, p); k, _ = cur.Seek(p) {
			if err := cur.Delete(); err != nil {
				return &writeError{err: err}
			}
		}
	}
	return nil
}

// remove deletes a record with its index entries and idempotency key.
func (t txn) remove(c *store.Correlation) error {
	key := c.Ref().String()
	if err := del(t.tx.Bucket(bucketCorr), []byte(key)); err != nil {
		return err
	}
	if err := t.dropApart(key); err != nil {
		return err
	}
	if c.IdempotencyKey != "" {
		ib := t.tx.Bucket(bucketIdem)
		k := nsKey(c.Namespace, []byte(c.IdempotencyKey))
		if string(ib.Get(k)) == key {
			if err := del(ib, k); err != nil {
				return err
			}
		}
	}
	return t.reindex(entriesOf(c), entries{})
}

func (t txn) reindex(before, after entries) error {
	bi, ai := before.index(), after.index()
	for i := range bi {
		if bytes.Equal(bi[i].key, ai[i].key) {
			continue
		}
		b := t.tx.Bucket(bi[i].bucket)
		if bi[i].key != nil {
			if err := del(b, bi[i].key); err != nil {
				return err
			}
		}
		if ai[i].key != nil {
			if err := put(b, ai[i].key, []byte{}); err != nil {
				return err
			}
		}
	}
	if before.ns != after.ns || before.state != after.state {
		if err := t.count(before.ns, kindState, string(before.state), -1); err != nil {
			return err
		}
		if err := t.count(after.ns, kindState, string(after.state), 1); err != nil {
			return err
		}
	}
	if before.ns != after.ns || before.disp != after.disp {
		if err := t.count(before.ns, kindDispatch, string(before.disp), -1); err != nil {
			return err
		}
		if err := t.count(after.ns, kindDispatch, string(after.disp), 1); err != nil {
			return err
		}
	}
	if before.ns != after.ns || before.bytes != after.bytes {
		if before.ns == after.ns {
			return t.count(after.ns, kindBytes, bytesCounter, after.bytes-before.bytes)
		}
		if err := t.count(before.ns, kindBytes, bytesCounter, -before.bytes); err != nil {
			return err
		}
		return t.count(after.ns, kindBytes, bytesCounter, after.bytes)
	}
	return nil
}

func (t txn) count(ns, kind, value string, delta int64) error {
	if ns == "" || value == "" || value == string(store.DispatchNone) || delta == 0 {
		return nil
	}
	b := t.tx.Bucket(bucketCounts)
	k := countKey(ns, kind, value)
	return put(b, k, encodeCount(decodeCount(b.Get(k))+delta))
}

func (t txn) addEarlyCount(delta int64) error {
	b := t.tx.Bucket(bucketMeta)
	return put(b, metaEarlyCount, encodeCount(decodeCount(b.Get(metaEarlyCount))+delta))
}

// quarantine sets an undecodable record (under key, a ref string) aside so
// that no pass trips on it again, and drops the index entry that led to it.
func (t txn) quarantine(key string, indexBucket, indexKey []byte, cause error) error {
	raw := t.tx.Bucket(bucketCorr).Get([]byte(key))
	if raw != nil {
		if err := put(t.tx.Bucket(bucketQuarantine), []byte(key), append([]byte(nil), raw...)); err != nil {
			return err
		}
		if err := del(t.tx.Bucket(bucketCorr), []byte(key)); err != nil {
			return err
		}
	}
	t.s.log.Error("corrupt record set aside", "ref", key, "index", string(indexBucket), "err", cause)
	return del(t.tx.Bucket(indexBucket), indexKey)
}

// dueBefore picks the keys of a time-keyed index before bound (see due).
func dueBefore(bound []byte) func(b *bbolt.Bucket, limit int) [][]byte {
	return func(b *bbolt.Bucket, limit int) [][]byte { return due(b, bound, limit) }
}

// refOfKey reads the ref string of an index key of that bucket.
func refOfKey(index, k []byte) (string, bool) {
	if bytes.Equal(index, bucketDispatch) {
		_, _, ref, ok := splitDispatchKey(k)
		return ref, ok
	}
	_, ref, ok := splitTimeKey(k)
	return ref, ok
}

// due collects up to limit keys of an index whose time is before bound.
func due(b *bbolt.Bucket, bound []byte, limit int) [][]byte {
	var keys [][]byte
	c := b.Cursor()
	for k, _ := c.First(); k != nil && bytes.Compare(k, bound) < 0 && len(keys) < limit; k, _ = c.Next() {
		keys = append(keys, append([]byte(nil), k...))
	}
	return keys
}

// earlyFor returns the early replies buffered for key (a ref string) and
// their keys.
func (t txn) earlyFor(key string) ([]store.Reply, [][]byte) {
	var replies []store.Reply
	var keys [][]byte
	p := earlyPrefix(key)
	c := t.tx.Bucket(bucketEarly).Cursor()
	for k, v := c.Seek(p); k != nil && hasPrefix(k, p); k, v = c.Next() {
		keys = append(keys, append([]byte(nil), k...))
		e, err := store.UnmarshalEarly(v)
		if err == nil && e.Ref().String() != key {
			err = fmt.Errorf("%w: early reply for %s stored under %s", store.ErrCorrupt, e.Ref(), key)
		}
		if err != nil {
			t.s.log.Warn("undecodable early reply skipped", "ref", key, "err", err)
			continue
		}
		replies = append(replies, e.Reply)
	}
	return replies, keys
}

func (t txn) dropEarly(k []byte) error {
	tk, ok := earlyTimeKeyOf(k)
	if !ok {
		return del(t.tx.Bucket(bucketEarly), k)
	}
	if err := del(t.tx.Bucket(bucketEarly), k); err != nil {
		return err
	}
	if err := del(t.tx.Bucket(bucketEarlyTime), tk); err != nil {
		return err
	}
	return t.addEarlyCount(-1)
}

// Register implements store.Store.
func (s *Store) Register(ctx context.Context, c *store.Correlation) (store.RegisterResult, error) {
	if s.closed.Load() {
		return store.RegisterResult{}, store.ErrClosed
	}
	now := s.clock.Now()
	p, err := store.Prepare(c, now, s.lim)
	if err != nil {
		return store.RegisterResult{}, err
	}
	var res store.RegisterResult
	err = s.write(ctx, func(tx *bbolt.Tx, o *op) error {
		t := txn{tx, s}
		res = store.RegisterResult{}
		key := p.Ref().String()
		if p.IdempotencyKey != "" {
			if v := tx.Bucket(bucketIdem).Get(nsKey(p.Namespace, []byte(p.IdempotencyKey))); v != nil {
				key = string(v)
			}
		}
		existing, err := t.load(key)
		switch {
		case err == nil:
			if err := existing.Registration(p); err != nil {
				return err
			}
			res.Correlation = existing
			return nil
		case !errors.Is(err, store.ErrNotFound):
			return err
		}
		n := p.Clone()
		early, keys := t.earlyFor(n.Ref().String())
		applied := n.ApplyEarly(early, now, s.lim)
		for _, k := range keys {
			if err := t.dropEarly(k); err != nil {
				return err
			}
		}
		if err := t.save(n, entries{}); err != nil {
			return err
		}
		if n.IdempotencyKey != "" {
			if err := put(tx.Bucket(bucketIdem), nsKey(n.Namespace, []byte(n.IdempotencyKey)), []byte(n.Ref().String())); err != nil {
				return err
			}
		}
		// A registration is no change to announce; early replies applied
		// at once are.
		o.events = append(o.events, changeEvents(n, 1)...)
		res = store.RegisterResult{Correlation: n, Created: true, EarlyApplied: applied}
		return nil
	})
	return res, err
}

// Deliver implements store.Store.
func (s *Store) Deliver(ctx context.Context, ref store.Ref, r store.Reply) (store.DeliverResult, error) {
	if s.closed.Load() {
		return store.DeliverResult{}, store.ErrClosed
	}
	ref, err := checkRef(ref)
	if err != nil {
		return store.DeliverResult{}, err
	}
	if err := store.ValidateReply(r, s.lim); err != nil {
		return store.DeliverResult{}, err
	}
	now := s.clock.Now()
	r.ReceivedAt = now
	var res store.DeliverResult
	err = s.write(ctx, func(tx *bbolt.Tx, o *op) error {
		t := txn{tx, s}
		res = store.DeliverResult{}
		c, err := t.load(ref.String())
		if errors.Is(err, store.ErrNotFound) {
			if r.Nonce != nil {
				return r.CheckRegistration(ref, nil) // bound: never buffered
			}
			if !s.lim.EarlyBuffering() {
				return err
			}
			res.Status = store.DeliverBuffered
			return t.buffer(ref, r)
		}
		if err != nil {
			return err
		}
		if err := r.CheckRegistration(ref, c); err != nil {
			return err
		}
		before, v0 := entriesOf(c), c.Version
		st, stepErr := c.ApplyReplyApart(r, now, s.lim, t.held(ref.String()))
		if stepErr != nil && c.Version == v0 {
			return stepErr
		}
		if err := t.save(c, before); err != nil { // a duplicate too: it counts
			return err
		}
		o.events = append(o.events, changeEvents(c, v0)...)
		if stepErr != nil {
			return stepErr
		}
		res = store.DeliverResult{Status: st, Correlation: c}
		return nil
	})
	return res, err
}

// changeEvents returns the event of a change a state-machine step made to
// c, whose Version was v0 before it: one per change that raised the
// Version (store.EventOf says its kind), none for a repeat.
func changeEvents(c *store.Correlation, v0 int64) []store.Event {
	if c.Version == v0 {
		return nil
	}
	return []store.Event{store.EventOf(c)}
}

// buffer keeps a reply for a ref not registered yet. The same reply
// buffered again is not stored twice.
func (t txn) buffer(ref store.Ref, r store.Reply) error {
	key := ref.String()
	held, _ := t.earlyFor(key)
	for _, h := range held {
		if h.SameContent(r) {
			return nil
		}
	}
	lim := t.s.lim
	if len(held) >= lim.MaxEarlyPerID {
		return store.EarlyPerRefFull(key, len(held), lim)
	}
	if n := decodeCount(t.tx.Bucket(bucketMeta).Get(metaEarlyCount)); n >= int64(lim.MaxEarlyReplies) {
		return store.EarlyStoreFull(n, lim)
	}
	b, err := store.MarshalEarly(store.EarlyReply{Namespace: ref.Namespace, CorrelationID: ref.ID, Reply: r})
	if err != nil {
		return err
	}
	eb := t.tx.Bucket(bucketEarly)
	seq, err := eb.NextSequence()
	if err != nil {
		return &writeError{err: err}
	}
	if err := put(eb, earlyKey(key, r.ReceivedAt, seq), b); err != nil {
		return err
	}
	if err := put(t.tx.Bucket(bucketEarlyTime), earlyTimeKey(key, r.ReceivedAt, seq), []byte{}); err != nil {
		return err
	}
	return t.addEarlyCount(1)
}

// Get implements store.Store.
func (s *Store) Get(ctx context.Context, ref store.Ref) (*store.Correlation, error) {
	ref, err := checkRef(ref)
	if err != nil {
		if s.closed.Load() {
			return nil, store.ErrClosed
		}
		return nil, err
	}
	var c *store.Correlation
	err = s.view(func(tx *bbolt.Tx) error {
		t := txn{tx, s}
		var err error
		if c, err = t.load(ref.String()); err != nil {
			return err
		}
		return t.attach(c)
	})
	return c, err
}

// mutate is the mutate primitive of storekit.Mutations, which supplies
// Extend, Cancel, Expire, AckDispatch, NackDispatch and Redispatch and
// checks their arguments first: it applies one state-machine step to one
// record. A step that refuses after changing the record (a deadline outcome
// found on the way: Extend and Cancel then answer ErrNotPending) has its
// change stored, then its error answered.
func (s *Store) mutate(ctx context.Context, ref store.Ref, step storekit.Step) (store.Result, error) {
	now := s.clock.Now()
	var res store.Result
	err := s.write(ctx, func(tx *bbolt.Tx, o *op) error {
		t := txn{tx, s}
		res = store.Result{}
		c, err := t.load(ref.String())
		if err != nil {
			return err
		}
		before, v0 := entriesOf(c), c.Version
		dup, stepErr := step(c, now)
		if c.Version == v0 {
			if stepErr != nil {
				return stepErr
			}
			res = store.Result{Correlation: c, Duplicate: dup}
			return nil
		}
		if err := t.save(c, before); err != nil {
			return err
		}
		o.events = append(o.events, changeEvents(c, v0)...)
		if stepErr != nil {
			return stepErr
		}
		res = store.Result{Correlation: c}
		return nil
	})
	return res, err
}

// checkOpen answers store.ErrClosed once the store is closed.
func (s *Store) checkOpen() error {
	if s.closed.Load() {
		return store.ErrClosed
	}
	return nil
}

// sweep walks the due entries of one index inside one write and hands each
// decodable record to fn; the records for which fn says true are returned.
// Corrupt records are set aside and reported; index entries that lead
// nowhere are dropped. The write may run twice (in a group, then alone,
// when another operation's write failed), so what it returns is built
// afresh on each run.
//
// pick lists the due keys of the index, at most limit.
func (s *Store) sweep(ctx context.Context, index []byte, pick func(b *bbolt.Bucket, limit int) [][]byte, limit int,
	fn func(t txn, c *store.Correlation, before entries) (bool, error)) (out []*store.Correlation, soft error, err error) {
	if s.closed.Load() {
		return nil, nil, store.ErrClosed
	}
	if err := store.ValidateLimit(limit); err != nil {
		return nil, nil, err
	}
	err = s.write(ctx, func(tx *bbolt.Tx, o *op) error {
		t := txn{tx, s}
		out, soft = nil, nil
		var corrupt []error
		b := tx.Bucket(index)
		for _, k := range pick(b, limit) {
			key, ok := refOfKey(index, k)
			c, err := t.load(key)
			var ce *store.CorruptError
			switch {
			case !ok || errors.Is(err, store.ErrNotFound):
				if err := del(b, k); err != nil {
					return err
				}
				continue
			case errors.As(err, &ce):
				corrupt = append(corrupt, ce)
				if err := t.quarantine(key, index, k, ce.Err); err != nil {
					return err
				}
				continue
			case err != nil:
				return &writeError{err: err, bug: true}
			}
			// before names the entry that led here, so that a stale one is
			// moved to where the record says it belongs.
			before := entriesOf(c)
			before.set(index, k)
			v0 := c.Version
			picked, err := fn(t, c, before)
			if err != nil {
				return err
			}
			if picked {
				out = append(out, c)
			}
			o.events = append(o.events, changeEvents(c, v0)...)
		}
		soft = errors.Join(corrupt...)
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	return out, soft, nil
}

// ExpireDue implements store.Store.
func (s *Store) ExpireDue(ctx context.Context, now time.Time, limit int) ([]*store.Correlation, error) {
	out, soft, err := s.sweep(ctx, bucketDeadline, dueBefore(timeBound(now)), limit, func(t txn, c *store.Correlation, before entries) (bool, error) {
		due := c.State == store.StatePending && !c.Deadline.After(now)
		if due {
			c.DecideAtDeadline(now, store.ReasonDeadline, s.lim)
		}
		return due, t.save(c, before)
	})
	if err != nil {
		return nil, err
	}
	return out, soft
}

// ClaimDispatch implements store.Store. It walks only the ranges of the
// dispatch index of the handlers (and namespace) it serves.
func (s *Store) ClaimDispatch(ctx context.Context, r store.ClaimRequest) ([]*store.Correlation, error) {
	if s.closed.Load() {
		return nil, store.ErrClosed
	}
	if err := store.ValidateClaim(r); err != nil {
		return nil, err
	}
	pick := func(b *bbolt.Bucket, limit int) [][]byte { return dueDispatch(b, r, limit) }
	out, soft, err := s.sweep(ctx, bucketDispatch, pick, r.Limit, func(t txn, c *store.Correlation, before entries) (bool, error) {
		claimed := r.Serves(c) && c.ApplyClaim(r.Instance, r.Now, r.Lease, s.lim)
		if err := t.save(c, before); err != nil || !claimed {
			return false, err
		}
		return true, t.attach(c) // the handler gets the replies
	})
	if err != nil {
		return nil, err
	}
	return out, soft
}

// OldestDispatchDue implements store.Store: the first key of the handler's
// range in each namespace (one seek each).
func (s *Store) OldestDispatchDue(ctx context.Context, namespace, handler string) (time.Time, error) {
	if s.closed.Load() {
		return time.Time{}, store.ErrClosed
	}
	if err := validateOldest(namespace, handler); err != nil {
		return time.Time{}, err
	}
	var oldest time.Time
	err := s.view(func(tx *bbolt.Tx) error {
		c := tx.Bucket(bucketDispatch).Cursor()
		hp := dispatchPrefix(handler, namespace)
		for k, _ := c.Seek(hp); k != nil && bytes.HasPrefix(k, hp); {
			p, at, _, ok := splitDispatchKey(k)
			if ok && (oldest.IsZero() || at.Before(oldest)) {
				oldest = at
			}
			if !ok || namespace != "" {
				return nil
			}
			next := bytes.Clone(p)
			next[len(next)-1] = 1 // past every key of this namespace
			k, _ = c.Seek(next)
		}
		return nil
	})
	return oldest, err
}

func validateOldest(namespace, handler string) error {
	if namespace != "" {
		if err := store.ValidateNamespace(namespace); err != nil {
			return err
		}
	}
	return store.ValidateHandler(handler)
}

// dueDispatch lists the dispatch keys due at r.Now of r's handlers in r's
// namespace, or in every namespace: up to limit of each range, then the
// limit earliest of them all. It seeks from one namespace's range to the
// next, so other namespaces' backlog of a handler costs one seek each.
func dueDispatch(b *bbolt.Bucket, r store.ClaimRequest, limit int) [][]byte {
	type cand struct {
		at  time.Time
		key []byte
	}
	var cands []cand
	c := b.Cursor()
	walk := func(prefix []byte) {
		bound := append(bytes.Clone(prefix), timeBound(r.Now)...)
		n := 0
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix) && bytes.Compare(k, bound) < 0 && n < limit; k, _ = c.Next() {
			if _, at, _, ok := splitDispatchKey(k); ok {
				cands = append(cands, cand{at, bytes.Clone(k)})
			} else {
				cands = append(cands, cand{key: bytes.Clone(k)}) // undecodable: sweep drops it
			}
			n++
		}
	}
	for _, h := range r.Handlers {
		if r.Namespace != "" {
			walk(dispatchPrefix(h, r.Namespace))
			continue
		}
		hp := dispatchPrefix(h, "")
		for k, _ := c.Seek(hp); k != nil && bytes.HasPrefix(k, hp); {
			p, _, _, ok := splitDispatchKey(k)
			if !ok {
				cands = append(cands, cand{key: bytes.Clone(k)})
				k, _ = c.Next()
				continue
			}
			p = bytes.Clone(p)
			walk(p)
			// The next namespace's range starts after every key of p.
			p[len(p)-1] = 1
			k, _ = c.Seek(p)
		}
	}
	slices.SortFunc(cands, func(a, b cand) int { return cmp.Or(a.at.Compare(b.at), bytes.Compare(a.key, b.key)) })
	keys := make([][]byte, 0, min(limit, len(cands)))
	for _, c := range cands[:min(limit, len(cands))] {
		keys = append(keys, c.key)
	}
	return keys
}

// Purge implements store.Store.
func (s *Store) Purge(ctx context.Context, before time.Time, limit int) (int, error) {
	purged, soft, err := s.sweep(ctx, bucketPurge, dueBefore(appendTime(nil, before)), limit, func(t txn, c *store.Correlation, e entries) (bool, error) {
		if entriesOf(c).purge == nil || !c.Outcome.At.Before(before) {
			return false, t.save(c, e) // a stale entry: save moves it where it belongs
		}
		if err := t.reindex(e, entriesOf(c)); err != nil { // drops a stale key, if any
			return false, err
		}
		return true, t.remove(c)
	})
	if err != nil {
		return 0, err
	}
	return len(purged), soft
}

// DropEarlyReplies implements store.Store.
func (s *Store) DropEarlyReplies(ctx context.Context, before time.Time, limit int) (int, error) {
	if s.closed.Load() {
		return 0, store.ErrClosed
	}
	if err := store.ValidateLimit(limit); err != nil {
		return 0, err
	}
	n := 0
	err := s.write(ctx, func(tx *bbolt.Tx, o *op) error {
		t := txn{tx, s}
		n = 0
		tb := tx.Bucket(bucketEarlyTime)
		for _, k := range due(tb, appendTime(nil, before), limit) {
			ek, ok := earlyKeyFromTime(k)
			if !ok {
				if err := del(tb, k); err != nil {
					return err
				}
				continue
			}
			if err := t.dropEarly(ek); err != nil {
				return err
			}
			n++
		}
		return nil
	})
	return n, err
}

// Secret implements store.Store: 32 random bytes kept in the meta bucket
// under secret:<name>, made by the first call.
func (s *Store) Secret(ctx context.Context, name string) ([]byte, error) {
	if s.closed.Load() {
		return nil, store.ErrClosed
	}
	if err := store.ValidateSecretName(name); err != nil {
		return nil, err
	}
	var secret []byte
	read := func(tx *bbolt.Tx) {
		secret = bytes.Clone(tx.Bucket(bucketMeta).Get(metaSecret(name)))
	}
	if err := s.view(func(tx *bbolt.Tx) error { read(tx); return nil }); err != nil || secret != nil {
		return secret, err
	}
	err := s.write(ctx, func(tx *bbolt.Tx, o *op) error {
		if read(tx); secret != nil {
			return nil // made by a call that came first
		}
		b := make([]byte, 32)
		if _, err := rand.Read(b); err != nil {
			return err
		}
		secret = b
		return put(tx.Bucket(bucketMeta), metaSecret(name), b)
	})
	if err != nil {
		return nil, err
	}
	return secret, nil
}

// Subscribe implements store.Store.
func (s *Store) Subscribe(ctx context.Context) (<-chan store.Event, error) {
	if s.closed.Load() {
		return nil, store.ErrClosed
	}
	return s.hub.Subscribe(ctx)
}
