// Package memtransport is an in-process client.Transport, for tests,
// examples and services whose requesters and responders share a process.
//
// Each address is a queue. Receivers of the same address share its
// messages, each message going to one of them; a message whose handler
// fails is queued again. Messages live in memory only: they are lost with
// the process, which the store's deadlines are there for.
package memtransport

import (
	"context"
	"errors"
	"maps"
	"sync"

	"github.com/corrstore/corrstore/client"
)

// ErrClosed is returned by Send after Close.
var ErrClosed = errors.New("memtransport: closed")

// Transport is an in-process client.Transport. The zero value is not
// usable; call New.
type Transport struct {
	mu     sync.Mutex
	queues map[string]*queue
	closed bool
	done   chan struct{} // closed by Close
}

var _ client.Transport = (*Transport)(nil)

type queue struct {
	msgs []client.Message
	// ready holds a token while msgs is not empty, so that one waiting
	// receiver wakes per token and passes it on when more are left.
	ready chan struct{}
}

// New returns an empty Transport.
func New() *Transport { return &Transport{queues: map[string]*queue{}, done: make(chan struct{})} }

func (t *Transport) queue(addr string) *queue {
	q := t.queues[addr]
	if q == nil {
		q = &queue{ready: make(chan struct{}, 1)}
		t.queues[addr] = q
	}
	return q
}

func (q *queue) signal() {
	select {
	case q.ready <- struct{}{}:
	default:
	}
}

// Send queues m for address.
func (t *Transport) Send(ctx context.Context, address string, m client.Message) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	m.Body = append([]byte(nil), m.Body...)
	m.Headers = maps.Clone(m.Headers)
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return ErrClosed
	}
	q := t.queue(address)
	q.msgs = append(q.msgs, m)
	q.signal()
	return nil
}

// Receive takes the messages of address until ctx ends or the Transport is
// closed, then returns nil. A message whose handle returns an error goes
// back to the end of the queue, unless the error wraps client.ErrPoison:
// then it is dropped.
func (t *Transport) Receive(ctx context.Context, address string, handle func(context.Context, client.Message) error) error {
	t.mu.Lock()
	q := t.queue(address)
	t.mu.Unlock()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.done:
			return nil
		case <-q.ready:
		}
		t.mu.Lock()
		// select picks at random among ready cases: an ended context
		// must not take another message.
		if ctx.Err() != nil || t.closed {
			q.signal()
			t.mu.Unlock()
			return nil
		}
		if len(q.msgs) == 0 {
			t.mu.Unlock()
			continue
		}
		m := q.msgs[0]
		q.msgs = q.msgs[1:]
		if len(q.msgs) > 0 {
			q.signal()
		}
		t.mu.Unlock()
		if err := handle(ctx, m); err != nil && !errors.Is(err, client.ErrPoison) {
			t.mu.Lock()
			q.msgs = append(q.msgs, m)
			q.signal()
			t.mu.Unlock()
		}
	}
}

// Len returns how many messages wait at address.
func (t *Transport) Len(address string) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	if q := t.queues[address]; q != nil {
		return len(q.msgs)
	}
	return 0
}

// Take removes and returns the messages waiting at address, for tests that
// play the broker: drop, reorder or resend them.
func (t *Transport) Take(address string) []client.Message {
	t.mu.Lock()
	defer t.mu.Unlock()
	q := t.queues[address]
	if q == nil {
		return nil
	}
	msgs := q.msgs
	q.msgs = nil
	return msgs
}

// Close ends every Receive (each returns once its handler does) and makes
// later sends fail with ErrClosed. Messages still queued stay readable by
// Take and Len.
func (t *Transport) Close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.closed {
		t.closed = true
		close(t.done)
	}
	return nil
}
