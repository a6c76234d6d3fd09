package gnmi

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"

	gpb "github.com/openconfig/gnmi/proto/gnmi"
)

// store is the target's datastore: a tree of path elements whose leaves hold
// the values the agent publishes. Subscriptions register with it to hear of
// changes; registration and the initial snapshot happen under one lock so
// that no change falls between them.
type store struct {
	mu    sync.RWMutex
	root  node
	count int // leaves
	subs  map[listener]struct{}
}

// node is one element of the tree. A node is a leaf (value set) or a
// container (children set), never both.
type node struct {
	elem     *gpb.PathElem
	parent   *node
	children map[string]map[string]*node // element name → keysKey → child
	value    *leafValue
}

// leafValue is an immutable published value; an update replaces it, so
// snapshots can hold on to it without copying.
type leafValue struct {
	path  *gpb.Path // full path, shared read-only with every response
	key   string    // PathString(path), the leaf's identity
	value any       // normalized (see normalize)
	ts    int64     // nanoseconds since the epoch
}

// event is a change that subscribers hear of: a leaf's new value, or its
// removal (value nil).
type event struct {
	leaf    *leafValue
	deleted bool
}

// listener is what the store tells of changes, under its lock: it must not
// block and must not call back into the store.
type listener interface {
	offer(events []event)
}

func newStore() *store {
	return &store{subs: map[listener]struct{}{}}
}

