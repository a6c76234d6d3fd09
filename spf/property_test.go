package spf

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
)

// model is a random fabric kept outside the LSDB, so that its routes can be
// computed by a reference algorithm (Floyd–Warshall, then first hops by the
// definition of a shortest path) and compared with the RIB's.
type model struct {
	n      int
	hasLSP []bool                 // a node without an LSP is only named by others
	adj    [][]Adjacency          // per node
	pfx    [2][]map[Prefix]uint32 // per fragment (0, 1), per node
	seq    [2][]uint32            // per fragment, per node
	pool   []Prefix               // prefixes the nodes choose from
	ports  []uint32               // next free port per node
	root   int
	names  []NodeID
	byName map[NodeID]int
}

func newModel(rng *rand.Rand) *model {
	n := 2 + rng.IntN(24)
	m := &model{n: n, hasLSP: make([]bool, n), adj: make([][]Adjacency, n), ports: make([]uint32, n),
		byName: map[NodeID]int{}}
	for i := range n {
		m.names = append(m.names, NodeID(fmt.Sprintf("n%02d", i)))
		m.byName[m.names[i]] = i
		m.hasLSP[i] = i == 0 || rng.IntN(20) != 0
		m.ports[i] = 1
	}
	for f := range 2 {
		m.pfx[f] = make([]map[Prefix]uint32, n)
		m.seq[f] = make([]uint32, n)
		for i := range n {
			m.pfx[f][i] = map[Prefix]uint32{}
		}
	}
	for k := range 12 {
		var p Prefix
		p.Key[0], p.Key[1], p.Len = byte(k+1), 0xaa, 32
		m.pool = append(m.pool, p)
	}
	// A random spanning tree keeps most of the graph connected; extra links
	// make cycles, parallel links and (small metrics) many equal-cost paths.
	for i := 1; i < n; i++ {
		m.link(rng, rng.IntN(i), i)
	}
	for range rng.IntN(2 * n) {
		a, b := rng.IntN(n), rng.IntN(n)
		if a != b {
			m.link(rng, a, b)
		}
	}
	for i := range n {
		for range rng.IntN(4) {
			m.pfx[rng.IntN(2)][i][m.pool[rng.IntN(len(m.pool))]] = uint32(rng.IntN(4))
		}
	}
	return m
}

// link adds a link a - b; sometimes only a reports it.
func (m *model) link(rng *rand.Rand, a, b int) {
	m.adj[a] = append(m.adj[a], Adjacency{Neighbor: m.names[b], Metric: 1 + uint32(rng.IntN(3)), LinkID: m.ports[a]})
	m.ports[a]++
	if rng.IntN(10) == 0 {
		return
	}
	m.adj[b] = append(m.adj[b], Adjacency{Neighbor: m.names[a], Metric: 1 + uint32(rng.IntN(3)), LinkID: m.ports[b]})
	m.ports[b]++
}

func (m *model) lsp(i, f int) LSP {
	m.seq[f][i]++
	l := LSP{Origin: m.names[i], Fragment: uint8(f), Seq: m.seq[f][i], RemainingLifetime: 1200}
	if f == 0 {
		l.Adjacencies = m.adj[i]
	}
	for p, metric := range m.pfx[f][i] {
		l.Prefixes = append(l.Prefixes, PrefixReach{p, metric})
	}
	return l
}

func (m *model) send(t *testing.T, db *LSDB, i, f int) {
	t.Helper()
	if !m.hasLSP[i] {
		return
	}
	if r := db.Receive(m.lsp(i, f), 0); r.Verdict != Newer {
		t.Fatalf("receive %s/%d: %v %v", m.names[i], f, r.Verdict, r.Err)
	}
}

