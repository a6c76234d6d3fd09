package spf

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"math"
	"math/bits"
	"slices"
	"strings"
)

// NextHop is a first hop from the root: a neighbour and the root's local link
// (port) to it.
type NextHop struct {
	Neighbor NodeID
	LinkID   uint32
}

func (h NextHop) String() string { return fmt.Sprintf("%s/%d", h.Neighbor, h.LinkID) }

func compareNextHop(a, b NextHop) int {
	if c := strings.Compare(string(a.Neighbor), string(b.Neighbor)); c != 0 {
		return c
	}
	switch {
	case a.LinkID < b.LinkID:
		return -1
	case a.LinkID > b.LinkID:
		return 1
	}
	return 0
}

// Route is how the root reaches a prefix.
//
// Its slices are shared between routes (every prefix behind the same set of
// first hops holds the same NextHops slice, which is also what makes the
// route table small) and must not be modified.
type Route struct {
	// NextHops is the union of the first hops towards every best origin,
	// sorted by neighbour then link; empty when Local.
	NextHops []NextHop
	// Metric is the distance to the best origins plus their prefix metric.
	Metric uint64
	// Origins are the origins at that cost, sorted; only the root when Local.
	Origins []NodeID
	// Local: the root announces the prefix itself at a cost no worse than any
	// other origin's, so traffic is delivered here and not forwarded (an SG
	// prefers its own instances of an anycast service).
	Local bool
}

// Equal reports whether r and o route the same way.
func (r Route) Equal(o Route) bool {
	return r.Metric == o.Metric && r.Local == o.Local &&
		sameSlice(r.NextHops, o.NextHops) && sameSlice(r.Origins, o.Origins)
}

// sameSlice compares two slices, skipping the elements when both are the
// same interned slice, which is the common case.
func sameSlice[T comparable](a, b []T) bool {
	if len(a) != len(b) {
		return false
	}
	if len(a) == 0 || &a[0] == &b[0] {
		return true
	}
	return slices.Equal(a, b)
}

// identical is Equal with the same interned NextHops slice: nothing to
// store.
func (r *Route) identical(o Route) bool {
	return r.Equal(o) && (len(o.NextHops) == 0 || &r.NextHops[0] == &o.NextHops[0])
}

func (r Route) String() string {
	if r.Local {
		return fmt.Sprintf("metric=%d local", r.Metric)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "metric=%d via ", r.Metric)
	for i, h := range r.NextHops {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(h.String())
	}
	b.WriteString(" from ")
	for i, o := range r.Origins {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(string(o))
	}
	return b.String()
}

// RouteTable maps every reachable prefix to its route: what RIB.Routes
// returns, and what DiffRoutes compares.
type RouteTable map[Prefix]Route

// Clone returns a copy of the table (the routes' slices stay shared, they are
// never modified).
func (t RouteTable) Clone() RouteTable {
	c := make(RouteTable, len(t))
	for p, r := range t {
		c[p] = r
	}
	return c
}

// RouteUpdate is one entry of a Diff. Old is the zero Route for an addition,
// New for a removal.
type RouteUpdate struct {
	Prefix   Prefix
	Old, New Route
}

// Diff is what changed between two route tables, each list sorted by prefix:
// what the agent programs into the FIB.
type Diff struct {
	Added, Changed, Removed []RouteUpdate
}

// Len returns the number of updates.
func (d Diff) Len() int { return len(d.Added) + len(d.Changed) + len(d.Removed) }

// updates collects one list of a diff in chunks that never move, so that a
// diff of 100k routes (one of the root's links went down: every route's next
// hops change) is copied once, into its final sorted slice, instead of on
// every doubling of an append and again by the sort: that copying was most
// of the cost of such a computation.
type updates struct {
	chunks [][]RouteUpdate
	n      int
}

func (u *updates) add(x RouteUpdate) {
	k := len(u.chunks)
	if k == 0 || len(u.chunks[k-1]) == cap(u.chunks[k-1]) {
		u.chunks = append(u.chunks, make([]RouteUpdate, 0, min(4096, max(8, u.n))))
		k++
	}
	u.chunks[k-1] = append(u.chunks[k-1], x)
	u.n++
}

