package transporttest

import (
	"context"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/corrstore/corrstore/client"
)

// Two replicas of a service receive one address: each message is handled
// by exactly one of them, none is lost, and both take part.
func testCompetingConsumers(t *testing.T, newTransport NewTransport) {
	addr := address(t)
	ch := make(chan got, 200)
	a, b := newTransport(t, "svc"), newTransport(t, "svc")
	// Each replica holds its first message until the other has taken one,
	// so that neither can take everything.
	first := map[string]chan struct{}{"a": make(chan struct{}), "b": make(chan struct{})}
	hold := func(who, other string) func(ctx context.Context, m client.Message) error {
		seen := false
		return func(ctx context.Context, m client.Message) error {
			if !seen {
				seen = true
				close(first[who])
				select {
				case <-first[other]:
				case <-ctx.Done():
					return ctx.Err()
				}
			}
			return collect(ch, who)(ctx, m)
		}
	}
	stopA := receive(t, a, addr, hold("a", "b"))
	stopB := receive(t, b, addr, hold("b", "a"))

	const n = 100
	sender := newTransport(t, "sender")
	for i := range n {
		send(t, sender, addr, client.Message{CorrelationID: fmt.Sprintf("c-%d", i)})
	}
	count := map[string]int{}
	by := map[string]int{}
	for range n {
		g := next(t, ch)
		count[g.m.CorrelationID]++
		by[g.who]++
	}
	stopA()
	stopB()
	require.Len(t, count, n, "every message handled")
	for id, c := range count {
		require.Equal(t, 1, c, "%s handled %d times", id, c)
	}
	require.Positive(t, by["a"], "replica a took none")
	require.Positive(t, by["b"], "replica b took none")
	select {
	case g := <-ch:
		t.Fatalf("%s handled again by %s after every message was acknowledged", g.m.CorrelationID, g.who)
	default:
	}
}
