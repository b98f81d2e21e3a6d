package bolt_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.etcd.io/bbolt"

	"github.com/corrstore/corrstore/bolt"
	"github.com/corrstore/corrstore/bolt/bolttest"
	"github.com/corrstore/corrstore/internal/upgradetest"
	"github.com/corrstore/corrstore/store"
	"github.com/corrstore/corrstore/store/storetest"
)

// testdata/schema1.db was written by the schema-1 code; see
// testdata/README.md for what it holds and how it was made. t0 is the
// fake clock's start there.
var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// idemID is the ID schema 1 derived from shop's idempotency key order-7.
const idemID = "779fbd59-6a64-5937-ae86-c96d6dc9309d"

// schema1Copy copies testdata/schema1.db into a temp dir.
func schema1Copy(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "v1.db")
	bolttest.CopySchema1(t, path)
	return path
}

// rawUpdate edits a closed file with bbolt directly.
func rawUpdate(t *testing.T, path string, fn func(tx *bbolt.Tx) error) {
	t.Helper()
	db, err := bbolt.Open(path, 0o600, nil)
	require.NoError(t, err)
	require.NoError(t, db.Update(fn))
	require.NoError(t, db.Close())
}

func rawSchema(t *testing.T, path string) string {
	t.Helper()
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{ReadOnly: true})
	require.NoError(t, err)
	defer db.Close()
	var v string
	require.NoError(t, db.View(func(tx *bbolt.Tx) error {
		v = string(tx.Bucket([]byte("meta")).Get([]byte("schema")))
		return nil
	}))
	return v
}

// logRecords captures JSON log lines.
type logRecords struct{ bytes.Buffer }

func (l *logRecords) logger() *slog.Logger { return slog.New(slog.NewJSONHandler(&l.Buffer, nil)) }

// find returns the first record with that message.
func (l *logRecords) find(t *testing.T, msg string) map[string]any {
	t.Helper()
	for _, line := range bytes.Split(l.Bytes(), []byte("\n")) {
		var m map[string]any
		if json.Unmarshal(line, &m) == nil && m["msg"] == msg {
			return m
		}
	}
	return nil
}

func ref(ns, id string) store.Ref { return store.Ref{Namespace: ns, ID: id} }