// take returns the updates sorted by prefix and empties u.
func (u *updates) take() []RouteUpdate {
	if u.n == 0 {
		return nil
	}
	out := make([]RouteUpdate, 0, u.n)
	if u.n < 256 {
		for _, c := range u.chunks {
			out = append(out, c...)
		}
		slices.SortFunc(out, func(a, b RouteUpdate) int { return a.Prefix.Compare(b.Prefix) })
		*u = updates{}
		return out
	}
	// Sort small keys (the prefix as two integers, and where the update
	// is), then copy each update once.
	type key struct {
		hi, lo uint64
		len    uint8
		c, i   int32
	}
	keys := make([]key, 0, u.n)
	for c, chunk := range u.chunks {
		for i := range chunk {
			k := &chunk[i].Prefix.Key
			keys = append(keys, key{binary.BigEndian.Uint64(k[:8]), binary.BigEndian.Uint64(k[8:]),
				chunk[i].Prefix.Len, int32(c), int32(i)})
		}
	}
	slices.SortFunc(keys, func(a, b key) int {
		switch {
		case a.hi != b.hi:
			return cmp.Compare(a.hi, b.hi)
		case a.lo != b.lo:
			return cmp.Compare(a.lo, b.lo)
		}
		return cmp.Compare(a.len, b.len)
	})
	for _, k := range keys {
		out = append(out, u.chunks[k.c][k.i])
	}
	*u = updates{}
	return out
}

// diffBuilder collects a Diff.
type diffBuilder struct{ added, changed, removed updates }

func (b *diffBuilder) take() Diff {
	return Diff{Added: b.added.take(), Changed: b.changed.take(), Removed: b.removed.take()}
}

// DiffRoutes returns what turns old into new.
func DiffRoutes(old, new RouteTable) Diff {
	var b diffBuilder
	for p, n := range new {
		if o, ok := old[p]; !ok {
			b.added.add(RouteUpdate{Prefix: p, New: n})
		} else if !o.Equal(n) {
			b.changed.add(RouteUpdate{Prefix: p, Old: o, New: n})
		}
	}
	for p, o := range old {
		if _, ok := new[p]; !ok {
			b.removed.add(RouteUpdate{Prefix: p, Old: o})
		}
	}
	return b.take()
}

// Kind says how routes were computed.
type Kind uint8

const (
	// KindNone: nothing changed, nothing computed.
	KindNone Kind = iota
	// KindIncremental: partial route calculation, the changed prefixes only,
	// on the previous shortest-path tree.
	KindIncremental
	// KindFull: Dijkstra, then every prefix.
	KindFull
)

func (k Kind) String() string {
	switch k {
	case KindNone:
		return "none"
	case KindIncremental:
		return "incremental"
	case KindFull:
		return "full"
	}
	return "kind(?)"
}

// Computation reports one route computation.
type Computation struct {
	Kind Kind
	Diff Diff
	// Reachable is the number of nodes in the shortest-path tree, the root
	// included (as of the last full SPF).
	Reachable int
	// Recomputed is the number of prefixes whose route was computed.
	Recomputed int
}

// RIB computes and holds the routes of one root node over an LSDB: the
// shortest-path tree with its ECMP first-hop sets and the route table derived
// from it.
//
// The tree is Dijkstra from the root over the adjacencies of every node whose
// fragment 0 is live, where an adjacency A→B counts only if B also lists an
// adjacency to A (the two-way check: a link only one end reports is not up).
// For every node it keeps the set of first hops over all equal-cost shortest
// paths, as a bit set over the root's links.
type RIB struct {
	root NodeID

	// What the tree was computed from.
	db      *LSDB
	valid   bool
	topoGen uint64

	rootIdx  int32
	links    []rootLink // first hop i is bit i; sorted like NextHops
	words    int        // words per first-hop set
	dist     []uint64   // by node index; inf when unreachable
	hops     []uint64   // words per node
	active   []bool
	nodeHops [][]NextHop // interned first hops by node, filled lazily
	reach    int

	// intern shares one NextHops slice per distinct first-hop set. It is
	// keyed by the bit set, so it is emptied whenever the root's links
	// change; entries unused by a full computation are dropped after it.
	intern map[string]*interned
	gen    uint64

	heap   []heapItem
	best   []int32
	set    []uint64
	keybuf []byte

	// The routes, by the LSDB's prefix slot number, so that a full
	// computation walks two parallel arrays and touches no map unless a
	// prefix appears or goes. where finds a routed prefix's slot.
	slots []ribSlot
	where map[Prefix]int32
	// evicted holds routes whose slot the LSDB gave to another prefix during
	// this computation, until their prefix turns up in its new slot (or is
	// reported removed at the end).
	evicted map[Prefix]Route
	diff    diffBuilder
}

// ribSlot is the route of one LSDB prefix slot.
type ribSlot struct {
	prefix Prefix
	has    bool
	route  Route
}

type rootLink struct {
	NextHop
	to     int32
	metric uint32
}

type interned struct {
	hops []NextHop
	gen  uint64
}

const inf = math.MaxUint64

