package store_test

import (
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/corrstore/corrstore/store"
)

func TestFakeClock(t *testing.T) {
	c := store.NewFakeClock(t0)
	require.Equal(t, t0, c.Now())
	require.Equal(t, t0, c.Now(), "it does not move by itself")
	require.Equal(t, t0.Add(time.Second), c.Add(time.Second))
	require.Equal(t, t0.Add(time.Second), c.Now())
	c.Set(t0.Add(-time.Hour))
	require.Equal(t, t0.Add(-time.Hour), c.Now())

	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 100 {
				c.Add(time.Millisecond)
				_ = c.Now()
			}
		})
	}
	wg.Wait()
	require.Equal(t, t0.Add(-time.Hour+800*time.Millisecond), c.Now())

	var _ store.Clock = c
	var _ store.Clock = store.RealClock{}
}

func TestRealClock(t *testing.T) {
	before := time.Now()
	got := store.RealClock{}.Now()
	require.False(t, got.Before(before))
	require.False(t, got.After(time.Now()))
}
