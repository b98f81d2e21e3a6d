package redisstore

import (
	"cmp"
	"context"
	"errors"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/corrstore/corrstore/store"
)

// pos is a place in the creation order: (score, member), the member being
// the ref string.
type pos struct {
	score  int64
	member string
}

func comparePos(a, b pos) int {
	return cmp.Or(cmp.Compare(a.score, b.score), strings.Compare(a.member, b.member))
}

// shardIter walks one shard's creation index from a position.
type shardIter struct {
	sh      int
	buf     []pos
	from    *pos // fetch after this
	skip    int  // entries at from.score, all at or before from.member, to skip server-side
	drained bool
}

// query adds to pipe the read of the next batch entries of the shard's
// creation index key with scores within [lo, hi]. The range starts at the
// score of from, inclusive: entries there that sort at or before from are
// dropped by refill, which keeps the cursor exact when many entries share a
// microsecond. (A sorted set orders equal scores by member, byte-wise, as
// strings.Compare does.)
func (it *shardIter) query(ctx context.Context, pipe redis.Pipeliner, key string, asc bool, lo, hi int64, batch int) *redis.ZSliceCmd {
	if it.from != nil {
		if asc {
			lo = max(lo, it.from.score)
		} else {
			hi = min(hi, it.from.score)
		}
	}
	by := &redis.ZRangeBy{Min: scoreBound(lo), Max: scoreBound(hi), Offset: int64(it.skip), Count: int64(batch)}
	if asc {
		return pipe.ZRangeByScoreWithScores(ctx, key, by)
	}
	return pipe.ZRevRangeByScoreWithScores(ctx, key, by)
}

// refill takes in the answer to query.
func (it *shardIter) refill(res []redis.Z, asc bool, batch int) {
	kept := res
	if it.from != nil {
		for len(kept) > 0 {
			c := comparePos(posOf(kept[0]), *it.from)
			if (asc && c > 0) || (!asc && c < 0) {
				break
			}
			kept = kept[1:]
		}
	}
	if len(kept) == 0 && len(res) == batch {
		it.skip += batch // a whole batch at the cursor's microsecond: read past it
		return
	}
	for _, z := range kept {
		it.buf = append(it.buf, posOf(z))
	}
	it.drained = len(res) < batch
	if len(kept) > 0 {
		last := it.buf[len(it.buf)-1]
		it.from, it.skip = &last, 0
	}
}

// posOf is the place of a sorted-set entry read with its score.
func posOf(z redis.Z) pos {
	m, _ := z.Member.(string)
	return pos{int64(z.Score), m}
}

// scoreBound is a ZRANGEBYSCORE bound; the extreme int64s stand for no bound.
func scoreBound(n int64) string {
	switch n {
	case math.MinInt64:
		return "-inf"
	case math.MaxInt64:
		return "+inf"
	}
	return strconv.FormatInt(n, 10)
}

// List implements store.Store. Each shard's creation index is read in
// order after the cursor (ZRANGEBYSCORE, all shards in one pipeline) and
// the shards are merged, so a page costs a few round trips whatever the
// number of shards. The cursor is the (creation µs, ref) of the last item:
// entries inserted while a client pages land before or after it and are
// never listed twice. A listing of one namespace reads no other
// namespace's records: an index entry names the ref, so they are skipped
// before they are read (what a page costs does not depend on what other
// tenants store).
func (s *Store) List(ctx context.Context, f store.Filter) (store.Page, error) {
	if err := s.check(); err != nil {
		return store.Page{}, err
	}
	if err := f.Normalize(); err != nil {
		return store.Page{}, err
	}
	asc := f.Order == store.OldestFirst
	lo, hi := int64(math.MinInt64), int64(math.MaxInt64) // no bound
	if !f.CreatedAfter.IsZero() {
		lo = micros(f.CreatedAfter)
	}
	if !f.CreatedBefore.IsZero() {
		hi = microsBefore(f.CreatedBefore)
	}
	var start *pos
	if f.Cursor != "" {
		at, ref, _ := store.DecodeCursor(f.Cursor)
		start = &pos{micros(at), ref.String()}
	}
	iters := make([]*shardIter, s.keys.shards)
	for sh := range iters {
		iters[sh] = &shardIter{sh: sh, from: start}
	}
	batch := min(f.Limit+1, 256)
	ns := "" // the namespace's ref prefix, "ns/"
	if f.Namespace != "" {
		ns = f.Namespace + "/"
		batch = 256 // other tenants' entries are skipped: read past them in large steps
	}
	var page store.Page
	for {
		if err := ctx.Err(); err != nil {
			return store.Page{}, s.redisErr("list", err)
		}
		// Refill every shard whose buffer ran dry, in one round trip.
		var refill []*shardIter
		var cmds []*redis.ZSliceCmd
		pipe := s.rdb.Pipeline()
		for _, it := range iters {
			if len(it.buf) == 0 && !it.drained {
				refill = append(refill, it)
				cmds = append(cmds, it.query(ctx, pipe, s.keys.created(it.sh), asc, lo, hi, batch))
			}
		}
		if len(cmds) > 0 {
			if _, err := pipe.Exec(ctx); err != nil {
				return store.Page{}, s.redisErr("list", err)
			}
		}
		for i, cmd := range cmds {
			refill[i].refill(cmd.Val(), asc, batch)
		}
		// Merge while every shard that may hold more has a head.
		var picks []pos
		blocked := false
		for len(picks) < f.Limit-len(page.Items) {
			var best *shardIter
			for _, it := range iters {
				if len(it.buf) == 0 {
					if !it.drained {
						blocked = true
					}
					continue
				}
				if best == nil {
					best = it
					continue
				}
				c := comparePos(it.buf[0], best.buf[0])
				if (asc && c < 0) || (!asc && c > 0) {
					best = it
				}
			}
			if blocked || best == nil {
				break
			}
			p := best.buf[0]
			best.buf = best.buf[1:]
			if ns != "" && !strings.HasPrefix(p.member, ns) {
				continue // another namespace's
			}
			picks = append(picks, p)
		}
		if len(picks) == 0 {
			if blocked {
				continue // a shard ran dry mid-merge: refill it
			}
			return page, nil // every shard drained: the last page
		}
		items, err := s.loadMany(ctx, picks)
		if err != nil {
			return store.Page{}, err
		}
		for i, c := range items {
			if c == nil || !f.Match(c) {
				continue
			}
			if f.Full {
				if err := s.attach(ctx, c); err != nil {
					return store.Page{}, err
				}
			} else { // held inside the record: a schema-2 one, or a short timeline
				c.Replies, c.Events, c.Late = nil, nil, nil
			}
			page.Items = append(page.Items, c)
			if len(page.Items) == f.Limit {
				page.NextCursor = store.EncodeCursor(time.UnixMicro(picks[i].score), c.Ref())
				return page, nil
			}
		}
	}
}

