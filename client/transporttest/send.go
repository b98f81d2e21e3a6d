package transporttest

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/corrstore/corrstore/client"
)

// Every field of a message arrives as it was sent, in the order sent by
// one sender to one receiver.
func testSendReceive(t *testing.T, newTransport NewTransport) {
	addr := address(t)
	tr := newTransport(t, "svc")
	ch := make(chan got, 10)
	receive(t, tr, addr, collect(ch, "r"))

	sent := []client.Message{
		{CorrelationID: "c-1", Namespace: "ns", ReplyTo: "svc.replies", Deadline: time.Now().Add(time.Hour).UTC(), Body: []byte("request")},
		{CorrelationID: "c-2", Namespace: "ns", ID: "r-1", From: "payments-1", Seq: 3, Final: true, Error: "declined", Body: []byte{0, 1, 2, 255}},
		{CorrelationID: "c-3"},
	}
	for _, m := range sent {
		send(t, newTransport(t, "sender"), addr, m)
	}
	for _, want := range sent {
		g := next(t, ch)
		require.True(t, want.Deadline.Equal(g.m.Deadline), "deadline %s arrived as %s", want.Deadline, g.m.Deadline)
		want.Deadline, g.m.Deadline = time.Time{}, time.Time{}
		require.Equal(t, want, normalize(g.m))
	}
}

// A message sent before any receiver of its address existed is kept for
// the first one.
func testSentBeforeReceiver(t *testing.T, newTransport NewTransport) {
	addr := address(t)
	tr := newTransport(t, "svc")
	for i := range 3 {
		send(t, tr, addr, client.Message{CorrelationID: fmt.Sprintf("early-%d", i)})
	}
	ch := make(chan got, 10)
	receive(t, newTransport(t, "svc"), addr, collect(ch, "late"))
	ids := map[string]bool{}
	for range 3 {
		ids[next(t, ch).m.CorrelationID] = true
	}
	require.Equal(t, map[string]bool{"early-0": true, "early-1": true, "early-2": true}, ids)
}

// normalize makes the empty body and headers of a received message nil,
// the way they were sent: a broker cannot tell nil from empty.
func normalize(m client.Message) client.Message {
	if len(m.Body) == 0 {
		m.Body = nil
	}
	if len(m.Headers) == 0 {
		m.Headers = nil
	}
	return m
}
