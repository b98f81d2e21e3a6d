package main

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/corrstore/corrstore/store"
)

// The export format is JSON lines: a header, one line per correlation in the
// store's own record JSON, and a summary with a count and a checksum per
// state. A file without its summary is an unfinished export.
const exportFormat = "corrstore-export"

// exportVersion 2: a correlation is (namespace, id); version 1 files (ids
// global) read the same, each record in the namespace it names.
const exportVersion = 2

type exportLine struct {
	Type        string             `json:"type"` // header, correlation, summary
	Header      *exportHeader      `json:"header,omitempty"`
	Correlation *store.Correlation `json:"correlation,omitempty"`
	Summary     *summary           `json:"summary,omitempty"`
}

type exportHeader struct {
	Format  string `json:"format"`
	Version int    `json:"version"`
	Source  string `json:"source"`
	// Namespace: only this namespace was exported; empty: every one.
	Namespace string    `json:"namespace,omitempty"`
	StartedAt time.Time `json:"started_at"`
}

// summary counts correlations per state with an order-free checksum: the XOR
// of the SHA-256 of each record's JSON. Two stores with the same records
// have the same summary, whatever order they were read in.
type summary struct {
	Count  int64                     `json:"count"`
	States map[store.State]*stateSum `json:"states"`
}

type stateSum struct {
	Count    int64  `json:"count"`
	Checksum string `json:"checksum"`
	sum      [sha256.Size]byte
}

func newSummary() *summary {
	s := &summary{States: map[store.State]*stateSum{}}
	for _, st := range store.States {
		s.States[st] = &stateSum{}
	}
	return s
}

// add counts one record; its JSON is the record as a store returns it.
func (s *summary) add(c *store.Correlation) error {
	b, err := json.Marshal(c)
	if err != nil {
		return err
	}
	h := sha256.Sum256(b)
	st := s.States[c.State]
	if st == nil {
		st = &stateSum{}
		s.States[c.State] = st
	}
	st.Count++
	s.Count++
	for i := range h {
		st.sum[i] ^= h[i]
	}
	return nil
}

// merge adds another summary's counts (workers keep their own).
func (s *summary) merge(o *summary) {
	for k, v := range o.States {
		st := s.States[k]
		if st == nil {
			st = &stateSum{}
			s.States[k] = st
		}
		st.Count += v.Count
		s.Count += v.Count
		for i := range v.sum {
			st.sum[i] ^= v.sum[i]
		}
	}
}

// seal writes the checksums out, for printing.
func (s *summary) seal() *summary {
	for _, st := range s.States {
		st.Checksum = hex.EncodeToString(st.sum[:])
	}
	return s
}

// diff names the states where two summaries disagree ("" when they agree).
func (s *summary) diff(o *summary) string {
	s.seal()
	o.seal()
	var out []string
	for _, k := range store.States {
		a, b := s.States[k], o.States[k]
		if a.Count != b.Count || a.Checksum != b.Checksum {
			out = append(out, fmt.Sprintf("%s: %d vs %d records, checksum %.12s vs %.12s", k, a.Count, b.Count, a.Checksum, b.Checksum))
		}
	}
	return strings.Join(out, "; ")
}

// loadSums reads the checksums of a summary read from a file back into bytes.
func (s *summary) loadSums() error {
	for _, st := range store.States {
		if s.States[st] == nil {
			s.States[st] = &stateSum{}
		}
	}
	for k, st := range s.States {
		if st.Checksum == "" {
			continue
		}
		b, err := hex.DecodeString(st.Checksum)
		if err != nil || len(b) != sha256.Size {
			return fmt.Errorf("summary: checksum of %s is not %d hex bytes", k, sha256.Size)
		}
		copy(st.sum[:], b)
	}
	return nil
}

const exportAbout = `Writes every correlation of a store — every namespace, any state, with its
replies, late replies, events and dispatch state — as JSON lines: a header, one
line per correlation (the store's record JSON, namespace included), and a
summary with a count and a checksum per state. A bolt file a daemon holds is
read from a checked copy.

With --to FILE it is resumable: run it again after an interruption and it
continues after the last complete line; on a complete file it does nothing.
--namespace exports one namespace only. Load the file into another store with
corrstore import.`

