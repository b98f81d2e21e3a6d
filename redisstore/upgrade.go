package redisstore

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/corrstore/corrstore/store"
)

// ErrInstancesAlive is Upgrade's refusal while store instances run on the
// prefix (their liveness keys exist).
var ErrInstancesAlive = errors.New("store instances are running on the prefix")

// UpgradeOptions configures Upgrade.
type UpgradeOptions struct {
	// Prefix is the key prefix to upgrade; default DefaultPrefix.
	Prefix string
	// Shards must be the prefix's shard count, or 0 to take it from the
	// prefix.
	Shards int
	// Logger receives progress and the summary. Default slog.Default().
	Logger *slog.Logger
	// Force upgrades even though liveness keys say instances are running:
	// for a key left by an instance that was killed, when waiting for it to
	// expire (15 s) is not an option. An instance that does run meanwhile
	// reads and writes the old layout beside the new one. Force does not
	// pass another Upgrade's lock (ErrUpgradeRunning): a killed run's lock
	// expires within 15 s.
	Force bool

	batch     int                                 // records per round trip; default upgradeBatch
	hook      func(stage string, moved int) error // tests: called before the mark ("mark"), after each batch's reads ("read"), "written" and "moved" stages, before each shard's counters are written ("counted")
	lockEvery time.Duration                       // lock renewal interval; default liveEvery
	lockBeat  func(held bool)                     // tests: told each renewal's verdict
}

// UpgradeReport says what Upgrade did.
type UpgradeReport struct {
	Prefix   string
	From, To int
	// AlreadyDone: the prefix was at To already; nothing was done.
	AlreadyDone bool
	// Resumed: an earlier Upgrade had started and not finished.
	Resumed bool
	// Correlations moved to their ref keys, per namespace.
	Correlations map[string]int
	// EarlyReplies moved (to the default namespace: schema 1 kept none).
	EarlyReplies int
	// IdempotencyKeys moved.
	IdempotencyKeys int
	// Kept counts schema 1 records not moved because their ref already
	// held another record (one an instance of this schema wrote): that one
	// was kept, and the schema 1 record dropped.
	Kept int
	// SetAside counts records that did not decode: kept in quarantine
	// under the default namespace, as in schema 1.
	SetAside int
	// Dropped counts stale entries removed: index entries and idempotency
	// mappings whose correlation was gone, undecodable early replies.
	Dropped int
	Elapsed time.Duration
}

// Moved is the number of correlations moved.
func (r UpgradeReport) Moved() int {
	n := 0
	for _, v := range r.Correlations {
		n += v
	}
	return n
}

// String is the report in one line.
func (r UpgradeReport) String() string {
	if r.AlreadyDone {
		return fmt.Sprintf("redis prefix %s is already at schema %d: nothing to do", r.Prefix, r.To)
	}
	var per []string
	for _, ns := range slices.Sorted(maps.Keys(r.Correlations)) {
		per = append(per, fmt.Sprintf("%s %d", ns, r.Correlations[ns]))
	}
	s := fmt.Sprintf("redis prefix %s upgraded from schema %d to %d", r.Prefix, r.From, r.To)
	if r.Resumed {
		s += " (finishing an interrupted upgrade)"
	}
	s += fmt.Sprintf(": moved %d correlations", r.Moved())
	if len(per) > 0 {
		s += " (" + strings.Join(per, ", ") + ")"
	}
	s += fmt.Sprintf(", %d early replies, %d idempotency keys; %d undecodable records set aside, %d stale entries dropped",
		r.EarlyReplies, r.IdempotencyKeys, r.SetAside, r.Dropped)
	if r.Kept > 0 {
		s += fmt.Sprintf("; %d schema 1 records dropped for the newer record under their ref", r.Kept)
	}
	return s + fmt.Sprintf("; in %s (%s)", r.Elapsed.Round(time.Millisecond), undetectable)
}

const upgradeBatch = 256

