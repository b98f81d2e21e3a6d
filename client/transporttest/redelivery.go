package transporttest

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/corrstore/corrstore/client"
)

// A message whose handler failed is delivered again.
func testRedeliveredAfterFailure(t *testing.T, newTransport NewTransport) {
	addr := address(t)
	tr := newTransport(t, "svc")
	send(t, tr, addr, client.Message{CorrelationID: "c-1", Body: []byte("again")})
	ch := make(chan got, 10)
	failed := false
	receive(t, tr, addr, func(ctx context.Context, m client.Message) error {
		if !failed {
			failed = true
			return errors.New("store unavailable")
		}
		return collect(ch, "r")(ctx, m)
	})
	g := next(t, ch)
	require.True(t, failed)
	require.Equal(t, "c-1", g.m.CorrelationID)
	require.Equal(t, "again", string(g.m.Body))
}

// A receiver that dies inside its handler, before the message was
// acknowledged, leaves the message to another replica of its service:
// a crash between receive and ack loses nothing.
func testRedeliveredAfterReceiverDied(t *testing.T, newTransport NewTransport) {
	addr := address(t)
	sender := newTransport(t, "sender")
	send(t, sender, addr, client.Message{CorrelationID: "c-1"})

	dying := newTransport(t, "svc")
	ctx, kill := context.WithCancel(context.Background())
	entered := make(chan struct{})
	done := make(chan error, 1)
	var once sync.Once
	go func() {
		done <- dying.Receive(ctx, addr, func(ctx context.Context, m client.Message) error {
			once.Do(func() { close(entered) })
			<-ctx.Done()
			return ctx.Err()
		})
	}()
	select {
	case <-entered:
	case <-timeout():
		t.Fatalf("the first receiver got nothing within %s", Wait)
	}
	kill()
	require.NoError(t, <-done)

	ch := make(chan got, 10)
	receive(t, newTransport(t, "svc"), addr, collect(ch, "survivor"))
	require.Equal(t, "c-1", next(t, ch).m.CorrelationID)
}
