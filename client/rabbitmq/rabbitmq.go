// Package rabbitmq is a client.Transport on RabbitMQ (AMQP 0-9-1).
//
// An address is a durable queue of the same name, declared by the first
// Send or Receive that uses it; a message is published to the default
// exchange with the address as routing key. The receivers of a queue
// compete for its messages, so the replicas of a service share its reply
// queue, each reply going to one of them.
//
// Mapping of a client.Message onto an AMQP message:
//
//	CorrelationID  correlation_id
//	ReplyTo        reply_to
//	ID             header corrstore-id, and message_id when it fits (255 bytes)
//	From           header corrstore-from, and app_id when it fits
//	Deadline       expiration (milliseconds left) and header corrstore-deadline (RFC 3339)
//	Namespace      header corrstore-namespace
//	Seq, Final     headers corrstore-seq (int), corrstore-final (bool)
//	Error          header corrstore-error
//	Headers        headers, as they are (strings)
//	Body           body
//
// Every message is persistent (delivery_mode 2) and Send returns once the
// broker confirmed it (publisher confirms). A responder that knows nothing
// of corrstore answers a request by publishing to its reply_to with its
// correlation_id; message_id, when it sets one, dedupes its retries
// (AMQP's short strings hold 255 bytes, corrstore's IDs 512: the headers
// carry them whole).
//
// Receive acknowledges a message once its handler returned nil (manual
// ack), so a receiver that dies first has it delivered again; at most
// Prefetch messages are in a receiver's hands at once. A message whose
// handler fails is requeued. A poison message (client.ErrPoison) is
// acknowledged, copied to the DeadLetter queue and counted (Poisoned).
// After the connection is lost Send and Receive dial again with backoff.
package rabbitmq

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/corrstore/corrstore/client"
	"github.com/corrstore/corrstore/store"
)

// Defaults of Config.
const (
	DefaultPrefetch     = 32
	DefaultDeadLetter   = "corrstore.dead"
	DefaultDialTimeout  = 10 * time.Second
	DefaultReconnectMin = 100 * time.Millisecond
	DefaultReconnectMax = 10 * time.Second
)

// Header names of the Message fields AMQP has no property for.
const (
	HeaderID        = "corrstore-id"
	HeaderFrom      = "corrstore-from"
	HeaderNamespace = "corrstore-namespace"
	HeaderSeq       = "corrstore-seq"
	HeaderFinal     = "corrstore-final"
	HeaderError     = "corrstore-error"
	HeaderDeadline  = "corrstore-deadline"
)

// ErrClosed is returned by Send after Close.
var ErrClosed = errors.New("rabbitmq: closed")

// Config configures a Transport. A zero field takes its default.
type Config struct {
	// URL of the broker, amqp://user:password@host:port/vhost. Required.
	URL string
	// Prefetch bounds the messages delivered to one receiver and not yet
	// acknowledged. Default 32.
	Prefetch int
	// DeadLetter is the queue poison messages are copied to. Default
	// "corrstore.dead".
	DeadLetter string
	// DialTimeout bounds one dial. Default 10s.
	DialTimeout time.Duration
	// ReconnectMin and ReconnectMax bound the backoff between dials after
	// the connection was lost: it doubles from min to max. Defaults 100ms
	// and 10s.
	ReconnectMin, ReconnectMax time.Duration
	// Logger receives what goes wrong, with "component"="rabbitmq".
	// Default slog.Default().
	Logger *slog.Logger
}

// Transport is a client.Transport on RabbitMQ. It holds one connection,
// dialled on first use and again after it was lost.
type Transport struct {
	cfg      Config
	log      *slog.Logger
	poisoned atomic.Int64

	mu       sync.Mutex
	conn     *amqp.Connection
	pub      *amqp.Channel // in confirm mode
	declared map[string]bool
	closed   bool
	done     chan struct{} // closed by Close
}

var _ client.Transport = (*Transport)(nil)

// New returns a Transport; it dials on first use.
func New(cfg Config) (*Transport, error) {
	cfg.Prefetch = cmp.Or(cfg.Prefetch, DefaultPrefetch)
	cfg.DeadLetter = cmp.Or(cfg.DeadLetter, DefaultDeadLetter)
	cfg.DialTimeout = cmp.Or(cfg.DialTimeout, DefaultDialTimeout)
	cfg.ReconnectMin = cmp.Or(cfg.ReconnectMin, DefaultReconnectMin)
	cfg.ReconnectMax = cmp.Or(cfg.ReconnectMax, DefaultReconnectMax)
	cfg.Logger = cmp.Or(cfg.Logger, slog.Default())
	switch {
	case cfg.URL == "":
		return nil, fmt.Errorf("%w: url: required", store.ErrInvalid)
	case cfg.Prefetch < 1 || cfg.Prefetch > 65535:
		return nil, fmt.Errorf("%w: prefetch: must be 1 to 65535, got %d", store.ErrInvalid, cfg.Prefetch)
	case cfg.ReconnectMin <= 0 || cfg.ReconnectMax < cfg.ReconnectMin:
		return nil, fmt.Errorf("%w: reconnect_min must be positive and at most reconnect_max, got %s and %s", store.ErrInvalid, cfg.ReconnectMin, cfg.ReconnectMax)
	}
	if _, err := amqp.ParseURI(cfg.URL); err != nil {
		return nil, fmt.Errorf("%w: url: %w", store.ErrInvalid, err)
	}
	return &Transport{cfg: cfg, log: cfg.Logger.With("component", "rabbitmq"), declared: map[string]bool{}, done: make(chan struct{})}, nil
}

