package client

import (
	"context"
	"errors"
	"time"
)

// Message is what travels through a Transport: a request on its way to a
// destination, or a reply on its way back to the requester's ReplyTo.
type Message struct {
	// CorrelationID names the correlation the request registered; a reply
	// carries it back so that any replica can match it in the store.
	CorrelationID string `json:"correlation_id"`
	// Namespace is the requester's namespace, where the correlation lives;
	// a reply carries it back. Empty (a message of an older version) means
	// the namespace of the client that takes the reply.
	Namespace string `json:"namespace,omitempty"`
	// ReplyTo is where a request's replies go (requests only).
	ReplyTo string `json:"reply_to,omitempty"`
	// Deadline is the correlation's deadline (requests only): a broker
	// that can expire a message (AMQP expiration) drops it after then,
	// when no reply can count any more.
	Deadline time.Time `json:"deadline,omitzero"`
	// ID is a reply's dedupe key; From names the responder (a gather tells
	// its replies apart by it); Seq and Final order a stream's replies.
	ID    string `json:"id,omitempty"`
	From  string `json:"from,omitempty"`
	Seq   int    `json:"seq,omitempty"`
	Final bool   `json:"final,omitempty"`
	// Error is a responder-side error: the reply still decides the
	// correlation and carries the error to the requester.
	Error string `json:"error,omitempty"`
	Body  []byte `json:"body,omitempty"`
	// Headers are carried as they are, such as the W3C trace context
	// (traceparent, tracestate). A transport maps them to its broker's
	// message headers; names are case-sensitive ASCII.
	Headers map[string]string `json:"headers,omitempty"`
}

// ErrPoison wraps a handler's error when the message can never be handled:
// a reply the store refuses for good (store.ErrInvalid, store.ErrTooLarge,
// a namespace the client may not write). A transport acknowledges such a
// message, so that it is not delivered forever, logs it, counts it and,
// where the broker has a place for it, dead-letters it.
var ErrPoison = errors.New("poison message")

// Transport carries messages between services. It is all a broker needs
// to offer, so that any broker can be adapted: at-least-once delivery to a
// group of receivers.
//
// Implementations: memtransport (in process), redisstream (Redis
// Streams), rabbitmq (AMQP 0-9-1) and natsjs (NATS JetStream). The suite
// in client/transporttest decides what a correct one does.
type Transport interface {
	// Send hands m to the broker for address (a destination, or a reply
	// address). It returns once the broker has accepted the message.
	Send(ctx context.Context, address string, m Message) error

	// Receive takes messages sent to address and calls handle for each,
	// until ctx ends; then it returns nil. Receivers of the same address in
	// the same group (the same service, on any replica) share its messages:
	// each message goes to one of them. A message is acknowledged when
	// handle returns nil; otherwise, or when the receiver dies before
	// handle returns, it is delivered again, to this receiver or another.
	// So handle may see a message more than once.
	Receive(ctx context.Context, address string, handle func(context.Context, Message) error) error
}
