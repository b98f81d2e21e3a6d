package redistest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/corrstore/corrstore/internal/testenv"
)

// StartTimeout bounds how long the harness waits for a redis-server to
// answer PING after it starts (or restarts and reloads its AOF), and for a
// cluster to form. Long: under make test this 2-core VM also runs other
// packages' tests, and a cluster's nodes took over a minute to join.
const StartTimeout = 3 * time.Minute

// ServerOptions configure StartServer.
type ServerOptions struct {
	// AppendFsync is redis-server's appendfsync: "always" (the default),
	// "everysec" or "no". appendonly is always on.
	AppendFsync string
	// Args are more redis-server arguments, as "--name", "value" pairs.
	Args []string
	// Dir holds the server's data (AOF, log). Default: tb.TempDir(), on
	// disk, where appendfsync always costs a real fsync. MemDir gives one in
	// memory, for tests of semantics rather than of durability.
	Dir string
}

// MemDir returns a new directory on /dev/shm (tmpfs), removed at the test's
// cleanup, or tb.TempDir() when /dev/shm is not there. On tmpfs fsync
// costs nothing, so a server there keeps appendfsync always (the setting
// production wants, which strict mode insists on) without the disk's
// latency; a SIGKILL of the server loses no more there than on disk, since
// the written AOF stays in the kernel either way.
func MemDir(tb testing.TB) string {
	tb.Helper()
	if fi, err := os.Stat("/dev/shm"); err != nil || !fi.IsDir() {
		return tb.TempDir()
	}
	dir, err := os.MkdirTemp("/dev/shm", "redistest-")
	if err != nil {
		return tb.TempDir()
	}
	tb.Cleanup(func() {
		if err := os.RemoveAll(dir); err != nil {
			tb.Errorf("redistest: remove %s: %v", dir, err)
		}
	})
	return dir
}

// Server is a redis-server process owned by a test: on a free loopback port,
// its data in a temporary directory, appendonly on. It is killed at the
// test's cleanup, whatever the test's result.
type Server struct {
	tb testing.TB
	n  *node
}

// StartServer starts a redis-server and waits until it answers PING. It
// skips the test when redis-server is not installed (and fails it when the
// CI environment variable is "true": CI installs it, so a skip there would
// hide the tests).
func StartServer(tb testing.TB, opts ServerOptions) *Server {
	tb.Helper()
	bin := requireBinary(tb, "redis-server")
	fsync := opts.AppendFsync
	if fsync == "" {
		fsync = "always"
	}
	dir := opts.Dir
	if dir == "" {
		dir = tb.TempDir()
	}
	var n *node
	var err error
	// The free port is picked by binding and releasing it; another process
	// may take it in between, so try a few.
	for range 3 {
		var port int
		if port, err = testenv.FreePort(); err != nil {
			break
		}
		args := append([]string{"--appendfsync", fsync}, opts.Args...)
		n, err = startNode(bin, dir, port, args)
		if err == nil || !errors.Is(err, errAddrInUse) {
			break
		}
	}
	if err != nil {
		tb.Fatalf("redistest: %v", err)
	}
	tb.Cleanup(func() {
		if err := n.stop(); err != nil {
			tb.Errorf("redistest: stop redis-server on %s: %v", n.addr(), err)
		}
	})
	return &Server{tb: tb, n: n}
}

// Addr is the server's host:port.
func (s *Server) Addr() string { return s.n.addr() }

// Dir is the server's data directory (its AOF is under appendonlydir/).
func (s *Server) Dir() string { return s.n.dir }

// PID is the process id of the running server, 0 when it is not running.
func (s *Server) PID() int { return s.n.pid() }

// Kill sends SIGKILL to the server (and anything it forked, such as an AOF
// rewrite) and waits until it is gone. Killing a stopped server does nothing.
func (s *Server) Kill() {
	s.tb.Helper()
	if err := s.n.stop(); err != nil {
		s.tb.Fatalf("redistest: kill redis-server: %v", err)
	}
}

// Restart kills the server if it runs, starts it again on the same port and
// directory, so that it reloads its AOF, and waits until it answers PING
// (redis answers LOADING until the AOF is read).
func (s *Server) Restart() {
	s.tb.Helper()
	if err := s.n.restart(); err != nil {
		s.tb.Fatalf("redistest: restart redis-server: %v", err)
	}
}

// Options returns client options for the server. Change them freely: each
// call returns a new value. The timeouts are long (TestTimeout): the tests
// are about what happens, and a -race build on a loaded 2-core machine
// stalls for seconds at times; go-redis's defaults (5s dial, 3s read) then
// fail a test that is right.
func (s *Server) Options() *redis.Options {
	return &redis.Options{Addr: s.Addr(), DialTimeout: TestTimeout, ReadTimeout: TestTimeout,
		WriteTimeout: TestTimeout, PoolTimeout: TestTimeout}
}

// TestTimeout is the dial, read, write and pool timeout of the clients the
// harness makes.
const TestTimeout = 30 * time.Second

// NewClient returns a client of the server, closed at the test's cleanup.
// tweak, when not nil, may change the options first.
func (s *Server) NewClient(tb testing.TB, tweak func(*redis.Options)) *redis.Client {
	tb.Helper()
	opt := s.Options()
	if tweak != nil {
		tweak(opt)
	}
	c := redis.NewClient(opt)
	tb.Cleanup(func() { c.Close() })
	return c
}

