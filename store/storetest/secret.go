package storetest

import (
	"bytes"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/corrstore/corrstore/store"
)

func secretTests() []testCase {
	return []testCase{
		{name: "StableAndDistinct", run: testSecret},
		{name: "ConcurrentFirstUse", run: testSecretConcurrent},
		{name: "InvalidName", run: testSecretInvalid},
	}
}

func testSecret(t *testing.T, e *env) {
	a, err := e.s.Secret(e.ctx, "reply-token")
	require.NoError(t, err)
	require.Len(t, a, 32)
	require.NotEqual(t, make([]byte, 32), a, "random bytes")
	for range 3 {
		again, err := e.s.Secret(e.ctx, "reply-token")
		require.NoError(t, err)
		require.Equal(t, a, again, "the same bytes on every call")
	}
	b, err := e.s.Secret(e.ctx, "other_name-2")
	require.NoError(t, err)
	require.Len(t, b, 32)
	require.NotEqual(t, a, b, "each name its own secret")

	keep := bytes.Clone(a)
	a[0] ^= 0xff
	again, err := e.s.Secret(e.ctx, "reply-token")
	require.NoError(t, err)
	require.Equal(t, keep, again, "the caller's copy is its own")
}

func testSecretConcurrent(t *testing.T, e *env) {
	// The first uses race to make the secret: all must get the one kept.
	const n = 16
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		got  [][]byte
		errs []error
	)
	start := make(chan struct{})
	for range n {
		wg.Go(func() {
			<-start
			s, err := e.s.Secret(e.ctx, "raced")
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
			}
			got = append(got, s)
		})
	}
	close(start)
	wg.Wait()
	require.Empty(t, errs)
	for _, s := range got {
		require.Equal(t, got[0], s)
	}
	final, err := e.s.Secret(e.ctx, "raced")
	require.NoError(t, err)
	require.Equal(t, got[0], final)
}

func testSecretInvalid(t *testing.T, e *env) {
	for _, name := range []string{"", "Upper", "a b", "a/b", "a:b", "tab\t", strings.Repeat("s", store.MaxNamespaceLen+1)} {
		s, err := e.s.Secret(e.ctx, name)
		require.ErrorIs(t, err, store.ErrInvalid, "name %q", name)
		require.Nil(t, s)
	}
}
