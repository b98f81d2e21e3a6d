package webhook

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"fmt"
	"net/url"
	"os"
	"slices"
	"strings"

	"github.com/corrstore/corrstore/store"
)

// AnyNamespace is the namespace column of a line that serves a handler in
// every namespace: the operator's explicit choice.
const AnyNamespace = "*"

// SecretPrefix starts every secret of the callbacks file (Standard Webhooks).
const SecretPrefix = "whsec_"

// MinSecretBytes is the least a secret decodes to.
const MinSecretBytes = 24

// Endpoint is where one handler's outcomes go: a webhook URL and its
// secrets (the first signs; during a rotation every one signs), or none
// for a pull-only handler.
type Endpoint struct {
	Namespace string // a namespace or AnyNamespace
	Handler   string
	URL       string // "" for a pull-only handler
	Secrets   [][]byte
	Line      int
}

// Pull reports whether the handler is pull-only (no URL).
func (e Endpoint) Pull() bool { return e.URL == "" }

// Callbacks is a parsed callbacks file. A handler is looked up in a
// correlation's own namespace: a line naming that namespace wins over a
// line for every namespace. Only this file names URLs: a registration names
// a handler, never a URL.
type Callbacks struct {
	Path  string
	lines []Endpoint
	exact map[[2]string]int // {namespace, handler} → index in lines
	any   map[string]int    // handler → index of its "*" line
}

// Lookup returns the endpoint of handler in namespace ns.
func (c *Callbacks) Lookup(ns, handler string) (Endpoint, bool) {
	if c == nil {
		return Endpoint{}, false
	}
	if i, ok := c.exact[[2]string{ns, handler}]; ok {
		return c.lines[i], true
	}
	if i, ok := c.any[handler]; ok {
		return c.lines[i], true
	}
	return Endpoint{}, false
}

// Pushed reports whether serve's webhooks deliver handler's outcomes in ns:
// those cannot be claimed by pull.
func (c *Callbacks) Pushed(ns, handler string) bool {
	e, ok := c.Lookup(ns, handler)
	return ok && !e.Pull()
}

// Known reports whether the file names handler in ns, pushed or pull-only.
func (c *Callbacks) Known(ns, handler string) bool {
	_, ok := c.Lookup(ns, handler)
	return ok
}

// Endpoints lists the lines, in file order.
func (c *Callbacks) Endpoints() []Endpoint {
	if c == nil {
		return nil
	}
	return slices.Clone(c.lines)
}

// Handlers lists the handler names the file names, sorted, once each.
func (c *Callbacks) Handlers() []string {
	var hs []string
	for _, e := range c.Endpoints() {
		hs = append(hs, e.Handler)
	}
	slices.Sort(hs)
	return slices.Compact(hs)
}

// LoadCallbacks reads a callbacks file: one line per handler,
//
//	NAMESPACE HANDLER URL SECRET[,SECRET…]   pushed as signed webhooks
//	NAMESPACE HANDLER pull                    claimed by pull workers only
//
// NAMESPACE may be "*" (every namespace); "#" starts a comment; blank lines
// are ignored. A bad line is an error naming the file, the line and why.
func LoadCallbacks(path string) (*Callbacks, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--callbacks-file: %w", err)
	}
	return ParseCallbacks(path, b)
}

// ParseCallbacks parses the text of a callbacks file named path.
func ParseCallbacks(path string, text []byte) (*Callbacks, error) {
	c := &Callbacks{Path: path, exact: map[[2]string]int{}, any: map[string]int{}}
	sc := bufio.NewScanner(bytes.NewReader(text))
	sc.Buffer(make([]byte, 0, 4096), 64*1024)
	n := 0
	for sc.Scan() {
		n++
		line, _, _ := strings.Cut(sc.Text(), "#")
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		e, err := parseLine(fields)
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %w", path, n, err)
		}
		e.Line = n
		if err := c.add(e); err != nil {
			return nil, fmt.Errorf("%s:%d: %w", path, n, err)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s:%d: %w", path, n+1, err)
	}
	return c, nil
}

