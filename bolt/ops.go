package bolt

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"go.etcd.io/bbolt"

	"github.com/corrstore/corrstore/store"
)

// txn wraps a transaction with the record and index helpers.
type txn struct {
	tx *bbolt.Tx
	s  *Store
}

func put(b *bbolt.Bucket, k, v []byte) error {
	if err := b.Put(k, v); err != nil {
		return &writeError{fmt.Errorf("put: %w", err)}
	}
	return nil
}

func del(b *bbolt.Bucket, k []byte) error {
	if err := b.Delete(k); err != nil {
		return &writeError{err}
	}
	return nil
}

// load reads a record: store.ErrNotFound, or a *store.CorruptError.
func (t txn) load(id string) (*store.Correlation, error) {
	v := t.tx.Bucket(bucketCorr).Get([]byte(id))
	if v == nil {
		if q := t.tx.Bucket(bucketQuarantine).Get([]byte(id)); q != nil {
			return nil, &store.CorruptError{ID: id, Err: errors.New("record was set aside as undecodable (see the quarantine bucket)")}
		}
		return nil, fmt.Errorf("%w: correlation %s", store.ErrNotFound, id)
	}
	c, err := store.UnmarshalCorrelation(v)
	if err != nil {
		return nil, &store.CorruptError{ID: id, Err: err}
	}
	if c.ID != id {
		return nil, &store.CorruptError{ID: id, Err: fmt.Errorf("record holds id %q", c.ID)}
	}
	return c, nil
}

// save writes a record and moves its index entries from before to what it
// implies now. Every error it returns spoils the transaction.
func (t txn) save(c *store.Correlation, before entries) error {
	b, err := store.MarshalCorrelation(c)
	if err != nil {
		return &writeError{err}
	}
	if err := put(t.tx.Bucket(bucketCorr), []byte(c.ID), b); err != nil {
		return err
	}
	return t.reindex(before, entriesOf(c))
}