// reference computes the root's routes from the model alone.
func (m *model) reference() RouteTable {
	const inf = uint64(1) << 62
	n := m.n
	lists := func(a, b int) bool {
		for _, x := range m.adj[a] {
			if x.Neighbor == m.names[b] {
				return true
			}
		}
		return false
	}
	D := make([][]uint64, n)
	for i := range D {
		D[i] = make([]uint64, n)
		for j := range D[i] {
			D[i][j] = inf
		}
		D[i][i] = 0
	}
	usable := func(a int, x Adjacency) (int, bool) {
		b := m.byName[x.Neighbor]
		return b, m.hasLSP[a] && m.hasLSP[b] && lists(b, a)
	}
	for a := range n {
		for _, x := range m.adj[a] {
			if b, ok := usable(a, x); ok {
				D[a][b] = min(D[a][b], uint64(x.Metric))
			}
		}
	}
	for k := range n {
		for i := range n {
			for j := range n {
				D[i][j] = min(D[i][j], D[i][k]+D[k][j])
			}
		}
	}
	r := m.root
	if !m.hasLSP[r] {
		return RouteTable{}
	}
	firstHops := func(v int) []NextHop {
		var hops []NextHop
		for _, x := range m.adj[r] {
			if b, ok := usable(r, x); ok && uint64(x.Metric)+D[b][v] == D[r][v] {
				hops = append(hops, NextHop{x.Neighbor, x.LinkID})
			}
		}
		slices.SortFunc(hops, compareNextHop)
		return hops
	}
	table := RouteTable{}
	for _, p := range m.pool {
		best, local := inf, false
		var origins []int
		for o := range n {
			metric, ok := uint64(0), false
			for f := range 2 {
				if mm, has := m.pfx[f][o][p]; has && (!ok || uint64(mm) < metric) {
					metric, ok = uint64(mm), true
				}
			}
			if !ok || !m.hasLSP[o] || D[r][o] >= inf {
				continue
			}
			switch c := D[r][o] + metric; {
			case c < best:
				best, origins = c, []int{o}
			case c == best:
				origins = append(origins, o)
			}
		}
		if len(origins) == 0 {
			continue
		}
		local = slices.Contains(origins, r)
		if local {
			table[p] = Route{Metric: best, Origins: []NodeID{m.names[r]}, Local: true}
			continue
		}
		var hops []NextHop
		var names []NodeID
		for _, o := range origins {
			hops = append(hops, firstHops(o)...)
			names = append(names, m.names[o])
		}
		slices.SortFunc(hops, compareNextHop)
		hops = slices.Compact(hops)
		slices.Sort(names)
		table[p] = Route{NextHops: hops, Metric: best, Origins: names}
	}
	return table
}

func checkTables(t *testing.T, what string, got, want RouteTable) {
	t.Helper()
	if d := DiffRoutes(want, got); d.Len() > 0 {
		for _, u := range d.Added {
			t.Errorf("%s: extra %s %s", what, u.Prefix, u.New)
		}
		for _, u := range d.Changed {
			t.Errorf("%s: %s is %s, want %s", what, u.Prefix, u.New, u.Old)
		}
		for _, u := range d.Removed {
			t.Errorf("%s: missing %s %s", what, u.Prefix, u.Old)
		}
		t.FailNow()
	}
}

// TestIncrementalEqualsFull: on random graphs, after prefix-only changes the
// partial route calculation gives what a full SPF from scratch gives, and
// both give what the reference gives; topology changes take the full path.
func TestIncrementalEqualsFull(t *testing.T) {
	for seed := range 300 {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(uint64(seed), 7))
			m := newModel(rng)
			m.root = rng.IntN(m.n)
			db := New(Options{})
			for i := range m.n {
				m.send(t, db, i, 0)
				if len(m.pfx[1][i]) > 0 {
					m.send(t, db, i, 1)
				}
			}
			rib := NewRIB(m.names[m.root])
			if c := rib.Update(db, db.TakeChanges()); c.Kind != KindFull {
				t.Fatalf("first computation: %v", c.Kind)
			}
			checkTables(t, "first full", rib.Routes(), m.reference())
			before := rib.Routes()
			var pending Changes
			for step := range 60 {
				i := rng.IntN(m.n)
				topo := step%9 == 8
				if topo {
					// Change one metric, or add a link.
					if len(m.adj[i]) > 0 && rng.IntN(2) == 0 {
						m.adj[i][rng.IntN(len(m.adj[i]))].Metric = 1 + uint32(rng.IntN(3))
						m.send(t, db, i, 0)
					} else if j := rng.IntN(m.n); j != i {
						m.link(rng, i, j)
						m.send(t, db, i, 0)
						m.send(t, db, j, 0)
					}
				} else {
					f := rng.IntN(2)
					for range 1 + rng.IntN(3) {
						p := m.pool[rng.IntN(len(m.pool))]
						if _, has := m.pfx[f][i][p]; has && rng.IntN(2) == 0 {
							delete(m.pfx[f][i], p)
						} else {
							m.pfx[f][i][p] = uint32(rng.IntN(4))
						}
					}
					m.send(t, db, i, f)
				}
				// Sometimes let changes pile up over several steps (slots
				// freed and reused in between), as when SPF is throttled.
				pending.Merge(db.TakeChanges())
				if rng.IntN(3) == 0 {
					continue
				}
				ch := pending
				pending = Changes{}
				c := rib.Update(db, ch)
				switch {
				case ch.Topology && c.Kind != KindFull:
					t.Fatalf("step %d: topology changed, computation %v", step, c.Kind)
				case !ch.Topology && c.Kind == KindFull:
					t.Fatalf("step %d: prefix-only change, full computation", step)
				}
				fresh := NewRIB(rib.Root())
				fresh.Full(db)
				checkTables(t, fmt.Sprintf("step %d (%v) against full", step, c.Kind), rib.Routes(), fresh.Routes())
				checkTables(t, fmt.Sprintf("step %d against reference", step), rib.Routes(), m.reference())
				// The diff the computation returned turns the old table
				// into the new one.
				checkDiff(t, before, c.Diff, rib.Routes())
				before = rib.Routes()
				if rib.Len() != len(before) {
					t.Fatalf("Len %d, Routes %d", rib.Len(), len(before))
				}
				for _, p := range m.pool {
					got, ok := rib.Route(p)
					if want, has := before[p]; ok != has || !got.Equal(want) {
						t.Fatalf("Route(%s) = %s %v, Routes has %s %v", p, got, ok, want, has)
					}
				}
			}
		})
	}
}

