package redisstore

import (
	"context"
	"errors"

	"github.com/redis/go-redis/v9"
)

// moveDispatchIndex moves the entries of schema 2's one dispatch index per
// shard ({p:s}:dp) to the per-handler ones ({p:s}:dp:<ns>:<handler>,
// layout.dispatchOf), each with its score, so that a claim finds the
// outcomes decided before the upgrade (#18). An entry whose record is gone
// or cannot be read is dropped: the record decides, and its next write
// indexes it again. Safe to re-run: what it moved is gone from {p:s}:dp.
func (u *upgrader) moveDispatchIndex(ctx context.Context) error {
	const batch = 500
	moved := 0
	for sh := range u.keys.shards {
		old := u.keys.dispatch(sh)
		for {
			zs, err := u.rdb.ZRangeWithScores(ctx, old, 0, batch-1).Result()
			if err != nil {
				return unavailable("read "+old, err)
			}
			if len(zs) == 0 {
				break
			}
			pipe := u.rdb.Pipeline()
			gets := make([]*redis.StringCmd, len(zs))
			for i, z := range zs {
				gets[i] = pipe.Get(ctx, u.keys.record(sh, z.Member.(string)))
			}
			if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
				return unavailable("read records of "+old, err)
			}
			w := u.rdb.TxPipeline()
			for i, z := range zs {
				ref := z.Member.(string)
				if raw, err := gets[i].Result(); err == nil {
					if c, err := decodeValue(ref, raw); err == nil && c.Callback.Handler != "" {
						w.ZAdd(ctx, u.keys.dispatchOf(sh, c.Namespace, c.Callback.Handler), redis.Z{Score: z.Score, Member: ref})
						moved++
					} else {
						u.log.Warn("dispatch index entry dropped: its record does not decode", "ref", ref, "err", err)
					}
				}
				w.ZRem(ctx, old, ref)
			}
			if err := u.fence(ctx); err != nil {
				return err
			}
			if _, err := w.Exec(ctx); err != nil {
				return unavailable("move "+old, err)
			}
		}
	}
	if moved > 0 {
		u.log.Info("dispatch index moved to one key per namespace and handler", "entries", moved)
	}
	return nil
}
