package store_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/corrstore/corrstore/store"
)

func TestFieldError(t *testing.T) {
	err := fmt.Errorf("register: %w", &store.FieldError{Field: "callback.data", Reason: "is 70000 bytes, the limit is 65536", Err: store.ErrTooLarge})
	require.ErrorIs(t, err, store.ErrTooLarge)
	require.NotErrorIs(t, err, store.ErrInvalid)
	require.Equal(t, "register: too large: callback.data: is 70000 bytes, the limit is 65536", err.Error())
	var fe *store.FieldError
	require.ErrorAs(t, err, &fe)
	require.Equal(t, "callback.data", fe.Field)
}

func TestCorruptError(t *testing.T) {
	cause := errors.New("unexpected end of JSON input")
	err := fmt.Errorf("get: %w", &store.CorruptError{ID: "x", Err: cause})
	require.ErrorIs(t, err, store.ErrCorrupt)
	require.ErrorIs(t, err, cause)
	require.Contains(t, err.Error(), `corrupt record "x"`)
	var ce *store.CorruptError
	require.ErrorAs(t, err, &ce)
	require.Equal(t, "x", ce.ID)
}

func TestSentinelsDistinct(t *testing.T) {
	all := []error{store.ErrNotFound, store.ErrConflict, store.ErrNotPending, store.ErrInvalid, store.ErrTooLarge, store.ErrClosed, store.ErrCorrupt}
	for i, a := range all {
		for j, b := range all {
			require.Equal(t, i == j, errors.Is(a, b), "%v vs %v", a, b)
		}
	}
}