// Upgrade brings a prefix written by an older corrstore (schema 1: keys
// named by id) to this build's schema (2: keys named by ref "namespace/id",
// shard of the ref). Run it with every instance stopped: it refuses, naming
// them, while any instance's liveness key exists (see UpgradeOptions.Force).
// Instances of the previous release keep no liveness key and cannot be
// detected: stop every one first. (One left running reads and writes the
// schema 1 layout while it is moved away; Upgrade only notices, and stops,
// when schema 1 records keep appearing pass after pass.)
//
// One Upgrade runs at a time: a run holds a lock key ({prefix:0}:upgrade,
// renewed while it runs) and a second one refuses, naming it, as does New.
// A run checks that it still holds the lock right before each write, and
// stops if not (a run paused past the lock's 15 s TTL while another took
// it); only a pause of over 15 s between that check and the write it
// guards lets that one write (a batch, or a shard's counters) through.
// A record is written under its new key only where that key is free: a
// record already there is never overwritten.
//
// It is resumable: the prefix is marked "upgrading" (New refuses it) until
// the end; each correlation is written under its new keys before its old
// ones are removed, so an Upgrade run again after a crash finishes the job.
// Run on a prefix already at schema 2 it does nothing and says so. Works on
// a standalone server and on a Cluster (it scans every master).
//
// Errors: a SchemaError for a schema newer than this build's, an error
// wrapping ErrInstancesAlive or ErrUpgradeRunning, store.ErrNotFound (no
// store under the prefix), store.ErrInvalid (options),
// store.ErrUnavailable (Redis, or the lock lost midway).
func Upgrade(ctx context.Context, rdb redis.UniversalClient, opts UpgradeOptions) (UpgradeReport, error) {
	start := time.Now()
	prefix := cmp.Or(opts.Prefix, DefaultPrefix)
	rep := UpgradeReport{Prefix: prefix, To: schemaVersion, Correlations: map[string]int{}}
	if rdb == nil {
		return rep, fmt.Errorf("%w: redis client: must not be nil", store.ErrInvalid)
	}
	if strings.ContainsAny(prefix, "{}") {
		return rep, fmt.Errorf("%w: prefix: %q must not contain '{' or '}'", store.ErrInvalid, prefix)
	}
	u := &upgrader{rdb: rdb, opts: opts, rep: &rep,
		log: cmp.Or(opts.Logger, slog.Default()).With("component", "redisstore", "prefix", prefix)}
	u.opts.batch = cmp.Or(u.opts.batch, upgradeBatch)
	u.opts.lockEvery = cmp.Or(u.opts.lockEvery, liveEvery)

	if _, err := u.inspect(ctx); err != nil || rep.AlreadyDone {
		return rep, err
	}
	lock, err := takeUpgradeLock(ctx, rdb, u.keys)
	if err != nil {
		return rep, err
	}
	ctx = lock.keep(ctx, u.opts.lockEvery, u.log, u.opts.lockBeat)
	defer lock.release(u.log)
	u.lock = lock
	err = u.run(ctx, lock)
	if cause := context.Cause(ctx); err != nil && errors.Is(cause, errLockLost) {
		err = cause // what failed after the lock was lost failed because it was
	}
	if err != nil || rep.AlreadyDone {
		return rep, err
	}
	rep.Elapsed = time.Since(start)
	u.log.Info(rep.String())
	return rep, nil
}

// inspect reads the meta hash of the prefix: it sets rep.From, u.keys, and
// rep.AlreadyDone for a prefix at this schema; upgrading is the mark of an
// unfinished upgrade ("" when none).
func (u *upgrader) inspect(ctx context.Context) (upgrading string, err error) {
	prefix := u.rep.Prefix
	meta := newLayout(prefix, 1).meta()
	v, err := u.rdb.HMGet(ctx, meta, "shards", "schema", "upgrading").Result()
	if err != nil {
		return "", unavailable("read "+meta, err)
	}
	shards, _ := v[0].(string)
	schema, _ := v[1].(string)
	upgrading, _ = v[2].(string)
	if shards == "" && schema == "" {
		return "", fmt.Errorf("%w: redis prefix %s holds no corrstore store (no %s): nothing to upgrade", store.ErrNotFound, prefix, meta)
	}
	have, err := strconv.Atoi(schema)
	if err != nil {
		return "", unexpected("read "+meta, fmt.Sprintf("schema %q", schema))
	}
	u.rep.From = have
	var se *SchemaError
	switch err := schemaCheck(prefix, have, upgrading); {
	case errors.As(err, &se) && se.Have > schemaVersion:
		return "", err
	case err == nil:
		u.rep.AlreadyDone = true
		u.log.Info(u.rep.String())
		return "", nil
	case have < 1 || have > schemaVersion: // schemaVersion: marked upgrading, finish it
		return "", fmt.Errorf("%w: redis prefix %s has schema %d, which no corrstore wrote", store.ErrCorrupt, prefix, have)
	}
	n, err := strconv.Atoi(shards)
	if err != nil || n < 1 || n > MaxShards {
		return "", unexpected("read "+meta, fmt.Sprintf("shards %q", shards))
	}
	if u.opts.Shards != 0 && u.opts.Shards != n {
		return "", fmt.Errorf("%w: shards: redis prefix %s has %d shards, not %d", store.ErrInvalid, prefix, n, u.opts.Shards)
	}
	u.keys = newLayout(prefix, n)
	return upgrading, nil
}

