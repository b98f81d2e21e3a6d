package client_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/corrstore/corrstore/bolt"
	"github.com/corrstore/corrstore/client"
	"github.com/corrstore/corrstore/client/memtransport"
	"github.com/corrstore/corrstore/reaper"
	"github.com/corrstore/corrstore/store"
)

// exampleSetup opens a bbolt store in a temporary directory and a client
// on an in-process transport, runs it, and returns a function that stops
// everything.
func exampleSetup(clock store.Clock) (*client.Client, *bolt.Store, func()) {
	dir, err := os.MkdirTemp("", "client-example-")
	if err != nil {
		log.Fatal(err)
	}
	st, err := bolt.Open(bolt.Options{Path: filepath.Join(dir, "orders.db"), Clock: clock})
	if err != nil {
		log.Fatal(err)
	}
	c, err := client.New(client.Config{
		Store:     st,
		Transport: memtransport.New(),
		Service:   "orders",
		Clock:     clock,
		Logger:    slog.New(slog.DiscardHandler),
	})
	if err != nil {
		log.Fatal(err)
	}
	return c, st, func() { st.Close(); os.RemoveAll(dir) }
}

// runAll runs fns until the returned stop is called, which waits for them.
func runAll(fns ...func(context.Context) error) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{}, len(fns))
	for _, fn := range fns {
		go func() { _ = fn(ctx); done <- struct{}{} }()
	}
	return func() {
		cancel()
		for range fns {
			<-done
		}
	}
}

// Request registers the correlation, sends the request, and waits for the
// reply through the store.
func ExampleClient_Request() {
	c, _, cleanup := exampleSetup(store.RealClock{})
	defer cleanup()
	stop := runAll(c.Run, func(ctx context.Context) error {
		return c.Serve(ctx, "payments", func(_ context.Context, in client.Incoming) ([]byte, error) {
			return []byte("paid " + string(in.Body)), nil
		})
	})
	defer stop()

	reply, err := c.Request(context.Background(), "payments", []byte("order 42"), client.Options{Timeout: 10 * time.Second})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s from %s\n", reply.Body, reply.From)
	// Output:
	// paid order 42 from payments
}

