package reaper_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/corrstore/corrstore/internal/race"
	"github.com/corrstore/corrstore/reaper"
	"github.com/corrstore/corrstore/store"
)

// signalStore tells the test when a pass is inside ExpireDue.
type signalStore struct {
	store.Store
	entered chan struct{}
}

func (s *signalStore) ExpireDue(ctx context.Context, now time.Time, limit int) ([]*store.Correlation, error) {
	select {
	case s.entered <- struct{}{}:
	default:
	}
	return s.Store.ExpireDue(ctx, now, limit)
}

func drain[T any](ch chan T) {
	for {
		select {
		case <-ch:
		default:
			return
		}
	}
}

// stress starts Run and cancels it rounds times while it works: before its
// first pass, inside a store call, and right after a pass. Run must return
// nil every time and leak nothing (goleak in TestMain). Before each round,
// addDue makes more work due. It returns what the passes of Run expired.
func stress(t *testing.T, st store.Store, clk *store.FakeClock, rounds int, addDue func(round int)) int {
	sig := &signalStore{Store: st, entered: make(chan struct{}, 1)}
	r := newReaper(t, sig, reaper.Config{Clock: clk, Interval: time.Millisecond, Batch: 2})
	passed := make(chan struct{}, 1)
	var mu sync.Mutex
	expired := 0
	r.SetAfterPass(func(rep reaper.Report, _ error) {
		mu.Lock()
		expired += rep.Expired.Total()
		mu.Unlock()
		select {
		case passed <- struct{}{}:
		default:
		}
	})
	for round := range rounds {
		addDue(round)
		drain(sig.entered)
		drain(passed)
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- r.Run(ctx) }()
		switch round % 3 {
		case 0: // at once, most likely before the first pass
		case 1:
			<-sig.entered // a pass is in a store call
		case 2:
			<-passed // a pass finished; the next may have begun
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatalf("round %d: Run returned %v", round, err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	return expired
}

func TestStartStopStress(t *testing.T) {
	const rounds, perRound = 200, 5
	clk := store.NewFakeClock(t0)
	st := newFakeStore()
	expired := stress(t, st, clk, rounds, func(int) {
		st.addDue(perRound, clk.Add(time.Millisecond))
	})
	rep, err := newReaper(t, st, reaper.Config{Clock: clk}).RunOnce(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	// The fake store fails a call whose context ended before it decided
	// anything, so nothing is lost between the passes and the reports.
	if got := expired + rep.Expired.Total(); got != rounds*perRound {
		t.Errorf("passes expired %d + %d, want %d", expired, rep.Expired.Total(), rounds*perRound)
	}
}

// TestStartStopStressBolt is the same on bbolt, where a cancelled call may
// still commit: what is decided must stay decided, once, and the store
// consistent. Under -race, 15 rounds (60 took 26 s there): the race
// detector is what checks that a cancelled write never returns while bolt's
// writer still fills its results.
func TestStartStopStressBolt(t *testing.T) {
	const perRound = 5
	rounds := 60
	if race.Enabled {
		rounds = 15
	}
	clk := store.NewFakeClock(t0)
	st := openBolt(t, clk)
	var wg sync.WaitGroup
	next := make(chan int)
	for range 32 {
		wg.Go(func() {
			for i := range next {
				c := &store.Correlation{ID: fmt.Sprintf("s-%04d", i), Deadline: t0.Add(time.Duration(1+i/perRound) * time.Millisecond)}
				if _, err := st.Register(t.Context(), c); err != nil {
					t.Errorf("register: %v", err)
				}
			}
		})
	}
	for i := range rounds * perRound {
		next <- i
	}
	close(next)
	wg.Wait()

	expired := stress(t, st, clk, rounds, func(int) { clk.Add(time.Millisecond) })
	rep, err := newReaper(t, st, reaper.Config{Clock: clk}).RunOnce(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	stats, err := st.Stats(t.Context(), "")
	if err != nil {
		t.Fatal(err)
	}
	if got := stats.Total().States; got[store.StatePending] != 0 || got[store.StateTimedOut] != int64(rounds*perRound) {
		t.Errorf("after the rounds: %v, want all %d timed out", got, rounds*perRound)
	}
	if got := expired + rep.Expired.Total(); got > rounds*perRound {
		t.Errorf("passes reported %d expired, more than the %d registered", got, rounds*perRound)
	}
	if err := st.Verify(t.Context()); err != nil {
		t.Errorf("bolt consistency: %v", err)
	}
}
