package natsjs_test

import (
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/corrstore/corrstore/client"
	"github.com/corrstore/corrstore/client/natsjs"
	"github.com/corrstore/corrstore/client/transporttest"
	"github.com/corrstore/corrstore/internal/testenv"
	"github.com/corrstore/corrstore/store"
)

var (
	server    *natsServer
	serverErr error
)

func TestMain(m *testing.M) {
	server, serverErr = startNATS()
	code := testenv.RunLeakChecked(m)
	if server != nil {
		server.stop()
	}
	os.Exit(code)
}

// needServer skips (fails under CI=true) when the server is not installed, and
// fails when it did not start.
func needServer(t *testing.T) string {
	t.Helper()
	testenv.NeedServer(t, serverErr, errNoNATS)
	return server.url()
}

func quiet() *slog.Logger { return slog.New(slog.DiscardHandler) }

// newTransport makes a transport whose unacknowledged messages come again
// after a second (the suite kills a receiver inside its handler).
func newTransport(t *testing.T, url string) *natsjs.Transport {
	t.Helper()
	tr, err := natsjs.New(natsjs.Config{URL: url, AckWait: time.Second, Block: 100 * time.Millisecond, Logger: quiet()})
	require.NoError(t, err)
	t.Cleanup(func() { tr.Close() })
	return tr
}

func TestConformance(t *testing.T) {
	url := needServer(t)
	transporttest.Run(t, func(t *testing.T, group string) client.Transport {
		return newTransport(t, url)
	})
}

func TestConfig(t *testing.T) {
	for _, cfg := range []natsjs.Config{
		{},
		{URL: "nats://127.0.0.1:1", Prefix: "no-dot"},
		{URL: "nats://127.0.0.1:1", Prefetch: -1},
		{URL: "nats://127.0.0.1:1", DeadLetter: "a.>"},
	} {
		_, err := natsjs.New(cfg)
		require.ErrorIs(t, err, store.ErrInvalid, "%+v", cfg)
	}
}
