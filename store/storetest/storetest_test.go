package storetest_test

import (
	"testing"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/corrstore/corrstore/store"
	"github.com/corrstore/corrstore/store/storetest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// openMem is the NewStore of the reference store.
func openMem(t *testing.T, cfg storetest.Config) store.Store {
	s, err := newMemStore(cfg.Clock, cfg.Limits)
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func TestMemStore(t *testing.T) {
	storetest.Run(t, openMem)
}
