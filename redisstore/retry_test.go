package redisstore_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/corrstore/corrstore/internal/race"
	"github.com/corrstore/corrstore/redisstore"
	"github.com/corrstore/corrstore/redisstore/redistest"
	"github.com/corrstore/corrstore/store"
	"github.com/corrstore/corrstore/store/storetest"
)

// retryOps is how many operations each run of TestRetryDroppedReplies
// makes (acks and nacks after a claim count one each).
const retryOps = 2400

// retryDropEvery: the faulty run drops the reply of about one command in
// this many.
const retryDropEvery = 8

// TestRetryDroppedReplies runs one seeded sequence of mixed operations
// twice on a real redis-server, each time through a redistest.Proxy, with
// go-redis retrying (MaxRetries): once with no fault, once with the proxy
// dropping the connection after about one command in 8 has reached the
// server and run there, before its reply gets back — so go-redis sends it
// again. Both runs read time from a FakeClock on the same schedule.
//
// Whatever the retries, no effect may be applied twice: every record (its
// replies, late replies, events, outcome, dispatch attempts, version), the
// stats and the stream of Subscribe events must be the same as in the run
// without faults. A call's answer may differ only where a retry explains
// it: an operation whose reply was dropped may say it was a repeat
// (duplicate, Duplicate) and a pass may return fewer items, the ones the
// first send had already taken. A registration answers exactly as without
// faults: created, even when its create was sent again.
//
// It is about what a resend does, not about data races, and -race makes it
// many times slower: it skips there; make test's second step runs it
// without -race (5 s).
func TestRetryDroppedReplies(t *testing.T) {
	race.SkipTest(t, "about resends, not data races: make test's second step runs this test without -race")
	t.Parallel()
	srv := redistest.StartServer(t, redistest.ServerOptions{Dir: redistest.MemDir(t)})
	const seed = 20261127

	clean := runMixed(t, srv, seed, 0)
	faulty := runMixed(t, srv, seed, retryDropEvery)

	require.Zero(t, clean.drops)
	require.Greater(t, faulty.drops, int64(retryOps/retryDropEvery/4), "the proxy dropped too few replies to test anything")
	require.Len(t, faulty.ops, len(clean.ops), "the same sequence of operations")

	// Answers: equal, or the repeat form of the same answer after a drop.
	explained := 0
	for i, c := range clean.ops {
		f := faulty.ops[i]
		require.Equal(t, c.call, f.call, "op %d: the runs diverged", i)
		if c.answer == f.answer {
			continue
		}
		if f.dropped && repeatForm(c, f) {
			explained++
			continue
		}
		t.Errorf("op %d %s: answered %q without faults, %q with (reply dropped: %v)", i, c.call, c.answer, f.answer, f.dropped)
	}

	// State: the same records, stats and events.
	require.Equal(t, len(clean.records), len(faulty.records))
	extraDups := 0
	for id, c := range clean.records {
		f, ok := faulty.records[id]
		if !ok {
			t.Errorf("%s: exists without faults, missing with", id)
			continue
		}
		if f.dups < c.dups {
			t.Errorf("%s: DuplicateCount %d with faults, %d without", id, f.dups, c.dups)
		}
		extraDups += f.dups - c.dups
		if c.json != f.json {
			t.Errorf("%s differs:\nwithout faults: %s\nwith faults:    %s", id, c.json, f.json)
		}
	}
	require.Equal(t, clean.stats, faulty.stats, "Stats")
	require.Equal(t, clean.events, faulty.events, "Subscribe events")
	// A resent Deliver that finds its reply taken counts as a duplicate
	// (that is what DuplicateCount is for); no more of them than drops.
	require.LessOrEqual(t, int64(extraDups), faulty.drops, "more extra duplicates than dropped replies")

	droppedOps, resentCreates := 0, 0
	for i, f := range faulty.ops {
		if f.dropped {
			droppedOps++
			if f.kind == "register" && strings.HasPrefix(clean.ops[i].answer, "created") {
				resentCreates++
			}
		}
	}
	t.Logf("%d operations per run (%d store commands without faults, %d with); %d replies dropped, during %d operations; "+
		"%d answers differed, each the repeat form after a drop; %d creates with a reply dropped, each answered created; %d records, %d Subscribe events, equal; %d resent Delivers counted as duplicates",
		len(clean.ops), clean.commands, faulty.commands, faulty.drops, droppedOps, explained, resentCreates, len(clean.records), len(clean.events), extraDups)
}

