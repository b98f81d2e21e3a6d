package bolt

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"

	"go.etcd.io/bbolt"

	"github.com/corrstore/corrstore/store"
)

// List implements store.Store. It walks the creation-time index from the
// cursor (or the CreatedAfter/CreatedBefore bound) and stops at the other
// bound, so a time-bounded listing reads only its window. A listing of one
// namespace reads no other namespace's records: the index entry names the
// ref, so they are skipped before they are read (what a page costs does
// not depend on what other tenants store).
func (s *Store) List(ctx context.Context, f store.Filter) (store.Page, error) {
	if s.closed.Load() {
		return store.Page{}, store.ErrClosed
	}
	if err := f.Normalize(); err != nil {
		return store.Page{}, err
	}
	var page store.Page
	err := s.view(func(tx *bbolt.Tx) error {
		t := txn{tx, s}
		page = store.Page{}
		c := tx.Bucket(bucketCreated).Cursor()
		var lo, hi []byte // keys in [lo, hi)
		if !f.CreatedAfter.IsZero() {
			lo = appendTime(nil, f.CreatedAfter)
		}
		if !f.CreatedBefore.IsZero() {
			hi = appendTime(nil, f.CreatedBefore)
		}
		var after []byte // the cursor's key: strictly past it
		if f.Cursor != "" {
			at, ref, _ := store.DecodeCursor(f.Cursor)
			after = timeKey(at, ref.String())
		}
		var ns []byte // the namespace's ref prefix, "ns/"
		if f.Namespace != "" {
			ns = append([]byte(f.Namespace), '/')
		}
		inRange := func(k []byte) bool {
			return k != nil && (lo == nil || bytes.Compare(k, lo) >= 0) && (hi == nil || bytes.Compare(k, hi) < 0)
		}
		var k []byte
		var next func() ([]byte, []byte)
		if f.Order == store.OldestFirst {
			next = c.Next
			switch {
			case after != nil && (lo == nil || bytes.Compare(after, lo) >= 0):
				if k, _ = c.Seek(after); bytes.Equal(k, after) {
					k, _ = c.Next()
				}
			case lo != nil:
				k, _ = c.Seek(lo)
			default:
				k, _ = c.First()
			}
		} else {
			next = c.Prev
			start := hi
			if after != nil && (start == nil || bytes.Compare(after, start) < 0) {
				start = after
			}
			if start == nil {
				k, _ = c.Last()
			} else if k, _ = c.Seek(start); k == nil {
				k, _ = c.Last()
			} else {
				k, _ = c.Prev() // Seek lands at or after start; step below it
			}
		}
		for ; inRange(k); k, _ = next() {
			if err := ctx.Err(); err != nil {
				return fmt.Errorf("%w: list: %w", store.ErrUnavailable, err)
			}
			if ns != nil && (len(k) < 8 || !bytes.HasPrefix(k[8:], ns)) {
				continue // another namespace's
			}
			_, key, ok := splitTimeKey(k)
			if !ok {
				continue
			}
			if s.listLoad != nil {
				s.listLoad(key)
			}
			r, err := t.load(key)
			if errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrCorrupt) {
				continue // set aside, or removed: Get reports which
			}
			if err != nil {
				return err
			}
			if !f.Match(r) {
				continue
			}
			if f.Full {
				if err := t.attach(r); err != nil {
					return err
				}
			} else {
				r.Events = nil // a short timeline is kept inside the record
			}
			page.Items = append(page.Items, r)
			if len(page.Items) == f.Limit {
				page.NextCursor = store.EncodeCursor(r.CreatedAt, r.Ref())
				break
			}
		}
		return nil
	})
	return page, err
}

