package storekit

import (
	"bytes"
	"fmt"

	"github.com/corrstore/corrstore/store"
)

// PrepareImport checks a correlation to be written as it is (an import
// between stores) as every stored record is checked when read, and returns
// it in canonical form with its canonical encoding, the bytes a store
// compares to tell the same record from another. Errors wrap store.ErrInvalid.
func PrepareImport(c *store.Correlation) (*store.Correlation, []byte, error) {
	if c == nil {
		return nil, nil, fmt.Errorf("%w: import: nil correlation", store.ErrInvalid)
	}
	raw, err := store.MarshalCorrelation(c)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: import %s: %w", store.ErrInvalid, c.ID, err)
	}
	n, err := store.UnmarshalCorrelation(raw)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: import %s: %w", store.ErrInvalid, c.ID, err)
	}
	if raw, err = store.MarshalCorrelation(n); err != nil {
		return nil, nil, err
	}
	return n, raw, nil
}

// CheckImported tells an import what to do with the record a store already
// holds under the ID of n (raw is n's encoding from PrepareImport): nil when
// it is the same record (the import changes nothing), store.ErrConflict naming
// both versions when it is another.
func CheckImported(existing, n *store.Correlation, raw []byte) error {
	have, err := store.MarshalCorrelation(existing)
	if err != nil {
		return err
	}
	if !bytes.Equal(have, raw) {
		return fmt.Errorf("%w: import %s: the store holds a different record with this ID (version %d there, %d imported)",
			store.ErrConflict, n.ID, existing.Version, n.Version)
	}
	return nil
}