// repeatForm reports whether the faulty answer f is what a resent call gets
// when its first send already applied the clean answer c.
func repeatForm(c, f mixedOp) bool {
	switch c.kind {
	case "register":
		// A resent create finds its own write's token in the record and
		// answers created again (lua/create.lua): existing would tell the
		// caller that someone else had registered the ID.
		return false
	case "deliver":
		return f.answer == string(store.DeliverDuplicate)
	case "extend", "cancel", "expire", "ack", "nack", "redispatch":
		return c.answer == "applied" && f.answer == "duplicate"
	case "expiredue", "claim":
		return subset(f.items, c.items)
	case "purge", "dropearly":
		var cn, fn int
		fmt.Sscan(c.answer, &cn)
		fmt.Sscan(f.answer, &fn)
		return fn <= cn
	}
	return false
}

func subset(small, big []string) bool {
	for _, s := range small {
		if !slices.Contains(big, s) {
			return false
		}
	}
	return true
}

// mixedOp is one call of the mixed sequence and what it answered.
type mixedOp struct {
	kind    string
	call    string
	answer  string
	items   []string // ExpireDue and ClaimDispatch: what they returned
	dropped bool     // the proxy dropped a reply during the call
}

type recordState struct {
	json string // the record but DuplicateCount, as JSON
	dups int
}

type mixedRun struct {
	ops      []mixedOp
	records  map[string]recordState
	stats    string
	events   []string
	drops    int64
	commands int64
}

// writesOnly lets the proxy drop the reply of any command that may change
// something, and spares the plain reads: a read sent again applies nothing,
// and a pass reads the index of every shard in one pipeline, which at one
// drop in 8 commands would rarely get through (16 reads: 12%) and only
// measure go-redis's patience.
func writesOnly(args []string) bool {
	if !redistest.DefaultEligible(args) {
		return false
	}
	switch strings.ToUpper(args[0]) {
	case "GET", "MGET", "GETRANGE", "STRLEN", "EXISTS", "TYPE", "SCAN",
		"HGET", "HMGET", "HGETALL", "HLEN", "HEXISTS",
		"ZRANGE", "ZRANGEBYSCORE", "ZREVRANGEBYSCORE", "ZRANGEBYLEX", "ZCARD", "ZSCORE", "ZCOUNT",
		"EVALSHA_RO", "EVAL_RO", "SCRIPT":
		return false
	}
	return true
}

// runMixed runs the seeded sequence on a store of its own (fresh prefix)
// through a proxy dropping one command's reply in dropEvery (0: none).
func runMixed(t *testing.T, srv *redistest.Server, seed uint64, dropEvery int) *mixedRun {
	t.Helper()
	ctx := t.Context()
	proxy := redistest.StartProxy(t, srv.Addr(), redistest.ProxyOptions{DropEvery: dropEvery, Seed: seed, Eligible: writesOnly})
	proxy.SetDropping(false) // not while the store starts
	rdb := redis.NewClient(&redis.Options{
		Addr:            proxy.Addr(),
		MaxRetries:      20, // 20 drops of one command in a row: p ≈ 8^-20
		MinRetryBackoff: time.Millisecond,
		MaxRetryBackoff: 4 * time.Millisecond,
		// Every dropped reply costs a new connection; this VM stalls for
		// seconds at times, and a dial or read timing out would fail the
		// call for a reason that is not the one under test.
		DialTimeout:  time.Minute,
		ReadTimeout:  time.Minute,
		WriteTimeout: time.Minute,
	})
	t.Cleanup(func() { rdb.Close() })
	clock := store.NewFakeClock(storetest.Epoch)
	// 4 shards, not 16: a pass reads every shard's index, and what is
	// under test is what a resend does, not how the shards are walked.
	s := openReal(t, rdb, redisstore.Config{Prefix: uniquePrefix("retry"), Shards: 4, Strict: true, Clock: clock})

	ev := collectEvents(t, s)
	ev.sync(t, s, "sync-start")
	proxy.SetDropping(true)
	commandsBefore := proxy.Commands()

	w := &mixedWorkload{
		t: t, ctx: ctx, s: s, clock: clock, proxy: proxy,
		rng:   rand.New(rand.NewPCG(seed, seed+1)),
		specs: map[string]*store.Correlation{},
	}
	for len(w.ops) < retryOps {
		w.step()
	}

	run := &mixedRun{ops: w.ops, drops: proxy.Drops(), commands: proxy.Commands() - commandsBefore}
	proxy.SetDropping(false)
	ev.sync(t, s, "sync-end")
	run.events = ev.list()

	run.records = map[string]recordState{}
	for _, id := range w.known {
		c, err := s.Get(ctx, store.RefOf(id))
		if errors.Is(err, store.ErrNotFound) {
			continue // purged, or an early reply never registered
		}
		require.NoError(t, err)
		dups := c.DuplicateCount
		c.DuplicateCount = 0
		c.Nonce = "" // random per registration, in either run
		b, err := json.Marshal(c)
		require.NoError(t, err)
		run.records[id] = recordState{json: string(b), dups: dups}
	}
	st, err := s.Stats(ctx, "")
	require.NoError(t, err)
	b, err := json.Marshal(st)
	require.NoError(t, err)
	run.stats = string(b)
	return run
}