// exportOptions are what export was asked.
type exportOptions struct {
	conn
	to, namespace string
}

func newExportCmd(e *env) *cobra.Command {
	var o exportOptions
	cmd := newCommand("export --store URL [--to FILE]", "every correlation, as JSON lines", exportAbout)
	o.conn.storeOnlyFlags(cmd, "the store to export: bolt://PATH, redis://HOST:PORT/DB, redis+cluster://H1:P1,H2:P2",
		"export reads a store directly (--store URL): the HTTP API does not carry every field of a record; a bolt file the server holds is read from a checked copy")
	cmd.Flags().StringVar(&o.to, "to", "-", "file to write; - is standard output")
	namespaceFlag(cmd.Flags(), &o.namespace, "", "only this namespace (default: every namespace)")
	cmd.Args = func(cmd *cobra.Command, args []string) error {
		if len(args) > 0 {
			return fmt.Errorf("export takes no arguments, got %q (the file is --to FILE)", args)
		}
		return nil
	}
	cmd.RunE = func(cmd *cobra.Command, _ []string) error { return runExport(cmd.Context(), e, &o) }
	return cmd
}

func runExport(ctx context.Context, e *env, o *exportOptions) error {
	if o.storeURL == "" {
		return errors.New("give --store URL, the store to export")
	}
	if o.namespace != "" {
		if err := store.ValidateNamespace(o.namespace); err != nil {
			return flagError(err)
		}
	}
	out, err := openExportOutput(e, o)
	if out == nil || err != nil {
		return err
	}
	defer out.close()
	st, err := o.openStore(ctx, e, true)
	if err != nil {
		return err
	}
	defer st.Close()
	b := timedCalls{st, &o.conn}
	prog := newProgress(e, "exported", countAll(ctx, b, o.namespace))
	prog.done = out.sum.Count
	if err := writeExport(ctx, e, o, b, out, prog); err != nil {
		return err
	}
	prog.finish()
	fmt.Fprintf(e.stderr, "exported %s\n", describeSummary(out.sum))
	return nil
}

// exportOutput is where export writes: standard output, or --to FILE,
// maybe resumed after cursor.
type exportOutput struct {
	w          io.Writer
	file       *os.File // nil: standard output
	sum        *summary // of what the file already holds
	cursor     string
	headerDone bool
}

func (out *exportOutput) close() {
	if out.file != nil {
		out.file.Close()
	}
}

// openExportOutput opens --to (nil, nil: the file is a complete export).
func openExportOutput(e *env, o *exportOptions) (*exportOutput, error) {
	out := &exportOutput{w: e.stdout, sum: newSummary()}
	if o.to == "-" {
		return out, nil
	}
	f, hasHeader, cur, err := openExportFile(o.to, o.namespace, out.sum)
	if err != nil {
		return nil, err
	}
	if f == nil {
		fmt.Fprintf(e.stderr, "%s is a complete export of %s; nothing to do (remove it to export again)\n", o.to, plural(int(out.sum.Count), "correlation"))
		return nil, nil
	}
	out.w, out.file, out.cursor, out.headerDone = f, f, cur, hasHeader
	if hasHeader {
		fmt.Fprintf(e.stderr, "resuming %s after %s\n", o.to, plural(int(out.sum.Count), "correlation"))
	}
	return out, nil
}

