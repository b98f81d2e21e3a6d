// Package transporttest is the conformance suite of client.Transport: it
// decides what a correct transport does. A transport's tests call Run with
// a constructor:
//
//	func TestConformance(t *testing.T) {
//		transporttest.Run(t, func(t *testing.T, group string) client.Transport {
//			tr, err := rabbitmq.Dial(url, rabbitmq.Config{Group: group})
//			require.NoError(t, err)
//			t.Cleanup(func() { tr.Close() })
//			return tr
//		})
//	}
//
// The suite is split one file per area: send and receive, competing
// consumers, redelivery, poison replies (unknown correlation, refused by
// the store), headers, large bodies, close and cancellation. Every test
// checks that it leaves no goroutine behind once its transports are
// closed. Each test uses addresses of its own, so one broker serves the
// whole suite.
package transporttest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/corrstore/corrstore/client"
	"github.com/corrstore/corrstore/store"
)

// NewTransport returns a transport for one test, closed at its cleanup
// (t.Cleanup). Transports made with the same group are replicas of one
// service: they share the messages of an address. A transport without
// groups ignores group.
type NewTransport func(t *testing.T, group string) client.Transport

// MaxBody is the largest body the suite sends: the store's default bound
// of a reply body, which every transport must carry.
var MaxBody = store.Limits{}.WithDefaults().MaxBodyBytes

// Wait bounds how long the suite waits for a message: a safety net, not a
// sleep; waits end as soon as the message comes. Redelivery of a message
// whose receiver died takes what the transport's own timeouts say (a
// Redis Streams claim, a JetStream ack wait), so make those short in tests.
var Wait = time.Minute

// Run runs the suite.
func Run(t *testing.T, newTransport NewTransport) {
	for _, tc := range []struct {
		name string
		fn   func(*testing.T, NewTransport)
	}{
		{"SendReceive", testSendReceive},
		{"SentBeforeReceiver", testSentBeforeReceiver},
		{"CompetingConsumers", testCompetingConsumers},
		{"RedeliveredAfterFailure", testRedeliveredAfterFailure},
		{"RedeliveredAfterReceiverDied", testRedeliveredAfterReceiverDied},
		{"PoisonRepliesAcknowledged", testPoisonReplies},
		{"Headers", testHeaders},
		{"LargeBody", testLargeBody},
		{"Cancellation", testCancellation},
		{"Close", testClose},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Registered first, so it runs last: after the transports'
			// own cleanups closed them.
			ignore := goleak.IgnoreCurrent()
			t.Cleanup(func() { goleak.VerifyNone(t, ignore) })
			tc.fn(t, newTransport)
		})
	}
}

// address returns an address of the test's own, made of the characters
// every broker takes in a queue or subject name.
func address(t *testing.T) string {
	var b strings.Builder
	for _, r := range strings.ToLower(t.Name()) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			b.WriteRune(r)
		} else {
			b.WriteByte('-')
		}
	}
	return fmt.Sprintf("tt-%s-%04x", b.String(), rand.N(1<<16))
}

// receive runs tr.Receive on addr until the test ends or stop is called,
// passing each message to fn. stop returns once Receive has returned, and
// fails the test if that takes longer than Wait or Receive failed.
func receive(t *testing.T, tr client.Transport, addr string, fn func(context.Context, client.Message) error) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- tr.Receive(ctx, addr, fn) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				require.NoError(t, err, "Receive after its context ended")
			case <-time.After(Wait):
				t.Fatalf("Receive did not return within %s of its context's end", Wait)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

type got struct {
	who string
	m   client.Message
}

// collect passes each message to ch, naming the receiver, and acknowledges it.
func collect(ch chan<- got, who string) func(context.Context, client.Message) error {
	return func(_ context.Context, m client.Message) error {
		ch <- got{who, m}
		return nil
	}
}

func next(t *testing.T, ch <-chan got) got {
	t.Helper()
	select {
	case g := <-ch:
		return g
	case <-time.After(Wait):
		t.Fatalf("no message within %s", Wait)
		return got{}
	}
}

func send(t *testing.T, tr client.Transport, addr string, m client.Message) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), Wait)
	defer cancel()
	require.NoError(t, tr.Send(ctx, addr, m), "Send to %s", addr)
}
