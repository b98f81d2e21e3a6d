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
	require.Equal(t, "2", mr.HGet("{lost:0}:meta", "upgrading"))
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
