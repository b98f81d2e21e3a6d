package bolt

import (
	"bytes"
	"encoding/binary"
	"time"

	"github.com/corrstore/corrstore/store"
)

// Buckets (schema 2). A record's key is its ref string "namespace/id"
// (store.Ref.String). Every index key is an 8-byte big-endian UnixNano
// followed by the ref, so a cursor walks an index in time order and stops at
// the first key past the bound: the cost of a pass is the number of entries
// due, not the number stored.
var (
	bucketMeta       = []byte("meta")       // schema version, early-reply count, secret:<name>
	bucketCorr       = []byte("corr")       // ref → record (store.MarshalCorrelation)
	bucketDeadline   = []byte("deadline")   // deadline‖ref, pending only
	bucketDispatch   = []byte("dispatch")   // handler\0ns\0next_at‖ref, dispatch pending only (leased: lease end)
	bucketPurge      = []byte("purge")      // outcome_at‖ref, decided and dispatch none or done
	bucketCreated    = []byte("created")    // created‖ref, every record (List)
	bucketPending    = []byte("pending")    // ns\0created‖ref, pending only (oldest pending)
	bucketCounts     = []byte("counts")     // ns\0s:state, ns\0d:dispatch and ns\0b:stored (bytes) → uint64
	bucketIdem       = []byte("idem")       // ns\0idempotency key → ref
	bucketEarly      = []byte("early")      // ref\0received‖seq → store.MarshalEarly
	bucketEarlyTime  = []byte("early_time") // received‖seq‖ref → nil
	bucketQuarantine = []byte("quarantine") // ref → bytes that did not decode
	bucketReplies    = []byte("replies")    // ref\0index (uint32) → store.MarshalReply: accepted replies, apart from the record
	bucketReplyKeys  = []byte("reply_keys") // ref\0key → nil: the store.ReplyKeys of every reply in bucketReplies
	bucketTimeline   = []byte("timeline")   // ref\0index (uint32) → JSON store.TimelineEvent: the kept timeline, apart from the record
	bucketLate       = []byte("late")       // ref\0index (uint32) → store.MarshalReply: the ring of late replies, apart from the record
)

var allBuckets = [][]byte{bucketMeta, bucketCorr, bucketDeadline, bucketDispatch, bucketPurge,
	bucketCreated, bucketPending, bucketCounts, bucketIdem, bucketEarly, bucketEarlyTime, bucketQuarantine, bucketReplies, bucketReplyKeys, bucketTimeline, bucketLate}

var (
	metaSchema     = []byte("schema")
	metaEarlyCount = []byte("early_count")
)

// metaSecret is the meta key of the store secret of that name.
func metaSecret(name string) []byte { return []byte("secret:" + name) }

// schemaVersion is the layout this package reads and writes. Schema 1 keyed
// everything by the bare ID (IDs were global); schema 2 kept the accepted
// replies, the timeline and the late ring inside the record. Open upgrades both
// (upgrade.go).
const schemaVersion = 3

// replyPrefix is the prefix of a ref's keys in bucketReplies and
// bucketReplyKeys. A ref string holds no NUL (names refuse control
// characters), so one ref's prefix never covers another's keys.
func replyPrefix(key string) []byte {
	return append(append(make([]byte, 0, len(key)+1+8), key...), 0)
}

func replyKey(key string, index int) []byte {
	return binary.BigEndian.AppendUint32(replyPrefix(key), uint32(index))
}

func appendTime(b []byte, t time.Time) []byte {
	n := t.UnixNano()
	if n < 0 {
		n = 0
	}
	return binary.BigEndian.AppendUint64(b, uint64(n))
}

// timeKey is t‖key, key being a ref string.
func timeKey(t time.Time, key string) []byte {
	return append(appendTime(make([]byte, 0, 8+len(key)), t), key...)
}

// splitTimeKey reads a timeKey: the time and the ref string.
func splitTimeKey(k []byte) (time.Time, string, bool) {
	if len(k) < 9 {
		return time.Time{}, "", false
	}
	return time.Unix(0, int64(binary.BigEndian.Uint64(k))), string(k[8:]), true
}

// timeBound is the first key after every key of time t: keys at or before t
// sort below it.
func timeBound(t time.Time) []byte {
	return appendTime(make([]byte, 0, 8), t.Add(1))
}

// dispatchPrefix is the prefix of the dispatch entries of one handler:
// handler\0, and with a namespace handler\0ns\0. A handler's entries are
// one range, each namespace's a range within it, so a claim walks only the
// handlers and namespace it serves. Names hold no NUL (control characters
// are refused), so one prefix never covers another name's keys.
func dispatchPrefix(handler, ns string) []byte {
	p := append(append(make([]byte, 0, len(handler)+len(ns)+2), handler...), 0)
	if ns != "" {
		p = append(append(p, ns...), 0)
	}
	return p
}

// dispatchKey is handler\0ns\0next_at‖ref.
func dispatchKey(handler, ns string, next time.Time, ref string) []byte {
	return append(appendTime(dispatchPrefix(handler, ns), next), ref...)
}