func TestUpgradeSchema1(t *testing.T) {
	path := schema1Copy(t)
	// A record schema 1 could not decode, not yet set aside: the upgrade
	// sets it aside instead of failing.
	rawUpdate(t, path, func(tx *bbolt.Tx) error {
		return tx.Bucket([]byte("corr")).Put([]byte("junk-1"), []byte("\x01{"))
	})
	var logs logRecords
	clk := store.NewFakeClock(t0.Add(30 * time.Second))
	s := open(t, bolt.Options{Path: path, Clock: clk, NoSync: true, Logger: logs.logger()})
	ctx := context.Background()

	r := s.Upgraded()
	require.Equal(t, bolt.UpgradeReport{Path: path, From: 1, To: 3, Records: 6, Quarantined: 1, QuarantineKept: 1,
		IdempotencyKeys: 1, EarlyReplies: 1, IndexEntries: 6 + 3 + 3 + 2 + 1, RepliesApart: 3}, r,
		"6 created, 3 pending (deadline and pending), 2 purgeable, 1 dispatch pending: %s", r)
	line := logs.find(t, "upgraded the file's schema")
	require.NotNil(t, line, "the upgrade is logged: %s", logs.String())
	require.Equal(t, "bolt", line["component"])
	require.EqualValues(t, 6, line["records"])
	require.EqualValues(t, 1, line["from"])
	require.EqualValues(t, 3, line["to"])
	require.NoError(t, s.Verify(ctx))

	// Every record, under its ref.
	get := func(ns, id string) *store.Correlation {
		t.Helper()
		c, err := s.Get(ctx, ref(ns, id))
		require.NoError(t, err, "%s/%s", ns, id)
		require.Equal(t, ns, c.Namespace)
		require.Equal(t, id, c.ID)
		return c
	}
	c := get("default", "pend-1")
	require.Equal(t, store.StatePending, c.State)
	require.Equal(t, map[string]string{"workflow": "wf-1", "step": "charge"}, c.Labels)
	require.Equal(t, store.Callback{Handler: "billing", Data: []byte(`{"order":42}`)}, c.Callback)
	require.Equal(t, "payments", c.Destination)
	require.Empty(t, c.Nonce, "schema 1 had no nonce")
	c = get("default", "gather-1")
	require.Equal(t, store.StateCompleted, c.State)
	require.Len(t, c.Replies, 2)
	require.Equal(t, 1, c.LateCount)
	c = get("default", "timeout-1")
	require.Equal(t, store.StateTimedOut, c.State)
	require.Equal(t, store.DispatchPending, c.Dispatch.State)
	c = get("shop", "cancel-1")
	require.Equal(t, store.StateCancelled, c.State)
	require.Equal(t, store.DispatchDone, c.Dispatch.State)
	c = get("shop", idemID)
	require.Equal(t, "order-7", c.IdempotencyKey)
	c = get("shop", "pend-2")
	require.Len(t, c.Replies, 1)

	// Not in another namespace; set-aside records stay set aside.
	_, err := s.Get(ctx, ref("default", "cancel-1"))
	require.ErrorIs(t, err, store.ErrNotFound)
	_, err = s.Get(ctx, ref("shop", "pend-1"))
	require.ErrorIs(t, err, store.ErrNotFound)
	for _, id := range []string{"bad-1", "junk-1"} {
		_, err = s.Get(ctx, ref("default", id))
		require.ErrorIs(t, err, store.ErrCorrupt, id)
	}

	// Stats from the rebuilt counters and pending index.
	st, err := s.Stats(ctx, "")
	require.NoError(t, err)
	require.EqualValues(t, 1, st.EarlyReplies)
	def, shop := st.Namespaces["default"], st.Namespaces["shop"]
	require.Equal(t, map[store.State]int64{store.StatePending: 1, store.StateCompleted: 1, store.StateTimedOut: 1}, def.States)
	require.Equal(t, map[store.DispatchState]int64{store.DispatchPending: 1}, def.Dispatch)
	require.Equal(t, map[store.State]int64{store.StatePending: 2, store.StateCancelled: 1}, shop.States)
	require.Equal(t, map[store.DispatchState]int64{store.DispatchDone: 1}, shop.Dispatch)
	require.True(t, def.OldestPending.Equal(t0), "%s", def.OldestPending)
	require.True(t, shop.OldestPending.Equal(t0.Add(21*time.Second)), "%s", shop.OldestPending)
	// Stored bytes, counted afresh: pend-1's callback data {"order":42} (12),
	// gather-1's replies "A" and "B" and late "C" (3 each); pend-2's reply
	// {"ok":true} (11). Schema 1 kept no such counter.
	require.Equal(t, int64(12+3+3+3), def.Bytes)
	require.Equal(t, int64(11), shop.Bytes)

	// List pages through the created index, in creation order.
	var ids []string
	for _, c := range storetest.ListAll(ctx, t, s, store.Filter{Order: store.OldestFirst, Limit: 2}) {
		ids = append(ids, c.Ref().String())
	}
	require.Equal(t, []string{"default/pend-1", "default/gather-1", "shop/cancel-1", "default/timeout-1",
		"shop/" + idemID, "shop/pend-2"}, ids)
	page, err := s.List(ctx, store.Filter{Namespace: "shop"})
	require.NoError(t, err)
	require.Len(t, page.Items, 3)

	// The idempotency key finds its record.
	res, err := s.Register(ctx, &store.Correlation{Namespace: "shop", IdempotencyKey: "order-7", Timeout: time.Hour})
	require.NoError(t, err)
	require.False(t, res.Created)
	require.Equal(t, idemID, res.Correlation.ID)

	// The early reply buffered by schema 1 waits in the default namespace:
	// not in shop, where the same ID is another correlation.
	res, err = s.Register(ctx, &store.Correlation{ID: "early-1", Namespace: "shop", Timeout: time.Hour})
	require.NoError(t, err)
	require.Equal(t, 0, res.EarlyApplied)
	res, err = s.Register(ctx, &store.Correlation{ID: "early-1", Timeout: time.Hour})
	require.NoError(t, err)
	require.Equal(t, 1, res.EarlyApplied)
	require.Equal(t, store.StateCompleted, res.Correlation.State)

	// Dispatch, expiry and purge walk the rebuilt indexes.
	claimed, err := s.ClaimDispatch(ctx, store.ClaimRequest{Instance: "inst-b", Handlers: []string{"billing"}, Now: clk.Now(), Lease: 30 * time.Second, Limit: 10})
	require.NoError(t, err)
	require.Len(t, claimed, 1)
	require.Equal(t, "default/timeout-1", claimed[0].Ref().String())
	_, err = s.AckDispatch(ctx, claimed[0].Ref(), store.Claim{Instance: "inst-b", Attempt: 1})
	require.NoError(t, err)
	// A reply bound to a registration with a nonce does not reach a record
	// of schema 1; one bound to no nonce (a token signed before nonces) does.
	nonce, none := store.NewNonce(), ""
	_, err = s.Deliver(ctx, ref("default", "pend-1"), store.Reply{Body: []byte(`"paid"`), Nonce: &nonce})
	require.ErrorIs(t, err, store.ErrNotFound)
	d, err := s.Deliver(ctx, ref("default", "pend-1"), store.Reply{Body: []byte(`"paid"`), Nonce: &none})
	require.NoError(t, err)
	require.Equal(t, store.DeliverCompleted, d.Status)
	due, err := s.ExpireDue(ctx, t0.Add(2*time.Hour), 10)
	require.NoError(t, err)
	require.Len(t, due, 3, "shop's idempotent registration, pend-2 and shop/early-1")
	n, err := s.Purge(ctx, t0.Add(3*time.Hour), 100)
	require.NoError(t, err)
	require.Equal(t, 7, n, "all decided but pend-1, whose dispatch is pending")
	_, err = s.Get(ctx, ref("default", "pend-1"))
	require.NoError(t, err)
	require.NoError(t, s.Verify(ctx))
	require.NoError(t, s.Close())
	require.Equal(t, "3", rawSchema(t, path))

	// Opening again does nothing more.
	logs.Reset()
	again, err := bolt.Open(bolt.Options{Path: path, NoSync: true, Logger: logs.logger()})
	require.NoError(t, err)
	require.False(t, again.Upgraded().Upgraded())
	require.Nil(t, logs.find(t, "upgraded the file's schema"))
	require.NoError(t, again.Verify(ctx))
	require.NoError(t, again.Close())
}

