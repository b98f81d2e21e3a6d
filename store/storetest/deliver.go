package storetest

import (
	"bytes"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/corrstore/corrstore/internal/testenv"
	"github.com/corrstore/corrstore/store"
)

func deliverTests() []testCase {
	return []testCase{
		{name: "SingleFirstReplyCompletes", run: testDeliverSingle},
		{name: "GatherExpectCompletes", run: testDeliverGather},
		{name: "GatherQuorumPartialAtDeadline", run: testDeliverGatherQuorum},
		{name: "GatherBelowQuorumTimesOut", run: testDeliverGatherBelowQuorum},
		{name: "GatherNeedsDedupeKey", run: testDeliverGatherNeedsKey},
		{name: "StreamInSeqOrder", run: testDeliverStream},
		{name: "StreamFinalWaitsForAll", run: testDeliverStreamFinalFirst},
		{name: "StreamInvalid", run: testDeliverStreamInvalid},
		{name: "OptionalNoReply", run: testDeliverOptional},
		{name: "Dedupe", run: testDeliverDedupe},
		{name: "DuplicateAfterOutcome", run: testDeliverDuplicateAfterOutcome},
		{name: "Concurrent", run: testDeliverConcurrent},
		{name: "Late", limits: store.Limits{MaxLate: 3, MaxEvents: 5}, run: testDeliverLate},
		{name: "ErrorReply", run: testDeliverErrorReply},
		{name: "BodyTooLarge", limits: store.Limits{MaxBodyBytes: 8}, run: testDeliverBodyTooLarge},
		{name: "RecordTooLarge", limits: store.Limits{MaxBodyBytes: 10, MaxRecordBytes: 25}, run: testDeliverRecordTooLarge},
		{name: "LateRingBytes", limits: store.Limits{MaxBodyBytes: 30, MaxLateBytes: 25}, run: testDeliverLateRingBytes},
		{name: "ConcurrentSingle", run: testDeliverConcurrentSingle},
		{name: "ConcurrentGather", run: testDeliverConcurrentGather},
		{name: "InvalidReply", limits: store.Limits{MaxReplies: 20}, run: testDeliverInvalidReply},
		{name: "InvalidID", run: testDeliverInvalidID},
		{name: "EarlyApplied", run: testDeliverEarlyApplied},
		{name: "EarlyGather", run: testDeliverEarlyGather},
		{name: "EarlyWindow", limits: store.Limits{EarlyReplyWindow: time.Minute}, run: testDeliverEarlyWindow},
		{name: "EarlyCap", limits: store.Limits{MaxEarlyReplies: 3}, run: testDeliverEarlyCap},
		{name: "EarlyOff", limits: store.Limits{EarlyReplyWindow: -1}, run: testDeliverEarlyOff},
		{name: "BoundToRegistration", run: testDeliverBound},
		{name: "RepliesApart", run: testDeliverRepliesApart},
		{name: "BoundNeverBuffered", run: testDeliverBoundNeverBuffered},
	}
}

func testDeliverSingle(t *testing.T, e *env) {
	e.register(single("dl-single"))
	e.clock.Add(3 * time.Second)
	at := e.now()
	res := e.deliver(ref("dl-single"), store.Reply{ID: "r1", From: "svc-a", Body: []byte(`{"ok":true}`)}, store.DeliverCompleted)
	for name, c := range map[string]*store.Correlation{"result": res.Correlation, "get": e.get(ref("dl-single"))} {
		t.Run(name, func(t *testing.T) {
			require.Equal(t, store.StateCompleted, c.State)
			require.NotNil(t, c.Outcome)
			require.Equal(t, store.StateCompleted, c.Outcome.State)
			requireTime(t, at, c.Outcome.At, "outcome time comes from the clock")
			require.False(t, c.Outcome.Partial)
			require.False(t, c.Outcome.NoReply)
			require.Equal(t, store.ReplyStats{Count: 1, Bytes: len(`{"ok":true}`)}, c.Held)
			if name == "result" {
				require.Empty(t, c.Replies, "Deliver answers the correlation without its replies")
				return
			}
			require.Len(t, c.Replies, 1)
			require.Equal(t, "r1", c.Replies[0].ID)
			require.Equal(t, "svc-a", c.Replies[0].From)
			require.Equal(t, []byte(`{"ok":true}`), c.Replies[0].Body)
			requireTime(t, at, c.Replies[0].ReceivedAt)
			require.Greater(t, c.Version, int64(1), "a reply changes the version")
			requireTime(t, at, c.UpdatedAt)
			require.True(t, hasEvent(c, store.EventReplyAccepted))
			require.True(t, hasEvent(c, store.EventOutcome))
		})
	}

	e.clock.Add(time.Second)
	res = e.deliver(ref("dl-single"), reply("r2"), store.DeliverLate)
	c := e.get(ref("dl-single"))
	require.Equal(t, store.StateCompleted, c.State)
	requireTime(t, at, c.Outcome.At, "a late reply does not change the outcome")
	require.Len(t, c.Replies, 1)
	require.Equal(t, 1, c.LateCount)
	require.Len(t, c.Late, 1)
	require.Equal(t, "r2", c.Late[0].ID)
	require.Equal(t, res.Correlation.Version, c.Version)
}

func testDeliverGather(t *testing.T, e *env) {
	e.register(&store.Correlation{ID: "dl-gather", Pattern: store.PatternGather, Expect: 3, Timeout: time.Minute})
	res := e.deliver(ref("dl-gather"), store.Reply{From: "a", Body: []byte("1")}, store.DeliverAccepted)
	require.Equal(t, store.StatePending, res.Correlation.State)
	require.Equal(t, 1, res.Correlation.Held.Count)
	e.deliver(ref("dl-gather"), store.Reply{From: "b", Body: []byte("2")}, store.DeliverAccepted)
	e.deliver(ref("dl-gather"), store.Reply{From: "a", Body: []byte("1 again")}, store.DeliverDuplicate)
	require.Equal(t, store.StatePending, e.get(ref("dl-gather")).State, "a duplicate does not count towards Expect")
	res = e.deliver(ref("dl-gather"), store.Reply{ID: "c-1", Body: []byte("3")}, store.DeliverCompleted)
	c := e.get(ref("dl-gather"))
	require.Equal(t, store.StateCompleted, c.State)
	require.False(t, c.Outcome.Partial)
	require.Len(t, c.Replies, 3)
	require.Equal(t, []string{"a", "b", ""}, []string{c.Replies[0].From, c.Replies[1].From, c.Replies[2].From})
	require.Equal(t, 1, c.DuplicateCount)
	require.Equal(t, res.Correlation.Version, c.Version)
}

