package main

import (
	"fmt"
	"strings"
	"sync"
	"time"
)

// progress reports a long copy: a bar redrawn in place on a terminal, a
// plain line every few seconds otherwise (logs, CI).
type progress struct {
	e     *env
	verb  string
	total int64 // -1: unknown
	start time.Time

	mu   sync.Mutex
	done int64
	last time.Time
}

func newProgress(e *env, verb string, total int64) *progress {
	now := time.Now()
	return &progress{e: e, verb: verb, total: total, start: now, last: now}
}

func (p *progress) add(n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.done += int64(n)
	every := 5 * time.Second
	if p.e.terminal {
		every = 100 * time.Millisecond
	}
	if now := time.Now(); now.Sub(p.last) >= every {
		p.last = now
		p.draw(false)
	}
}

func (p *progress) finish() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.e.terminal {
		p.draw(true)
	}
}

func (p *progress) draw(final bool) {
	el := time.Since(p.start)
	rate := float64(p.done) / max(el.Seconds(), 1e-3)
	if !p.e.terminal {
		fmt.Fprintf(p.e.stderr, "%s %d%s (%.0f/s)\n", p.verb, p.done, p.of(), rate)
		return
	}
	bar := ""
	if p.total > 0 {
		const width = 30
		n := min(int(float64(width)*float64(p.done)/float64(p.total)), width)
		bar = "[" + strings.Repeat("=", n) + strings.Repeat(" ", width-n) + "] "
	}
	end := ""
	if final {
		end = "\n"
	}
	fmt.Fprintf(p.e.stderr, "\r%s%s %d%s  %.0f/s  %s   %s", bar, p.verb, p.done, p.of(), rate, el.Round(time.Second), end)
}

func (p *progress) of() string {
	if p.total < 0 {
		return ""
	}
	return fmt.Sprintf("/%d", p.total)
}
