package main

import (
	"bytes"
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// printable returns s as it may reach an operator's terminal: control
// characters (C0, DEL, C1), invalid UTF-8, the bidirectional controls and
// the line and paragraph separators are written as Go escapes (\x1b, \r,
// \u202e, \xff). Stores refuse them in names since schema 2, but records
// written before may hold them, and a table cell must not move the cursor,
// retitle the window or reorder what the operator reads.
func printable(s string) string {
	i := unsafeAt(s)
	if i < 0 {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 8)
	b.WriteString(s[:i])
	for i < len(s) {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n == 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case unsafeRune(r):
			q := strconv.QuoteRune(r) // '\x1b', '\r', '\u202e'
			b.WriteString(q[1 : len(q)-1])
		default:
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	return b.String()
}

// unsafeAt is the byte offset of the first rune printable escapes, or -1.
func unsafeAt(s string) int {
	for i, r := range s {
		if unsafeRune(r) || r == utf8.RuneError && !strings.HasPrefix(s[i:], "\uFFFD") {
			return i
		}
	}
	return -1
}

func unsafeRune(r rune) bool {
	switch {
	case unicode.IsControl(r): // C0, DEL, C1
		return true
	case r == 0x061C, r == 0x200E, r == 0x200F, // bidi marks
		r >= 0x202A && r <= 0x202E, // embeddings and overrides
		r >= 0x2066 && r <= 0x2069, // isolates
		r == 0x2028, r == 0x2029:   // line and paragraph separators
		return true
	}
	return false
}

// escapeJSON writes encoding/json's output with the runes printable escapes
// that encoding/json leaves as they are (DEL, C1, bidi controls) written as
// \u escapes. In its output these runes occur only inside strings, where
// the escape means the same character: the document is unchanged for any
// JSON reader.
type escapeJSON struct{ w io.Writer }

func (e escapeJSON) Write(p []byte) (int, error) {
	unsafe := func(r rune) bool { return r >= 0x7f && unsafeRune(r) }
	if !bytes.ContainsFunc(p, unsafe) {
		return e.w.Write(p)
	}
	var b bytes.Buffer
	for i := 0; i < len(p); {
		r, n := utf8.DecodeRune(p[i:])
		if unsafe(r) {
			fmt.Fprintf(&b, `\u%04x`, r)
		} else {
			b.Write(p[i : i+n])
		}
		i += n
	}
	if _, err := e.w.Write(b.Bytes()); err != nil {
		return 0, err
	}
	return len(p), nil
}
