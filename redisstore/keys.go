package redisstore

import (
	"fmt"
	"hash/fnv"
	"strconv"
	"strings"
	"time"

	"github.com/corrstore/corrstore/store"
)

// layout names the keys (schema 3; schema 2 kept the replies, the timeline and the late
// ring inside the record). A correlation is named by its ref
// string "namespace/id" (store.Ref.String): every key, index member and
// mapping below that names a correlation uses it, and its shard is
// FNV-1a(ref string) mod Shards. Every key of a correlation, and every index
// entry that points at it, lives under the hash tag of its shard,
// "{prefix:shard}", so one script touches one slot.
//
//	{p:s}:c:<ref>   string  header (write sequence, recent write tokens) ‖ record
//	{p:s}:r:<ref>   hash    accepted replies, apart from the record (schema 3): "i:<index>" → store.MarshalReply,
//	                        "k:<key>" → "" for each of their store.ReplyKeys
//	{p:s}:t:<ref>   hash    the kept timeline, apart from the record (schema 3): index → JSON store.TimelineEvent
//	{p:s}:l:<ref>   hash    the ring of late replies, apart from the record (schema 3): index → store.MarshalReply
//	{p:s}:e:<ref>   hash    early replies for an unregistered ref: digest → seq ‖ reply
//	{p:s}:i:<dref>  string  ref registered under the idempotency key whose derived ref is dref
//	{p:s}:dl        zset    pending refs by deadline (µs)
//	{p:s}:dp:<ns>:<handler>  zset  refs of a namespace whose outcome waits for dispatch to a
//	                        handler, by next attempt (µs): a claim reads only what it serves
//	                        (schema 2 had one {p:s}:dp for every handler; only the upgrade names it)
//	{p:s}:pg        zset    decided refs with dispatch none or done, by outcome time (µs)
//	{p:s}:cr        zset    every ref by creation time (µs): List
//	{p:s}:pd:<ns>   zset    pending refs of a namespace by creation time (µs): oldest pending
//	{p:s}:n         hash    counters: "<ns>:s:<state>", "<ns>:d:<dispatch>", "<ns>:b:stored" (bytes), "early", "eseq"
//	{p:s}:et        zset    early replies by arrival (µs), member "<digest> <ref>"
//	{p:s}:q         hash    quarantine: ref → bytes that did not decode
//	{p:0}:meta      hash    "shards", "schema" of the prefix; "upgrading" while an upgrade runs
//	{p:0}:live:<i>  string  liveness of store instance i (TTL liveTTL, refreshed every liveEvery)
//	{p:0}:secret:<name> string  a store secret (32 bytes), made once with SET NX
//	{p:0}:upgrade   string  the lock of a running Upgrade (TTL liveTTL, renewed every liveEvery)
//
// Schema 1 had the same keys named by the bare id (shard FNV-1a(id)); an id
// holds no '/', a ref string always does, so the two never collide and
// Upgrade tells them apart. The event channel is "<prefix>:events".
type layout struct {
	prefix string
	shards int
	tags   []string
}

func newLayout(prefix string, shards int) layout {
	l := layout{prefix: prefix, shards: shards, tags: make([]string, shards)}
	for i := range shards {
		l.tags[i] = "{" + prefix + ":" + strconv.Itoa(i) + "}"
	}
	return l
}

// shard is FNV-1a of a ref string (schema 1: of an id) modulo the shard
// count: stable across processes and releases (changing it would strand
// every stored record).
func (l layout) shard(key string) int {
	h := fnv.New32a()
	h.Write([]byte(key))
	return int(h.Sum32() % uint32(l.shards))
}

func (l layout) record(sh int, ref string) string   { return l.tags[sh] + ":c:" + ref }
func (l layout) early(sh int, ref string) string    { return l.tags[sh] + ":e:" + ref }
func (l layout) replies(sh int, ref string) string  { return l.tags[sh] + ":r:" + ref }
func (l layout) timeline(sh int, ref string) string { return l.tags[sh] + ":t:" + ref }
func (l layout) late(sh int, ref string) string     { return l.tags[sh] + ":l:" + ref }
func (l layout) idem(sh int, dref string) string    { return l.tags[sh] + ":i:" + dref }
func (l layout) deadline(sh int) string             { return l.tags[sh] + ":dl" }
func (l layout) dispatch(sh int) string             { return l.tags[sh] + ":dp" }

