package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/corrstore/corrstore/bolt"
	"github.com/corrstore/corrstore/reaper"
	"github.com/corrstore/corrstore/store"
)

// Main is the serve command: ParseFlags, Run, then Close on shutdown. The
// end-to-end tests drive the same type.
type Main struct {
	StoreURL       string
	ReaperInterval time.Duration
	LogLevel       string

	Logger *slog.Logger
	Store  store.Store

	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// NewMain returns a Main with the defaults.
func NewMain() *Main {
	return &Main{StoreURL: "bolt://./corrstore.db", ReaperInterval: time.Second, LogLevel: "info"}
}

// ParseFlags reads the flags; every flag has a CORRSTORE_* environment
// equivalent (flag --reaper-interval → CORRSTORE_REAPER_INTERVAL), and a
// flag given on the command line wins.
func (m *Main) ParseFlags(args []string) error {
	fs := flag.NewFlagSet("corrstore serve", flag.ContinueOnError)
	fs.StringVar(&m.StoreURL, "store", m.StoreURL, "where correlations live: bolt://PATH (bolt:///abs/file.db, bolt://./relative.db)")
	fs.DurationVar(&m.ReaperInterval, "reaper-interval", m.ReaperInterval, "how often the reaper expires due correlations")
	fs.StringVar(&m.LogLevel, "log-level", m.LogLevel, "debug, info, warn or error")
	var envErr error
	fs.VisitAll(func(f *flag.Flag) {
		name := "CORRSTORE_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v, ok := os.LookupEnv(name); ok {
			if err := f.Value.Set(v); err != nil && envErr == nil {
				envErr = fmt.Errorf("%s=%q: %w", name, v, err)
			}
		}
	})
	if envErr != nil {
		return envErr
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("serve takes no arguments, got %q", fs.Args())
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(m.LogLevel)); err != nil {
		return fmt.Errorf("--log-level: %q is not one of debug, info, warn, error", m.LogLevel)
	}
	m.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	return nil
}

// openStore opens the store a --store URL names: bolt://PATH, where PATH
// is a file path as is (bolt:///var/lib/corrstore.db is absolute,
// bolt://./corrstore.db relative to the working directory).
func openStore(raw string, logger *slog.Logger) (store.Store, error) {
	scheme, rest, ok := strings.Cut(raw, "://")
	if !ok {
		return nil, fmt.Errorf("--store %q: want bolt://PATH", raw)
	}
	switch scheme {
	case "bolt":
		if rest == "" {
			return nil, fmt.Errorf("--store %q: no file path after bolt://", raw)
		}
		return bolt.Open(bolt.Options{Path: rest, Logger: logger})
	default:
		return nil, fmt.Errorf("--store %q: scheme %q is not supported (bolt:// only, for now)", raw, scheme)
	}
}

// Run opens the store and starts the reaper.
func (m *Main) Run(ctx context.Context) error {
	if m.Logger == nil {
		m.Logger = slog.Default()
	}
	st, err := openStore(m.StoreURL, m.Logger)
	if err != nil {
		return err
	}
	m.Store = st
	r, err := reaper.New(st, reaper.Config{Interval: m.ReaperInterval, Logger: m.Logger})
	if err != nil {
		return err
	}
	ctx, m.cancel = context.WithCancel(ctx)
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		if err := r.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
			m.Logger.Error("reaper stopped", "err", err)
		}
	}()
	m.Logger.Info("corrstore serving", "store", m.StoreURL, "reaper_interval", m.ReaperInterval, "version", version)
	return nil
}

// Close stops the reaper and closes the store.
func (m *Main) Close() error {
	if m.cancel != nil {
		m.cancel()
	}
	m.wg.Wait()
	if m.Store != nil {
		return m.Store.Close()
	}
	return nil
}
