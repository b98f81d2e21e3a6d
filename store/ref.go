package store

import (
	"fmt"
	"strings"
)

// Ref addresses one correlation: (Namespace, ID) is its identity. The same
// ID in two namespaces names two independent correlations. An empty
// Namespace means DefaultNamespace.
type Ref struct {
	Namespace string `json:"namespace"`
	ID        string `json:"id"`
}

// RefOf returns a Ref in the default namespace, for callers with one tenant.
func RefOf(id string) Ref { return Ref{Namespace: DefaultNamespace, ID: id} }

// Ref returns the address of c.
func (c *Correlation) Ref() Ref { return Ref{Namespace: c.Namespace, ID: c.ID} }

// Norm returns r with an empty namespace set to DefaultNamespace.
func (r Ref) Norm() Ref {
	if r.Namespace == "" {
		r.Namespace = DefaultNamespace
	}
	return r
}

// Validate checks both parts of r (after Norm).
func (r Ref) Validate() error {
	r = r.Norm()
	if err := ValidateNamespace(r.Namespace); err != nil {
		return err
	}
	return ValidateID(r.ID)
}

// String is "namespace/id" (after Norm). Neither part may hold a '/', so the
// string is also a key that sorts a namespace's ids together; ParseRef reads it.
func (r Ref) String() string {
	r = r.Norm()
	return r.Namespace + "/" + r.ID
}

// ParseRef reads what Ref.String wrote, and checks it.
func ParseRef(s string) (Ref, error) {
	ns, id, ok := strings.Cut(s, "/")
	if !ok {
		return Ref{}, invalid("ref", "%q is not namespace/id", s)
	}
	r := Ref{Namespace: ns, ID: id}
	if ns == "" {
		return Ref{}, invalid("ref", "%q names no namespace", s)
	}
	if err := r.Validate(); err != nil {
		return Ref{}, err
	}
	return r, nil
}

func notFoundRef(r Ref) error { return fmt.Errorf("%w: correlation %s", ErrNotFound, r) }

// NotFound is the error a store returns for a Ref it does not hold.
func NotFound(r Ref) error { return notFoundRef(r.Norm()) }
