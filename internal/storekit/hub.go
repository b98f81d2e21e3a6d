package storekit

import (
	"context"
	"sync"

	"github.com/corrstore/corrstore/store"
)

// Hub fans change events out to subscribers, for backends that publish in
// process. A subscriber that falls behind by more than its buffer has its
// channel closed instead of stalling the publisher (see store.Store.Subscribe).
type Hub struct {
	mu     sync.Mutex
	subs   map[chan store.Event]func() bool
	closed bool
}

// SubscriberBuffer is how many events a subscriber may fall behind.
const SubscriberBuffer = 1024

// Subscribe adds a subscriber until ctx ends or the hub closes.
func (h *Hub) Subscribe(ctx context.Context) (<-chan store.Event, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	ch := make(chan store.Event, SubscriberBuffer)
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil, store.ErrClosed
	}
	if h.subs == nil {
		h.subs = make(map[chan store.Event]func() bool)
	}
	h.subs[ch] = context.AfterFunc(ctx, func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		h.drop(ch)
	})
	return ch, nil
}

// drop closes and forgets ch; h.mu must be held.
func (h *Hub) drop(ch chan store.Event) {
	if stop, ok := h.subs[ch]; ok {
		stop()
		delete(h.subs, ch)
		close(ch)
	}
}

// Publish hands events to every subscriber without blocking.
func (h *Hub) Publish(events ...store.Event) {
	if len(events) == 0 {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for ch := range h.subs {
		for _, e := range events {
			select {
			case ch <- e:
			default:
				h.drop(ch) // fell behind: closing tells it to re-read
			}
			if _, ok := h.subs[ch]; !ok {
				break
			}
		}
	}
}

// Close closes every subscriber's channel; later Subscribe calls get ErrClosed.
func (h *Hub) Close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed = true
	for ch := range h.subs {
		h.drop(ch)
	}
}