// NewRIB returns an empty RIB rooted at root (normally the LSDB's Self).
func NewRIB(root NodeID) *RIB {
	return &RIB{root: root, intern: make(map[string]*interned), where: make(map[Prefix]int32),
		evicted: make(map[Prefix]Route)}
}

// Root returns the node the routes are computed from.
func (r *RIB) Root() NodeID { return r.root }

// Routes returns a snapshot of the route table. It costs a map of every
// route (some milliseconds at 100k prefixes): it is for inspection; the agent
// programs its FIB from each Computation's Diff.
func (r *RIB) Routes() RouteTable {
	t := make(RouteTable, len(r.where))
	for p, id := range r.where {
		t[p] = r.slots[id].route
	}
	return t
}

// Route returns the route of prefix p.
func (r *RIB) Route(p Prefix) (Route, bool) {
	if id, ok := r.where[p]; ok {
		return r.slots[id].route, true
	}
	return Route{}, false
}

// Len returns the number of routes.
func (r *RIB) Len() int { return len(r.where) }

// Update brings the routes up to date with the changes taken from db since
// the last computation: a partial route calculation when only prefixes
// changed, a full SPF otherwise (topology changed, no tree yet, another
// LSDB). The Computation says which it did.
func (r *RIB) Update(db *LSDB, ch Changes) Computation {
	if c, err := r.Incremental(db, ch); err == nil {
		return c
	}
	return r.Full(db)
}

// Incremental recomputes the routes of ch.Prefixes only, reusing the current
// tree: its cost depends on the number of changed prefixes and their origins,
// not on the size of the fabric. It fails with ErrNeedFull when the tree does
// not match db's topology. ch must hold every change taken from db since the
// last computation.
func (r *RIB) Incremental(db *LSDB, ch Changes) (Computation, error) {
	if !r.valid || r.db != db || r.topoGen != db.topoGen || ch.Topology {
		return Computation{}, ErrNeedFull
	}
	c := Computation{Kind: KindIncremental, Reachable: r.reach, Recomputed: len(ch.Prefixes)}
	if len(ch.Prefixes) == 0 {
		c.Kind = KindNone
		return c, nil
	}
	for _, p := range ch.Prefixes {
		if id, ok := db.pfxIDs[p]; ok {
			r.recompute(db, id)
		} else if id, ok := r.where[p]; ok {
			r.drop(id)
		}
	}
	c.Diff = r.finish()
	return c, nil
}

// Full runs Dijkstra and recomputes every prefix.
func (r *RIB) Full(db *LSDB) Computation {
	if r.db != db {
		// Slot numbers are another LSDB's: set every route aside, to be
		// matched by prefix.
		for p, id := range r.where {
			r.evicted[p] = r.slots[id].route
		}
		clear(r.where)
		clear(r.slots)
	}
	r.gen++
	r.spf(db)
	c := Computation{Kind: KindFull, Reachable: r.reach, Recomputed: len(db.pfxIDs)}
	for id := range db.pfxs {
		if db.pfxs[id].n > 0 {
			r.recompute(db, int32(id))
		}
	}
	// Routes in slots the LSDB freed: their prefixes went.
	for id := range r.slots {
		if r.slots[id].has && (id >= len(db.pfxs) || db.pfxs[id].n == 0) {
			r.drop(int32(id))
		}
	}
	for k, it := range r.intern {
		if it.gen != r.gen {
			delete(r.intern, k)
		}
	}
	c.Diff = r.finish()
	return c
}

// drop removes the route in slot id.
func (r *RIB) drop(id int32) {
	rs := &r.slots[id]
	r.diff.removed.add(RouteUpdate{Prefix: rs.prefix, Old: rs.route})
	delete(r.where, rs.prefix)
	*rs = ribSlot{}
}

// finish reports the evicted routes that found no new slot as removed, and
// returns the sorted diff.
func (r *RIB) finish() Diff {
	for p, old := range r.evicted {
		r.diff.removed.add(RouteUpdate{Prefix: p, Old: old})
	}
	r.evicted = emptied(r.evicted)
	return r.diff.take()
}

