// Package spfbench measures package spf on generated fabrics: full SPF,
// partial route calculation after a prefix change, and the memory of a route
// table, at 1k and 10k nodes with 100k service prefixes. Run it with
//
//	go test -run '^$' -bench . -benchmem ./bench/spf
//
// The generators are deterministic (seeded), so figures from two runs or two
// machines are about the same fabric.
package spfbench

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"

	"github.com/dmsc-mesh/dmsc/spf"
)

// PrefixesPerFragment is how many prefixes the generators put in one LSP
// fragment: about what fits a 1,400-byte frame next to the header and
// signature, so that a prefix change touches one fragment as it would on the
// wire.
const PrefixesPerFragment = 48

// Fabric is a generated network as LSP fragments, ready to be loaded.
type Fabric struct {
	Name  string
	Nodes []spf.NodeID
	// Edge are the nodes that host services (SGs); Root, the vantage point
	// of the benchmarks, is one of them.
	Edge  []spf.NodeID
	Root  spf.NodeID
	Links int // bidirectional links
	// Prefixes is the number of service prefixes (node keys not counted).
	Prefixes int
	LSPs     []spf.LSP

	adj map[spf.NodeID][]spf.Adjacency
	pfx map[spf.NodeID][]spf.PrefixReach
}

func newFabric(name string) *Fabric {
	return &Fabric{Name: name, adj: map[spf.NodeID][]spf.Adjacency{}, pfx: map[spf.NodeID][]spf.PrefixReach{}}
}

func (f *Fabric) node(id spf.NodeID) {
	f.Nodes = append(f.Nodes, id)
}

// link joins a and b with one link of the given metric, a fresh port at each
// end.
func (f *Fabric) link(a, b spf.NodeID, metric uint32) {
	f.adj[a] = append(f.adj[a], spf.Adjacency{Neighbor: b, Metric: metric, LinkID: uint32(len(f.adj[a]) + 1)})
	f.adj[b] = append(f.adj[b], spf.Adjacency{Neighbor: a, Metric: metric, LinkID: uint32(len(f.adj[b]) + 1)})
	f.Links++
}

// spread deals n random /64 service prefixes over the edge nodes, round
// robin, and gives every node its /128 node key.
func (f *Fabric) spread(n int, rng *rand.Rand) {
	for i := range n {
		f.pfx[f.Edge[i%len(f.Edge)]] = append(f.pfx[f.Edge[i%len(f.Edge)]], spf.PrefixReach{Prefix: RandomPrefix(rng, 64)})
	}
	f.Prefixes = n
	for _, id := range f.Nodes {
		f.pfx[id] = append(f.pfx[id], spf.PrefixReach{Prefix: RandomPrefix(rng, 128)})
	}
}

// RandomPrefix returns a prefix of length l whose 32-bit segments are random
// and non-zero, like hashed name components (DESIGN §2).
func RandomPrefix(rng *rand.Rand, l uint8) spf.Prefix {
	p := spf.Prefix{Len: l}
	for s := 0; s < int(l)/32; s++ {
		binary.BigEndian.PutUint32(p.Key[4*s:], rng.Uint32()|1)
	}
	return p
}

// finish turns adjacencies and prefixes into fragments: fragment 0 holds the
// adjacencies and the node key, the next ones PrefixesPerFragment service
// prefixes each.
func (f *Fabric) finish() *Fabric {
	for _, id := range f.Nodes {
		pfx := f.pfx[id]
		nodeKey := pfx[len(pfx)-1]
		f.LSPs = append(f.LSPs, spf.LSP{Origin: id, Seq: 1, RemainingLifetime: 1200,
			Adjacencies: f.adj[id], Prefixes: []spf.PrefixReach{nodeKey}})
		pfx = pfx[:len(pfx)-1]
		for frag := 1; len(pfx) > 0; frag++ {
			n := min(len(pfx), PrefixesPerFragment)
			f.LSPs = append(f.LSPs, spf.LSP{Origin: id, Fragment: uint8(frag), Seq: 1, RemainingLifetime: 1200,
				Prefixes: pfx[:n]})
			pfx = pfx[n:]
		}
	}
	f.adj, f.pfx = nil, nil
	return f
}

// FatTree builds a k-ary fat tree (k even): k pods of k/2 edge and k/2
// aggregation switches, (k/2)² core switches, 5k²/4 nodes and k³/2 links,
// every link metric 10. The edge switches host the prefixes. k = 28 gives
// 980 nodes, k = 90 gives 10,125.
func FatTree(k, prefixes int, seed uint64) *Fabric {
	if k < 2 || k%2 != 0 {
		panic("FatTree: k must be even and at least 2")
	}
	h := k / 2
	f := newFabric(fmt.Sprintf("fattree-k%d", k))
	edge := func(p, i int) spf.NodeID { return spf.NodeID(fmt.Sprintf("e%d-%d", p, i)) }
	agg := func(p, j int) spf.NodeID { return spf.NodeID(fmt.Sprintf("a%d-%d", p, j)) }
	core := func(j, m int) spf.NodeID { return spf.NodeID(fmt.Sprintf("c%d-%d", j, m)) }
	for p := range k {
		for i := range h {
			f.node(edge(p, i))
			f.Edge = append(f.Edge, edge(p, i))
		}
		for j := range h {
			f.node(agg(p, j))
		}
	}
	for j := range h {
		for m := range h {
			f.node(core(j, m))
		}
	}
	for p := range k {
		for i := range h {
			for j := range h {
				f.link(edge(p, i), agg(p, j), 10)
			}
		}
		for j := range h {
			for m := range h {
				f.link(agg(p, j), core(j, m), 10)
			}
		}
	}
	f.Root = f.Edge[0]
	f.spread(prefixes, rand.New(rand.NewPCG(seed, 0xfa7)))
	return f.finish()
}

// Random builds a connected random graph of n nodes with average degree
// about degree: a random spanning tree, then random extra links (no
// duplicates), metrics 10, 20, 30 or 40. Every other node is an edge node.
func Random(n, degree, prefixes int, seed uint64) *Fabric {
	rng := rand.New(rand.NewPCG(seed, 0x4a9d))
	f := newFabric(fmt.Sprintf("random-n%d-d%d", n, degree))
	id := func(i int) spf.NodeID { return spf.NodeID(fmt.Sprintf("r%d", i)) }
	for i := range n {
		f.node(id(i))
		if i%2 == 0 {
			f.Edge = append(f.Edge, id(i))
		}
	}
	seen := map[[2]int]bool{}
	add := func(a, b int) {
		if a == b || seen[[2]int{a, b}] {
			return
		}
		seen[[2]int{a, b}], seen[[2]int{b, a}] = true, true
		f.link(id(a), id(b), 10*uint32(1+rng.IntN(4)))
	}
	for i := 1; i < n; i++ {
		add(rng.IntN(i), i)
	}
	for f.Links < n*degree/2 {
		add(rng.IntN(n), rng.IntN(n))
	}
	f.Root = f.Edge[0]
	f.spread(prefixes, rand.New(rand.NewPCG(seed, 0x9e3)))
	return f.finish()
}

// Load returns an LSDB holding the fabric, as seen by Root.
func (f *Fabric) Load() (*spf.LSDB, error) {
	db := spf.New(spf.Options{})
	for _, l := range f.LSPs {
		if r := db.Receive(l, 0); r.Verdict != spf.Newer {
			return nil, fmt.Errorf("%s: %s: %v %v", f.Name, l.ID(), r.Verdict, r.Err)
		}
	}
	db.TakeChanges()
	return db, nil
}
