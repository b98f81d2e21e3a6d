package rabbitmq_test

import (
	"fmt"
	"log/slog"
	"os"
	"testing"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

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
	code := runTests(m)
	if broker != nil {
		broker.stop()
	}
	os.Exit(code)
}

// runTests runs the tests, then looks for goroutines they left behind
// (the broker's own, started before, excepted). goleak.VerifyTestMain
// would exit before the broker is stopped.
func runTests(m *testing.M) int {
	ignore := goleak.IgnoreCurrent()
	code := m.Run()
	if code == 0 {
		// A restarted node's waiter is the broker's too.
		if err := goleak.Find(ignore, goleak.IgnoreAnyFunction("github.com/corrstore/corrstore/internal/testenv.StartProcess.func1")); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			return 1
		}
	}
	return code
}

// needBroker skips (fails under CI=true) when the broker did not start.
func needBroker(t *testing.T) string {
	t.Helper()
	if brokerErr != nil {
		if brokerErr == errNoRabbit {
			testenv.SkipOrFail(t, brokerErr.Error())
		}
		t.Fatalf("rabbitmq-server: %v", brokerErr)
	}
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
