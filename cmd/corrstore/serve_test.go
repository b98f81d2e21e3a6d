package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/corrstore/corrstore/cmd/corrstore/internal/apitest"
	"github.com/corrstore/corrstore/store"
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binaryDir != "" {
		os.RemoveAll(binaryDir)
	}
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func TestParseFlagsAndEnvironment(t *testing.T) {
	t.Setenv("CORRSTORE_MAX_WAIT", "15s")
	t.Setenv("CORRSTORE_LISTEN", "127.0.0.1:9999")
	t.Setenv("CORRSTORE_MAX_PENDING_PER_NAMESPACE", "500")
	t.Setenv("CORRSTORE_MAX_BYTES_PER_NAMESPACE", "1048576")
	m := NewMain()
	m.Logger = quiet()
	if m.MaxRecordBytes != 16<<20 {
		t.Errorf("--max-record-bytes default: %d", m.MaxRecordBytes)
	}
	if err := m.ParseFlags([]string{"--listen", "127.0.0.1:0", "--max-body", "4096", "--default-timeout", "1m", "--max-record-bytes", "65536"}); err != nil {
		t.Fatal(err)
	}
	if m.Listen != "127.0.0.1:0" || m.MaxWait != 15*time.Second || m.MaxBody != 4096 || m.DefaultTimeout != time.Minute ||
		m.MaxRecordBytes != 65536 || m.MaxPendingPerNamespace != 500 || m.MaxBytesPerNamespace != 1<<20 {
		t.Errorf("flags: %+v", m)
	}
	if l := m.limits(); l.MaxRecordBytes != 65536 || l.MaxBodyBytes != 65536 {
		t.Errorf("limits: a record limit below a reply's lowers it: %+v", l)
	}
	if err := m.limits().WithDefaults().Validate(); err != nil {
		t.Errorf("limits: %v", err)
	}
	for _, args := range [][]string{
		{"--max-wait", "0s"}, {"--max-body", "10"}, {"--default-timeout", "1h", "--max-timeout", "1m"},
		{"--reaper-interval", "-1s"}, {"--log-level", "loud"}, {"extra"},
		{"--max-record-bytes", "100"}, {"--max-pending-per-namespace", "-1"}, {"--max-bytes-per-namespace", "-1"},
	} {
		m := NewMain()
		m.Logger = quiet()
		if err := m.ParseFlags(args); err == nil {
			t.Errorf("%q accepted", args)
		}
	}
	t.Setenv("CORRSTORE_MAX_BODY", "lots")
	if err := NewMain().ParseFlags(nil); err == nil || !strings.Contains(err.Error(), "CORRSTORE_MAX_BODY") {
		t.Errorf("bad env: %v", err)
	}
}

func TestRefusesOpenNonLoopback(t *testing.T) {
	for _, addr := range []string{"0.0.0.0:7411", ":7411", "10.1.2.3:7411", "example.com:80"} {
		m := NewMain()
		m.Logger, m.Listen, m.StoreURL = quiet(), addr, "bolt://"+filepath.Join(t.TempDir(), "x.db")
		err := m.Run(context.Background())
		m.Close()
		if err == nil || !strings.Contains(err.Error(), "token-file") {
			t.Errorf("%s: %v", addr, err)
		}
	}
	for _, addr := range []string{"127.0.0.1:1", "[::1]:1", "localhost:1"} {
		if !isLoopback(addr) {
			t.Errorf("%s is loopback", addr)
		}
	}
}

