package bolt

import (
	"context"
	"errors"
	"fmt"

	"go.etcd.io/bbolt"

	"github.com/corrstore/corrstore/internal/storekit"
	"github.com/corrstore/corrstore/store"
)

// Import writes c exactly as it is — state, outcome, replies, late replies,
// events, dispatch state, version and times — for moving correlations
// between stores (corrstore import). It is idempotent: when a record with
// the same ref and the same content exists it returns created false and
// changes nothing. Errors: ErrInvalid (c is not a record a store could hold),
// ErrConflict (another record holds the ref, or the namespace's idempotency
// key), ErrReadOnly, ErrClosed.
//
// Import publishes no events and applies no early replies: it restores a
// decided history, it does not make one.
func (s *Store) Import(ctx context.Context, c *store.Correlation) (created bool, err error) {
	if s.closed.Load() {
		return false, store.ErrClosed
	}
	n, raw, err := storekit.PrepareImport(c)
	if err != nil {
		return false, err
	}
	// A record already there (an import run again, or resumed) is checked
	// in a read transaction: only a new one waits for the writer.
	var there bool
	err = s.view(func(tx *bbolt.Tx) (err error) {
		there, err = txn{tx, s}.holds(n, raw)
		return err
	})
	if err != nil || there {
		return false, err
	}
	err = s.write(ctx, func(tx *bbolt.Tx, _ *op) error {
		t := txn{tx, s}
		created = false
		if there, err := t.holds(n, raw); err != nil || there {
			return err
		}
		key := n.Ref().String()
		var idemKey []byte
		if n.IdempotencyKey != "" {
			idemKey = nsKey(n.Namespace, []byte(n.IdempotencyKey))
			if other := tx.Bucket(bucketIdem).Get(idemKey); other != nil && string(other) != key {
				return fmt.Errorf("%w: import %s: idempotency key %q of namespace %s belongs to %s here",
					store.ErrConflict, key, n.IdempotencyKey, n.Namespace, other)
			}
		}
		if err := t.save(n.Clone(), entries{}); err != nil { // its replies go apart
			return err
		}
		if idemKey != nil {
			if err := put(tx.Bucket(bucketIdem), idemKey, []byte(key)); err != nil {
				return err
			}
		}
		created = true
		return nil
	})
	return created, err
}

// holds says whether the store holds n's record with exactly the content
// raw; ErrConflict when it holds another record under the ref.
func (t txn) holds(n *store.Correlation, raw []byte) (bool, error) {
	existing, err := t.load(n.Ref().String())
	switch {
	case errors.Is(err, store.ErrNotFound):
		return false, nil
	case err != nil:
		return false, err
	}
	if err := t.attach(existing); err != nil {
		return false, err
	}
	if err := storekit.CheckImported(existing, n, raw); err != nil {
		return false, err
	}
	return true, nil
}
