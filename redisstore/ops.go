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

	"github.com/redis/go-redis/v9"

	"github.com/corrstore/corrstore/internal/storekit"
	"github.com/corrstore/corrstore/store"
)

// Register implements store.Store. In the common case it is one round trip:
// the create script stores the record and its index entries unless the ref
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
	key := p.Ref().String()
	dref := "" // the ref derived from the idempotency key
	if p.IdempotencyKey != "" {
		dref = store.Ref{Namespace: p.Namespace, ID: store.DeriveID(p.Namespace, p.IdempotencyKey)}.String()
	}
	claimed := false
	if dref != "" && dref != key {
		res, done, err := s.claimIdem(ctx, p, dref)
		if done || err != nil {
			return res, err
		}
		claimed = true
	}

	token := newToken()
	n, applied := p, 0
	var fields []string
	var b backoff
	for attempt := 0; ; attempt++ {
		if attempt > 1 {
			if err := b.wait(ctx, key); err != nil {
				return store.RegisterResult{}, err
			}
		}
		v, err := value(n, "", token)
		if err != nil {
			return store.RegisterResult{}, err
		}
		event := ""
		if applied > 0 { // early replies changed it: a change subscribers hear of
			event = eventPayload(n)
		}
		cl, err := s.createCall(n, v, token, event, dref == key, fields)
		if err != nil {
			return store.RegisterResult{}, err
		}
		res, err := s.run(ctx, []call{cl})[0].Slice()
		if err != nil {
			return store.RegisterResult{}, s.redisErr("register "+key, err)
		}
		kind, _ := res[0].(string)
		switch kind {
		case "created":
			n.Replies = nil // stored apart: Get returns them
			return store.RegisterResult{Correlation: n, Created: true, EarlyApplied: applied}, nil
		case "exists":
			v, _ := res[1].(string)
			existing, err := decodeValue(key, v)
			if err != nil {
				return store.RegisterResult{}, err
			}
			if err := existing.Registration(p); err != nil {
				if claimed {
					s.unmapIdem(ctx, dref, key)
				}
				return store.RegisterResult{}, err
			}
			return store.RegisterResult{Correlation: existing}, nil
		case "redirect":
			holder, _ := res[1].(string)
			l, err := s.loadHolder(ctx, holder)
			switch {
			case err == nil:
				if err := l.c.Registration(p); err != nil {
					return store.RegisterResult{}, err
				}
				return store.RegisterResult{Correlation: l.c}, nil
			case errors.Is(err, store.ErrNotFound): // the holder was purged: the key is free
				s.unmapIdem(ctx, dref, holder)
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
				if err != nil || e.Ref().String() != key {
					s.log.Warn("undecodable early reply dropped", "ref", key, "err", err)
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
			return store.RegisterResult{}, unexpected("register "+key, res)
		}
	}
}

// loadHolder loads the record an idempotency mapping names; a mapping that
// names no ref (it cannot be followed) reads as not found, so it is replaced.
func (s *Store) loadHolder(ctx context.Context, holder string) (*loaded, error) {
	ref, err := store.ParseRef(holder)
	if err != nil {
		return nil, fmt.Errorf("%w: idempotency mapping to %q", store.ErrNotFound, holder)
	}
	return s.load(ctx, ref)
}

// createCall is the create script's call for the new record n stored as
// value v: its index entries, and the removal of the early replies fields
// that were applied (see lua/create.lua). keyOnly: the ref is derived from
// the idempotency key, whose mapping to another ref wins. An empty event
// publishes nothing.
func (s *Store) createCall(n *store.Correlation, v, token, event string, keyOnly bool, fields []string) (call, error) {
	key := n.Ref().String()
	sh := s.keys.shard(key)
	sc := newScript(s.keys.record(sh, key))
	sc.key(s.keys.early(sh, key))
	sc.key(s.keys.idem(sh, key))
	sc.reindex(s.keys, sh, key, entries{}, entriesOf(n))
	if err := sc.storeApart(s.keys, sh, key, n); err != nil {
		return call{}, err
	}
	if err := sc.storeEvents(s.keys, sh, key, n, s.lim); err != nil {
		return call{}, err
	}
	if err := sc.storeLate(s.keys, sh, key, n, s.lim); err != nil {
		return call{}, err
	}
	if len(fields) > 0 {
		sc.del(s.keys.early(sh, key))
		for _, f := range fields {
			sc.zrem(s.keys.earlyTime(sh), f+" "+key)
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
	return call{scriptCreate, sc.keys, append(args, sc.ops...)}, nil
}

// claimIdem binds the idempotency key of a registration with an explicit ID
// to its ref. done is set when the key already belongs to a stored record:
// the result (or the conflict) is the answer.
func (s *Store) claimIdem(ctx context.Context, p *store.Correlation, dref string) (res store.RegisterResult, done bool, err error) {
	key := p.Ref().String()
	sh := s.keys.shard(dref)
	keys := []string{s.keys.record(sh, dref), s.keys.idem(sh, dref)}
	stale := ""
	var b backoff
	for attempt := 0; ; attempt++ {
		if attempt > 1 {
			if err := b.wait(ctx, key); err != nil {
				return res, true, err
			}
		}
		holder, err := s.run(ctx, []call{{scriptClaimIdem, keys, []any{dref, key, stale}}})[0].Text()
		if err != nil {
			return res, true, s.redisErr("register "+key+": idempotency key", err)
		}
		if holder == key {
			return res, false, nil
		}
		l, err := s.loadHolder(ctx, holder)
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
}

// unmapIdem frees the idempotency key whose derived ref is dref, if it
// still names key. Best effort: a mapping to a record that is gone is
// recognised as stale and replaced anyway.
func (s *Store) unmapIdem(ctx context.Context, dref, key string) {
	sh := s.keys.shard(dref)
	if err := s.run(ctx, []call{{scriptUnmapIdem, []string{s.keys.idem(sh, dref)}, []any{key}}})[0].Err(); err != nil {
		s.log.Warn("idempotency mapping not removed", "key_ref", dref, "ref", key, "err", err)
	}
}

// checkRef normalises and checks the ref of a call.
func (s *Store) checkRef(ref store.Ref) (store.Ref, error) {
	if err := s.check(); err != nil {
		return ref, err
	}
	ref = ref.Norm()
	return ref, ref.Validate()
}

// Deliver implements store.Store. Deliveries to one ref from this process
// take turns (see contention.go).
func (s *Store) Deliver(ctx context.Context, ref store.Ref, r store.Reply) (store.DeliverResult, error) {
	ref, err := s.checkRef(ref)
	if err != nil {
		return store.DeliverResult{}, err
	}
	if err := store.ValidateReply(r, s.lim); err != nil {
		return store.DeliverResult{}, err
	}
	key := ref.String()
	unlock, err := s.locks.lock(ctx, key)
	if err != nil {
		return store.DeliverResult{}, err
	}
	defer unlock()
	var b backoff
	for {
		now := s.clock.Now()
		r.ReceivedAt = now
		l, held, err := s.loadHeld(ctx, ref, store.CandidateKeys(r))
		if errors.Is(err, store.ErrNotFound) {
			if r.Nonce != nil {
				return store.DeliverResult{}, r.CheckRegistration(ref, nil) // bound: never buffered
			}
			if !s.lim.EarlyBuffering() {
				return store.DeliverResult{}, err
			}
			registered, err := s.buffer(ctx, ref, r)
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
		// Checked against the record the compare-and-set below writes over:
		// a purge or a new registration meanwhile makes the write fail, and
		// the check runs again on what is stored then.
		if err := r.CheckRegistration(ref, c); err != nil {
			return store.DeliverResult{}, err
		}
		before, version := entriesOf(c), c.Version
		st, stepErr := c.ApplyReplyApart(r, now, s.lim, func(k string) bool { return held[k] })
		if stepErr != nil && c.Version == version {
			return store.DeliverResult{}, stepErr
		}
		// A duplicate is written too: it counts in DuplicateCount. An error
		// after the record changed (its deadline outcome) is saved first.
		ok, err := s.update(ctx, l, c, before, c.Version > version)
		if err != nil {
			return store.DeliverResult{}, err
		}
		if ok {
			if stepErr != nil {
				return store.DeliverResult{}, stepErr
			}
			c.Replies = nil // stored apart: Get returns them
			return store.DeliverResult{Status: st, Correlation: c}, nil
		}
		if err := b.wait(ctx, key); err != nil {
			return store.DeliverResult{}, err
		}
	}
}

// earlyDigest names a reply's content, so the same content is buffered once.
func earlyDigest(r store.Reply) string {
	b, _ := json.Marshal([]any{r.ID, r.From, r.Seq, r.Final, r.Error, r.Body})
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:12])
}

// buffer keeps an early reply. registered reports that the ref was
// registered meanwhile: the reply must be delivered to it instead.
//
// The cap for the whole store is checked against counters read from the
// other shards just before, so concurrent buffering in several shards may
// pass it by a few: it bounds memory, it is not an exact count.
func (s *Store) buffer(ctx context.Context, ref store.Ref, r store.Reply) (registered bool, err error) {
	key := ref.String()
	sh := s.keys.shard(key)
	others, err := s.earlyCount(ctx, sh)
	if err != nil {
		return false, err
	}
	b, err := store.MarshalEarly(store.EarlyReply{Namespace: ref.Namespace, CorrelationID: ref.ID, Reply: r})
	if err != nil {
		return false, err
	}
	d := earlyDigest(r)
	keys := []string{s.keys.record(sh, key), s.keys.early(sh, key), s.keys.earlyTime(sh), s.keys.counters(sh)}
	args := []any{d, b, micros(r.ReceivedAt), d + " " + key, s.lim.MaxEarlyPerID, s.lim.MaxEarlyReplies, others}
	cmd := s.run(ctx, []call{{scriptBuffer, keys, args}})[0]
	if err := cmd.Err(); err != nil {
		return false, s.redisErr("buffer early reply for "+key, err)
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
				return false, store.EarlyPerRefFull(key, int(n), s.lim)
			case "full":
				return false, store.EarlyStoreFull(n, s.lim)
			}
		}
	}
	return false, unexpected("buffer early reply for "+key, cmd.Val())
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
func (s *Store) Get(ctx context.Context, ref store.Ref) (*store.Correlation, error) {
	ref, err := s.checkRef(ref)
	if err != nil {
		return nil, err
	}
	l, err := s.load(ctx, ref)
	if err != nil {
		return nil, err
	}
	if err := s.attach(ctx, l.c); err != nil {
		return nil, err
	}
	return l.c, nil
}

// mutate is the mutate primitive of storekit.Mutations, which supplies
// Extend, Cancel, Expire, AckDispatch, NackDispatch and Redispatch and
// checks their arguments first: it applies one state-machine step to one
// record with a compare-and-set, reading again when another process wrote
// first. A step that fails after it changed the record (a correlation found
// past its deadline takes its deadline outcome, then Extend or Cancel
// refuses) has the change saved before the error is returned.
func (s *Store) mutate(ctx context.Context, ref store.Ref, step storekit.Step) (store.Result, error) {
	key := ref.String()
	unlock, err := s.locks.lock(ctx, key)
	if err != nil {
		return store.Result{}, err
	}
	defer unlock()
	var b backoff
	for {
		now := s.clock.Now()
		l, err := s.load(ctx, ref)
		if err != nil {
			return store.Result{}, err
		}
		c := l.c
		before, version := entriesOf(c), c.Version
		dup, stepErr := step(c, now)
		if stepErr != nil && c.Version == version {
			return store.Result{}, stepErr
		}
		if dup {
			c.Replies = nil // answers carry none
			return store.Result{Correlation: c, Duplicate: true}, nil
		}
		ok, err := s.update(ctx, l, c, before, true)
		if err != nil {
			return store.Result{}, err
		}
		if ok {
			c.Replies = nil // stored apart now, if held inside a schema-2 record
			if stepErr != nil {
				return store.Result{}, stepErr
			}
			return store.Result{Correlation: c}, nil
		}
		if err := b.wait(ctx, key); err != nil {
			return store.Result{}, err
		}
	}
}