// dispatchOf is the dispatch index of one namespace's outcomes for one
// handler. A namespace holds no ':', so the key names exactly one pair.
func (l layout) dispatchOf(sh int, ns, handler string) string {
	return l.tags[sh] + ":dp:" + ns + ":" + handler
}

func (l layout) purge(sh int) string              { return l.tags[sh] + ":pg" }
func (l layout) created(sh int) string            { return l.tags[sh] + ":cr" }
func (l layout) pending(sh int, ns string) string { return l.tags[sh] + ":pd:" + ns }
func (l layout) counters(sh int) string           { return l.tags[sh] + ":n" }
func (l layout) earlyTime(sh int) string          { return l.tags[sh] + ":et" }
func (l layout) quarantine(sh int) string         { return l.tags[sh] + ":q" }
func (l layout) meta() string                     { return l.tags[0] + ":meta" }
func (l layout) live(instance string) string      { return l.tags[0] + ":live:" + instance }
func (l layout) secret(name string) string        { return l.tags[0] + ":secret:" + name }
func (l layout) upgradeLock() string              { return l.tags[0] + ":upgrade" }
func (l layout) channel() string                  { return l.prefix + ":events" }

// Counter fields of the counters hash.
const (
	fieldEarly    = "early"
	fieldEarlySeq = "eseq"
)

func stateField(ns string, st store.State) string           { return ns + ":s:" + string(st) }
func dispatchField(ns string, d store.DispatchState) string { return ns + ":d:" + string(d) }

// bytesField counts the namespace's stored bytes (store.Correlation.StoredBytes).
func bytesField(ns string) string { return ns + ":b:stored" }

// addCounts adds to counts (field → value) what c adds to its shard's
// counters: what the upgrade's recount computes from the records, and what
// reindex keeps up write by write.
func addCounts(counts map[string]int64, c *store.Correlation) {
	counts[stateField(c.Namespace, c.State)]++
	if c.Dispatch.State != store.DispatchNone {
		counts[dispatchField(c.Namespace, c.Dispatch.State)]++
	}
	if n := c.StoredBytes(); n > 0 {
		counts[bytesField(c.Namespace)] += n
	}
}

// micros is an index score: Unix microseconds, exact in a float64 (scores
// are doubles). Indexes therefore order by the microsecond; where the exact
// instant matters (is a deadline due?) the record decides, not the score.
func micros(t time.Time) int64 { return max(t.UnixMicro(), 0) }

// microsBefore is the highest score of an instant strictly before t.
func microsBefore(t time.Time) int64 {
	m := micros(t)
	if t.Equal(time.UnixMicro(m)) {
		return m - 1
	}
	return m
}

// Record header: the write sequence (16 hex digits) and the tokens of the
// last headerTokens writes, newest first (16 hex digits each; zeros before
// there were that many). The update script compares the header it was given
// with the stored one: any write in between changes it. A write sent again
// by go-redis after its answer was lost finds its token among the recent
// ones and answers "done", even when other writes came after it; only a
// retry that arrives more than headerTokens writes late is told "moved",
// and then the caller reads again and decides again (no effect is applied
// twice either way: the compare-and-set sees the record as it is).
const (
	headerTokens = 8
	headerLen    = 16 + 16*headerTokens // lua/update.lua and lua/create.lua use 144
	noToken      = "0000000000000000"
)

// header is the header of the write token that follows the one in prev
// (empty for a new record).
func header(prev, token string) string {
	w, _ := parseHeader(prev)
	tokens := strings.Repeat(noToken, headerTokens-1)
	if len(prev) == headerLen {
		tokens = prev[16 : headerLen-16]
	}
	return fmt.Sprintf("%016x%s%s", w+1, token, tokens)
}

func parseHeader(v string) (w uint64, ok bool) {
	if len(v) < headerLen {
		return 0, false
	}
	w, err := strconv.ParseUint(v[:16], 16, 64)
	return w, err == nil
}

