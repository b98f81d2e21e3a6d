// Package natsjs is a client.Transport on NATS JetStream. Core NATS
// request-reply delivers at most once; JetStream keeps a message until a
// receiver acknowledged it.
//
// One stream (Config.Stream, work-queue retention, file storage) holds
// the subjects Prefix+">": a message for address A is published on the
// subject Prefix+A, and Send returns once JetStream acknowledged it (the
// publish ack). The receivers of an address share one durable pull
// consumer filtered on its subject, so the replicas of a service share its
// reply address, each message going to one of them; JetStream deletes a
// message once it is acknowledged.
//
// A message is acknowledged after its handler returned nil. A handler
// error naks it (delivered again at once); a receiver that dies leaves it
// to be delivered again after AckWait. A poison message (client.ErrPoison)
// is terminated (never delivered again), copied to the subject
// Prefix+DeadLetter and counted (Poisoned).
//
// Mapping of a client.Message: the body is the NATS payload; every other
// field is a header — Corrstore-Correlation-Id, Corrstore-Namespace,
// Corrstore-Reply-To, Corrstore-Id, Corrstore-From, Corrstore-Seq,
// Corrstore-Final, Corrstore-Error, Corrstore-Deadline (RFC 3339) — and
// Message.Headers are NATS headers as they are. The server's max_payload
// (1 MB by default, headers included) must hold the largest body: set it
// to 2 MB or more for the store's default 1 MiB bound.
package natsjs

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/corrstore/corrstore/client"
	"github.com/corrstore/corrstore/store"
)

// Defaults of Config.
const (
	DefaultStream     = "CORRSTORE"
	DefaultPrefix     = "corrstore."
	DefaultDeadLetter = "dead"
	DefaultAckWait    = 30 * time.Second
	DefaultPrefetch   = 32
	DefaultBlock      = time.Second
)

// Header names of the Message fields.
const (
	HeaderCorrelationID = "Corrstore-Correlation-Id"
	HeaderNamespace     = "Corrstore-Namespace"
	HeaderReplyTo       = "Corrstore-Reply-To"
	HeaderID            = "Corrstore-Id"
	HeaderFrom          = "Corrstore-From"
	HeaderSeq           = "Corrstore-Seq"
	HeaderFinal         = "Corrstore-Final"
	HeaderError         = "Corrstore-Error"
	HeaderDeadline      = "Corrstore-Deadline"
)

// ErrClosed is returned by Send after Close.
var ErrClosed = errors.New("natsjs: closed")

// Config configures a Transport. A zero field takes its default.
type Config struct {
	// URL of the server, nats://host:port. Required.
	URL string
	// Stream is the JetStream stream of every address. Default "CORRSTORE".
	Stream string
	// Prefix of the subjects. Default "corrstore.".
	Prefix string
	// DeadLetter is the address poison messages are copied to. Default "dead".
	DeadLetter string
	// AckWait is how long a message delivered and not acknowledged waits
	// before it is delivered again: its receiver died. Make it longer than
	// the slowest handler. Default 30s.
	AckWait time.Duration
	// Prefetch bounds the messages of an address delivered and not yet
	// acknowledged, over all its receivers (the consumer's
	// max_ack_pending), and one fetch. Default 32.
	Prefetch int
	// Block bounds one fetch's wait. Default 1s.
	Block time.Duration
	// Logger receives what goes wrong, with "component"="natsjs".
	// Default slog.Default().
	Logger *slog.Logger
}

// Transport is a client.Transport on NATS JetStream. Its connection
// reconnects by itself (nats.go), without limit.
type Transport struct {
	cfg      Config
	log      *slog.Logger
	nc       *nats.Conn
	js       jetstream.JetStream
	poisoned atomic.Int64

	mu     sync.Mutex
	stream bool // the stream exists
	closed bool
	done   chan struct{}
}

var _ client.Transport = (*Transport)(nil)