func testDeliverGatherQuorum(t *testing.T, e *env) {
	e.register(&store.Correlation{ID: "dl-quorum", Pattern: store.PatternGather, Expect: 3, Quorum: 2, Timeout: time.Minute})
	e.deliver(ref("dl-quorum"), store.Reply{From: "a"}, store.DeliverAccepted)
	e.deliver(ref("dl-quorum"), store.Reply{From: "b"}, store.DeliverAccepted)
	e.clock.Add(59 * time.Second)
	require.Empty(t, e.expireDue(10), "not due yet")
	e.clock.Add(time.Second)
	got := e.expireDue(10)
	require.Equal(t, []string{"dl-quorum"}, ids(got))
	c := e.get(ref("dl-quorum"))
	require.Equal(t, store.StateCompleted, c.State, "quorum met at the deadline completes")
	require.True(t, c.Outcome.Partial)
	require.False(t, c.Outcome.NoReply)
	require.Equal(t, store.ReasonDeadline, c.Outcome.Reason)
	requireTime(t, e.now(), c.Outcome.At)
	require.Len(t, c.Replies, 2)
}

func testDeliverGatherBelowQuorum(t *testing.T, e *env) {
	e.register(&store.Correlation{ID: "dl-below", Pattern: store.PatternGather, Expect: 3, Quorum: 2, Timeout: time.Minute})
	e.register(&store.Correlation{ID: "dl-noquorum", Pattern: store.PatternGather, Expect: 3, Timeout: time.Minute})
	e.deliver(ref("dl-below"), store.Reply{From: "a", Body: []byte("x")}, store.DeliverAccepted)
	e.deliver(ref("dl-noquorum"), store.Reply{From: "a"}, store.DeliverAccepted)
	e.deliver(ref("dl-noquorum"), store.Reply{From: "b"}, store.DeliverAccepted)
	e.clock.Add(time.Minute)
	require.Equal(t, []string{"dl-below", "dl-noquorum"}, ids(e.expireDue(10)))

	c := e.get(ref("dl-below"))
	require.Equal(t, store.StateTimedOut, c.State)
	require.False(t, c.Outcome.Partial)
	require.Len(t, c.Replies, 1, "the partial replies are kept")
	require.Equal(t, []byte("x"), c.Replies[0].Body)

	c = e.get(ref("dl-noquorum"))
	require.Equal(t, store.StateTimedOut, c.State, "quorum 0 means no partial success")
	require.Len(t, c.Replies, 2)
}

func testDeliverGatherNeedsKey(t *testing.T, e *env) {
	e.register(&store.Correlation{ID: "dl-gather-key", Pattern: store.PatternGather, Expect: 2, Timeout: time.Minute})
	before := e.get(ref("dl-gather-key"))
	_, err := e.s.Deliver(e.ctx, ref("dl-gather-key"), store.Reply{Body: []byte("anonymous")})
	requireFieldError(t, err, store.ErrInvalid, "reply.from")
	require.Equal(t, snap(before), snap(e.get(ref("dl-gather-key"))), "a rejected reply changes nothing")
	e.deliver(ref("dl-gather-key"), store.Reply{ID: "only-id"}, store.DeliverAccepted)
}

func testDeliverStream(t *testing.T, e *env) {
	e.register(&store.Correlation{ID: "dl-stream", Pattern: store.PatternStream, Timeout: time.Minute})
	order := []int{3, 0, 5, 1, 4, 2}
	for i, seq := range order {
		want := store.DeliverAccepted
		if i == len(order)-1 {
			want = store.DeliverCompleted
		}
		e.clock.Add(time.Millisecond)
		res := e.deliver(ref("dl-stream"), store.Reply{Seq: seq, Final: seq == 5, Body: []byte(fmt.Sprint(seq))}, want)
		require.Equal(t, i+1, res.Correlation.Held.Count)
		got := e.get(ref("dl-stream")).Replies
		seqs := make([]int, len(got))
		for j, r := range got {
			seqs[j] = r.Seq
		}
		require.IsIncreasing(t, seqs, "replies are kept in Seq order after seq %d", seq)
	}
	c := e.get(ref("dl-stream"))
	require.Equal(t, store.StateCompleted, c.State)
	require.Len(t, c.Replies, 6)
	for i, r := range c.Replies {
		require.Equal(t, i, r.Seq)
		require.Equal(t, []byte(fmt.Sprint(i)), r.Body)
		require.Equal(t, i == 5, r.Final)
	}
}

func testDeliverStreamFinalFirst(t *testing.T, e *env) {
	e.register(&store.Correlation{ID: "dl-final-first", Pattern: store.PatternStream, Timeout: time.Minute})
	e.deliver(ref("dl-final-first"), store.Reply{Seq: 2, Final: true}, store.DeliverAccepted)
	e.deliver(ref("dl-final-first"), store.Reply{Seq: 0}, store.DeliverAccepted)
	require.Equal(t, store.StatePending, e.get(ref("dl-final-first")).State, "seq 1 is missing")
	e.deliver(ref("dl-final-first"), store.Reply{Seq: 1}, store.DeliverCompleted)

	// A stream whose only reply is final at seq 0 completes at once.
	e.register(&store.Correlation{ID: "dl-final-zero", Pattern: store.PatternStream, Timeout: time.Minute})
	e.deliver(ref("dl-final-zero"), store.Reply{Seq: 0, Final: true}, store.DeliverCompleted)
}

