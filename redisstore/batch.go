package redisstore

import (
	"context"
	"sync"

	"github.com/redis/go-redis/v9"
)

// Script calls of concurrent operations share round trips. A call that
// finds fewer than maxFlying pipelines on the wire goes at once, on its
// caller's goroutine and context; one that finds them all busy waits in a
// queue, and the queue leaves as one pipeline as soon as a pipeline on the
// wire comes back. A lone caller therefore pays nothing, and under load the
// server reads and answers many scripts per system call instead of one,
// which is where most of its time went with a connection per caller.
//
// Every script is safe to send twice (each write carries its token), so a
// pipeline that go-redis retries whole changes nothing. A queued call whose
// context ends before its pipeline leaves is not sent; one that ends while
// its pipeline is on the wire returns the context's error, and its script
// may or may not have run — as with any request abandoned in flight.
const (
	maxFlying = 4   // pipelines on the wire at once
	maxBatch  = 512 // script calls in one pipeline
)

// batcher queues script calls; the zero value is not usable (see newBatcher).
type batcher struct {
	rdb redis.UniversalClient

	mu     sync.Mutex
	queue  []*batchCall
	flying int
}

// batchCall is one caller's calls and, once done is closed, their answers.
type batchCall struct {
	ctx   context.Context
	calls []call
	cmds  []*redis.Cmd
	done  chan struct{}
}

func newBatcher(rdb redis.UniversalClient) *batcher { return &batcher{rdb: rdb} }

// run sends calls, alone or with other callers' calls, and returns their
// answers in order.
func (b *batcher) run(ctx context.Context, calls []call) []*redis.Cmd {
	bc := &batchCall{ctx: ctx, calls: calls, cmds: make([]*redis.Cmd, len(calls)), done: make(chan struct{})}
	b.mu.Lock()
	b.queue = append(b.queue, bc)
	var batch []*batchCall
	if b.flying < maxFlying {
		if batch = b.takeLocked(); batch != nil {
			b.flying++
		}
	}
	b.mu.Unlock()
	if batch != nil {
		b.send(batch)
		b.next()
	}
	select {
	case <-bc.done:
		return bc.cmds
	case <-ctx.Done():
		return failedCmds(ctx, len(calls), ctx.Err())
	}
}

// takeLocked removes the next pipeline's worth of calls from the queue,
// leaving out those whose caller has given up; nil when none is left.
func (b *batcher) takeLocked() []*batchCall {
	var batch []*batchCall
	n, i := 0, 0
	for ; i < len(b.queue) && n < maxBatch; i++ {
		bc := b.queue[i]
		if bc.ctx.Err() != nil {
			continue
		}
		batch = append(batch, bc)
		n += len(bc.calls)
	}
	rest := copy(b.queue, b.queue[i:])
	clear(b.queue[rest:])
	b.queue = b.queue[:rest]
	return batch
}

// next sends what queued while a pipeline was on the wire, on a goroutine
// of its own, or gives the pipeline's place back.
func (b *batcher) next() {
	b.mu.Lock()
	batch := b.takeLocked()
	if batch == nil {
		b.flying--
	}
	b.mu.Unlock()
	if batch != nil {
		go func() {
			b.send(batch)
			b.next()
		}()
	}
}

// send runs the calls of batch in one pipeline of EVALSHA; a script the
// server does not have (after a restart, a failover, on a new cluster node)
// is sent again with EVAL. A batch of one caller runs on its context; a
// shared one on a context of its own, bounded by the client's timeouts.
func (b *batcher) send(batch []*batchCall) {
	defer func() {
		for _, bc := range batch {
			close(bc.done)
		}
	}()
	ctx := context.Background()
	if len(batch) == 1 {
		ctx = batch[0].ctx
		if cl := batch[0].calls; len(cl) == 1 {
			batch[0].cmds[0] = cl[0].script.Run(ctx, b.rdb, cl[0].keys, cl[0].args...)
			return
		}
	}
	pipe := b.rdb.Pipeline()
	for _, bc := range batch {
		for i, c := range bc.calls {
			bc.cmds[i] = c.script.EvalSha(ctx, pipe, c.keys, c.args...)
		}
	}
	if _, err := pipe.Exec(ctx); err != nil {
		unanswered(batch, err)
	}
	var again redis.Pipeliner
	for _, bc := range batch {
		for i, cmd := range bc.cmds {
			if err := cmd.Err(); err != nil && redis.HasErrorPrefix(err, "NOSCRIPT") {
				if again == nil {
					again = b.rdb.Pipeline()
				}
				c := bc.calls[i]
				bc.cmds[i] = c.script.Eval(ctx, again, c.keys, c.args...)
			}
		}
	}
	if again != nil {
		if _, err := again.Exec(ctx); err != nil {
			unanswered(batch, err)
		}
	}
}

// unanswered gives err to the calls of batch that have neither an answer
// nor an error: when a pipeline breaks (a connection lost), go-redis
// returns the error from Exec but leaves the calls it did not read as they
// were. (A script's nil answer is redis.Nil, an error, so a call with
// neither was not answered.)
func unanswered(batch []*batchCall, err error) {
	for _, bc := range batch {
		for _, cmd := range bc.cmds {
			if cmd.Err() == nil && cmd.Val() == nil {
				cmd.SetErr(err)
			}
		}
	}
}

// failedCmds answers n calls with err.
func failedCmds(ctx context.Context, n int, err error) []*redis.Cmd {
	cmds := make([]*redis.Cmd, n)
	for i := range cmds {
		cmds[i] = redis.NewCmd(ctx)
		cmds[i].SetErr(err)
	}
	return cmds
}
