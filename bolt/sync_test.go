package bolt_test

import (
	"context"
	"testing"
	"time"

	"github.com/corrstore/corrstore/bolt"
	"github.com/corrstore/corrstore/internal/synctrace"
	"github.com/corrstore/corrstore/internal/testenv"
	"github.com/corrstore/corrstore/store"
)

// The synctrace child opens the file as the product does: bolt.Open with
// the default options.
func init() {
	synctrace.Child(func(path string) (func(context.Context, string) error, func() error, error) {
		s, err := bolt.Open(bolt.Options{Path: path})
		if err != nil {
			return nil, nil, err
		}
		register := func(ctx context.Context, id string) error {
			_, err := s.Register(ctx, &store.Correlation{ID: id, Timeout: time.Hour, Destination: "svc",
				Callback: store.Callback{Handler: "h", Data: []byte(`"` + id + `"`)}})
			return err
		}
		return register, s.Close, nil
	})
}

// TestFsyncBeforeAck registers under strace through bolt.Open with the
// default options and requires each registration to be fdatasync'd before
// Register returns. The crash tests cannot see this: a SIGKILL leaves
// written pages in the OS cache, so they pass with fsync off.
// CORRSTORE_SYNCTRACE_N and _GOROUTINES size it (make test-durability).
func TestFsyncBeforeAck(t *testing.T) {
	n := testenv.Int(t, "CORRSTORE_SYNCTRACE_N", 40)
	synctrace.Check(t, n, testenv.Int(t, "CORRSTORE_SYNCTRACE_GOROUTINES", 8))
}