func parseLine(f []string) (Endpoint, error) {
	if len(f) < 3 || len(f) > 4 {
		return Endpoint{}, fmt.Errorf("want NAMESPACE HANDLER URL SECRET[,SECRET…] or NAMESPACE HANDLER pull, got %d fields", len(f))
	}
	e := Endpoint{Namespace: f[0], Handler: f[1]}
	if e.Namespace != AnyNamespace {
		if err := store.ValidateNamespace(e.Namespace); err != nil {
			return Endpoint{}, fmt.Errorf("namespace %q: %w (or * for every namespace)", e.Namespace, err)
		}
	}
	if err := store.ValidateHandler(e.Handler); err != nil {
		return Endpoint{}, err
	}
	if f[2] == "pull" {
		if len(f) != 3 {
			return Endpoint{}, fmt.Errorf("a pull line has no secret, got %d fields", len(f))
		}
		return e, nil
	}
	u, err := url.Parse(f[2])
	switch {
	case err != nil:
		return Endpoint{}, fmt.Errorf("url: %w", err)
	case u.Scheme != "http" && u.Scheme != "https":
		return Endpoint{}, fmt.Errorf("url %q: the scheme must be http or https", f[2])
	case u.Host == "":
		return Endpoint{}, fmt.Errorf("url %q: no host", f[2])
	case u.User != nil:
		return Endpoint{}, fmt.Errorf("url %q: must not carry a user or password", u.Redacted())
	case u.Fragment != "":
		return Endpoint{}, fmt.Errorf("url %q: must not carry a #fragment", f[2])
	}
	e.URL = u.String()
	if len(f) != 4 {
		return Endpoint{}, fmt.Errorf("url %s has no secret: want NAMESPACE HANDLER URL SECRET[,SECRET…]", e.URL)
	}
	for i, s := range strings.Split(f[3], ",") {
		key, err := DecodeSecret(s)
		if err != nil {
			return Endpoint{}, fmt.Errorf("secret %d: %w", i+1, err)
		}
		e.Secrets = append(e.Secrets, key)
	}
	return e, nil
}

func (c *Callbacks) add(e Endpoint) error {
	other := func(i int) error {
		return fmt.Errorf("namespace %s handler %q is already on line %d", e.Namespace, e.Handler, c.lines[i].Line)
	}
	if e.Namespace == AnyNamespace {
		if i, ok := c.any[e.Handler]; ok {
			return other(i)
		}
	} else if i, ok := c.exact[[2]string{e.Namespace, e.Handler}]; ok {
		return other(i)
	}
	// A pull-only line next to a "*" push line for the same handler would
	// let the "*" webhook dispatcher claim the pull worker's outcomes.
	for _, o := range c.lines {
		if o.Handler == e.Handler && o.Pull() != e.Pull() && (o.Namespace == AnyNamespace || e.Namespace == AnyNamespace) {
			return fmt.Errorf("handler %q is pushed and pull-only at once (line %d): a handler served in every namespace is served one way", e.Handler, o.Line)
		}
	}
	c.lines = append(c.lines, e)
	if e.Namespace == AnyNamespace {
		c.any[e.Handler] = len(c.lines) - 1
	} else {
		c.exact[[2]string{e.Namespace, e.Handler}] = len(c.lines) - 1
	}
	return nil
}

// DecodeSecret reads a Standard Webhooks secret: "whsec_" + standard
// base64 of at least MinSecretBytes bytes.
func DecodeSecret(s string) ([]byte, error) {
	b64, ok := strings.CutPrefix(s, SecretPrefix)
	if !ok {
		return nil, fmt.Errorf("must start with %s", SecretPrefix)
	}
	key, err := base64.StdEncoding.Strict().DecodeString(b64)
	if err != nil {
		return nil, fmt.Errorf("%s…: not standard base64 after %s", SecretPrefix, SecretPrefix)
	}
	if len(key) < MinSecretBytes {
		return nil, fmt.Errorf("decodes to %d bytes, the least is %d (make one with: head -c 32 /dev/urandom | base64)", len(key), MinSecretBytes)
	}
	return key, nil
}
