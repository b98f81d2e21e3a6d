package redistest

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"
)

// maxRESPLen bounds one bulk string or aggregate the proxy and the harness
// read: a corrupt stream fails instead of allocating without end.
const maxRESPLen = 512 << 20

// readValue reads one complete RESP2 or RESP3 value from br and appends its
// bytes, unchanged, to buf. It returns the value's type byte. When args is
// not nil and the value is an array of bulk strings (a command as clients
// send it), the strings are appended to *args as well.
func readValue(br *bufio.Reader, buf []byte, args *[]string) ([]byte, byte, error) {
	start := len(buf)
	for {
		part, err := br.ReadSlice('\n')
		buf = append(buf, part...)
		if err == nil {
			break
		}
		if err != bufio.ErrBufferFull || len(buf)-start > maxRESPLen {
			return buf, 0, err
		}
	}
	line := buf[start:]
	if len(line) < 3 || line[len(line)-2] != '\r' {
		return buf, 0, fmt.Errorf("resp: malformed line %q", truncate(line))
	}
	typ := line[0]
	body := string(line[1 : len(line)-2])
	switch typ {
	case '+', '-', ':', '_', ',', '#', '(':
		return buf, typ, nil
	case '$', '!', '=':
		n, err := respLen(body)
		if err != nil || n < 0 {
			return buf, typ, err
		}
		at := len(buf)
		buf = append(buf, make([]byte, n+2)...)
		if _, err := io.ReadFull(br, buf[at:]); err != nil {
			return buf, typ, err
		}
		if args != nil {
			*args = append(*args, string(buf[at:at+n]))
		}
		return buf, typ, nil
	case '*', '~', '>', '%', '|':
		n, err := respLen(body)
		if err != nil || n < 0 {
			return buf, typ, err
		}
		if typ == '%' || typ == '|' {
			n *= 2
		}
		for range n {
			if buf, _, err = readValue(br, buf, args); err != nil {
				return buf, typ, err
			}
		}
		if typ == '|' { // an attribute comes before the value it describes
			return readValue(br, buf, args)
		}
		return buf, typ, nil
	default:
		// An inline command (redis-cli style): words on one line.
		if args != nil {
			*args = append(*args, strings.Fields(string(line))...)
		}
		return buf, typ, nil
	}
}

func respLen(b string) (int, error) {
	n, err := strconv.Atoi(b)
	if err != nil || n > maxRESPLen {
		return 0, fmt.Errorf("resp: bad length %q", truncate([]byte(b)))
	}
	return n, nil
}

func truncate(b []byte) []byte {
	if len(b) > 64 {
		return b[:64]
	}
	return b
}

// writeCommand encodes args as a RESP array of bulk strings.
func writeCommand(buf []byte, args ...string) []byte {
	buf = fmt.Appendf(buf, "*%d\r\n", len(args))
	for _, a := range args {
		buf = fmt.Appendf(buf, "$%d\r\n%s\r\n", len(a), a)
	}
	return buf
}

// errReply is an error reply of the server.
type errReply string

func (e errReply) Error() string { return string(e) }

// command runs one command on a fresh connection to addr (RESP2, no client
// library, so the harness starts no goroutines) and returns a simple, bulk or
// integer reply as a string.
func command(ctx context.Context, addr string, args ...string) (string, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(10 * time.Second)
	}
	if err := conn.SetDeadline(deadline); err != nil {
		return "", err
	}
	if _, err := conn.Write(writeCommand(nil, args...)); err != nil {
		return "", err
	}
	raw, typ, err := readValue(bufio.NewReader(conn), nil, nil)
	if err != nil {
		return "", err
	}
	switch typ {
	case '+', ':':
		return string(raw[1 : len(raw)-2]), nil
	case '-':
		return "", errReply(raw[1 : len(raw)-2])
	case '$':
		_, payload, ok := bytes.Cut(raw, []byte("\r\n"))
		if !ok || len(payload) < 2 {
			return "", nil // null bulk string
		}
		return string(payload[:len(payload)-2]), nil
	default:
		return "", fmt.Errorf("resp: %s answered a %q reply, want a string", args[0], typ)
	}
}

// parseInfo reads the "key:value" lines of INFO or CLUSTER INFO.
func parseInfo(s string) map[string]string {
	m := map[string]string{}
	for line := range strings.SplitSeq(s, "\n") {
		line = strings.TrimSpace(line)
		if k, v, ok := strings.Cut(line, ":"); ok && !strings.HasPrefix(line, "#") {
			m[k] = v
		}
	}
	return m
}