func TestUpgradeNeedsReadWrite(t *testing.T) {
	path := schema1Copy(t)
	_, err := bolt.Open(bolt.Options{Path: path, ReadOnly: true})
	var se *bolt.SchemaError
	require.ErrorAs(t, err, &se)
	require.Equal(t, "corrstore: "+path+" has schema 1; this build reads 3 and upgrades the file on a read-write open: "+
		"open it read-write once (run `corrstore serve` on it, or `corrstore upgrade --store bolt://"+path+"`)", err.Error())
	require.Equal(t, "1", rawSchema(t, path), "a read-only open changes nothing")

	// A snapshot (the CLI reading a file a daemon holds) says the same,
	// naming the file rather than its copy, at once.
	_, err = bolt.OpenSnapshot(context.Background(), bolt.Options{Path: path})
	require.ErrorAs(t, err, &se)
	require.Equal(t, path, se.Path)
	require.Equal(t, 1, se.Have)
}

func TestNewerSchemaRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "v4.db")
	s, err := bolt.Open(bolt.Options{Path: path, NoSync: true})
	require.NoError(t, err)
	require.NoError(t, s.Close())
	rawUpdate(t, path, func(tx *bbolt.Tx) error {
		return tx.Bucket([]byte("meta")).Put([]byte("schema"), []byte("4"))
	})
	for _, ro := range []bool{false, true} {
		_, err := bolt.Open(bolt.Options{Path: path, ReadOnly: ro})
		require.EqualError(t, err, "corrstore: "+path+" has schema 4; this build reads up to 3: upgrade corrstore", "read-only %v", ro)
	}
	_, err = bolt.Upgrade(bolt.Options{Path: path})
	require.Error(t, err)
	require.Equal(t, "4", rawSchema(t, path), "a newer file is left alone")
}

func TestUpgradeFunc(t *testing.T) {
	path := schema1Copy(t)
	r, err := bolt.Upgrade(bolt.Options{Path: path, NoSync: true, Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	require.True(t, r.Upgraded())
	require.Equal(t, 6, r.Records)
	require.Contains(t, r.String(), "upgraded "+path+" from schema 1 to 3: 6 records")

	r, err = bolt.Upgrade(bolt.Options{Path: path, NoSync: true})
	require.NoError(t, err)
	require.False(t, r.Upgraded())
	require.Equal(t, path+" is already at schema 3: nothing to do", r.String())

	missing := filepath.Join(t.TempDir(), "missing.db")
	_, err = bolt.Upgrade(bolt.Options{Path: missing})
	require.True(t, errors.Is(err, os.ErrNotExist), "%v", err)
	require.NoFileExists(t, missing, "Upgrade never creates a file")
}

func TestUpgradeSchema2(t *testing.T) {
	path := filepath.Join(t.TempDir(), "v2.db")
	bolttest.CopySchema2(t, path)
	clk := store.NewFakeClock(upgradetest.T0.Add(14 * time.Second))
	s := open(t, bolt.Options{Path: path, Clock: clk, NoSync: true})
	require.Equal(t, bolt.UpgradeReport{Path: path, From: 2, To: 3, Records: 4, RepliesApart: 6,
		IndexEntries: 4 + 3 + 3 + 1}, s.Upgraded(), "4 created, 3 pending (deadline and pending), 1 dispatch")
	require.NoError(t, s.Verify(context.Background()))
	upgradetest.CheckSchema2(t, s)
	require.NoError(t, s.Verify(context.Background()))
}