// Poisoned is how many poison messages the receivers acknowledged and
// dead-lettered.
func (t *Transport) Poisoned() int64 { return t.poisoned.Load() }

// connection returns the live connection, dialling when there is none.
func (t *Transport) connection() (*amqp.Connection, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil, ErrClosed
	}
	if t.conn != nil && !t.conn.IsClosed() {
		return t.conn, nil
	}
	conn, err := amqp.DialConfig(t.cfg.URL, amqp.Config{Heartbeat: 10 * time.Second, Locale: "en_US",
		Dial: amqp.DefaultDial(t.cfg.DialTimeout)})
	if err != nil {
		return nil, fmt.Errorf("rabbitmq: dial: %w", err)
	}
	t.conn, t.pub = conn, nil
	t.declared = map[string]bool{}
	return conn, nil
}

// publisher returns the confirm-mode channel Send publishes on.
func (t *Transport) publisher() (*amqp.Channel, error) {
	conn, err := t.connection()
	if err != nil {
		return nil, err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.pub != nil && !t.pub.IsClosed() && t.conn == conn {
		return t.pub, nil
	}
	ch, err := conn.Channel()
	if err != nil {
		return nil, fmt.Errorf("rabbitmq: open channel: %w", err)
	}
	if err := ch.Confirm(false); err != nil {
		ch.Close()
		return nil, fmt.Errorf("rabbitmq: confirm mode: %w", err)
	}
	t.pub = ch
	return ch, nil
}

// declare declares the durable queue of address once per connection.
func (t *Transport) declare(ch *amqp.Channel, address string) error {
	t.mu.Lock()
	done := t.declared[address]
	t.mu.Unlock()
	if done {
		return nil
	}
	if _, err := ch.QueueDeclare(address, true, false, false, false, nil); err != nil {
		return fmt.Errorf("rabbitmq: declare queue %s: %w", address, err)
	}
	t.mu.Lock()
	t.declared[address] = true
	t.mu.Unlock()
	return nil
}

// Send publishes m to the queue address and waits for the broker's
// confirm. A connection lost on the way is dialled again once.
func (t *Transport) Send(ctx context.Context, address string, m client.Message) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	p := publishing(m)
	var err error
	for range 2 {
		if err = t.publish(ctx, address, p); err == nil || ctx.Err() != nil || errors.Is(err, ErrClosed) {
			break
		}
	}
	return err
}

func (t *Transport) publish(ctx context.Context, address string, p amqp.Publishing) error {
	ch, err := t.publisher()
	if err != nil {
		return err
	}
	if err := t.declare(ch, address); err != nil {
		return err
	}
	conf, err := ch.PublishWithDeferredConfirmWithContext(ctx, "", address, false, false, p)
	if err != nil {
		return fmt.Errorf("rabbitmq: publish to %s: %w", address, err)
	}
	ok, err := conf.WaitContext(ctx)
	switch {
	case err != nil:
		return fmt.Errorf("rabbitmq: confirm of %s: %w", address, err)
	case !ok:
		return fmt.Errorf("rabbitmq: the broker refused the message to %s (nack)", address)
	}
	return nil
}

// Receive consumes the queue address until ctx ends or the Transport is
// closed, then returns nil. A lost connection is dialled again with
// backoff; the messages its receiver held are redelivered by the broker.
func (t *Transport) Receive(ctx context.Context, address string, handle func(context.Context, client.Message) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-t.done:
			cancel()
		case <-ctx.Done():
		}
	}()
	wait := t.cfg.ReconnectMin
	for ctx.Err() == nil {
		err := t.consume(ctx, address, handle)
		if ctx.Err() != nil {
			break
		}
		if err == nil {
			wait = t.cfg.ReconnectMin // consumed, then lost: start over
		}
		t.log.Warn("consuming failed; dialling again", "queue", address, "err", err, "in", wait)
		select {
		case <-ctx.Done():
		case <-time.After(wait):
		}
		wait = min(2*wait, t.cfg.ReconnectMax)
	}
	return nil
}

// consume runs one consumer on its own channel until ctx ends (nil) or the
// channel is lost (an error, or nil after some messages came).
func (t *Transport) consume(ctx context.Context, address string, handle func(context.Context, client.Message) error) error {
	conn, err := t.connection()
	if err != nil {
		return err
	}
	ch, err := conn.Channel()
	if err != nil {
		return fmt.Errorf("open channel: %w", err)
	}
	// Closing the channel hands what it held and did not acknowledge
	// back to the queue.
	defer ch.Close()
	if err := ch.Qos(t.cfg.Prefetch, 0, false); err != nil {
		return fmt.Errorf("qos: %w", err)
	}
	if err := t.declare(ch, address); err != nil {
		return err
	}
	deliveries, err := ch.Consume(address, "", false, false, false, false, nil)
	if err != nil {
		return fmt.Errorf("consume %s: %w", address, err)
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case d, ok := <-deliveries:
			if !ok {
				return errors.New("channel closed by the broker or the connection lost")
			}
			t.deliver(ctx, ch, address, d, handle)
		}
	}
}

