package redistest

import (
	"context"
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/corrstore/corrstore/internal/testenv"
)

// Schema1 is redisstore/testdata/schema1.json: a prefix written by
// corrstore before namespaced ids (schema 1), every key as the previous
// code left it (its comment says what it holds).
type Schema1 struct {
	Prefix string    `json:"prefix"`
	Shards int       `json:"shards"`
	Now    time.Time `json:"now"`
	Keys   []struct {
		Key    string            `json:"key"`
		Type   string            `json:"type"`
		String *string           `json:"string"`
		Hash   map[string]string `json:"hash"`
		Zset   []struct {
			Member string  `json:"member"`
			Score  float64 `json:"score"`
		} `json:"zset"`
		TTLms int64 `json:"ttl_ms"`
	} `json:"keys"`
}

func readSchema1(tb testing.TB) Schema1 { tb.Helper(); return readSchema(tb, "schema1.json") }

func readSchema(tb testing.TB, name string) Schema1 {
	tb.Helper()
	b, err := os.ReadFile(testenv.ModuleFile(tb, "redisstore/testdata/"+name))
	if err != nil {
		tb.Fatal(err)
	}
	var d Schema1
	if err := json.Unmarshal(b, &d); err != nil {
		tb.Fatalf("%s: %v", name, err)
	}
	if len(d.Keys) == 0 {
		tb.Fatalf("%s: no keys", name)
	}
	return d
}

// LoadSchema1 writes the schema 1 prefix into rdb under prefix, and
// returns the data as the file has it (under its own Prefix).
func LoadSchema1(tb testing.TB, rdb redis.UniversalClient, prefix string) Schema1 {
	tb.Helper()
	return load(tb, rdb, prefix, readSchema1(tb))
}

// LoadSchema2 writes redisstore/testdata/schema2.json, a prefix written
// by the schema-2 code (replies inside the record; the same history as
// bolt/testdata/schema2.db), into rdb under prefix.
func LoadSchema2(tb testing.TB, rdb redis.UniversalClient, prefix string) Schema1 {
	tb.Helper()
	return load(tb, rdb, prefix, readSchema(tb, "schema2.json"))
}

func load(tb testing.TB, rdb redis.UniversalClient, prefix string, d Schema1) Schema1 {
	tb.Helper()
	ctx := context.Background()
	pipe := rdb.Pipeline()
	for _, k := range d.Keys {
		name := strings.Replace(k.Key, "{"+d.Prefix+":", "{"+prefix+":", 1)
		if name == k.Key {
			tb.Fatalf("%s: not under {%s:…}, or the prefix is the data's own", k.Key, d.Prefix)
		}
		switch k.Type {
		case "string":
			pipe.Set(ctx, name, *k.String, 0)
		case "hash":
			for f, v := range k.Hash {
				pipe.HSet(ctx, name, f, v)
			}
		case "zset":
			for _, z := range k.Zset {
				pipe.ZAdd(ctx, name, redis.Z{Score: z.Score, Member: z.Member})
			}
		default:
			tb.Fatalf("%s: type %s", k.Key, k.Type)
		}
		if k.TTLms > 0 {
			pipe.PExpire(ctx, name, time.Duration(k.TTLms)*time.Millisecond)
		}
	}
	if _, err := pipe.Exec(ctx); err != nil {
		tb.Fatal(err)
	}
	return d
}
