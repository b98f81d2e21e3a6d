package client

import (
	"context"
	"maps"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/corrstore/corrstore/store"
)

// Trace context crosses the asynchronous gap in W3C form: Send and Request
// put the caller's traceparent and tracestate in the request's Headers and
// keep the traceparent with the correlation (the label TraceparentLabel),
// Serve runs its function in a span that continues the request's trace and
// answers with its own trace context, and the client takes each reply in
// under a span that continues the responder's. Only OpenTelemetry's API is
// used: the spans go to the global TracerProvider (otel.SetTracerProvider),
// none when the program sets none.

// TraceparentLabel is the label that keeps the traceparent of the context
// a correlation was registered in (a callback handler continues it with
// TraceContext, after a restart too). The store leaves it out of the
// registration's fingerprint, so a retry from another span is no conflict.
const TraceparentLabel = store.TraceparentLabel

// instrumentation names the tracer.
const instrumentation = "github.com/corrstore/corrstore/client"

var w3c = propagation.TraceContext{}

func tracer() trace.Tracer { return otel.GetTracerProvider().Tracer(instrumentation) }

// traceHeaders returns h with the trace context of ctx added, h itself
// when ctx carries none.
func traceHeaders(ctx context.Context, h map[string]string) map[string]string {
	if !trace.SpanContextFromContext(ctx).IsValid() {
		return h
	}
	out := maps.Clone(h)
	if out == nil {
		out = map[string]string{}
	}
	w3c.Inject(ctx, propagation.MapCarrier(out))
	return out
}

// traceLabels returns labels with the traceparent of ctx added, when ctx
// carries one, the caller did not set the label and there is room.
func traceLabels(ctx context.Context, labels map[string]string) map[string]string {
	h := traceHeaders(ctx, nil)
	tp := h["traceparent"]
	if _, set := labels[TraceparentLabel]; tp == "" || set || len(labels) >= store.MaxLabels {
		return labels
	}
	out := maps.Clone(labels)
	if out == nil {
		out = map[string]string{}
	}
	out[TraceparentLabel] = tp
	return out
}

// TraceContext returns ctx carrying the trace context kept with c, as a
// remote parent: a callback handler starts its span from it, so that the
// trace shows request, reply and callback even when the callback runs in
// another process after a restart.
func TraceContext(ctx context.Context, c *store.Correlation) context.Context {
	if c == nil || c.Labels[TraceparentLabel] == "" {
		return ctx
	}
	return w3c.Extract(ctx, propagation.MapCarrier{"traceparent": c.Labels[TraceparentLabel]})
}

// startSpan starts a span continuing the trace context of headers.
func startSpan(ctx context.Context, name string, kind trace.SpanKind, headers map[string]string, attrs ...attribute.KeyValue) (context.Context, trace.Span) {
	if len(headers) > 0 {
		ctx = w3c.Extract(ctx, propagation.MapCarrier(headers))
	}
	return tracer().Start(ctx, name, trace.WithSpanKind(kind), trace.WithAttributes(attrs...))
}

// endSpan ends span, recording err.
func endSpan(span trace.Span, err error) {
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}
