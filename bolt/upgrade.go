package bolt

import (
	"bytes"
	"cmp"
	"fmt"
	"os"
	"strconv"

	"go.etcd.io/bbolt"

	"github.com/corrstore/corrstore/store"
)

// UpgradeReport says what upgrading a file's schema did. From == To when
// the file was already at the schema this build writes.
type UpgradeReport struct {
	Path     string
	From, To int
	// Records moved to their ref key.
	Records int
	// Quarantined: records that did not decode, set aside under
	// default/<id> (their namespace is unknown).
	Quarantined int
	// QuarantineKept: records set aside before, moved under default/<id>.
	QuarantineKept int
	// IdempotencyKeys mapped to their record's ref; IdempotencyDropped led
	// to no record.
	IdempotencyKeys, IdempotencyDropped int
	// EarlyReplies moved to default/<id> (schema 1 had no namespaces for
	// them); EarlyDropped did not decode.
	EarlyReplies, EarlyDropped int
	// IndexEntries rebuilt from the records (deadline, dispatch, purge,
	// created, pending).
	IndexEntries int
	// RepliesApart: accepted replies moved out of their record (schema 3).
	RepliesApart int
}

// Upgraded reports whether the schema changed.
func (r UpgradeReport) Upgraded() bool { return r.From != r.To }

// String is one line for an operator.
func (r UpgradeReport) String() string {
	if !r.Upgraded() {
		return fmt.Sprintf("%s is already at schema %d: nothing to do", r.Path, r.To)
	}
	return fmt.Sprintf("upgraded %s from schema %d to %d: %d records, %d set aside as undecodable (%d already were), "+
		"%d idempotency keys (%d dropped), %d early replies (%d dropped), %d index entries, %d replies stored apart",
		r.Path, r.From, r.To, r.Records, r.Quarantined, r.QuarantineKept,
		r.IdempotencyKeys, r.IdempotencyDropped, r.EarlyReplies, r.EarlyDropped, r.IndexEntries, r.RepliesApart)
}

func (r UpgradeReport) attrs() []any {
	return []any{"path", r.Path, "from", r.From, "to", r.To, "records", r.Records,
		"quarantined", r.Quarantined, "quarantine_kept", r.QuarantineKept,
		"idempotency_keys", r.IdempotencyKeys, "idempotency_dropped", r.IdempotencyDropped,
		"early_replies", r.EarlyReplies, "early_dropped", r.EarlyDropped, "index_entries", r.IndexEntries,
		"replies_apart", r.RepliesApart}
}

// Upgraded returns what Open's upgrade of the file did.
func (s *Store) Upgraded() UpgradeReport { return s.upgraded }

// Upgrade brings the file at opts.Path to the schema this build writes and
// closes it: what `corrstore upgrade --store bolt://PATH` runs. Any
// read-write Open does the same; this is for doing it on purpose, and
// saying what was done. The file must exist. ReadOnly is ignored.
func Upgrade(opts Options) (UpgradeReport, error) {
	opts.Path = cmp.Or(opts.Path, "corrstore.db")
	opts.ReadOnly = false
	if _, err := os.Stat(opts.Path); err != nil {
		return UpgradeReport{}, fmt.Errorf("upgrade %s: %w", opts.Path, err)
	}
	s, err := Open(opts)
	if err != nil {
		return UpgradeReport{}, err
	}
	r := s.Upgraded()
	return r, s.Close()
}

// upgrade rewrites a file of schema from, inside tx (so that a crash leaves
// the old schema whole, or the new one).
func upgrade(t txn, path string, from int) (UpgradeReport, error) {
	tx := t.tx
	u := &upgrader{tx: tx, t: t, from: from, r: UpgradeReport{Path: path, From: from, To: schemaVersion}}
	var steps []func() error
	switch from {
	case 1:
		steps = []func() error{u.resetDerived, u.quarantine, u.records, u.idempotency, u.early}
	case 2:
		steps = []func() error{u.resetDerived, u.records}
	default:
		return UpgradeReport{}, fmt.Errorf("open %s: no upgrade from schema %d", path, from)
	}
	for _, step := range steps {
		if err := step(); err != nil {
			return UpgradeReport{}, fmt.Errorf("upgrade %s from schema %d: %w", path, from, err)
		}
	}
	if err := tx.Bucket(bucketMeta).Put(metaSchema, []byte(strconv.Itoa(schemaVersion))); err != nil {
		return UpgradeReport{}, err
	}
	return u.r, nil
}

// upgrader rewrites a file of an earlier schema.
//
// Schema 1 → 2: every key that was an ID becomes a ref string. Records
// carry their namespace; early replies and set-aside records of schema 1 had
// none and go to the default namespace.
//
// Schema 2 → 3: the accepted replies move out of each record into
// bucketReplies, with their keys in bucketReplyKeys, the timeline into
// bucketTimeline and the late ring into bucketLate.
//
// Either way the indexes and counters (and from schema 1 early_time) are
// rebuilt from what they derive from, so they agree with the records
// whatever the old file held.
type upgrader struct {
	tx   *bbolt.Tx
	t    txn
	from int
	r    UpgradeReport
}

// derived are the buckets rebuilt rather than rewritten (early_time only
// from schema 1, whose early replies move).
var derived = [][]byte{bucketDeadline, bucketDispatch, bucketPurge, bucketCreated, bucketPending, bucketCounts, bucketEarlyTime}

