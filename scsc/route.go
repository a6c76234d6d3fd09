package scsc

import (
	"math"
	"slices"
	"time"
)

// Edge costs. A cost is in nanosecond-equivalents: the link's delay plus its
// jitter plus a per-hop constant, scaled up with utilisation (1/(1-u), the
// growth of an M/M/1 queue's sojourn time) and loss.
const (
	// hopCost keeps paths short where links report no delay (an idle local
	// fabric): every hop costs 10 µs.
	hopCost = float64(10 * time.Microsecond)
	// unknownLinkDelay is assumed for a link whose origin's telemetry is
	// unknown: measured links are preferred to unmeasured ones.
	unknownLinkDelay = float64(time.Millisecond)
	// egressMetricCost converts an announced prefix metric into cost.
	egressMetricCost = float64(time.Microsecond)
	// maxUtilization caps u in 1/(1-u); a link above it is as bad as one at it.
	maxUtilization = 0.95
	maxLossFactor  = 0.9
)

// edgeQuality is the measured state of one edge (its worst link, since a
// node forwarding to a neighbour spreads over all links to it).
type edgeQuality struct {
	up        bool
	known     bool    // the origin's telemetry is known
	delay     float64 // ns
	jitter    float64 // ns
	loss      float64
	util      float64 // fraction of capacity, 0 if unknown
	avail     float64 // bit/s; +Inf if unknown
	availKnow bool
	base      float64 // baseCost, computed once per measurement
}

// qualities holds the quality of every edge of a topology, indexed as
// Topology.out.
type qualities [][]edgeQuality

// measure reads the edge qualities of t from the agents' telemetry.
func measure(t *Topology, agents map[string]*AgentTelemetry) qualities {
	q := make(qualities, len(t.out))
	for u, es := range t.out {
		q[u] = make([]edgeQuality, len(es))
		tel := agents[t.nodes[u]]
		for i, e := range es {
			q[u][i] = edgeQualityOf(t, e, tel)
			q[u][i].base = q[u][i].baseCost()
		}
	}
	return q
}

func edgeQualityOf(t *Topology, e Edge, tel *AgentTelemetry) edgeQuality {
	if tel == nil {
		// Unknown origin: the LSDB says the adjacency is two-way, so it is
		// taken as up, at an assumed delay.
		return edgeQuality{up: true, delay: unknownLinkDelay, avail: math.Inf(1)}
	}
	q := edgeQuality{known: true, avail: math.Inf(1)}
	for _, el := range e.Links {
		if tel.Oper[el.Port] == "DOWN" {
			continue
		}
		l := tel.Links[el.Port]
		if l == nil {
			// No neighbour telemetry for the port (not published yet): the
			// LSDB's word that it is up stands, at an assumed delay.
			q.up = true
			q.delay = max(q.delay, unknownLinkDelay)
			continue
		}
		if (l.State != "" && l.State != "UP") || (l.Neighbor != "" && l.Neighbor != t.nodes[e.To]) {
			continue
		}
		q.up = true
		d := unknownLinkDelay
		if l.HasDelay {
			d = float64(l.Delay)
		}
		q.delay = max(q.delay, d)
		q.jitter = max(q.jitter, float64(l.Jitter))
		q.loss = max(q.loss, l.Loss)
		if l.CapacityBps > 0 && l.HasUtilization {
			u := float64(l.UtilizationBps) / float64(l.CapacityBps)
			q.util = max(q.util, u)
			a := max(float64(l.CapacityBps)-float64(l.UtilizationBps), 0)
			q.avail = min(q.avail, a)
			q.availKnow = true
		}
	}
	return q
}

// cost is the QoS cost of an edge for a service needing minBW bit/s
// (+Inf: not usable).
func (q *edgeQuality) cost(minBW uint64) float64 {
	if !q.up {
		return math.Inf(1)
	}
	if minBW > 0 && q.availKnow && q.avail < float64(minBW) {
		return math.Inf(1)
	}
	return q.base
}

// baseCost is the cost of an up edge before the bandwidth check.
func (q *edgeQuality) baseCost() float64 {
	c := q.delay + q.jitter + hopCost
	c /= 1 - min(q.util, maxUtilization)
	c /= 1 - min(q.loss, maxLossFactor)
	return c
}

// PathEstimate is a path's quality as the links' telemetry gives it.
type PathEstimate struct {
	Delay, Jitter time.Duration
	Loss          float64
	// BandwidthBps is the least available bandwidth over the links whose
	// capacity and utilisation are known; HasBandwidth says whether any is.
	BandwidthBps uint64
	HasBandwidth bool
	Cost         float64
}

