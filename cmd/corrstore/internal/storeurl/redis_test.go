package storeurl

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/corrstore/corrstore/store"
)

func quiet() *slog.Logger { return slog.New(slog.DiscardHandler) }

// TestOpenRedis opens a redis:// URL on miniredis with corrstore's own
// options, uses the store, and checks that Close closes the client too.
func TestOpenRedis(t *testing.T) {
	mr := miniredis.RunT(t)
	ctx := context.Background()
	st, err := Open(ctx, fmt.Sprintf("redis://%s/0?prefix=t1&shards=4", mr.Addr()), Options{Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Register(ctx, &store.Correlation{ID: "a", Timeout: time.Minute}); err != nil {
		t.Fatalf("register: %v", err)
	}
	if keys := mr.Keys(); !strings.Contains(strings.Join(keys, " "), "{t1:") {
		t.Errorf("keys %v: want the prefix t1 in their hash tag", keys)
	}
	o, ok := st.(*ownedRedis)
	if !ok {
		t.Fatalf("Open returned %T, want *ownedRedis", st)
	}
	if err := st.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	if _, err := st.Get(ctx, store.RefOf("a")); !errors.Is(err, store.ErrClosed) {
		t.Errorf("Get after Close: %v, want ErrClosed", err)
	}
	if err := o.rdb.Ping(ctx).Err(); !errors.Is(err, redis.ErrClosed) {
		t.Errorf("client after Close: %v, want redis.ErrClosed (Close must close the client it made)", err)
	}
}

// TestOpenRedisRefuses: each bad URL fails before anything is written,
// with an error naming the option, and never shows the password.
func TestOpenRedisRefuses(t *testing.T) {
	mr := miniredis.RunT(t)
	addr := mr.Addr()
	for _, tc := range []struct{ url, want string }{
		{"redis://" + addr + "/0?shards=many", `shards: want a number, got "many"`},
		{"redis://" + addr + "/0?strict=perhaps", `strict: want true or false, got "perhaps"`},
		{"redis://" + addr + "/0?shards=-1", "shards: must be 1 to 1024, got -1"},
		// miniredis does not answer CONFIG GET: strict mode cannot check
		// appendonly and friends, and refuses.
		{"redis://" + addr + "/0?strict=true", "strict"},
		{"redis+cluster://" + addr + "/3", "a cluster has no database number"},
		{"redis+cluster://" + addr + "?colour=red", `unknown option "colour"`},
		{"redis://:s3cret@127.0.0.1:1/0", "cannot reach Redis"},
	} {
		t.Run(tc.url, func(t *testing.T) {
			st, err := Open(context.Background(), tc.url, Options{Logger: quiet()})
			if err == nil {
				st.Close()
				t.Fatalf("opened; want an error containing %q", tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q: want it to contain %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "s3cret") {
				t.Errorf("error %q shows the password", err)
			}
		})
	}
	if keys := mr.Keys(); len(keys) != 0 {
		t.Errorf("refused opens wrote %v", keys)
	}
}