func testDeliverStreamInvalid(t *testing.T, e *env) {
	e.register(&store.Correlation{ID: "dl-stream-bad", Pattern: store.PatternStream, Timeout: time.Minute})
	e.deliver(ref("dl-stream-bad"), store.Reply{Seq: 0}, store.DeliverAccepted)
	e.deliver(ref("dl-stream-bad"), store.Reply{Seq: 2, Final: true}, store.DeliverAccepted)
	before := e.get(ref("dl-stream-bad"))

	_, err := e.s.Deliver(e.ctx, ref("dl-stream-bad"), store.Reply{Seq: 3})
	requireFieldError(t, err, store.ErrInvalid, "reply.seq")
	_, err = e.s.Deliver(e.ctx, ref("dl-stream-bad"), store.Reply{Seq: 1, Final: true})
	requireFieldError(t, err, store.ErrInvalid, "reply.final")
	require.Equal(t, snap(before), snap(e.get(ref("dl-stream-bad"))), "rejected replies change nothing")

	e.register(&store.Correlation{ID: "dl-stream-low-final", Pattern: store.PatternStream, Timeout: time.Minute})
	e.deliver(ref("dl-stream-low-final"), store.Reply{Seq: 5}, store.DeliverAccepted)
	_, err = e.s.Deliver(e.ctx, ref("dl-stream-low-final"), store.Reply{Seq: 3, Final: true})
	requireFieldError(t, err, store.ErrInvalid, "reply.final")
	require.Equal(t, store.StatePending, e.get(ref("dl-stream-low-final")).State)
}

func testDeliverOptional(t *testing.T, e *env) {
	e.register(&store.Correlation{ID: "dl-optional", Optional: true, Timeout: time.Minute})
	e.register(&store.Correlation{ID: "dl-optional-answered", Optional: true, Timeout: time.Minute})
	e.register(&store.Correlation{ID: "dl-optional-stream", Pattern: store.PatternStream, Optional: true, Timeout: time.Minute})
	e.deliver(ref("dl-optional-answered"), reply("r"), store.DeliverCompleted)
	e.deliver(ref("dl-optional-stream"), store.Reply{Seq: 0}, store.DeliverAccepted)
	e.clock.Add(time.Minute)
	require.Equal(t, []string{"dl-optional", "dl-optional-stream"}, ids(e.expireDue(10)))

	c := e.get(ref("dl-optional"))
	require.Equal(t, store.StateCompleted, c.State, "an optional correlation with no reply completes at its deadline")
	require.True(t, c.Outcome.NoReply)
	require.False(t, c.Outcome.Partial)
	require.Empty(t, c.Replies)

	c = e.get(ref("dl-optional-answered"))
	require.Equal(t, store.StateCompleted, c.State)
	require.False(t, c.Outcome.NoReply)

	c = e.get(ref("dl-optional-stream"))
	require.Equal(t, store.StateTimedOut, c.State, "an optional stream with some replies times out")
	require.False(t, c.Outcome.NoReply)
	require.Len(t, c.Replies, 1)
}

func testDeliverDedupe(t *testing.T, e *env) {
	e.register(&store.Correlation{ID: "dl-dedupe-gather", Pattern: store.PatternGather, Expect: 10, Timeout: time.Minute})
	e.register(&store.Correlation{ID: "dl-dedupe-stream", Pattern: store.PatternStream, Timeout: time.Minute})
	steps := []struct {
		id   string
		r    store.Reply
		want store.DeliverStatus
	}{
		{"dl-dedupe-gather", store.Reply{ID: "x", From: "a"}, store.DeliverAccepted},
		{"dl-dedupe-gather", store.Reply{ID: "x", From: "b", Body: []byte("other")}, store.DeliverDuplicate}, // ID is the key
		{"dl-dedupe-gather", store.Reply{From: "a"}, store.DeliverAccepted},                                  // key from:a, not id:x
		{"dl-dedupe-gather", store.Reply{From: "a", Body: []byte("again")}, store.DeliverDuplicate},
		{"dl-dedupe-gather", store.Reply{ID: "y", From: "a"}, store.DeliverAccepted},
		{"dl-dedupe-stream", store.Reply{Seq: 1}, store.DeliverAccepted},
		{"dl-dedupe-stream", store.Reply{Seq: 1, Body: []byte("other")}, store.DeliverDuplicate}, // seq:1
		{"dl-dedupe-stream", store.Reply{ID: "s", Seq: 1}, store.DeliverDuplicate},               // the same seq, whatever the ID
		{"dl-dedupe-stream", store.Reply{ID: "s", Seq: 2}, store.DeliverAccepted},
		{"dl-dedupe-stream", store.Reply{ID: "s", Seq: 3}, store.DeliverDuplicate}, // id:s
	}
	for i, st := range steps {
		before := e.get(ref(st.id))
		e.clock.Add(time.Second)
		e.deliver(ref(st.id), st.r, st.want)
		after := e.get(ref(st.id))
		if st.want == store.DeliverDuplicate {
			require.Equal(t, snap(before), snap(after), "step %d: a duplicate changes no version, reply or event", i)
			require.Equal(t, before.DuplicateCount+1, after.DuplicateCount, "step %d: a duplicate is counted", i)
		} else {
			require.Equal(t, before.Version+1, after.Version, "step %d", i)
			require.Len(t, after.Replies, len(before.Replies)+1, "step %d", i)
		}
	}
	require.Equal(t, 2, e.get(ref("dl-dedupe-gather")).DuplicateCount)
	require.Equal(t, 3, e.get(ref("dl-dedupe-stream")).DuplicateCount)
}

