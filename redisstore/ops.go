package redisstore

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/corrstore/corrstore/store"
)

// Register implements store.Store. In the common case it is one round trip:
// the create script stores the record and its index entries unless the ID
// is taken (it returns the stored record) or early replies wait for it (it
// returns them; they are applied here and the create is sent again).
func (s *Store) Register(ctx context.Context, c *store.Correlation) (store.RegisterResult, error) {
	if err := s.check(); err != nil {
		return store.RegisterResult{}, err
	}
	now := s.clock.Now()
	p, err := store.Prepare(c, now, s.lim)
	if err != nil {
		return store.RegisterResult{}, err
	}
	derived := ""
	if p.IdempotencyKey != "" {
		derived = store.DeriveID(p.Namespace, p.IdempotencyKey)
	}
	claimed := false
	if derived != "" && derived != p.ID {
		res, done, err := s.claimIdem(ctx, p, derived)
		if done || err != nil {
			return res, err
		}
		claimed = true
	}

	token := newToken()
	n, applied := p, 0
	var fields []string
	for range maxAttempts {
		v, err := value(n, "", token)
		if err != nil {
			return store.RegisterResult{}, err
		}
		cl := s.createCall(n, v, token, eventPayload(n), derived == p.ID, fields)
		res, err := s.run(ctx, []call{cl})[0].Slice()
		if err != nil {
			return store.RegisterResult{}, s.redisErr("register "+p.ID, err)
		}
		kind, _ := res[0].(string)
		switch kind {
		case "created":
			return store.RegisterResult{Correlation: n, Created: true, EarlyApplied: applied}, nil
		case "exists":
			v, _ := res[1].(string)
			existing, err := decodeValue(p.ID, v)
			if err != nil {
				return store.RegisterResult{}, err
			}
			if err := existing.Registration(p); err != nil {
				if claimed {
					s.unmapIdem(ctx, derived, p.ID)
				}
				return store.RegisterResult{}, err
			}
			return store.RegisterResult{Correlation: existing}, nil
		case "redirect":
			holder, _ := res[1].(string)
			l, err := s.load(ctx, holder)
			switch {
			case err == nil:
				if err := l.c.Registration(p); err != nil {
					return store.RegisterResult{}, err
				}
				return store.RegisterResult{Correlation: l.c}, nil
			case errors.Is(err, store.ErrNotFound): // the holder was purged: the key is free
				s.unmapIdem(ctx, derived, holder)
				continue
			default:
				return store.RegisterResult{}, err
			}
		case "early":
			var replies []store.Reply
			var seqs []string
			fields = fields[:0]
			for i := 1; i+1 < len(res); i += 2 {
				f, _ := res[i].(string)
				v, _ := res[i+1].(string)
				fields = append(fields, f)
				if len(v) < 16 {
					continue
				}
				e, err := store.UnmarshalEarly([]byte(v[16:]))
				if err != nil || e.CorrelationID != p.ID {
					s.log.Warn("undecodable early reply dropped", "id", p.ID, "err", err)
					continue
				}
				replies = append(replies, e.Reply)
				seqs = append(seqs, v[:16])
			}
			// Arrival order: ApplyEarly sorts by arrival time, stably, so
			// sort by the buffer's sequence first for replies of one instant.
			idx := make([]int, len(replies))
			for i := range idx {
				idx[i] = i
			}
			slices.SortFunc(idx, func(a, b int) int { return cmp.Compare(seqs[a], seqs[b]) })
			ordered := make([]store.Reply, len(idx))
			for i, j := range idx {
				ordered[i] = replies[j]
			}
			n = p.Clone()
			applied = n.ApplyEarly(ordered, now, s.lim)
			continue
		default:
			return store.RegisterResult{}, fmt.Errorf("redisstore: register %s: unexpected answer %v", p.ID, res)
		}
	}
	return store.RegisterResult{}, contention(p.ID)
}

// createCall is the create script's call for the new record n stored as
// value v: its index entries, and the removal of the early replies fields
// that were applied (see lua/create.lua). keyOnly: the ID is derived from
// the idempotency key, whose mapping to another ID wins. An empty event
// publishes nothing.
func (s *Store) createCall(n *store.Correlation, v, token, event string, keyOnly bool, fields []string) call {
	sh := s.keys.shard(n.ID)
	sc := newScript(s.keys.record(sh, n.ID))
	sc.key(s.keys.early(sh, n.ID))
	sc.key(s.keys.idem(sh, n.ID))
	sc.reindex(s.keys, sh, n.ID, entries{}, entriesOf(n))
	if len(fields) > 0 {
		sc.del(s.keys.early(sh, n.ID))
		for _, f := range fields {
			sc.zrem(s.keys.earlyTime(sh), f+" "+n.ID)
		}
		sc.hincr(s.keys.counters(sh), fieldEarly, -int64(len(fields)))
	}
	flag := "0"
	if keyOnly {
		flag = "1"
	}
	args := []any{token, v, s.keys.channel(), event, flag, len(fields)}
	for _, f := range fields {
		args = append(args, f)
	}
	return call{scriptCreate, sc.keys, append(args, sc.ops...)}
}