// spfTree is plain SPF towards one service: dist[u] is u's distance to the
// nearest host (plus its prefix metric), math.MaxUint64 if unreachable.
// Successors are the out-edges on a shortest path, derived from dist.
type spfTree struct {
	dist []uint64
}

const unreachable = math.MaxUint64

// spfToward runs Dijkstra with the links' metrics from the service's hosts
// backwards, the way every agent's SPF routes an anycast service: to the
// host at the least distance plus prefix metric.
func spfToward(t *Topology, hosts []Host) *spfTree {
	n := len(t.nodes)
	dist := make([]uint64, n)
	for i := range dist {
		dist[i] = unreachable
	}
	var h minHeap[uint64]
	for _, host := range hosts {
		if d := uint64(host.Metric); d < dist[host.Node] {
			dist[host.Node] = d
			h.push(d, host.Node)
		}
	}
	for h.len() > 0 {
		d, v := h.pop()
		if d != dist[v] {
			continue
		}
		for _, r := range t.in[v] {
			nd := d + uint64(t.out[r.from][r.pos].Metric)
			if nd < dist[r.from] {
				dist[r.from] = nd
				h.push(nd, r.from)
			}
		}
	}
	return &spfTree{dist: dist}
}

// isHost reports whether u is one of the hosts where SPF ends: a host whose
// own announcement is its distance.
func isHostAt(hosts []Host, u int32, dist uint64) bool {
	for _, h := range hosts {
		if h.Node == u && uint64(h.Metric) == dist {
			return true
		}
	}
	return false
}

// qosTree is QoS-weighted Dijkstra towards one service: cost[u] is the
// least cost from u to a host, next[u] the successor on that path (-1 at a
// host or where unreachable).
type qosTree struct {
	cost []float64
	next []int32
}

// qosToward runs Dijkstra with QoS edge costs backwards from the service's
// hosts. A path from any node is read by following next, so the paths of
// different ingresses to one service never disagree at a shared node
// (forwarding is by destination only).
func qosToward(t *Topology, q qualities, hosts []Host, minBW uint64) *qosTree {
	n := len(t.nodes)
	tr := &qosTree{cost: make([]float64, n), next: make([]int32, n)}
	for i := range tr.cost {
		tr.cost[i] = math.Inf(1)
		tr.next[i] = -1
	}
	var h minHeap[float64]
	for _, host := range hosts {
		if c := float64(host.Metric) * egressMetricCost; c < tr.cost[host.Node] {
			tr.cost[host.Node] = c
			h.push(c, host.Node)
		}
	}
	for h.len() > 0 {
		c, v := h.pop()
		if c != tr.cost[v] {
			continue
		}
		for _, r := range t.in[v] {
			ec := q[r.from][r.pos].cost(minBW)
			if math.IsInf(ec, 1) {
				continue
			}
			nc := c + ec
			u := r.from
			// Ties go to the lower successor index, so the tree does not
			// depend on the order of the heap.
			if nc < tr.cost[u] || (nc == tr.cost[u] && tr.next[u] >= 0 && v < tr.next[u]) {
				tr.cost[u] = nc
				tr.next[u] = v
				h.push(nc, u)
			}
		}
	}
	return tr
}

// path follows the tree from u; nil if u cannot reach a host.
func (tr *qosTree) path(u int32) []int32 {
	if math.IsInf(tr.cost[u], 1) {
		return nil
	}
	p := []int32{u}
	for tr.next[u] >= 0 {
		u = tr.next[u]
		p = append(p, u)
		if len(p) > len(tr.cost) {
			return nil // cannot happen with positive costs; never loop
		}
	}
	return p
}

// estimate computes a path's quality from the edge qualities, and its cost
// for a service needing minBW (+Inf if an edge is unusable or missing).
func estimate(t *Topology, q qualities, hosts []Host, path []int32, minBW uint64) PathEstimate {
	var est PathEstimate
	if len(path) == 0 {
		est.Cost = math.Inf(1)
		return est
	}
	delivered := 1.0
	avail := math.Inf(1)
	for i := 0; i+1 < len(path); i++ {
		u, v := path[i], path[i+1]
		pos, ok := edgePos(t, u, v)
		if !ok {
			est.Cost = math.Inf(1)
			return est
		}
		eq := &q[u][pos]
		est.Cost += eq.cost(minBW)
		est.Delay += time.Duration(eq.delay)
		est.Jitter += time.Duration(eq.jitter)
		delivered *= 1 - eq.loss
		if eq.availKnow {
			avail = min(avail, eq.avail)
			est.HasBandwidth = true
		}
	}
	last := path[len(path)-1]
	hostIdx := slices.IndexFunc(hosts, func(h Host) bool { return h.Node == last })
	if hostIdx < 0 {
		est.Cost = math.Inf(1)
	} else {
		est.Cost += float64(hosts[hostIdx].Metric) * egressMetricCost
	}
	est.Loss = 1 - delivered
	if est.HasBandwidth {
		est.BandwidthBps = uint64(avail)
	}
	return est
}