// mixedWorkload draws the operations. Every random draw is made whatever
// the answers were, so a run with faults makes the same calls in the same
// order as a run without.
type mixedWorkload struct {
	t     *testing.T
	ctx   context.Context
	s     store.Store
	clock *store.FakeClock
	proxy *redistest.Proxy
	rng   *rand.Rand

	next  int                           // the next ID to register is r-<next>
	known []string                      // every ID touched
	specs map[string]*store.Correlation // what each was registered with
	ops   []mixedOp
}

func (w *mixedWorkload) id(n int) string { return fmt.Sprintf("r-%04d", n) }

// pick returns a registered ID, more often a recent one (still pending).
func (w *mixedWorkload) pick() string {
	if w.next == 0 {
		return w.id(0)
	}
	if w.rng.IntN(4) > 0 {
		return w.id(max(0, w.next-1-w.rng.IntN(min(w.next, 20))))
	}
	return w.id(w.rng.IntN(w.next))
}

func (w *mixedWorkload) touch(id string) {
	if !slices.Contains(w.known, id) {
		w.known = append(w.known, id)
	}
}

// do runs one call and records its answer and whether a reply was dropped
// during it.
func (w *mixedWorkload) do(kind, call string, f func() (string, []string, error)) {
	before := w.proxy.Drops()
	answer, items, err := f()
	if err != nil {
		answer = errClass(err)
	}
	w.ops = append(w.ops, mixedOp{kind: kind, call: call, answer: answer, items: items, dropped: w.proxy.Drops() > before})
}

func (w *mixedWorkload) step() {
	now := w.clock.Add(time.Duration(w.rng.IntN(100)) * time.Millisecond)
	r := w.rng.IntN(100)
	switch {
	case r < 18:
		w.register()
	case r < 21: // the same registration again
		id := w.pick()
		spec := w.specs[id]
		w.do("register", "register again "+id, func() (string, []string, error) {
			if spec == nil {
				return "never registered", nil, nil
			}
			c := *spec
			res, err := w.s.Register(w.ctx, &c)
			return registerAnswer(res), nil, err
		})
	case r < 24: // an early reply for the ID registered next
		id := w.id(w.next)
		w.touch(id)
		rep := store.Reply{ID: fmt.Sprintf("early-%d", w.rng.IntN(2)), From: "x", Body: []byte("early")}
		w.deliver(id, rep)
	case r < 56:
		id := w.pick()
		w.deliver(id, w.reply(id))
	case r < 63:
		id := w.pick()
		deadline := now.Add(time.Duration(1+w.rng.IntN(5)) * time.Second)
		w.do("extend", fmt.Sprintf("extend %s to %s", id, deadline.Format(time.RFC3339Nano)), func() (string, []string, error) {
			res, err := w.s.Extend(w.ctx, store.RefOf(id), deadline)
			return resultAnswer(res), nil, err
		})
	case r < 67:
		id := w.pick()
		w.do("cancel", "cancel "+id, func() (string, []string, error) {
			res, err := w.s.Cancel(w.ctx, store.RefOf(id), "stop")
			return resultAnswer(res), nil, err
		})
	case r < 70:
		id := w.pick()
		w.do("expire", "expire "+id, func() (string, []string, error) {
			res, err := w.s.Expire(w.ctx, store.RefOf(id), "force")
			return resultAnswer(res), nil, err
		})
	case r < 78:
		w.do("expiredue", "expire due at "+now.Format(time.RFC3339Nano), func() (string, []string, error) {
			cs, err := w.s.ExpireDue(w.ctx, now, 20)
			items := idsOf(cs, func(c *store.Correlation) string { return c.ID + ":" + string(c.State) })
			return strings.Join(items, " "), items, err
		})
	case r < 90:
		w.claim(now)
	case r < 93:
		id := w.pick()
		w.do("redispatch", "redispatch "+id, func() (string, []string, error) {
			res, err := w.s.Redispatch(w.ctx, store.RefOf(id))
			return resultAnswer(res), nil, err
		})
	case r < 95:
		before := now.Add(-10 * time.Second)
		w.do("purge", "purge before "+before.Format(time.RFC3339Nano), func() (string, []string, error) {
			n, err := w.s.Purge(w.ctx, before, 20)
			return fmt.Sprint(n), nil, err
		})
	case r < 97:
		before := now.Add(-30 * time.Second)
		w.do("dropearly", "drop early before "+before.Format(time.RFC3339Nano), func() (string, []string, error) {
			n, err := w.s.DropEarlyReplies(w.ctx, before, 20)
			return fmt.Sprint(n), nil, err
		})
	default:
		id := w.pick()
		w.do("get", "get "+id, func() (string, []string, error) {
			c, err := w.s.Get(w.ctx, store.RefOf(id))
			if err != nil {
				return "", nil, err
			}
			return fmt.Sprintf("%s v%d replies=%d dispatch=%s/%d", c.State, c.Version, len(c.Replies), c.Dispatch.State, c.Dispatch.Attempts), nil, nil
		})
	}
}

