package redistest

import (
	"bufio"
	"io"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// ProxyOptions configure StartProxy.
type ProxyOptions struct {
	// DropEvery makes the proxy drop, on average, one in DropEvery eligible
	// commands: the command goes to the server, the server runs it and
	// answers, and the proxy closes both connections instead of passing the
	// answer on. The client sees its connection end after a complete write —
	// exactly the case where go-redis (MaxRetries) sends the command again.
	// 0 drops nothing.
	DropEvery int
	// Seed seeds the choice of the commands to drop.
	Seed uint64
	// Eligible reports whether a command (its arguments, name first) may be
	// dropped. The default, DefaultEligible, spares connection setup and
	// pub/sub.
	Eligible func(args []string) bool
}

// DefaultEligible lets every command be dropped except connection setup
// (HELLO, AUTH, CLIENT, SELECT, READONLY…), introspection (PING, INFO,
// CONFIG, CLUSTER, COMMAND) and pub/sub; a connection that subscribes is
// never dropped.
func DefaultEligible(args []string) bool {
	if len(args) == 0 {
		return false
	}
	switch strings.ToUpper(args[0]) {
	case "HELLO", "AUTH", "CLIENT", "SELECT", "READONLY", "READWRITE", "RESET", "QUIT",
		"PING", "ECHO", "INFO", "CONFIG", "CLUSTER", "COMMAND",
		"SUBSCRIBE", "PSUBSCRIBE", "SSUBSCRIBE", "UNSUBSCRIBE", "PUNSUBSCRIBE", "SUNSUBSCRIBE":
		return false
	}
	return true
}

// Proxy is a TCP proxy between a client and a redis-server that can lose
// replies: it reads the RESP commands and replies that pass through it, so
// it knows which reply answers which command.
type Proxy struct {
	target   string
	l        net.Listener
	eligible func([]string) bool
	every    int

	mu      sync.Mutex
	rng     *rand.Rand
	enabled bool
	conns   map[*proxyConn]struct{}
	closed  bool

	wg        sync.WaitGroup
	commands  atomic.Int64
	drops     atomic.Int64
	dropNames sync.Map // command name → *atomic.Int64
}

// StartProxy listens on a free loopback port and forwards to target. Drops
// start enabled when DropEvery > 0 (see SetDropping). The proxy is closed at
// the test's cleanup.
func StartProxy(tb testing.TB, target string, opts ProxyOptions) *Proxy {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("redistest: proxy listen: %v", err)
	}
	p := &Proxy{
		target:   target,
		l:        l,
		eligible: opts.Eligible,
		every:    opts.DropEvery,
		rng:      rand.New(rand.NewPCG(opts.Seed, opts.Seed^0x9e3779b97f4a7c15)),
		enabled:  opts.DropEvery > 0,
		conns:    map[*proxyConn]struct{}{},
	}
	if p.eligible == nil {
		p.eligible = DefaultEligible
	}
	p.wg.Add(1)
	go p.accept()
	tb.Cleanup(p.Close)
	return p
}

// Addr is where clients connect.
func (p *Proxy) Addr() string { return p.l.Addr().String() }

// Drops counts the replies dropped so far.
func (p *Proxy) Drops() int64 { return p.drops.Load() }

// DropsOf counts the replies dropped so far of one command (upper case name).
func (p *Proxy) DropsOf(name string) int64 {
	if v, ok := p.dropNames.Load(name); ok {
		return v.(*atomic.Int64).Load()
	}
	return 0
}

// Commands counts the commands forwarded so far.
func (p *Proxy) Commands() int64 { return p.commands.Load() }

// SetDropping turns dropping on or off (it needs DropEvery > 0 to drop).
func (p *Proxy) SetDropping(on bool) {
	p.mu.Lock()
	p.enabled = on
	p.mu.Unlock()
}

