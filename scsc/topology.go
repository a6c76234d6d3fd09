package scsc

import (
	"cmp"
	"encoding/json"
	"fmt"
	"slices"

	"github.com/dmsc-mesh/dmsc/gnmi"
	"github.com/dmsc-mesh/dmsc/wire"
)

// LSP is one LSP fragment as an agent publishes it under /dmsc/lsdb.
type LSP struct {
	Origin   string
	Fragment uint32
	Seq      uint64
	// RemainingLifetime is in seconds; HasLifetime is false while the leaf
	// has not been read (the fragment is then taken as live).
	RemainingLifetime uint64
	HasLifetime       bool
	Adjacencies       []LSPAdjacency
	Prefixes          []LSPPrefix
}

// LSPAdjacency is one entry of an LSP's adjacencies JSON.
type LSPAdjacency struct {
	Neighbor string `json:"neighbor"`
	Metric   uint32 `json:"metric"`
	Link     uint32 `json:"link"` // the origin's port
}

// LSPPrefix is one entry of an LSP's prefixes JSON.
type LSPPrefix struct {
	Prefix string `json:"prefix"` // gnmi.RouteKey form: key/len
	Metric uint32 `json:"metric"`
}

// FragmentID names an LSP fragment.
type FragmentID struct {
	Origin   string
	Fragment uint32
}

// prefixID is a service key prefix as a map key.
type prefixID struct {
	key wire.Key
	len uint8
}

// Topology is the live topology SCSC learns from one agent's LSDB: the nodes
// whose fragment 0 is live, the two-way adjacencies between them, and who
// announces which prefix. It is immutable once built.
type Topology struct {
	nodes []string // sorted; a node's index is its position
	index map[string]int32
	// out[u] are u's two-way edges, sorted by the neighbour's index.
	out [][]Edge
	// in[v] are the edges into v, as (from, position in out[from]).
	in [][]edgeRef
	// hosts[p] are the nodes announcing p with their prefix metric.
	hosts map[prefixID][]Host
	// instances[service prefix] maps instance id → the node announcing the
	// instance key (/128).
	instances map[prefixID]map[uint32]int32
}

// Edge is the two-way adjacency From → To; parallel links are one edge with
// several Links.
type Edge struct {
	From, To int32
	// Metric is the least metric of the links (what SPF uses).
	Metric uint32
	Links  []EdgeLink
}

// EdgeLink is one link of an edge: the From node's port and its metric.
type EdgeLink struct {
	Port   uint32
	Metric uint32
}

type edgeRef struct {
	from int32
	pos  int32
}

// Host is a node announcing a prefix.
type Host struct {
	Node   int32
	Metric uint32
}