// Info returns one section of INFO (e.g. "memory", "persistence") as a map.
func (s *Server) Info(tb testing.TB, section string) map[string]string {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := command(ctx, s.Addr(), "INFO", section)
	if err != nil {
		tb.Fatalf("redistest: INFO %s on %s: %v", section, s.Addr(), err)
	}
	return parseInfo(out)
}

// requireBinary finds name on PATH, or skips the test with a message (fails
// it under CI=true).
func requireBinary(tb testing.TB, name string) string {
	tb.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	msg := fmt.Sprintf("redistest: %s is not on PATH, so the tests on a real Redis do not run; "+
		"install Debian's redis-server and redis-tools (apt-get install redis-server redis-tools), as .ci/run does", name)
	testenv.SkipOrFail(tb, msg)
	return ""
}

var errAddrInUse = errors.New("address already in use")

// node is one redis-server process and what it takes to start it again.
type node struct {
	bin  string
	dir  string
	port int
	args []string

	mu   sync.Mutex
	proc *process // nil when not running
}

// process is a running redis-server; done closes when it has exited.
type process struct {
	cmd  *exec.Cmd
	done chan struct{}
	log  *os.File
}

func startNode(bin, dir string, port int, extra []string) (*node, error) {
	args := []string{
		"--port", strconv.Itoa(port),
		"--bind", "127.0.0.1",
		"--dir", dir,
		"--daemonize", "no",
		"--logfile", "redis.log",
		"--appendonly", "yes",
		"--save", "", // the AOF is the only persistence under test
	}
	n := &node{bin: bin, dir: dir, port: port, args: append(args, extra...)}
	if err := n.start(); err != nil {
		return nil, err
	}
	return n, nil
}

func (n *node) addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(n.port)) }

func (n *node) pid() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.proc == nil {
		return 0
	}
	return n.proc.cmd.Process.Pid
}

func (n *node) start() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.proc != nil {
		return fmt.Errorf("redis-server on %s is already running", n.addr())
	}
	out, err := os.OpenFile(filepath.Join(n.dir, "stdout.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	cmd := exec.Command(n.bin, n.args...)
	cmd.Dir = n.dir
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Setpgid: true, // Kill takes the whole group: AOF rewrite children too
		// If the test binary dies (a -timeout panic skips cleanups), so does
		// the server.
		Pdeathsig: syscall.SIGKILL,
	}
	if err := cmd.Start(); err != nil {
		out.Close()
		return fmt.Errorf("start %s: %w", n.bin, err)
	}
	p := &process{cmd: cmd, done: make(chan struct{}), log: out}
	go func() {
		_ = cmd.Wait()
		out.Close()
		close(p.done)
	}()
	n.proc = p
	n.mu.Unlock()
	err = n.waitReady(p)
	n.mu.Lock()
	if err != nil {
		n.killLocked()
		return err
	}
	return nil
}

// waitReady polls PING with a short backoff until PONG, the process exits,
// or StartTimeout passes.
func (n *node) waitReady(p *process) error {
	ctx, cancel := context.WithTimeout(context.Background(), StartTimeout)
	defer cancel()
	backoff := 2 * time.Millisecond
	var last error
	for {
		select {
		case <-p.done:
			tail := n.logTail()
			if strings.Contains(tail, "Address already in use") {
				return fmt.Errorf("redis-server on %s: %w", n.addr(), errAddrInUse)
			}
			return fmt.Errorf("redis-server on %s exited before it answered PING (%s); its log ends:\n%s",
				n.addr(), p.cmd.ProcessState, tail)
		default:
		}
		pctx, pcancel := context.WithTimeout(ctx, time.Second)
		pong, err := command(pctx, n.addr(), "PING")
		pcancel()
		if err == nil && pong == "PONG" {
			return nil
		}
		if err != nil {
			last = err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("redis-server on %s did not answer PING within %s (last: %v); its log ends:\n%s",
				n.addr(), StartTimeout, last, n.logTail())
		case <-p.done:
		case <-time.After(backoff):
		}
		// Not yet listening, or LOADING (the AOF is being read): poll again.
		backoff = min(2*backoff, 100*time.Millisecond)
	}
}

// stop kills the process group with SIGKILL and waits for the process.
func (n *node) stop() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.killLocked()
}

func (n *node) killLocked() error {
	p := n.proc
	if p == nil {
		return nil
	}
	n.proc = nil
	pid := p.cmd.Process.Pid
	if err := syscall.Kill(-pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		_ = p.cmd.Process.Kill()
	}
	select {
	case <-p.done:
		return nil
	case <-time.After(30 * time.Second):
		return fmt.Errorf("redis-server pid %d did not exit 30s after SIGKILL", pid)
	}
}

func (n *node) restart() error {
	if err := n.stop(); err != nil {
		return err
	}
	return n.start()
}

// logTail returns the end of the server's log, for error messages.
func (n *node) logTail() string {
	var b strings.Builder
	for _, name := range []string{"redis.log", "stdout.log"} {
		data, err := os.ReadFile(filepath.Join(n.dir, name))
		if err != nil || len(data) == 0 {
			continue
		}
		lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
		lines = lines[max(0, len(lines)-15):]
		fmt.Fprintf(&b, "--- %s\n%s\n", name, strings.Join(lines, "\n"))
	}
	return b.String()
}
