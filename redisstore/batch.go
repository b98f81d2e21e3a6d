package redisstore

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Script calls of concurrent operations share round trips. A call that
// finds fewer than maxFlying pipelines on the wire goes at once, on its
// caller's goroutine and context; one that finds them all busy waits in a
// queue, and the queue leaves as one pipeline as soon as a pipeline on the
// wire comes back. A lone caller therefore pays nothing, and under load the
// server reads and answers many scripts per system call instead of one.
//
// Every script is safe to send twice (each write carries its token), so a
// pipeline that go-redis retries whole changes nothing. A queued call whose
// context ends before its pipeline leaves is not sent; one that ends while
// its pipeline is on the wire returns the context's error, and its script
// may or may not have run — as with any request abandoned in flight. A
// shared pipeline runs until the latest deadline of its callers (or the
// client's timeouts, when one of them has none).
//
// On Redis Cluster calls are not shared: a pipeline there waits for every
// node it touches, so one slow or failed master would hold up callers whose
// keys live elsewhere. Each caller's calls go in a pipeline of their own.
const (
	maxFlying = 4   // pipelines on the wire at once
	maxBatch  = 512 // script calls in one pipeline, unless one caller has more
)

// errBatchAborted answers the calls of a pipeline that ended in a panic.
var errBatchAborted = errors.New("redisstore: pipeline aborted")

// batcher queues script calls; the zero value is not usable (see newBatcher).
type batcher struct {
	rdb    redis.UniversalClient
	shared bool // callers share pipelines (not on a cluster)

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

func newBatcher(rdb redis.UniversalClient) *batcher {
	_, cluster := rdb.(*redis.ClusterClient)
	return &batcher{rdb: rdb, shared: !cluster}
}

// run sends calls, alone or with other callers' calls, and returns their
// answers in order.
func (b *batcher) run(ctx context.Context, calls []call) []*redis.Cmd {
	bc := &batchCall{ctx: ctx, calls: calls, cmds: make([]*redis.Cmd, len(calls)), done: make(chan struct{})}
	if !b.shared {
		b.send([]*batchCall{bc})
		return bc.cmds
	}
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
		b.sendThenNext(batch)
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
	for ; i < len(b.queue); i++ {
		bc := b.queue[i]
		if bc.ctx.Err() != nil {
			continue
		}
		if len(batch) > 0 && n+len(bc.calls) > maxBatch {
			break
		}
		batch = append(batch, bc)
		n += len(bc.calls)
	}
	rest := copy(b.queue, b.queue[i:])
	clear(b.queue[rest:])
	b.queue = b.queue[:rest]
	return batch
}

// sendThenNext sends batch, then what queued meanwhile (see next), even if
// sending panics (a hook's panic may be recovered by the caller: the
// pipeline's place on the wire must not be lost with it).
func (b *batcher) sendThenNext(batch []*batchCall) {
	defer b.next()
	b.send(batch)
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
		go b.sendThenNext(batch)
	}
}

// send runs the calls of batch in one pipeline of EVALSHA; a script the
// server does not have (after a restart, a failover, on a new cluster node)
// is sent again with EVAL. A batch of one caller runs on its context.
func (b *batcher) send(batch []*batchCall) {
	defer func() {
		for _, bc := range batch {
			for i, cmd := range bc.cmds {
				if cmd == nil { // a panic left it unsent
					bc.cmds[i] = errCmd(bc.ctx, errBatchAborted)
				}
			}
			close(bc.done)
		}
	}()
	ctx := batch[0].ctx
	if len(batch) > 1 {
		var cancel context.CancelFunc
		ctx, cancel = sharedContext(batch)
		defer cancel()
	} else if cl := batch[0].calls; len(cl) == 1 {
		// A lone call without a pipeline: go-redis's pipeline of one cost
		// ~10 % of Register's rate at one caller (3.1-3.5k against 3.7-3.9k
		// ops/s, measured 2026-11-28).
		batch[0].cmds[0] = cl[0].script.Run(ctx, b.rdb, cl[0].keys, cl[0].args...)
		return
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
	// The server lost its scripts (a restart, SCRIPT FLUSH): load each
	// script once and send the calls again by SHA — not each call with its
	// script's source, which after a restart was 500 copies in one batch.
	var again redis.Pipeliner
	loaded := map[*redis.Script]bool{}
	for _, bc := range batch {
		for i, cmd := range bc.cmds {
			if err := cmd.Err(); err != nil && redis.HasErrorPrefix(err, "NOSCRIPT") {
				if again == nil {
					again = b.rdb.Pipeline()
				}
				c := bc.calls[i]
				ok, seen := loaded[c.script]
				if !seen {
					ok = c.script.Load(ctx, b.rdb).Err() == nil
					loaded[c.script] = ok
				}
				if ok {
					bc.cmds[i] = c.script.EvalSha(ctx, again, c.keys, c.args...)
				} else { // could not load it: send the source with the call
					bc.cmds[i] = c.script.Eval(ctx, again, c.keys, c.args...)
				}
			}
		}
	}
	if again != nil {
		if _, err := again.Exec(ctx); err != nil {
			unanswered(batch, err)
		}
	}
}

// sharedContext is the context of a pipeline several callers share: none of
// their cancellations (the others still want their answers), and the
// latest of their deadlines, or none when one of them has none.
func sharedContext(batch []*batchCall) (context.Context, context.CancelFunc) {
	var latest time.Time
	for _, bc := range batch {
		d, ok := bc.ctx.Deadline()
		if !ok {
			return context.Background(), func() {}
		}
		if d.After(latest) {
			latest = d
		}
	}
	return context.WithDeadline(context.Background(), latest)
}

// unanswered gives err to the calls of batch that have neither an answer
// nor an error. go-redis leaves a pipeline's commands so when it gives up
// before sending them — its retries spent on getting a connection — and
// returns the error only from Exec. (A script's nil answer is redis.Nil, an
// error, so a call with neither was not answered.)
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
		cmds[i] = errCmd(ctx, err)
	}
	return cmds
}

// errCmd is the answer err to a call that was not sent.
func errCmd(ctx context.Context, err error) *redis.Cmd {
	cmd := redis.NewCmd(ctx)
	cmd.SetErr(err)
	return cmd
}