// recompute computes the route of the LSDB's prefix slot id and records what
// changed in r.diff.
func (r *RIB) recompute(db *LSDB, id int32) {
	if len(r.slots) < len(db.pfxs) {
		// Grow with the LSDB's capacity, not one prefix at a time: a
		// new prefix must not copy the whole slice every time.
		r.slots = append(r.slots, make([]ribSlot, cap(db.pfxs)-len(r.slots))...)
	}
	ps, rs := &db.pfxs[id], &r.slots[id]
	p := ps.prefix
	rt, ok := r.route(db, ps)
	if ok && rs.has && rs.prefix == p && rs.route.identical(rt) {
		return // the common case of a full computation: nothing to write
	}

	var old Route
	had, here := false, rs.has && rs.prefix == p
	switch {
	case here:
		old, had = rs.route, true
	default:
		if rs.has {
			// The LSDB gave this slot to p after its prefix went; that
			// prefix may have a slot of its own further on.
			r.evicted[rs.prefix] = rs.route
			delete(r.where, rs.prefix)
		}
		if j, moved := r.where[p]; moved {
			// p went and came back in another slot.
			old, had = r.slots[j].route, true
			r.slots[j] = ribSlot{}
			delete(r.where, p)
		} else if o, ev := r.evicted[p]; ev {
			old, had = o, true
			delete(r.evicted, p)
		}
	}
	switch {
	case !ok:
		if had {
			r.diff.removed.add(RouteUpdate{Prefix: p, Old: old})
		}
		delete(r.where, p)
		*rs = ribSlot{prefix: p}
		return
	case !had:
		r.diff.added.add(RouteUpdate{Prefix: p, New: rt})
	case !old.Equal(rt):
		r.diff.changed.add(RouteUpdate{Prefix: p, Old: old, New: rt})
	}
	// An equal route built on a new interned slice (the root's links
	// changed) is stored too, so that the old slices can go.
	*rs = ribSlot{prefix: p, has: true, route: rt}
	if !here {
		r.where[p] = id
	}
}

// route computes a prefix's route from the current tree.
func (r *RIB) route(db *LSDB, s *pfxSlot) (Route, bool) {
	best := uint64(inf)
	r.best = r.best[:0]
	consider := func(o pfxOrigin) {
		if int(o.node) >= len(r.dist) {
			return // a node newer than the tree: not in it
		}
		d := r.dist[o.node]
		if d == inf {
			return
		}
		c := d + uint64(o.metric)
		switch {
		case c < best:
			best = c
			r.best = append(r.best[:0], o.node)
		case c == best && !slices.Contains(r.best, o.node):
			r.best = append(r.best, o.node)
		}
	}
	consider(s.o0)
	for _, o := range s.more {
		consider(o)
	}
	switch {
	case len(r.best) == 0:
		return Route{}, false
	case slices.Contains(r.best, r.rootIdx):
		return Route{Metric: best, Origins: db.nodes[r.rootIdx].one, Local: true}, true
	case len(r.best) == 1:
		n := r.best[0]
		return Route{NextHops: r.hopsOf(n), Metric: best, Origins: db.nodes[n].one}, true
	}
	// Anycast: several origins at the same cost; ECMP over all their first
	// hops.
	r.set = append(r.set[:0], make([]uint64, r.words)...)
	origins := make([]NodeID, 0, len(r.best))
	for _, n := range r.best {
		for w, v := range r.hops[int(n)*r.words : int(n+1)*r.words] {
			r.set[w] |= v
		}
		origins = append(origins, db.nodes[n].id)
	}
	slices.Sort(origins)
	return Route{NextHops: r.internSet(r.set), Metric: best, Origins: origins}, true
}

func (r *RIB) hopsOf(n int32) []NextHop {
	if h := r.nodeHops[n]; h != nil {
		return h
	}
	h := r.internSet(r.hops[int(n)*r.words : int(n+1)*r.words])
	r.nodeHops[n] = h
	return h
}

func (r *RIB) internSet(set []uint64) []NextHop {
	r.keybuf = r.keybuf[:0]
	for _, w := range set {
		r.keybuf = binary.LittleEndian.AppendUint64(r.keybuf, w)
	}
	if it, ok := r.intern[string(r.keybuf)]; ok {
		it.gen = r.gen
		return it.hops
	}
	n := 0
	for _, w := range set {
		n += bits.OnesCount64(w)
	}
	hops := make([]NextHop, 0, n)
	for i, w := range set {
		for ; w != 0; w &= w - 1 {
			hops = append(hops, r.links[i*64+bits.TrailingZeros64(w)].NextHop)
		}
	}
	r.intern[string(r.keybuf)] = &interned{hops: hops, gen: r.gen}
	return hops
}

