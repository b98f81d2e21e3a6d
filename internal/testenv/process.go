package testenv

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// FreePort returns a TCP port free on 127.0.0.1 at the time of the call.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Process is a server a test harness started (nats-server, rabbitmq-server)
// in a process group of its own, so that Kill takes its children too.
type Process struct {
	cmd  *exec.Cmd
	done chan error
}

// StartProcess starts cmd, its output appended to the file logPath, and
// polls ready with a short backoff until it returns nil. It fails, with
// the log, when the process exits first, and when ready has not succeeded
// within timeout; then the process is killed.
func StartProcess(cmd *exec.Cmd, logPath string, timeout time.Duration, ready func(context.Context) error) (*Process, error) {
	log, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	defer log.Close()
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Setpgid: true, // Kill takes the whole group
		// If the test binary dies (a -timeout panic skips cleanups), so
		// does the server, as redistest's do.
		Pdeathsig: syscall.SIGKILL,
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("%s: %w", cmd.Path, err)
	}
	p := &Process{cmd: cmd, done: make(chan error, 1)}
	go func() { p.done <- cmd.Wait() }()

	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	backoff := 10 * time.Millisecond
	for {
		err := ready(ctx)
		if err == nil {
			return p, nil
		}
		select {
		case exit := <-p.done:
			p.done <- exit
			out, _ := os.ReadFile(logPath)
			return nil, fmt.Errorf("%s exited (%v) before it was ready (%v):\n%s", cmd.Path, exit, err, out)
		case <-ctx.Done():
			p.Kill()
			return nil, fmt.Errorf("%s not ready within %s: %w", cmd.Path, timeout, err)
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 250*time.Millisecond)
	}
}

// Kill SIGKILLs the process group and waits until the process is gone.
// It may be called more than once.
func (p *Process) Kill() {
	if p == nil || p.cmd.Process == nil {
		return
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	err := <-p.done
	p.done <- err
}

// RunLeakChecked is m.Run for a TestMain that owns a server: after the
// tests it fails the run if they left goroutines behind — those running
// before, and the waiters of processes StartProcess started (a server
// restarted by a test), excepted. goleak.VerifyTestMain would exit before
// the caller could stop its server.
func RunLeakChecked(m *testing.M) int {
	ignore := goleak.IgnoreCurrent()
	code := m.Run()
	if code != 0 {
		return code
	}
	if err := goleak.Find(ignore, goleak.IgnoreAnyFunction("github.com/corrstore/corrstore/internal/testenv.StartProcess.func1")); err != nil {
		fmt.Fprintln(os.Stderr, "goleak:", err)
		return 1
	}
	return 0
}

// NeedServer fails tb when the package's server could not start (err), or
// skips it (fails under CI=true, see SkipOrFail) when the reason is that
// the server is not installed (missing).
func NeedServer(tb testing.TB, err, missing error) {
	tb.Helper()
	switch {
	case err == nil:
	case errors.Is(err, missing):
		SkipOrFail(tb, err.Error())
	default:
		tb.Fatalf("the test server did not start: %v", err)
	}
}
