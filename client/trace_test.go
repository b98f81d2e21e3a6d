package client_test

import (
	"context"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/corrstore/corrstore/bolt"
	"github.com/corrstore/corrstore/client"
	"github.com/corrstore/corrstore/client/memtransport"
	"github.com/corrstore/corrstore/store"
)

// One trace shows the request, the responder's work and the reply taken
// in, across the transport; the stored correlation keeps the request's
// traceparent, from which a callback handler continues the trace (read
// back from the store, as a process after a restart does).
func TestTraceAcrossTheGap(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	prev := otel.GetTracerProvider()
	otel.SetTracerProvider(tp)
	t.Cleanup(func() { otel.SetTracerProvider(prev); _ = tp.Shutdown(context.Background()) })

	st, err := bolt.Open(bolt.Options{Path: filepath.Join(t.TempDir(), "c.db"), NoSync: true, Logger: quiet()})
	require.NoError(t, err)
	t.Cleanup(func() { st.Close() })
	tr := memtransport.New()
	t.Cleanup(func() { tr.Close() })
	c, err := client.New(client.Config{Store: st, Transport: tr, Service: "orders", Logger: quiet()})
	require.NoError(t, err)
	handled := make(chan trace.SpanContext, 1)
	c.Handle("resume", func(ctx context.Context, _ client.Outcome) error {
		handled <- trace.SpanContextFromContext(ctx)
		return nil
	})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _ = c.Run(ctx) })
	wg.Go(func() {
		_ = c.Serve(ctx, "payments", func(context.Context, client.Incoming) ([]byte, error) { return []byte("paid"), nil })
	})
	t.Cleanup(func() { cancel(); wg.Wait() })

	reqCtx, root := tp.Tracer("test").Start(context.Background(), "checkout")
	id, err := c.Send(reqCtx, "payments", []byte("order-42"), client.Options{Timeout: time.Minute,
		Handler: "resume"})
	require.NoError(t, err)
	root.End()
	traceID := root.SpanContext().TraceID()

	// The reply is taken in under a span of the same trace.
	deadline := time.Now().Add(time.Minute)
	var serve, reply sdktrace.ReadOnlySpan
	for serve == nil || reply == nil {
		require.True(t, time.Now().Before(deadline), "no serve and reply spans within a minute")
		for _, s := range rec.Ended() {
			switch s.Name() {
			case "corrstore.serve payments":
				serve = s
			case "corrstore.reply orders.replies":
				reply = s
			}
		}
		time.Sleep(5 * time.Millisecond) // polling the recorder under a deadline
	}
	require.Equal(t, traceID, serve.SpanContext().TraceID())
	require.Equal(t, root.SpanContext().SpanID(), serve.Parent().SpanID(), "serve continues the request")
	require.Equal(t, traceID, reply.SpanContext().TraceID())
	require.Equal(t, serve.SpanContext().SpanID(), reply.Parent().SpanID(), "the reply continues the responder")

	// The stored traceparent brings a later callback into the trace.
	corr, err := st.Get(t.Context(), store.Ref{Namespace: store.DefaultNamespace, ID: id})
	require.NoError(t, err)
	require.Equal(t, store.StateCompleted, corr.State)
	cbCtx := client.TraceContext(context.Background(), corr)
	require.Equal(t, traceID, trace.SpanContextFromContext(cbCtx).TraceID())
	require.Equal(t, root.SpanContext().SpanID(), trace.SpanContextFromContext(cbCtx).SpanID())

	// client.Run runs the callback handler in a span of that trace.
	var in trace.SpanContext
	select {
	case in = <-handled:
	case <-time.After(time.Minute):
		t.Fatal("the callback handler did not run within a minute")
	}
	require.Equal(t, traceID, in.TraceID(), "the callback handler runs in the request's trace")
}
