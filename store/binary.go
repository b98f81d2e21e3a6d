package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"time"
)

// recordV2 is the binary record encoding (schema 3): the version byte, then
// every field in a fixed order. Integers are varints, strings and byte
// slices a uvarint length and their raw bytes (bodies and callback data are
// never base64'd), times a varint of Unix nanoseconds (0: the zero time),
// lists a uvarint count and their items. Records of encoding 1 (JSON) are
// still read. A change of the order or of a field's type takes a new
// version byte.
const recordV2 = 2

// Enumerations are stored as one small number; unknown numbers do not
// decode.
var (
	patternCodes  = []Pattern{PatternSingle, PatternGather, PatternStream}
	stateCodes    = []State{StatePending, StateCompleted, StateTimedOut, StateCancelled}
	dispatchCodes = []DispatchState{DispatchNone, DispatchPending, DispatchDone, DispatchDead}
)

// maxDecodeItems bounds any list a record may claim to hold, so that
// arbitrary bytes cannot make the decoder allocate without bound.
const maxDecodeItems = 1 << 20

type enc struct{ b []byte }

func (e *enc) uint(v uint64) { e.b = binary.AppendUvarint(e.b, v) }
func (e *enc) int(v int64)   { e.b = binary.AppendVarint(e.b, v) }
func (e *enc) n(v int)       { e.int(int64(v)) }
func (e *enc) bool(v bool) {
	if v {
		e.b = append(e.b, 1)
	} else {
		e.b = append(e.b, 0)
	}
}
func (e *enc) bytes(v []byte) { e.uint(uint64(len(v))); e.b = append(e.b, v...) }
func (e *enc) str(v string)   { e.uint(uint64(len(v))); e.b = append(e.b, v...) }
func (e *enc) time(t time.Time) {
	if t.IsZero() {
		e.int(0)
		return
	}
	e.int(t.UnixNano())
}

func code[T comparable](e *enc, codes []T, v T, field string) error {
	i := slices.Index(codes, v)
	if i < 0 {
		return fmt.Errorf("%s: %v cannot be encoded", field, v)
	}
	e.uint(uint64(i))
	return nil
}

// dec reads what enc wrote. The first problem sticks: every later read
// returns zero values, and err says what and where.
type dec struct {
	b   []byte
	off int
	err error
}

func (d *dec) fail(what string) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: binary record: %s at byte %d", ErrCorrupt, what, d.off)
	}
}

func (d *dec) uint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b[d.off:])
	if n <= 0 {
		d.fail("bad uvarint")
		return 0
	}
	d.off += n
	return v
}

func (d *dec) int() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b[d.off:])
	if n <= 0 {
		d.fail("bad varint")
		return 0
	}
	d.off += n
	return v
}

func (d *dec) n() int {
	v := d.int()
	if v < math.MinInt32 || v > math.MaxInt32 {
		d.fail("integer out of range")
		return 0
	}
	return int(v)
}

func (d *dec) bool() bool {
	switch v := d.uint(); v {
	case 0:
		return false
	case 1:
		return true
	}
	d.fail("bad bool")
	return false
}

func (d *dec) raw() []byte {
	l := d.uint()
	if d.err != nil {
		return nil
	}
	if l > uint64(len(d.b)-d.off) {
		d.fail("length past the end")
		return nil
	}
	v := d.b[d.off : d.off+int(l)]
	d.off += int(l)
	return v
}

func (d *dec) bytes() []byte {
	v := d.raw()
	if len(v) == 0 {
		return nil
	}
	return append([]byte(nil), v...)
}

func (d *dec) str() string { return string(d.raw()) }

func (d *dec) time() time.Time {
	v := d.int()
	if v == 0 {
		return time.Time{}
	}
	return time.Unix(0, v).UTC()
}

func (d *dec) count() int {
	v := d.uint()
	if v > maxDecodeItems || v > uint64(len(d.b)-d.off) { // every item takes a byte at least
		d.fail("count past the end")
		return 0
	}
	return int(v)
}

func decodeCode[T any](d *dec, codes []T) T {
	var zero T
	v := d.uint()
	if d.err != nil {
		return zero
	}
	if v >= uint64(len(codes)) {
		d.fail("unknown code")
		return zero
	}
	return codes[v]
}

func (e *enc) reply(r Reply) {
	e.str(r.ID)
	e.str(r.From)
	e.n(r.Seq)
	e.bool(r.Final)
	e.bytes(r.Body)
	e.str(r.Error)
	e.time(r.ReceivedAt)
}

func (d *dec) reply() Reply {
	return Reply{ID: d.str(), From: d.str(), Seq: d.n(), Final: d.bool(), Body: d.bytes(), Error: d.str(), ReceivedAt: d.time()}
}

func (e *enc) replies(rs []Reply) {
	e.uint(uint64(len(rs)))
	for _, r := range rs {
		e.reply(r)
	}
}

func (d *dec) replies() []Reply {
	n := d.count()
	if n == 0 {
		return nil
	}
	out := make([]Reply, 0, n)
	for range n {
		if d.err != nil {
			return nil
		}
		out = append(out, d.reply())
	}
	return out
}

func (e *enc) event(ev TimelineEvent) {
	e.time(ev.At)
	e.str(string(ev.Type))
	e.str(ev.Detail)
}

func (d *dec) event() TimelineEvent {
	return TimelineEvent{At: d.time(), Type: EventType(d.str()), Detail: d.str()}
}

