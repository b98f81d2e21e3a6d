package redisstore

import (
	"cmp"
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/corrstore/corrstore/store"
)

// due is an index entry found due by a pass; member is a ref string (an
// early reply's: "<digest> <ref>").
type due struct {
	sh     int
	key    string // the index key it was read from
	member string
	score  int64
}

// oneKey is the keysOf of an index with one key per shard.
func oneKey(keyOf func(sh int) string) func(sh int) []string {
	return func(sh int) []string { return []string{keyOf(sh)} }
}

// dueEntries reads up to limit entries with a score up to maxScore from
// every index key keysOf names in every shard, in one round trip, and keeps
// the limit earliest.
func (s *Store) dueEntries(ctx context.Context, keysOf func(sh int) []string, maxScore int64, limit int) ([]due, error) {
	pipe := s.rdb.Pipeline()
	type read struct {
		sh  int
		key string
		cmd *redis.ZSliceCmd
	}
	var reads []read
	for sh := range s.keys.shards {
		for _, k := range keysOf(sh) {
			reads = append(reads, read{sh, k, pipe.ZRangeByScoreWithScores(ctx, k, &redis.ZRangeBy{
				Min: "-inf", Max: strconv.FormatInt(maxScore, 10), Count: int64(limit),
			})})
		}
	}
	if len(reads) == 0 {
		return nil, nil
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, s.redisErr("read index", err)
	}
	var out []due
	for _, r := range reads {
		for _, z := range r.cmd.Val() {
			p := posOf(z)
			out = append(out, due{sh: r.sh, key: r.key, member: p.member, score: p.score})
		}
	}
	slices.SortFunc(out, func(a, b due) int {
		return cmp.Or(cmp.Compare(a.score, b.score), cmp.Compare(a.member, b.member))
	})
	if len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

// verdict is what a pass decided for one record.
type verdict int

const (
	keep   verdict = iota // unchanged (not due after all); only a stale index entry is fixed
	save                  // changed, not reported
	report                // changed and reported
	remove                // deleted (Purge)
)

// sweep walks the due entries of index ix (up to maxScore, at most limit)
// and hands each decodable record to decide, then writes the decisions
// with compare-and-sets, all in a few round trips whatever the number of
// shards. A record another writer changed meanwhile is read and decided
// again. Corrupt records are set aside and reported in soft; index entries
// whose record is gone are dropped.
//
// Entries another writer got to first (a concurrent pass, a reply) take a
// place in the batch but are not reported; the sweep then reads the index
// again for the places left, so that a batch comes back short only when
// fewer than limit records are due, as in one bbolt transaction. (A pass
// stops at a short batch: without this, racing reapers would each stop
// early and leave due records undecided.) The exception is a removal whose
// record vanished before its write was confirmed (see sweepOnce): its place
// is not refilled, so a Purge whose answer go-redis had to resend removes
// what the same Purge without the fault removes. A short Purge batch costs
// nothing: the next pass purges the rest.
//
// keysOf names the keys of index ix to read in a shard.
func (s *Store) sweep(ctx context.Context, ix int, keysOf func(sh int) []string, maxScore int64, limit int,
	decide func(c *store.Correlation) verdict) (out []*store.Correlation, soft error, err error) {
	if err := s.check(); err != nil {
		return nil, nil, err
	}
	var softs []error
	// Bounded like a compare-and-set retry: racing writers cannot keep a
	// pass here.
	gone := 0 // places taken by records removed under us, not refilled
	for round := 0; len(out)+gone < limit && round < maxAttempts; round++ {
		got, g, soft, wrote, err := s.sweepOnce(ctx, ix, keysOf, maxScore, limit-len(out)-gone, decide)
		out = append(out, got...)
		gone += g
		if soft != nil {
			softs = append(softs, soft)
		}
		if err != nil || !wrote {
			return out, errors.Join(softs...), err
		}
	}
	return out, errors.Join(softs...), nil
}

// sweepOnce is one read of the index and the writes it leads to; wrote says
// whether anything was written (when nothing was, reading again would find
// the same entries).
//
// gone counts the removals (Purge) whose record was found gone when its
// write was not confirmed: either our own removal, sent again by go-redis
// after its answer was lost (the record has no header left to recognise the
// resend by), or another pass's. Either way the place is taken: the sweep
// does not refill it, or a lost answer would make Purge remove more than
// limit.
func (s *Store) sweepOnce(ctx context.Context, ix int, keysOf func(sh int) []string, maxScore int64, limit int,
	decide func(c *store.Correlation) verdict) (out []*store.Correlation, gone int, soft error, wrote bool, err error) {
	cands, err := s.dueEntries(ctx, keysOf, maxScore, limit)
	if err != nil {
		return nil, 0, nil, false, err
	}
	var corrupt []error
	removing := map[string]bool{} // removals not confirmed, read again
	for attempt := 0; len(cands) > 0; attempt++ {
		if attempt == maxAttempts {
			return out, gone, errors.Join(append(corrupt, contention(cands[0].member, attempt, errors.New("left for the next pass")))...), true, nil
		}
		if attempt > 0 {
			if err := pause(ctx, attempt); err != nil {
				return out, gone, errors.Join(corrupt...), wrote, contention(cands[0].member, attempt, err)
			}
		}
		// A record read again after a failed compare-and-set is read with
		// its index entry: when the entry is gone, the writer that beat us
		// decided the record and there is nothing left to do or fix. (Racing
		// reapers all read the same earliest entries; without this each
		// loser spent a second script call re-deciding and "fixing" an
		// entry already dropped.)
		pipe := s.rdb.Pipeline()
		gets := make([]*redis.StringCmd, len(cands))
		var scores []*redis.FloatCmd
		if attempt > 0 {
			scores = make([]*redis.FloatCmd, len(cands))
		}
		for i, d := range cands {
			if scores != nil {
				scores[i] = pipe.ZScore(ctx, d.key, d.member)
			}
			gets[i] = pipe.Get(ctx, s.keys.record(d.sh, d.member))
		}
		if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
			return out, gone, errors.Join(corrupt...), wrote, s.redisErr("read due records", err)
		}
		var calls []call
		type pending struct {
			d      due
			c      *store.Correlation
			v      verdict
			update bool
		}
		var todo []pending
		for i, d := range cands {
			idx := d.key
			entryGone := scores != nil && errors.Is(scores[i].Err(), redis.Nil)
			raw, err := gets[i].Result()
			recordGone := errors.Is(err, redis.Nil)
			if (entryGone || recordGone) && removing[d.member] {
				gone++
			}
			if entryGone {
				continue
			}
			if recordGone {
				calls = append(calls, call{scriptUnindex, []string{s.keys.record(d.sh, d.member), idx}, []any{d.member}})
				todo = append(todo, pending{d: d})
				continue
			}
			l, err := s.decodeLoaded(d.member, raw)
			if err != nil {
				var ce *store.CorruptError
				if errors.As(err, &ce) {
					corrupt = append(corrupt, ce)
					s.log.Error("corrupt record set aside", "ref", d.member, "index", idx, "err", ce.Err)
				}
				calls = append(calls, call{scriptQuarantine, []string{s.keys.record(d.sh, d.member), s.keys.quarantine(d.sh), idx}, []any{d.member, raw}})
				todo = append(todo, pending{d: d})
				continue
			}
			c := l.c
			// before names the entry that led here, so that a stale one is
			// moved to where the record says it belongs.
			before := entriesOf(c)
			*before.index()[ix] = zentry{true, d.score}
			version := c.Version
			v := decide(c)
			now := entriesOf(c)
			if v == keep && c.Version == version && *now.index()[ix] == (zentry{true, d.score}) {
				continue // not due after all (a deadline later in the same µs): nothing to fix
			}
			next := c
			if v == remove {
				next = nil
			}
			cl, err := s.updateCall(l, next, before, v != keep, newToken())
			if err != nil {
				return out, gone, errors.Join(corrupt...), wrote, err
			}
			calls = append(calls, cl)
			todo = append(todo, pending{d: d, c: c, v: v, update: true})
		}
		if len(calls) > 0 {
			wrote = true
		}
		cmds := s.run(ctx, calls)
		var again []due
		for i, p := range todo {
			if !p.update {
				if err := cmds[i].Err(); err != nil {
					return out, gone, errors.Join(corrupt...), wrote, s.redisErr("drop index entry of "+p.d.member, err)
				}
				continue
			}
			ok, err := s.updated(p.d.member, cmds[i])
			if err != nil {
				return out, gone, errors.Join(corrupt...), wrote, err
			}
			if !ok {
				if p.v == remove {
					removing[p.d.member] = true
				}
				again = append(again, p.d)
				continue
			}
			p.c.Replies = nil // any held inside a schema-2 record are now apart
			switch p.v {
			case report:
				out = append(out, p.c)
			case remove:
				out = append(out, p.c)
				if p.c.IdempotencyKey != "" {
					dref := store.Ref{Namespace: p.c.Namespace, ID: store.DeriveID(p.c.Namespace, p.c.IdempotencyKey)}.String()
					if dref != p.d.member {
						s.unmapIdem(ctx, dref, p.d.member)
					}
				}
			}
		}
		cands = again
	}
	return out, gone, errors.Join(corrupt...), wrote, nil
}

