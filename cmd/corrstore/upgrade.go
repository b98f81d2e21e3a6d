package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/spf13/cobra"

	"github.com/corrstore/corrstore/bolt"
	"github.com/corrstore/corrstore/cmd/corrstore/internal/storeurl"
	"github.com/corrstore/corrstore/redisstore"
)

const upgradeAbout = `Brings a store written by an older corrstore to the schema this build reads and
writes, and says what it did. Stop every corrstore serve on the store first.

bolt://PATH: what any read-write open of the file does (corrstore serve does it
as it starts), done on purpose. Refused while a process holds the file.

redis://…: the only way a Redis prefix moves to a new schema. Stop every
instance first: instances of the previous release keep no liveness key and
cannot be detected. Refused while an instance of this release is alive on the
prefix (each keeps a liveness key, refreshed every 5s, that lives 15s), and
while another upgrade runs on it (it holds a lock until it ends; a killed
one's lock lives 15s). Never overwrites a record already at the new schema.
Resumable: after an interruption, run it again to finish. Run again when done,
it says the prefix is already at this schema.`

// upgradeOptions are what upgrade was asked.
type upgradeOptions struct {
	storeURL string
	force    bool
	output   outputFlag
}

func newUpgradeCmd(e *env) *cobra.Command {
	var o upgradeOptions
	cmd := newCommand("upgrade --store URL", "bring a store written by an older corrstore to this build's schema", upgradeAbout)
	cmd.Flags().StringVar(&o.storeURL, "store", "", "the store: bolt://PATH, redis://HOST:PORT/DB?prefix=P, redis+cluster://H1:P1,H2:P2?prefix=P")
	cmd.Flags().BoolVar(&o.force, "force", false, "Redis: upgrade even though instances look alive; only when you know they are stopped (a killed one's key lives 15s)")
	o.output = "table"
	cmd.Flags().VarP(&o.output, "output", "o", "table (one line), or json: the report as one JSON document")
	completeWith(cmd, "output", "table", "json")
	cmd.Args = func(cmd *cobra.Command, args []string) error {
		if len(args) > 0 {
			return fmt.Errorf("upgrade takes no arguments, got %q (the store is --store URL)", args)
		}
		return nil
	}
	cmd.RunE = func(cmd *cobra.Command, _ []string) error { return runUpgrade(cmd.Context(), e, &o) }
	return cmd
}

func runUpgrade(ctx context.Context, e *env, o *upgradeOptions) error {
	storeURL, force := &o.storeURL, &o.force
	if *storeURL == "" {
		return errors.New("give --store URL, the store to upgrade (bolt://PATH, redis://…)")
	}
	scheme, path, _ := strings.Cut(*storeURL, "://")
	switch scheme {
	case "bolt":
		if *force {
			return errors.New("--force is for Redis: a bolt file is upgraded only by the one process that holds it")
		}
		return upgradeBolt(e, *storeURL, path, o.output)
	case "redis", "rediss", "redis+cluster":
		return upgradeRedis(ctx, e, *storeURL, *force, o.output)
	}
	return fmt.Errorf("--store %q: want bolt://PATH, redis://HOST:PORT/DB or redis+cluster://H1:P1,H2:P2", storeurl.Redact(*storeURL))
}

func upgradeBolt(e *env, raw, path string, out outputFlag) error {
	if path == "" {
		return fmt.Errorf("--store %q: no file path after bolt://", raw)
	}
	rep, err := bolt.Upgrade(bolt.Options{Path: path, Logger: quietLogger(), NoSync: e.noSync, LockTimeout: 200 * time.Millisecond})
	if errors.Is(err, bolterrors.ErrTimeout) {
		return fmt.Errorf("--store %s: the file is held by another process (a running corrstore serve?): stop it first (or let it upgrade the file: serve does as it opens it)", raw)
	}
	if err != nil {
		return fmt.Errorf("--store %s: %w", raw, err)
	}
	return printUpgrade(e, out, rep, rep.String())
}

// upgradeJSON is the report of upgrade -o json: the backend's report, its
// fields as Go names them, beside the line the table form prints.
type upgradeJSON struct {
	Upgraded bool   `json:"upgraded"`
	From     int    `json:"from"`
	To       int    `json:"to"`
	Summary  string `json:"summary"`
	Report   any    `json:"report"`
}

func printUpgrade(e *env, out outputFlag, rep any, line string) error {
	if out != "json" {
		_, err := fmt.Fprintln(e.stdout, line)
		return err
	}
	j := upgradeJSON{Summary: line, Report: rep}
	switch r := rep.(type) {
	case bolt.UpgradeReport:
		j.Upgraded, j.From, j.To = r.Upgraded(), r.From, r.To
	case redisstore.UpgradeReport:
		j.Upgraded, j.From, j.To = !r.AlreadyDone, r.From, r.To
	}
	return writeJSON(e.stdout, j)
}

func upgradeRedis(ctx context.Context, e *env, raw string, force bool, out outputFlag) error {
	r, err := storeurl.DialRedis(ctx, raw, quietLogger())
	if err != nil {
		return err
	}
	defer r.Client.Close()
	rep, err := redisstore.Upgrade(ctx, r.Client, redisstore.UpgradeOptions{
		Prefix: r.Prefix, Shards: r.Shards, Force: force, Logger: quietLogger()})
	if err != nil {
		return fmt.Errorf("--store %s: %w", storeurl.Redact(raw), err)
	}
	return printUpgrade(e, out, rep, rep.String())
}
