package reaper_test

import (
	"context"
	"fmt"
	"log"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/corrstore/corrstore/bolt"
	"github.com/corrstore/corrstore/reaper"
	"github.com/corrstore/corrstore/store"
)

// A pass decides what is due, each by its pattern: a correlation nobody
// answered times out, an optional one completes with no reply.
func Example() {
	dir, err := os.MkdirTemp("", "reaper-example-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	ctx := context.Background()
	clock := store.NewFakeClock(time.Date(2030, 1, 1, 9, 0, 0, 0, time.UTC))
	st, err := bolt.Open(bolt.Options{Path: filepath.Join(dir, "corrstore.db"), Clock: clock})
	if err != nil {
		log.Fatal(err)
	}
	defer st.Close()

	for _, c := range []*store.Correlation{
		{ID: "order-42", Timeout: 30 * time.Second},
		{ID: "audit-7", Timeout: 30 * time.Second, Optional: true},
		{ID: "order-43", Timeout: time.Hour},
	} {
		if _, err := st.Register(ctx, c); err != nil {
			log.Fatal(err)
		}
	}

	r, err := reaper.New(st, reaper.Config{Clock: clock, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		log.Fatal(err)
	}
	clock.Add(time.Minute)
	rep, err := r.RunOnce(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("expired %d: %d timed out, %d completed with no reply, lag up to %s\n",
		rep.Expired.Total(), rep.Expired.TimedOut, rep.Expired.NoReply, rep.MaxLag)
	for _, id := range []string{"order-42", "audit-7", "order-43"} {
		c, err := st.Get(ctx, store.RefOf(id))
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(id, c.State)
	}
	// Output:
	// expired 2: 1 timed out, 1 completed with no reply, lag up to 30s
	// order-42 timed_out
	// audit-7 completed
	// order-43 pending
}

// A service runs the reaper next to its other workers until it is told to
// stop. Every replica may run one.
func ExampleReaper_Run() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	st, err := bolt.Open(bolt.Options{Path: "corrstore.db"})
	if err != nil {
		log.Fatal(err)
	}
	defer st.Close()

	r, err := reaper.New(st, reaper.Config{
		Interval:  time.Second,
		Retention: 72 * time.Hour,
		Logger:    slog.Default(),
	})
	if err != nil {
		log.Fatal(err)
	}
	if err := r.Run(ctx); err != nil { // returns nil when ctx ends
		log.Fatal(err)
	}
}