// loadMany reads records in one round trip; a record gone or set aside
// meanwhile is nil (Get reports which).
func (s *Store) loadMany(ctx context.Context, at []pos) ([]*store.Correlation, error) {
	pipe := s.rdb.Pipeline()
	cmds := make([]*redis.StringCmd, len(at))
	for i, p := range at {
		cmds[i] = pipe.Get(ctx, s.keys.record(s.keys.shard(p.member), p.member))
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, s.redisErr("list: read records", err)
	}
	out := make([]*store.Correlation, len(at))
	for i, cmd := range cmds {
		v, err := cmd.Result()
		if err != nil {
			continue
		}
		if c, err := decodeValue(at[i].member, v); err == nil {
			out[i] = c
		}
	}
	return out, nil
}

// Stats implements store.Store. Counts come from the counters each script
// keeps next to the records; the oldest pending is the first entry of the
// namespace's pending index in each shard.
func (s *Store) Stats(ctx context.Context, namespace string) (store.Stats, error) {
	if err := s.check(); err != nil {
		return store.Stats{}, err
	}
	if namespace != "" {
		if err := store.ValidateNamespace(namespace); err != nil {
			return store.Stats{}, err
		}
	}
	pipe := s.rdb.Pipeline()
	counts := make([]*redis.MapStringStringCmd, s.keys.shards)
	for sh := range s.keys.shards {
		counts[sh] = pipe.HGetAll(ctx, s.keys.counters(sh))
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return store.Stats{}, s.redisErr("stats", err)
	}
	st := store.Stats{Namespaces: map[string]store.NamespaceStats{}}
	for _, cmd := range counts {
		for field, v := range cmd.Val() {
			n, _ := strconv.ParseInt(v, 10, 64)
			if field == fieldEarly {
				st.EarlyReplies += max(n, 0)
				continue
			}
			ns, rest, ok := strings.Cut(field, ":")
			if !ok || n <= 0 || (namespace != "" && ns != namespace) {
				continue
			}
			kind, value, ok := strings.Cut(rest, ":")
			if !ok {
				continue
			}
			e := nsStats(st, ns)
			switch kind {
			case "s":
				e.States[store.State(value)] += n
			case "d":
				e.Dispatch[store.DispatchState(value)] += n
			case "b":
				e.Bytes += n
				st.Namespaces[ns] = e
			}
		}
	}
	if namespace != "" {
		nsStats(st, namespace)
	}
	if len(st.Namespaces) == 0 {
		return st, nil
	}
	pipe = s.rdb.Pipeline()
	type oldest struct {
		ns  string
		cmd *redis.ZSliceCmd
	}
	var firsts []oldest
	for ns := range st.Namespaces {
		for sh := range s.keys.shards {
			firsts = append(firsts, oldest{ns, pipe.ZRangeWithScores(ctx, s.keys.pending(sh, ns), 0, 0)})
		}
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return store.Stats{}, s.redisErr("stats: oldest pending", err)
	}
	for _, o := range firsts {
		z := o.cmd.Val()
		if len(z) == 0 {
			continue
		}
		t := time.UnixMicro(int64(z[0].Score))
		e := st.Namespaces[o.ns]
		if e.OldestPending.IsZero() || t.Before(e.OldestPending) {
			e.OldestPending = t
			st.Namespaces[o.ns] = e
		}
	}
	return st, nil
}

func nsStats(st store.Stats, ns string) store.NamespaceStats {
	e, ok := st.Namespaces[ns]
	if !ok {
		e = store.NamespaceStats{States: map[store.State]int64{}, Dispatch: map[store.DispatchState]int64{}}
		st.Namespaces[ns] = e
	}
	return e
}
