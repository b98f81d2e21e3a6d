// Package redisstream is a client.Transport on Redis Streams.
//
// A message for address A is an entry of the stream Prefix+A. Receivers
// read with a consumer group, one group per service (Config.Group): the
// replicas of a service share the group, so each message goes to one of
// them, and another service reading the same stream has its own group and
// gets every message. An entry is acknowledged (XACK) once its handler
// returned nil. An entry whose receiver died, or whose handler failed,
// stays pending in the group; after ClaimIdle a receiver of the group
// takes it over (XAUTOCLAIM) and handles it again.
//
// Keys: one stream per address, so on Redis Cluster each address lives on
// one slot; a stream is capped at about MaxLen entries (XADD MAXLEN ~).
package redisstream

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/corrstore/corrstore/client"
	"github.com/corrstore/corrstore/store"
)

// Defaults of Config.
const (
	DefaultPrefix        = "corrstore:stream:"
	DefaultGroup         = "corrstore"
	DefaultBlock         = time.Second
	DefaultBatch         = 16
	DefaultClaimIdle     = 30 * time.Second
	DefaultClaimInterval = 5 * time.Second
	DefaultMaxLen        = 1_000_000
)

// Config configures a Transport. A zero field takes its default.
type Config struct {
	// Prefix of the stream keys. Default "corrstore:stream:".
	Prefix string
	// Group is the consumer group: name it after the service, the same on
	// every replica. Default "corrstore".
	Group string
	// Consumer names this process in its groups; each Receive adds a
	// number. Default hostname-pid-random.
	Consumer string
	// Block bounds one read's wait, and so how long Receive takes to
	// return after ctx ends. Default 1s.
	Block time.Duration
	// Batch is how many entries one read takes. Default 16.
	Batch int
	// ClaimIdle is how long an entry delivered and not acknowledged waits
	// before another receiver takes it over: its receiver died or its
	// handler failed. Make it longer than the slowest handler. Default 30s.
	ClaimIdle time.Duration
	// ClaimInterval is how often a receiver looks for such entries.
	// Default 5s.
	ClaimInterval time.Duration
	// MaxLen caps each stream at about this many entries. Default
	// 1,000,000; negative: no cap.
	MaxLen int64
	// Logger receives what goes wrong, with "component"="redisstream".
	// Default slog.Default().
	Logger *slog.Logger
}

// Transport is a client.Transport on Redis Streams.
type Transport struct {
	rdb redis.UniversalClient
	cfg Config
	log *slog.Logger
	n   atomic.Int64
}

var _ client.Transport = (*Transport)(nil)

// New returns a Transport on rdb (standalone, Sentinel or Cluster).
func New(rdb redis.UniversalClient, cfg Config) (*Transport, error) {
	if rdb == nil {
		return nil, fmt.Errorf("%w: redis client: must not be nil", store.ErrInvalid)
	}
	cfg.Prefix = cmp.Or(cfg.Prefix, DefaultPrefix)
	cfg.Group = cmp.Or(cfg.Group, DefaultGroup)
	if cfg.Consumer == "" {
		host, _ := os.Hostname()
		cfg.Consumer = fmt.Sprintf("%s-%d-%04x", cmp.Or(host, "host"), os.Getpid(), rand.N(1<<16))
	}
	cfg.Block = cmp.Or(cfg.Block, DefaultBlock)
	cfg.Batch = cmp.Or(cfg.Batch, DefaultBatch)
	cfg.ClaimIdle = cmp.Or(cfg.ClaimIdle, DefaultClaimIdle)
	cfg.ClaimInterval = cmp.Or(cfg.ClaimInterval, DefaultClaimInterval)
	cfg.MaxLen = cmp.Or(cfg.MaxLen, DefaultMaxLen)
	cfg.Logger = cmp.Or(cfg.Logger, slog.Default())
	switch {
	case cfg.Block < time.Millisecond:
		return nil, fmt.Errorf("%w: block: must be at least 1ms, got %s", store.ErrInvalid, cfg.Block)
	case cfg.Batch < 1:
		return nil, fmt.Errorf("%w: batch: must be at least 1, got %d", store.ErrInvalid, cfg.Batch)
	case cfg.ClaimIdle < time.Millisecond, cfg.ClaimInterval <= 0:
		return nil, fmt.Errorf("%w: claim_idle and claim_interval must be positive (claim_idle at least 1ms)", store.ErrInvalid)
	}
	return &Transport{rdb: rdb, cfg: cfg, log: cfg.Logger.With("component", "redisstream", "group", cfg.Group)}, nil
}

// Key returns the stream key of an address.
func (t *Transport) Key(address string) string { return t.cfg.Prefix + address }

// Send appends m to the address's stream.
func (t *Transport) Send(ctx context.Context, address string, m client.Message) error {
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	args := &redis.XAddArgs{Stream: t.Key(address), Values: []any{"m", b}}
	if t.cfg.MaxLen > 0 {
		args.MaxLen, args.Approx = t.cfg.MaxLen, true
	}
	if err := t.rdb.XAdd(ctx, args).Err(); err != nil {
		return fmt.Errorf("redisstream: XADD %s: %w", args.Stream, err)
	}
	return nil
}

