package client_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/corrstore/corrstore/bolt"
	"github.com/corrstore/corrstore/client"
	"github.com/corrstore/corrstore/client/memtransport"
	"github.com/corrstore/corrstore/client/redisstream"
	"github.com/corrstore/corrstore/client/transporttest"
	"github.com/corrstore/corrstore/redisstore"
	"github.com/corrstore/corrstore/redisstore/redistest"
)

// BenchmarkRoundTrip measures request→reply round trips with 64
// concurrent requesters: through the client on bbolt (fsync on, the real
// thing), and, in the same run, the same round trip through the same
// transport with an in-memory map of pending requests — what a
// hand-written client or Watermill's requestreply does. The ratio is the
// price of durability.
func BenchmarkRoundTrip(b *testing.B) {
	b.Run("client+bolt", func(b *testing.B) {
		st, err := bolt.Open(bolt.Options{Path: filepath.Join(b.TempDir(), "bench.db"), Logger: quiet(), NoSync: benchNoSync})
		if err != nil {
			b.Fatal(err)
		}
		defer st.Close()
		transporttest.BenchClient(b, st, memtransport.New())
	})
	b.Run("baseline-inmemory", func(b *testing.B) {
		transporttest.BenchBaseline(b, memtransport.New())
	})
	// The same on Redis: redisstore and the redisstream transport on a
	// real redis-server (appendonly, appendfsync always, data on disk) of
	// its own, next to the in-memory map through the same transport.
	// Skipped with a message when redis-server is not installed.
	pool := func(o *redis.Options) { o.PoolSize = 4 * transporttest.Requesters }
	b.Run("client+redis", func(b *testing.B) {
		srv := redistest.StartServer(b, redistest.ServerOptions{})
		st, err := redisstore.New(context.Background(), srv.NewClient(b, pool), redisstore.Config{Strict: true, Logger: quiet()})
		if err != nil {
			b.Fatal(err)
		}
		defer st.Close()
		transporttest.BenchClient(b, st, streams(b, srv, pool))
	})
	b.Run("baseline-redisstream", func(b *testing.B) {
		srv := redistest.StartServer(b, redistest.ServerOptions{})
		transporttest.BenchBaseline(b, streams(b, srv, pool))
	})
}

// streams is a redisstream transport on srv.
func streams(b *testing.B, srv *redistest.Server, tweak func(*redis.Options)) client.Transport {
	tr, err := redisstream.New(srv.NewClient(b, tweak), redisstream.Config{Block: 100 * time.Millisecond})
	if err != nil {
		b.Fatal(err)
	}
	return tr
}

// benchNoSync turns fsync off (CORRSTORE_BENCH_NOSYNC=1) to tell the
// disk's share of the cost from the client's.
var benchNoSync = os.Getenv("CORRSTORE_BENCH_NOSYNC") != ""
