package harness

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/dmsc-mesh/dmsc/controller/fib"
	"github.com/dmsc-mesh/dmsc/spf"
	"github.com/dmsc-mesh/dmsc/topo"
	"github.com/dmsc-mesh/dmsc/wire"
)

// NodePrefix is the prefix of a node's key, /_node/<id>, which every agent
// announces.
func NodePrefix(node string) spf.Prefix {
	n, err := wire.NodeName(node)
	if err != nil {
		panic(fmt.Sprintf("harness: node %q: %v", node, err)) // topologies are generated here
	}
	k := wire.KeyOf(n)
	return spf.Prefix{Key: k, Len: uint8(k.PrefixLen())}
}

// ServicePrefix is the prefix of a service name such as "/shop/cart".
func ServicePrefix(name string) (spf.Prefix, error) {
	n, err := wire.ParseName(name)
	if err != nil {
		return spf.Prefix{}, err
	}
	k := wire.KeyOf(n)
	return spf.Prefix{Key: k, Len: uint8(k.PrefixLen())}, nil
}

// Entry is what a FIB entry does, reduced to what routing decides: the kind
// and the set of egress ports (sorted, without duplicates). MACs, weights
// and instance ids are left out.
type Entry struct {
	Kind  fib.Kind
	Ports []uint16
}

func (e Entry) String() string { return fmt.Sprintf("%s%v", e.Kind, e.Ports) }

// FIB is one switch's FIB reduced to Entries.
type FIB map[spf.Prefix]Entry

// Reduce turns a FIB (an agent's Snapshot.FIB, or one read back from the
// switch) into Entries.
func Reduce(r fib.Routes) FIB {
	out := make(FIB, len(r))
	for p, rt := range r {
		ports := make([]uint16, 0, len(rt.Hops))
		for _, h := range rt.Hops {
			ports = append(ports, h.Port)
		}
		slices.Sort(ports)
		out[p] = Entry{Kind: rt.Kind, Ports: slices.Compact(ports)}
	}
	return out
}

// Equal reports whether two FIBs route every prefix alike.
func (f FIB) Equal(g FIB) bool {
	return maps.EqualFunc(f, g, func(a, b Entry) bool { return a.Kind == b.Kind && slices.Equal(a.Ports, b.Ports) })
}

// Diff describes how got differs from f (the expectation), at most max
// lines, for error messages.
func (f FIB) Diff(got FIB, max int) string {
	var lines []string
	for p, want := range f {
		g, ok := got[p]
		switch {
		case !ok:
			lines = append(lines, fmt.Sprintf("%v: missing, want %v", p, want))
		case g.Kind != want.Kind || !slices.Equal(g.Ports, want.Ports):
			lines = append(lines, fmt.Sprintf("%v: %v, want %v", p, g, want))
		}
	}
	for p, g := range got {
		if _, ok := f[p]; !ok {
			lines = append(lines, fmt.Sprintf("%v: %v, want none", p, g))
		}
	}
	slices.Sort(lines)
	if len(lines) > max {
		lines = append(lines[:max], fmt.Sprintf("(%d more)", len(lines)-max))
	}
	return strings.Join(lines, "; ")
}

// UsesPort reports whether any entry forwards out of port.
func (f FIB) UsesPort(port uint16) bool {
	for _, e := range f {
		if slices.Contains(e.Ports, port) {
			return true
		}
	}
	return false
}

// Model is the FIB that SPF gives every node of a topology in which every
// node announces its node key and nothing else, computed with package spf
// from the topology itself: the expectation the agents are measured
// against.
type Model struct {
	Topo *topo.Topology
	// Down are links taken out (cut).
	Down map[*topo.Link]bool
}

// FIBs computes every node's expected FIB.
func (m Model) FIBs() (map[string]FIB, error) {
	db := spf.New(spf.Options{}) // an observer: every LSP alike
	adj := map[string][]spf.Adjacency{}
	for _, l := range m.Topo.Links {
		if m.Down[l] {
			continue
		}
		metric := l.Metric
		if metric == 0 {
			metric = topo.DefaultMetric
		}
		adj[l.A.Node] = append(adj[l.A.Node], spf.Adjacency{Neighbor: spf.NodeID(l.B.Node), Metric: metric, LinkID: uint32(l.A.Port)})
		adj[l.B.Node] = append(adj[l.B.Node], spf.Adjacency{Neighbor: spf.NodeID(l.A.Node), Metric: metric, LinkID: uint32(l.B.Port)})
	}
	names := m.Topo.NodeNames()
	for _, n := range names {
		lsp := spf.LSP{Origin: spf.NodeID(n), Seq: 1, RemainingLifetime: 1200, Adjacencies: adj[n],
			Prefixes: []spf.PrefixReach{{Prefix: NodePrefix(n)}}}
		if r := db.Receive(lsp, 0); r.Verdict != spf.Newer {
			return nil, fmt.Errorf("harness: model LSP of %s: %v %v", n, r.Verdict, r.Err)
		}
	}
	out := make(map[string]FIB, len(names))
	for _, n := range names {
		rib := spf.NewRIB(spf.NodeID(n))
		rib.Full(db)
		f := FIB{}
		for p, r := range rib.Routes() {
			if r.Local {
				f[p] = Entry{Kind: fib.ToCPU, Ports: []uint16{}}
				continue
			}
			ports := make([]uint16, 0, len(r.NextHops))
			for _, h := range r.NextHops {
				ports = append(ports, uint16(h.LinkID))
			}
			slices.Sort(ports)
			f[p] = Entry{Kind: fib.Forward, Ports: slices.Compact(ports)}
		}
		out[n] = f
	}
	return out, nil
}

// Connected reports whether every node reaches every other in fibs.
func Connected(fibs map[string]FIB) bool {
	for _, f := range fibs {
		if len(f) != len(fibs) {
			return false
		}
	}
	return true
}
