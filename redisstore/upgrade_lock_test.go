package redisstore_test

import (
	"maps"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/corrstore/corrstore/redisstore"
	"github.com/corrstore/corrstore/redisstore/redistest"
	"github.com/corrstore/corrstore/store"
)

// One Upgrade at a time: a second one, and New, refuse while a run holds
// the prefix's lock, naming it; a run that loses its lock stops.
func TestUpgradeLock(t *testing.T) {
	t.Parallel()
	mr, rdb := newMiniredis(t)
	ctx := t.Context()

	// A lock held (by a run in another process): refused, nothing touched.
	redistest.LoadSchema1(t, rdb, "held")
	require.NoError(t, rdb.Set(ctx, "{held:0}:upgrade", "host=h pid=9 run=x", 15*time.Second).Err())
	before := dumpPrefix(t, rdb, "held")
	_, err := redisstore.Upgrade(ctx, rdb, redisstore.UpgradeOptions{Prefix: "held", Logger: quiet})
	require.ErrorIs(t, err, redisstore.ErrUpgradeRunning)
	require.ErrorContains(t, err, "redis prefix held: {held:0}:upgrade (host=h pid=9 run=x, expires in 15s): wait for it to finish")
	_, err = redisstore.Upgrade(ctx, rdb, redisstore.UpgradeOptions{Prefix: "held", Logger: quiet, Force: true})
	require.ErrorIs(t, err, redisstore.ErrUpgradeRunning, "Force is for liveness keys, not for another upgrade")
	require.True(t, maps.Equal(before, dumpPrefix(t, rdb, "held")), "the refusals changed nothing")
	mr.FastForward(16 * time.Second) // that run was killed: its lock expires
	_, err = redisstore.Upgrade(ctx, rdb, redisstore.UpgradeOptions{Prefix: "held", Logger: quiet})
	require.NoError(t, err)
	require.False(t, mr.Exists("{held:0}:upgrade"), "released at the end")

	// New refuses a prefix an upgrade holds, even one marked at schema 2
	// already (the run is between its last mark and its release).
	require.NoError(t, rdb.Set(ctx, "{held:0}:upgrade", "host=h pid=9 run=y", 15*time.Second).Err())
	_, err = redisstore.New(ctx, rdb, redisstore.Config{Prefix: "held", Logger: quiet})
	require.ErrorIs(t, err, redisstore.ErrUpgradeRunning)
	require.ErrorContains(t, err, "{held:0}:upgrade (host=h pid=9 run=y")
	require.NoError(t, rdb.Del(ctx, "{held:0}:upgrade").Err())
	openOn(t, rdb, redisstore.Config{Prefix: "held", Logger: quiet})

	// Two runs at once: the second, started while the first is midway,
	// refuses and names the first's lock.
	redistest.LoadSchema1(t, rdb, "twice")
	var second error
	o := redisstore.UpgradeHook(redisstore.UpgradeOptions{Prefix: "twice", Logger: quiet}, 2, func(stage string, moved int) error {
		if stage == "written" && second == nil {
			_, second = redisstore.Upgrade(ctx, rdb, redisstore.UpgradeOptions{Prefix: "twice", Logger: quiet})
		}
		return nil
	})
	rep, err := redisstore.Upgrade(ctx, rdb, o)
	require.NoError(t, err)
	require.Equal(t, 8, rep.Moved())
	require.ErrorIs(t, second, redisstore.ErrUpgradeRunning)
	require.Regexp(t, `\{twice:0\}:upgrade \(host=\S+ pid=\d+ since=\S+ run=[0-9a-f]+, expires in 1[45]s\)`, second.Error())
	require.False(t, mr.Exists("{twice:0}:upgrade"))

	// A run whose lock is lost (expired while Redis was out of reach, and
	// taken by another run) stops, leaves the other's lock and the prefix
	// marked unfinished.
	redistest.LoadSchema1(t, rdb, "lost")
	lost := make(chan struct{})
	o = redisstore.UpgradeLockEvery(redisstore.UpgradeOptions{Prefix: "lost", Logger: quiet}, time.Millisecond, func(held bool) {
		if !held {
			close(lost)
		}
	})
	o = redisstore.UpgradeHook(o, 2, func(stage string, moved int) error {
		if moved == 2 && stage == "written" {
			mr.Set("{lost:0}:upgrade", "another run")
			<-lost
		}
		return nil
	})
	_, err = redisstore.Upgrade(ctx, rdb, o)
	require.ErrorIs(t, err, store.ErrUnavailable)
	require.ErrorContains(t, err, "redis prefix lost: the upgrade lost its lock: {lost:0}:upgrade expired")
	v, _ := mr.Get("{lost:0}:upgrade")
	require.Equal(t, "another run", v, "not this run's to release")
	require.Equal(t, "1", mr.HGet("{lost:0}:meta", "schema"))
	require.Equal(t, "3", mr.HGet("{lost:0}:meta", "upgrading"))
}