// run is the upgrade, under the lock.
func (u *upgrader) run(ctx context.Context, lock *upgradeLock) error {
	// Again under the lock: a run that held it may have finished meanwhile.
	upgrading, err := u.inspect(ctx)
	if err != nil || u.rep.AlreadyDone {
		return err
	}
	if err := u.checkAlive(ctx); err != nil {
		return err
	}
	u.rep.Resumed = upgrading != ""
	if err := u.step("mark", 0); err != nil {
		return err
	}
	// Through the lock's script: a run that lost its lock (paused past its
	// TTL while another finished) must not mark a live schema 2 prefix.
	if err := lock.mark(ctx, schemaVersion); err != nil {
		return err
	}
	u.log.Info("upgrading", "from", u.rep.From, "to", schemaVersion, "shards", u.keys.shards, "resumed", u.rep.Resumed)

	if u.rep.From >= 2 {
		// Schema 2 → 3 moves nothing: a record of schema 2 holds its
		// replies inside, which this build reads, and its next write
		// stores them apart. The mark keeps schema-2 builds out. Only the
		// dispatch index moves: it is keyed by namespace and handler now.
		if err := u.moveDispatchIndex(ctx); err != nil {
			return err
		}
		return lock.finish(ctx, schemaVersion)
	}
	// A pass moves what it finds; the next one checks that nothing is left
	// (a Cluster resharding during a SCAN can hide keys from it).
	for pass := 0; ; pass++ {
		found, err := u.pass(ctx)
		if err != nil {
			return err
		}
		if found == 0 {
			break
		}
		if pass == 3 {
			return fmt.Errorf("%w: redis prefix %s: schema 1 keys keep appearing (%d in the last pass): is an instance of an older corrstore still running? (%s)",
				ErrInstancesAlive, u.keys.prefix, found, undetectable)
		}
	}
	if err := u.finish(ctx); err != nil {
		return err
	}
	return lock.finish(ctx, schemaVersion)
}

// undetectable is what Upgrade cannot check, said in its report and its
// refusals.
const undetectable = "instances of the previous release keep no liveness key and cannot be detected: stop every one first"

type upgrader struct {
	rdb  redis.UniversalClient
	keys layout
	opts UpgradeOptions
	rep  *UpgradeReport
	log  *slog.Logger
	lock *upgradeLock // fences every write (see upgradelock.go)

	moved   int             // correlations moved by this run (the hook's count)
	pending map[string]bool // {p:s}:pd:<ns> keys seen
}

// nodes are the servers to SCAN: every master of a Cluster, or the server.
func nodes(ctx context.Context, rdb redis.UniversalClient) ([]redis.Cmdable, error) {
	cc, ok := rdb.(*redis.ClusterClient)
	if !ok {
		return []redis.Cmdable{rdb}, nil
	}
	var mu sync.Mutex
	var out []redis.Cmdable
	err := cc.ForEachMaster(ctx, func(_ context.Context, c *redis.Client) error {
		mu.Lock()
		defer mu.Unlock()
		out = append(out, c)
		return nil
	})
	return out, err
}

// nodeFor is the server that holds key: on a Cluster, the master of its
// slot (a SCAN for one hash tag must go there).
func nodeFor(ctx context.Context, rdb redis.UniversalClient, key string) (redis.Cmdable, error) {
	if cc, ok := rdb.(*redis.ClusterClient); ok {
		return cc.MasterForKey(ctx, key)
	}
	return rdb, nil
}

