package natsjs_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/corrstore/corrstore/internal/testenv"
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
	proc *testenv.Process
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
	s := &natsServer{dir: dir}
	if s.port, err = testenv.FreePort(); err != nil {
		return s, err
	}
	// max_payload: a reply at the store's 1 MiB body bound, with its
	// headers, over NATS's 1 MB default.
	conf := fmt.Sprintf("listen: 127.0.0.1:%d\nmax_payload: 8MB\njetstream {\n  store_dir: %q\n}\n", s.port, filepath.Join(dir, "js"))
	if err := os.WriteFile(filepath.Join(dir, "nats.conf"), []byte(conf), 0o600); err != nil {
		return s, err
	}
	return s, s.start()
}

// start starts the server (again, on the same store directory: streams
// and their messages survive) and waits until JetStream answers.
func (s *natsServer) start() (err error) {
	s.proc, err = testenv.StartProcess(exec.Command("nats-server", "-c", filepath.Join(s.dir, "nats.conf")),
		filepath.Join(s.dir, "server.log"), natsStartTimeout, s.ready)
	return err
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
func (s *natsServer) kill() { s.proc.Kill() }

func (s *natsServer) stop() {
	s.kill()
	os.RemoveAll(s.dir)
}
