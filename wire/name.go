// Package wire is the DMSC wire format: service names, 128-bit service keys,
// the 44-byte DMSC header, the probe header and the control-message envelope
// (DESIGN §2–3, docs/wire.md). It is pure: no I/O, no goroutines, and the
// decoders do not allocate, so the software switch can use them per frame.
package wire

import (
	"errors"
	"fmt"
	"strings"
)

// MaxComponents is the most components a service name has.
const MaxComponents = 3

// NodeNamespace is the reserved first component of node names (/_node/<id>).
const NodeNamespace = "_node"

// Name is a validated service prefix such as /shop/cart.
type Name struct {
	comps [MaxComponents]string
	n     int
}

// ParseName validates a service prefix: "/" then 1 to 3 components separated
// by "/", each of 1–63 characters from [a-z0-9-], starting and ending with a
// letter or digit. The error names the component at fault and why.
func ParseName(s string) (Name, error) {
	var n Name
	if s == "" {
		return n, errors.New(`wire: service name is empty (want "/service" up to "/a/b/c")`)
	}
	if s[0] != '/' {
		return n, fmt.Errorf("wire: service name %q: must start with \"/\"", s)
	}
	rest := s[1:]
	for i := 0; ; i++ {
		comp, tail, more := strings.Cut(rest, "/")
		if i == MaxComponents {
			return n, fmt.Errorf("wire: service name %q: more than %d components", s, MaxComponents)
		}
		if err := checkComponent(comp); err != nil {
			return n, fmt.Errorf("wire: service name %q: component %d %w", s, i+1, err)
		}
		n.comps[i] = comp
		n.n++
		if !more {
			return n, nil
		}
		rest = tail
	}
}

// MustParseName is ParseName for names known to be valid (tests, constants).
func MustParseName(s string) Name {
	n, err := ParseName(s)
	if err != nil {
		panic(err)
	}
	return n
}

// NodeName is the reserved name /_node/<routerID> of an SG or SR; its key
// routes to the switch's CPU port. routerID follows the component rule.
func NodeName(routerID string) (Name, error) {
	if err := checkComponent(routerID); err != nil {
		return Name{}, fmt.Errorf("wire: router id %q: %w", routerID, err)
	}
	return Name{comps: [MaxComponents]string{NodeNamespace, routerID}, n: 2}, nil
}

// checkComponent returns an error phrased to follow "component N".
func checkComponent(c string) error {
	switch {
	case c == "":
		return errors.New("is empty")
	case len(c) > 63:
		return fmt.Errorf("%.20q… is %d characters long (at most 63)", c, len(c))
	}
	for i := 0; i < len(c); i++ {
		ch := c[i]
		switch {
		case ch >= 'a' && ch <= 'z', ch >= '0' && ch <= '9':
		case ch == '-':
			if i == 0 || i == len(c)-1 {
				return fmt.Errorf("%q: must not start or end with '-'", c)
			}
		case ch >= 'A' && ch <= 'Z':
			return fmt.Errorf("%q: uppercase letters are not allowed", c)
		default:
			return fmt.Errorf("%q: character %q is not allowed (only a-z, 0-9 and '-')", c, rune(ch))
		}
	}
	return nil
}

// Len is the number of components (1 to 3; 0 for the zero Name).
func (n Name) Len() int { return n.n }

// Components returns the components in order.
func (n Name) Components() []string { return append([]string(nil), n.comps[:n.n]...) }

// Component returns component i (0-based).
func (n Name) Component(i int) string { return n.comps[i] }

// PrefixLen is the key prefix length the name covers: 32 per component.
func (n Name) PrefixLen() int { return 32 * n.n }

// IsNode reports whether the name is in the reserved /_node namespace.
func (n Name) IsNode() bool { return n.n > 0 && n.comps[0] == NodeNamespace }

// IsZero reports whether n is the zero Name.
func (n Name) IsZero() bool { return n.n == 0 }

// Parent returns the name with its last component removed, and false for a
// one-component name.
func (n Name) Parent() (Name, bool) {
	if n.n <= 1 {
		return Name{}, false
	}
	p := n
	p.n--
	p.comps[p.n] = ""
	return p, true
}

// HasPrefix reports whether p equals n or is one of its ancestors.
func (n Name) HasPrefix(p Name) bool {
	if p.n == 0 || p.n > n.n {
		return false
	}
	for i := 0; i < p.n; i++ {
		if n.comps[i] != p.comps[i] {
			return false
		}
	}
	return true
}

func (n Name) String() string {
	var b strings.Builder
	for i := 0; i < n.n; i++ {
		b.WriteByte('/')
		b.WriteString(n.comps[i])
	}
	return b.String()
}