// New connects to the server.
func New(cfg Config) (*Transport, error) {
	cfg.Stream = cmp.Or(cfg.Stream, DefaultStream)
	cfg.Prefix = cmp.Or(cfg.Prefix, DefaultPrefix)
	cfg.DeadLetter = cmp.Or(cfg.DeadLetter, DefaultDeadLetter)
	cfg.AckWait = cmp.Or(cfg.AckWait, DefaultAckWait)
	cfg.Prefetch = cmp.Or(cfg.Prefetch, DefaultPrefetch)
	cfg.Block = cmp.Or(cfg.Block, DefaultBlock)
	cfg.Logger = cmp.Or(cfg.Logger, slog.Default())
	switch {
	case cfg.URL == "":
		return nil, fmt.Errorf("%w: url: required", store.ErrInvalid)
	case cfg.AckWait < time.Millisecond:
		return nil, fmt.Errorf("%w: ack_wait: must be at least 1ms, got %s", store.ErrInvalid, cfg.AckWait)
	case cfg.Prefetch < 1:
		return nil, fmt.Errorf("%w: prefetch: must be at least 1, got %d", store.ErrInvalid, cfg.Prefetch)
	case cfg.Block < time.Millisecond:
		return nil, fmt.Errorf("%w: block: must be at least 1ms, got %s", store.ErrInvalid, cfg.Block)
	case !strings.HasSuffix(cfg.Prefix, "."):
		return nil, fmt.Errorf("%w: prefix: must end with '.', got %q", store.ErrInvalid, cfg.Prefix)
	}
	if err := validAddress(cfg.DeadLetter); err != nil {
		return nil, fmt.Errorf("%w: dead_letter: %w", store.ErrInvalid, err)
	}
	log := cfg.Logger.With("component", "natsjs", "stream", cfg.Stream)
	nc, err := nats.Connect(cfg.URL, nats.MaxReconnects(-1), nats.RetryOnFailedConnect(true),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn("disconnected; reconnecting", "err", err)
			}
		}))
	if err != nil {
		return nil, fmt.Errorf("natsjs: connect: %w", err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("natsjs: %w", err)
	}
	return &Transport{cfg: cfg, log: log, nc: nc, js: js, done: make(chan struct{})}, nil
}

// Poisoned is how many poison messages the receivers terminated and
// dead-lettered.
func (t *Transport) Poisoned() int64 { return t.poisoned.Load() }

// Subject returns the subject of an address.
func (t *Transport) Subject(address string) string { return t.cfg.Prefix + address }

// validAddress refuses what a subject token may not hold.
func validAddress(a string) error {
	if a == "" || strings.ContainsAny(a, " \t\r\n*>") || strings.HasPrefix(a, ".") || strings.HasSuffix(a, ".") || strings.Contains(a, "..") {
		return fmt.Errorf("address %q: must be dot-separated tokens without spaces, '*' or '>'", a)
	}
	return nil
}

// ensureStream creates the stream, or updates it, once.
func (t *Transport) ensureStream(ctx context.Context) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return ErrClosed
	}
	if t.stream {
		return nil
	}
	_, err := t.js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name: t.cfg.Stream, Subjects: []string{t.cfg.Prefix + ">"},
		Retention: jetstream.WorkQueuePolicy, Storage: jetstream.FileStorage,
	})
	if err != nil {
		return fmt.Errorf("natsjs: create stream %s: %w", t.cfg.Stream, err)
	}
	t.stream = true
	return nil
}

// Send publishes m on the address's subject and waits for JetStream's ack.
func (t *Transport) Send(ctx context.Context, address string, m client.Message) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := validAddress(address); err != nil {
		return fmt.Errorf("natsjs: %w: %w", store.ErrInvalid, err)
	}
	if err := t.ensureStream(ctx); err != nil {
		return err
	}
	msg := toNATS(t.Subject(address), m)
	if _, err := t.js.PublishMsg(ctx, msg); err != nil {
		if errors.Is(err, nats.ErrMaxPayload) {
			return fmt.Errorf("natsjs: message to %s: %d bytes of body and headers over the server's max_payload of %d: %w",
				address, len(m.Body), t.nc.MaxPayload(), err)
		}
		return fmt.Errorf("natsjs: publish to %s: %w", address, err)
	}
	return nil
}

// consumerName is the durable consumer of an address: its subject with
// what a name may not hold replaced, and a hash that keeps two addresses
// apart.
func consumerName(address string) string {
	h := fnv.New32a()
	h.Write([]byte(address))
	var b strings.Builder
	for _, r := range address {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	return fmt.Sprintf("%s-%08x", b.String(), h.Sum32())
}

// Receive fetches the address's messages through its durable consumer
// until ctx ends or the Transport is closed, then returns nil (within
// Block). Server errors are logged and retried with backoff.
func (t *Transport) Receive(ctx context.Context, address string, handle func(context.Context, client.Message) error) error {
	if err := validAddress(address); err != nil {
		return fmt.Errorf("natsjs: %w: %w", store.ErrInvalid, err)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-t.done:
			cancel()
		case <-ctx.Done():
		}
	}()
	log := t.log.With("address", address)
	var cons jetstream.Consumer
	wait := 50 * time.Millisecond
	for ctx.Err() == nil {
		err := t.ensureStream(ctx)
		if err == nil && cons == nil {
			cons, err = t.js.CreateOrUpdateConsumer(ctx, t.cfg.Stream, jetstream.ConsumerConfig{
				Durable: consumerName(address), FilterSubject: t.Subject(address),
				AckPolicy: jetstream.AckExplicitPolicy, AckWait: t.cfg.AckWait, MaxAckPending: t.cfg.Prefetch,
				DeliverPolicy: jetstream.DeliverAllPolicy,
			})
		}
		if err == nil {
			err = t.fetch(ctx, cons, address, handle)
		}
		if err == nil {
			wait = 50 * time.Millisecond
			continue
		}
		if ctx.Err() != nil {
			break
		}
		if errors.Is(err, jetstream.ErrConsumerNotFound) || errors.Is(err, jetstream.ErrStreamNotFound) {
			cons = nil
			t.mu.Lock()
			t.stream = false
			t.mu.Unlock()
		}
		log.Warn("receiving failed; retrying", "err", err, "in", wait)
		select {
		case <-ctx.Done():
		case <-time.After(wait):
		}
		wait = min(2*wait, 5*time.Second)
	}
	return nil
}