// Stats implements store.Store. Counts come from counters kept in the same
// transactions as the records; the oldest pending is the first key of the
// namespace's pending index.
func (s *Store) Stats(ctx context.Context, namespace string) (store.Stats, error) {
	if s.closed.Load() {
		return store.Stats{}, store.ErrClosed
	}
	if namespace != "" {
		if err := store.ValidateNamespace(namespace); err != nil {
			return store.Stats{}, err
		}
	}
	var st store.Stats
	err := s.view(func(tx *bbolt.Tx) error {
		st = store.Stats{Namespaces: map[string]store.NamespaceStats{}}
		var prefix []byte
		if namespace != "" {
			prefix = nsKey(namespace, nil)
		}
		c := tx.Bucket(bucketCounts).Cursor()
		for k, v := c.Seek(prefix); k != nil && hasPrefix(k, prefix); k, v = c.Next() {
			i := bytes.IndexByte(k, 0)
			if i < 0 || len(k) < i+3 {
				continue
			}
			ns, kind, value := string(k[:i]), string(k[i+1]), string(k[i+3:])
			n := decodeCount(v)
			if n == 0 {
				continue
			}
			e := nsStats(st, ns)
			switch kind {
			case kindState:
				e.States[store.State(value)] = n
			case kindDispatch:
				e.Dispatch[store.DispatchState(value)] = n
			case kindBytes:
				e.Bytes = n
				st.Namespaces[ns] = e
			}
		}
		if namespace != "" {
			nsStats(st, namespace)
		}
		pc := tx.Bucket(bucketPending).Cursor()
		for ns, e := range st.Namespaces {
			p := nsKey(ns, nil)
			if k, _ := pc.Seek(p); k != nil && hasPrefix(k, p) {
				if at, _, ok := splitTimeKey(k[len(p):]); ok {
					e.OldestPending = at
					st.Namespaces[ns] = e
				}
			}
		}
		st.EarlyReplies = decodeCount(tx.Bucket(bucketMeta).Get(metaEarlyCount))
		return nil
	})
	return st, err
}

func nsStats(st store.Stats, ns string) store.NamespaceStats {
	e, ok := st.Namespaces[ns]
	if !ok {
		e = store.NamespaceStats{States: map[store.State]int64{}, Dispatch: map[store.DispatchState]int64{}}
		st.Namespaces[ns] = e
	}
	return e
}

// Verify checks the file's page structure (bbolt's tx.Check) and that every
// index entry, counter, idempotency key and early reply agrees with the
// records and with its key: what tests run after each test and after a
// crash, and what an operator can run on a copy.
func (s *Store) Verify(ctx context.Context) error {
	return s.view(func(tx *bbolt.Tx) error {
		var errs []error
		for err := range tx.Check() {
			errs = append(errs, err)
		}
		if got, err := s.schemaOf(tx); err != nil || got != schemaVersion {
			errs = append(errs, fmt.Errorf("schema %d, want %d (%v)", got, schemaVersion, err))
		}
		idem := map[string]string{} // the idempotency entries the records imply
		want := map[string]map[string]bool{}
		for _, b := range [][]byte{bucketDeadline, bucketDispatch, bucketPurge, bucketCreated, bucketPending} {
			want[string(b)] = map[string]bool{}
		}
		counts := map[string]int64{}
		held := map[string]*store.Correlation{} // by ref string
		t := txn{tx, s}
		err := tx.Bucket(bucketCorr).ForEach(func(k, _ []byte) error {
			if err := ctx.Err(); err != nil {
				return err
			}
			c, err := t.load(string(k))
			if err != nil {
				errs = append(errs, err)
				return nil
			}
			e := entriesOf(c)
			for _, ix := range e.index() {
				if ix.key != nil {
					want[string(ix.bucket)][string(ix.key)] = true
				}
			}
			addCounts(counts, c)
			if c.IdempotencyKey != "" {
				idem[string(nsKey(c.Namespace, []byte(c.IdempotencyKey)))] = string(k)
			}
			held[string(k)] = c
			return nil
		})
		if err != nil {
			return err
		}
		errs = append(errs, verifyApart(tx, held)...)
		for name, keys := range want {
			b := tx.Bucket([]byte(name))
			n := 0
			b.ForEach(func(k, _ []byte) error {
				n++
				if !keys[string(k)] {
					errs = append(errs, fmt.Errorf("index %s: entry %x has no record that implies it", name, k))
				}
				return nil
			})
			if n != len(keys) {
				errs = append(errs, fmt.Errorf("index %s: %d entries, the records imply %d", name, n, len(keys)))
			}
		}
		tx.Bucket(bucketCounts).ForEach(func(k, v []byte) error {
			if got := decodeCount(v); got != counts[string(k)] {
				errs = append(errs, fmt.Errorf("counter %q is %d, the records count %d", k, got, counts[string(k)]))
			}
			delete(counts, string(k))
			return nil
		})
		for k, n := range counts {
			errs = append(errs, fmt.Errorf("counter %q is missing, the records count %d", k, n))
		}
		q := tx.Bucket(bucketQuarantine)
		tx.Bucket(bucketIdem).ForEach(func(k, v []byte) error {
			want, ok := idem[string(k)]
			if !ok && q.Get(v) != nil {
				return nil // its record was set aside: Register reports it
			}
			if !ok || want != string(v) {
				errs = append(errs, fmt.Errorf("idempotency key %q leads to %q, the records imply %q", k, v, want))
			}
			delete(idem, string(k))
			return nil
		})
		for k, ref := range idem {
			errs = append(errs, fmt.Errorf("idempotency key %q of %s is missing", k, ref))
		}
		errs = append(errs, verifyEarly(tx)...)
		q.ForEach(func(k, _ []byte) error {
			if _, err := store.ParseRef(string(k)); err != nil {
				errs = append(errs, fmt.Errorf("quarantine key %q is not a ref: %w", k, err))
			}
			return nil
		})
		return errors.Join(errs...)
	})
}