func testDeliverDuplicateAfterOutcome(t *testing.T, e *env) {
	e.register(&store.Correlation{ID: "dl-dup-after", Pattern: store.PatternGather, Expect: 2, Timeout: time.Minute})
	e.deliver(ref("dl-dup-after"), store.Reply{From: "a"}, store.DeliverAccepted)
	e.deliver(ref("dl-dup-after"), store.Reply{From: "b"}, store.DeliverCompleted)
	before := e.get(ref("dl-dup-after"))
	e.clock.Add(time.Second)
	e.deliver(ref("dl-dup-after"), store.Reply{From: "a", Body: []byte("resent")}, store.DeliverDuplicate)
	after := e.get(ref("dl-dup-after"))
	require.Equal(t, snap(before), snap(after), "an accepted key is a duplicate, not late, after the outcome")
	require.Zero(t, after.LateCount)
	require.Equal(t, 1, after.DuplicateCount)
}

func testDeliverConcurrent(t *testing.T, e *env) {
	// Distinct replies to one gather: none lost, exactly one completes it.
	const n = 20
	e.register(&store.Correlation{ID: "dl-conc-gather", Pattern: store.PatternGather, Expect: n, Timeout: time.Minute})
	// The same reply from many callers: applied once.
	e.register(&store.Correlation{ID: "dl-conc-same", Pattern: store.PatternGather, Expect: 2, Timeout: time.Minute})
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		statuses = map[string]map[store.DeliverStatus]int{"dl-conc-gather": {}, "dl-conc-same": {}}
		errs     []error
	)
	deliver := func(id string, r store.Reply) {
		res, err := e.s.Deliver(e.ctx, ref(id), r)
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			errs = append(errs, err)
			return
		}
		statuses[id][res.Status]++
	}
	for i := range n {
		wg.Go(func() { deliver("dl-conc-gather", store.Reply{From: fmt.Sprint("responder-", i)}) })
		wg.Go(func() { deliver("dl-conc-same", store.Reply{From: "only", Body: []byte("same")}) })
	}
	wg.Wait()
	require.Empty(t, errs)
	require.Equal(t, map[store.DeliverStatus]int{store.DeliverAccepted: n - 1, store.DeliverCompleted: 1}, statuses["dl-conc-gather"])
	c := e.get(ref("dl-conc-gather"))
	require.Equal(t, store.StateCompleted, c.State)
	require.Len(t, c.Replies, n)
	require.Equal(t, 1, countEvents(c, store.EventOutcome))

	require.Equal(t, map[store.DeliverStatus]int{store.DeliverAccepted: 1, store.DeliverDuplicate: n - 1}, statuses["dl-conc-same"])
	c = e.get(ref("dl-conc-same"))
	require.Len(t, c.Replies, 1)
	require.Equal(t, n-1, c.DuplicateCount)
}

func testDeliverLate(t *testing.T, e *env) {
	// Limits: MaxLate 3, MaxEvents 5.
	e.register(single("dl-late"))
	e.deliver(ref("dl-late"), reply("first"), store.DeliverCompleted)
	decided := e.get(ref("dl-late"))
	version := decided.Version
	for i := 1; i <= 5; i++ {
		e.clock.Add(time.Second)
		res := e.deliver(ref("dl-late"), reply(fmt.Sprintf("late-%d", i)), store.DeliverLate)
		require.Greater(t, res.Correlation.Version, version, "a late reply is recorded")
		version = res.Correlation.Version
	}
	c := e.get(ref("dl-late"))
	require.Equal(t, store.StateCompleted, c.State)
	require.Equal(t, decided.Outcome, c.Outcome, "late replies never change the outcome")
	require.Equal(t, decided.Replies, c.Replies)
	require.Equal(t, 5, c.LateCount, "every late reply is counted")
	require.Len(t, c.Late, 3, "the last MaxLate are kept")
	require.Equal(t, []string{"late-3", "late-4", "late-5"}, []string{c.Late[0].ID, c.Late[1].ID, c.Late[2].ID})
	require.Len(t, c.Events, 5, "the last MaxEvents events are kept")
	require.Equal(t, 3, c.EventsDropped, "8 events (registered, accepted, outcome, 5 late), 5 kept")
	require.Equal(t, store.EventReplyLate, c.Events[4].Type)

	// The same late reply again is a duplicate.
	e.deliver(ref("dl-late"), reply("late-5"), store.DeliverDuplicate)
	after := e.get(ref("dl-late"))
	require.Equal(t, snap(c), snap(after))
	require.Equal(t, 5, after.LateCount)
}

func testDeliverErrorReply(t *testing.T, e *env) {
	e.register(withHandler("dl-error"))
	res := e.deliver(ref("dl-error"), store.Reply{ID: "e1", Error: "payment declined: card expired"}, store.DeliverCompleted)
	require.Equal(t, store.StateCompleted, res.Correlation.State, "an error reply still completes")
	c := e.get(ref("dl-error"))
	require.Equal(t, store.StateCompleted, c.State)
	require.Len(t, c.Replies, 1)
	require.Equal(t, "payment declined: card expired", c.Replies[0].Error, "the error is kept for the handler")
	require.Equal(t, store.DispatchPending, c.Dispatch.State)
}

func testDeliverBodyTooLarge(t *testing.T, e *env) {
	// Limits: MaxBodyBytes 8.
	e.register(single("dl-body"))
	before := e.get(ref("dl-body"))
	_, err := e.s.Deliver(e.ctx, ref("dl-body"), store.Reply{ID: "big", Body: []byte("123456789")})
	requireFieldError(t, err, store.ErrTooLarge, "reply.body")
	require.Equal(t, snap(before), snap(e.get(ref("dl-body"))))

	_, err = e.s.Deliver(e.ctx, ref("dl-body-unknown"), store.Reply{ID: "big", Body: []byte("123456789")})
	requireFieldError(t, err, store.ErrTooLarge, "reply.body")
	require.Zero(t, e.stats("").EarlyReplies, "an oversized reply is not buffered either")

	e.deliver(ref("dl-body"), store.Reply{ID: "fits", Body: []byte("12345678")}, store.DeliverCompleted)
}

