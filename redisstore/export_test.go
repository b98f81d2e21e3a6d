package redisstore

import "time"

// Test seams for the external tests (package redisstore_test).

// UpgradeHook makes Upgrade move batch records per round trip and call hook
// after each batch's "written" stage (new keys in, old ones not yet removed)
// and "moved" stage, with the number of records moved so far; an error from
// hook stops Upgrade there, as a crash would. It is also called before the
// prefix is marked ("mark"), after a batch's reads, before its writes
// ("read"), and before each shard's counters are written ("counted").
func UpgradeHook(o UpgradeOptions, batch int, hook func(stage string, moved int) error) UpgradeOptions {
	o.batch, o.hook = batch, hook
	return o
}

// LiveKey is the name of s's liveness key.
func LiveKey(s *Store) string { return s.keys.live(s.instance) }

// UpgradeLockEvery makes Upgrade renew its lock every interval and tell
// beat whether it still held it.
func UpgradeLockEvery(o UpgradeOptions, every time.Duration, beat func(held bool)) UpgradeOptions {
	o.lockEvery, o.lockBeat = every, beat
	return o
}

// ShardOf is the shard of a ref string (schema 2) or an id (schema 1).
func ShardOf(shards int, key string) int { return newLayout("", shards).shard(key) }
