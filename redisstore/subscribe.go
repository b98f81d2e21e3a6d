package redisstore

import (
	"context"
	"sync"

	"github.com/redis/go-redis/v9"

	"github.com/corrstore/corrstore/internal/storekit"
	"github.com/corrstore/corrstore/store"
)

// subscriber receives the store's events from Redis (the scripts PUBLISH
// them on "<prefix>:events"; on a Cluster a PUBLISH reaches every node) and
// fans them out to local subscribers through a storekit.Hub. It subscribes on
// the first Subscribe, so a store nobody subscribes to holds no extra
// connection.
//
// When the Redis subscription fails (a dropped connection, a failover),
// events may have been missed: every local subscriber's channel is closed,
// which the Store contract defines as "re-read and subscribe again", and the
// next Subscribe starts afresh.
type subscriber struct {
	s      *Store
	mu     sync.Mutex
	hub    *storekit.Hub
	ps     *redis.PubSub
	done   chan struct{}
	closed bool
}

func (sub *subscriber) init(s *Store) { sub.s = s }

// subscribe adds a subscriber until ctx ends or the store closes.
func (sub *subscriber) subscribe(ctx context.Context) (<-chan store.Event, error) {
	if err := ctx.Err(); err != nil {
		return nil, unavailable("subscribe", err)
	}
	sub.mu.Lock()
	defer sub.mu.Unlock()
	if sub.closed {
		return nil, store.ErrClosed
	}
	if sub.ps == nil {
		if err := sub.start(ctx); err != nil {
			return nil, err
		}
	}
	return sub.hub.Subscribe(ctx)
}

// start subscribes in Redis and waits for the confirmation, so that every
// event published after Subscribe returns is received. sub.mu is held.
func (sub *subscriber) start(ctx context.Context) error {
	ps := sub.s.rdb.Subscribe(ctx, sub.s.keys.channel())
	if _, err := ps.Receive(ctx); err != nil {
		ps.Close()
		return sub.s.redisErr("subscribe", err)
	}
	hub, done := &storekit.Hub{}, make(chan struct{})
	sub.hub, sub.ps, sub.done = hub, ps, done
	go sub.receive(ps, hub, done)
	return nil
}

func (sub *subscriber) receive(ps *redis.PubSub, hub *storekit.Hub, done chan struct{}) {
	defer close(done)
	for {
		// Close ends a blocked receive by closing the PubSub's connection.
		msg, err := ps.ReceiveMessage(context.Background())
		if err != nil {
			sub.mu.Lock()
			if sub.ps == ps && !sub.closed {
				sub.s.log.Warn("event subscription lost; subscribers must re-read", "err", err)
				sub.ps, sub.hub = nil, nil
				ps.Close()
			}
			sub.mu.Unlock()
			hub.Close()
			return
		}
		e, err := decodeEvent(msg.Payload)
		if err != nil {
			sub.s.log.Warn("undecodable event skipped", "channel", msg.Channel, "err", err)
			continue
		}
		hub.Publish(e)
	}
}

// close ends the Redis subscription and every local subscriber.
func (sub *subscriber) close() {
	sub.mu.Lock()
	sub.closed = true
	ps, hub, done := sub.ps, sub.hub, sub.done
	sub.ps, sub.hub = nil, nil
	sub.mu.Unlock()
	if ps == nil {
		return
	}
	ps.Close()
	<-done
	hub.Close()
}

// Subscribe implements store.Store.
func (s *Store) Subscribe(ctx context.Context) (<-chan store.Event, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	return s.subs.subscribe(ctx)
}