// splitDispatchKey reads a dispatchKey: its handler\0ns\0 prefix, its
// time and its ref string.
func splitDispatchKey(k []byte) (prefix []byte, at time.Time, ref string, ok bool) {
	h := bytes.IndexByte(k, 0)
	if h < 0 {
		return nil, time.Time{}, "", false
	}
	n := bytes.IndexByte(k[h+1:], 0)
	if n < 0 {
		return nil, time.Time{}, "", false
	}
	end := h + 1 + n + 1
	at, ref, ok = splitTimeKey(k[end:])
	return k[:end], at, ref, ok
}

func nsKey(ns string, rest []byte) []byte {
	return append(append(append(make([]byte, 0, len(ns)+1+len(rest)), ns...), 0), rest...)
}

// entries are the index entries and counters a record implies. Comparing
// the entries before and after a change gives exactly the index writes to
// make, so every operation keeps the indexes right with one code path.
type entries struct {
	deadline, dispatch, purge, created, pending []byte
	ns                                          string
	state                                       store.State
	disp                                        store.DispatchState
	bytes                                       int64 // store.Correlation.StoredBytes
}

func entriesOf(c *store.Correlation) entries {
	if c == nil {
		return entries{}
	}
	key := c.Ref().String()
	e := entries{created: timeKey(c.CreatedAt, key), ns: c.Namespace, state: c.State, disp: c.Dispatch.State,
		bytes: c.StoredBytes()}
	if c.State == store.StatePending {
		e.deadline = timeKey(c.Deadline, key)
		e.pending = nsKey(c.Namespace, e.created)
	}
	if c.Dispatch.State == store.DispatchPending {
		e.dispatch = dispatchKey(c.Callback.Handler, c.Namespace, c.Dispatch.NextAt, key)
	}
	if c.State.Terminal() && (c.Dispatch.State == store.DispatchNone || c.Dispatch.State == store.DispatchDone) {
		e.purge = timeKey(c.Outcome.At, key)
	}
	return e
}

func (e entries) index() [5]struct {
	bucket []byte
	key    []byte
} {
	return [5]struct {
		bucket []byte
		key    []byte
	}{{bucketDeadline, e.deadline}, {bucketDispatch, e.dispatch}, {bucketPurge, e.purge},
		{bucketCreated, e.created}, {bucketPending, e.pending}}
}

// set replaces the key of one index.
func (e *entries) set(bucket, key []byte) {
	switch string(bucket) {
	case string(bucketDeadline):
		e.deadline = key
	case string(bucketDispatch):
		e.dispatch = key
	case string(bucketPurge):
		e.purge = key
	}
}

func countKey(ns, kind, value string) []byte {
	return nsKey(ns, []byte(kind+":"+value))
}

// Counter kinds and the value of the stored-bytes counter.
const (
	kindState    = "s"
	kindDispatch = "d"
	kindBytes    = "b"
	bytesCounter = "stored"
)

// addCounts adds to counts (counter key → value) what c adds to the
// counters: what Verify and the upgrade compute from the records, and what
// reindex keeps up write by write.
func addCounts(counts map[string]int64, c *store.Correlation) {
	counts[string(countKey(c.Namespace, kindState, string(c.State)))]++
	if c.Dispatch.State != store.DispatchNone {
		counts[string(countKey(c.Namespace, kindDispatch, string(c.Dispatch.State)))]++
	}
	if n := c.StoredBytes(); n > 0 {
		counts[string(countKey(c.Namespace, kindBytes, bytesCounter))] += n
	}
}

func decodeCount(v []byte) int64 {
	if len(v) != 8 {
		return 0
	}
	return int64(binary.BigEndian.Uint64(v))
}

func encodeCount(n int64) []byte {
	return binary.BigEndian.AppendUint64(nil, uint64(max(n, 0)))
}

// earlyKey is ref\0received‖seq; earlyTimeKey is received‖seq‖ref.
func earlyKey(ref string, received time.Time, seq uint64) []byte {
	k := appendTime(append([]byte(ref), 0), received)
	return binary.BigEndian.AppendUint64(k, seq)
}

func earlyTimeKey(ref string, received time.Time, seq uint64) []byte {
	k := binary.BigEndian.AppendUint64(appendTime(nil, received), seq)
	return append(k, ref...)
}

// earlyKeyFromTime rebuilds the early key from an early_time key.
func earlyKeyFromTime(k []byte) ([]byte, bool) {
	if len(k) < 17 {
		return nil, false
	}
	return append(append(append([]byte(nil), k[16:]...), 0), k[:16]...), true
}

func earlyPrefix(ref string) []byte { return append([]byte(ref), 0) }

// earlyTimeKeyOf is the early_time key of an early key (ref\0received‖seq).
func earlyTimeKeyOf(k []byte) ([]byte, bool) {
	if len(k) < 18 || k[len(k)-17] != 0 {
		return nil, false
	}
	ref, tail := k[:len(k)-17], k[len(k)-16:]
	return append(append([]byte(nil), tail...), ref...), true
}

func hasPrefix(k, p []byte) bool { return bytes.HasPrefix(k, p) }
