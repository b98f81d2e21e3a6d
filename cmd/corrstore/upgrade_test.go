package main

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/corrstore/corrstore/bolt/bolttest"
	"github.com/corrstore/corrstore/redisstore/redistest"
)

// TestUpgradeBolt upgrades a file written by the schema-1 code (the bolt
// package's test data; its README says what it holds): a read-only command
// first says to upgrade it, upgrade says what it did, a second run that
// there is nothing to do, and every record is there, in its namespace.
func TestUpgradeBolt(t *testing.T) {
	t.Parallel()
	f := &fixture{t: t, dir: t.TempDir(), getenv: map[string]string{}}
	path := filepath.Join(f.dir, "v1.db")
	bolttest.CopySchema1(t, path)
	url := "bolt://" + path

	_, _, err := f.run("ls", "--store", url)
	require.ErrorContains(t, err, "corrstore upgrade --store "+url)

	out := f.run1("upgrade", "--store", url)
	require.Regexp(t, `^upgraded `+path+` from schema 1 to 3: 6 records, 0 set aside as undecodable \(1 already were\), 1 idempotency keys \(0 dropped\), 1 early replies`, out)
	require.Contains(t, f.run1("upgrade", "--store", url), "already at schema 3")
	var j struct {
		Upgraded bool
		From, To int
		Summary  string
		Report   struct{ Records int }
	}
	require.NoError(t, json.Unmarshal([]byte(f.run1("upgrade", "-o", "json", "--store", url)), &j), "one JSON document")
	require.False(t, j.Upgraded)
	require.Equal(t, 3, j.To)
	require.Contains(t, j.Summary, "already at schema 3")
	other := filepath.Join(f.dir, "other.db")
	bolttest.CopySchema1(t, other)
	require.NoError(t, json.Unmarshal([]byte(f.run1("upgrade", "-o", "json", "--store", "bolt://"+other)), &j))
	require.True(t, j.Upgraded)
	require.Equal(t, [2]int{1, 3}, [2]int{j.From, j.To})
	require.Equal(t, 6, j.Report.Records)

	require.Equal(t, []string{"pend-1", "gather-1", "cancel-1", "timeout-1", "779fbd59-6a64-5937-ae86-c96d6dc9309d", "pend-2"},
		lsIDs(t, f.run1("ls", "-o", "json", "--order", "oldest", "--store", url)))
	require.Equal(t, []string{"cancel-1", "779fbd59-6a64-5937-ae86-c96d6dc9309d", "pend-2"},
		lsIDs(t, f.run1("ls", "-o", "json", "--order", "oldest", "-n", "shop", "--store", url)))
	require.Regexp(t, `Replies \(1\)`, f.run1("show", "shop/pend-2", "--store", url))
	_, _, err = f.run("show", "pend-2", "--store", url)
	require.EqualError(t, err, "show: pend-2: not found")
}

func TestUpgradeRefuses(t *testing.T) {
	t.Parallel()
	f := newFixture(t, false)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"upgrade", "--store", f.storeURL()}, "upgrade: --store " + f.storeURL() + ": the file is held by another process (a running corrstore serve?): stop it first"},
		{[]string{"upgrade"}, "upgrade: give --store URL"},
		{[]string{"upgrade", "--store", "mysql://x"}, `upgrade: --store "mysql://x": want bolt://PATH`},
		{[]string{"upgrade", "--store", f.storeURL(), "--force"}, "upgrade: --force is for Redis"},
		{[]string{"upgrade", "--store", "bolt://" + filepath.Join(f.dir, "missing.db")}, "no such file or directory"},
		{[]string{"upgrade", "--store", "redis://127.0.0.1:1/0"}, "upgrade: --store redis://127.0.0.1:1/0: cannot reach Redis"},
	} {
		_, _, err := f.run(tc.args...)
		require.ErrorContains(t, err, tc.want, "%q", tc.args)
	}
}

// TestUpgradeRedis upgrades a prefix written by the schema-1 code: the
// other commands refuse it and name the command; upgrade refuses while an
// instance is alive on the prefix and names it; then it moves every
// correlation, says so, and run again says there is nothing to do.
func TestUpgradeRedis(t *testing.T) {
	t.Parallel()
	mr := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	defer rdb.Close()
	redistest.LoadSchema1(t, rdb, "up")
	f := &fixture{t: t, dir: t.TempDir(), getenv: map[string]string{}}
	url := "redis://" + mr.Addr() + "/0?prefix=up&shards=16"

	_, _, err := f.run("ls", "--store", url)
	require.ErrorContains(t, err, "redis prefix up has schema 1; stop every instance and run `corrstore upgrade --store …`")

	// What a running instance keeps on the prefix.
	require.NoError(t, mr.Set("{up:0}:live:inst-7", "host=h pid=42"))
	mr.SetTTL("{up:0}:live:inst-7", 15*time.Second)
	_, _, err = f.run("upgrade", "--store", url)
	require.ErrorContains(t, err, "upgrade: --store "+url+": store instances are running on the prefix: redis prefix up: 1 alive: {up:0}:live:inst-7 (host=h pid=42, expires in 15s)")
	require.ErrorContains(t, err, "(instances of the previous release keep no liveness key and cannot be detected: stop every one first)")
	require.Contains(t, f.run1("ls", "--store", "redis://"+mr.Addr()+"/0?prefix=other"), "(none)", "other prefixes are not involved")
	_, _, err = f.run("ls", "--store", url)
	require.ErrorContains(t, err, "has schema 1", "the refusal changed nothing")

	mr.FastForward(16 * time.Second) // the instance was stopped: its key expires

	// Another upgrade running on the prefix (its lock).
	require.NoError(t, mr.Set("{up:0}:upgrade", "host=h pid=43 run=r"))
	mr.SetTTL("{up:0}:upgrade", 15*time.Second)
	_, _, err = f.run("upgrade", "--store", url, "--force")
	require.ErrorContains(t, err, "upgrade: --store "+url+": an upgrade is running on the prefix: redis prefix up: {up:0}:upgrade (host=h pid=43 run=r, expires in 15s): wait for it to finish")
	mr.FastForward(16 * time.Second) // that one was killed: its lock expires

	out := f.run1("upgrade", "--store", url)
	require.Contains(t, out, "redis prefix up upgraded from schema 1 to 3: moved 8 correlations (billing 3, default 2, shop 3)")
	require.Contains(t, out, "(instances of the previous release keep no liveness key and cannot be detected: stop every one first)")
	help, _, err := f.run("upgrade", "-h")
	require.NoError(t, err)
	require.Contains(t, strings.Join(strings.Fields(help), " "), "Stop every instance first: instances of the previous release keep no liveness key and cannot be detected.")
	require.Contains(t, f.run1("upgrade", "--store", url), "redis prefix up is already at schema 3: nothing to do")

	require.ElementsMatch(t, []string{"idem-1", "stream-1", "gather-1", "order-1", "late-1", "d477e527-597f-53d5-9a10-612a076191b4", "gather-2", "cancel-1"},
		lsIDs(t, f.run1("ls", "-o", "json", "--store", url)))
	require.ElementsMatch(t, []string{"idem-1", "order-1", "late-1"}, lsIDs(t, f.run1("ls", "-o", "json", "-n", "shop", "--store", url)))
	require.Contains(t, f.run1("show", "billing/cancel-1", "--store", url), "cancelled")
	_, _, err = f.run("show", "cancel-1", "--store", url)
	require.EqualError(t, err, "show: cancel-1: not found")
}