// writeExport writes the header (unless resumed), every correlation after
// out.cursor, and the summary, then syncs a file.
func writeExport(ctx context.Context, e *env, o *exportOptions, b storeOrServer, out *exportOutput, prog *progress) error {
	bw := bufio.NewWriterSize(out.w, 1<<20)
	enc := json.NewEncoder(bw)
	if !out.headerDone {
		if err := enc.Encode(exportLine{Type: "header", Header: &exportHeader{
			Format: exportFormat, Version: exportVersion, Source: o.storeURL, Namespace: o.namespace, StartedAt: e.now().UTC()}}); err != nil {
			return err
		}
	}
	f := store.Filter{Namespace: o.namespace, Order: store.OldestFirst, Limit: store.MaxListLimit, Cursor: out.cursor, Full: true}
	err := eachMatching(ctx, b, f, func(cs []*store.Correlation) error {
		for _, x := range cs {
			if err := enc.Encode(exportLine{Type: "correlation", Correlation: x}); err != nil {
				return err
			}
			if err := out.sum.add(x); err != nil {
				return err
			}
		}
		prog.add(len(cs))
		return nil
	})
	if err != nil {
		bw.Flush()
		return fmt.Errorf("after %s (run it again with --to FILE to resume): %w", plural(int(out.sum.Count), "correlation"), err)
	}
	if err := enc.Encode(exportLine{Type: "summary", Summary: out.sum.seal()}); err != nil {
		return err
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	if out.file != nil {
		return out.file.Sync()
	}
	return nil
}

// countAll is how many correlations b holds in namespace ns ("" every
// one), for a progress bar: -1 when b cannot say.
func countAll(ctx context.Context, b storeOrServer, ns string) int64 {
	s, err := b.Stats(ctx, ns)
	if err != nil {
		return -1
	}
	var total int64
	for _, n := range s.Total().States {
		total += n
	}
	return total
}

// nsName names what --namespace ns exports.
func nsName(ns string) string {
	if ns == "" {
		return "every namespace"
	}
	return "namespace " + ns
}

func describeSummary(s *summary) string {
	out := plural(int(s.Count), "correlation") + ":"
	for _, st := range store.States {
		if v := s.States[st]; v != nil {
			out += fmt.Sprintf(" %s %d", st, v.Count)
		}
	}
	return out
}

// openExportFile opens --to FILE for writing. A new or empty file starts
// afresh. A file with a summary is complete: nil file. Otherwise it is an
// interrupted export: the partial last line is cut, sum counts what is
// there, and the cursor continues after the last correlation. ns must be the
// namespace the file was started with.
func openExportFile(path, ns string, sum *summary) (f *os.File, hasHeader bool, cursor string, err error) {
	f, err = os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, false, "", err
	}
	defer func() {
		if err != nil {
			f.Close()
			f = nil
		}
	}()
	rd := bufio.NewReaderSize(f, 1<<20)
	var good int64 // bytes of complete lines
	var last *store.Correlation
	for n := 1; ; n++ {
		line, rerr := rd.ReadBytes('\n')
		if rerr == io.EOF {
			break // a line without its newline is cut below
		}
		if rerr != nil {
			return nil, false, "", rerr
		}
		var l exportLine
		if err := json.Unmarshal(line, &l); err != nil {
			return nil, false, "", fmt.Errorf("%s line %d: not an export line: %v", path, n, err)
		}
		switch {
		case n == 1 && (l.Type != "header" || l.Header == nil || l.Header.Format != exportFormat):
			return nil, false, "", fmt.Errorf("%s exists and is not a corrstore export; give another --to", path)
		case n == 1 && l.Header.Version != exportVersion:
			return nil, false, "", fmt.Errorf("%s is an export of format version %d, this build writes %d: give another --to", path, l.Header.Version, exportVersion)
		case n == 1 && l.Header.Namespace != ns:
			return nil, false, "", fmt.Errorf("%s is an export of %s, not of %s: give the same --namespace, or another --to", path, nsName(l.Header.Namespace), nsName(ns))
		case l.Type == "summary":
			sum.Count = l.Summary.Count
			return nil, false, "", nil
		case l.Type == "correlation" && l.Correlation != nil:
			if err := sum.add(l.Correlation); err != nil {
				return nil, false, "", err
			}
			last = l.Correlation
		}
		good += int64(len(line))
	}
	if err := f.Truncate(good); err != nil {
		return nil, false, "", err
	}
	if _, err := f.Seek(good, io.SeekStart); err != nil {
		return nil, false, "", err
	}
	if last == nil {
		return f, good > 0, "", nil
	}
	return f, true, store.EncodeCursor(last.CreatedAt, last.Ref()), nil
}