// claimIdem binds the idempotency key of a registration with an explicit ID
// to that ID. done is set when the key already belongs to a stored record:
// the result (or the conflict) is the answer.
func (s *Store) claimIdem(ctx context.Context, p *store.Correlation, derived string) (res store.RegisterResult, done bool, err error) {
	sh := s.keys.shard(derived)
	keys := []string{s.keys.record(sh, derived), s.keys.idem(sh, derived)}
	stale := ""
	for range maxAttempts {
		holder, err := s.run(ctx, []call{{scriptClaimIdem, keys, []any{derived, p.ID, stale}}})[0].Text()
		if err != nil {
			return res, true, s.redisErr("register "+p.ID+": idempotency key", err)
		}
		if holder == p.ID {
			return res, false, nil
		}
		l, err := s.load(ctx, holder)
		switch {
		case err == nil:
			if err := l.c.Registration(p); err != nil {
				return res, true, err
			}
			return store.RegisterResult{Correlation: l.c}, true, nil
		case errors.Is(err, store.ErrNotFound):
			stale = holder
		default:
			return res, true, err
		}
	}
	return res, true, contention(p.ID)
}

// unmapIdem frees the idempotency key whose derived ID is derived, if it
// still names id. Best effort: a mapping to a record that is gone is
// recognised as stale and replaced anyway.
func (s *Store) unmapIdem(ctx context.Context, derived, id string) {
	sh := s.keys.shard(derived)
	if err := s.run(ctx, []call{{scriptUnmapIdem, []string{s.keys.idem(sh, derived)}, []any{id}}})[0].Err(); err != nil {
		s.log.Warn("idempotency mapping not removed", "key_id", derived, "id", id, "err", err)
	}
}

// Deliver implements store.Store.
func (s *Store) Deliver(ctx context.Context, id string, r store.Reply) (store.DeliverResult, error) {
	if err := s.check(); err != nil {
		return store.DeliverResult{}, err
	}
	if err := store.ValidateID(id); err != nil {
		return store.DeliverResult{}, err
	}
	if err := store.ValidateReply(r, s.lim); err != nil {
		return store.DeliverResult{}, err
	}
	now := s.clock.Now()
	r.ReceivedAt = now
	for range maxAttempts {
		l, err := s.load(ctx, id)
		if errors.Is(err, store.ErrNotFound) {
			if !s.lim.EarlyBuffering() {
				return store.DeliverResult{}, err
			}
			registered, err := s.buffer(ctx, id, r)
			if err != nil {
				return store.DeliverResult{}, err
			}
			if registered {
				continue
			}
			return store.DeliverResult{Status: store.DeliverBuffered}, nil
		}
		if err != nil {
			return store.DeliverResult{}, err
		}
		c := l.c
		before := entriesOf(c)
		st, err := c.ApplyReply(r, now, s.lim)
		if err != nil {
			return store.DeliverResult{}, err
		}
		// A duplicate is written too: it counts in DuplicateCount.
		ok, err := s.update(ctx, l, c, before, st != store.DeliverDuplicate)
		if err != nil {
			return store.DeliverResult{}, err
		}
		if ok {
			return store.DeliverResult{Status: st, Correlation: c}, nil
		}
	}
	return store.DeliverResult{}, contention(id)
}

// earlyDigest names a reply's content, so the same content is buffered once.
func earlyDigest(r store.Reply) string {
	b, _ := json.Marshal([]any{r.ID, r.From, r.Seq, r.Final, r.Error, r.Body})
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:12])
}

