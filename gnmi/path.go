package gnmi

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"

	gpb "github.com/openconfig/gnmi/proto/gnmi"
)

// Wildcards of the gNMI path conventions: an element named "*" matches any one
// element, "..." matches any number of elements (zero included), and a key
// value "*" matches any value of that key. A list element given without some
// or all of its keys matches every entry of the list.
const (
	AnyElem  = "*"
	AnyDepth = "..."
	AnyKey   = "*"
)

// Bounds on paths from outside: DMSC's deepest path has 6 elements, and the
// bounds keep matching cheap on hostile input (a walk costs up to the tree's
// size times the pattern's length when "..." is in it).
const (
	maxPathElems = 32
	maxAnyDepth  = 4
)

// ParsePath parses the string form of a gNMI path, as gnmi_cli and the gNMI
// path-strings document write it:
//
//	/interfaces/interface[name=1]/state/counters/in-pkts
//	/dmsc/probes/probe[instance=0][target=/shop/cart]/state/delay-ns
//
// The leading "/" may be left out; "" and "/" are the root. Inside [...] a "/"
// or "[" needs no escape; a backslash makes the next character literal, so a
// key value holding "]" is written "\]" and a backslash "\\" (the same rules
// as ygot's parser, which gnmi_cli uses). Names and keys must be valid UTF-8,
// a key may appear once per element, and the parsed path is checked as
// ValidatePath does.
func ParsePath(s string) (*gpb.Path, error) {
	p := &gpb.Path{}
	rest := strings.TrimPrefix(s, "/")
	if rest == "" {
		return p, nil
	}
	pos := len(s) - len(rest) // byte offset of rest in s, for error messages
	for {
		e, n, err := parseElem(rest)
		if err != nil {
			return nil, fmt.Errorf("gnmi: path %q: at byte %d: %w", s, pos+n, err)
		}
		p.Elem = append(p.Elem, e)
		rest = rest[n:]
		pos += n
		if rest == "" {
			break
		}
		// parseElem stops only at the end or at an unescaped "/".
		rest = rest[1:]
		pos++
		if rest == "" {
			return nil, fmt.Errorf("gnmi: path %q: ends with \"/\" (an empty element)", s)
		}
	}
	if err := ValidatePath(p); err != nil {
		return nil, fmt.Errorf("gnmi: path %q: %w", s, err)
	}
	return p, nil
}

// parseElem reads one element, name[key=value]..., from the start of s and
// returns it with the number of bytes consumed; it stops at the end of s or
// before an unescaped "/".
func parseElem(s string) (*gpb.PathElem, int, error) {
	name, i, stop, err := scan(s, 0, "/[]")
	if err != nil {
		return nil, i, err
	}
	if stop == ']' {
		return nil, i, errors.New(`"]" outside a key (escape it as "\]" in a name)`)
	}
	if name == "" {
		return nil, i, errors.New("empty element name")
	}
	e := &gpb.PathElem{Name: name}
	for i < len(s) && s[i] == '[' {
		var key, val string
		key, i, stop, err = scan(s, i+1, "=[]")
		if err != nil {
			return nil, i, err
		}
		if stop != '=' {
			return nil, i, fmt.Errorf("key of element %q has no \"=\"", name)
		}
		if key == "" {
			return nil, i, fmt.Errorf("empty key name in element %q", name)
		}
		val, i, stop, err = scan(s, i+1, "]")
		if err != nil {
			return nil, i, err
		}
		if stop != ']' {
			return nil, i, fmt.Errorf("key %q of element %q has no closing \"]\"", key, name)
		}
		i++ // past "]"
		if _, dup := e.Key[key]; dup {
			return nil, i, fmt.Errorf("key %q given twice in element %q", key, name)
		}
		if e.Key == nil {
			e.Key = map[string]string{}
		}
		e.Key[key] = val
		if i < len(s) && s[i] != '[' && s[i] != '/' {
			return nil, i, fmt.Errorf("%q after the keys of element %q (want \"[\", \"/\" or the end)", s[i], name)
		}
	}
	return e, i, nil
}

// scan reads from s[i:] up to the first unescaped byte of stops, removing
// escapes. It returns the text, the index of the stop byte (len(s) at the
// end) and the stop byte (0 at the end).
func scan(s string, i int, stops string) (string, int, byte, error) {
	var b strings.Builder
	for ; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\\':
			if i+1 == len(s) {
				return "", i, 0, errors.New(`ends with a lone "\"`)
			}
			i++
			b.WriteByte(s[i])
		case strings.IndexByte(stops, c) >= 0:
			return b.String(), i, c, nil
		default:
			b.WriteByte(c)
		}
	}
	return b.String(), i, 0, nil
}

// PathString is the string form of p's elements (the target and origin are
// not part of it), which ParsePath reads back to an equal path. Keys are
// sorted by name, as the gNMI path-strings document requires, and escapes are
// added only where ParsePath needs them: "\" everywhere; "/", "[", "]" in
// names; "=", "[", "]" in key names; "]" in key values. The root is "/".
func PathString(p *gpb.Path) string {
	return elemsString(p.GetElem())
}

func elemsString(elems []*gpb.PathElem) string {
	if len(elems) == 0 {
		return "/"
	}
	var b strings.Builder
	for _, e := range elems {
		b.WriteByte('/')
		writeElem(&b, e)
	}
	return b.String()
}

// writeElem writes one element in the PathString form.
func writeElem(b *strings.Builder, e *gpb.PathElem) {
	writeEscaped(b, e.GetName(), `\/[]`)
	b.WriteString(keysKey(e.GetKey()))
}

