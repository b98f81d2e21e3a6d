package client

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/corrstore/corrstore/store"
)

// watcher holds the one store subscription of a running client and wakes
// the waits of the correlations that changed. When the subscription breaks
// (a subscriber that fell behind has its channel closed) every wait
// re-reads the store; while it cannot be renewed, waits re-read every
// PollInterval: polling is only the fallback.
type watcher struct {
	c     *Client
	mu    sync.Mutex
	cur   *runState
	waits map[store.Ref]map[*wait]struct{}
}

// runState is one Run of the client, as the waits see it.
type runState struct {
	ready   chan struct{} // closed once the watcher is watching
	stopped chan struct{} // closed when Run ends
}

func newRunState() *runState {
	return &runState{ready: make(chan struct{}), stopped: make(chan struct{})}
}

func newWatcher(c *Client) *watcher {
	return &watcher{c: c, cur: newRunState(), waits: map[store.Ref]map[*wait]struct{}{}}
}

// wait is one waiter on one correlation.
type wait struct {
	ref store.Ref // normalized
	// every: wake on any change (a stream takes replies as they come);
	// otherwise only on an outcome (and on a moved deadline, see learn).
	every bool
	wake  chan struct{} // capacity 1: a pending wake is never lost
	// recheck: something the waiter cares about may have changed; re-read.
	recheck atomic.Bool
	run     *runState

	mu sync.Mutex
	// version and deadline are the newest stored deadline the wait has
	// learnt of, from an event or a read: what its alarm is to be set for.
	version  int64
	deadline time.Time
}

func (wt *wait) notify() {
	wt.recheck.Store(true)
	wt.poke()
}

// poke wakes the waiter without a re-read: its deadline moved.
func (wt *wait) poke() {
	select {
	case wt.wake <- struct{}{}:
	default:
	}
}

// learn takes the deadline of version v of the record, unless a newer
// version was seen (events and reads may come in any order), and reports
// whether the deadline moved.
func (wt *wait) learn(v int64, deadline time.Time) bool {
	wt.mu.Lock()
	defer wt.mu.Unlock()
	if v <= wt.version || deadline.IsZero() {
		return false
	}
	moved := !deadline.Equal(wt.deadline)
	wt.version, wt.deadline = v, deadline
	return moved
}

// stored returns the newest stored deadline the wait knows.
func (wt *wait) stored() time.Time {
	wt.mu.Lock()
	defer wt.mu.Unlock()
	return wt.deadline
}

// ready waits until Run watches the store.
func (w *watcher) ready(ctx context.Context) error {
	w.mu.Lock()
	r := w.cur
	w.mu.Unlock()
	select {
	case <-r.ready:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// add starts a wait on corr, registered a moment ago. Call it before
// sending, so that no change is missed.
func (w *watcher) add(corr *store.Correlation, every bool) (*wait, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	r := w.cur
	select {
	case <-r.ready:
	default:
		return nil, ErrStopped
	}
	ref := corr.Ref().Norm()
	wt := &wait{ref: ref, every: every, wake: make(chan struct{}, 1), run: r,
		version: corr.Version, deadline: corr.Deadline}
	set := w.waits[ref]
	if set == nil {
		set = map[*wait]struct{}{}
		w.waits[ref] = set
	}
	set[wt] = struct{}{}
	return wt, nil
}

func (w *watcher) remove(wt *wait) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if set := w.waits[wt.ref]; set != nil {
		delete(set, wt)
		if len(set) == 0 {
			delete(w.waits, wt.ref)
		}
	}
}

// event wakes the waits of the correlation that changed: to re-read when it
// is decided (whatever the kind: a reply or an extend at the deadline
// decides it too) or, for a stream, on every change; and without a re-read
// when the deadline moved, so that the waiter sets its alarm to the new one.
func (w *watcher) event(e store.Event) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for wt := range w.waits[e.Ref().Norm()] {
		moved := e.State == store.StatePending && wt.learn(e.Version, e.Deadline)
		switch {
		case e.State.Terminal(), wt.every && e.Kind != store.ChangeExtended:
			wt.notify()
		case moved:
			wt.poke()
		}
	}
}

// resync wakes every wait to re-read: changes may have been missed.
func (w *watcher) resync() {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, set := range w.waits {
		for wt := range set {
			wt.notify()
		}
	}
}

// start subscribes and runs the watch loop until ctx ends. It returns once
// the client is watching (or polling, when the store refused to subscribe).
func (w *watcher) start(ctx context.Context, wg *sync.WaitGroup) {
	sub, err := w.c.st.Subscribe(ctx)
	if err != nil {
		w.c.log.Warn("cannot subscribe to the store; waits poll it until a subscription works", "err", err)
	}
	w.mu.Lock()
	close(w.cur.ready)
	w.mu.Unlock()
	wg.Go(func() { w.loop(ctx, sub) })
}

// stop ends the current run: waits return ErrStopped, later ones wait for
// the next Run.
func (w *watcher) stop() {
	w.mu.Lock()
	defer w.mu.Unlock()
	close(w.cur.stopped)
	w.cur = newRunState()
}

func (w *watcher) loop(ctx context.Context, sub <-chan store.Event) {
	var poll *time.Ticker
	defer func() {
		if poll != nil {
			poll.Stop()
		}
	}()
	for {
		if sub == nil {
			if poll == nil {
				poll = time.NewTicker(w.c.cfg.PollInterval)
			}
			select {
			case <-ctx.Done():
				return
			case <-poll.C:
			}
			s, err := w.c.st.Subscribe(ctx)
			if err == nil {
				w.c.log.Info("store subscription renewed")
				sub = s
				poll.Stop()
				poll = nil
			}
			w.resync()
			continue
		}
		select {
		case <-ctx.Done():
			return
		case e, ok := <-sub:
			if ok {
				w.event(e)
				if e.State.Terminal() {
					w.c.kickDispatch()
				}
				continue
			}
			if ctx.Err() != nil {
				return
			}
			// Fell behind, or the store lost its subscription: renew it
			// first, then re-read, so that nothing falls between the two.
			s, err := w.c.st.Subscribe(ctx)
			if err != nil {
				w.c.log.Warn("store subscription lost; polling until it is renewed", "err", err)
			}
			sub = s
			w.resync()
			w.c.kickDispatch()
		}
	}
}
