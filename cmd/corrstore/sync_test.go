package main

import (
	"context"
	"testing"
	"time"

	"github.com/corrstore/corrstore/internal/synctrace"
	"github.com/corrstore/corrstore/internal/testenv"
	"github.com/corrstore/corrstore/store"
)

// The synctrace child opens the file as corrstore serve does (ParseFlags
// and Run with a bolt:// store) and registers through the store serve
// built.
func init() {
	synctrace.Child(func(path string) (func(context.Context, string) error, func() error, error) {
		m := NewMain()
		m.Logger = quiet()
		if err := m.ParseFlags([]string{"--store", "bolt://" + path, "--listen", "127.0.0.1:0"}); err != nil {
			return nil, nil, err
		}
		if err := m.Run(context.Background()); err != nil {
			return nil, nil, err
		}
		register := func(ctx context.Context, id string) error {
			_, err := m.Store.Register(ctx, &store.Correlation{ID: id, Timeout: time.Hour, Destination: "svc",
				Callback: store.Callback{Handler: "h", Data: []byte(`"` + id + `"`)}})
			return err
		}
		return register, m.Close, nil
	})
}

// TestFsyncBeforeAck registers under strace through the store corrstore
// serve opens and requires each registration to be fdatasync'd before
// Register returns (see internal/synctrace). CORRSTORE_SYNCTRACE_N and
// _GOROUTINES size it (make test-durability).
func TestFsyncBeforeAck(t *testing.T) {
	n := testenv.Int(t, "CORRSTORE_SYNCTRACE_N", 40)
	synctrace.Check(t, n, testenv.Int(t, "CORRSTORE_SYNCTRACE_GOROUTINES", 8))
}
