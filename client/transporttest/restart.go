package transporttest

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/corrstore/corrstore/client"
)

// BrokerRestart checks a transport across a restart of its broker, which
// restart performs (SIGKILL, then start again on the same data): Send and
// Receive carry on by themselves, and a message the broker accepted before
// the kill is delivered after it. It is not part of Run: only a test that
// owns its broker can restart it.
func BrokerRestart(t *testing.T, tr client.Transport, restart func(t *testing.T)) {
	live, kept := address(t), address(t)
	ch := make(chan got, 10)
	receive(t, tr, live, collect(ch, "live"))
	send(t, tr, live, client.Message{CorrelationID: "before"})
	require.Equal(t, "before", next(t, ch).m.CorrelationID)
	send(t, tr, kept, client.Message{CorrelationID: "accepted"})

	restart(t)

	ctx, cancel := context.WithTimeout(context.Background(), Wait)
	defer cancel()
	var err error
	for ctx.Err() == nil { // until the transport is connected again
		if err = tr.Send(ctx, live, client.Message{CorrelationID: "after"}); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond) // polling under ctx's deadline
	}
	require.NoError(t, err, "Send after the restart")
	// "before" may come again: its ack may not have reached the broker
	// before the kill (at least once; the store dedupes replies).
	for id := next(t, ch).m.CorrelationID; id != "after"; id = next(t, ch).m.CorrelationID {
		require.Equal(t, "before", id)
	}
	receive(t, tr, kept, collect(ch, "kept"))
	require.Equal(t, "accepted", next(t, ch).m.CorrelationID)
}