func (t *Transport) deliver(ctx context.Context, ch *amqp.Channel, address string, d amqp.Delivery, handle func(context.Context, client.Message) error) {
	err := handle(ctx, message(d))
	switch {
	case err == nil:
		err = d.Ack(false)
	case errors.Is(err, client.ErrPoison):
		t.poisoned.Add(1)
		t.log.Error("poison message acknowledged and dead-lettered", "queue", address, "dead_letter", t.cfg.DeadLetter,
			"correlation_id", d.CorrelationId, "message_id", d.MessageId, "err", err, "poisoned", t.poisoned.Load())
		if derr := t.deadLetter(ctx, address, d, err); derr != nil {
			t.log.Error("dead-lettering failed; the message is dropped", "queue", address, "err", derr)
		}
		err = d.Ack(false)
	default:
		if ctx.Err() != nil {
			return // the channel's close requeues it
		}
		t.log.Warn("handler failed; the message is requeued", "queue", address, "correlation_id", d.CorrelationId, "err", err)
		err = d.Nack(false, true)
	}
	if err != nil {
		t.log.Warn("ack failed; the message will be delivered again", "queue", address, "err", err)
	}
}

// deadLetter copies a poison message to the DeadLetter queue, with where
// it came from and why.
func (t *Transport) deadLetter(ctx context.Context, address string, d amqp.Delivery, reason error) error {
	p := amqp.Publishing{Headers: amqp.Table{}, ContentType: d.ContentType, DeliveryMode: amqp.Persistent,
		CorrelationId: d.CorrelationId, ReplyTo: d.ReplyTo, MessageId: d.MessageId, AppId: d.AppId, Body: d.Body}
	for k, v := range d.Headers {
		p.Headers[k] = v
	}
	p.Headers["corrstore-dead-queue"] = address
	p.Headers["corrstore-dead-reason"] = reason.Error()
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), t.cfg.DialTimeout)
	defer cancel()
	return t.publish(cctx, t.cfg.DeadLetter, p)
}

// Close closes the connection: receivers return, later sends fail with
// ErrClosed. Messages received and not acknowledged go back to their
// queues.
func (t *Transport) Close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil
	}
	t.closed = true
	close(t.done)
	if t.conn != nil && !t.conn.IsClosed() {
		return t.conn.Close()
	}
	return nil
}

func publishing(m client.Message) amqp.Publishing {
	h := amqp.Table{}
	for k, v := range m.Headers {
		h[k] = v
	}
	for k, v := range map[string]string{HeaderID: m.ID, HeaderFrom: m.From, HeaderNamespace: m.Namespace, HeaderError: m.Error} {
		if v != "" {
			h[k] = v
		}
	}
	if m.Seq != 0 {
		h[HeaderSeq] = int64(m.Seq)
	}
	if m.Final {
		h[HeaderFinal] = true
	}
	p := amqp.Publishing{Headers: h, ContentType: "application/octet-stream", DeliveryMode: amqp.Persistent,
		CorrelationId: m.CorrelationID, ReplyTo: m.ReplyTo, MessageId: shortString(m.ID), AppId: shortString(m.From), Body: m.Body}
	if !m.Deadline.IsZero() {
		h[HeaderDeadline] = m.Deadline.UTC().Format(time.RFC3339Nano)
		p.Expiration = strconv.FormatInt(max(time.Until(m.Deadline).Milliseconds(), 1), 10)
	}
	return p
}

func message(d amqp.Delivery) client.Message {
	m := client.Message{CorrelationID: d.CorrelationId, ReplyTo: d.ReplyTo, ID: d.MessageId, From: d.AppId, Body: d.Body}
	for k, v := range d.Headers {
		switch k {
		case HeaderID:
			m.ID, _ = v.(string)
		case HeaderFrom:
			m.From, _ = v.(string)
		case HeaderNamespace:
			m.Namespace, _ = v.(string)
		case HeaderSeq:
			switch n := v.(type) {
			case int64:
				m.Seq = int(n)
			case int32:
				m.Seq = int(n)
			}
		case HeaderFinal:
			m.Final, _ = v.(bool)
		case HeaderError:
			m.Error, _ = v.(string)
		case HeaderDeadline:
			if s, ok := v.(string); ok {
				m.Deadline, _ = time.Parse(time.RFC3339Nano, s)
			}
		default:
			if s, ok := v.(string); ok {
				if m.Headers == nil {
					m.Headers = map[string]string{}
				}
				m.Headers[k] = s
			}
		}
	}
	return m
}

// shortString is s when it fits an AMQP short string, else empty.
func shortString(s string) string {
	if len(s) > 255 {
		return ""
	}
	return s
}
