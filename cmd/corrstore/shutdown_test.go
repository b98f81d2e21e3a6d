package main

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/corrstore/corrstore/bolt"
	"github.com/corrstore/corrstore/store"
)

// waitFor polls cond until it holds; it fails the test after 10 s. It waits
// for a state change in another goroutine, not for time to pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestShutdownFinishesInFlight: Close (what SIGTERM calls) stops taking new
// connections, answers the long polls at once, lets a registration whose
// body is still arriving finish with 201, and only then closes the store —
// and that registration is in the file afterwards.
func TestShutdownFinishesInFlight(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.db")
	m := NewMain()
	m.Logger = quiet()
	require.NoError(t, m.ParseFlags([]string{"--listen", "127.0.0.1:0", "--store", "bolt://" + path, "--max-wait", "1m"}))
	require.NoError(t, m.Run(context.Background()))
	base := "http://" + m.Addr.String()
	client := &http.Client{Transport: &http.Transport{}}
	defer client.CloseIdleConnections()

	res, err := client.Post(base+"/v1/correlations", "application/json", strings.NewReader(`{"id":"polled","timeout":"1h"}`))
	require.NoError(t, err)
	res.Body.Close()
	require.Equal(t, http.StatusCreated, res.StatusCode)

	// A long poll that would sleep for a minute.
	type answer struct {
		code  int
		state string
		err   error
	}
	polled := make(chan answer, 1)
	go func() {
		res, err := client.Get(base + "/v1/correlations/polled/outcome?wait=1m")
		if err != nil {
			polled <- answer{err: err}
			return
		}
		defer res.Body.Close()
		var v struct{ State string }
		err = json.NewDecoder(res.Body).Decode(&v)
		polled <- answer{res.StatusCode, v.State, err}
	}()
	// A registration whose body is half sent.
	pr, pw := io.Pipe()
	registered := make(chan answer, 1)
	go func() {
		req, _ := http.NewRequest("POST", base+"/v1/correlations", pr)
		req.Header.Set("Content-Type", "application/json")
		res, err := client.Do(req)
		if err != nil {
			registered <- answer{err: err}
			return
		}
		defer res.Body.Close()
		var v struct{ State string }
		err = json.NewDecoder(res.Body).Decode(&v)
		registered <- answer{res.StatusCode, v.State, err}
	}()
	_, err = pw.Write([]byte(`{"id":"in-flight",`))
	require.NoError(t, err)
	waitFor(t, "two requests in flight", func() bool { return m.HTTPMetrics.InFlight() == 2 })

	closed := make(chan error, 1)
	go func() { closed <- m.Close() }()

	p := <-polled
	require.NoError(t, p.err)
	require.Equal(t, http.StatusAccepted, p.code, "a drained long poll answers with the state it has")
	require.Equal(t, "pending", p.state)

	waitFor(t, "the listener to close", func() bool {
		c, err := net.Dial("tcp", m.Addr.String())
		if err == nil {
			c.Close()
		}
		return err != nil
	})
	select {
	case err := <-closed:
		t.Fatalf("Close returned (%v) while a request was in flight", err)
	default:
	}
	_, err = pw.Write([]byte(`"timeout":"1h"}`))
	require.NoError(t, err)
	require.NoError(t, pw.Close())
	r := <-registered
	require.NoError(t, r.err)
	require.Equal(t, http.StatusCreated, r.code)
	require.NoError(t, <-closed)

	_, err = m.Store.Get(context.Background(), store.RefOf("in-flight"))
	require.ErrorIs(t, err, store.ErrClosed, "Close closes the store")
	st, err := bolt.Open(bolt.Options{Path: path, ReadOnly: true})
	require.NoError(t, err)
	defer st.Close()
	c, err := st.Get(context.Background(), store.RefOf("in-flight"))
	require.NoError(t, err)
	require.Equal(t, store.StatePending, c.State)
}
