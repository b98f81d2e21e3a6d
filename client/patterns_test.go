package client_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/corrstore/corrstore/client"
	"github.com/corrstore/corrstore/store"
)

func TestGatherAll(t *testing.T) {
	e := newEnv(t)
	c := e.client(t, "a", nil)
	run(t, c)
	dests := []string{"quotes.a", "quotes.b", "quotes.c"}
	for _, d := range dests {
		serve(t, c, d, func(_ context.Context, in client.Incoming) ([]byte, error) {
			if in.Destination == "quotes.b" {
				return nil, errors.New("no stock")
			}
			return []byte("quote from " + in.Destination), nil
		})
	}
	g, err := c.Gather(t.Context(), dests, []byte("widget"), client.Options{})
	require.NoError(t, err)
	require.False(t, g.Partial)
	require.Len(t, g.Replies, 3)
	from := map[string]string{}
	for _, r := range g.Replies {
		from[r.From] = string(r.Body) + r.Error
	}
	require.Equal(t, map[string]string{"quotes.a": "quote from quotes.a", "quotes.b": "no stock", "quotes.c": "quote from quotes.c"}, from)
}

// At the deadline a gather with Quorum replies is a partial success; with
// fewer it times out, keeping what came.
func TestGatherQuorumAtDeadline(t *testing.T) {
	for _, tc := range []struct {
		name     string
		answered int
		wantErr  error
	}{
		{"quorum met", 2, nil},
		{"below quorum", 1, client.ErrTimedOut},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			c := e.client(t, "a", nil)
			run(t, c)
			dests := []string{"q.a", "q.b", "q.c", "q.d"}
			type result struct {
				g   client.Gathered
				err error
			}
			res := make(chan result, 1)
			go func() {
				g, err := c.Gather(t.Context(), dests, nil, client.Options{ID: "g1", Quorum: 2, Timeout: time.Minute})
				res <- result{g, err}
			}()
			for _, d := range dests[:tc.answered] {
				serve(t, c, d, echo)
			}
			e.waitState(t, "g1", func(c *store.Correlation) bool { return len(c.Replies) == tc.answered })
			e.clock.Add(time.Minute)
			e.reap(t)
			r := <-res
			require.Len(t, r.g.Replies, tc.answered)
			require.Equal(t, "g1", r.g.ID)
			if tc.wantErr != nil {
				require.ErrorIs(t, r.err, tc.wantErr)
				require.False(t, r.g.Partial)
				return
			}
			require.NoError(t, r.err)
			require.True(t, r.g.Partial)
		})
	}
}

func TestGatherExpectFewerThanDestinations(t *testing.T) {
	e := newEnv(t)
	c := e.client(t, "a", nil)
	run(t, c)
	serve(t, c, "q.fast", echo)
	g, err := c.Gather(t.Context(), []string{"q.fast", "q.slow"}, nil, client.Options{Expect: 1})
	require.NoError(t, err)
	require.Len(t, g.Replies, 1)
	require.Equal(t, "q.fast", g.Replies[0].From)
	_, err = c.Gather(t.Context(), nil, nil, client.Options{})
	require.ErrorIs(t, err, store.ErrInvalid)
}

