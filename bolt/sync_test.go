package bolt_test

import (
	"testing"

	"github.com/corrstore/corrstore/bolt"
	"github.com/corrstore/corrstore/internal/synctrace"
	"github.com/corrstore/corrstore/store"
)

// The synctrace child opens the file as the product does: bolt.Open with
// the default options.
func init() {
	synctrace.Child(func(path string) (store.Store, func() error, error) {
		s, err := bolt.Open(bolt.Options{Path: path})
		if err != nil {
			return nil, nil, err
		}
		return s, s.Close, nil
	})
}

// TestFsyncBeforeAck registers under strace through bolt.Open with the
// default options and requires each registration to be fdatasync'd before
// Register returns. The crash tests cannot see this: a SIGKILL leaves
// written pages in the OS cache, so they pass with fsync off.
// CORRSTORE_SYNCTRACE_N and _GOROUTINES size it (make test-durability).
func TestFsyncBeforeAck(t *testing.T) { synctrace.Check(t) }
