package topo

import (
	"fmt"
	"math/rand/v2"
)

// Generated topologies for tests and benchmarks: every node is an SR unless
// named in sgs, links have the default metric and no capacity limit.

// builder assembles a topology, numbering each node's ports from 1.
type builder struct {
	t    *Topology
	next map[string]uint16
}

func newBuilder(name string) *builder {
	return &builder{t: &Topology{Name: name, Nodes: map[string]*Node{}}, next: map[string]uint16{}}
}

func (b *builder) node(name string, role Role) {
	if _, ok := b.t.Nodes[name]; !ok {
		b.t.Nodes[name] = &Node{Name: name, Role: role}
		b.next[name] = 1
	}
}

func (b *builder) link(x, y string) {
	l := &Link{A: Endpoint{x, b.next[x]}, B: Endpoint{y, b.next[y]}, Metric: DefaultMetric}
	b.next[x]++
	b.next[y]++
	b.t.Links = append(b.t.Links, l)
}

// Line is n SRs in a row: r1 – r2 – … – rn.
func Line(n int) *Topology {
	b := newBuilder(fmt.Sprintf("line%d", n))
	for i := 1; i <= n; i++ {
		b.node(fmt.Sprintf("r%d", i), RoleSR)
		if i > 1 {
			b.link(fmt.Sprintf("r%d", i-1), fmt.Sprintf("r%d", i))
		}
	}
	return b.t
}

// Ring is n SRs in a ring.
func Ring(n int) *Topology {
	t := Line(n)
	b := &builder{t: t, next: map[string]uint16{}}
	for name := range t.Nodes {
		b.next[name] = uint16(len(t.Ports(name)) + 1)
	}
	t.Name = fmt.Sprintf("ring%d", n)
	b.link(fmt.Sprintf("r%d", n), "r1")
	return t
}

// Grid is w×h SRs, each linked to its right and lower neighbour; nodes are
// named g<x>-<y>.
func Grid(w, h int) *Topology {
	b := newBuilder(fmt.Sprintf("grid%dx%d", w, h))
	name := func(x, y int) string { return fmt.Sprintf("g%d-%d", x, y) }
	for y := range h {
		for x := range w {
			b.node(name(x, y), RoleSR)
		}
	}
	for y := range h {
		for x := range w {
			if x+1 < w {
				b.link(name(x, y), name(x+1, y))
			}
			if y+1 < h {
				b.link(name(x, y), name(x, y+1))
			}
		}
	}
	return b.t
}

// Random is a connected random fabric of n SRs with about degree·n/2 links
// (a spanning tree first, then random extra links), the same for the same
// seed.
func Random(n, degree int, seed uint64) *Topology {
	rng := rand.New(rand.NewPCG(seed, 1))
	b := newBuilder(fmt.Sprintf("random%d", n))
	name := func(i int) string { return fmt.Sprintf("r%d", i) }
	have := map[[2]int]bool{}
	add := func(x, y int) bool {
		if x == y || have[[2]int{min(x, y), max(x, y)}] {
			return false
		}
		have[[2]int{min(x, y), max(x, y)}] = true
		b.link(name(x), name(y))
		return true
	}
	for i := range n {
		b.node(name(i), RoleSR)
		if i > 0 {
			add(i, rng.IntN(i))
		}
	}
	for extra := n*degree/2 - (n - 1); extra > 0; {
		if add(rng.IntN(n), rng.IntN(n)) {
			extra--
		}
	}
	return b.t
}

// WithSGs makes the named nodes SGs, each with the given pod ports (numbered
// after its link ports).
func WithSGs(t *Topology, podPorts int, sgs ...string) *Topology {
	for _, n := range sgs {
		node, ok := t.Nodes[n]
		if !ok {
			continue
		}
		node.Role = RoleSG
		next := uint16(len(t.Ports(n)) + 1)
		for i := range podPorts {
			node.PodPorts = append(node.PodPorts, next+uint16(i))
		}
	}
	return t
}
