package redisstore

// Test seams for the external tests (package redisstore_test).

// UpgradeHook makes Upgrade move batch records per round trip and call hook
// after each batch's "written" stage (new keys in, old ones not yet removed)
// and "moved" stage, with the number of records moved so far; an error from
// hook stops Upgrade there, as a crash would.
func UpgradeHook(o UpgradeOptions, batch int, hook func(stage string, moved int) error) UpgradeOptions {
	o.batch, o.hook = batch, hook
	return o
}

// LiveKey is the name of s's liveness key.
func LiveKey(s *Store) string { return s.keys.live(s.instance) }