// ExpireDue implements store.Store.
func (s *Store) ExpireDue(ctx context.Context, now time.Time, limit int) ([]*store.Correlation, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	if err := store.ValidateLimit(limit); err != nil {
		return nil, err
	}
	out, soft, err := s.sweep(ctx, ixDeadline, oneKey(s.keys.deadline), micros(now), limit, func(c *store.Correlation) verdict {
		if c.State == store.StatePending && !c.Deadline.After(now) {
			c.DecideAtDeadline(now, store.ReasonDeadline, s.lim)
			return report
		}
		return keep
	})
	if err != nil {
		return out, err // the ones decided before the error are written
	}
	return out, soft
}

// ClaimDispatch implements store.Store. It reads only the dispatch keys of
// the handlers and namespace it serves; claiming in every namespace, it
// first reads which namespaces of each shard hold an outcome waiting for
// dispatch (the shard's counters).
func (s *Store) ClaimDispatch(ctx context.Context, r store.ClaimRequest) ([]*store.Correlation, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	if err := store.ValidateClaim(r); err != nil {
		return nil, err
	}
	namespaces := func(int) []string { return []string{r.Namespace} }
	if r.Namespace == "" {
		byShard, err := s.dispatchNamespaces(ctx)
		if err != nil {
			return nil, err
		}
		namespaces = func(sh int) []string { return byShard[sh] }
	}
	keysOf := func(sh int) []string {
		var keys []string
		for _, ns := range namespaces(sh) {
			for _, h := range r.Handlers {
				keys = append(keys, s.keys.dispatchOf(sh, ns, h))
			}
		}
		return keys
	}
	out, soft, err := s.sweep(ctx, ixDispatch, keysOf, micros(r.Now), r.Limit, func(c *store.Correlation) verdict {
		v := c.Version
		switch {
		case !r.Serves(c):
			return keep // a stale entry: moved where the record says
		case c.ApplyClaim(r.Instance, r.Now, r.Lease, s.lim):
			return report
		case c.Version != v: // attempts used up: now dead
			return save
		}
		return keep
	})
	if aerr := s.attach(ctx, out...); aerr != nil && err == nil { // the handler gets the replies
		err = aerr
	}
	if err != nil {
		return out, err // the ones decided before the error are written
	}
	return out, soft
}

