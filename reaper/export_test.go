package reaper

import "time"

// SetAfterPass makes Run call f after each pass, so tests wait on passes
// instead of sleeping. Call it before Run.
func (r *Reaper) SetAfterPass(f func(Report, error)) { r.afterPass = f }

// DrawJitter returns one draw of the random part of Run's wait.
func (r *Reaper) DrawJitter() time.Duration { return r.jitter() }
