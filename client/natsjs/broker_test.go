package natsjs_test

import (
	"context"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/corrstore/corrstore/bolt"
	"github.com/corrstore/corrstore/client"
	"github.com/corrstore/corrstore/client/natsjs"
	"github.com/corrstore/corrstore/client/transporttest"
	"github.com/corrstore/corrstore/internal/testenv"
	"github.com/corrstore/corrstore/store"
)

const wait = time.Minute

func run(t *testing.T, fn func(ctx context.Context)) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { fn(ctx) })
	t.Cleanup(func() { cancel(); wg.Wait() })
}

// The client end to end: a Serve responder and a requester on JetStream.
// A reply the store refuses for good is terminated, counted and copied to
// the dead-letter subject with its reason.
func TestClientAndPoison(t *testing.T) {
	url := needServer(t)
	st, err := bolt.Open(bolt.Options{Path: filepath.Join(t.TempDir(), "c.db"), NoSync: true,
		Limits: store.Limits{MaxBodyBytes: 64}, Logger: quiet()})
	require.NoError(t, err)
	t.Cleanup(func() { st.Close() })
	tr, err := natsjs.New(natsjs.Config{URL: url, DeadLetter: "dead.client-and-poison", Logger: quiet()})
	require.NoError(t, err)
	t.Cleanup(func() { tr.Close() })
	c, err := client.New(client.Config{Store: st, Transport: tr, Service: "js-orders", Logger: quiet()})
	require.NoError(t, err)
	run(t, func(ctx context.Context) { _ = c.Run(ctx) })
	run(t, func(ctx context.Context) {
		_ = c.Serve(ctx, "js-payments", func(_ context.Context, in client.Incoming) ([]byte, error) {
			return append([]byte("paid "), in.Body...), nil
		})
	})
	r, err := c.Request(t.Context(), "js-payments", []byte("order-42"), client.Options{Timeout: 30 * time.Second})
	require.NoError(t, err)
	require.Equal(t, "paid order-42", string(r.Body))

	id, err := c.Send(t.Context(), "js-nowhere", nil, client.Options{Timeout: time.Hour})
	require.NoError(t, err)
	big := make([]byte, 65)
	require.NoError(t, newTransport(t, url).Send(t.Context(), c.Config().ReplyTo, client.Message{CorrelationID: id, ID: "r-1", Body: big}))

	nc, err := nats.Connect(url)
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(t.Context(), wait)
	defer cancel()
	cons, err := js.CreateOrUpdateConsumer(ctx, natsjs.DefaultStream, jetstream.ConsumerConfig{
		Durable: "dead-reader", FilterSubject: tr.Subject("dead.client-and-poison"), AckPolicy: jetstream.AckExplicitPolicy})
	require.NoError(t, err)
	msg, err := cons.Next(jetstream.FetchContext(ctx))
	require.NoError(t, err)
	require.Equal(t, id, msg.Headers().Get(natsjs.HeaderCorrelationID))
	require.Contains(t, msg.Headers().Get("Corrstore-Dead-Reason"), "too large")
	require.NoError(t, msg.Ack())
	require.EqualValues(t, 1, tr.Poisoned())
}

// After the broker is SIGKILLed and restarted, the transport carries on
// and a message it confirmed before the kill is delivered after it.
func TestServerRestart(t *testing.T) {
	url := needServer(t)
	transporttest.BrokerRestart(t, newTransport(t, url), func(t *testing.T) {
		server.kill()
		require.NoError(t, server.start())
	})
}

// BenchmarkRoundTrip: the client on bbolt (fsync on) through JetStream,
// next to an in-memory map of pending requests through the same server.
func BenchmarkRoundTrip(b *testing.B) {
	testenv.NeedServer(b, serverErr, errNoNATS)
	newTr := func(b *testing.B) *natsjs.Transport {
		tr, err := natsjs.New(natsjs.Config{URL: server.url(), Logger: quiet()})
		require.NoError(b, err)
		b.Cleanup(func() { tr.Close() })
		return tr
	}
	transporttest.BenchRoundTrip(b, func(b *testing.B) client.Transport { return newTr(b) })
}