// Send returns at once; the outcome goes to the named handler, on
// whichever replica claims it, after a restart too. Here nobody answers,
// and the reaper times the request out.
func ExampleClient_Send() {
	clock := store.NewFakeClock(time.Date(2030, 1, 1, 9, 0, 0, 0, time.UTC))
	c, st, cleanup := exampleSetup(clock)
	defer cleanup()

	done := make(chan struct{})
	c.Handle("resume-order", func(_ context.Context, o client.Outcome) error {
		fmt.Printf("%s (%s): %s, err: %v\n", o.ID, o.Callback.Data, o.State, o.Err())
		close(done)
		return nil
	})
	stop := runAll(c.Run)
	defer stop()

	id, err := c.Send(context.Background(), "shipping", []byte("ship order 42"), client.Options{
		ID: "order-42-ship", Timeout: time.Minute, Handler: "resume-order", Data: []byte("workflow w-7, step 3"),
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("sent", id)

	clock.Add(2 * time.Minute)
	r, err := reaper.New(st, reaper.Config{Clock: clock, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		log.Fatal(err)
	}
	if _, err := r.RunOnce(context.Background()); err != nil {
		log.Fatal(err)
	}
	<-done
	// Output:
	// sent order-42-ship
	// order-42-ship (workflow w-7, step 3): timed_out, err: client: timed out: order-42-ship (deadline, 0 replies)
}

// Extend is the heartbeat of work that takes longer than planned: the
// waiters, on any replica, wait for the new deadline, and a reply before
// it is not late.
func ExampleClient_Extend() {
	clock := store.NewFakeClock(time.Date(2030, 1, 1, 9, 0, 0, 0, time.UTC))
	c, _, cleanup := exampleSetup(clock)
	defer cleanup()

	id, err := c.Send(context.Background(), "reports", []byte("year-end report"), client.Options{
		ID: "report-2029", Timeout: time.Minute,
	})
	if err != nil {
		log.Fatal(err)
	}
	clock.Add(50 * time.Second) // the report is not done: ask for 10 more minutes
	corr, err := c.Extend(context.Background(), id, clock.Now().Add(10*time.Minute))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(corr.Ref(), corr.State, "until", corr.Deadline.Format(time.TimeOnly))
	// Output:
	// default/report-2029 pending until 09:10:50
}

// Cancel decides a pending correlation: its waiters return ErrCancelled
// and its handler gets the outcome.
func ExampleClient_Cancel() {
	c, _, cleanup := exampleSetup(store.RealClock{})
	defer cleanup()

	id, err := c.Send(context.Background(), "shipping", []byte("ship order 42"), client.Options{ID: "order-42-ship"})
	if err != nil {
		log.Fatal(err)
	}
	corr, err := c.Cancel(context.Background(), id, "order withdrawn by the customer")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(corr.ID, corr.State+":", corr.Outcome.Reason)
	fmt.Println(client.OutcomeErr(corr))
	// Output:
	// order-42-ship cancelled: order withdrawn by the customer
	// client: cancelled: order-42-ship: order withdrawn by the customer
}

// Gather scatters a request and collects the replies; one responder
// answers with an error, which stays in its reply.
func ExampleClient_Gather() {
	c, _, cleanup := exampleSetup(store.RealClock{})
	defer cleanup()
	quote := func(ctx context.Context, in client.Incoming) ([]byte, error) {
		if in.Destination == "supplier.c" {
			return nil, errors.New("out of stock")
		}
		return []byte(strings.TrimPrefix(in.Destination, "supplier.") + ": 10 EUR"), nil
	}
	dests := []string{"supplier.a", "supplier.b", "supplier.c"}
	fns := []func(context.Context) error{c.Run}
	for _, d := range dests {
		fns = append(fns, func(ctx context.Context) error { return c.Serve(ctx, d, quote) })
	}
	stop := runAll(fns...)
	defer stop()

	g, err := c.Gather(context.Background(), dests, []byte("100 widgets"), client.Options{Timeout: 10 * time.Second})
	if err != nil {
		log.Fatal(err)
	}
	var lines []string
	for _, r := range g.Replies {
		lines = append(lines, fmt.Sprintf("%s: %q error=%q", r.From, r.Body, r.Error))
	}
	slices.Sort(lines) // replies come in arrival order
	fmt.Println(strings.Join(lines, "\n"))
	// Output:
	// supplier.a: "a: 10 EUR" error=""
	// supplier.b: "b: 10 EUR" error=""
	// supplier.c: "" error="out of stock"
}

// Stream yields the replies in Seq order; ServeStream numbers them and
// marks the last one Final.
func ExampleClient_Stream() {
	c, _, cleanup := exampleSetup(store.RealClock{})
	defer cleanup()
	stop := runAll(c.Run, func(ctx context.Context) error {
		return c.ServeStream(ctx, "reports", func(_ context.Context, in client.Incoming, send func([]byte) error) error {
			for _, month := range []string{"jan", "feb", "mar"} {
				if err := send([]byte(string(in.Body) + " " + month)); err != nil {
					return err
				}
			}
			return nil
		})
	})
	defer stop()

	for r, err := range c.Stream(context.Background(), "reports", []byte("sales"), client.Options{Timeout: 10 * time.Second}) {
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(r.Seq, string(r.Body), r.Final)
	}
	// Output:
	// 0 sales jan false
	// 1 sales feb false
	// 2 sales mar true
}

// Serve is the responder side: it answers each request to its ReplyTo, and
// a handler's error becomes an error reply.
func ExampleClient_Serve() {
	c, _, cleanup := exampleSetup(store.RealClock{})
	defer cleanup()
	stop := runAll(c.Run, func(ctx context.Context) error {
		return c.Serve(ctx, "inventory", func(_ context.Context, in client.Incoming) ([]byte, error) {
			if string(in.Body) == "unicorn" {
				return nil, fmt.Errorf("no such item %q", in.Body)
			}
			return []byte("3 in stock"), nil
		})
	})
	defer stop()

	for _, item := range []string{"widget", "unicorn"} {
		reply, err := c.Request(context.Background(), "inventory", []byte(item), client.Options{Timeout: 10 * time.Second})
		var re *client.ReplyError
		switch {
		case errors.As(err, &re):
			fmt.Printf("%s: error reply from %s: %s\n", item, re.From, re.Text)
		case err != nil:
			log.Fatal(err)
		default:
			fmt.Printf("%s: %s\n", item, reply.Body)
		}
	}
	// Output:
	// widget: 3 in stock
	// unicorn: error reply from inventory: no such item "unicorn"
}
