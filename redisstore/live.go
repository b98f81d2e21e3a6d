package redisstore

import (
	"context"
	"fmt"
	"os"
	"time"
)

// Every Store keeps a liveness key, {prefix:0}:live:<instance>, from New to
// Close: set with a TTL of liveTTL and refreshed every liveEvery, so that
// Upgrade can refuse to rewrite a prefix under a running instance, and an
// instance that died stops counting within liveTTL. Its value says which
// process holds it.
//
// The refresh also reads the prefix's schema: an instance that finds it
// changed under it (an upgrade forced past it) stops writing, since it no
// longer knows the layout.
const (
	liveTTL   = 15 * time.Second
	liveEvery = 5 * time.Second
)

// liveness is the refresh goroutine, owned by New and Close.
type liveness struct {
	key     string
	renewal renewal
}

func liveValue() string {
	host, _ := os.Hostname()
	return fmt.Sprintf("host=%s pid=%d since=%s", host, os.Getpid(), time.Now().UTC().Format(time.RFC3339))
}

// start sets the key and starts refreshing it.
func (lv *liveness) start(ctx context.Context, s *Store) error {
	lv.key = s.keys.live(s.instance)
	val := liveValue()
	if err := s.rdb.Set(ctx, lv.key, val, liveTTL).Err(); err != nil {
		return s.redisErr("set liveness key", err)
	}
	lv.renewal.start(context.Background(), liveEvery, s.log, "liveness key not refreshed", lv.key, func(ctx context.Context) error {
		ctx, cancel := context.WithTimeout(ctx, liveEvery)
		defer cancel()
		return lv.beat(ctx, s, val)
	})
	return nil
}

// beat refreshes the key and checks the prefix's schema: one that changed
// under the store stops it (see fence).
func (lv *liveness) beat(ctx context.Context, s *Store, val string) error {
	pipe := s.rdb.Pipeline()
	pipe.Set(ctx, lv.key, val, liveTTL)
	// A meta hash lost with the data (a restart without persistence, a
	// flush) is written again, as New would on an empty prefix.
	pipe.HSetNX(ctx, s.keys.meta(), "shards", s.keys.shards)
	pipe.HSetNX(ctx, s.keys.meta(), "schema", schemaVersion)
	meta := pipe.HMGet(ctx, s.keys.meta(), "schema", "upgrading")
	if _, err := pipe.Exec(ctx); err != nil {
		return err
	}
	if err := s.schemaOf(meta.Val()); err != nil {
		s.fence(err)
	}
	return nil
}

// stop ends the refresh and removes the key (best effort: it expires anyway).
func (lv *liveness) stop(s *Store) {
	if !lv.renewal.stop() {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := s.rdb.Del(ctx, lv.key).Err(); err != nil {
		s.log.Warn("liveness key not removed; it expires on its own", "key", lv.key, "err", err)
	}
}
