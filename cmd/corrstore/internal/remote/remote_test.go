package remote

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"

	"github.com/corrstore/corrstore/bolt"
	"github.com/corrstore/corrstore/cmd/corrstore/internal/httpapi"
	"github.com/corrstore/corrstore/store"
)

func serve(t *testing.T) *Client {
	t.Helper()
	st, err := bolt.Open(bolt.Options{Path: filepath.Join(t.TempDir(), "r.db"), NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	api, err := httpapi.New(httpapi.Config{Store: st, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(api)
	c, err := New(srv.URL, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.Close()
		api.Drain()
		srv.Close()
		api.Close()
		st.Close()
	})
	return c
}

func TestClientAddressesRefs(t *testing.T) {
	c := serve(t)
	ctx := context.Background()
	bin := []byte{0xff, 0, 'x'}
	for _, ns := range []string{"", "team-b"} {
		res, err := c.Register(ctx, &store.Correlation{ID: "x", Namespace: ns, Pattern: store.PatternGather, Expect: 2,
			Callback: store.Callback{Handler: "h", Data: bin}})
		if err != nil || !res.Created {
			t.Fatalf("register in %q: %+v, %v", ns, res, err)
		}
	}
	b := store.Ref{Namespace: "team-b", ID: "x"}
	d, err := c.Deliver(ctx, b, store.Reply{From: "1", Body: bin})
	if err != nil || d.Status != store.DeliverAccepted || d.Correlation.Held.Count != 1 {
		t.Fatalf("deliver: %+v, %v", d, err)
	}
	got, err := c.Get(ctx, b)
	if err != nil || string(got.Replies[0].Body) != string(bin) || string(got.Callback.Data) != string(bin) {
		t.Fatalf("get: %+v, %v", got, err)
	}
	if def, err := c.Get(ctx, store.Ref{ID: "x"}); err != nil || def.Namespace != "default" || len(def.Replies) != 0 {
		t.Errorf("get in the default namespace: %+v, %v", def, err)
	}
	// As with a store, an empty namespace lists and counts every namespace.
	page, err := c.List(ctx, store.Filter{})
	if err != nil || len(page.Items) != 2 {
		t.Errorf("list: %d items, %v", len(page.Items), err)
	}
	if st, err := c.Stats(ctx, ""); err != nil || len(st.Namespaces) != 2 {
		t.Errorf("stats: %+v, %v", st, err)
	}
	if _, err := c.Cancel(ctx, store.Ref{Namespace: "team-c", ID: "x"}, ""); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("cancel of a missing ref: %v", err)
	}
}

func TestErrorsMapToSentinels(t *testing.T) {
	for status, want := range map[int]error{
		http.StatusServiceUnavailable: store.ErrUnavailable,
		http.StatusTooManyRequests:    ErrLimited,
		http.StatusBadRequest:         store.ErrInvalid,
		http.StatusNotFound:           store.ErrNotFound,
	} {
		if err := errorOf(status, []byte(`{"error":{"code":"x","message":"m"}}`)); !errors.Is(err, want) {
			t.Errorf("%d: %v, want %v", status, err, want)
		}
	}
}
