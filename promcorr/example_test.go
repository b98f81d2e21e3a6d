package promcorr_test

import (
	"context"
	"fmt"
	"log"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/corrstore/corrstore/bolt"
	"github.com/corrstore/corrstore/client"
	"github.com/corrstore/corrstore/client/memtransport"
	"github.com/corrstore/corrstore/promcorr"
	"github.com/corrstore/corrstore/reaper"
)

// A service that embeds corrstore wires its bolt store, reaper and client
// to the metrics corrstore serve exports, in its own registry.
func Example() {
	dir, err := os.MkdirTemp("", "promcorr-example-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	logger := slog.New(slog.DiscardHandler)

	reg := prometheus.NewRegistry() // or prometheus.DefaultRegisterer
	m := promcorr.New(reg, promcorr.Options{})

	raw, err := bolt.Open(bolt.Options{Path: filepath.Join(dir, "orders.db")})
	if err != nil {
		log.Fatal(err)
	}
	st := m.Store(raw) // every store call is timed and counted
	defer st.Close()
	m.WatchStore(st) // pending, oldest pending age, backlog at each scrape

	c, err := client.New(client.Config{
		Store: st, Transport: memtransport.New(), Service: "orders", Logger: logger,
		Metrics: m.Client(),
	})
	if err != nil {
		log.Fatal(err)
	}
	r, err := reaper.New(st, reaper.Config{Logger: logger, Metrics: m.Reaper()})
	if err != nil {
		log.Fatal(err)
	}
	// The service serves the registry beside its own metrics:
	// http.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{}, 2)
	go func() { _ = c.Run(ctx); done <- struct{}{} }()
	go func() {
		_ = c.Serve(ctx, "payments", func(_ context.Context, in client.Incoming) ([]byte, error) {
			return []byte("paid " + string(in.Body)), nil
		})
		done <- struct{}{}
	}()
	if _, err := c.Request(ctx, "payments", []byte("order 42"), client.Options{Timeout: 10 * time.Second}); err != nil {
		log.Fatal(err)
	}
	if _, err := r.RunOnce(ctx); err != nil {
		log.Fatal(err)
	}
	cancel()
	<-done
	<-done

	rec := httptest.NewRecorder()
	promhttp.HandlerFor(reg, promhttp.HandlerOpts{}).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	for line := range strings.Lines(rec.Body.String()) {
		for _, want := range []string{
			"corrstore_registered_total ",
			`corrstore_replies_total{status="completed"}`,
			`corrstore_outcomes_total{state="completed"}`,
			`corrstore_client_sent_total{destination="payments"`,
			`corrstore_client_replies_total{status="completed"}`,
			"corrstore_pending{",
			"corrstore_reaper_pass_duration_seconds_count",
			`corrstore_reaper_pass_failures_total{phase="expire"}`,
			`corrstore_store_op_errors_total{kind="unavailable",op="deliver"}`,
		} {
			if strings.HasPrefix(line, want) {
				fmt.Print(line)
			}
		}
	}
	// Output:
	// corrstore_client_replies_total{status="completed"} 1
	// corrstore_client_sent_total{destination="payments",result="error"} 0
	// corrstore_client_sent_total{destination="payments",result="ok"} 1
	// corrstore_outcomes_total{state="completed"} 1
	// corrstore_pending{namespace="default"} 0
	// corrstore_reaper_pass_duration_seconds_count 1
	// corrstore_reaper_pass_failures_total{phase="expire"} 0
	// corrstore_registered_total 1
	// corrstore_replies_total{status="completed"} 1
	// corrstore_store_op_errors_total{kind="unavailable",op="deliver"} 0
}