func (w *mixedWorkload) register() {
	id := w.id(w.next)
	w.next++
	w.touch(id)
	c := &store.Correlation{
		ID:          id,
		Timeout:     time.Duration(1+w.rng.IntN(4)) * time.Second,
		Destination: "svc",
		ReplyTo:     "replies",
	}
	switch w.rng.IntN(4) {
	case 0:
		c.Pattern, c.Expect, c.Quorum = store.PatternGather, 3, 2
	case 1:
		c.Pattern = store.PatternStream
	default:
		c.Pattern = store.PatternSingle
		c.Optional = w.rng.IntN(5) == 0
	}
	if w.rng.IntN(5) < 3 {
		c.Callback = store.Callback{Handler: "resume", Data: []byte(`{"step":1}`)}
	}
	spec := *c
	w.specs[id] = &spec
	w.do("register", "register "+id, func() (string, []string, error) {
		res, err := w.s.Register(w.ctx, c)
		return registerAnswer(res), nil, err
	})
}

// reply draws a reply fitting the pattern of id, from a small set, so that
// some are duplicates and some late.
func (w *mixedWorkload) reply(id string) store.Reply {
	n := w.rng.IntN(4)
	body := []byte(fmt.Sprintf("body-%d", n))
	spec := w.specs[id]
	switch {
	case spec == nil:
		return store.Reply{ID: fmt.Sprintf("a%d", n), Body: body}
	case spec.Pattern == store.PatternGather:
		return store.Reply{From: []string{"x", "y", "z", "w"}[n], Body: body}
	case spec.Pattern == store.PatternStream:
		return store.Reply{Seq: n, Final: n == 3, Body: body}
	default:
		return store.Reply{ID: []string{"a", "b", "a", "c"}[n], Body: body}
	}
}

func (w *mixedWorkload) deliver(id string, rep store.Reply) {
	w.do("deliver", fmt.Sprintf("deliver %s id=%q from=%q seq=%d", id, rep.ID, rep.From, rep.Seq), func() (string, []string, error) {
		res, err := w.s.Deliver(w.ctx, store.RefOf(id), rep)
		return string(res.Status), nil, err
	})
}

// claim claims up to 5 outcomes for one of two instances, then settles
// each: ack, nack with a retry, or nothing (the lease runs out). The
// settlement draws are made for all 5 slots whatever the claim returned.
func (w *mixedWorkload) claim(now time.Time) {
	inst := []string{"inst-a", "inst-b"}[w.rng.IntN(2)]
	var plan [5]int
	for i := range plan {
		plan[i] = w.rng.IntN(20)
	}
	var claimed []*store.Correlation
	w.do("claim", fmt.Sprintf("claim for %s at %s", inst, now.Format(time.RFC3339Nano)), func() (string, []string, error) {
		cs, err := w.s.ClaimDispatch(w.ctx, store.ClaimRequest{Instance: inst, Handlers: []string{"resume"}, Now: now, Lease: 2 * time.Second, Limit: len(plan)})
		claimed = cs
		items := idsOf(cs, func(c *store.Correlation) string { return fmt.Sprintf("%s#%d", c.ID, c.Dispatch.Attempts) })
		return strings.Join(items, " "), items, err
	})
	// Settle in ID order, so the order does not depend on the walk.
	slices.SortFunc(claimed, func(a, b *store.Correlation) int { return strings.Compare(a.ID, b.ID) })
	for i, c := range claimed {
		cl := c.Dispatch.Claim()
		switch {
		case plan[i] < 12:
			w.do("ack", fmt.Sprintf("ack %s %s#%d", c.ID, cl.Instance, cl.Attempt), func() (string, []string, error) {
				res, err := w.s.AckDispatch(w.ctx, c.Ref(), cl)
				return resultAnswer(res), nil, err
			})
		case plan[i] < 17:
			retryAt := now.Add(500 * time.Millisecond)
			w.do("nack", fmt.Sprintf("nack %s %s#%d", c.ID, cl.Instance, cl.Attempt), func() (string, []string, error) {
				res, err := w.s.NackDispatch(w.ctx, c.Ref(), cl, "handler failed", retryAt)
				return resultAnswer(res), nil, err
			})
		}
	}
}

