package store_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/corrstore/corrstore/store"
)

func TestLimitsDefaults(t *testing.T) {
	d := store.Limits{}.WithDefaults()
	require.Equal(t, store.Limits{
		DefaultTimeout:      30 * time.Second,
		MaxTimeout:          366 * 24 * time.Hour,
		MaxReplies:          1000,
		MaxBodyBytes:        1 << 20,
		MaxRecordBytes:      16 << 20,
		MaxLateBytes:        1 << 20,
		MaxLate:             16,
		MaxEvents:           200,
		EarlyReplyWindow:    5 * time.Minute,
		MaxEarlyReplies:     10000,
		MaxEarlyPerID:       100,
		DispatchMaxAttempts: 10,
	}, d)
	require.NoError(t, d.Validate())
	require.True(t, d.EarlyBuffering())

	set := store.Limits{DefaultTimeout: time.Second, MaxTimeout: time.Hour, MaxReplies: 2, MaxBodyBytes: 3, MaxRecordBytes: 9, MaxLate: 4, MaxLateBytes: 10,
		MaxEvents: 5, EarlyReplyWindow: -1, MaxEarlyReplies: 6, MaxEarlyPerID: 7, DispatchMaxAttempts: 8}
	require.Equal(t, set, set.WithDefaults(), "set fields are kept")
	require.False(t, set.EarlyBuffering(), "a negative window turns buffering off")
	require.NoError(t, set.Validate())
}

func TestLimitsValidate(t *testing.T) {
	for name, change := range map[string]func(l *store.Limits){
		"negative default timeout": func(l *store.Limits) { l.DefaultTimeout = -1 },
		"max below default":        func(l *store.Limits) { l.MaxTimeout = time.Second },
		"max replies":              func(l *store.Limits) { l.MaxReplies = -1 },
		"max body":                 func(l *store.Limits) { l.MaxBodyBytes = -1 },
		"max record below body":    func(l *store.Limits) { l.MaxRecordBytes = l.MaxBodyBytes - 1 },
		"max late":                 func(l *store.Limits) { l.MaxLate = -1 },
		"max late bytes":           func(l *store.Limits) { l.MaxLateBytes = -1 },
		"max events":               func(l *store.Limits) { l.MaxEvents = -1 },
		"max early":                func(l *store.Limits) { l.MaxEarlyReplies = -1 },
		"max early per id":         func(l *store.Limits) { l.MaxEarlyPerID = -1 },
		"dispatch attempts":        func(l *store.Limits) { l.DispatchMaxAttempts = -1 },
	} {
		l := store.Limits{}.WithDefaults()
		change(&l)
		err := l.Validate()
		require.ErrorIs(t, err, store.ErrInvalid, name)
		var fe *store.FieldError
		require.ErrorAs(t, err, &fe, name)
		require.Contains(t, fe.Field, "limits", name)
	}
}
