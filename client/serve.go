package client

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/corrstore/corrstore/store"
)

// Incoming is a request a responder received.
type Incoming struct {
	// Destination is the address it was sent to.
	Destination string
	Message
}

// ServeFunc answers one request: its body, or an error that goes back to
// the requester as an error reply (the text only). A request may come more
// than once (the transport delivers at least once); the requester's store
// drops the second answer as a duplicate.
type ServeFunc func(ctx context.Context, in Incoming) ([]byte, error)

// StreamFunc answers one request with a stream: each call of send sends
// one reply, numbered from 0; the last one sent is marked Final when the
// function returns. A returned error is sent as a final error reply.
type StreamFunc func(ctx context.Context, in Incoming, send func(body []byte) error) error

// Serve is the responder: it takes requests sent to dest and answers each
// to its ReplyTo with its correlation ID and namespace, until ctx ends; then it returns
// nil. Any number of replicas may serve the same destination; each request
// goes to one of them.
func (c *Client) Serve(ctx context.Context, dest string, fn ServeFunc) error {
	return Serve(ctx, c.tr, dest, fn, c.log)
}

// ServeStream is Serve for requests answered with a stream (see Client.Stream).
func (c *Client) ServeStream(ctx context.Context, dest string, fn StreamFunc) error {
	return ServeStream(ctx, c.tr, dest, fn, c.log)
}

// Serve is Client.Serve for a responder with no store of its own. logger
// may be nil (slog.Default()).
func Serve(ctx context.Context, tr Transport, dest string, fn ServeFunc, logger *slog.Logger) error {
	return ServeStream(ctx, tr, dest, func(ctx context.Context, in Incoming, send func([]byte) error) error {
		body, err := fn(ctx, in)
		if err != nil {
			return err
		}
		return send(body)
	}, logger)
}

// ServeStream is Client.ServeStream for a responder with no store of its own.
func ServeStream(ctx context.Context, tr Transport, dest string, fn StreamFunc, logger *slog.Logger) error {
	if logger == nil {
		logger = slog.Default()
	}
	log := logger.With("component", "client", "serve", dest)
	return tr.Receive(ctx, dest, func(ctx context.Context, m Message) error {
		if m.ReplyTo == "" || m.CorrelationID == "" {
			log.Warn("request without correlation id or reply address dropped", "id", m.CorrelationID)
			return nil
		}
		ctx, span := startSpan(ctx, "corrstore.serve "+dest, trace.SpanKindConsumer, m.Headers,
			attribute.String("corrstore.correlation_id", m.CorrelationID), attribute.String("corrstore.destination", dest))
		r := responder{ctx: ctx, tr: tr, dest: dest, req: m}
		err := callServe(ctx, fn, Incoming{Destination: dest, Message: m}, r.buffer)
		var sendErr error
		switch {
		case r.err != nil:
			sendErr = r.err // the transport failed: have the request delivered again
		case err != nil:
			log.Debug("answering with an error", "id", m.CorrelationID, "err", err)
			sendErr = r.flush(ctx, err.Error())
		default:
			sendErr = r.flush(ctx, "")
		}
		endSpan(span, errors.Join(err, sendErr))
		return sendErr
	})
}

// responder numbers the replies of one request, holding the last one back
// to mark it Final. Each reply's ID is the responder and the Seq, so the
// replies of a request answered twice are duplicates for the store.
type responder struct {
	ctx  context.Context
	tr   Transport
	dest string
	req  Message
	held []byte
	has  bool
	seq  int
	err  error
}

func (r *responder) buffer(body []byte) error {
	if r.err != nil {
		return r.err
	}
	if r.has {
		if err := r.send(r.ctx, r.held, false, ""); err != nil {
			r.err = err
			return err
		}
	}
	r.held, r.has = body, true
	return nil
}

// flush sends the held reply as the final one, or, after an error, the
// held one and then the error as the final one.
func (r *responder) flush(ctx context.Context, errText string) error {
	if errText == "" {
		return r.send(ctx, r.held, true, "")
	}
	if r.has {
		if err := r.send(ctx, r.held, false, ""); err != nil {
			return err
		}
	}
	if len(errText) > store.MaxReplyErrorLen {
		errText = errText[:store.MaxReplyErrorLen]
	}
	return r.send(ctx, nil, true, errText)
}

func (r *responder) send(ctx context.Context, body []byte, final bool, errText string) error {
	m := Message{
		CorrelationID: r.req.CorrelationID,
		Namespace:     r.req.Namespace,
		ID:            r.dest + "#" + strconv.Itoa(r.seq),
		From:          r.dest,
		Seq:           r.seq,
		Final:         final,
		Error:         errText,
		Body:          body,
		Headers:       traceHeaders(ctx, nil),
	}
	if err := r.tr.Send(ctx, r.req.ReplyTo, m); err != nil {
		return fmt.Errorf("reply to %s for %s: %w", r.req.ReplyTo, r.req.CorrelationID, err)
	}
	r.seq++
	r.has = false
	return nil
}

func callServe(ctx context.Context, fn StreamFunc, in Incoming, send func([]byte) error) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("responder panicked: %v", p)
		}
	}()
	return fn(ctx, in, send)
}