func registerAnswer(res store.RegisterResult) string {
	if res.Correlation == nil {
		return ""
	}
	if res.Created {
		return fmt.Sprintf("created early=%d", res.EarlyApplied)
	}
	return "existing"
}

func resultAnswer(res store.Result) string {
	if res.Duplicate {
		return "duplicate"
	}
	return "applied"
}

func idsOf(cs []*store.Correlation, f func(*store.Correlation) string) []string {
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = f(c)
	}
	slices.Sort(out)
	return out
}

// errClass names the sentinel an error wraps.
func errClass(err error) string {
	for _, s := range []error{store.ErrNotFound, store.ErrConflict, store.ErrNotPending, store.ErrInvalid, store.ErrTooLarge, store.ErrClosed, store.ErrCorrupt, store.ErrUnavailable} {
		if errors.Is(err, s) {
			return "error: " + s.Error()
		}
	}
	return "unexpected error: " + err.Error()
}

// eventLog collects a store's Subscribe events as strings, in order.
type eventLog struct {
	mu      sync.Mutex
	got     []string
	changed chan struct{}
	closed  bool
}

func collectEvents(t *testing.T, s store.Store) *eventLog {
	ctx, cancel := context.WithCancel(t.Context())
	ch, err := s.Subscribe(ctx)
	require.NoError(t, err)
	e := &eventLog{changed: make(chan struct{}, 1)}
	done := make(chan struct{})
	t.Cleanup(func() {
		cancel()
		<-done
	})
	go func() {
		defer close(done)
		for ev := range ch {
			b, _ := json.Marshal(ev)
			e.mu.Lock()
			e.got = append(e.got, string(b))
			e.mu.Unlock()
			e.signal()
		}
		e.mu.Lock()
		e.closed = true
		e.mu.Unlock()
		e.signal()
	}()
	return e
}

func (e *eventLog) signal() {
	select {
	case e.changed <- struct{}{}:
	default:
	}
}

// sync registers and cancels a marker correlation and waits for its
// cancellation event: the server publishes in order, so every event of an
// earlier call has arrived by then. It drops the marker's events from the
// log, and with the first sync whatever came before.
func (e *eventLog) sync(t *testing.T, s store.Store, marker string) {
	t.Helper()
	_, err := s.Register(t.Context(), &store.Correlation{ID: marker, Timeout: time.Hour})
	require.NoError(t, err)
	_, err = s.Cancel(t.Context(), store.RefOf(marker), "marker")
	require.NoError(t, err)
	timeout := time.NewTimer(30 * time.Second)
	defer timeout.Stop()
	for {
		e.mu.Lock()
		// The marker's last event, its cancellation: waiting for the
		// first would leave the second to arrive after the log is cleared.
		i := slices.IndexFunc(e.got, func(s string) bool {
			return strings.Contains(s, `"`+marker+`"`) && strings.Contains(s, `"reason":"marker"`)
		})
		closed := e.closed
		if i >= 0 {
			if marker == "sync-start" {
				e.got = e.got[:0]
			} else {
				e.got = slices.DeleteFunc(e.got, func(s string) bool { return strings.Contains(s, `"`+marker+`"`) })
			}
			e.mu.Unlock()
			return
		}
		e.mu.Unlock()
		require.False(t, closed, "the subscription closed: the subscriber fell behind")
		select {
		case <-e.changed:
		case <-timeout.C:
			t.Fatalf("no event for marker %s after 30s", marker)
		}
	}
}

func (e *eventLog) list() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.got)
}
