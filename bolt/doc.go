// Package bolt is the embedded corrstore backend: a store.Store on one
// go.etcd.io/bbolt file, owned by one process. It is the default for a
// long-running workflow service that must survive restarts on one machine.
//
// # Layout
//
// Records live in the "corr" bucket, keyed by ID, encoded by
// store.MarshalCorrelation (a version byte, then JSON). Indexes keyed
// time‖id make every background pass cost what is due, not what is stored:
// "deadline" (pending), "dispatch" (outcomes waiting for their handler),
// "purge" (decided and dispatched), "created" (List), and "pending"
// (namespace‖created, for the oldest pending). "counts" keeps per-namespace
// counters in the same transactions, "idem" maps idempotency keys to IDs,
// "early"/"early_time" hold replies that came before their registration,
// and "quarantine" holds records that did not decode, set aside so that no
// pass trips on them twice.
//
// # Group commit
//
// One writer goroutine takes every operation waiting at that moment, runs
// them in one transaction with one fsync, then answers each caller. An
// operation does all its checks before its first write, so one that fails
// fails alone; if a write itself fails, the batch is rolled back and each
// operation retried in a transaction of its own.
//
// # Opening
//
// Options.LockTimeout bounds the wait for a file another process holds (the
// default is 5 s; it never hangs). ReadOnly opens with a shared lock for the
// CLI; writes then return ErrReadOnly. NoSync is for tests only.
package bolt