// A schema 1 record is moved only where its ref's key is free: a record
// already there (written by an instance of this schema) is kept, with its
// index entries, and the schema 1 one is dropped and counted.
func TestUpgradeKeepsExistingRecord(t *testing.T) {
	t.Parallel()
	mr, rdb := newMiniredis(t)
	ctx := t.Context()
	d := redistest.LoadSchema1(t, rdb, "nx")
	var oldKey string
	for _, k := range d.Keys {
		if strings.HasSuffix(k.Key, "}:c:order-1") {
			oldKey = strings.Replace(k.Key, "{"+d.Prefix+":", "{nx:", 1)
		}
	}
	require.True(t, mr.Exists(oldKey))
	sh := redisstore.ShardOf(d.Shards, "shop/order-1")
	tag := "{nx:" + strconv.Itoa(sh) + "}"
	require.NoError(t, rdb.Set(ctx, tag+":c:shop/order-1", "newer", 0).Err())

	rep, err := redisstore.Upgrade(ctx, rdb, redisstore.UpgradeOptions{Prefix: "nx", Logger: quiet})
	require.NoError(t, err)
	require.Equal(t, 1, rep.Kept)
	require.Equal(t, map[string]int{"default": 2, "shop": 2, "billing": 3}, rep.Correlations)
	require.Contains(t, rep.String(), "1 schema 1 records dropped for the newer record under their ref")

	v, err := rdb.Get(ctx, tag+":c:shop/order-1").Result()
	require.NoError(t, err)
	require.Equal(t, "newer", v, "not overwritten")
	require.False(t, mr.Exists(oldKey), "the schema 1 record is gone")
	for _, ix := range []string{":dl", ":cr", ":pd:shop"} {
		_, err := rdb.ZScore(ctx, tag+ix, "shop/order-1").Result()
		require.ErrorIs(t, err, redis.Nil, "no index entry of the dropped record in %s", ix)
	}
}

// A run paused past its lock's TTL (SIGSTOP) resumes after another run
// took the lock, finished the upgrade, and instances changed the prefix:
// its next write is fenced (a synchronous check of the lock before each
// write pipeline, and the mark through the lock's script), so it stops
// with the lock lost and writes nothing more: no record put back, no
// counters set from its old count, no "upgrading" mark on a schema 2
// prefix. The hook is the pause; the renewal (every 5 s) never gets to
// notice. What fencing leaves (a pause between a passed check and the
// pipeline it guards) is in upgradelock.go.
func TestUpgradeFencedAfterTakeover(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, stage string
		moved       int
		instance    func(t *testing.T, rdb *redis.Client, prefix string) // what instances do meanwhile
	}{
		// Paused with a batch read and not written: the records it read
		// were moved by the other run, then purged by an instance.
		{"batch", "read", 2, func(t *testing.T, rdb *redis.Client, prefix string) {
			keys, err := rdb.Keys(t.Context(), "{"+prefix+":*}:c:*/*").Result()
			require.NoError(t, err)
			require.NotEmpty(t, keys)
			require.NoError(t, rdb.Del(t.Context(), keys...).Err())
		}},
		// Paused with shard 0 counted and its counters not written.
		{"counters", "counted", -1, func(t *testing.T, rdb *redis.Client, prefix string) {
			require.NoError(t, rdb.HSet(t.Context(), "{"+prefix+":0}:n", "sentinel", 42).Err())
		}},
		// Paused before marking the prefix "upgrading".
		{"mark", "mark", -1, func(*testing.T, *redis.Client, string) {}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			mr, rdb := newMiniredis(t)
			ctx := t.Context()
			prefix := "fence"
			redistest.LoadSchema1(t, rdb, prefix)
			var after map[string]string
			paused := false
			o := redisstore.UpgradeHook(redisstore.UpgradeOptions{Prefix: prefix, Logger: quiet}, 2, func(stage string, moved int) error {
				if paused || stage != tc.stage || (tc.moved >= 0 && moved != tc.moved) {
					return nil
				}
				paused = true
				mr.FastForward(16 * time.Second) // this run's lock expires
				rep, err := redisstore.Upgrade(ctx, rdb, redisstore.UpgradeOptions{Prefix: prefix, Logger: quiet})
				require.NoError(t, err, "another run takes the lock and finishes")
				require.False(t, rep.AlreadyDone)
				require.Equal(t, "3", mr.HGet("{fence:0}:meta", "schema"))
				tc.instance(t, rdb, prefix)
				after = dumpPrefix(t, rdb, prefix)
				return nil
			})
			_, err := redisstore.Upgrade(ctx, rdb, o)
			require.True(t, paused)
			require.Equal(t, after, dumpPrefix(t, rdb, prefix), "nothing written after the takeover")
			require.Equal(t, "3", mr.HGet("{fence:0}:meta", "schema"))
			require.Empty(t, mr.HGet("{fence:0}:meta", "upgrading"), "not marked upgrading again")
			require.False(t, mr.Exists("{fence:0}:upgrade"))
			require.ErrorIs(t, err, store.ErrUnavailable)
			require.ErrorContains(t, err, "redis prefix fence: the upgrade lost its lock: {fence:0}:upgrade expired")
		})
	}
}