// zentry is one index entry of a record: present, with a score.
type zentry struct {
	ok    bool
	score int64
}

func at(t time.Time) zentry { return zentry{true, micros(t)} }

// entries are the index entries and counters a record implies; the
// difference before and after a change gives the index writes to make, so
// every operation keeps the indexes right with one code path (as in bolt).
type entries struct {
	deadline, dispatch, purge, created, pending zentry
	ns                                          string
	handler                                     string // of the dispatch entry
	state                                       store.State
	disp                                        store.DispatchState
	bytes                                       int64 // store.Correlation.StoredBytes
}

// Index positions in entries.index().
const (
	ixDeadline = iota
	ixDispatch
	ixPurge
	ixCreated
	ixPending
	numIndexes
)

func entriesOf(c *store.Correlation) entries {
	if c == nil {
		return entries{}
	}
	e := entries{created: at(c.CreatedAt), ns: c.Namespace, handler: c.Callback.Handler, state: c.State,
		disp: c.Dispatch.State, bytes: c.StoredBytes()}
	if c.State == store.StatePending {
		e.deadline = at(c.Deadline)
		e.pending = at(c.CreatedAt)
	}
	if c.Dispatch.State == store.DispatchPending {
		e.dispatch = at(c.Dispatch.NextAt)
	}
	if c.State.Terminal() && c.Outcome != nil && (c.Dispatch.State == store.DispatchNone || c.Dispatch.State == store.DispatchDone) {
		e.purge = at(c.Outcome.At)
	}
	return e
}

func (e *entries) index() [numIndexes]*zentry {
	return [numIndexes]*zentry{&e.deadline, &e.dispatch, &e.purge, &e.created, &e.pending}
}

// entryKey is the key of index ix that holds e's entry.
func (l layout) entryKey(ix, sh int, e entries) string {
	if ix == ixDispatch {
		return l.dispatchOf(sh, e.ns, e.handler)
	}
	return l.indexKey(ix, sh, e.ns)
}

// indexKey is the key of index ix as schema 2 named it: all but the
// dispatch index are named so still (see entryKey).
func (l layout) indexKey(ix, sh int, ns string) string {
	switch ix {
	case ixDeadline:
		return l.deadline(sh)
	case ixDispatch:
		return l.dispatch(sh)
	case ixPurge:
		return l.purge(sh)
	case ixCreated:
		return l.created(sh)
	default:
		return l.pending(sh, ns)
	}
}

// script is the KEYS and the ops of one write, built up by its operation.
// KEYS[1] is the record; ops name their key by its position in KEYS.
type script struct {
	keys []string
	pos  map[string]int
	ops  []any
}

func newScript(record string) *script {
	return &script{keys: []string{record}, pos: map[string]int{record: 1}}
}

func (sc *script) key(k string) int {
	if p, ok := sc.pos[k]; ok {
		return p
	}
	sc.keys = append(sc.keys, k)
	sc.pos[k] = len(sc.keys)
	return len(sc.keys)
}

// Ops, 4 arguments each: name, key position, a, b (see ops.lua).
func (sc *script) zadd(k string, score int64, member string) {
	sc.ops = append(sc.ops, "za", sc.key(k), score, member)
}
func (sc *script) zrem(k, member string) { sc.ops = append(sc.ops, "zr", sc.key(k), "", member) }
func (sc *script) hincr(k, field string, delta int64) {
	sc.ops = append(sc.ops, "hi", sc.key(k), field, delta)
}
func (sc *script) del(k string) { sc.ops = append(sc.ops, "del", sc.key(k), "", "") }
func (sc *script) hset(k, field string, v []byte) {
	sc.ops = append(sc.ops, "hs", sc.key(k), field, v)
}

