package client

import (
	"time"

	"github.com/corrstore/corrstore/store"
)

// Metrics receives what the client does, for export (a service wires it to
// Prometheus; this package does not depend on it). It is called from many
// goroutines and must be safe for concurrent use.
type Metrics interface {
	// Sent counts requests handed to the transport, by destination; err is
	// the transport's error, nil when it took the request.
	Sent(dest string, err error)
	// ReplyDelivered counts replies taken from the transport, by what the
	// store did with them (a store.DeliverStatus, or "rejected").
	ReplyDelivered(status store.DeliverStatus)
	// Dispatched counts handler runs, by result: "done", "retry", "dead"
	// or "lost" (the lease was lost before the result was recorded), and
	// observes how long the handler ran.
	Dispatched(handler, result string, d time.Duration)
	// Waited observes how long Request, Gather and Stream waited for an
	// outcome, by its state.
	Waited(state store.State, d time.Duration)
}

// NopMetrics discards everything. Embed it to implement only some of Metrics.
type NopMetrics struct{}

func (NopMetrics) Sent(string, error)                       {}
func (NopMetrics) ReplyDelivered(store.DeliverStatus)       {}
func (NopMetrics) Dispatched(string, string, time.Duration) {}
func (NopMetrics) Waited(store.State, time.Duration)        {}

var _ Metrics = NopMetrics{}