// CloseConns cuts every connection passing through the proxy now.
func (p *Proxy) CloseConns() {
	p.mu.Lock()
	conns := make([]*proxyConn, 0, len(p.conns))
	for c := range p.conns {
		conns = append(conns, c)
	}
	p.mu.Unlock()
	for _, c := range conns {
		c.close()
	}
}

// Close stops listening, cuts every connection and waits for the proxy's
// goroutines to end.
func (p *Proxy) Close() {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	p.l.Close()
	p.CloseConns()
	p.wg.Wait()
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		client, err := p.l.Accept()
		if err != nil {
			return // closed
		}
		server, err := net.Dial("tcp", p.target)
		if err != nil {
			client.Close()
			continue
		}
		c := &proxyConn{p: p, client: client, server: server, queue: make(chan pending, 1024), done: make(chan struct{})}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			c.close()
			return
		}
		p.conns[c] = struct{}{}
		p.mu.Unlock()
		p.wg.Add(2)
		go c.forwardCommands()
		go c.forwardReplies()
	}
}

// decide says whether to drop the reply of the command args.
func (p *Proxy) decide(args []string) bool {
	if !p.eligible(args) {
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.enabled && p.every > 0 && p.rng.IntN(p.every) == 0
}

func (p *Proxy) countDrop(name string) {
	p.drops.Add(1)
	v, _ := p.dropNames.LoadOrStore(name, new(atomic.Int64))
	v.(*atomic.Int64).Add(1)
}

// pending is what the reply side must do with the next reply.
type pending struct {
	name        string
	drop        bool
	passthrough bool // the connection subscribed: copy the rest unparsed
}

// proxyConn is one client connection and its server connection. The
// command side queues one pending per command, in order, before it writes
// the command; the reply side takes one per reply.
type proxyConn struct {
	p      *Proxy
	client net.Conn
	server net.Conn
	queue  chan pending
	done   chan struct{} // closed by close
	once   sync.Once
}

func (c *proxyConn) close() {
	c.once.Do(func() {
		close(c.done)
		c.client.Close()
		c.server.Close()
		c.p.mu.Lock()
		delete(c.p.conns, c)
		c.p.mu.Unlock()
	})
}

func (c *proxyConn) forwardCommands() {
	defer c.p.wg.Done()
	defer close(c.queue)
	defer c.close()
	br := bufio.NewReaderSize(c.client, 64<<10)
	var buf []byte
	var args []string
	for {
		var err error
		buf, args = buf[:0], args[:0]
		if buf, _, err = readValue(br, buf, &args); err != nil {
			return
		}
		name := ""
		if len(args) > 0 {
			name = strings.ToUpper(args[0])
		}
		subscribe := name == "SUBSCRIBE" || name == "PSUBSCRIBE" || name == "SSUBSCRIBE"
		pd := pending{name: name, drop: !subscribe && c.p.decide(args), passthrough: subscribe}
		select {
		case c.queue <- pd:
		case <-c.done:
			return
		}
		c.p.commands.Add(1)
		if _, err := c.server.Write(buf); err != nil {
			return
		}
		if subscribe {
			// Pub/sub: replies no longer pair with commands. Pass the rest
			// through as it comes.
			_, _ = io.Copy(c.server, br)
			return
		}
	}
}

func (c *proxyConn) forwardReplies() {
	defer c.p.wg.Done()
	defer c.close()
	br := bufio.NewReaderSize(c.server, 64<<10)
	var buf []byte
	for pd := range c.queue {
		if pd.passthrough {
			_, _ = io.Copy(c.client, br)
			return
		}
		for {
			var typ byte
			var err error
			if buf, typ, err = readValue(br, buf[:0], nil); err != nil {
				return
			}
			if typ != '>' {
				break
			}
			// A RESP3 push is not the answer to a command: pass it on.
			if _, err := c.client.Write(buf); err != nil {
				return
			}
		}
		if pd.drop {
			// The server has run the command and answered; the client never
			// learns it.
			c.p.countDrop(pd.name)
			return
		}
		if _, err := c.client.Write(buf); err != nil {
			return
		}
	}
}