// fetch takes one batch, waiting up to Block, and handles it.
func (t *Transport) fetch(ctx context.Context, cons jetstream.Consumer, address string, handle func(context.Context, client.Message) error) error {
	fctx, cancel := context.WithTimeout(ctx, t.cfg.Block)
	defer cancel()
	batch, err := cons.Fetch(t.cfg.Prefetch, jetstream.FetchContext(fctx))
	if err != nil {
		return err
	}
	for msg := range batch.Messages() {
		t.process(ctx, address, msg, handle)
	}
	if err := batch.Error(); err != nil && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) && !errors.Is(err, nats.ErrTimeout) {
		return err
	}
	return nil
}

func (t *Transport) process(ctx context.Context, address string, msg jetstream.Msg, handle func(context.Context, client.Message) error) {
	if ctx.Err() != nil {
		_ = msg.Nak() // fetched after the end: hand it back at once
		return
	}
	m := fromNATS(msg.Headers(), msg.Data())
	err := handle(ctx, m)
	switch {
	case err == nil:
		err = msg.Ack()
	case errors.Is(err, client.ErrPoison):
		n := t.poisoned.Add(1)
		t.log.Error("poison message terminated and dead-lettered", "address", address, "dead_letter", t.cfg.DeadLetter,
			"correlation_id", m.CorrelationID, "id", m.ID, "err", err, "poisoned", n)
		dead := toNATS(t.Subject(t.cfg.DeadLetter), m)
		dead.Header.Set("Corrstore-Dead-Address", address)
		dead.Header.Set("Corrstore-Dead-Reason", err.Error())
		pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		if _, derr := t.js.PublishMsg(pctx, dead); derr != nil {
			t.log.Error("dead-lettering failed; the message is dropped", "address", address, "err", derr)
		}
		cancel()
		err = msg.TermWithReason("corrstore: poison")
	default:
		// A receiver stopping hands the message back at once rather
		// than after AckWait.
		t.log.Warn("handler failed; the message is delivered again", "address", address, "correlation_id", m.CorrelationID, "err", err)
		err = msg.Nak()
	}
	if err != nil {
		t.log.Warn("ack failed; the message will be delivered again after ack_wait", "address", address, "err", err)
	}
}

// Close closes the connection: receivers return, later sends fail.
func (t *Transport) Close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil
	}
	t.closed = true
	close(t.done)
	t.nc.Close()
	return nil
}

func toNATS(subject string, m client.Message) *nats.Msg {
	msg := &nats.Msg{Subject: subject, Data: m.Body, Header: nats.Header{}}
	for k, v := range m.Headers {
		msg.Header[k] = []string{v}
	}
	set := func(k, v string) {
		if v != "" {
			msg.Header[k] = []string{v}
		}
	}
	set(HeaderCorrelationID, m.CorrelationID)
	set(HeaderNamespace, m.Namespace)
	set(HeaderReplyTo, m.ReplyTo)
	set(HeaderID, m.ID)
	set(HeaderFrom, m.From)
	set(HeaderError, m.Error)
	if m.Seq != 0 {
		set(HeaderSeq, strconv.Itoa(m.Seq))
	}
	if m.Final {
		set(HeaderFinal, "true")
	}
	if !m.Deadline.IsZero() {
		set(HeaderDeadline, m.Deadline.UTC().Format(time.RFC3339Nano))
	}
	return msg
}

func fromNATS(h nats.Header, body []byte) client.Message {
	m := client.Message{Body: body}
	for k, vs := range h {
		if len(vs) == 0 {
			continue
		}
		v := vs[0]
		switch k {
		case HeaderCorrelationID:
			m.CorrelationID = v
		case HeaderNamespace:
			m.Namespace = v
		case HeaderReplyTo:
			m.ReplyTo = v
		case HeaderID:
			m.ID = v
		case HeaderFrom:
			m.From = v
		case HeaderError:
			m.Error = v
		case HeaderSeq:
			m.Seq, _ = strconv.Atoi(v)
		case HeaderFinal:
			m.Final = v == "true"
		case HeaderDeadline:
			m.Deadline, _ = time.Parse(time.RFC3339Nano, v)
		default:
			if m.Headers == nil {
				m.Headers = map[string]string{}
			}
			m.Headers[k] = v
		}
	}
	return m
}