func testDeliverRecordTooLarge(t *testing.T, e *env) {
	// Limits: MaxBodyBytes 10, MaxRecordBytes 25 (reply bodies of one record).
	for _, c := range []*store.Correlation{
		{ID: "dl-record-gather", Pattern: store.PatternGather, Expect: 4, Timeout: time.Minute},
		{ID: "dl-record-stream", Pattern: store.PatternStream, Timeout: time.Minute},
	} {
		r := ref(c.ID)
		e.register(c)
		e.deliver(r, store.Reply{From: "a", Seq: 0, Body: []byte("0123456789")}, store.DeliverAccepted)
		e.deliver(r, store.Reply{From: "b", Seq: 1, Body: []byte("0123456789")}, store.DeliverAccepted)
		before := e.get(r)
		_, err := e.s.Deliver(e.ctx, r, store.Reply{From: "c", Seq: 2, Body: []byte("0123456")})
		requireFieldError(t, err, store.ErrTooLarge, "reply.body")
		after := e.get(r)
		require.Equal(t, snap(before), snap(after), "%s: a refused reply changes nothing", r)
		require.Equal(t, before.DuplicateCount, after.DuplicateCount)

		e.deliver(r, store.Reply{From: "c", Seq: 2, Body: []byte("01234")}, store.DeliverAccepted) // 25: up to the limit
		_, err = e.s.Deliver(e.ctx, r, store.Reply{From: "d", Seq: 3, Final: true, Body: []byte("x")})
		requireFieldError(t, err, store.ErrTooLarge, "reply.body")
		e.deliver(r, store.Reply{From: "d", Seq: 3, Final: true}, store.DeliverCompleted) // an empty body still fits
		require.Len(t, e.get(r).Replies, 4)

		// Late replies are kept apart (a bounded ring) and not refused.
		e.deliver(r, store.Reply{From: "e", Seq: 4, Body: []byte("0123456789")}, store.DeliverLate)
	}
}

// deliverAll delivers replies(i) for i < n to r from n goroutines started
// together, and counts the answers.
func (e *env) deliverAll(r store.Ref, n int, replies func(i int) store.Reply) (map[store.DeliverStatus]int, []error) {
	return DeliverAll(n, func(i int) (store.DeliverResult, error) { return e.s.Deliver(e.ctx, r, replies(i)) })
}

// DeliverAll calls deliver(i) for i < n from n goroutines started
// together, and counts the statuses answered; the errors are returned
// apart. A backend's own contention tests use it too (across two stores,
// for instance).
func DeliverAll(n int, deliver func(i int) (store.DeliverResult, error)) (map[store.DeliverStatus]int, []error) {
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		statuses = map[store.DeliverStatus]int{}
		errs     []error
		start    = make(chan struct{})
	)
	for i := range n {
		wg.Go(func() {
			<-start
			res, err := deliver(i)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
				return
			}
			statuses[res.Status]++
		})
	}
	close(start)
	wg.Wait()
	return statuses, errs
}

// The contention cases send their replies all at once, 500 and 400 by
// default: an engine too slow for that may scale them down through the
// environment (see the package doc); make test runs the defaults.

func testDeliverConcurrentSingle(t *testing.T, e *env) {
	n := testenv.Int(t, "CORRSTORE_CONFORMANCE_SINGLE_REPLIES", 500)
	r := nsRef("contention", "dl-conc-single")
	e.register(&store.Correlation{ID: r.ID, Namespace: r.Namespace, Callback: store.Callback{Handler: "h"}, Timeout: time.Minute})
	statuses, errs := e.deliverAll(r, n, func(i int) store.Reply {
		return store.Reply{ID: fmt.Sprint("reply-", i), Body: []byte(fmt.Sprint(i))}
	})
	require.Empty(t, errs, "no errors under contention (%d of %d)", len(errs), n)
	require.Equal(t, 1, statuses[store.DeliverCompleted], "exactly one reply completes: %v", statuses)
	require.Equal(t, n-1, statuses[store.DeliverLate]+statuses[store.DeliverDuplicate], "the rest are late or duplicates: %v", statuses)
	require.Zero(t, statuses[store.DeliverAccepted], "%v", statuses)
	c := e.get(r)
	require.Equal(t, store.StateCompleted, c.State)
	require.Len(t, c.Replies, 1)
	require.NotNil(t, c.Outcome)
	require.Empty(t, c.Outcome.Reason)
	require.Equal(t, statuses[store.DeliverLate], c.LateCount, "every late reply is counted")
	require.Equal(t, store.DispatchPending, c.Dispatch.State)
	require.Equal(t, []string{r.String()}, refs(e.claim("inst", time.Minute, 10)), "one outcome to dispatch")
}

func testDeliverConcurrentGather(t *testing.T, e *env) {
	n := testenv.Int(t, "CORRSTORE_CONFORMANCE_GATHER_REPLIES", 400)
	r := nsRef("contention", "dl-conc-gather")
	e.register(&store.Correlation{ID: r.ID, Namespace: r.Namespace, Pattern: store.PatternGather, Expect: n, Timeout: time.Minute})
	statuses, errs := e.deliverAll(r, n, func(i int) store.Reply {
		return store.Reply{From: fmt.Sprint("responder-", i), Body: []byte(fmt.Sprint(i))}
	})
	require.Empty(t, errs, "no errors under contention (%d of %d)", len(errs), n)
	require.Equal(t, map[store.DeliverStatus]int{store.DeliverAccepted: n - 1, store.DeliverCompleted: 1}, statuses)
	c := e.get(r)
	require.Equal(t, store.StateCompleted, c.State)
	require.False(t, c.Outcome.Partial)
	require.Len(t, c.Replies, n, "no reply lost")
	from := map[string]bool{}
	for _, rep := range c.Replies {
		from[rep.From] = true
	}
	require.Len(t, from, n, "each responder once")
	require.Equal(t, 1, countEvents(c, store.EventOutcome))
}

