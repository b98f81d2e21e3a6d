package redisstore

import (
	"cmp"
	"context"
	"errors"
	"fmt"

	"github.com/corrstore/corrstore/internal/storekit"
	"github.com/corrstore/corrstore/store"
)

// Import writes c exactly as it is — state, outcome, replies, late replies,
// events, dispatch state, version and times — for moving correlations
// between stores (corrstore import). It is idempotent: when a record with
// the same ref and the same content exists it returns created false and
// changes nothing. Errors: ErrInvalid (c is not a record a store could hold),
// ErrConflict (another record holds the ref, or the namespace's idempotency
// key), ErrClosed, ErrUnavailable.
//
// Import publishes no events and applies no early replies: it restores a
// decided history, it does not make one. Early replies buffered for the ref
// are dropped, since the imported record carries the replies it got.
func (s *Store) Import(ctx context.Context, c *store.Correlation) (created bool, err error) {
	if err := s.check(); err != nil {
		return false, err
	}
	n, raw, err := storekit.PrepareImport(c)
	if err != nil {
		return false, err
	}
	key := n.Ref().String()
	keyConflict := func(holder string) error {
		return fmt.Errorf("%w: import %s: idempotency key %q of namespace %s belongs to %s here",
			store.ErrConflict, key, n.IdempotencyKey, n.Namespace, holder)
	}
	dref := ""
	if n.IdempotencyKey != "" {
		dref = store.Ref{Namespace: n.Namespace, ID: store.DeriveID(n.Namespace, n.IdempotencyKey)}.String()
	}
	if dref != "" && dref != key {
		sh := s.keys.shard(dref)
		keys := []string{s.keys.record(sh, dref), s.keys.idem(sh, dref)}
		stale := ""
		for {
			holder, err := s.run(ctx, []call{{scriptClaimIdem, keys, []any{dref, key, stale}}})[0].Text()
			if err != nil {
				return false, s.redisErr("import "+key+": idempotency key", err)
			}
			if holder == key {
				break
			}
			if gone, err := s.gone(ctx, holder); err != nil || !gone || stale == holder {
				return false, cmp.Or(err, keyConflict(holder))
			}
			stale = holder // a mapping to a purged record: replace it
		}
	}

	token := newToken()
	v, err := value(n, "", token)
	if err != nil {
		return false, err
	}
	var fields []string
	var b backoff
	for attempt := 0; ; attempt++ {
		if attempt > 1 {
			if err := b.wait(ctx, key); err != nil {
				return false, err
			}
		}
		cl, err := s.createCall(n, v, token, "", dref == key, fields)
		if err != nil {
			return false, err
		}
		res, err := s.run(ctx, []call{cl})[0].Slice()
		if err != nil {
			return false, s.redisErr("import "+key, err)
		}
		kind, _ := res[0].(string)
		switch kind {
		case "created":
			return true, nil
		case "exists":
			cur, _ := res[1].(string)
			existing, err := decodeValue(key, cur)
			if err != nil {
				return false, err
			}
			if err := s.attach(ctx, existing); err != nil {
				return false, err
			}
			return false, storekit.CheckImported(existing, n, raw)
		case "redirect":
			holder, _ := res[1].(string)
			if gone, err := s.gone(ctx, holder); err != nil || !gone {
				return false, cmp.Or(err, keyConflict(holder))
			}
			s.unmapIdem(ctx, dref, holder)
			continue
		case "early":
			fields = fields[:0]
			for i := 1; i < len(res); i += 2 {
				f, _ := res[i].(string)
				fields = append(fields, f)
			}
			continue
		default:
			return false, unexpected("import "+key, res)
		}
	}
}

// gone reports whether no record is stored under the ref string holder.
func (s *Store) gone(ctx context.Context, holder string) (bool, error) {
	_, err := s.loadHolder(ctx, holder)
	if errors.Is(err, store.ErrNotFound) {
		return true, nil
	}
	var ce *store.CorruptError
	if errors.As(err, &ce) {
		return false, nil
	}
	return false, err
}
