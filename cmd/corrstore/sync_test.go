package main

import (
	"context"
	"testing"

	"github.com/corrstore/corrstore/internal/synctrace"
	"github.com/corrstore/corrstore/store"
)

// The synctrace child opens the file as corrstore serve does (ParseFlags
// and Run with a bolt:// store) and registers through the store serve
// built.
func init() {
	synctrace.Child(func(path string) (store.Store, func() error, error) {
		m := NewMain()
		m.Logger = quiet()
		if err := m.ParseFlags([]string{"--store", "bolt://" + path, "--listen", "127.0.0.1:0"}); err != nil {
			return nil, nil, err
		}
		if err := m.Run(context.Background()); err != nil {
			return nil, nil, err
		}
		return m.Store, m.Close, nil
	})
}

// TestFsyncBeforeAck registers under strace through the store corrstore
// serve opens and requires each registration to be fdatasync'd before
// Register returns (see internal/synctrace). CORRSTORE_SYNCTRACE_N and
// _GOROUTINES size it (make test-durability).
func TestFsyncBeforeAck(t *testing.T) { synctrace.Check(t) }