func edgePos(t *Topology, u, v int32) (int, bool) {
	es := t.out[u]
	for i := range es {
		if es[i].To == v {
			return i, true
		}
	}
	return 0, false
}

// worstSPFPath is the SPF path from g (one of its equal-cost paths) with the
// highest QoS cost, and the number of equal-cost paths it chose from (capped).
// Traffic of a service spreads over all of them by flow hash, so the worst
// one is what some of it suffers. nil if g cannot reach the service.
func worstSPFPath(t *Topology, q qualities, spf *spfTree, hosts []Host, g int32, minBW uint64) (path []int32, paths int) {
	if spf.dist[g] == unreachable {
		return nil, 0
	}
	type memo struct {
		cost  float64
		next  int32
		paths int
	}
	seen := map[int32]*memo{}
	var walk func(u int32, depth int) *memo
	walk = func(u int32, depth int) *memo {
		if m, ok := seen[u]; ok {
			return m
		}
		m := &memo{next: -1}
		seen[u] = m
		if isHostAt(hosts, u, spf.dist[u]) || depth > len(t.nodes) {
			m.paths = 1
			return m
		}
		m.cost = -1
		for i, e := range t.out[u] {
			if spf.dist[e.To] == unreachable || spf.dist[e.To]+uint64(e.Metric) != spf.dist[u] {
				continue
			}
			sub := walk(e.To, depth+1)
			c := q[u][i].cost(minBW) + sub.cost
			m.paths = min(m.paths+sub.paths, 1<<20)
			if c > m.cost || (c == m.cost && m.next >= 0 && e.To < m.next) {
				m.cost, m.next = c, e.To
			}
		}
		if m.next < 0 {
			m.cost = math.Inf(1)
		}
		return m
	}
	root := walk(g, 0)
	if root.next < 0 && !isHostAt(hosts, g, spf.dist[g]) {
		return nil, 0
	}
	path = []int32{g}
	for u := g; seen[u] != nil && seen[u].next >= 0; {
		u = seen[u].next
		path = append(path, u)
		if len(path) > len(t.nodes) {
			return nil, 0
		}
	}
	return path, root.paths
}

// onSPF reports whether path is one of the SPF paths (every hop on a
// shortest path, ending at a host where SPF ends).
func onSPF(t *Topology, spf *spfTree, hosts []Host, path []int32) bool {
	for i := 0; i+1 < len(path); i++ {
		u, v := path[i], path[i+1]
		pos, ok := edgePos(t, u, v)
		if !ok || spf.dist[v] == unreachable || spf.dist[v]+uint64(t.out[u][pos].Metric) != spf.dist[u] {
			return false
		}
	}
	last := path[len(path)-1]
	return isHostAt(hosts, last, spf.dist[last])
}

// isSimple reports whether path visits no node twice.
func isSimple(path []int32) bool {
	seen := make(map[int32]bool, len(path))
	for _, u := range path {
		if seen[u] {
			return false
		}
		seen[u] = true
	}
	return true
}

// minHeap is a binary heap of (priority, node), smallest first; ties by
// node, so that pops are deterministic.
type minHeap[P int | uint64 | float64] struct {
	pri  []P
	node []int32
}

func (h *minHeap[P]) len() int { return len(h.pri) }

func (h *minHeap[P]) less(i, j int) bool {
	return h.pri[i] < h.pri[j] || (h.pri[i] == h.pri[j] && h.node[i] < h.node[j])
}

func (h *minHeap[P]) swap(i, j int) {
	h.pri[i], h.pri[j] = h.pri[j], h.pri[i]
	h.node[i], h.node[j] = h.node[j], h.node[i]
}

func (h *minHeap[P]) push(p P, n int32) {
	h.pri = append(h.pri, p)
	h.node = append(h.node, n)
	for i := len(h.pri) - 1; i > 0; {
		parent := (i - 1) / 2
		if !h.less(i, parent) {
			break
		}
		h.swap(i, parent)
		i = parent
	}
}

func (h *minHeap[P]) pop() (P, int32) {
	p, n := h.pri[0], h.node[0]
	last := len(h.pri) - 1
	h.swap(0, last)
	h.pri, h.node = h.pri[:last], h.node[:last]
	for i := 0; ; {
		l, r, m := 2*i+1, 2*i+2, i
		if l < last && h.less(l, m) {
			m = l
		}
		if r < last && h.less(r, m) {
			m = r
		}
		if m == i {
			break
		}
		h.swap(i, m)
		i = m
	}
	return p, n
}