func testDeliverInvalidReply(t *testing.T, e *env) {
	// Limits: MaxReplies 20.
	e.register(&store.Correlation{ID: "dl-invalid-reply", Pattern: store.PatternStream, Timeout: time.Minute})
	before := e.get(ref("dl-invalid-reply"))
	for _, tc := range []struct {
		r     store.Reply
		field string
	}{
		{store.Reply{ID: strings.Repeat("i", store.MaxReplyFieldLen+1)}, "reply.id"},
		{store.Reply{From: strings.Repeat("f", store.MaxReplyFieldLen+1)}, "reply.from"},
		{store.Reply{Error: strings.Repeat("e", store.MaxReplyErrorLen+1)}, "reply.error"},
		{store.Reply{Seq: -1}, "reply.seq"},
		{store.Reply{Seq: 20}, "reply.seq"},
	} {
		_, err := e.s.Deliver(e.ctx, ref("dl-invalid-reply"), tc.r)
		requireFieldError(t, err, store.ErrInvalid, tc.field)
	}
	require.Equal(t, snap(before), snap(e.get(ref("dl-invalid-reply"))))
	e.deliver(ref("dl-invalid-reply"), store.Reply{Seq: 19, Final: true}, store.DeliverAccepted)
}

func testDeliverInvalidID(t *testing.T, e *env) {
	for _, r := range []store.Ref{
		ref(""), ref("has space"), ref("a/b"), ref(strings.Repeat("x", store.MaxIDLen+1)),
		nsRef("Upper", "ok"), nsRef("a/b", "ok"), nsRef("a.b", "ok"), nsRef(strings.Repeat("n", store.MaxNamespaceLen+1), "ok"),
	} {
		_, err := e.s.Deliver(e.ctx, r, reply("r"))
		require.ErrorIs(t, err, store.ErrInvalid, "ref %+v", r)
		var fe *store.FieldError
		require.ErrorAs(t, err, &fe, "ref %+v", r)
	}
	require.Zero(t, e.stats("").EarlyReplies, "nothing is buffered for an invalid ref")
}

func testDeliverEarlyApplied(t *testing.T, e *env) {
	received := e.now()
	e.deliver(ref("dl-early"), store.Reply{ID: "r1", Body: []byte("early")}, store.DeliverBuffered)
	require.Equal(t, int64(1), e.stats("").EarlyReplies)
	e.requireGone(ref("dl-early"))

	e.clock.Add(10 * time.Second)
	res, err := e.s.Register(e.ctx, single("dl-early"))
	require.NoError(t, err)
	require.True(t, res.Created)
	require.Equal(t, 1, res.EarlyApplied)
	for name, c := range map[string]*store.Correlation{"result": res.Correlation, "get": e.get(ref("dl-early"))} {
		t.Run(name, func(t *testing.T) {
			require.Equal(t, store.StateCompleted, c.State, "the early reply completes it at registration")
			require.Equal(t, 1, c.Held.Count)
			if name == "result" {
				require.Empty(t, c.Replies, "Register answers the correlation without its replies")
				requireTime(t, e.now(), c.Outcome.At)
				require.True(t, hasEvent(c, store.EventEarlyApplied))
				return
			}
			require.Len(t, c.Replies, 1)
			require.Equal(t, []byte("early"), c.Replies[0].Body)
			requireTime(t, received, c.Replies[0].ReceivedAt, "an early reply keeps its arrival time")
			requireTime(t, e.now(), c.Outcome.At)
			require.True(t, hasEvent(c, store.EventEarlyApplied))
		})
	}
	require.Zero(t, e.stats("").EarlyReplies, "an applied early reply is no longer buffered")

	// Registering again applies nothing twice.
	res, err = e.s.Register(e.ctx, single("dl-early"))
	require.NoError(t, err)
	require.False(t, res.Created)
	require.Zero(t, res.EarlyApplied)
	require.Len(t, e.get(ref("dl-early")).Replies, 1)
}

func testDeliverEarlyGather(t *testing.T, e *env) {
	e.deliver(ref("dl-early-gather"), store.Reply{From: "b"}, store.DeliverBuffered)
	e.clock.Add(time.Second)
	e.deliver(ref("dl-early-gather"), store.Reply{From: "a"}, store.DeliverBuffered)
	// A resend before the registration: buffered again, or recognised as a duplicate.
	res0, err := e.s.Deliver(e.ctx, ref("dl-early-gather"), store.Reply{From: "a"})
	require.NoError(t, err)
	require.Contains(t, []store.DeliverStatus{store.DeliverBuffered, store.DeliverDuplicate}, res0.Status)
	e.deliver(ref("dl-early-other"), store.Reply{From: "z"}, store.DeliverBuffered)
	e.clock.Add(time.Second)

	res, err := e.s.Register(e.ctx, &store.Correlation{ID: "dl-early-gather", Pattern: store.PatternGather, Expect: 3, Timeout: time.Minute})
	require.NoError(t, err)
	require.Equal(t, 2, res.EarlyApplied, "the resent reply is not applied twice")
	c := e.get(ref("dl-early-gather"))
	require.Equal(t, store.StatePending, c.State)
	require.Len(t, c.Replies, 2)
	require.Equal(t, []string{"b", "a"}, []string{c.Replies[0].From, c.Replies[1].From}, "early replies are applied oldest first")
	e.deliver(ref("dl-early-gather"), store.Reply{From: "c"}, store.DeliverCompleted)
	require.Equal(t, int64(1), e.stats("").EarlyReplies, "only the other ID's early reply is left")
}

func testDeliverEarlyWindow(t *testing.T, e *env) {
	// Limits: EarlyReplyWindow 1m.
	e.deliver(ref("dl-early-fresh"), reply("r"), store.DeliverBuffered)
	e.deliver(ref("dl-early-stale"), reply("r"), store.DeliverBuffered)
	e.clock.Add(59 * time.Second)
	res, err := e.s.Register(e.ctx, single("dl-early-fresh"))
	require.NoError(t, err)
	require.Equal(t, 1, res.EarlyApplied, "within the window")
	require.Equal(t, store.StateCompleted, e.get(ref("dl-early-fresh")).State)

	e.clock.Add(2 * time.Second)
	res, err = e.s.Register(e.ctx, single("dl-early-stale"))
	require.NoError(t, err)
	require.True(t, res.Created)
	require.Zero(t, res.EarlyApplied, "an early reply older than the window is not applied")
	c := e.get(ref("dl-early-stale"))
	require.Equal(t, store.StatePending, c.State)
	require.Empty(t, c.Replies)
}