func (u *upgrader) resetDerived() error {
	for _, name := range derived {
		if u.from > 1 && bytes.Equal(name, bucketEarlyTime) {
			continue
		}
		if u.tx.Bucket(name) == nil { // a bucket added after the file's schema
			if _, err := u.tx.CreateBucket(name); err != nil {
				return err
			}
			continue
		}
		if err := u.tx.DeleteBucket(name); err != nil {
			return err
		}
		if _, err := u.tx.CreateBucket(name); err != nil {
			return err
		}
	}
	return nil
}

// keysOf copies the keys of b: the rewrite changes b under a cursor.
func keysOf(b *bbolt.Bucket) [][]byte {
	var keys [][]byte
	_ = b.ForEach(func(k, _ []byte) error {
		keys = append(keys, bytes.Clone(k))
		return nil
	})
	return keys
}

// move puts b[k]'s value under to and deletes k.
func move(b *bbolt.Bucket, k, to []byte) error {
	v := bytes.Clone(b.Get(k))
	if err := b.Put(to, v); err != nil {
		return err
	}
	return b.Delete(k)
}

func defaultRef(id []byte) []byte {
	return append([]byte(store.DefaultNamespace+"/"), id...)
}

func (u *upgrader) quarantine() error {
	b := u.tx.Bucket(bucketQuarantine)
	for _, k := range keysOf(b) {
		if err := move(b, k, defaultRef(k)); err != nil {
			return err
		}
		u.r.QuarantineKept++
	}
	return nil
}

// records rewrites every record under its ref (schema 1 keyed it by its
// ID) with its replies stored apart, and rebuilds the indexes and counters.
func (u *upgrader) records() error {
	for _, name := range [][]byte{bucketReplies, bucketReplyKeys, bucketTimeline, bucketLate} {
		if _, err := u.tx.CreateBucketIfNotExists(name); err != nil {
			return err
		}
	}
	corr, q := u.tx.Bucket(bucketCorr), u.tx.Bucket(bucketQuarantine)
	counts := map[string]int64{}
	t := u.t
	for _, k := range keysOf(corr) {
		raw := bytes.Clone(corr.Get(k))
		c, err := store.UnmarshalCorrelation(raw)
		qk, was := k, ""
		if u.from == 1 {
			qk = defaultRef(k)
		}
		if err == nil {
			if was = c.Ref().String(); u.from == 1 {
				was = c.ID
			}
		}
		if err != nil || was != string(k) {
			if err := q.Put(qk, raw); err != nil {
				return err
			}
			if err := corr.Delete(k); err != nil {
				return err
			}
			u.r.Quarantined++
			continue
		}
		u.r.RepliesApart += len(c.Replies)
		if err := t.storeApart(c.Ref().String(), c); err != nil {
			return err
		}
		if err := t.storeEvents(c.Ref().String(), c); err != nil {
			return err
		}
		if err := t.storeLate(c.Ref().String(), c); err != nil {
			return err
		}
		c.Late = nil
		if !c.EventsInline() {
			c.Events = nil
		}
		if raw, err = store.MarshalCorrelation(c); err != nil {
			return err
		}
		if err := corr.Delete(k); err != nil {
			return err
		}
		if err := corr.Put([]byte(c.Ref().String()), raw); err != nil {
			return err
		}
		u.r.Records++
		for _, ix := range entriesOf(c).index() {
			if ix.key == nil {
				continue
			}
			if err := u.tx.Bucket(ix.bucket).Put(ix.key, []byte{}); err != nil {
				return err
			}
			u.r.IndexEntries++
		}
		addCounts(counts, c)
	}
	cb := u.tx.Bucket(bucketCounts)
	for k, n := range counts {
		if err := cb.Put([]byte(k), encodeCount(n)); err != nil {
			return err
		}
	}
	return nil
}

// idempotency maps each key (namespace\0key → id) to the ref of its
// record, which lives in the key's namespace.
func (u *upgrader) idempotency() error {
	b, corr := u.tx.Bucket(bucketIdem), u.tx.Bucket(bucketCorr)
	for _, k := range keysOf(b) {
		i := bytes.IndexByte(k, 0)
		ref := []byte(string(k[:max(i, 0)]) + "/" + string(b.Get(k)))
		if i < 0 || corr.Get(ref) == nil {
			if err := b.Delete(k); err != nil {
				return err
			}
			u.r.IdempotencyDropped++
			continue
		}
		if err := b.Put(k, ref); err != nil {
			return err
		}
		u.r.IdempotencyKeys++
	}
	return nil
}

// early moves id\0received‖seq to default/id\0received‖seq; the value is
// kept (an early reply with no namespace is read as the default one).
func (u *upgrader) early() error {
	b, tb := u.tx.Bucket(bucketEarly), u.tx.Bucket(bucketEarlyTime)
	for _, k := range keysOf(b) {
		e, err := store.UnmarshalEarly(b.Get(k))
		tail := len(k) - 16
		if err != nil || tail < 1 || k[tail-1] != 0 || string(k[:tail-1]) != e.CorrelationID || e.Namespace != "" {
			if err := b.Delete(k); err != nil {
				return err
			}
			u.r.EarlyDropped++
			continue
		}
		to := append(defaultRef(k[:tail-1]), k[tail-1:]...)
		if err := move(b, k, to); err != nil {
			return err
		}
		tk, _ := earlyTimeKeyOf(to)
		if err := tb.Put(tk, []byte{}); err != nil {
			return err
		}
		u.r.EarlyReplies++
	}
	return u.tx.Bucket(bucketMeta).Put(metaEarlyCount, encodeCount(int64(u.r.EarlyReplies)))
}