// Receive reads the address's stream in the Transport's group until ctx
// ends, then returns nil (within Block). It first takes over the entries
// left pending by dead receivers, and again every ClaimInterval. Redis
// errors are logged and retried with backoff.
func (t *Transport) Receive(ctx context.Context, address string, handle func(context.Context, client.Message) error) error {
	r := &receiver{t: t, key: t.Key(address), consumer: fmt.Sprintf("%s/%d", t.cfg.Consumer, t.n.Add(1)), handle: handle}
	r.log = t.log.With("stream", r.key, "consumer", r.consumer)
	wait := 50 * time.Millisecond
	var lastClaim time.Time
	for ctx.Err() == nil {
		err := r.ensureGroup(ctx)
		if err == nil && time.Since(lastClaim) >= t.cfg.ClaimInterval {
			err = r.claim(ctx)
			if err == nil {
				lastClaim = time.Now()
			}
		}
		if err == nil {
			err = r.read(ctx)
		}
		if err == nil {
			wait = 50 * time.Millisecond
			continue
		}
		if ctx.Err() != nil {
			break
		}
		if isNoGroup(err) {
			r.grouped = false // the stream was deleted: make it again
		}
		r.log.Warn("reading the stream failed; retrying", "err", err, "in", wait)
		select {
		case <-ctx.Done():
		case <-time.After(wait):
		}
		wait = min(2*wait, 5*time.Second)
	}
	return nil
}

type receiver struct {
	t        *Transport
	key      string
	consumer string
	handle   func(context.Context, client.Message) error
	log      *slog.Logger
	grouped  bool
}

// ensureGroup creates the group, reading from the stream's start, so that
// messages sent before the first receiver came are not lost.
func (r *receiver) ensureGroup(ctx context.Context) error {
	if r.grouped {
		return nil
	}
	err := r.t.rdb.XGroupCreateMkStream(ctx, r.key, r.t.cfg.Group, "0").Err()
	if err != nil && !strings.HasPrefix(err.Error(), "BUSYGROUP") {
		return fmt.Errorf("XGROUP CREATE: %w", err)
	}
	r.grouped = true
	return nil
}

func isNoGroup(err error) bool { return strings.Contains(err.Error(), "NOGROUP") }

// read takes new entries, waiting up to Block for some.
func (r *receiver) read(ctx context.Context) error {
	res, err := r.t.rdb.XReadGroup(ctx, &redis.XReadGroupArgs{
		Group: r.t.cfg.Group, Consumer: r.consumer, Streams: []string{r.key, ">"},
		Count: int64(r.t.cfg.Batch), Block: r.t.cfg.Block,
	}).Result()
	if errors.Is(err, redis.Nil) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("XREADGROUP: %w", err)
	}
	for _, s := range res {
		r.process(ctx, s.Messages)
	}
	return nil
}

// claim takes over the entries pending longer than ClaimIdle.
func (r *receiver) claim(ctx context.Context) error {
	start := "0-0"
	for {
		msgs, next, err := r.t.rdb.XAutoClaim(ctx, &redis.XAutoClaimArgs{
			Stream: r.key, Group: r.t.cfg.Group, Consumer: r.consumer,
			MinIdle: r.t.cfg.ClaimIdle, Start: start, Count: int64(r.t.cfg.Batch),
		}).Result()
		if err != nil {
			return fmt.Errorf("XAUTOCLAIM: %w", err)
		}
		if len(msgs) > 0 {
			r.log.Info("took over pending entries", "count", len(msgs))
		}
		r.process(ctx, msgs)
		if next == "0-0" || next == "" || (len(msgs) == 0 && next == start) {
			return nil
		}
		start = next
	}
}

// process handles entries and acknowledges those handled. An entry that
// cannot be decoded is acknowledged and dropped (it would fail forever).
func (r *receiver) process(ctx context.Context, msgs []redis.XMessage) {
	for _, x := range msgs {
		if ctx.Err() != nil {
			return // left pending: taken over after ClaimIdle
		}
		var m client.Message
		raw, _ := x.Values["m"].(string)
		if err := json.Unmarshal([]byte(raw), &m); err != nil {
			r.log.Error("undecodable entry dropped", "entry", x.ID, "err", err)
		} else if err := r.handle(ctx, m); errors.Is(err, client.ErrPoison) {
			r.log.Error("poison entry acknowledged and dropped", "entry", x.ID, "err", err)
		} else if err != nil {
			r.log.Warn("handler failed; the entry stays pending and is taken over after claim_idle", "entry", x.ID, "err", err)
			continue
		}
		if err := r.t.rdb.XAck(context.WithoutCancel(ctx), r.key, r.t.cfg.Group, x.ID).Err(); err != nil {
			r.log.Warn("XACK failed; the entry will be handled again", "entry", x.ID, "err", err)
		}
	}
}
