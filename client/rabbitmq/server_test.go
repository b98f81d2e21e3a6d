package rabbitmq_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/corrstore/corrstore/internal/testenv"
)

// rabbitServer is the broker of this package's tests: a rabbitmq-server
// of its own, started once by TestMain in a temporary directory (node
// name, mnesia and log directories, config), on free loopback ports for
// AMQP, Erlang distribution and its own epmd.
type rabbitServer struct {
	dir  string
	env  []string
	port int
	epmd *exec.Cmd
	node *testenv.Process
}

const rabbitBinary = "/usr/lib/rabbitmq/bin/rabbitmq-server"

// rabbitStartTimeout bounds a boot (about 5 s on a quiet 2-core machine).
const rabbitStartTimeout = 2 * time.Minute

// errNoRabbit says why the tests cannot run here.
var errNoRabbit = errors.New("rabbitmq-server is not installed (" + rabbitBinary + "; apt-get install rabbitmq-server)")

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
	var ports [3]int // AMQP, Erlang distribution, epmd
	for i := range ports {
		if ports[i], err = testenv.FreePort(); err != nil {
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
	// An epmd of its own, on its own port: the node registers there, and
	// the test kills it at the end (one the node started would outlive it).
	s.epmd = exec.Command("epmd", "-port", fmt.Sprint(ports[2]), "-address", "127.0.0.1")
	s.epmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := s.epmd.Start(); err != nil {
		return s, fmt.Errorf("epmd: %w", err)
	}
	return s, s.startNode()
}

// startNode starts the node (again, on the same directories: durable
// queues and persistent messages survive) and waits until AMQP answers.
func (s *rabbitServer) startNode() (err error) {
	cmd := exec.Command(rabbitBinary)
	cmd.Env = s.env
	s.node, err = testenv.StartProcess(cmd, filepath.Join(s.dir, "server.log"), rabbitStartTimeout, func(context.Context) error {
		conn, err := amqp.Dial(s.url())
		if err != nil {
			return err
		}
		return conn.Close()
	})
	return err
}

// kill SIGKILLs the node's process group and waits until it is gone.
func (s *rabbitServer) kill() { s.node.Kill() }

func (s *rabbitServer) url() string { return fmt.Sprintf("amqp://guest:guest@127.0.0.1:%d/", s.port) }

func (s *rabbitServer) stop() {
	s.kill()
	if s.epmd != nil && s.epmd.Process != nil {
		_ = syscall.Kill(-s.epmd.Process.Pid, syscall.SIGKILL)
		_ = s.epmd.Wait()
	}
	os.RemoveAll(s.dir)
}