// buffer keeps an early reply. registered reports that the ID was registered
// meanwhile: the reply must be delivered to it instead.
//
// The cap for the whole store is checked against counters read from the
// other shards just before, so concurrent buffering in several shards may
// pass it by a few: it bounds memory, it is not an exact count.
func (s *Store) buffer(ctx context.Context, id string, r store.Reply) (registered bool, err error) {
	sh := s.keys.shard(id)
	others, err := s.earlyCount(ctx, sh)
	if err != nil {
		return false, err
	}
	b, err := store.MarshalEarly(store.EarlyReply{CorrelationID: id, Reply: r})
	if err != nil {
		return false, err
	}
	d := earlyDigest(r)
	keys := []string{s.keys.record(sh, id), s.keys.early(sh, id), s.keys.earlyTime(sh), s.keys.counters(sh)}
	args := []any{d, b, micros(r.ReceivedAt), d + " " + id, s.lim.MaxEarlyPerID, s.lim.MaxEarlyReplies, others}
	cmd := s.run(ctx, []call{{scriptBuffer, keys, args}})[0]
	if err := cmd.Err(); err != nil {
		return false, s.redisErr("buffer early reply for "+id, err)
	}
	switch v := cmd.Val().(type) {
	case string:
		switch v {
		case "exists":
			return true, nil
		case "buffered":
			return false, nil
		}
	case []any:
		if len(v) == 2 {
			kind, _ := v[0].(string)
			n, _ := v[1].(int64)
			switch kind {
			case "per_id":
				return false, fmt.Errorf("%w: early replies: %s already has %d buffered, the limit is %d", store.ErrTooLarge, id, n, s.lim.MaxEarlyPerID)
			case "full":
				return false, fmt.Errorf("%w: early replies: the store holds %d, the limit is %d", store.ErrTooLarge, n, s.lim.MaxEarlyReplies)
			}
		}
	}
	return false, fmt.Errorf("redisstore: buffer early reply for %s: unexpected answer %v", id, cmd.Val())
}

// earlyCount sums the early-reply counters of every shard but skip (-1: all).
func (s *Store) earlyCount(ctx context.Context, skip int) (int64, error) {
	if s.keys.shards == 1 && skip == 0 {
		return 0, nil
	}
	pipe := s.rdb.Pipeline()
	cmds := make([]*redis.StringCmd, 0, s.keys.shards)
	for sh := range s.keys.shards {
		if sh != skip {
			cmds = append(cmds, pipe.HGet(ctx, s.keys.counters(sh), fieldEarly))
		}
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return 0, s.redisErr("count early replies", err)
	}
	var total int64
	for _, c := range cmds {
		n, _ := strconv.ParseInt(c.Val(), 10, 64)
		total += max(n, 0)
	}
	return total, nil
}

// Get implements store.Store.
func (s *Store) Get(ctx context.Context, id string) (*store.Correlation, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	if err := store.ValidateID(id); err != nil {
		return nil, err
	}
	l, err := s.load(ctx, id)
	if err != nil {
		return nil, err
	}
	return l.c, nil
}

// mutate applies one state-machine step to one record with a
// compare-and-set, reading again when another write came first.
func (s *Store) mutate(ctx context.Context, id string, step func(c *store.Correlation, now time.Time) (bool, error)) (store.Result, error) {
	if err := s.check(); err != nil {
		return store.Result{}, err
	}
	if err := store.ValidateID(id); err != nil {
		return store.Result{}, err
	}
	now := s.clock.Now()
	for range maxAttempts {
		l, err := s.load(ctx, id)
		if err != nil {
			return store.Result{}, err
		}
		c := l.c
		before := entriesOf(c)
		dup, err := step(c, now)
		if err != nil {
			return store.Result{}, err
		}
		if dup {
			return store.Result{Correlation: c, Duplicate: true}, nil
		}
		ok, err := s.update(ctx, l, c, before, true)
		if err != nil {
			return store.Result{}, err
		}
		if ok {
			return store.Result{Correlation: c}, nil
		}
	}
	return store.Result{}, contention(id)
}

// Extend implements store.Store.
func (s *Store) Extend(ctx context.Context, id string, deadline time.Time) (store.Result, error) {
	return s.mutate(ctx, id, func(c *store.Correlation, now time.Time) (bool, error) {
		return c.Extend(now, deadline, s.lim)
	})
}

// Cancel implements store.Store.
func (s *Store) Cancel(ctx context.Context, id, reason string) (store.Result, error) {
	if err := s.check(); err != nil {
		return store.Result{}, err
	}
	if err := store.ValidateReason(reason); err != nil {
		return store.Result{}, err
	}
	return s.mutate(ctx, id, func(c *store.Correlation, now time.Time) (bool, error) {
		return c.Cancel(now, reason, s.lim)
	})
}

// Expire implements store.Store.
func (s *Store) Expire(ctx context.Context, id, reason string) (store.Result, error) {
	if err := s.check(); err != nil {
		return store.Result{}, err
	}
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
