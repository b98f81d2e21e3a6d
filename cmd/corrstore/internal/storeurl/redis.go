package storeurl

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/corrstore/corrstore/redisstore"
	"github.com/corrstore/corrstore/store"
)

// ownedRedis is a Redis store that owns its client: Close closes both.
type ownedRedis struct {
	*redisstore.Store
	rdb redis.UniversalClient
}

func (o *ownedRedis) Close() error {
	err := o.Store.Close()
	if cerr := o.rdb.Close(); err == nil {
		err = cerr
	}
	return err
}

// Redis is what a Redis --store URL names: a client that answered a PING,
// and corrstore's own options from the query.
type Redis struct {
	Client redis.UniversalClient
	Prefix string
	Shards int
	Strict bool
}

// DialRedis reads redis://, rediss:// (one server) or redis+cluster://
// (a Redis Cluster) and connects. corrstore's own options ride in the query:
// prefix=P, shards=N, strict=true; the rest is go-redis's (redis.ParseURL).
// It opens no store, so `corrstore upgrade` can use it on an old schema.
// The caller closes Client.
func DialRedis(ctx context.Context, raw string, logger *slog.Logger) (Redis, error) {
	return dialRedis(ctx, raw, logger, false)
}

func dialRedis(ctx context.Context, raw string, logger *slog.Logger, ctxTimeouts bool) (Redis, error) {
	shown := Redact(raw)
	var r Redis
	u, err := url.Parse(raw)
	if err != nil {
		return r, fmt.Errorf("--store %s: %v", shown, err)
	}
	q := u.Query()
	r.Prefix = q.Get("prefix")
	if v := q.Get("shards"); v != "" {
		if r.Shards, err = strconv.Atoi(v); err != nil {
			return r, fmt.Errorf("--store %s: shards: want a number, got %q", shown, v)
		}
	}
	if v := q.Get("strict"); v != "" {
		if r.Strict, err = strconv.ParseBool(v); err != nil {
			return r, fmt.Errorf("--store %s: strict: want true or false, got %q", shown, v)
		}
	}
	q.Del("prefix")
	q.Del("shards")
	q.Del("strict")
	u.RawQuery = q.Encode()

	var addrs []string
	if u.Scheme == "redis+cluster" {
		if u.Path != "" && u.Path != "/" {
			return r, fmt.Errorf("--store %s: a cluster has no database number (drop %q)", shown, u.Path)
		}
		if len(q) > 0 {
			return r, fmt.Errorf("--store %s: unknown option %q (prefix, shards, strict)", shown, firstKey(q))
		}
		addrs = strings.Split(u.Host, ",")
		co := &redis.ClusterOptions{Addrs: addrs, ContextTimeoutEnabled: ctxTimeouts}
		if u.User != nil {
			co.Username = u.User.Username()
			co.Password, _ = u.User.Password()
		}
		r.Client = redis.NewClusterClient(co)
	} else {
		ro, err := redis.ParseURL(u.String())
		if err != nil {
			return r, fmt.Errorf("--store %s: %v", shown, err)
		}
		addrs = []string{ro.Addr}
		ro.ContextTimeoutEnabled = ctxTimeouts
		r.Client = redis.NewClient(ro)
	}
	routeRedisLog(logger)
	if err := reachable(ctx, addrs); err != nil {
		r.Client.Close()
		return Redis{}, fmt.Errorf("--store %s: cannot reach Redis: %v", shown, err)
	}
	if err := r.Client.Ping(ctx).Err(); err != nil {
		r.Client.Close()
		return Redis{}, fmt.Errorf("--store %s: cannot reach Redis: %v", shown, err)
	}
	return r, nil
}

// openRedis opens the store a Redis URL names (see DialRedis).
func openRedis(ctx context.Context, raw string, o Options) (store.Store, error) {
	r, err := dialRedis(ctx, raw, o.Logger, o.ContextTimeouts)
	if err != nil {
		return nil, err
	}
	cfg := redisstore.Config{Prefix: r.Prefix, Shards: r.Shards, Strict: r.Strict, Clock: o.Clock, Logger: o.Logger, Limits: o.Limits}
	st, err := redisstore.New(ctx, r.Client, cfg)
	if err != nil {
		r.Client.Close()
		return nil, fmt.Errorf("--store %s: %w", Redact(raw), err)
	}
	return &ownedRedis{Store: st, rdb: r.Client}, nil
}

// reachable dials the addresses once each, so that a server that is not
// there fails at once with the dial's own error, rather than after
// go-redis's retries (about 25 s).
func reachable(ctx context.Context, addrs []string) error {
	var errs []error
	for _, a := range addrs {
		d := net.Dialer{Timeout: 5 * time.Second}
		conn, err := d.DialContext(ctx, "tcp", a)
		if err == nil {
			return conn.Close()
		}
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

var redisLogOnce sync.Once

// routeRedisLog sends go-redis's own log lines (dial failures of its pool,
// which it otherwise prints to stderr) to the logger at debug level: the
// store's errors say what failed, once, in corrstore's words.
func routeRedisLog(l *slog.Logger) {
	if l == nil {
		l = slog.Default()
	}
	redisLogOnce.Do(func() { redis.SetLogger(redisLog{l.With("component", "go-redis")}) })
}

type redisLog struct{ l *slog.Logger }

func (r redisLog) Printf(ctx context.Context, format string, v ...any) {
	r.l.DebugContext(ctx, fmt.Sprintf(format, v...))
}

func firstKey(q url.Values) string {
	for k := range q {
		return k
	}
	return ""
}
