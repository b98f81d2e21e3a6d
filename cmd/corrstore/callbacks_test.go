package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// A bad callbacks file refuses to start with file:line; on reload
// (SIGHUP) it is refused and the file in use stays.
func TestCallbacksFileReload(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "callbacks.txt")
	write := func(text string) {
		t.Helper()
		if err := os.WriteFile(file, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	reloaded := make(chan error, 1)
	run := func() (*Main, error) {
		m := NewMain()
		m.Logger = quiet()
		m.onReload = func(err error) { reloaded <- err }
		if err := m.ParseFlags([]string{"--listen", "127.0.0.1:0", "--store", "bolt://" + filepath.Join(dir, "c.db"), "--callbacks-file", file}); err != nil {
			t.Fatal(err)
		}
		err := m.Run(context.Background())
		t.Cleanup(func() { m.Close() })
		return m, err
	}
	write("# a typo on line 2\nshop resume ftp://h/ " + e2eSecret + "\n")
	if _, err := run(); err == nil || !strings.Contains(err.Error(), "callbacks.txt:2: url") {
		t.Fatalf("a bad file started: %v", err)
	}

	write("shop resume http://127.0.0.1:9/ " + e2eSecret + "\n")
	m, err := run()
	if err != nil {
		t.Fatal(err)
	}
	if !m.callbacks().Pushed("shop", "resume") {
		t.Fatal("the file is not in use")
	}
	write("shop resume http://127.0.0.1:9/ " + e2eSecret + "\nshop notify pull extra\n")
	if err := m.Reload(); err == nil || !strings.Contains(err.Error(), "callbacks.txt:2:") {
		t.Fatalf("reload of a bad file: %v", err)
	}
	if !m.callbacks().Pushed("shop", "resume") || m.callbacks().Known("shop", "notify") {
		t.Fatal("a bad reload changed the file in use")
	}

	// SIGHUP reloads a good file.
	write("shop invoice pull\n")
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	if err := await(t, "a reload after SIGHUP", reloaded); err != nil {
		t.Fatal(err)
	}
	if !m.callbacks().Known("shop", "invoice") || m.callbacks().Pushed("shop", "resume") {
		t.Error("the reloaded file still pushes resume")
	}
}
