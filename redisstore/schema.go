package redisstore

import (
	"context"
	"fmt"
	"strconv"

	"github.com/corrstore/corrstore/store"
)

// schemaVersion is the key layout this package reads and writes: 3 keeps
// the accepted replies apart from the record, in the hash {p:s}:r:<ref>
// (schema 2 kept them inside it; this build reads such records and moves
// their replies out at their next write); since schema 2 correlations are
// named by ref string "namespace/id" (schema 1, corrstore before namespaced
// ids, by id).
const schemaVersion = 3

// SchemaError is New's refusal of a prefix whose layout this build does not
// read: an older one (run Upgrade, `corrstore upgrade`, first) or a newer one
// (run a newer corrstore). Its message is one line.
type SchemaError struct {
	Prefix string
	// Have is the prefix's schema; Want is this build's.
	Have, Want int
	// Upgrading: an upgrade was started and has not finished.
	Upgrading bool
}

func (e *SchemaError) Error() string {
	switch {
	case e.Have > e.Want:
		return fmt.Sprintf("corrstore: redis prefix %s has schema %d; this build reads up to %d: upgrade corrstore", e.Prefix, e.Have, e.Want)
	case e.Upgrading:
		return fmt.Sprintf("redis prefix %s has schema %d and an unfinished upgrade to %d; stop every instance and run `corrstore upgrade --store …` again", e.Prefix, e.Have, e.Want)
	}
	return fmt.Sprintf("redis prefix %s has schema %d; stop every instance and run `corrstore upgrade --store …`", e.Prefix, e.Have)
}

// schemaOf checks the "schema" and "upgrading" fields of the meta hash.
func (s *Store) schemaOf(v []any) error {
	schema, _ := v[0].(string)
	upgrading, _ := v[1].(string)
	have, err := strconv.Atoi(schema)
	if err != nil {
		return unexpected("read "+s.keys.meta(), fmt.Sprintf("schema %q", schema))
	}
	return schemaCheck(s.keys.prefix, have, upgrading)
}

// schemaCheck is the verdict on a prefix at schema have, with the
// "upgrading" mark of the meta hash ("" or the schema an upgrade goes to).
func schemaCheck(prefix string, have int, upgrading string) error {
	if to, _ := strconv.Atoi(upgrading); to > schemaVersion {
		have = to // a newer corrstore is upgrading it
	}
	if have != schemaVersion || upgrading != "" {
		return &SchemaError{Prefix: prefix, Have: have, Want: schemaVersion, Upgrading: upgrading != "" && have <= schemaVersion}
	}
	return nil
}

// checkMeta records the shard count and schema of the prefix on first use
// and refuses a store configured otherwise: with another shard count, refs
// would be looked for in the wrong shards; with another schema, under other
// names. It refuses a prefix an Upgrade holds (ErrUpgradeRunning).
func (s *Store) checkMeta(ctx context.Context) error {
	k := s.keys.meta()
	pipe := s.rdb.Pipeline()
	pipe.HSetNX(ctx, k, "shards", s.keys.shards)
	pipe.HSetNX(ctx, k, "schema", schemaVersion)
	got := pipe.HMGet(ctx, k, "shards", "schema", "upgrading")
	if _, err := pipe.Exec(ctx); err != nil {
		return s.redisErr("read "+k, err)
	}
	v := got.Val()
	if err := s.schemaOf(v[1:]); err != nil {
		return err
	}
	shards, _ := v[0].(string)
	if shards != strconv.Itoa(s.keys.shards) {
		return fmt.Errorf("%w: redisstore: prefix %q was created with %s shards, this store is configured with %d: use the same Shards on every replica",
			store.ErrInvalid, s.keys.prefix, shards, s.keys.shards)
	}
	// An upgrade that holds the prefix is finishing (the schema is marked
	// already): wait for it, as for one marked "upgrading".
	return upgradeRunning(ctx, s.rdb, s.keys)
}