// storeApart adds the ops that store c.Replies (accepted by this step, or
// held inside a record of schema 2) in the replies hash of the ref key,
// under the indexes c.Held.Count-len(c.Replies) …, with their keys. The
// record written beside them holds none (see value).
func (sc *script) storeApart(l layout, sh int, key string, c *store.Correlation) error {
	if len(c.Replies) == 0 {
		return nil
	}
	h := l.replies(sh, key)
	base := c.ReplyBase()
	for i, r := range c.Replies {
		v, err := store.MarshalReply(r)
		if err != nil {
			return err
		}
		sc.hset(h, replyField(base+i), v)
		for _, k := range store.ReplyKeys(c.Pattern, r) {
			sc.hset(h, "k:"+k, nil)
		}
	}
	return nil
}

// storeEvents adds the ops that store c.Events in the timeline hash of the
// ref key under the indexes c.EventBase() …, and drop the events that these
// push out of the kept window (the last MaxEvents).
func (sc *script) storeEvents(l layout, sh int, key string, c *store.Correlation, lim store.Limits) error {
	if c.EventsInline() {
		return nil // kept inside the record
	}
	enc := func(ev store.TimelineEvent) ([]byte, error) { return store.MarshalEvent(ev), nil }
	return storeIndexed(sc, l.timeline(sh, key), c.Events, c.EventBase(), lim.MaxEvents, c.KeptFrom(lim), enc)
}

// storeLate adds the ops that store c.Late in the late hash of the ref key
// under the indexes c.LateBase() …, and drop the late replies that these
// push out of the ring (those of the previous ring, at most MaxLate, below
// c.LateFrom()).
func (sc *script) storeLate(l layout, sh int, key string, c *store.Correlation, lim store.Limits) error {
	return storeIndexed(sc, l.late(sh, key), c.Late, c.LateBase(), lim.MaxLate, c.LateFrom(), store.MarshalReply)
}

// storeIndexed adds the ops that put vs in hash h under the indexes base …
// and delete the entries they push out of a window of at most window
// entries that now starts at from.
func storeIndexed[T any](sc *script, h string, vs []T, base, window, from int, encode func(T) ([]byte, error)) error {
	if len(vs) == 0 {
		return nil
	}
	for i, v := range vs {
		raw, err := encode(v)
		if err != nil {
			return err
		}
		sc.hset(h, strconv.Itoa(base+i), raw)
	}
	for i := max(0, base-window); i < from; i++ {
		sc.ops = append(sc.ops, "hd", sc.key(h), strconv.Itoa(i), "")
	}
	return nil
}

// replyField is the field of the index-th accepted reply in a replies hash.
func replyField(index int) string { return "i:" + strconv.Itoa(index) }

// reindex adds the ops that move a record's entries from before to after;
// member is its ref string.
func (sc *script) reindex(l layout, sh int, member string, before, after entries) {
	bi, ai := before.index(), after.index()
	for ix := range numIndexes {
		b, a := bi[ix], ai[ix]
		bk, ak := l.entryKey(ix, sh, before), l.entryKey(ix, sh, after)
		if *b == *a && (!a.ok || bk == ak) {
			continue
		}
		if b.ok && (!a.ok || bk != ak) {
			sc.zrem(bk, member)
		}
		if a.ok {
			sc.zadd(ak, a.score, member)
		}
	}
	counters := l.counters(sh)
	if before.ns != after.ns || before.state != after.state {
		if before.state != "" {
			sc.hincr(counters, stateField(before.ns, before.state), -1)
		}
		if after.state != "" {
			sc.hincr(counters, stateField(after.ns, after.state), 1)
		}
	}
	if before.ns != after.ns || before.disp != after.disp {
		if before.disp != "" && before.disp != store.DispatchNone {
			sc.hincr(counters, dispatchField(before.ns, before.disp), -1)
		}
		if after.disp != "" && after.disp != store.DispatchNone {
			sc.hincr(counters, dispatchField(after.ns, after.disp), 1)
		}
	}
	switch {
	case before.ns == after.ns && before.bytes != after.bytes:
		sc.hincr(counters, bytesField(after.ns), after.bytes-before.bytes)
	case before.ns != after.ns:
		if before.bytes != 0 {
			sc.hincr(counters, bytesField(before.ns), -before.bytes)
		}
		if after.bytes != 0 {
			sc.hincr(counters, bytesField(after.ns), after.bytes)
		}
	}
}
