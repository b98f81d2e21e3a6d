// Package redisstore is a store.Store on Redis (standalone or Redis Cluster),
// so that replicas of a service share pending correlations.
//
// # Decisions
//
// The state machine lives in one place, the pure methods of
// *store.Correlation. An operation reads the record, applies the method in
// Go, and writes the result back with a Lua compare-and-set that checks the
// record has not changed since it was read and, in the same atomic step,
// moves every index entry and counter of the record and publishes the event.
// When another writer got there first the operation reads again and retries,
// so concurrent callers on any number of replicas decide each correlation
// once. Register creates in one round trip in the common case.
//
// # Layout
//
// A correlation is named by its ref string, "namespace/id". Every key of a
// correlation lives under one hash tag, {prefix:shard}, with shard =
// FNV-1a(ref string) mod Shards, so each script touches one slot and the
// same code runs on Redis Cluster. Passes (ExpireDue, ClaimDispatch, Purge,
// DropEarlyReplies), List and Stats walk the shards. See docs/ARCHITECTURE.md
// ("Redis store") for every key, its type and what each script does.
//
// # Schemas and upgrades
//
// The layout is numbered (the prefix's meta hash holds "schema"): schema 1
// named correlations by id alone, schema 2 by ref. New refuses any other
// schema than its own (SchemaError). A prefix written by an older corrstore
// is brought up to date by Upgrade (`corrstore upgrade`), run with every
// instance stopped: each Store keeps a liveness key while it runs, and
// Upgrade refuses while one exists (instances of the previous release keep
// none: they cannot be detected). One Upgrade runs at a time, under a lock
// key, and never writes over a record already at the new schema. Upgrade is
// resumable: run again after a crash, it finishes the job.
//
// # Errors
//
// Whatever keeps the store from answering — a refused connection, a
// timeout, ctx ending before the answer, contention that outlives ctx —
// wraps store.ErrUnavailable.
//
// # Time
//
// Every time comes from Config.Clock and reaches the scripts as an argument:
// Redis's own clock and key TTLs never decide an outcome.
//
// # Durability
//
// New reads appendonly, appendfsync and maxmemory-policy and warns (or, with
// Config.Strict, refuses) when the server can lose acknowledged writes.
package redisstore
