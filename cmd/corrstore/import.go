package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"

	"github.com/corrstore/corrstore/store"
)

// importer is a store that writes a record as it is, idempotently
// (bolt.Store.Import). Proposed for the store package as store.Importer.
type importer interface {
	Import(ctx context.Context, c *store.Correlation) (created bool, err error)
}

const importAbout = `Copies correlations into --store, each exactly as it was (state, replies, late
replies, events, dispatch state, version, times): from an export file (FILE, or
- for standard input) or straight from another store (--from URL).

Each record keeps its namespace (a record of an export made before namespaces
scoped IDs lands in the namespace it names). It is idempotent: a record
already there with the same content is left as it is, so an interrupted import
is resumed by running it again. A record there with the same namespace and ID
and other content is a conflict: it is left as it is and reported. At the end every imported record is read back from --store and the
counts and checksums per state are compared with the source.`

// importOut is import -o json. The field names are stable.
type importOut struct {
	Source       string   `json:"source"`
	Target       string   `json:"target"`
	Read         int64    `json:"read"`
	Created      int64    `json:"created"`
	Unchanged    int64    `json:"unchanged"`
	Conflicts    int64    `json:"conflicts"`
	ConflictIDs  []string `json:"conflict_ids,omitempty"` // NS/ID
	Verified     bool     `json:"verified"`
	Summary      *summary `json:"summary"`
	Seconds      float64  `json:"seconds"`
	PerSecond    float64  `json:"per_second"`
	VerifyFailed string   `json:"verify_failed,omitempty"`
}

// importOptions are what import was asked.
type importOptions struct {
	conn
	from    string
	workers int
}

func newImportCmd(e *env) *cobra.Command {
	var o importOptions
	cmd := newCommand("import FILE | --from URL", "correlations from an export or another store, verified", importAbout)
	o.conn.storeOnlyFlags(cmd, "the store to import into: bolt://PATH, redis://HOST:PORT/DB, redis+cluster://H1:P1,H2:P2",
		"import writes to a store directly (--store URL); stop the server that holds a bolt file first")
	o.conn.outputFlag(cmd)
	cmd.Flags().StringVar(&o.from, "from", "", "copy straight from this store (bolt://…, redis://…) instead of a file")
	cmd.Flags().IntVar(&o.workers, "workers", 128, "concurrent writers (a bolt store commits them in groups, one fsync each)")
	cmd.RunE = func(cmd *cobra.Command, args []string) error { return runImport(cmd.Context(), e, &o, args) }
	return cmd
}

func (o *importOptions) check(args []string) error {
	switch {
	case o.storeURL == "":
		return errors.New("give --store URL, the store to import into")
	case o.from != "" && len(args) > 0:
		return errors.New("give FILE or --from URL, not both")
	case o.from == "" && len(args) != 1:
		return errors.New("give the export FILE (- for standard input) or --from URL")
	case o.workers < 1 || o.workers > 1024:
		return fmt.Errorf("--workers: must be between 1 and 1024, got %d", o.workers)
	case o.from == o.storeURL:
		return errors.New("--from and --store name the same store")
	}
	return nil
}

// runImport copies what the source holds into --store, reads every record
// back and compares, then prints what it did.
func runImport(ctx context.Context, e *env, o *importOptions, args []string) error {
	if err := o.check(args); err != nil {
		return err
	}
	// Open the source first: a bad file or URL fails before the target is touched.
	src, err := openImportSource(ctx, e, o, args)
	if err != nil {
		return err
	}
	defer src.close()
	st, err := o.openStore(ctx, e, false)
	if err != nil {
		return err
	}
	defer st.Close()
	imp, ok := st.(importer)
	if !ok {
		return fmt.Errorf("--store %s cannot write records as they are (its backend has no Import yet)", o.storeURL)
	}

	start := time.Now()
	out := importOut{Source: src.name, Target: o.storeURL}
	res, err := copyRecords(ctx, e, o, src, imp, &out)
	if err != nil {
		return fmt.Errorf("after %d created and %d unchanged (run it again to resume): %w", out.Created, out.Unchanged, err)
	}
	got, err := summarize(ctx, timedCalls{st, &o.conn}, res.refs, o.workers)
	if err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	out.VerifyFailed = res.sum.diff(got)
	out.Verified = out.VerifyFailed == ""
	out.Summary = got.seal()
	out.Seconds = time.Since(start).Seconds()
	out.PerSecond = float64(out.Read) / max(out.Seconds, 1e-3)
	if err := renderImport(e, &o.conn, &out); err != nil {
		return err
	}
	switch {
	case !out.Verified:
		return fmt.Errorf("verify failed: the target does not hold what was read: %s", out.VerifyFailed)
	case out.Conflicts > 0:
		return fmt.Errorf("%d records conflict with other content under the same namespace and ID in %s (left as they are): %s", out.Conflicts, o.storeURL, printable(strings.Join(out.ConflictIDs, " ")))
	}
	return nil
}