// update stores leaves, all with timestamp ts, and tells listeners of those
// whose value changed: re-publishing an unchanged value only refreshes its
// timestamp (the time of the latest collection, which SAMPLE and Get report)
// and is no ON_CHANGE event. Leaves that cannot be stored are skipped and
// named in the error; the others are applied.
func (s *store) update(ts int64, leaves []Leaf) error {
	var errs []error
	type checked struct {
		path  *gpb.Path
		value any
	}
	ok := make([]checked, 0, len(leaves))
	for i, l := range leaves {
		if err := checkDataPath(l.Path); err != nil {
			errs = append(errs, fmt.Errorf("leaf %d (%s): %w", i, PathString(l.Path), err))
			continue
		}
		v, err := normalize(l.Value)
		if err != nil {
			errs = append(errs, fmt.Errorf("leaf %d (%s): %w", i, PathString(l.Path), err))
			continue
		}
		ok = append(ok, checked{l.Path, v})
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var events []event
	for _, c := range ok {
		n, err := s.insert(c.path.GetElem())
		if err != nil {
			errs = append(errs, fmt.Errorf("leaf %s: %w", PathString(c.path), err))
			continue
		}
		if old := n.value; old != nil {
			n.value = &leafValue{path: old.path, key: old.key, value: c.value, ts: ts}
			if equalValues(old.value, c.value) {
				continue
			}
		} else {
			// The stored path is a private copy: the caller keeps its own.
			p := &gpb.Path{Elem: clonePathElems(c.path.GetElem())}
			n.value = &leafValue{path: p, key: PathString(p), value: c.value, ts: ts}
			s.count++
		}
		events = append(events, event{leaf: n.value})
	}
	s.tell(events)
	return errors.Join(errs...)
}

// checkDataPath checks a path the agent publishes or deletes at.
func checkDataPath(p *gpb.Path) error {
	if p == nil || len(p.GetElem()) == 0 {
		return errors.New("no path (the root holds no value)")
	}
	if err := ValidatePath(p); err != nil {
		return err
	}
	if HasWildcards(p) {
		return errors.New("a published path has no wildcards")
	}
	return nil
}

func clonePathElems(elems []*gpb.PathElem) []*gpb.PathElem {
	out := make([]*gpb.PathElem, len(elems))
	for i, e := range elems {
		out[i] = &gpb.PathElem{Name: e.GetName(), Key: maps.Clone(e.GetKey())}
	}
	return out
}

// insert finds or creates the leaf node at elems. It refuses to put a value
// where a container is, to put anything below a leaf, and to create a list
// entry whose key names differ from its siblings' (so that a lookup with all
// keys given finds the one entry there is). All checks come before any
// creation, so a refusal leaves the tree as it was.
func (s *store) insert(elems []*gpb.PathElem) (*node, error) {
	n := &s.root
	for i, e := range elems {
		if n.value != nil {
			return nil, fmt.Errorf("%s is a leaf and cannot hold children", elemsString(elems[:i]))
		}
		list := n.children[e.GetName()]
		c := list[keysKey(e.GetKey())]
		if c == nil {
			for _, sib := range list {
				if !sameKeyNames(sib.elem.GetKey(), e.GetKey()) {
					return nil, fmt.Errorf("%s: list %q is keyed by %v elsewhere, not %v",
						elemsString(elems[:i+1]), e.GetName(), sortedKeys(sib.elem.GetKey()), sortedKeys(e.GetKey()))
				}
				break
			}
			return n.create(elems[i:]), nil
		}
		n = c
	}
	if len(n.children) > 0 {
		return nil, fmt.Errorf("%s is a container and cannot hold a value", elemsString(elems))
	}
	return n, nil
}

// create adds the chain of nodes elems below n and returns the last one.
func (n *node) create(elems []*gpb.PathElem) *node {
	for _, e := range elems {
		c := &node{elem: &gpb.PathElem{Name: e.GetName(), Key: maps.Clone(e.GetKey())}, parent: n}
		if n.children == nil {
			n.children = map[string]map[string]*node{}
		}
		list := n.children[e.GetName()]
		if list == nil {
			list = map[string]*node{}
			n.children[e.GetName()] = list
		}
		list[keysKey(e.GetKey())] = c
		n = c
	}
	return n
}

func sameKeyNames(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k := range a {
		if _, ok := b[k]; !ok {
			return false
		}
	}
	return true
}

// delete removes every leaf at or below the nodes that each pattern selects
// (wildcards allowed) and tells listeners of each removed leaf, stamped ts.
func (s *store) delete(ts int64, patterns []*gpb.Path) error {
	for i, p := range patterns {
		if err := ValidatePath(p); err != nil {
			return fmt.Errorf("path %d (%s): %w", i, PathString(p), err)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var events []event
	for _, p := range patterns {
		var hits []*node
		s.root.match(p.GetElem(), func(n *node) { hits = append(hits, n) })
		for _, n := range hits {
			if !s.attached(n) {
				continue // removed with an earlier hit above it
			}
			n.walk(func(l *leafValue) {
				events = append(events, event{leaf: &leafValue{path: l.path, key: l.key, ts: ts}, deleted: true})
				s.count--
			})
			s.detach(n)
		}
	}
	s.tell(events)
	return nil
}

func (s *store) attached(n *node) bool {
	for ; n != &s.root; n = n.parent {
		if n.parent == nil {
			return false
		}
	}
	return true
}

// detach cuts n out of the tree and prunes the containers it leaves empty.
// The root is emptied instead.
func (s *store) detach(n *node) {
	for n != &s.root {
		p := n.parent
		list := p.children[n.elem.GetName()]
		delete(list, keysKey(n.elem.GetKey()))
		if len(list) == 0 {
			delete(p.children, n.elem.GetName())
		}
		n.parent = nil
		if len(p.children) > 0 || p == &s.root {
			return
		}
		n = p
	}
	s.root.children = nil
}

func (s *store) tell(events []event) {
	if len(events) == 0 {
		return
	}
	for l := range s.subs {
		l.offer(events)
	}
}

// snapshot returns the leaves that pattern selects, sorted by path string.
func (s *store) snapshot(pattern []*gpb.PathElem) []*leafValue {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.collect(pattern)
}

// collect is snapshot without the lock; the caller holds it.
func (s *store) collect(pattern []*gpb.PathElem) []*leafValue {
	var out []*leafValue
	s.root.match(pattern, func(n *node) { n.walk(func(l *leafValue) { out = append(out, l) }) })
	slices.SortFunc(out, func(a, b *leafValue) int { return strings.Compare(a.key, b.key) })
	if slices.ContainsFunc(pattern, func(e *gpb.PathElem) bool { return e.GetName() == AnyDepth }) {
		// Nested hits ("/.../state" matching a state inside a state) report
		// the inner leaves twice.
		out = slices.CompactFunc(out, func(a, b *leafValue) bool { return a.key == b.key })
	}
	return out
}

// lookup returns the leaf at exactly elems, or nil. The caller holds the lock.
func (s *store) lookup(elems []*gpb.PathElem) *leafValue {
	n := &s.root
	for _, e := range elems {
		n = n.children[e.GetName()][keysKey(e.GetKey())]
		if n == nil {
			return nil
		}
	}
	return n.value
}

// register adds l as a listener and returns, under the same lock, the leaves
// that initial selects: the subscription's initial state, with no change
// lost or repeated between it and the first event.
func (s *store) register(l listener, initial func(collect func([]*gpb.PathElem) []*leafValue)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.subs[l] = struct{}{}
	if initial != nil {
		initial(s.collect)
	}
}

func (s *store) unregister(l listener) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.subs, l)
}

// match calls hit for every node that pattern selects exactly (not for its
// descendants; a read covers those). With "..." in the pattern the same
// node can be reached along several routes; visited pairs of (node, pattern
// position) are skipped, which keeps the walk linear in the tree size times
// the pattern length.
func (n *node) match(pattern []*gpb.PathElem, hit func(*node)) {
	pattern = collapseAnyDepth(pattern)
	if !slices.ContainsFunc(pattern, func(e *gpb.PathElem) bool { return e.GetName() == AnyDepth }) {
		n.matchFrom(pattern, 0, nil, hit)
		return
	}
	n.matchFrom(pattern, 0, map[visit]bool{}, hit)
}

type visit struct {
	n *node
	i int
}

func (n *node) matchFrom(pat []*gpb.PathElem, i int, seen map[visit]bool, hit func(*node)) {
	if seen != nil {
		if seen[visit{n, i}] {
			return
		}
		seen[visit{n, i}] = true
	}
	if i == len(pat) {
		hit(n)
		return
	}
	pe := pat[i]
	switch pe.GetName() {
	case AnyDepth:
		n.matchFrom(pat, i+1, seen, hit) // "..." as zero elements
		for _, list := range n.children {
			for _, c := range list {
				c.matchFrom(pat, i, seen, hit) // ... or as one more
			}
		}
	case AnyElem:
		for _, list := range n.children {
			for _, c := range list {
				if elemMatches(pe, c.elem) {
					c.matchFrom(pat, i+1, seen, hit)
				}
			}
		}
	default:
		list := n.children[pe.GetName()]
		if len(pe.GetKey()) > 0 && !elemsHaveWildcards(pat[i:i+1]) {
			// All siblings have the same key names (insert sees to it), so
			// when the pattern gives a full set of concrete keys the one
			// entry is found directly.
			if c := list[keysKey(pe.GetKey())]; c != nil {
				c.matchFrom(pat, i+1, seen, hit)
				return
			}
		}
		for _, c := range list {
			if elemMatches(pe, c.elem) {
				c.matchFrom(pat, i+1, seen, hit)
			}
		}
	}
}

// collapseAnyDepth merges runs of "..." (one means as much as several).
func collapseAnyDepth(p []*gpb.PathElem) []*gpb.PathElem {
	for i := 1; i < len(p); i++ {
		if p[i].GetName() == AnyDepth && p[i-1].GetName() == AnyDepth {
			out := slices.Clone(p[:i])
			for _, e := range p[i:] {
				if e.GetName() == AnyDepth && out[len(out)-1].GetName() == AnyDepth {
					continue
				}
				out = append(out, e)
			}
			return out
		}
	}
	return p
}

// walk calls fn for every leaf at or below n.
func (n *node) walk(fn func(*leafValue)) {
	if n.value != nil {
		fn(n.value)
		return
	}
	for _, list := range n.children {
		for _, c := range list {
			c.walk(fn)
		}
	}
}