// OldestDispatchDue implements store.Store: the head of each of the
// handler's dispatch keys, in one round trip after the counters'.
func (s *Store) OldestDispatchDue(ctx context.Context, namespace, handler string) (time.Time, error) {
	if err := s.check(); err != nil {
		return time.Time{}, err
	}
	if namespace != "" {
		if err := store.ValidateNamespace(namespace); err != nil {
			return time.Time{}, err
		}
	}
	if err := store.ValidateHandler(handler); err != nil {
		return time.Time{}, err
	}
	byShard := make([][]string, s.keys.shards)
	if namespace == "" {
		var err error
		if byShard, err = s.dispatchNamespaces(ctx); err != nil {
			return time.Time{}, err
		}
	} else {
		for sh := range byShard {
			byShard[sh] = []string{namespace}
		}
	}
	pipe := s.rdb.Pipeline()
	var cmds []*redis.ZSliceCmd
	for sh, nss := range byShard {
		for _, ns := range nss {
			cmds = append(cmds, pipe.ZRangeWithScores(ctx, s.keys.dispatchOf(sh, ns, handler), 0, 0))
		}
	}
	if len(cmds) == 0 {
		return time.Time{}, nil
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return time.Time{}, s.redisErr("read dispatch index", err)
	}
	var oldest time.Time
	for _, cmd := range cmds {
		for _, z := range cmd.Val() {
			if at := time.UnixMicro(int64(z.Score)); oldest.IsZero() || at.Before(oldest) {
				oldest = at
			}
		}
	}
	return oldest, nil
}

