package redisstream_test

import (
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/corrstore/corrstore/client"
	"github.com/corrstore/corrstore/client/redisstream"
	"github.com/corrstore/corrstore/client/transporttest"
)

// The transport suite on one miniredis. Entries idle for a second are taken
// over: long enough that no handler of the suite is overtaken (the
// competing-consumers test counts duplicates), short enough to test the
// redelivery of a dead receiver's entry quickly.
func TestConformance(t *testing.T) {
	mr := miniredis.RunT(t)
	transporttest.Run(t, func(t *testing.T, group string) client.Transport {
		rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
		t.Cleanup(func() { rdb.Close() })
		tr, err := redisstream.New(rdb, redisstream.Config{Group: group, Block: 20 * time.Millisecond,
			ClaimIdle: time.Second, ClaimInterval: 50 * time.Millisecond, Logger: quiet()})
		require.NoError(t, err)
		return tr
	})
}