func testDeliverEarlyCap(t *testing.T, e *env) {
	// Limits: MaxEarlyReplies 3 in the whole store.
	for i := range 3 {
		e.deliver(ref(fmt.Sprintf("dl-cap-%d", i)), reply("r"), store.DeliverBuffered)
	}
	_, err := e.s.Deliver(e.ctx, ref("dl-cap-3"), reply("r"))
	require.ErrorIs(t, err, store.ErrTooLarge, "the early-reply buffer is full")
	var fe *store.FieldError
	require.ErrorAs(t, err, &fe, "a *FieldError, as Register's doc promises")
	require.Equal(t, "early_replies", fe.Field)
	require.Contains(t, fe.Reason, "max_early_replies")
	_, err = e.s.Deliver(e.ctx, ref("dl-cap-0"), reply("r2"))
	require.ErrorIs(t, err, store.ErrTooLarge, "the cap is per store, not per ID")
	require.Equal(t, int64(3), e.stats("").EarlyReplies)

	// A registration consumes its early reply and frees room.
	res, err := e.s.Register(e.ctx, single("dl-cap-1"))
	require.NoError(t, err)
	require.Equal(t, 1, res.EarlyApplied)
	e.deliver(ref("dl-cap-3"), reply("r"), store.DeliverBuffered)
	require.Equal(t, int64(3), e.stats("").EarlyReplies)

	// Delivering to a registered ID is never limited by the buffer.
	e.register(single("dl-cap-registered"))
	e.deliver(ref("dl-cap-registered"), reply("r"), store.DeliverCompleted)
}

func testDeliverEarlyOff(t *testing.T, e *env) {
	// Limits: EarlyReplyWindow -1 (buffering off).
	_, err := e.s.Deliver(e.ctx, ref("dl-off"), reply("r"))
	require.ErrorIs(t, err, store.ErrNotFound)
	require.Zero(t, e.stats("").EarlyReplies)
	res, err := e.s.Register(e.ctx, single("dl-off"))
	require.NoError(t, err)
	require.Zero(t, res.EarlyApplied)
	require.Equal(t, store.StatePending, e.get(ref("dl-off")).State)
}

// bound returns rep bound to the registration with nonce (Reply.Nonce).
func bound(rep store.Reply, nonce string) store.Reply {
	rep.Nonce = &nonce
	return rep
}

// requireNoNonce requires that no kept reply carries a binding.
func requireNoNonce(t *testing.T, c *store.Correlation) {
	t.Helper()
	for _, r := range append(append([]store.Reply{}, c.Replies...), c.Late...) {
		require.Nil(t, r.Nonce, "a reply's binding is never stored: %+v", r)
	}
}

// A reply bound to a registration (Reply.Nonce) goes to that registration
// only: another nonce is ErrNotFound and leaves the record as it was, even
// at its deadline (it is not settled either).
func testDeliverBound(t *testing.T, e *env) {
	r := ref("dl-bound")
	c := e.register(&store.Correlation{ID: r.ID, Pattern: store.PatternGather, Expect: 3, Timeout: time.Minute})
	require.NotEmpty(t, c.Nonce)

	res := e.deliver(r, bound(store.Reply{From: "a", Body: []byte("1")}, c.Nonce), store.DeliverAccepted)
	requireNoNonce(t, res.Correlation)
	requireNoNonce(t, e.get(r))
	// The same reply again, bound or not, is a duplicate as ever.
	e.deliver(r, bound(store.Reply{From: "a", Body: []byte("1")}, c.Nonce), store.DeliverDuplicate)
	e.deliver(r, store.Reply{From: "a", Body: []byte("1")}, store.DeliverDuplicate)

	before := e.get(r)
	for name, nonce := range map[string]string{
		"another":                   store.NewNonce(),
		"empty (before nonces)":     "",
		"a prefix of the right one": c.Nonce[:10],
	} {
		_, err := e.s.Deliver(e.ctx, r, bound(store.Reply{From: "b", Body: []byte("2")}, nonce))
		require.ErrorIs(t, err, store.ErrNotFound, "nonce %s", name)
		require.Contains(t, err.Error(), r.Norm().String(), "the error names the ref")
	}
	after := e.get(r)
	require.Equal(t, snap(before), snap(after), "a reply for another registration changes nothing")
	require.Equal(t, before.DuplicateCount, after.DuplicateCount)

	// At the deadline: a reply for another registration does not even settle it.
	e.clock.Add(time.Minute)
	_, err := e.s.Deliver(e.ctx, r, bound(store.Reply{From: "b"}, store.NewNonce()))
	require.ErrorIs(t, err, store.ErrNotFound)
	require.Equal(t, snap(before), snap(e.get(r)))

	// The right nonce finds it decided: late, as any reply.
	res = e.deliver(r, bound(store.Reply{From: "b", Body: []byte("late")}, c.Nonce), store.DeliverLate)
	require.True(t, res.Correlation.State.Terminal())
	require.Len(t, res.Correlation.Late, 1)
	requireNoNonce(t, res.Correlation)
	requireNoNonce(t, e.get(r))
	require.Equal(t, c.Nonce, e.get(r).Nonce, "the nonce of the record stays")
}

