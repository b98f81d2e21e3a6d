package reaper_test

import (
	"path/filepath"
	"testing"

	"github.com/corrstore/corrstore/bolt"
	"github.com/corrstore/corrstore/reaper/reapertest"
	"github.com/corrstore/corrstore/store"
)

// openBolt opens a bbolt store in a temporary directory, closed at cleanup.
func openBolt(t testing.TB, clock store.Clock) *bolt.Store {
	t.Helper()
	return openBoltAt(t, filepath.Join(t.TempDir(), "c.db"), clock)
}

func openBoltAt(t testing.TB, path string, clock store.Clock) *bolt.Store {
	t.Helper()
	st, err := bolt.Open(bolt.Options{Path: path, Clock: clock, NoSync: true, Logger: testLogger(t)})
	if err != nil {
		t.Fatalf("open bolt: %v", err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func TestExactlyOnceBolt(t *testing.T) {
	clk := store.NewFakeClock(t0)
	st := openBolt(t, clk)
	reapertest.ExactlyOnce(t, []store.Store{st, st, st, st}, clk)
	if err := st.Verify(t.Context()); err != nil {
		t.Errorf("bolt consistency after the test: %v", err)
	}
}