func writeEscaped(b *strings.Builder, s, special string) {
	for i := 0; i < len(s); i++ {
		if strings.IndexByte(special, s[i]) >= 0 {
			b.WriteByte('\\')
		}
		b.WriteByte(s[i])
	}
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// ValidatePath checks what every path from outside must satisfy: elem
// (the deprecated string "element" field is ignored beside it and refused
// alone), non-empty names and key names,
// valid UTF-8 throughout (protobuf strings must be), at most 32 elements,
// at most 4 of them "...", and no keys on a "..." element. Wildcards are
// allowed; HasWildcards tells them.
func ValidatePath(p *gpb.Path) error {
	if len(p.GetElement()) > 0 && len(p.GetElem()) == 0 {
		// Clients such as gnmi_cli send both forms; elem is then the path.
		return errors.New(`uses only the deprecated "element" field; send "elem"`)
	}
	return validateElems(p.GetElem())
}

func validateElems(elems []*gpb.PathElem) error {
	if len(elems) > maxPathElems {
		return fmt.Errorf("has %d elements (at most %d)", len(elems), maxPathElems)
	}
	anyDepth := 0
	for i, e := range elems {
		if e.GetName() == AnyDepth {
			anyDepth++
		}
		switch {
		case anyDepth > maxAnyDepth:
			return fmt.Errorf("has more than %d %q elements", maxAnyDepth, AnyDepth)
		case e.GetName() == "":
			return fmt.Errorf("element %d has an empty name", i+1)
		case !utf8.ValidString(e.GetName()):
			return fmt.Errorf("element %d: name %q is not valid UTF-8", i+1, e.GetName())
		case e.GetName() == AnyDepth && len(e.GetKey()) > 0:
			return fmt.Errorf("element %d: %q takes no keys", i+1, AnyDepth)
		}
		for k, v := range e.GetKey() {
			switch {
			case k == "":
				return fmt.Errorf("element %d (%q) has an empty key name", i+1, e.GetName())
			case !utf8.ValidString(k) || !utf8.ValidString(v):
				return fmt.Errorf("element %d (%q): key %q=%q is not valid UTF-8", i+1, e.GetName(), k, v)
			}
		}
	}
	return nil
}

// HasWildcards reports whether p has a "*" or "..." element or a "*" key.
func HasWildcards(p *gpb.Path) bool { return elemsHaveWildcards(p.GetElem()) }

func elemsHaveWildcards(elems []*gpb.PathElem) bool {
	for _, e := range elems {
		if e.GetName() == AnyElem || e.GetName() == AnyDepth {
			return true
		}
		for _, v := range e.GetKey() {
			if v == AnyKey {
				return true
			}
		}
	}
	return false
}

// JoinPath is prefix followed by p, as gNMI joins a request's prefix and its
// paths. The result has neither target nor origin.
func JoinPath(prefix, p *gpb.Path) *gpb.Path {
	elems := make([]*gpb.PathElem, 0, len(prefix.GetElem())+len(p.GetElem()))
	elems = append(elems, prefix.GetElem()...)
	elems = append(elems, p.GetElem()...)
	return &gpb.Path{Elem: elems}
}

// Match reports whether pattern selects path: whether path is a node that
// pattern names or lies below one (gNMI reads are recursive), with the
// wildcards of the path conventions. Keys that pattern leaves out match any
// value; a key that pattern names must be present in path.
func Match(pattern, path *gpb.Path) bool {
	return matchElems(pattern.GetElem(), path.GetElem())
}

// matchElems is Match on element lists. Without "..." it is a straight
// walk; with it, a table over (pattern, path) positions keeps the cost at
// len(pattern)·len(path) whatever the number of "..." elements.
func matchElems(pat, p []*gpb.PathElem) bool {
	if !slices.ContainsFunc(pat, func(e *gpb.PathElem) bool { return e.GetName() == AnyDepth }) {
		if len(pat) > len(p) {
			return false
		}
		for i, pe := range pat {
			if !elemMatches(pe, p[i]) {
				return false
			}
		}
		return true
	}
	// ok[j] is whether pat[i:] matches p[j:], computed for i from the end.
	ok := make([]bool, len(p)+1)
	next := make([]bool, len(p)+1)
	for j := range ok {
		ok[j] = true // the empty pattern matches any remainder (recursion)
	}
	for i := len(pat) - 1; i >= 0; i-- {
		pe := pat[i]
		if pe.GetName() == AnyDepth {
			// "..." here: pat[i+1:] matches p[k:] for some k >= j.
			found := false
			for j := len(p); j >= 0; j-- {
				found = found || ok[j]
				next[j] = found
			}
		} else {
			next[len(p)] = false
			for j := len(p) - 1; j >= 0; j-- {
				next[j] = ok[j+1] && elemMatches(pe, p[j])
			}
		}
		ok, next = next, ok
	}
	return ok[0]
}

// elemMatches compares one pattern element with one element of a data path.
func elemMatches(pe, e *gpb.PathElem) bool {
	if pe.GetName() != AnyElem && pe.GetName() != e.GetName() {
		return false
	}
	for k, v := range pe.GetKey() {
		have, ok := e.GetKey()[k]
		if !ok || (v != AnyKey && v != have) {
			return false
		}
	}
	return true
}

// keysKey is the canonical string of an element's keys ("" for none), the
// index of a list entry among the datastore children of one name.
func keysKey(keys map[string]string) string {
	if len(keys) == 0 {
		return ""
	}
	var b strings.Builder
	for _, k := range sortedKeys(keys) {
		b.WriteByte('[')
		writeEscaped(&b, k, `\=[]`)
		b.WriteByte('=')
		writeEscaped(&b, keys[k], `\]`)
		b.WriteByte(']')
	}
	return b.String()
}
