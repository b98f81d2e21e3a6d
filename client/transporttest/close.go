package transporttest

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/corrstore/corrstore/client"
)

func quietLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// timeout is the suite's safety net for a wait.
func timeout() <-chan time.Time { return time.After(Wait) }

// Send with an ended context fails and sends nothing; Receive returns nil
// soon after its context ends, whether idle or inside a handler that
// honours the context, and a message that handler did not finish comes
// again.
func testCancellation(t *testing.T, newTransport NewTransport) {
	addr := address(t)
	tr := newTransport(t, "svc")
	ended, cancel := context.WithCancel(context.Background())
	cancel()
	require.Error(t, tr.Send(ended, addr, client.Message{CorrelationID: "never"}), "Send with an ended context")

	// Idle: nothing to receive.
	stop := receive(t, tr, address(t), collect(make(chan got), "idle"))
	stop()

	// Inside a handler.
	send(t, tr, addr, client.Message{CorrelationID: "c-1"})
	entered := make(chan string, 1)
	stop = receive(t, tr, addr, func(ctx context.Context, m client.Message) error {
		entered <- m.CorrelationID
		<-ctx.Done()
		return ctx.Err()
	})
	select {
	case id := <-entered:
		require.Equal(t, "c-1", id, "the message sent with an ended context arrived")
	case <-timeout():
		t.Fatalf("no message within %s", Wait)
	}
	stop()

	ch := make(chan got, 10)
	receive(t, newTransport(t, "svc"), addr, collect(ch, "r"))
	require.Equal(t, "c-1", next(t, ch).m.CorrelationID)
}

// A transport that is an io.Closer: Close ends its receivers (Receive
// returns nil), later sends fail, and a second Close does no harm.
func testClose(t *testing.T, newTransport NewTransport) {
	tr := newTransport(t, "svc")
	closer, ok := tr.(io.Closer)
	if !ok {
		t.Skip("the transport has no Close")
	}
	addr := address(t)
	done := make(chan error, 1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	started := make(chan struct{})
	go func() {
		close(started)
		done <- tr.Receive(ctx, addr, func(context.Context, client.Message) error { return nil })
	}()
	<-started
	require.NoError(t, closer.Close())
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-timeout():
		t.Fatalf("Receive did not return within %s of Close", Wait)
	}
	require.Error(t, tr.Send(context.Background(), addr, client.Message{CorrelationID: "late"}), "Send after Close")
	require.NoError(t, closer.Close(), "a second Close")
}
