// Package storeurl opens the store a --store URL names, for corrstore serve
// and the operator commands:
//
//	bolt://PATH                      a bbolt file (bolt:///var/lib/c.db absolute, bolt://./c.db relative)
//	redis://[:PASSWORD@]HOST:PORT/DB?prefix=P&shards=N   one Redis server
//	redis+cluster://H1:P1,H2:P2,…?prefix=P&shards=N       a Redis Cluster
package storeurl

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/corrstore/corrstore/bolt"
	"github.com/corrstore/corrstore/store"
)

// Options are what every backend takes.
type Options struct {
	Clock  store.Clock
	Logger *slog.Logger
	Limits store.Limits
	// NoSync opens bolt without fsync (tests only).
	NoSync bool
	// LockTimeout bounds the wait for a bolt file's lock. Default 5s.
	LockTimeout time.Duration
	// ReadOnly: the caller only reads. A bolt file another process holds is
	// then read from a checked copy (bolt.OpenSnapshot) instead of failing.
	ReadOnly bool
	// ContextTimeouts: on Redis, a call's context deadline bounds its reads
	// and writes (go-redis's ContextTimeoutEnabled; without it a read waits
	// for go-redis's own 3s read timeout, and retries). The operator
	// commands set it, so that --timeout is kept on a server that accepts
	// and does not answer.
	ContextTimeouts bool
}

// ErrHeld says a bolt file is held by another process and the caller wanted
// to write to it.
var ErrHeld = errors.New("the file is held by another process (a running corrstore serve?): writes need the server, use --server URL")

// Open opens the store raw names.
func Open(ctx context.Context, raw string, o Options) (store.Store, error) {
	scheme, rest, ok := strings.Cut(raw, "://")
	if !ok {
		return nil, fmt.Errorf("--store %q: want bolt://PATH, redis://HOST:PORT/DB or redis+cluster://H1:P1,H2:P2", raw)
	}
	switch scheme {
	case "bolt":
		return openBolt(ctx, raw, rest, o)
	case "redis", "rediss", "redis+cluster":
		return openRedis(ctx, raw, o)
	default:
		return nil, fmt.Errorf("--store %q: scheme %q is not supported (bolt://, redis://, redis+cluster://)", raw, scheme)
	}
}

// Redact hides a password in a store URL, for logs.
func Redact(raw string) string {
	scheme, rest, ok := strings.Cut(raw, "://")
	if !ok {
		return raw
	}
	if at := strings.LastIndex(rest, "@"); at >= 0 && !strings.Contains(rest[:at], "/") {
		return scheme + "://xxxxx@" + rest[at+1:]
	}
	return raw
}

func openBolt(ctx context.Context, raw, path string, o Options) (store.Store, error) {
	if path == "" {
		return nil, fmt.Errorf("--store %q: no file path after bolt://", raw)
	}
	opts := bolt.Options{
		Path: path, Clock: o.Clock, Logger: o.Logger, Limits: o.Limits, NoSync: o.NoSync,
		LockTimeout: o.LockTimeout, ReadOnly: o.ReadOnly,
	}
	if !held(path) {
		st, err := bolt.Open(opts)
		if err == nil {
			return st, nil
		}
		if !errors.Is(err, bolterrors.ErrTimeout) {
			return nil, fmt.Errorf("--store %s: %w", raw, err)
		}
	}
	if !o.ReadOnly {
		return nil, fmt.Errorf("--store %s: %w", raw, ErrHeld)
	}
	snap, err := bolt.OpenSnapshot(ctx, opts)
	if err != nil {
		return nil, fmt.Errorf("--store %s: held by another process, and %w", raw, err)
	}
	return snap, nil
}