// importSource is where import reads: an export file or another store.
type importSource struct {
	name  string
	total int64 // -1: unknown
	read  func(ctx context.Context, yield func(*store.Correlation) error) error
	close func() error
}

func openImportSource(ctx context.Context, e *env, o *importOptions, args []string) (*importSource, error) {
	if o.from == "" {
		src := &importSource{name: args[0], total: -1, close: func() error { return nil }}
		var rd io.Reader = e.stdin
		if args[0] != "-" {
			f, err := os.Open(args[0])
			if err != nil {
				return nil, err
			}
			src.close, rd = f.Close, f
		}
		src.read = func(ctx context.Context, yield func(*store.Correlation) error) error {
			return readExport(rd, src.name, yield)
		}
		return src, nil
	}
	from := conn{storeURL: o.from, timeout: o.timeout}
	st, err := from.openStore(ctx, e, true)
	if err != nil {
		return nil, fmt.Errorf("--from: %w", err)
	}
	b := timedCalls{st, &from}
	src := &importSource{name: o.from, total: countAll(ctx, b, ""), close: st.Close}
	src.read = func(ctx context.Context, yield func(*store.Correlation) error) error {
		return eachMatching(ctx, b, store.Filter{Order: store.OldestFirst, Limit: store.MaxListLimit}, func(cs []*store.Correlation) error {
			for _, x := range cs {
				if err := yield(x); err != nil {
					return err
				}
			}
			return nil
		})
	}
	return src, nil
}

// copied is what copyRecords wrote: the refs to read back and the summary
// of what the source held.
type copied struct {
	refs []store.Ref
	sum  *summary
}

// copyRecords reads src into imp with --workers writers, counting into out.
func copyRecords(ctx context.Context, e *env, o *importOptions, src *importSource, imp importer, out *importOut) (copied, error) {
	prog := newProgress(e, "imported", src.total)
	defer prog.finish()
	var created, unchanged, conflicts, readN atomic.Int64
	defer func() {
		out.Read, out.Created, out.Unchanged, out.Conflicts = readN.Load(), created.Load(), unchanged.Load(), conflicts.Load()
	}()
	var mu sync.Mutex
	res := copied{sum: newSummary()}
	g, gctx := errgroup.WithContext(ctx)
	ch := make(chan *store.Correlation, 4*o.workers)
	g.Go(func() error {
		defer close(ch)
		return src.read(gctx, func(x *store.Correlation) error {
			readN.Add(1)
			select {
			case ch <- x:
				return nil
			case <-gctx.Done():
				return gctx.Err()
			}
		})
	})
	for range o.workers {
		g.Go(func() error {
			sum := newSummary()
			var mine []store.Ref
			defer func() {
				mu.Lock()
				res.sum.merge(sum)
				res.refs = append(res.refs, mine...)
				mu.Unlock()
			}()
			for x := range ch {
				ok, err := timed(&o.conn, gctx, func(ctx context.Context) (bool, error) { return imp.Import(ctx, x) })
				switch {
				case errors.Is(err, store.ErrConflict):
					conflicts.Add(1)
					mu.Lock()
					if len(out.ConflictIDs) < 10 {
						out.ConflictIDs = append(out.ConflictIDs, x.Ref().String())
					}
					mu.Unlock()
					continue
				case err != nil:
					return fmt.Errorf("import %s: %w", printable(x.Ref().String()), err)
				case ok:
					created.Add(1)
				default:
					unchanged.Add(1)
				}
				if err := sum.add(x); err != nil {
					return err
				}
				mine = append(mine, x.Ref())
				prog.add(1)
			}
			return nil
		})
	}
	err := g.Wait()
	return res, err
}