// dispatchNamespaces lists, per shard, the namespaces whose counters count
// an outcome waiting for dispatch.
func (s *Store) dispatchNamespaces(ctx context.Context) ([][]string, error) {
	pipe := s.rdb.Pipeline()
	cmds := make([]*redis.MapStringStringCmd, s.keys.shards)
	for sh := range s.keys.shards {
		cmds[sh] = pipe.HGetAll(ctx, s.keys.counters(sh))
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, s.redisErr("read counters", err)
	}
	out := make([][]string, s.keys.shards)
	for sh, cmd := range cmds {
		for field, v := range cmd.Val() {
			ns, ok := strings.CutSuffix(field, ":d:"+string(store.DispatchPending))
			if n, _ := strconv.ParseInt(v, 10, 64); ok && n > 0 && store.ValidateNamespace(ns) == nil {
				out[sh] = append(out[sh], ns)
			}
		}
		slices.Sort(out[sh])
	}
	return out, nil
}

// Purge implements store.Store.
func (s *Store) Purge(ctx context.Context, before time.Time, limit int) (int, error) {
	if err := s.check(); err != nil {
		return 0, err
	}
	if err := store.ValidateLimit(limit); err != nil {
		return 0, err
	}
	out, soft, err := s.sweep(ctx, ixPurge, oneKey(s.keys.purge), microsBefore(before), limit, func(c *store.Correlation) verdict {
		if entriesOf(c).purge.ok && c.Outcome.At.Before(before) {
			return remove
		}
		return keep
	})
	if err != nil {
		return len(out), err
	}
	return len(out), soft
}

// DropEarlyReplies implements store.Store.
func (s *Store) DropEarlyReplies(ctx context.Context, before time.Time, limit int) (int, error) {
	if err := s.check(); err != nil {
		return 0, err
	}
	if err := store.ValidateLimit(limit); err != nil {
		return 0, err
	}
	stale, err := s.dueEntries(ctx, oneKey(s.keys.earlyTime), microsBefore(before), limit)
	if err != nil {
		return 0, err
	}
	byShard := map[int]*call{}
	var order []int
	for _, d := range stale {
		cl := byShard[d.sh]
		if cl == nil {
			cl = &call{script: scriptDropEarly, keys: []string{s.keys.earlyTime(d.sh), s.keys.counters(d.sh)}}
			byShard[d.sh] = cl
			order = append(order, d.sh)
		}
		key := d.member
		if i := strings.IndexByte(key, ' '); i >= 0 {
			key = key[i+1:]
		}
		cl.keys = append(cl.keys, s.keys.early(d.sh, key))
		cl.args = append(cl.args, d.member)
	}
	calls := make([]call, 0, len(order))
	for _, sh := range order {
		calls = append(calls, *byShard[sh])
	}
	n := 0
	for _, cmd := range s.run(ctx, calls) {
		k, err := cmd.Int()
		if err != nil {
			return n, s.redisErr("drop early replies", err)
		}
		n += k
	}
	return n, nil
}