// TestServeAndShutdown runs serve in process with a token file: a request
// in flight (a long poll) is answered before the store closes.
func TestServeAndShutdown(t *testing.T) {
	dir := t.TempDir()
	tokens := filepath.Join(dir, "tokens")
	if err := os.WriteFile(tokens, []byte("s3cret-admin-token-0001 admin *\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	secret := filepath.Join(dir, "secret")
	if err := os.WriteFile(secret, []byte(strings.Repeat("k", 40)), 0o600); err != nil {
		t.Fatal(err)
	}
	m := NewMain()
	m.Logger = quiet()
	if err := m.ParseFlags([]string{"--listen", "127.0.0.1:0", "--store", "bolt://" + filepath.Join(dir, "c.db"),
		"--token-file", tokens, "--reply-secret-file", secret, "--max-wait", "20s"}); err != nil {
		t.Fatal(err)
	}
	m.NoSync = true
	if err := m.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	base := "http://" + m.Addr.String()
	call := func(method, path, token, body string) (int, map[string]any) {
		req, _ := http.NewRequest(method, base+path, strings.NewReader(body))
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		raw, err := io.ReadAll(res.Body)
		if err != nil {
			t.Error(err)
		}
		apitest.Check(t, req, res, raw)
		var v map[string]any
		json.Unmarshal(raw, &v)
		return res.StatusCode, v
	}
	if code, _ := call("POST", "/v1/correlations", "", `{"id":"x"}`); code != 401 {
		t.Fatalf("no token: %d", code)
	}
	code, c := call("POST", "/v1/correlations", "s3cret-admin-token-0001", `{"id":"x"}`)
	if code != 201 {
		t.Fatalf("register: %d %v", code, c)
	}
	if code, _ := call("GET", "/metrics", "s3cret-admin-token-0001", ""); code != 200 {
		t.Fatalf("metrics: %d", code)
	}
	poll := make(chan int, 1)
	go func() {
		code, _ := call("GET", "/v1/correlations/x/outcome?wait=20s", "s3cret-admin-token-0001", "")
		poll <- code
	}()
	// Wait until the poll is asleep, through the metric of requests in flight? Simpler:
	// a reply with the token decides it, and the poll answers 200.
	code, d := call("POST", "/v1/replies/"+c["reply_token"].(string), "", `{"body":{"ok":true}}`)
	if code != 200 || d["status"] != "completed" {
		t.Fatalf("reply: %d %v", code, d)
	}
	if got := <-poll; got != 200 {
		t.Errorf("poll: %d", got)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Store.Get(context.Background(), store.RefOf("x")); err == nil {
		t.Error("store still open after Close")
	}
}

// TestServeLogs: serve --log-format json writes one JSON object a line on
// env's standard error; --access-log adds one per request with method,
// route pattern, status, duration and bytes, and neither the reply token
// in a path nor a bearer token ever reaches the log.
func TestServeLogs(t *testing.T) {
	dir := t.TempDir()
	const bearer = "access-log-admin-token-0123"
	tokens := filepath.Join(dir, "tokens")
	require.NoError(t, os.WriteFile(tokens, []byte(bearer+" admin *\n"), 0o600))
	logs := newLineWriter()
	at := time.Date(2031, 2, 3, 4, 5, 6, 0, time.UTC) // serve reads env's clock, as every command does
	e := &env{stdout: io.Discard, stderr: logs, stdin: strings.NewReader(""), getenv: getenvOf(nil), noSync: true,
		now: func() time.Time { return at }}
	ctx, stop := contextWithCancel(t)
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, e, []string{"serve", "--listen", "127.0.0.1:0", "--store", "bolt://" + filepath.Join(dir, "c.db"),
			"--token-file", tokens, "--log-format", "json", "--access-log"})
	}()
	var addr string
	for line := range logs.lines {
		var rec map[string]any
		require.NoError(t, json.Unmarshal([]byte(line), &rec), "a JSON log line: %s", line)
		if rec["msg"] == "corrstore serving" {
			addr = rec["addr"].(string)
			break
		}
	}
	require.NotEmpty(t, addr)
	base := "http://" + addr
	code, reg := httpCall(t, "POST", base+"/v1/correlations", bearer, `{"id":"order-1"}`)
	require.Equal(t, 201, code)
	require.Equal(t, at.Format(time.RFC3339Nano), reg["created_at"], "the registration took env's time")
	token := reg["reply_token"].(string)
	code, _ = httpCall(t, "POST", base+"/v1/replies/"+token, "", `{"body":{"ok":true}}`)
	require.Equal(t, 200, code)
	code, _ = httpCall(t, "GET", base+"/v1/correlations/order-1", bearer, "")
	require.Equal(t, 200, code)
	stop()
	require.NoError(t, <-done)
	logs.Close()

	var requests []map[string]any
	var all bytes.Buffer
	for line := range logs.lines {
		all.WriteString(line + "\n")
		var rec map[string]any
		require.NoError(t, json.Unmarshal([]byte(line), &rec), "a JSON log line: %s", line)
		if rec["msg"] == "request" {
			requests = append(requests, rec)
		}
	}
	require.NotContains(t, all.String(), token, "the reply token is in no log line")
	require.NotContains(t, all.String(), bearer, "the bearer token is in no log line")
	require.Len(t, requests, 3, all.String())
	for i, want := range []struct {
		method, route string
		status        float64
	}{
		{"POST", "/v1/correlations", 201},
		{"POST", "/v1/replies/{token}", 200},
		{"GET", "/v1/correlations/{id}", 200},
	} {
		r := requests[i]
		require.Equal(t, want.method, r["method"])
		require.Equal(t, want.route, r["route"])
		require.Equal(t, want.status, r["status"])
		require.Equal(t, "http", r["component"])
		require.Greater(t, r["duration"], 0.0)
		require.Greater(t, r["bytes"], 0.0)
	}
}