// BuildTopology makes the Topology of an LSDB. A node takes part while its
// fragment 0 is live (as in spf); its adjacencies and prefixes are the union
// of its live fragments; an adjacency counts only when both ends list each
// other (the two-way check).
func BuildTopology(lsdb map[FragmentID]*LSP) *Topology {
	live := func(l *LSP) bool { return !l.HasLifetime || l.RemainingLifetime > 0 }
	var names []string
	for id, l := range lsdb {
		if id.Fragment == 0 && live(l) {
			names = append(names, id.Origin)
		}
	}
	slices.Sort(names)
	t := &Topology{
		nodes:     names,
		index:     make(map[string]int32, len(names)),
		out:       make([][]Edge, len(names)),
		in:        make([][]edgeRef, len(names)),
		hosts:     map[prefixID][]Host{},
		instances: map[prefixID]map[uint32]int32{},
	}
	for i, n := range names {
		t.index[n] = int32(i)
	}
	// links[u][v] are u's links to v, from u's fragments.
	links := make([]map[int32][]EdgeLink, len(names))
	// Fragments in a fixed order, so the result does not depend on map order.
	ids := make([]FragmentID, 0, len(lsdb))
	for id := range lsdb {
		ids = append(ids, id)
	}
	slices.SortFunc(ids, func(a, b FragmentID) int {
		return cmp.Or(cmp.Compare(a.Origin, b.Origin), cmp.Compare(a.Fragment, b.Fragment))
	})
	for _, id := range ids {
		l := lsdb[id]
		u, ok := t.index[id.Origin]
		if !ok || !live(l) {
			continue
		}
		for _, a := range l.Adjacencies {
			v, ok := t.index[a.Neighbor]
			if !ok || v == u || a.Metric == 0 {
				continue
			}
			if links[u] == nil {
				links[u] = map[int32][]EdgeLink{}
			}
			links[u][v] = append(links[u][v], EdgeLink{Port: a.Link, Metric: a.Metric})
		}
		for _, p := range l.Prefixes {
			key, plen, err := gnmi.ParseRouteKey(p.Prefix)
			if err != nil {
				continue
			}
			if plen == 128 {
				base := key.WithInstance(0)
				svc := prefixID{base, uint8(base.PrefixLen())}
				m := t.instances[svc]
				if m == nil {
					m = map[uint32]int32{}
					t.instances[svc] = m
				}
				m[key.Instance()] = u
				continue
			}
			pid := prefixID{key, uint8(plen)}
			hs := t.hosts[pid]
			if i := slices.IndexFunc(hs, func(h Host) bool { return h.Node == u }); i >= 0 {
				hs[i].Metric = min(hs[i].Metric, p.Metric)
				continue
			}
			t.hosts[pid] = append(hs, Host{Node: u, Metric: p.Metric})
		}
	}
	for u := range links {
		for v, ls := range links[u] {
			if _, back := links[v][int32(u)]; !back {
				continue // one-way: not an adjacency yet
			}
			slices.SortFunc(ls, func(a, b EdgeLink) int { return cmp.Compare(a.Port, b.Port) })
			e := Edge{From: int32(u), To: v, Metric: ls[0].Metric, Links: ls}
			for _, l := range ls {
				e.Metric = min(e.Metric, l.Metric)
			}
			t.out[u] = append(t.out[u], e)
		}
		slices.SortFunc(t.out[u], func(a, b Edge) int { return cmp.Compare(a.To, b.To) })
		for pos, e := range t.out[u] {
			t.in[e.To] = append(t.in[e.To], edgeRef{from: int32(u), pos: int32(pos)})
		}
	}
	for p, hs := range t.hosts {
		slices.SortFunc(hs, func(a, b Host) int { return cmp.Compare(a.Node, b.Node) })
		t.hosts[p] = hs
	}
	return t
}

// Nodes lists the live nodes in name order.
func (t *Topology) Nodes() []string { return slices.Clone(t.nodes) }

// Has reports whether node is live.
func (t *Topology) Has(node string) bool { _, ok := t.index[node]; return ok }

// Adjacent reports whether from → to is a two-way adjacency.
func (t *Topology) Adjacent(from, to string) bool {
	u, ok1 := t.index[from]
	v, ok2 := t.index[to]
	return ok1 && ok2 && t.edge(u, v) != nil
}

func (t *Topology) edge(u, v int32) *Edge {
	es := t.out[u]
	i, ok := slices.BinarySearchFunc(es, v, func(e Edge, v int32) int { return cmp.Compare(e.To, v) })
	if !ok {
		return nil
	}
	return &es[i]
}

// Hosts lists the nodes that announce a service's prefix.
func (t *Topology) Hosts(s *ServiceConfig) []string {
	var out []string
	for _, h := range t.hosts[servicePrefix(s)] {
		out = append(out, t.nodes[h.Node])
	}
	return out
}

// InstanceNode is the node that announces instance id of a service.
func (t *Topology) InstanceNode(s *ServiceConfig, id uint32) (string, bool) {
	u, ok := t.instances[servicePrefix(s)][id]
	if !ok {
		return "", false
	}
	return t.nodes[u], true
}

func servicePrefix(s *ServiceConfig) prefixID {
	return prefixID{s.Key.Mask(s.PrefixLen), uint8(s.PrefixLen)}
}

// parseAdjacencies and parsePrefixes read the JSON leaves of an LSP.
func parseAdjacencies(b []byte) ([]LSPAdjacency, error) {
	var out []LSPAdjacency
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, fmt.Errorf("adjacencies: %w", err)
	}
	return out, nil
}

func parsePrefixes(b []byte) ([]LSPPrefix, error) {
	var out []LSPPrefix
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, fmt.Errorf("prefixes: %w", err)
	}
	return out, nil
}