// Replies that arrive in any order come out of Stream in Seq order.
func TestStreamShuffled(t *testing.T) {
	e := newEnv(t)
	c := e.client(t, "a", func(cfg *client.Config) { cfg.Transport = heldTransport{e.tr} })
	run(t, c)
	const n = 20
	type item struct {
		r   store.Reply
		err error
	}
	out := make(chan item, n+1)
	go func() {
		defer close(out)
		for r, err := range c.Stream(t.Context(), "report", nil, client.Options{ID: "s1", Timeout: time.Minute}) {
			out <- item{r, err}
		}
	}()
	e.waitQueued(t, "held:report")
	req := e.tr.Take("held:report")[0]
	for _, seq := range rand.Perm(n) {
		m := client.Message{CorrelationID: req.CorrelationID, From: "report", Seq: seq, Final: seq == n-1, Body: fmt.Appendf(nil, "part %d", seq)}
		require.NoError(t, e.tr.Send(t.Context(), req.ReplyTo, m))
		if seq%3 == 0 { // and some twice
			require.NoError(t, e.tr.Send(t.Context(), req.ReplyTo, m))
		}
	}
	var got []string
	for it := range out {
		require.NoError(t, it.err)
		got = append(got, string(it.r.Body))
	}
	want := make([]string, n)
	for i := range want {
		want[i] = fmt.Sprintf("part %d", i)
	}
	require.Equal(t, want, got)
}

func TestServeStream(t *testing.T) {
	e := newEnv(t)
	c := e.client(t, "a", nil)
	run(t, c)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		done <- c.ServeStream(ctx, "count", func(_ context.Context, in client.Incoming, send func([]byte) error) error {
			for i := range 3 {
				if err := send(fmt.Appendf(nil, "%s %d", in.Body, i)); err != nil {
					return err
				}
			}
			if string(in.Body) == "fail" {
				return errors.New("disk full")
			}
			return nil
		})
	}()
	defer func() { cancel(); require.NoError(t, <-done) }()

	var got []string
	for r, err := range c.Stream(t.Context(), "count", []byte("n"), client.Options{}) {
		require.NoError(t, err)
		got = append(got, string(r.Body))
	}
	require.Equal(t, []string{"n 0", "n 1", "n 2"}, got)

	got = nil
	var last error
	for r, err := range c.Stream(t.Context(), "count", []byte("fail"), client.Options{}) {
		got = append(got, string(r.Body))
		last = err
	}
	require.Equal(t, []string{"fail 0", "fail 1", "fail 2", ""}, got)
	var re *client.ReplyError
	require.ErrorAs(t, last, &re)
	require.Equal(t, "disk full", re.Text)
}

// A stream that stops short ends with the timeout, after the replies that
// came in order; breaking out of a stream leaves it to the store.
func TestStreamTimeoutAndBreak(t *testing.T) {
	e := newEnv(t)
	c := e.client(t, "a", func(cfg *client.Config) { cfg.Transport = heldTransport{e.tr} })
	run(t, c)
	out := make(chan error, 10)
	go func() {
		defer close(out)
		for _, err := range c.Stream(t.Context(), "report", nil, client.Options{ID: "s1", Timeout: time.Minute}) {
			out <- err
		}
	}()
	e.waitQueued(t, "held:report")
	req := e.tr.Take("held:report")[0]
	for _, seq := range []int{0, 2} { // 1 never comes
		require.NoError(t, e.tr.Send(t.Context(), req.ReplyTo, client.Message{CorrelationID: req.CorrelationID, From: "r", Seq: seq}))
	}
	require.NoError(t, <-out) // seq 0
	e.waitState(t, "s1", func(c *store.Correlation) bool { return len(c.Replies) == 2 })
	e.clock.Add(time.Minute)
	e.reap(t)
	require.ErrorIs(t, <-out, client.ErrTimedOut)
	_, open := <-out
	require.False(t, open)

	// Breaking out after the first reply leaves the rest to the store.
	go func() {
		e.waitQueued(t, "held:report")
		req := e.tr.Take("held:report")[0]
		for seq := range 2 {
			_ = e.tr.Send(t.Context(), req.ReplyTo, client.Message{CorrelationID: req.CorrelationID, From: "r", Seq: seq, Final: seq == 1})
		}
	}()
	n := 0
	for _, err := range c.Stream(t.Context(), "report", nil, client.Options{ID: "s2"}) {
		require.NoError(t, err)
		n++
		break
	}
	require.Equal(t, 1, n)
	e.waitState(t, "s2", stateIs(store.StateCompleted))
}
