package client

import (
	"time"

	"github.com/corrstore/corrstore/store"
)

// alarm wakes a waiter when its Clock reaches a time: the stored deadline
// of the correlation it waits on. Tests replace it with one driven by a
// fake clock.
type alarm interface {
	// C receives when the alarm goes off.
	C() <-chan time.Time
	// Set (re)arms the alarm for clock time at, dropping an earlier setting.
	Set(at time.Time)
	// Stop disarms it for good.
	Stop()
}

// realAlarm is a time.Timer set from the Clock's reading.
type realAlarm struct {
	t     *time.Timer
	clock store.Clock
}

func newRealAlarm(clock store.Clock) *realAlarm {
	t := time.NewTimer(time.Hour)
	t.Stop()
	return &realAlarm{t: t, clock: clock}
}

func (a *realAlarm) C() <-chan time.Time { return a.t.C }

// Set relies on the timers of Go 1.23 and later: after Reset, C never
// yields a value of the earlier setting.
func (a *realAlarm) Set(at time.Time) { a.t.Reset(max(at.Sub(a.clock.Now()), 0)) }

func (a *realAlarm) Stop() { a.t.Stop() }
