package httpapi

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/corrstore/corrstore/store"
)

// waiters fans the store's change events out to long polls by correlation
// (its ref): one subscription for the whole server, whatever the number of
// polls.
type waiters struct {
	st  store.Store
	log *slog.Logger
	ch  <-chan store.Event

	mu   sync.Mutex
	refs map[store.Ref]map[chan struct{}]struct{}
}

// watch subscribes before it returns, so a poll registered after it misses
// no event.
func watch(ctx context.Context, st store.Store, log *slog.Logger) (*waiters, error) {
	ch, err := st.Subscribe(ctx)
	if err != nil {
		return nil, err
	}
	return &waiters{st: st, log: log, ch: ch, refs: map[store.Ref]map[chan struct{}]struct{}{}}, nil
}

// add registers a poll on ref; the channel gets a signal when the
// correlation may have changed. Call remove when done.
func (w *waiters) add(ref store.Ref) chan struct{} {
	ref = ref.Norm()
	c := make(chan struct{}, 1)
	w.mu.Lock()
	defer w.mu.Unlock()
	m := w.refs[ref]
	if m == nil {
		m = map[chan struct{}]struct{}{}
		w.refs[ref] = m
	}
	m[c] = struct{}{}
	return c
}

func (w *waiters) remove(ref store.Ref, c chan struct{}) {
	ref = ref.Norm()
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.refs[ref], c)
	if len(w.refs[ref]) == 0 {
		delete(w.refs, ref)
	}
}

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

func (w *waiters) notify(ref store.Ref) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for c := range w.refs[ref.Norm()] {
		signal(c)
	}
}

// notifyAll tells every poll to re-read: events may have been missed.
func (w *waiters) notifyAll() {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, m := range w.refs {
		for c := range m {
			signal(c)
		}
	}
}

// run forwards events until ctx ends. When the subscription closes (it fell
// behind, or the store closed) it subscribes again and wakes every poll to
// re-read; while the store refuses, it retries every second.
func (w *waiters) run(ctx context.Context) {
	ch := w.ch
	for {
		for e := range ch {
			if e.State.Terminal() {
				w.notify(e.Ref())
				// Long-polled claims wait on the namespace (an empty ID).
				w.notify(store.Ref{Namespace: e.Namespace})
			}
		}
		for {
			if ctx.Err() != nil {
				w.notifyAll()
				return
			}
			var err error
			ch, err = w.st.Subscribe(ctx)
			w.notifyAll()
			if err == nil {
				break
			}
			w.log.Warn("outcome events: subscribe failed; long polls fall back to their timeout", "err", err)
			t := time.NewTimer(time.Second)
			select {
			case <-ctx.Done():
				t.Stop()
			case <-t.C:
			}
		}
	}
}