// A bound reply to a ref with no record is ErrNotFound and is not buffered:
// a later registration of the ref (another registration) gets nothing.
func testDeliverBoundNeverBuffered(t *testing.T, e *env) {
	r := ref("dl-bound-gone")
	_, err := e.s.Deliver(e.ctx, r, bound(reply("r1"), store.NewNonce()))
	require.ErrorIs(t, err, store.ErrNotFound)
	require.Contains(t, err.Error(), r.Norm().String(), "the error names the ref")
	_, err = e.s.Deliver(e.ctx, r, bound(reply("r2"), ""))
	require.ErrorIs(t, err, store.ErrNotFound)
	require.Zero(t, e.stats("").EarlyReplies, "a bound reply is never an early reply")

	res, err := e.s.Register(e.ctx, single(r.ID))
	require.NoError(t, err)
	require.True(t, res.Created)
	require.Zero(t, res.EarlyApplied)
	c := e.get(r)
	require.Equal(t, store.StatePending, c.State)
	require.Empty(t, c.Replies)

	// Unbound, the same reply is buffered as before.
	e.deliver(ref("dl-bound-early"), reply("r1"), store.DeliverBuffered)
	require.Equal(t, int64(1), e.stats("").EarlyReplies)
}

// The late ring is bounded in bytes: the oldest late replies go, one whose
// body alone is over MaxLateBytes is counted but not kept, and the stored
// record says so.
func testDeliverLateRingBytes(t *testing.T, e *env) {
	// Limits: MaxBodyBytes 30, MaxLateBytes 25.
	r := e.register(single("dl-late-bytes")).Ref()
	e.deliver(r, reply("r"), store.DeliverCompleted)
	for i, n := range []int{10, 10, 10, 26} {
		e.deliver(r, store.Reply{ID: fmt.Sprintf("late-%d", i), Body: bytes.Repeat([]byte("x"), n)}, store.DeliverLate)
	}
	c := e.get(r)
	require.Equal(t, 4, c.LateCount)
	var kept []string
	for _, l := range c.Late {
		kept = append(kept, l.ID)
	}
	require.Equal(t, []string{"late-1", "late-2"}, kept, "20 of 25 bytes kept; the 26-byte body is counted only")
	require.Equal(t, store.StateCompleted, c.State)
}

// testDeliverRepliesApart: the answers to writes carry no replies (Held
// counts them); Get has them all; a resent reply is known whatever was
// accepted since; a purged registration leaves nothing behind for the next
// one of the same ref.
func testDeliverRepliesApart(t *testing.T, e *env) {
	r := ref("dl-apart")
	gather := &store.Correlation{ID: "dl-apart", Pattern: store.PatternGather, Expect: 4, Timeout: time.Minute}
	e.register(gather)
	res := e.deliver(r, store.Reply{From: "a", Body: []byte("1")}, store.DeliverAccepted)
	require.Empty(t, res.Correlation.Replies)
	require.Equal(t, store.ReplyStats{Count: 1, Bytes: 1}, res.Correlation.Held)
	e.deliver(r, store.Reply{ID: "x", Body: []byte("22")}, store.DeliverAccepted)
	e.deliver(r, store.Reply{From: "b", Body: []byte("333")}, store.DeliverAccepted)
	e.deliver(r, store.Reply{From: "a", Body: []byte("other body")}, store.DeliverDuplicate)
	e.deliver(r, store.Reply{ID: "x"}, store.DeliverDuplicate)
	c := e.get(r)
	require.Equal(t, store.ReplyStats{Count: 3, Bytes: 6}, c.Held)
	require.Equal(t, []string{"1", "22", "333"}, []string{string(c.Replies[0].Body), string(c.Replies[1].Body), string(c.Replies[2].Body)})
	require.Equal(t, 2, c.DuplicateCount)

	e.deliver(r, store.Reply{From: "c", Body: []byte("4444")}, store.DeliverCompleted)
	late := e.deliver(r, store.Reply{From: "d", Body: []byte("late")}, store.DeliverLate)
	require.Len(t, late.Correlation.Late, 1, "the answer has its own step's late reply")
	e.deliver(r, store.Reply{From: "d", Body: []byte("late again")}, store.DeliverDuplicate)
	c = e.get(r)
	require.Equal(t, 1, c.LateCount)
	require.Len(t, c.Late, 1)
	e.clock.Add(time.Hour)
	n, err := e.s.Purge(e.ctx, e.now(), 100)
	require.NoError(t, err)
	require.Equal(t, 1, n)
	e.requireGone(r)

	e.register(gather)
	e.deliver(r, store.Reply{From: "a", Body: []byte("new")}, store.DeliverAccepted)
	e.deliver(r, store.Reply{ID: "x", Body: []byte("new x")}, store.DeliverAccepted)
	c = e.get(r)
	require.Equal(t, store.ReplyStats{Count: 2, Bytes: 8}, c.Held, "nothing of the purged registration is held")
	require.Empty(t, c.Late)
	require.Len(t, c.Events, 3, "registered and two replies: the purged timeline is gone")
	require.Equal(t, "new", string(c.Replies[0].Body))
	require.Equal(t, "new x", string(c.Replies[1].Body))

	// A timeline past store.InlineEvents moves apart and reads whole, in order.
	long := ref("dl-apart-long")
	e.register(&store.Correlation{ID: long.ID, Pattern: store.PatternGather, Expect: 20, Timeout: time.Minute})
	for i := range 2 * store.InlineEvents {
		e.clock.Add(time.Millisecond)
		res := e.deliver(long, store.Reply{From: fmt.Sprint("w", i)}, store.DeliverAccepted)
		want := 1 // once apart, its own step's event
		if i+1 <= store.InlineEvents {
			want = i + 2 // the timeline it had inside the record, moved apart by the last of these
		}
		require.Len(t, res.Correlation.Events, want, "reply %d", i)
	}
	c = e.get(long)
	require.Len(t, c.Events, 2*store.InlineEvents+1)
	require.Equal(t, store.EventRegistered, c.Events[0].Type)
	for i, ev := range c.Events[1:] {
		require.Equal(t, store.EventReplyAccepted, ev.Type)
		require.Contains(t, ev.Detail, fmt.Sprintf(`from="w%d"`, i))
	}
	page, err := e.s.List(e.ctx, store.Filter{Namespace: long.Namespace, Full: true, Order: store.NewestFirst, Limit: 1})
	require.NoError(t, err)
	require.Equal(t, c.Events, page.Items[0].Events)
}
