package bolt_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.etcd.io/bbolt"
	"go.uber.org/goleak"

	"github.com/corrstore/corrstore/bolt"
	"github.com/corrstore/corrstore/store"
	"github.com/corrstore/corrstore/store/storetest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// open opens a store in a temp dir; at cleanup it closes it, reopens the
// file and checks its pages and indexes (bbolt's tx.Check plus Verify).
func open(t *testing.T, opts bolt.Options) *bolt.Store {
	t.Helper()
	if opts.Path == "" {
		opts.Path = filepath.Join(t.TempDir(), "c.db")
	}
	s, err := bolt.Open(opts)
	require.NoError(t, err)
	t.Cleanup(func() {
		require.NoError(t, s.Close())
		again, err := bolt.Open(bolt.Options{Path: opts.Path, ReadOnly: true})
		require.NoError(t, err)
		defer again.Close()
		require.NoError(t, again.Verify(context.Background()), "consistency after %s", t.Name())
	})
	return s
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T, cfg storetest.Config) store.Store {
		return open(t, bolt.Options{Clock: cfg.Clock, Limits: cfg.Limits, NoSync: true})
	})
}

func TestLockTimeout(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.db")
	s := open(t, bolt.Options{Path: path, NoSync: true})
	_ = s
	start := time.Now()
	_, err := bolt.Open(bolt.Options{Path: path, LockTimeout: 100 * time.Millisecond})
	require.Error(t, err)
	require.Contains(t, err.Error(), "another process holds the file")
	require.Less(t, time.Since(start), 5*time.Second, "a second opener must give up after LockTimeout")
}

func TestReadOnly(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.db")
	s, err := bolt.Open(bolt.Options{Path: path, NoSync: true})
	require.NoError(t, err)
	ctx := context.Background()
	_, err = s.Register(ctx, &store.Correlation{ID: "ro-1"})
	require.NoError(t, err)
	require.NoError(t, s.Close())

	ro, err := bolt.Open(bolt.Options{Path: path, ReadOnly: true})
	require.NoError(t, err)
	defer ro.Close()
	c, err := ro.Get(ctx, store.RefOf("ro-1"))
	require.NoError(t, err)
	require.Equal(t, store.StatePending, c.State)
	_, err = ro.Register(ctx, &store.Correlation{ID: "ro-2"})
	require.ErrorIs(t, err, bolt.ErrReadOnly)
	_, err = ro.Cancel(ctx, store.RefOf("ro-1"), "x")
	require.ErrorIs(t, err, bolt.ErrReadOnly)

	_, err = bolt.Open(bolt.Options{Path: filepath.Join(t.TempDir(), "missing.db"), ReadOnly: true})
	require.Error(t, err, "read-only must not create a file")
}

func TestNotACorrstoreFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "other.db")
	db, err := bbolt.Open(path, 0o600, nil)
	require.NoError(t, err)
	require.NoError(t, db.Update(func(tx *bbolt.Tx) error {
		_, err := tx.CreateBucket([]byte("something-else"))
		return err
	}))
	require.NoError(t, db.Close())
	_, err = bolt.Open(bolt.Options{Path: path})
	require.ErrorContains(t, err, "not a corrstore database")

	_, err = bolt.Open(bolt.Options{Path: filepath.Join(t.TempDir(), "x.db"), Limits: store.Limits{MaxReplies: -1}})
	require.ErrorIs(t, err, store.ErrInvalid)
}

// TestGroupCommitFailsAlone sends a batch of concurrent registrations where
// some are invalid or conflicting: only those fail.
func TestGroupCommitFailsAlone(t *testing.T) {
	s := open(t, bolt.Options{NoSync: true})
	ctx := context.Background()
	_, err := s.Register(ctx, &store.Correlation{ID: "taken", Destination: "a"})
	require.NoError(t, err)
	type result struct {
		id  string
		err error
	}
	results := make(chan result, 300)
	for i := range 300 {
		go func() {
			c := &store.Correlation{ID: "ok-" + string(rune('a'+i%26)) + "-" + time.Duration(i).String(), Destination: "a"}
			switch i % 3 {
			case 1:
				c.ID = "taken"
				c.Destination = "b" // conflict
			case 2:
				c.Pattern = "bogus" // invalid
			}
			_, err := s.Register(ctx, c)
			results <- result{c.ID, err}
		}()
	}
	ok := 0
	for range 300 {
		r := <-results
		switch {
		case r.err == nil:
			ok++
			_, err := s.Get(ctx, store.RefOf(r.id))
			require.NoError(t, err)
		case errors.Is(r.err, store.ErrConflict), errors.Is(r.err, store.ErrInvalid):
		default:
			t.Fatalf("%s: unexpected error %v", r.id, r.err)
		}
	}
	require.Equal(t, 100, ok)
}