// spf computes the shortest-path tree of db from the root.
func (r *RIB) spf(db *LSDB) {
	r.db, r.valid, r.topoGen = db, true, db.topoGen
	n := len(db.nodes)
	r.dist = resize(r.dist, n)
	r.active = resize(r.active, n)
	r.nodeHops = resize(r.nodeHops, n)
	clear(r.nodeHops)
	for i, x := range db.nodes {
		r.dist[i] = inf
		r.active[i] = x != nil && x.active
	}
	r.reach = 0
	r.rootIdx = -1

	// The root's usable links, in NextHop order so that a first-hop bit set
	// reads out sorted.
	var links []rootLink
	if i, ok := db.ids[r.root]; ok && r.active[i] {
		r.rootIdx = i
		for _, e := range db.nodes[i].edges {
			if e.twoWay && r.active[e.to] {
				links = append(links, rootLink{NextHop{db.nodes[e.to].id, e.link}, e.to, e.metric})
			}
		}
		slices.SortFunc(links, func(a, b rootLink) int { return compareNextHop(a.NextHop, b.NextHop) })
	}
	if !slices.EqualFunc(links, r.links, func(a, b rootLink) bool { return a.NextHop == b.NextHop }) {
		clear(r.intern)
	}
	r.links = links
	r.words = (len(links) + 63) / 64
	r.hops = resize(r.hops, n*r.words)
	clear(r.hops)
	if r.rootIdx < 0 {
		return
	}

	W := r.words
	r.dist[r.rootIdx] = 0
	r.reach = 1
	r.heap = r.heap[:0]
	for i, l := range links {
		v, d := int(l.to), uint64(l.metric)
		bitsV := r.hops[v*W : (v+1)*W]
		switch {
		case d < r.dist[v]:
			r.dist[v] = d
			clear(bitsV)
			r.push(d, l.to)
		case d > r.dist[v]:
			continue
		}
		// Parallel links of equal metric are all first hops.
		bitsV[i/64] |= 1 << (i % 64)
	}
	for len(r.heap) > 0 {
		it := r.pop()
		u := int(it.n)
		if it.d != r.dist[u] {
			continue // superseded
		}
		r.reach++
		bitsU := r.hops[u*W : (u+1)*W]
		for _, e := range db.nodes[u].edges {
			v := int(e.to)
			if !e.twoWay || !r.active[v] {
				continue
			}
			nd := it.d + uint64(e.metric)
			dv := r.dist[v]
			if nd > dv {
				continue
			}
			bitsV := r.hops[v*W : (v+1)*W]
			if nd < dv {
				r.dist[v] = nd
				copy(bitsV, bitsU)
				r.push(nd, e.to)
			} else {
				// Metrics are at least 1, so every equal-cost predecessor
				// of v is popped before v: its set is final when merged.
				for w := range bitsV {
					bitsV[w] |= bitsU[w]
				}
			}
		}
	}
}

func resize[T any](s []T, n int) []T {
	if cap(s) < n {
		return make([]T, n)
	}
	return s[:n]
}

// heapItem is a tentative distance. The heap holds several items for a node
// whose distance dropped; the stale ones are skipped when popped. A node's
// equal-cost discoveries push it once, at the first.
type heapItem struct {
	d uint64
	n int32
}

func (r *RIB) push(d uint64, n int32) {
	h := append(r.heap, heapItem{d, n})
	i := len(h) - 1
	for i > 0 {
		p := (i - 1) / 2
		if h[p].d <= d {
			break
		}
		h[i] = h[p]
		i = p
	}
	h[i] = heapItem{d, n}
	r.heap = h
}

func (r *RIB) pop() heapItem {
	h := r.heap
	top := h[0]
	last := h[len(h)-1]
	h = h[:len(h)-1]
	i := 0
	for {
		c := 2*i + 1
		if c >= len(h) {
			break
		}
		if c+1 < len(h) && h[c+1].d < h[c].d {
			c++
		}
		if last.d <= h[c].d {
			break
		}
		h[i] = h[c]
		i = c
	}
	if len(h) > 0 {
		h[i] = last
	}
	r.heap = h
	return top
}

// TreeNode is one node of the shortest-path tree.
type TreeNode struct {
	Node      NodeID
	Distance  uint64
	FirstHops []NextHop // empty for the root
}

// Tree returns the shortest-path tree of the last full computation, sorted
// by node: for inspection (gNMI, tests). It is meaningful until the LSDB's
// topology changes.
func (r *RIB) Tree() []TreeNode {
	if !r.valid {
		return nil
	}
	var out []TreeNode
	for i, d := range r.dist {
		if d == inf || r.db.nodes[i] == nil {
			continue
		}
		t := TreeNode{Node: r.db.nodes[i].id, Distance: d}
		if int32(i) != r.rootIdx {
			t.FirstHops = r.hopsOf(int32(i))
		}
		out = append(out, t)
	}
	slices.SortFunc(out, func(a, b TreeNode) int { return strings.Compare(string(a.Node), string(b.Node)) })
	return out
}