// verifyApart checks the replies stored apart against the records (by ref
// string): each record has Held.Count of them, under indexes 0…Count-1, of
// Held.Bytes in all, with their keys; none is left without a record.
func verifyApart(tx *bbolt.Tx, records map[string]*store.Correlation) []error {
	var errs []error
	type tally struct {
		n, bytes int
		keys     map[string]bool
	}
	seen := map[string]*tally{}
	tx.Bucket(bucketReplies).ForEach(func(k, v []byte) error {
		i := bytes.IndexByte(k, 0)
		c := records[string(k[:max(i, 0)])]
		if i > 0 && c == nil && tx.Bucket(bucketQuarantine).Get(k[:i]) != nil {
			return nil // its record was set aside: kept with it
		}
		if i < 0 || len(k) != i+5 || c == nil {
			errs = append(errs, fmt.Errorf("reply %q has no record", k))
			return nil
		}
		r, err := store.UnmarshalReply(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("reply %q: %w", k, err))
			return nil
		}
		ref := string(k[:i])
		tl := seen[ref]
		if tl == nil {
			tl = &tally{keys: map[string]bool{}}
			seen[ref] = tl
		}
		if idx := int(binary.BigEndian.Uint32(k[i+1:])); idx >= c.Held.Count {
			errs = append(errs, fmt.Errorf("reply %s #%d: the record holds %d", ref, idx, c.Held.Count))
		}
		tl.n++
		tl.bytes += len(r.Body)
		for _, rk := range store.ReplyKeys(c.Pattern, r) {
			tl.keys[rk] = true
		}
		return nil
	})
	for ref, c := range records {
		tl := seen[ref]
		if tl == nil {
			tl = &tally{keys: map[string]bool{}}
		}
		if tl.n != c.Held.Count || tl.bytes != c.Held.Bytes {
			errs = append(errs, fmt.Errorf("%s: %d replies of %d bytes stored apart, the record counts %d of %d", ref, tl.n, tl.bytes, c.Held.Count, c.Held.Bytes))
		}
	}
	tx.Bucket(bucketReplyKeys).ForEach(func(k, _ []byte) error {
		i := bytes.IndexByte(k, 0)
		if i > 0 && records[string(k[:i])] == nil && tx.Bucket(bucketQuarantine).Get(k[:i]) != nil {
			return nil
		}
		if i < 0 || seen[string(k[:i])] == nil || !seen[string(k[:i])].keys[string(k[i+1:])] {
			errs = append(errs, fmt.Errorf("reply key %q belongs to no reply stored apart", k))
		}
		return nil
	})
	return errs
}

// verifyEarly checks that each early reply sits under the ref it is for,
// that early_time indexes exactly the early replies, and the count.
func verifyEarly(tx *bbolt.Tx) []error {
	var errs []error
	times := map[string]bool{}
	var early int64
	tx.Bucket(bucketEarly).ForEach(func(k, v []byte) error {
		early++
		tk, ok := earlyTimeKeyOf(k)
		if !ok {
			errs = append(errs, fmt.Errorf("early reply key %q is malformed", k))
			return nil
		}
		times[string(tk)] = true
		e, err := store.UnmarshalEarly(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("early reply %q: %w", k, err))
		} else if !bytes.Equal(earlyPrefix(e.Ref().String()), k[:len(k)-16]) {
			errs = append(errs, fmt.Errorf("early reply for %s is stored under %q", e.Ref(), k))
		}
		return nil
	})
	if got := decodeCount(tx.Bucket(bucketMeta).Get(metaEarlyCount)); got != early {
		errs = append(errs, fmt.Errorf("early reply count is %d, the bucket holds %d", got, early))
	}
	n := 0
	tx.Bucket(bucketEarlyTime).ForEach(func(k, _ []byte) error {
		n++
		if !times[string(k)] {
			errs = append(errs, fmt.Errorf("early_time entry %x has no early reply", k))
		}
		return nil
	})
	if n != int(early) {
		errs = append(errs, fmt.Errorf("early_time index holds %d, early holds %d", n, early))
	}
	return errs
}
