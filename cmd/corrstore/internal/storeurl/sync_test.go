package storeurl_test

import (
	"context"
	"testing"

	"github.com/corrstore/corrstore/cmd/corrstore/internal/storeurl"
	"github.com/corrstore/corrstore/internal/synctrace"
	"github.com/corrstore/corrstore/store"
)

// The synctrace child opens the file as corrstore serve does: a bolt://
// URL through Open, with no NoSync.
func init() {
	synctrace.Child(func(path string) (store.Store, func() error, error) {
		s, err := storeurl.Open(context.Background(), "bolt://"+path, storeurl.Options{})
		if err != nil {
			return nil, nil, err
		}
		return s, s.Close, nil
	})
}

// TestFsyncBeforeAck registers under strace through a bolt:// URL and
// requires each registration to be fdatasync'd before Register returns
// (see internal/synctrace). CORRSTORE_SYNCTRACE_N and _GOROUTINES size it
// (make test-durability).
func TestFsyncBeforeAck(t *testing.T) { synctrace.Check(t) }