// appendCorrelation is the binary encoding of c, after its version byte.
func appendCorrelation(b []byte, c *Correlation) ([]byte, error) {
	e := &enc{b: b}
	e.str(c.ID)
	e.str(c.Namespace)
	err := code(e, patternCodes, c.Pattern, "pattern")
	e.n(c.Expect)
	e.n(c.Quorum)
	e.bool(c.Optional)
	e.int(int64(c.Timeout))
	e.time(c.Deadline)
	e.str(c.Destination)
	e.str(c.ReplyTo)
	e.str(c.Owner)
	e.str(c.Callback.Handler)
	e.bytes(c.Callback.Data)
	e.uint(uint64(len(c.Labels)))
	for _, k := range slices.Sorted(maps.Keys(c.Labels)) {
		e.str(k)
		e.str(c.Labels[k])
	}
	e.str(c.IdempotencyKey)
	err = errors.Join(err, code(e, stateCodes, c.State, "state"))
	e.bool(c.Outcome != nil)
	if o := c.Outcome; o != nil {
		err = errors.Join(err, code(e, stateCodes, o.State, "outcome.state"))
		e.time(o.At)
		e.str(o.Reason)
		e.bool(o.Partial)
		e.bool(o.NoReply)
	}
	h := c.Held
	e.n(h.Count)
	e.n(h.Bytes)
	e.n(h.MaxSeq)
	e.bool(h.Final)
	e.n(h.FinalSeq)
	e.replies(c.Replies)
	e.replies(c.Late)
	e.uint(uint64(len(c.LateRing)))
	for _, le := range c.LateRing {
		e.n(le.Bytes)
		e.uint(uint64(len(le.Keys)))
		for _, k := range le.Keys {
			e.str(k)
		}
	}
	e.n(c.LateSeq)
	e.n(c.LateCount)
	e.n(c.DuplicateCount)
	d := c.Dispatch
	err = errors.Join(err, code(e, dispatchCodes, d.State, "dispatch.state"))
	e.n(d.Attempts)
	e.time(d.NextAt)
	e.str(d.LeaseOwner)
	e.time(d.ClaimedAt)
	e.n(d.AttemptLimit)
	e.n(d.Settled)
	e.str(d.LastError)
	e.time(d.DoneAt)
	e.uint(uint64(len(c.Events)))
	for _, ev := range c.Events {
		e.event(ev)
	}
	e.n(c.EventsDropped)
	e.n(c.EventSeq)
	e.str(c.Fingerprint)
	e.str(c.Nonce)
	e.int(c.Version)
	e.time(c.CreatedAt)
	e.time(c.UpdatedAt)
	return e.b, err
}

// decodeCorrelation reads what appendCorrelation wrote.
func decodeCorrelation(b []byte) (*Correlation, error) {
	d := &dec{b: b}
	c := &Correlation{ID: d.str(), Namespace: d.str()}
	c.Pattern = decodeCode(d, patternCodes)
	c.Expect, c.Quorum, c.Optional = d.n(), d.n(), d.bool()
	c.Timeout = time.Duration(d.int())
	c.Deadline = d.time()
	c.Destination, c.ReplyTo, c.Owner = d.str(), d.str(), d.str()
	c.Callback = Callback{Handler: d.str(), Data: d.bytes()}
	if n := d.count(); n > 0 {
		c.Labels = make(map[string]string, n)
		for range n {
			k := d.str()
			c.Labels[k] = d.str()
		}
	}
	c.IdempotencyKey = d.str()
	c.State = decodeCode(d, stateCodes)
	if d.bool() {
		c.Outcome = &Outcome{State: decodeCode(d, stateCodes), At: d.time(), Reason: d.str(), Partial: d.bool(), NoReply: d.bool()}
	}
	c.Held = ReplyStats{Count: d.n(), Bytes: d.n(), MaxSeq: d.n(), Final: d.bool(), FinalSeq: d.n()}
	c.Replies = d.replies()
	c.Late = d.replies()
	if n := d.count(); n > 0 {
		c.LateRing = make([]LateEntry, 0, n)
		for range n {
			le := LateEntry{Bytes: d.n()}
			for range d.count() {
				le.Keys = append(le.Keys, d.str())
			}
			c.LateRing = append(c.LateRing, le)
		}
	}
	c.LateSeq, c.LateCount, c.DuplicateCount = d.n(), d.n(), d.n()
	c.Dispatch = Dispatch{State: decodeCode(d, dispatchCodes), Attempts: d.n(), NextAt: d.time(), LeaseOwner: d.str(),
		ClaimedAt: d.time(), AttemptLimit: d.n(), Settled: d.n(), LastError: d.str(), DoneAt: d.time()}
	if n := d.count(); n > 0 {
		c.Events = make([]TimelineEvent, 0, n)
		for range n {
			c.Events = append(c.Events, d.event())
		}
	}
	c.EventsDropped, c.EventSeq = d.n(), d.n()
	c.Fingerprint, c.Nonce = d.str(), d.str()
	c.Version = d.int()
	c.CreatedAt, c.UpdatedAt = d.time(), d.time()
	if d.err == nil && d.off != len(d.b) {
		d.fail(fmt.Sprintf("%d bytes after the record", len(d.b)-d.off))
	}
	if d.err != nil {
		return nil, d.err
	}
	return c, nil
}