// remove deletes a record with its index entries and idempotency key.
func (t txn) remove(c *store.Correlation) error {
	if err := del(t.tx.Bucket(bucketCorr), []byte(c.ID)); err != nil {
		return err
	}
	if c.IdempotencyKey != "" {
		ib := t.tx.Bucket(bucketIdem)
		k := nsKey(c.Namespace, []byte(c.IdempotencyKey))
		if string(ib.Get(k)) == c.ID {
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
		if err := t.count(before.ns, "s", string(before.state), -1); err != nil {
			return err
		}
		if err := t.count(after.ns, "s", string(after.state), 1); err != nil {
			return err
		}
	}
	if before.ns != after.ns || before.disp != after.disp {
		if err := t.count(before.ns, "d", string(before.disp), -1); err != nil {
			return err
		}
		if err := t.count(after.ns, "d", string(after.disp), 1); err != nil {
			return err
		}
	}
	return nil
}

func (t txn) count(ns, kind, value string, delta int64) error {
	if ns == "" || value == "" || value == string(store.DispatchNone) {
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

// quarantine sets an undecodable record aside so that no pass trips on it
// again, and drops the index entry that led to it.
func (t txn) quarantine(id string, indexBucket, indexKey []byte, cause error) error {
	raw := t.tx.Bucket(bucketCorr).Get([]byte(id))
	if raw != nil {
		if err := put(t.tx.Bucket(bucketQuarantine), []byte(id), append([]byte(nil), raw...)); err != nil {
			return err
		}
		if err := del(t.tx.Bucket(bucketCorr), []byte(id)); err != nil {
			return err
		}
	}
	t.s.log.Error("corrupt record set aside", "id", id, "index", string(indexBucket), "err", cause)
	return del(t.tx.Bucket(indexBucket), indexKey)
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

// earlyFor returns the early replies buffered for id and their keys.
func (t txn) earlyFor(id string) ([]store.Reply, [][]byte) {
	var replies []store.Reply
	var keys [][]byte
	p := earlyPrefix(id)
	c := t.tx.Bucket(bucketEarly).Cursor()
	for k, v := c.Seek(p); k != nil && hasPrefix(k, p); k, v = c.Next() {
		keys = append(keys, append([]byte(nil), k...))
		e, err := store.UnmarshalEarly(v)
		if err != nil || e.CorrelationID != id {
			t.s.log.Warn("undecodable early reply skipped", "id", id, "err", err)
			continue
		}
		replies = append(replies, e.Reply)
	}
	return replies, keys
}

func (t txn) dropEarly(k []byte) error {
	if len(k) < 17 {
		return del(t.tx.Bucket(bucketEarly), k)
	}
	id, tail := k[:len(k)-17], k[len(k)-16:]
	tk := append(append([]byte(nil), tail...), id...)
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
		id := p.ID
		if p.IdempotencyKey != "" {
			if v := tx.Bucket(bucketIdem).Get(nsKey(p.Namespace, []byte(p.IdempotencyKey))); v != nil {
				id = string(v)
			}
		}
		existing, err := t.load(id)
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
		early, keys := t.earlyFor(n.ID)
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
			if err := put(tx.Bucket(bucketIdem), nsKey(n.Namespace, []byte(n.IdempotencyKey)), []byte(n.ID)); err != nil {
				return err
			}
		}
		o.events = append(o.events, store.EventOf(n))
		res = store.RegisterResult{Correlation: n, Created: true, EarlyApplied: applied}
		return nil
	})
	return res, err
}

// Deliver implements store.Store.
func (s *Store) Deliver(ctx context.Context, id string, r store.Reply) (store.DeliverResult, error) {
	if s.closed.Load() {
		return store.DeliverResult{}, store.ErrClosed
	}
	if err := store.ValidateID(id); err != nil {
		return store.DeliverResult{}, err
	}
	if err := store.ValidateReply(r, s.lim); err != nil {
		return store.DeliverResult{}, err
	}
	now := s.clock.Now()
	r.ReceivedAt = now
	var res store.DeliverResult
	err := s.write(ctx, func(tx *bbolt.Tx, o *op) error {
		t := txn{tx, s}
		res = store.DeliverResult{}
		c, err := t.load(id)
		if errors.Is(err, store.ErrNotFound) {
			if !s.lim.EarlyBuffering() {
				return err
			}
			res.Status = store.DeliverBuffered
			return t.buffer(id, r)
		}
		if err != nil {
			return err
		}
		before := entriesOf(c)
		st, err := c.ApplyReply(r, now, s.lim)
		if err != nil {
			return err
		}
		if err := t.save(c, before); err != nil {
			return err
		}
		if st != store.DeliverDuplicate {
			o.events = append(o.events, store.EventOf(c))
		}
		res = store.DeliverResult{Status: st, Correlation: c}
		return nil
	})
	return res, err
}

// buffer keeps a reply for an ID not registered yet. The same reply
// buffered again is not stored twice.
func (t txn) buffer(id string, r store.Reply) error {
	held, _ := t.earlyFor(id)
	for _, h := range held {
		if h.SameContent(r) {
			return nil
		}
	}
	lim := t.s.lim
	if len(held) >= lim.MaxEarlyPerID {
		return fmt.Errorf("%w: early replies: %s already has %d buffered, the limit is %d", store.ErrTooLarge, id, len(held), lim.MaxEarlyPerID)
	}
	if n := decodeCount(t.tx.Bucket(bucketMeta).Get(metaEarlyCount)); n >= int64(lim.MaxEarlyReplies) {
		return fmt.Errorf("%w: early replies: the store holds %d, the limit is %d", store.ErrTooLarge, n, lim.MaxEarlyReplies)
	}
	b, err := store.MarshalEarly(store.EarlyReply{CorrelationID: id, Reply: r})
	if err != nil {
		return err
	}
	eb := t.tx.Bucket(bucketEarly)
	seq, err := eb.NextSequence()
	if err != nil {
		return &writeError{err}
	}
	if err := put(eb, earlyKey(id, r.ReceivedAt, seq), b); err != nil {
		return err
	}
	if err := put(t.tx.Bucket(bucketEarlyTime), earlyTimeKey(id, r.ReceivedAt, seq), []byte{}); err != nil {
		return err
	}
	return t.addEarlyCount(1)
}

// Get implements store.Store.
func (s *Store) Get(ctx context.Context, id string) (*store.Correlation, error) {
	if err := store.ValidateID(id); err != nil {
		if s.closed.Load() {
			return nil, store.ErrClosed
		}
		return nil, err
	}
	var c *store.Correlation
	err := s.view(func(tx *bbolt.Tx) error {
		var err error
		c, err = txn{tx, s}.load(id)
		return err
	})
	return c, err
}

// mutate applies one state-machine step to one record.
func (s *Store) mutate(ctx context.Context, id string, step func(c *store.Correlation, now time.Time) (bool, error)) (store.Result, error) {
	if s.closed.Load() {
		return store.Result{}, store.ErrClosed
	}
	if err := store.ValidateID(id); err != nil {
		return store.Result{}, err
	}
	now := s.clock.Now()
	var res store.Result
	err := s.write(ctx, func(tx *bbolt.Tx, o *op) error {
		t := txn{tx, s}
		res = store.Result{}
		c, err := t.load(id)
		if err != nil {
			return err
		}
		before := entriesOf(c)
		dup, err := step(c, now)
		if err != nil {
			return err
		}
		res = store.Result{Correlation: c, Duplicate: dup}
		if dup {
			return nil
		}
		o.events = append(o.events, store.EventOf(c))
		return t.save(c, before)
	})
	return res, err
}

// Extend implements store.Store.
func (s *Store) Extend(ctx context.Context, id string, deadline time.Time) (store.Result, error) {
	return s.mutate(ctx, id, func(c *store.Correlation, now time.Time) (bool, error) {
		return c.Extend(now, deadline, s.lim)
	})
}

// Cancel implements store.Store.
func (s *Store) Cancel(ctx context.Context, id, reason string) (store.Result, error) {
	if err := store.ValidateReason(reason); err != nil {
		return store.Result{}, err
	}
	return s.mutate(ctx, id, func(c *store.Correlation, now time.Time) (bool, error) {
		return c.Cancel(now, reason, s.lim)
	})
}

// Expire implements store.Store.
func (s *Store) Expire(ctx context.Context, id, reason string) (store.Result, error) {
	if err := store.ValidateReason(reason); err != nil {
		return store.Result{}, err
	}
	return s.mutate(ctx, id, func(c *store.Correlation, now time.Time) (bool, error) {
		return c.Expire(now, reason, s.lim)
	})
}

// AckDispatch implements store.Store.
func (s *Store) AckDispatch(ctx context.Context, id string, claim store.Claim) (store.Result, error) {
	return s.mutate(ctx, id, func(c *store.Correlation, now time.Time) (bool, error) {
		return c.AckDispatch(claim, now, s.lim)
	})
}

// NackDispatch implements store.Store.
func (s *Store) NackDispatch(ctx context.Context, id string, claim store.Claim, errText string, retryAt time.Time) (store.Result, error) {
	return s.mutate(ctx, id, func(c *store.Correlation, now time.Time) (bool, error) {
		return c.NackDispatch(claim, errText, retryAt, now, s.lim)
	})
}

// Redispatch implements store.Store.
func (s *Store) Redispatch(ctx context.Context, id string) (store.Result, error) {
	return s.mutate(ctx, id, func(c *store.Correlation, now time.Time) (bool, error) {
		return c.Redispatch(now, s.lim)
	})
}

// sweep walks the due entries of one index inside one write and hands each
// decodable record to fn; the records for which fn says true are returned.
// Corrupt records are set aside and reported; index entries that lead
// nowhere are dropped. The write may run twice (in a group, then alone,
// when another operation's write failed), so what it returns is built
// afresh on each run.
func (s *Store) sweep(ctx context.Context, index []byte, bound []byte, limit int,
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
		for _, k := range due(b, bound, limit) {
			_, id, ok := splitTimeKey(k)
			c, err := t.load(id)
			var ce *store.CorruptError
			switch {
			case !ok || errors.Is(err, store.ErrNotFound):
				if err := del(b, k); err != nil {
					return err
				}
				continue
			case errors.As(err, &ce):
				corrupt = append(corrupt, ce)
				if err := t.quarantine(id, index, k, ce.Err); err != nil {
					return err
				}
				continue
			case err != nil:
				return &writeError{err}
			}
			// before names the entry that led here, so that a stale one is
			// moved to where the record says it belongs.
			before := entriesOf(c)
			before.set(index, k)
			picked, err := fn(t, c, before)
			if err != nil {
				return err
			}
			if picked {
				out = append(out, c)
			}
			o.events = append(o.events, store.EventOf(c))
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
	out, soft, err := s.sweep(ctx, bucketDeadline, timeBound(now), limit, func(t txn, c *store.Correlation, before entries) (bool, error) {
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

// ClaimDispatch implements store.Store.
func (s *Store) ClaimDispatch(ctx context.Context, instance string, now time.Time, lease time.Duration, limit int) ([]*store.Correlation, error) {
	if err := store.ValidateClaim(instance, lease, limit); err != nil {
		return nil, err
	}
	out, soft, err := s.sweep(ctx, bucketDispatch, timeBound(now), limit, func(t txn, c *store.Correlation, before entries) (bool, error) {
		claimed := c.ClaimDispatch(instance, now, lease, s.lim)
		return claimed, t.save(c, before)
	})
	if err != nil {
		return nil, err
	}
	return out, soft
}

// Purge implements store.Store.
func (s *Store) Purge(ctx context.Context, before time.Time, limit int) (int, error) {
	purged, soft, err := s.sweep(ctx, bucketPurge, appendTime(nil, before), limit, func(t txn, c *store.Correlation, e entries) (bool, error) {
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

// Subscribe implements store.Store.
func (s *Store) Subscribe(ctx context.Context) (<-chan store.Event, error) {
	if s.closed.Load() {
		return nil, store.ErrClosed
	}
	return s.hub.Subscribe(ctx)
}
