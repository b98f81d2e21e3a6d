// Package bolttest gives other packages' tests the bolt package's test
// data.
package bolttest

import (
	"io"
	"os"
	"testing"

	"github.com/corrstore/corrstore/internal/testenv"
)

// CopySchema1 copies bolt/testdata/schema1.db, a file written by the
// schema-1 code (testdata/README.md there says what it holds and how it
// was made), to dst, so that a test can upgrade or change the copy.
func CopySchema1(tb testing.TB, dst string) {
	tb.Helper()
	copyFile(tb, "bolt/testdata/schema1.db", dst)
}

// CopySchema2 copies bolt/testdata/schema2.db, a file written by the
// schema-2 code (replies inside the record), to dst.
func CopySchema2(tb testing.TB, dst string) {
	tb.Helper()
	copyFile(tb, "bolt/testdata/schema2.db", dst)
}

func copyFile(tb testing.TB, src, dst string) {
	tb.Helper()
	in, err := os.Open(testenv.ModuleFile(tb, src))
	if err != nil {
		tb.Fatal(err)
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		tb.Fatal(err)
	}
	_, err = io.Copy(out, in)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		tb.Fatal(err)
	}
}