// globEscape quotes the characters SCAN's MATCH gives a meaning to.
func globEscape(s string) string {
	var b strings.Builder
	for _, r := range s {
		if strings.ContainsRune(`*?[]\`, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// liveInstance is one liveness key found.
type liveInstance struct {
	key, value string
	ttl        time.Duration
}

// aliveOn lists the liveness keys of the prefix of l.
func aliveOn(ctx context.Context, rdb redis.UniversalClient, l layout) ([]liveInstance, error) {
	node, err := nodeFor(ctx, rdb, l.meta())
	if err != nil {
		return nil, unavailable("find the node of "+l.meta(), err)
	}
	var keys []string
	iter := node.Scan(ctx, 0, globEscape(l.live(""))+"*", 1000).Iterator()
	for iter.Next(ctx) {
		keys = append(keys, iter.Val())
	}
	if err := iter.Err(); err != nil {
		return nil, unavailable("list liveness keys", err)
	}
	slices.Sort(keys)
	var out []liveInstance
	for _, k := range keys {
		pipe := node.Pipeline()
		get, ttl := pipe.Get(ctx, k), pipe.PTTL(ctx, k)
		if _, err := pipe.Exec(ctx); errors.Is(err, redis.Nil) {
			continue // expired meanwhile
		} else if err != nil {
			return nil, unavailable("read "+k, err)
		}
		out = append(out, liveInstance{key: k, value: get.Val(), ttl: ttl.Val()})
	}
	return out, nil
}

func (u *upgrader) checkAlive(ctx context.Context) error {
	alive, err := aliveOn(ctx, u.rdb, u.keys)
	if err != nil || len(alive) == 0 {
		return err
	}
	var names []string
	for _, a := range alive {
		names = append(names, fmt.Sprintf("%s (%s, expires in %s)", a.key, a.value, a.ttl.Round(time.Second)))
	}
	if u.opts.Force {
		u.log.Warn("upgrading despite live instances (forced)", "instances", strings.Join(names, "; "))
		return nil
	}
	return fmt.Errorf("%w: redis prefix %s: %d alive: %s; stop them (a killed instance's key expires within %s) and run the upgrade again (%s)",
		ErrInstancesAlive, u.keys.prefix, len(alive), strings.Join(names, "; "), liveTTL, undetectable)
}

// oldKey is a key of the prefix, parsed: {prefix:shard}:kind:rest.
type oldKey struct {
	key        string
	sh         int
	kind, rest string
}

func (u *upgrader) parse(k string) (oldKey, bool) {
	head := "{" + u.keys.prefix + ":"
	if !strings.HasPrefix(k, head) {
		return oldKey{}, false
	}
	tag, tail, ok := strings.Cut(k[len(head):], "}:")
	if !ok {
		return oldKey{}, false
	}
	sh, err := strconv.Atoi(tag)
	if err != nil || sh < 0 || sh >= u.keys.shards {
		return oldKey{}, false
	}
	kind, rest, _ := strings.Cut(tail, ":")
	return oldKey{key: k, sh: sh, kind: kind, rest: rest}, true
}

// pass scans every node for schema 1 keys and moves what it finds; found
// counts the records, early-reply sets, mappings and quarantines met.
func (u *upgrader) pass(ctx context.Context) (found int, err error) {
	ns, err := nodes(ctx, u.rdb)
	if err != nil {
		return 0, unavailable("list the cluster's masters", err)
	}
	u.pending = map[string]bool{}
	var records, early, idem, quarantine []oldKey
	flush := func(force bool) error {
		if len(records) >= u.opts.batch || (force && len(records) > 0) {
			if err := u.moveRecords(ctx, records); err != nil {
				return err
			}
			records = records[:0]
		}
		return nil
	}
	match := globEscape("{"+u.keys.prefix+":") + "*"
	for _, node := range ns {
		iter := node.Scan(ctx, 0, match, 1000).Iterator()
		for iter.Next(ctx) {
			k, ok := u.parse(iter.Val())
			if !ok {
				continue
			}
			old := !strings.Contains(k.rest, "/")
			switch {
			case k.kind == "c" && old:
				records = append(records, k)
				found++
				if err := flush(false); err != nil {
					return found, err
				}
			case k.kind == "e" && old:
				early = append(early, k)
			case k.kind == "i" && old:
				idem = append(idem, k)
			case k.kind == "q":
				quarantine = append(quarantine, k)
			case k.kind == "pd":
				u.pending[k.key] = true
			}
		}
		if err := iter.Err(); err != nil {
			return found, unavailable("scan", err)
		}
	}
	if err := flush(true); err != nil {
		return found, err
	}
	for _, k := range early {
		n, err := u.moveEarly(ctx, k)
		if err != nil {
			return found, err
		}
		found += n
	}
	// Mappings move with their records; one left is stale.
	for len(idem) > 0 {
		n := min(len(idem), u.opts.batch)
		d := u.rdb.Pipeline()
		dels := make([]*redis.IntCmd, n)
		for i, k := range idem[:n] {
			dels[i] = d.Del(ctx, k.key)
		}
		if err := u.fence(ctx); err != nil {
			return found, err
		}
		if _, err := d.Exec(ctx); err != nil {
			return found, unavailable("drop stale idempotency mappings", err)
		}
		for _, c := range dels {
			u.rep.Dropped += int(c.Val())
			found += int(c.Val())
		}
		idem = idem[n:]
	}
	for _, k := range quarantine {
		n, err := u.moveQuarantine(ctx, k)
		if err != nil {
			return found, err
		}
		found += n
	}
	return found, nil
}

// moveRecords moves a batch of schema 1 records: first every new key is
// written (the record under its ref with its index entries, in one script;
// its idempotency mapping), then the old ones are removed. A new key that
// exists already is left as it is: run again at any point, the same is
// written, and a record written since by this schema is not overwritten.
func (u *upgrader) moveRecords(ctx context.Context, batch []oldKey) error {
	pipe := u.rdb.Pipeline()
	gets := make([]*redis.StringCmd, len(batch))
	for i, k := range batch {
		gets[i] = pipe.Get(ctx, k.key)
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return unavailable("read records", err)
	}
	type move struct {
		k      oldKey
		v      string
		c      *store.Correlation // nil: undecodable, set aside
		ref    string
		oldMap string           // the record's schema 1 idempotency mapping
		mapGet *redis.StringCmd // its value
		mapped bool             // it names the record: moved with it
		kept   bool             // the ref held another record: this one is dropped
	}
	var moves []move
	mpipe := u.rdb.Pipeline()
	for i, k := range batch {
		v, err := gets[i].Result()
		if err != nil {
			continue // gone meanwhile
		}
		m := move{k: k, v: v, ref: store.RefOf(k.rest).String()}
		if c, err := decodeV1(k.rest, v); err == nil {
			m.c, m.ref = c, c.Ref().String()
			if c.IdempotencyKey != "" {
				if d := store.DeriveID(c.Namespace, c.IdempotencyKey); d != c.ID {
					m.oldMap = u.keys.idem(u.keys.shard(d), d)
					m.mapGet = mpipe.Get(ctx, m.oldMap)
				}
			}
		} else {
			u.log.Warn("undecodable record set aside", "key", k.key, "err", err)
		}
		moves = append(moves, m)
	}
	if mpipe.Len() > 0 {
		if _, err := mpipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
			return unavailable("read idempotency mappings", err)
		}
	}
	if err := u.step("read", 0); err != nil {
		return err
	}

	// The new keys, each only where free (see upgrade_record.lua).
	var calls []call
	var owners []*move
	for i := range moves {
		m := &moves[i]
		sh := u.keys.shard(m.ref)
		if m.c == nil {
			continue
		}
		keys := []string{u.keys.record(sh, m.ref)}
		args := []any{m.v, m.ref}
		e := entriesOf(m.c)
		for ix, z := range e.index() {
			if z.ok {
				keys = append(keys, u.keys.entryKey(ix, sh, e))
				args = append(args, z.score)
			}
		}
		calls = append(calls, call{scriptUpgradeRecord, keys, args})
		owners = append(owners, m)
	}
	answers, err := evalPipeline(ctx, u.rdb, calls, u.fence)
	if fe := (errFenced{}); errors.As(err, &fe) {
		return fe.err
	} else if err != nil {
		return unavailable("write records", err)
	}
	for i, a := range answers {
		m := owners[i]
		n, err := a.Int()
		if err != nil {
			return unavailable("write "+m.ref, err)
		}
		if n < 0 {
			m.kept = true
			u.log.Warn("schema 1 record dropped: its ref holds a record already, kept", "key", m.k.key, "ref", m.ref)
		}
	}
	// The undecodable ones, and the idempotency mappings that name a moved
	// record, where free too.
	w := u.rdb.Pipeline()
	for i := range moves {
		m := &moves[i]
		if m.c == nil {
			w.HSetNX(ctx, u.keys.quarantine(u.keys.shard(m.ref)), m.ref, m.v)
			continue
		}
		if m.mapGet == nil || m.mapGet.Val() != m.k.rest {
			continue
		}
		m.mapped = true
		if !m.kept {
			dref := store.Ref{Namespace: m.c.Namespace, ID: store.DeriveID(m.c.Namespace, m.c.IdempotencyKey)}.String()
			w.SetNX(ctx, u.keys.idem(u.keys.shard(dref), dref), m.ref, 0)
		}
	}
	if w.Len() > 0 {
		if err := u.fence(ctx); err != nil {
			return err
		}
		if _, err := w.Exec(ctx); err != nil {
			return unavailable("write idempotency mappings", err)
		}
	}
	if err := u.step("written", len(moves)); err != nil {
		return err
	}

	// The old ones.
	d := u.rdb.Pipeline()
	for _, m := range moves {
		if m.mapped {
			d.Del(ctx, m.oldMap)
		}
		d.Del(ctx, m.k.key)
		if m.c != nil {
			e := entriesOf(m.c)
			for ix, z := range e.index() {
				if z.ok {
					d.ZRem(ctx, u.keys.indexKey(ix, m.k.sh, e.ns), m.k.rest)
				}
			}
		}
	}
	if d.Len() > 0 {
		if err := u.fence(ctx); err != nil {
			return err
		}
		if _, err := d.Exec(ctx); err != nil {
			return unavailable("remove schema 1 records", err)
		}
	}
	for _, m := range moves {
		switch {
		case m.c == nil:
			u.rep.SetAside++
		case m.kept:
			u.rep.Kept++
		default:
			u.rep.Correlations[m.c.Namespace]++
			if m.mapped {
				u.rep.IdempotencyKeys++
			}
		}
	}
	u.moved += len(moves)
	if u.moved/10000 != (u.moved-len(moves))/10000 {
		u.log.Info("upgrading", "moved", u.moved)
	}
	return u.step("moved", len(moves))
}

// fence checks that the run still holds its lock, right before a write
// pipeline (see upgradelock.go for what it leaves).
func (u *upgrader) fence(ctx context.Context) error {
	return u.lock.fence(ctx)
}

// step calls the test hook.
func (u *upgrader) step(stage string, n int) error {
	if u.opts.hook == nil {
		return nil
	}
	return u.opts.hook(stage, u.moved+n)
}

// decodeV1 reads a schema 1 value stored under id.
func decodeV1(id, v string) (*store.Correlation, error) {
	if _, ok := parseHeader(v); !ok {
		return nil, fmt.Errorf("%w: value has no record header", store.ErrCorrupt)
	}
	c, err := store.UnmarshalCorrelation([]byte(v[headerLen:]))
	if err != nil {
		return nil, err
	}
	if c.ID != id {
		return nil, fmt.Errorf("%w: record holds id %q", store.ErrCorrupt, c.ID)
	}
	return c, nil
}

// moveEarly moves the early replies of a schema 1 id to the ref of the id
// in the default namespace (schema 1's early replies named no namespace),
// keeping their arrival and sequence.
func (u *upgrader) moveEarly(ctx context.Context, k oldKey) (int, error) {
	fields, err := u.rdb.HGetAll(ctx, k.key).Result()
	if err != nil {
		return 0, unavailable("read "+k.key, err)
	}
	if len(fields) == 0 {
		return 0, nil
	}
	ref := store.RefOf(k.rest).String()
	sh := u.keys.shard(ref)
	w := u.rdb.Pipeline()
	var members []any
	moved := 0
	for f, v := range fields {
		members = append(members, f+" "+k.rest)
		if len(v) < 16 {
			u.rep.Dropped++
			continue
		}
		e, err := store.UnmarshalEarly([]byte(v[16:]))
		if err != nil || e.CorrelationID != k.rest {
			u.log.Warn("undecodable early reply dropped", "key", k.key, "field", f, "err", err)
			u.rep.Dropped++
			continue
		}
		w.HSet(ctx, u.keys.early(sh, ref), f, v)
		w.ZAdd(ctx, u.keys.earlyTime(sh), redis.Z{Score: float64(micros(e.Reply.ReceivedAt)), Member: f + " " + ref})
		moved++
	}
	if w.Len() > 0 {
		if err := u.fence(ctx); err != nil {
			return 0, err
		}
		if _, err := w.Exec(ctx); err != nil {
			return 0, unavailable("write early replies of "+ref, err)
		}
	}
	d := u.rdb.Pipeline()
	d.Del(ctx, k.key)
	d.ZRem(ctx, u.keys.earlyTime(k.sh), members...)
	if err := u.fence(ctx); err != nil {
		return 0, err
	}
	if _, err := d.Exec(ctx); err != nil {
		return 0, unavailable("remove "+k.key, err)
	}
	u.rep.EarlyReplies += moved
	return len(fields), nil
}

// moveQuarantine moves the set-aside records of a schema 1 quarantine hash
// to the refs of their ids in the default namespace.
func (u *upgrader) moveQuarantine(ctx context.Context, k oldKey) (int, error) {
	fields, err := u.rdb.HGetAll(ctx, k.key).Result()
	if err != nil {
		return 0, unavailable("read "+k.key, err)
	}
	// Each one's new field before its old one, in one pipeline (in order).
	w := u.rdb.Pipeline()
	n := 0
	for f, v := range fields {
		if strings.Contains(f, "/") {
			continue
		}
		ref := store.RefOf(f).String()
		w.HSetNX(ctx, u.keys.quarantine(u.keys.shard(ref)), ref, v)
		w.HDel(ctx, k.key, f)
		n++
	}
	if n == 0 {
		return 0, nil
	}
	if err := u.fence(ctx); err != nil {
		return 0, err
	}
	if _, err := w.Exec(ctx); err != nil {
		return 0, unavailable("write "+k.key, err)
	}
	u.rep.SetAside += n
	return n, nil
}

// finish drops the schema 1 entries left in the shared indexes (members
// named by id) and counts every shard's counters afresh: the correlations
// changed shards, and the counters are per shard.
func (u *upgrader) finish(ctx context.Context) error {
	var zsets []string
	for sh := range u.keys.shards {
		zsets = append(zsets, u.keys.deadline(sh), u.keys.dispatch(sh), u.keys.purge(sh), u.keys.created(sh), u.keys.earlyTime(sh))
	}
	zsets = append(zsets, slices.Sorted(maps.Keys(u.pending))...)
	for _, k := range zsets {
		if err := u.dropOldMembers(ctx, k); err != nil {
			return err
		}
	}
	// The early-reply sequence goes on from the highest of any shard: the
	// replies moved keep theirs.
	pipe := u.rdb.Pipeline()
	seqs := make([]*redis.StringCmd, u.keys.shards)
	for sh := range u.keys.shards {
		seqs[sh] = pipe.HGet(ctx, u.keys.counters(sh), fieldEarlySeq)
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return unavailable("read counters", err)
	}
	var eseq int64
	for _, c := range seqs {
		n, _ := strconv.ParseInt(c.Val(), 10, 64)
		eseq = max(eseq, n)
	}
	for sh := range u.keys.shards {
		if err := u.recount(ctx, sh, eseq); err != nil {
			return err
		}
	}
	return nil
}

// dropOldMembers removes the members of a sorted set that name a schema 1
// id (an early reply's member is "<digest> <id>").
func (u *upgrader) dropOldMembers(ctx context.Context, key string) error {
	var old []any
	iter := u.rdb.ZScan(ctx, key, 0, "", 1000).Iterator()
	for i := 0; iter.Next(ctx); i++ {
		if i%2 == 1 {
			continue // a score
		}
		m := iter.Val()
		name := m
		if j := strings.IndexByte(m, ' '); j >= 0 {
			name = m[j+1:]
		}
		if !strings.Contains(name, "/") {
			old = append(old, m)
		}
	}
	if err := iter.Err(); err != nil {
		return unavailable("scan "+key, err)
	}
	for len(old) > 0 {
		n := min(len(old), 500)
		if err := u.fence(ctx); err != nil {
			return err
		}
		removed, err := u.rdb.ZRem(ctx, key, old[:n]...).Result()
		if err != nil {
			return unavailable("clean "+key, err)
		}
		u.rep.Dropped += int(removed)
		old = old[n:]
	}
	return nil
}

// recount sets the counters of shard sh from its records.
func (u *upgrader) recount(ctx context.Context, sh int, eseq int64) error {
	counts := map[string]int64{}
	const page = 500
	for start := int64(0); ; start += page {
		refs, err := u.rdb.ZRange(ctx, u.keys.created(sh), start, start+page-1).Result()
		if err != nil {
			return unavailable("read "+u.keys.created(sh), err)
		}
		pipe := u.rdb.Pipeline()
		gets := make([]*redis.StringCmd, len(refs))
		for i, ref := range refs {
			gets[i] = pipe.Get(ctx, u.keys.record(sh, ref))
		}
		if len(refs) > 0 {
			if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
				return unavailable("read records", err)
			}
		}
		for i, ref := range refs {
			c, err := decodeValue(ref, gets[i].Val())
			if err != nil {
				continue // gone, or met by the next pass that reads it
			}
			addCounts(counts, c)
		}
		if len(refs) < page {
			break
		}
	}
	early, err := u.rdb.ZCard(ctx, u.keys.earlyTime(sh)).Result()
	if err != nil {
		return unavailable("count early replies", err)
	}
	if early > 0 {
		counts[fieldEarly] = early
	}
	if eseq > 0 {
		counts[fieldEarlySeq] = eseq
	}
	if err := u.step("counted", 0); err != nil {
		return err
	}
	k := u.keys.counters(sh)
	tx := u.rdb.TxPipeline()
	tx.Del(ctx, k)
	if len(counts) > 0 {
		args := make([]any, 0, 2*len(counts))
		for _, f := range slices.Sorted(maps.Keys(counts)) {
			args = append(args, f, counts[f])
		}
		tx.HSet(ctx, k, args...)
	}
	// A run that lost its lock must not set a live prefix's counters from
	// its old count.
	if err := u.fence(ctx); err != nil {
		return err
	}
	if _, err := tx.Exec(ctx); err != nil {
		return unavailable("write "+k, err)
	}
	return nil
}

// evalPipeline runs calls in one pipeline of EVALSHA, and those whose
// script the server did not have again with EVAL; the answers are in order.
// fence is called right before each pipeline is sent; its error is
// returned as it is.
func evalPipeline(ctx context.Context, rdb redis.UniversalClient, calls []call, fence func(context.Context) error) ([]*redis.Cmd, error) {
	if len(calls) == 0 {
		return nil, nil
	}
	cmds := make([]*redis.Cmd, len(calls))
	pipe := rdb.Pipeline()
	for i, c := range calls {
		cmds[i] = c.script.EvalSha(ctx, pipe, c.keys, c.args...)
	}
	if err := fence(ctx); err != nil {
		return nil, errFenced{err}
	}
	if _, err := pipe.Exec(ctx); err != nil && !redis.HasErrorPrefix(err, "NOSCRIPT") {
		return nil, err
	}
	again := rdb.Pipeline()
	for i, c := range calls {
		if err := cmds[i].Err(); err != nil && redis.HasErrorPrefix(err, "NOSCRIPT") {
			cmds[i] = c.script.Eval(ctx, again, c.keys, c.args...)
		}
	}
	if again.Len() > 0 {
		if err := fence(ctx); err != nil {
			return nil, errFenced{err}
		}
		if _, err := again.Exec(ctx); err != nil {
			return nil, err
		}
	}
	for _, cmd := range cmds {
		if err := cmd.Err(); err != nil {
			return nil, err
		}
		if cmd.Val() == nil { // not answered: go-redis gave up before sending it
			return nil, errors.New("a script call was not answered")
		}
	}
	return cmds, nil
}

// errFenced is evalPipeline's error when fence refused: not a Redis error.
type errFenced struct{ err error }

func (e errFenced) Error() string { return e.err.Error() }
func (e errFenced) Unwrap() error { return e.err }
