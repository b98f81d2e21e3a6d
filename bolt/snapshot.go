package bolt

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"
)

// Snapshot is a read-only Store on a private, checked copy of a database
// file. Close removes the copy.
type Snapshot struct {
	*Store
	dir string
}

// Close closes the copy and removes it.
func (s *Snapshot) Close() error {
	err := s.Store.Close()
	return errors.Join(err, os.RemoveAll(s.dir))
}

// SnapshotAttempts is how many copies OpenSnapshot takes before it gives up
// on a file that is written faster than it can be copied whole.
const SnapshotAttempts = 8

// OpenSnapshot reads a database file that another process holds (and may be
// writing): bbolt's read-only open needs a shared lock the daemon's
// exclusive lock never grants. It copies the file without a lock into a
// temporary directory, opens the copy read-only and checks it with Verify
// (page structure, indexes and counters against the records). A copy torn by
// a concurrent commit fails the check and is taken again, up to
// SnapshotAttempts times. opts.Path names the file; ReadOnly is implied.
//
// What it shows is the file as of one commit, a moment ago: good for
// listing, inspecting and exporting, never for writing back.
func OpenSnapshot(ctx context.Context, opts Options) (*Snapshot, error) {
	src := opts.Path
	if src == "" {
		src = "corrstore.db"
	}
	if _, err := os.Stat(src); err != nil {
		return nil, fmt.Errorf("snapshot %s: %w", src, err)
	}
	var last error
	for attempt := range SnapshotAttempts {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if attempt > 0 {
			// A commit was in flight; give it a moment to land.
			t := time.NewTimer(time.Duration(attempt) * 20 * time.Millisecond)
			select {
			case <-ctx.Done():
				t.Stop()
				return nil, ctx.Err()
			case <-t.C:
			}
		}
		snap, err := snapshotOnce(ctx, src, opts)
		if err == nil {
			return snap, nil
		}
		var se *SchemaError
		if errors.As(err, &se) { // another copy would not change it
			se.Path = src
			return nil, se
		}
		last = err
	}
	return nil, fmt.Errorf("snapshot %s: no consistent copy in %d attempts (the file is being written too fast; read through the server instead): %w",
		src, SnapshotAttempts, last)
}

func snapshotOnce(ctx context.Context, src string, opts Options) (snap *Snapshot, err error) {
	dir, err := os.MkdirTemp("", "corrstore-snapshot-")
	if err != nil {
		return nil, err
	}
	defer func() {
		// A torn copy can trip bbolt's page reads; that is a failed attempt,
		// not a crash.
		if r := recover(); r != nil {
			err = fmt.Errorf("torn copy: %v", r)
		}
		if err != nil {
			if snap != nil {
				snap.Store.Close()
			}
			snap = nil
			os.RemoveAll(dir)
		}
	}()
	dst := filepath.Join(dir, filepath.Base(src))
	if err := copyFile(src, dst); err != nil {
		return nil, err
	}
	opts.Path, opts.ReadOnly = dst, true
	st, err := Open(opts)
	if err != nil {
		return nil, err
	}
	snap = &Snapshot{Store: st, dir: dir}
	if err := st.Verify(ctx); err != nil {
		return snap, fmt.Errorf("copy does not check out: %w", err)
	}
	return snap, nil
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
