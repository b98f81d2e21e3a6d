package redisstore

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/redis/go-redis/v9"
)

// ErrNotDurable is returned by New in strict mode when the server's settings
// can lose acknowledged correlations, or cannot be read.
var ErrNotDurable = errors.New("redis settings can lose acknowledged correlations")

// durabilitySettings are the server settings New reads.
var durabilitySettings = []string{"appendonly", "appendfsync", "maxmemory-policy"}

// durabilityProblems names each setting, of one server's CONFIG GET
// answers, that can lose acknowledged writes, and what to set instead.
func durabilityProblems(cfg map[string]string) []string {
	var out []string
	missing := func(name string) bool {
		if _, ok := cfg[name]; !ok {
			out = append(out, fmt.Sprintf("%s could not be read", name))
			return true
		}
		return false
	}
	if !missing("appendonly") {
		if v := cfg["appendonly"]; v != "yes" {
			out = append(out, fmt.Sprintf("appendonly is %q: a restart loses every write since the last RDB snapshot; set appendonly yes", v))
		} else if !missing("appendfsync") {
			switch v := cfg["appendfsync"]; v {
			case "always":
			case "everysec":
				out = append(out, `appendfsync is "everysec": a crash of the host can lose about the last second of acknowledged writes; set appendfsync always`)
			default:
				out = append(out, fmt.Sprintf("appendfsync is %q: a crash of the host can lose acknowledged writes the OS had not flushed (up to ~30 s); set appendfsync always", v))
			}
		}
	}
	if !missing("maxmemory-policy") {
		if v := cfg["maxmemory-policy"]; v != "noeviction" {
			out = append(out, fmt.Sprintf("maxmemory-policy is %q: Redis may evict correlations when it reaches maxmemory; set maxmemory-policy noeviction", v))
		}
	}
	return out
}

// checkDurability reads the durability settings of every server the client
// writes to (every master of a Cluster) and warns, or in strict mode
// refuses, when they can lose acknowledged writes or cannot be read.
func (s *Store) checkDurability(ctx context.Context, strict bool) error {
	var (
		mu       sync.Mutex
		problems []string
		unread   []string
	)
	check := func(ctx context.Context, c redis.Cmdable, who string) error {
		cfg, err := configGet(ctx, c)
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			unread = append(unread, fmt.Sprintf("%s%v", who, err))
			return nil
		}
		for _, p := range durabilityProblems(cfg) {
			problems = append(problems, who+p)
		}
		return nil
	}
	var err error
	if cc, ok := s.rdb.(*redis.ClusterClient); ok {
		err = cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error {
			return check(ctx, c, c.Options().Addr+": ")
		})
	} else {
		err = check(ctx, s.rdb, "")
	}
	if err != nil {
		return unavailable("check durability settings", err)
	}
	if len(unread) > 0 {
		msg := "could not read the server's durability settings (CONFIG GET refused or unsupported), so they are not checked: " + strings.Join(unread, "; ")
		if strict {
			return fmt.Errorf("redisstore: %w: %s", ErrNotDurable, msg)
		}
		s.log.Warn(msg)
	}
	if len(problems) > 0 {
		if strict {
			return fmt.Errorf("redisstore: %w: %s", ErrNotDurable, strings.Join(problems, "; "))
		}
		for _, p := range problems {
			s.log.Warn("redis can lose acknowledged correlations", "setting", p)
		}
	}
	return nil
}

func configGet(ctx context.Context, c redis.Cmdable) (map[string]string, error) {
	cfg := map[string]string{}
	for _, name := range durabilitySettings {
		m, err := c.ConfigGet(ctx, name).Result()
		if err != nil {
			return nil, err
		}
		for k, v := range m {
			cfg[strings.ToLower(k)] = v
		}
	}
	return cfg, nil
}
