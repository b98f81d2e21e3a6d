// Package bolt is the embedded corrstore backend: a store.Store on one
// go.etcd.io/bbolt file, owned by one process. It is the default for a
// long-running workflow service that must survive restarts on one machine.
//
// # Layout
//
// A correlation's identity is its store.Ref; every key that names one is
// the ref string "namespace/id". Records live in the "corr" bucket, keyed by
// ref, encoded by store.MarshalCorrelation (a version byte, then JSON).
// Indexes keyed time‖ref make every background pass cost what is due, not
// what is stored: "deadline" (pending), "dispatch" (outcomes waiting for
// their handler), "purge" (decided and dispatched), "created" (List), and
// "pending" (namespace‖created‖ref, for the oldest pending). "counts" keeps
// per-namespace counters in the same transactions, "idem" maps a
// namespace's idempotency keys to refs, "early"/"early_time" hold replies
// that came before their registration, "quarantine" holds records that did
// not decode, set aside so that no pass trips on them twice, and "meta" the
// schema number, the early-reply count and the store's secrets.
//
// # Schemas
//
// The layout is numbered (meta "schema"): 1 keyed everything by the bare
// ID, 2 by ref. A read-write Open upgrades a schema-1 file in one
// transaction and logs what it did (Upgrade does the same on purpose, for
// `corrstore upgrade`); a read-only Open of one refuses, as every Open
// refuses a schema newer than this build's, with a *SchemaError that says
// what to do.
//
// # Group commit
//
// One writer goroutine takes every operation waiting at that moment, runs
// them in one transaction with one fsync, then answers each caller. An
// operation does all its checks before its first write, so one that fails
// fails alone; if a write itself fails, the batch is rolled back and each
// operation retried in a transaction of its own. A write that fails in
// bbolt (disk full, fsync) or that the caller's context gave up on before it
// was applied answers an error wrapping store.ErrUnavailable.
//
// # Opening
//
// Options.LockTimeout bounds the wait for a file another process holds (the
// default is 5 s; it never hangs). ReadOnly opens with a shared lock for the
// CLI; writes then return ErrReadOnly. NoSync is for tests only.
package bolt
