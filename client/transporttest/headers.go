package transporttest

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/corrstore/corrstore/client"
)

// Headers arrive as they were sent, trace context included.
func testHeaders(t *testing.T, newTransport NewTransport) {
	addr := address(t)
	tr := newTransport(t, "svc")
	ch := make(chan got, 10)
	receive(t, tr, addr, collect(ch, "r"))
	h := map[string]string{
		"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		"tracestate":  "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7",
		"X-Tenant":    "acme",
		"empty":       "",
	}
	send(t, tr, addr, client.Message{CorrelationID: "c-1", Headers: h})
	require.Equal(t, h, next(t, ch).m.Headers)
}