func checkDiff(t *testing.T, before RouteTable, d Diff, after RouteTable) {
	t.Helper()
	applied := before.Clone()
	for _, u := range d.Added {
		if _, ok := applied[u.Prefix]; ok {
			t.Fatalf("diff adds %s, which was there", u.Prefix)
		}
		applied[u.Prefix] = u.New
	}
	for _, u := range d.Changed {
		if !applied[u.Prefix].Equal(u.Old) {
			t.Fatalf("diff changes %s from %s, which was %s", u.Prefix, u.Old, applied[u.Prefix])
		}
		applied[u.Prefix] = u.New
	}
	for _, u := range d.Removed {
		delete(applied, u.Prefix)
	}
	if x := DiffRoutes(applied, after); x.Len() > 0 {
		t.Fatalf("applying the diff leaves %d differences", x.Len())
	}
	if x := DiffRoutes(before, after); x.Len() != d.Len() {
		t.Fatalf("diff has %d updates, DiffRoutes %d", d.Len(), x.Len())
	}
}

// TestPrefixSlotReuse: the LSDB hands the slot of a prefix that went to the
// next new prefix, and a prefix that comes back gets whichever slot is free.
// Between two computations a RIB must still match routes by prefix: a
// prefix that went and came back is changed (or unchanged), never removed
// and added.
func TestPrefixSlotReuse(t *testing.T) {
	pfx := func(b byte) PrefixReach { return PrefixReach{Prefix: Prefix{Key: [16]byte{b}, Len: 32}} }
	p1, p2, p3 := pfx(1), pfx(2), pfx(3)
	type step struct {
		origin NodeID
		prefix []PrefixReach
	}
	for _, tc := range []struct {
		name        string
		setup, then []step
	}{
		// p1 frees slot 0, p3 takes it, p1 comes back in slot 2: the RIB
		// meets p3 in p1's old slot first (p1 is set aside, then found).
		{"evicted", []step{{"a", []PrefixReach{p1, p2}}},
			[]step{{"a", []PrefixReach{p2, p3}}, {"b", []PrefixReach{p1}}}},
		// p2 in slot 0 and p1 in slot 1 both go; p3 takes slot 1 and p1
		// slot 0: the RIB meets p1 in a new slot, its route still in the
		// old one.
		{"moved", []step{{"a", []PrefixReach{p2}}, {"b", []PrefixReach{p1}}},
			[]step{{"a", nil}, {"b", nil}, {"a", []PrefixReach{p3}}, {"b", []PrefixReach{p1}}}},
	} {
		for _, mode := range []string{"incremental", "full"} {
			t.Run(tc.name+"/"+mode, func(t *testing.T) {
				db := New(Options{})
				seq := map[NodeID]uint32{}
				send := func(s step) {
					seq[s.origin]++
					other := map[NodeID]NodeID{"a": "b", "b": "a"}[s.origin]
					l := LSP{Origin: s.origin, Seq: seq[s.origin], RemainingLifetime: 100,
						Adjacencies: []Adjacency{{other, 1, 1}}, Prefixes: s.prefix}
					if r := db.Receive(l, 0); r.Verdict != Newer {
						t.Fatal(r.Verdict, r.Err)
					}
				}
				send(step{"b", nil})
				for _, s := range tc.setup {
					send(s)
				}
				rib := NewRIB("a")
				rib.Update(db, db.TakeChanges())
				before := rib.Routes()
				for _, s := range tc.then {
					send(s)
				}
				ch := db.TakeChanges()
				var c Computation
				if mode == "full" {
					c = rib.Full(db)
				} else {
					var err error
					if c, err = rib.Incremental(db, ch); err != nil {
						t.Fatal(err)
					}
				}
				fresh := NewRIB("a")
				fresh.Full(db)
				checkTables(t, "after", rib.Routes(), fresh.Routes())
				checkDiff(t, before, c.Diff, rib.Routes())
				seen := map[Prefix]bool{}
				for _, l := range [][]RouteUpdate{c.Diff.Added, c.Diff.Changed, c.Diff.Removed} {
					for _, u := range l {
						if seen[u.Prefix] {
							t.Errorf("%s twice in the diff %+v", u.Prefix, c.Diff)
						}
						seen[u.Prefix] = true
					}
				}
			})
		}
	}
}
