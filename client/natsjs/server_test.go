package natsjs_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// natsServer is the server of this package's tests: Debian's nats-server
// binary with JetStream, started once by TestMain on a free loopback port
// with its store in a temporary directory. The binary rather than the
// embedded github.com/nats-io/nats-server/v2 module: it is light to
// install, and the module would add a heavy compile and dependencies to
// the tests of every user of this module.
type natsServer struct {
	dir  string
	port int
	cmd  *exec.Cmd
	done chan error
}

// errNoNATS says why the tests cannot run here.
var errNoNATS = errors.New("nats-server is not on PATH (apt-get install nats-server)")

const natsStartTimeout = time.Minute

func startNATS() (*natsServer, error) {
	if _, err := exec.LookPath("nats-server"); err != nil {
		return nil, errNoNATS
	}
	dir, err := os.MkdirTemp("", "corrstore-nats-")
	if err != nil {
		return nil, err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return &natsServer{dir: dir}, err
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	s := &natsServer{dir: dir, port: port}
	// max_payload: a reply at the store's 1 MiB body bound, with its
	// headers, over NATS's 1 MB default.
	conf := fmt.Sprintf("listen: 127.0.0.1:%d\nmax_payload: 8MB\njetstream {\n  store_dir: %q\n}\n", port, filepath.Join(dir, "js"))
	if err := os.WriteFile(filepath.Join(dir, "nats.conf"), []byte(conf), 0o600); err != nil {
		return s, err
	}
	return s, s.start()
}

// start starts the server (again, on the same store directory: streams
// and their messages survive) and waits until JetStream answers.
func (s *natsServer) start() error {
	log, err := os.OpenFile(filepath.Join(s.dir, "server.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer log.Close()
	s.cmd = exec.Command("nats-server", "-c", filepath.Join(s.dir, "nats.conf"))
	s.cmd.Stdout, s.cmd.Stderr = log, log
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := s.cmd.Start(); err != nil {
		return fmt.Errorf("nats-server: %w", err)
	}
	s.done = make(chan error, 1)
	go func(c *exec.Cmd, done chan error) { done <- c.Wait() }(s.cmd, s.done)

	ctx, cancel := context.WithTimeout(context.Background(), natsStartTimeout)
	defer cancel()
	backoff := 10 * time.Millisecond
	for {
		err := s.ready(ctx)
		if err == nil {
			return nil
		}
		select {
		case err := <-s.done:
			s.done <- err
			out, _ := os.ReadFile(filepath.Join(s.dir, "server.log"))
			return fmt.Errorf("nats-server exited (%v) before it answered:\n%s", err, out)
		case <-ctx.Done():
			return fmt.Errorf("nats-server on port %d: JetStream did not answer within %s: %w", s.port, natsStartTimeout, err)
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 200*time.Millisecond)
	}
}

func (s *natsServer) ready(ctx context.Context) error {
	nc, err := nats.Connect(s.url(), nats.Timeout(time.Second))
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	cctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	_, err = js.AccountInfo(cctx)
	return err
}

func (s *natsServer) url() string { return fmt.Sprintf("nats://127.0.0.1:%d", s.port) }

// kill SIGKILLs the server and waits until it is gone.
func (s *natsServer) kill() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
	<-s.done
	s.cmd = nil
}

func (s *natsServer) stop() {
	s.kill()
	os.RemoveAll(s.dir)
}
