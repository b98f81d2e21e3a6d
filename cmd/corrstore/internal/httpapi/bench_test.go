package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/corrstore/corrstore/bolt"
	"github.com/corrstore/corrstore/cmd/corrstore/internal/wire"
	"github.com/corrstore/corrstore/store"
)

// BenchmarkRegisterReply measures register+reply over loopback HTTP with 64
// concurrent clients, next to a baseline: the same client against a bare
// net/http handler that only decodes and encodes the same JSON. Run with
// -bench RegisterReply; compare the pairs/s of the two.
func BenchmarkRegisterReply(b *testing.B) {
	b.Run("baseline", func(b *testing.B) {
		mux := http.NewServeMux()
		mux.HandleFunc("POST /v1/correlations", func(w http.ResponseWriter, r *http.Request) {
			var req wire.RegisterRequest
			if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
				http.Error(w, err.Error(), 400)
				return
			}
			writeJSON(w, 201, &wire.Correlation{ID: req.ID, Namespace: "default", State: "pending", Version: 1,
				Replies: []wire.Reply{}, Late: []wire.Reply{}, Events: []wire.Event{{Type: "registered"}}, ReplyToken: "x"})
		})
		mux.HandleFunc("POST /v1/correlations/{id}/replies", func(w http.ResponseWriter, r *http.Request) {
			var req wire.ReplyRequest
			if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
				http.Error(w, err.Error(), 400)
				return
			}
			writeJSON(w, 200, wire.DeliverResponse{Status: "completed", Correlation: &wire.Correlation{ID: r.PathValue("id"),
				State: "completed", Replies: []wire.Reply{}, Late: []wire.Reply{}, Events: []wire.Event{}}})
		})
		benchPairs(b, mux)
	})
	// corrstore fsyncs every group commit; nosync shows the HTTP layer's own cost.
	for _, noSync := range []bool{false, true} {
		name := "corrstore"
		if noSync {
			name = "corrstore-nosync"
		}
		b.Run(name, func(b *testing.B) {
			st, err := bolt.Open(bolt.Options{Path: filepath.Join(b.TempDir(), "b.db"), NoSync: noSync})
			if err != nil {
				b.Fatal(err)
			}
			defer st.Close()
			api, err := New(Config{Store: st, Logger: discardLogger()})
			if err != nil {
				b.Fatal(err)
			}
			defer api.Close()
			benchPairs(b, api)
		})
	}
	// The same server over a map instead of a durable store (see memStore):
	// what the HTTP layer costs by itself, so that the ratio above can be
	// split into the HTTP layer's share and the store's.
	b.Run("corrstore-memory", func(b *testing.B) {
		st, err := bolt.Open(bolt.Options{Path: filepath.Join(b.TempDir(), "b.db"), NoSync: true})
		if err != nil {
			b.Fatal(err)
		}
		defer st.Close()
		api, err := New(Config{Store: &memStore{Store: st, lim: store.Limits{}.WithDefaults(), recs: map[string][]byte{}}, Logger: discardLogger()})
		if err != nil {
			b.Fatal(err)
		}
		defer api.Close()
		benchPairs(b, api)
	})
}

// memStore keeps records in a map, encoded as a store keeps them, for
// Register and Deliver; every other method is the embedded store's.
type memStore struct {
	lim store.Limits // store defaults
	store.Store
	mu   sync.Mutex
	recs map[string][]byte
}

func (m *memStore) Register(_ context.Context, c *store.Correlation) (store.RegisterResult, error) {
	p, err := store.Prepare(c, time.Now(), m.lim)
	if err != nil {
		return store.RegisterResult{}, err
	}
	enc, err := store.MarshalCorrelation(p)
	if err != nil {
		return store.RegisterResult{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	key := p.Ref().String()
	if _, ok := m.recs[key]; ok {
		return store.RegisterResult{}, fmt.Errorf("memStore: %s registered twice", key)
	}
	m.recs[key] = enc
	return store.RegisterResult{Correlation: p, Created: true}, nil
}

func (m *memStore) Deliver(_ context.Context, ref store.Ref, r store.Reply) (store.DeliverResult, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	key := ref.String()
	c, err := store.UnmarshalCorrelation(m.recs[key])
	if err != nil {
		return store.DeliverResult{}, err
	}
	now := time.Now()
	r.ReceivedAt = now
	st, err := c.ApplyReply(r, now, m.lim)
	if err != nil {
		return store.DeliverResult{}, err
	}
	if m.recs[key], err = store.MarshalCorrelation(c); err != nil {
		return store.DeliverResult{}, err
	}
	return store.DeliverResult{Status: st, Correlation: c}, nil
}

var benchRun atomic.Int64

func benchPairs(b *testing.B, h http.Handler) {
	srv := httptest.NewServer(h)
	defer srv.Close()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64, MaxConnsPerHost: 64}}
	defer client.CloseIdleConnections()
	post := func(path string, body []byte, want int) {
		res, err := client.Post(srv.URL+path, "application/json", bytes.NewReader(body))
		if err != nil {
			b.Error(err)
			return
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		if res.StatusCode != want {
			b.Errorf("%s: %d", path, res.StatusCode)
		}
	}
	run := benchRun.Add(1)
	var (
		next atomic.Int64
		mu   sync.Mutex
		lat  []time.Duration
		wg   sync.WaitGroup
	)
	b.ResetTimer()
	start := time.Now()
	for range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []time.Duration
			for {
				i := next.Add(1)
				if i > int64(b.N) {
					break
				}
				id := fmt.Sprintf("b%d-%d", run, i)
				t0 := time.Now()
				post("/v1/correlations", fmt.Appendf(nil, `{"id":%q,"timeout":"1h","destination":"svc","callback":{"handler":"h","data":{"n":%d}}}`, id, i), 201)
				post("/v1/correlations/"+id+"/replies", []byte(`{"id":"r","body":{"ok":true}}`), 200)
				mine = append(mine, time.Since(t0))
			}
			mu.Lock()
			lat = append(lat, mine...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	b.ReportMetric(float64(len(lat))/elapsed.Seconds(), "pairs/s")
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
}
