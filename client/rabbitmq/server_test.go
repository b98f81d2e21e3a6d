package rabbitmq_test

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

	amqp "github.com/rabbitmq/amqp091-go"
)

// rabbitServer is the broker of this package's tests: a rabbitmq-server
// of its own, started once by TestMain in a temporary directory (node
// name, mnesia and log directories, config), on free loopback ports for
// AMQP, Erlang distribution and its own epmd.
type rabbitServer struct {
	dir      string
	env      []string
	port     int
	epmd     *exec.Cmd
	node     *exec.Cmd
	nodeDone chan error
}

const rabbitBinary = "/usr/lib/rabbitmq/bin/rabbitmq-server"

// rabbitStartTimeout bounds a boot (about 5 s on a quiet 2-core machine).
const rabbitStartTimeout = 2 * time.Minute

// errNoRabbit says why the tests cannot run here.
var errNoRabbit = errors.New("rabbitmq-server is not installed (" + rabbitBinary + "; apt-get install rabbitmq-server)")

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func startRabbit() (*rabbitServer, error) {
	if _, err := os.Stat(rabbitBinary); err != nil {
		return nil, errNoRabbit
	}
	if _, err := exec.LookPath("epmd"); err != nil {
		return nil, errNoRabbit
	}
	dir, err := os.MkdirTemp("", "corrstore-rabbitmq-")
	if err != nil {
		return nil, err
	}
	s := &rabbitServer{dir: dir}
	var ports [3]int
	for i := range ports {
		if ports[i], err = freePort(); err != nil {
			return s, err
		}
	}
	s.port = ports[0]
	conf := fmt.Sprintf("listeners.tcp.default = 127.0.0.1:%d\nloopback_users.guest = true\nlog.console = true\nlog.console.level = warning\n", s.port)
	for name, content := range map[string]string{"rabbitmq.conf": conf, "enabled_plugins": "[].\n"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			return s, err
		}
	}
	s.env = append(os.Environ(),
		"HOME="+dir, // the Erlang cookie
		fmt.Sprintf("ERL_EPMD_PORT=%d", ports[2]), "ERL_EPMD_ADDRESS=127.0.0.1",
		fmt.Sprintf("RABBITMQ_NODENAME=corrstore-test-%d@localhost", s.port),
		"RABBITMQ_NODE_IP_ADDRESS=127.0.0.1",
		fmt.Sprintf("RABBITMQ_NODE_PORT=%d", s.port),
		fmt.Sprintf("RABBITMQ_DIST_PORT=%d", ports[1]),
		"RABBITMQ_MNESIA_BASE="+filepath.Join(dir, "mnesia"),
		"RABBITMQ_LOG_BASE="+filepath.Join(dir, "log"),
		"RABBITMQ_CONFIG_FILE="+filepath.Join(dir, "rabbitmq.conf"),
		"RABBITMQ_ENABLED_PLUGINS_FILE="+filepath.Join(dir, "enabled_plugins"),
		"RABBITMQ_PID_FILE="+filepath.Join(dir, "pid"),
	)
	s.epmd = exec.Command("epmd", "-port", fmt.Sprint(ports[2]), "-address", "127.0.0.1")
	s.epmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := s.epmd.Start(); err != nil {
		return s, fmt.Errorf("epmd: %w", err)
	}
	return s, s.startNode()
}

// startNode starts the node (again, on the same directories: durable
// queues and persistent messages survive) and waits until AMQP answers.
func (s *rabbitServer) startNode() error {
	log, err := os.OpenFile(filepath.Join(s.dir, "server.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer log.Close()
	s.node = exec.Command(rabbitBinary)
	s.node.Env = s.env
	s.node.Stdout, s.node.Stderr = log, log
	s.node.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := s.node.Start(); err != nil {
		return fmt.Errorf("rabbitmq-server: %w", err)
	}
	s.nodeDone = make(chan error, 1)
	go func(c *exec.Cmd, done chan error) { done <- c.Wait() }(s.node, s.nodeDone)

	ctx, cancel := context.WithTimeout(context.Background(), rabbitStartTimeout)
	defer cancel()
	backoff := 20 * time.Millisecond
	for {
		conn, err := amqp.Dial(s.url())
		if err == nil {
			return conn.Close()
		}
		select {
		case err := <-s.nodeDone:
			s.nodeDone <- err
			out, _ := os.ReadFile(filepath.Join(s.dir, "server.log"))
			return fmt.Errorf("rabbitmq-server exited (%v) before it answered:\n%s", err, out)
		case <-ctx.Done():
			return fmt.Errorf("rabbitmq-server on port %d did not answer within %s: %w", s.port, rabbitStartTimeout, err)
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 250*time.Millisecond)
	}
}

// kill SIGKILLs the node's process group and waits until it is gone.
func (s *rabbitServer) kill() {
	if s.node == nil || s.node.Process == nil {
		return
	}
	_ = syscall.Kill(-s.node.Process.Pid, syscall.SIGKILL)
	<-s.nodeDone
	s.node = nil
}

func (s *rabbitServer) url() string { return fmt.Sprintf("amqp://guest:guest@127.0.0.1:%d/", s.port) }

func (s *rabbitServer) stop() {
	s.kill()
	if s.epmd != nil && s.epmd.Process != nil {
		_ = syscall.Kill(-s.epmd.Process.Pid, syscall.SIGKILL)
		_ = s.epmd.Wait()
	}
	os.RemoveAll(s.dir)
}
