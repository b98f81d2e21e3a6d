package rabbitmq_test

import (
	"log/slog"
	"os"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/corrstore/corrstore/client"
	"github.com/corrstore/corrstore/client/rabbitmq"
	"github.com/corrstore/corrstore/client/transporttest"
	"github.com/corrstore/corrstore/internal/testenv"
	"github.com/corrstore/corrstore/store"
)

// broker is the package's rabbitmq-server; nil with brokerErr when it
// could not start.
var (
	broker    *rabbitServer
	brokerErr error
)

func TestMain(m *testing.M) {
	broker, brokerErr = startRabbit()
	code := testenv.RunLeakChecked(m)
	if broker != nil {
		broker.stop()
	}
	os.Exit(code)
}

// needBroker skips (fails under CI=true) when the server is not installed, and
// fails when it did not start.
func needBroker(t *testing.T) string {
	t.Helper()
	testenv.NeedServer(t, brokerErr, errNoRabbit)
	return broker.url()
}

func quiet() *slog.Logger { return slog.New(slog.DiscardHandler) }

func newTransport(t *testing.T, url string) *rabbitmq.Transport {
	t.Helper()
	tr, err := rabbitmq.New(rabbitmq.Config{URL: url, Logger: testLogger()})
	require.NoError(t, err)
	t.Cleanup(func() { tr.Close() })
	return tr
}

func TestConformance(t *testing.T) {
	url := needBroker(t)
	transporttest.Run(t, func(t *testing.T, group string) client.Transport {
		return newTransport(t, url)
	})
}

func TestConfig(t *testing.T) {
	for _, cfg := range []rabbitmq.Config{
		{},
		{URL: "http://127.0.0.1/"},
		{URL: "amqp://127.0.0.1/", Prefetch: -1},
		{URL: "amqp://127.0.0.1/", ReconnectMin: 2, ReconnectMax: 1},
	} {
		_, err := rabbitmq.New(cfg)
		require.ErrorIs(t, err, store.ErrInvalid, "%+v", cfg)
	}
}

func testLogger() *slog.Logger {
	if os.Getenv("RABBIT_DEBUG") != "" {
		return slog.Default()
	}
	return quiet()
}
