package transporttest

import (
	"bytes"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/corrstore/corrstore/client"
	"github.com/corrstore/corrstore/store"
)

// A reply at every limit the store allows — a MaxBody body, ID and From of
// MaxReplyFieldLen, an error of MaxReplyErrorLen — arrives whole.
func testLargeBody(t *testing.T, newTransport NewTransport) {
	addr := address(t)
	tr := newTransport(t, "svc")
	ch := make(chan got, 2)
	receive(t, tr, addr, collect(ch, "r"))
	body := bytes.Repeat([]byte{0xff, 0x00, 'a', '"'}, MaxBody/4)
	body = append(body, make([]byte, MaxBody-len(body))...)
	m := client.Message{
		CorrelationID: strings.Repeat("c", 128),
		ID:            strings.Repeat("i", store.MaxReplyFieldLen),
		From:          strings.Repeat("f", store.MaxReplyFieldLen),
		Error:         strings.Repeat("e", store.MaxReplyErrorLen),
		Body:          body,
		Headers:       map[string]string{"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},
	}
	send(t, tr, addr, m)
	g := next(t, ch)
	require.Len(t, g.m.Body, MaxBody)
	require.True(t, bytes.Equal(body, g.m.Body), "body changed on the way")
	g.m.Body, m.Body = nil, nil
	require.Equal(t, m, g.m)
}