func renderImport(e *env, c *conn, out *importOut) error {
	if c.json() {
		return writeJSON(e.stdout, out)
	}
	tw := table(e.stdout)
	fmt.Fprintf(tw, "read:\t%d\t(from %s)\n", out.Read, out.Source)
	fmt.Fprintf(tw, "created:\t%d\n", out.Created)
	fmt.Fprintf(tw, "unchanged:\t%d\t(already there, same content)\n", out.Unchanged)
	fmt.Fprintf(tw, "conflicts:\t%d\n", out.Conflicts)
	fmt.Fprintln(tw, "STATE\tCOUNT\tCHECKSUM")
	for _, s := range store.States {
		fmt.Fprintf(tw, "%s\t%d\t%.16s\n", s, out.Summary.States[s].Count, out.Summary.States[s].Checksum)
	}
	v := "verified: every imported record read back, counts and checksums per state match the source"
	if !out.Verified {
		v = "VERIFY FAILED: " + out.VerifyFailed
	}
	tw.Flush()
	fmt.Fprintf(e.stdout, "%s (%.1fs, %.0f/s)\n", v, out.Seconds, out.PerSecond)
	return nil
}

// readExport reads an export file, checks its header, hands each record to
// yield and checks the summary line against what it read.
func readExport(r io.Reader, name string, yield func(*store.Correlation) error) error {
	rd := bufio.NewReaderSize(r, 1<<20)
	read := newSummary()
	var fileSum *summary
	for n := 1; ; n++ {
		line, err := rd.ReadBytes('\n')
		if len(line) == 0 && err == io.EOF {
			break
		}
		if err != nil && err != io.EOF {
			return err
		}
		if fileSum != nil {
			return fmt.Errorf("%s line %d: data after the summary", name, n)
		}
		var l exportLine
		if err := json.Unmarshal(line, &l); err != nil {
			return fmt.Errorf("%s line %d: not an export line: %v", name, n, err)
		}
		switch {
		case n == 1:
			if l.Type != "header" || l.Header == nil || l.Header.Format != exportFormat {
				return fmt.Errorf("%s: not a corrstore export (no header line)", name)
			}
			if l.Header.Version < 1 || l.Header.Version > exportVersion {
				return fmt.Errorf("%s: export format version %d; this build reads versions 1 to %d: upgrade corrstore", name, l.Header.Version, exportVersion)
			}
		case l.Type == "correlation" && l.Correlation != nil:
			if err := read.add(l.Correlation); err != nil {
				return err
			}
			if err := yield(l.Correlation); err != nil {
				return err
			}
		case l.Type == "summary" && l.Summary != nil:
			fileSum = l.Summary
			if err := fileSum.loadSums(); err != nil {
				return fmt.Errorf("%s line %d: %w", name, n, err)
			}
		default:
			return fmt.Errorf("%s line %d: unknown line type %q", name, n, l.Type)
		}
	}
	if fileSum == nil {
		return fmt.Errorf("%s is incomplete (no summary line): finish it with corrstore export --to %s", name, name)
	}
	if d := fileSum.diff(read); d != "" {
		return fmt.Errorf("%s: its summary does not match its lines (damaged file?): %s", name, d)
	}
	return nil
}

// summarize reads every ref back from st and sums the records up.
func summarize(ctx context.Context, st storeOrServer, refs []store.Ref, workers int) (*summary, error) {
	total := newSummary()
	var mu sync.Mutex
	g, gctx := errgroup.WithContext(ctx)
	ch := make(chan store.Ref, 1024)
	g.Go(func() error {
		defer close(ch)
		for _, r := range refs {
			select {
			case ch <- r:
			case <-gctx.Done():
				return gctx.Err()
			}
		}
		return nil
	})
	for range workers {
		g.Go(func() error {
			sum := newSummary()
			for r := range ch {
				c, err := st.Get(gctx, r)
				if err != nil {
					return fmt.Errorf("%s: %w", printable(r.String()), err)
				}
				if err := sum.add(c); err != nil {
					return err
				}
			}
			mu.Lock()
			total.merge(sum)
			mu.Unlock()
			return nil
		})
	}
	return total, g.Wait()
}
