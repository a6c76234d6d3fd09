// Package scsctest is a simulated fabric of fake DMSC agents for testing and
// measuring SCSC: every node is a real gnmi.Target on 127.0.0.1 that
// publishes what docs/telemetry.md says an agent publishes (LSDB, neighbours,
// interfaces, probe results) and accepts policies by Set, validating them as
// an agent would and honouring their ttl_ms. Probe results follow the
// simulated forwarding: SPF by link metrics, overridden by the policies the
// nodes hold, so a policy SCSC pushes changes what the probes measure next.
package scsctest

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math"
	"net"
	"slices"
	"strconv"
	"sync"
	"time"

	gpb "github.com/openconfig/gnmi/proto/gnmi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/dmsc-mesh/dmsc/gnmi"
	"github.com/dmsc-mesh/dmsc/scsc"
	"github.com/dmsc-mesh/dmsc/wire"
)

// Spec describes a fabric.
type Spec struct {
	Nodes    []NodeSpec
	Links    []LinkSpec
	Services []ServiceSpec
}

// NodeSpec is one switch and its agent.
type NodeSpec struct {
	Name string
	SG   bool
	// Probes lists the services an SG probes; nil: every service it does
	// not host (as an SG without probe.targets does).
	Probes []string
	// NoLSDB keeps the node from publishing the LSDB (to keep large
	// fabrics light: SCSC follows only a few agents' LSDBs).
	NoLSDB bool
}

// LinkSpec is a link between two nodes, the same in both directions unless
// the *BA fields are set.
type LinkSpec struct {
	A, B         string
	PortA, PortB uint32 // 0: the next free port
	Metric       uint32 // 0: 10
	CapacityBps  uint64
	Delay        time.Duration
	Jitter       time.Duration
	Loss         float64
	// Utilization is the load A → B (and B → A unless UtilizationBA is
	// set), in bit/s.
	Utilization   uint64
	UtilizationBA uint64
}

// ServiceSpec is a service and the SGs hosting its instances.
type ServiceSpec struct {
	Name string
	// Hosts maps an SG to the instance ids it hosts.
	Hosts map[string][]uint32
}

// SetRecord is one Set operation an agent accepted or refused.
type SetRecord struct {
	Time   time.Time
	Node   string
	ID     string
	Delete bool
	Doc    scsc.PolicyDoc // of a set
	Err    error          // nil: applied
}

// Options tune a fabric.
type Options struct {
	// Interval is how often every agent re-publishes its telemetry with a
	// fresh timestamp (default 50 ms).
	Interval time.Duration
	// MinSampleInterval of the targets (default gnmi's 100 ms).
	MinSampleInterval time.Duration
	Logger            *slog.Logger
	// Quiet skips the per-node history of Sets (for large benchmarks).
	Quiet bool
	// StaticProbes publishes probe results of about 1 ms without simulating
	// the forwarding (which costs a shortest-path computation per probe):
	// for measuring SCSC against large fabrics.
	StaticProbes bool
}

type link struct {
	spec         LinkSpec
	up           bool
	delay        [2]time.Duration // A→B, B→A
	jitter       [2]time.Duration
	utilization  [2]uint64
	loss         float64
	capacity     uint64
	metric       uint32
	portA, portB uint32
}

type heldPolicy struct {
	doc     scsc.PolicyDoc
	expires time.Time
}

type node struct {
	spec    NodeSpec
	idx     int
	target  *gnmi.Target
	lis     net.Listener
	ports   map[uint32]*link // port → link
	refuse  error
	held    map[string]heldPolicy
	records []SetRecord
	stopped bool
}

// Fabric is a running simulated fabric. Its methods are safe for concurrent
// use.
type Fabric struct {
	opts  Options
	log   *slog.Logger
	mu    sync.Mutex
	nodes []*node
	byN   map[string]*node
	links []*link
	svcs  []svc
	// instanceDelay adds to the delay of probes of one instance.
	instanceDelay map[instKey]time.Duration
	published     bool // the LSDB has been published at least once
	lsdbDirty     bool

	cancel context.CancelFunc
	wg     sync.WaitGroup
}

type svc struct {
	name  string
	key   wire.Key
	plen  int
	hosts map[string][]uint32
}

type instKey struct {
	service  string
	instance uint32
}

// New builds the fabric and starts its agents on 127.0.0.1 and its
// publisher; Close stops them.
func New(spec Spec, opts Options) (*Fabric, error) {
	if opts.Interval <= 0 {
		opts.Interval = 50 * time.Millisecond
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	f := &Fabric{opts: opts, log: opts.Logger, byN: map[string]*node{}, instanceDelay: map[instKey]time.Duration{}, lsdbDirty: true}
	for i, ns := range spec.Nodes {
		if _, dup := f.byN[ns.Name]; dup {
			return nil, fmt.Errorf("scsctest: node %s twice", ns.Name)
		}
		n := &node{spec: ns, idx: i, ports: map[uint32]*link{}, held: map[string]heldPolicy{}}
		f.nodes = append(f.nodes, n)
		f.byN[ns.Name] = n
	}
	nextPort := map[string]uint32{}
	for _, ls := range spec.Links {
		a, b := f.byN[ls.A], f.byN[ls.B]
		if a == nil || b == nil || a == b {
			return nil, fmt.Errorf("scsctest: link %s-%s: unknown or same nodes", ls.A, ls.B)
		}
		l := &link{spec: ls, up: true, loss: ls.Loss, capacity: ls.CapacityBps, metric: cmp.Or(ls.Metric, 10)}
		l.delay = [2]time.Duration{ls.Delay, ls.Delay}
		l.jitter = [2]time.Duration{ls.Jitter, ls.Jitter}
		l.utilization = [2]uint64{ls.Utilization, cmp.Or(ls.UtilizationBA, ls.Utilization)}
		pick := func(n *node, want uint32) (uint32, error) {
			if want == 0 {
				nextPort[n.spec.Name]++
				want = nextPort[n.spec.Name]
				for n.ports[want] != nil {
					want++
				}
				nextPort[n.spec.Name] = want
			}
			if n.ports[want] != nil {
				return 0, fmt.Errorf("scsctest: %s port %d used twice", n.spec.Name, want)
			}
			n.ports[want] = l
			return want, nil
		}
		var err error
		if l.portA, err = pick(a, ls.PortA); err != nil {
			return nil, err
		}
		if l.portB, err = pick(b, ls.PortB); err != nil {
			return nil, err
		}
		f.links = append(f.links, l)
	}
	for _, ss := range spec.Services {
		n, err := wire.ParseName(ss.Name)
		if err != nil {
			return nil, fmt.Errorf("scsctest: service %q: %w", ss.Name, err)
		}
		for h := range ss.Hosts {
			if f.byN[h] == nil {
				return nil, fmt.Errorf("scsctest: service %s: unknown host %s", ss.Name, h)
			}
		}
		f.svcs = append(f.svcs, svc{name: n.String(), key: wire.KeyOf(n), plen: n.PrefixLen(), hosts: ss.Hosts})
	}
	for _, n := range f.nodes {
		t, err := gnmi.NewTarget(gnmi.TargetOptions{Name: n.spec.Name, Logger: f.log, Setter: &setter{f: f, n: n},
			MinSampleInterval: opts.MinSampleInterval})
		if err != nil {
			f.Close()
			return nil, err
		}
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			f.Close()
			return nil, err
		}
		n.target, n.lis = t, lis
		f.wg.Go(func() { t.Serve(lis) }) //nolint:errcheck // ends at Close
	}
	f.publish(time.Now())
	ctx, cancel := context.WithCancel(context.Background())
	f.cancel = cancel
	f.wg.Go(func() { f.publisher(ctx) })
	return f, nil
}

// Close stops the publisher and every agent.
func (f *Fabric) Close() {
	if f.cancel != nil {
		f.cancel()
	}
	for _, n := range f.nodes {
		if n.target != nil {
			n.target.Close()
		}
	}
	f.wg.Wait()
}

// Agents is SCSC's agents list for the fabric.
func (f *Fabric) Agents() []scsc.AgentConfig {
	out := make([]scsc.AgentConfig, len(f.nodes))
	for i, n := range f.nodes {
		out[i] = scsc.AgentConfig{Name: n.spec.Name, Addr: n.lis.Addr().String()}
	}
	return out
}

// Target is a node's gNMI target.
func (f *Fabric) Target(node string) *gnmi.Target { return f.byN[node].target }

// StopAgent closes one agent's target (it vanishes from SCSC's view).
func (f *Fabric) StopAgent(node string) {
	f.mu.Lock()
	n := f.byN[node]
	n.stopped = true
	f.mu.Unlock()
	n.target.Close()
}

func (f *Fabric) linkOf(a, b string) (*link, int) {
	for _, l := range f.links {
		switch {
		case l.spec.A == a && l.spec.B == b:
			return l, 0
		case l.spec.A == b && l.spec.B == a:
			return l, 1
		}
	}
	panic(fmt.Sprintf("scsctest: no link %s-%s", a, b)) // a test's own mistake
}

// SetDelay sets the delay of the link a-b in both directions.
func (f *Fabric) SetDelay(a, b string, d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	l, _ := f.linkOf(a, b)
	l.delay = [2]time.Duration{d, d}
}

// SetUtilization sets the load a → b in bit/s.
func (f *Fabric) SetUtilization(a, b string, bps uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	l, dir := f.linkOf(a, b)
	l.utilization[dir] = bps
}

// SetLinkUp brings the link a-b up or down (its adjacency leaves the LSDB).
func (f *Fabric) SetLinkUp(a, b string, up bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	l, _ := f.linkOf(a, b)
	l.up = up
	f.lsdbDirty = true
}

// SetInstanceDelay adds d to the probes of one instance (a slow pod).
func (f *Fabric) SetInstanceDelay(service string, instance uint32, d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.instanceDelay[instKey{service, instance}] = d
}

// Refuse makes a node refuse every Set with err (nil: accept again).
func (f *Fabric) Refuse(node string, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.byN[node].refuse = err
}

// Policies returns the policies a node holds now (expired ones dropped).
func (f *Fabric) Policies(node string) map[string]scsc.PolicyDoc {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.livePolicies(f.byN[node], time.Now())
}

func (f *Fabric) livePolicies(n *node, now time.Time) map[string]scsc.PolicyDoc {
	out := map[string]scsc.PolicyDoc{}
	for id, h := range n.held {
		if now.Before(h.expires) {
			out[id] = h.doc
		}
	}
	return out
}

// Records returns every node's Set history, oldest first.
func (f *Fabric) Records() []SetRecord {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []SetRecord
	for _, n := range f.nodes {
		out = append(out, n.records...)
	}
	slices.SortStableFunc(out, func(a, b SetRecord) int { return a.Time.Compare(b.Time) })
	return out
}

// PolicyIDs lists, per node, the ids of the policies it holds now.
func (f *Fabric) PolicyIDs() map[string][]string {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[string][]string{}
	now := time.Now()
	for _, n := range f.nodes {
		for id := range f.livePolicies(n, now) {
			out[n.spec.Name] = append(out[n.spec.Name], id)
		}
		slices.Sort(out[n.spec.Name])
	}
	return out
}

func (f *Fabric) publisher(ctx context.Context) {
	t := time.NewTicker(f.opts.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			f.publish(now)
		}
	}
}

// publish re-publishes every agent's telemetry, stamped now.
func (f *Fabric) publish(now time.Time) {
	f.mu.Lock()
	type pub struct {
		t      *gnmi.Target
		leaves []gnmi.Leaf
		del    []*gpb.Path
	}
	var pubs []pub
	lsdb, lsdbDel := f.lsdbLeaves(now)
	for _, n := range f.nodes {
		if n.stopped {
			continue
		}
		var leaves []gnmi.Leaf
		if !n.spec.NoLSDB && (f.lsdbDirty || !f.published) {
			leaves = append(leaves, lsdb...)
		}
		leaves = append(leaves, f.neighborLeaves(n)...)
		leaves = append(leaves, f.probeLeaves(n, now)...)
		leaves = append(leaves, f.policyLeaves(n, now)...)
		var del []*gpb.Path
		if !n.spec.NoLSDB {
			del = lsdbDel
		}
		for id, h := range n.held {
			if !now.Before(h.expires) {
				delete(n.held, id)
				del = append(del, gnmi.PolicyPath(id))
			}
		}
		pubs = append(pubs, pub{n.target, leaves, del})
	}
	f.published, f.lsdbDirty = true, false
	f.mu.Unlock()
	for _, p := range pubs {
		if len(p.del) > 0 {
			p.t.Delete(now, p.del...) //nolint:errcheck // paths are the fabric's own
		}
		if err := p.t.Update(now, p.leaves...); err != nil {
			f.log.Error("scsctest: publish", "err", err)
		}
	}
}

// adjacencies of a node as its LSP lists them.
type lspAdj struct {
	Neighbor string `json:"neighbor"`
	Metric   uint32 `json:"metric"`
	Link     uint32 `json:"link"`
}

type lspPrefix struct {
	Prefix string `json:"prefix"`
	Metric uint32 `json:"metric"`
}

func (f *Fabric) lsdbLeaves(now time.Time) ([]gnmi.Leaf, []*gpb.Path) {
	var leaves []gnmi.Leaf
	for _, n := range f.nodes {
		var adj []lspAdj
		ports := make([]uint32, 0, len(n.ports))
		for p := range n.ports {
			ports = append(ports, p)
		}
		slices.Sort(ports)
		for _, p := range ports {
			l := n.ports[p]
			if !l.up {
				continue
			}
			other := l.spec.B
			if l.spec.B == n.spec.Name {
				other = l.spec.A
			}
			adj = append(adj, lspAdj{Neighbor: other, Metric: l.metric, Link: p})
		}
		var pfx []lspPrefix
		for _, s := range f.svcs {
			ids, ok := s.hosts[n.spec.Name]
			if !ok {
				continue
			}
			pfx = append(pfx, lspPrefix{Prefix: gnmi.RouteKey(s.key, s.plen), Metric: 0})
			for _, id := range ids {
				pfx = append(pfx, lspPrefix{Prefix: gnmi.RouteKey(s.key.WithInstance(id), 128)})
			}
		}
		origin := n.spec.Name
		leaves = append(leaves,
			gnmi.Leaf{Path: gnmi.LSPStatePath(origin, 0, gnmi.LSPSeq), Value: uint64(1)},
			gnmi.Leaf{Path: gnmi.LSPStatePath(origin, 0, gnmi.LSPRemainingLifetime), Value: uint64(1200)},
			gnmi.Leaf{Path: gnmi.LSPStatePath(origin, 0, gnmi.LSPAdjacencies), Value: mustJSON(adj)},
			gnmi.Leaf{Path: gnmi.LSPStatePath(origin, 0, gnmi.LSPPrefixes), Value: mustJSON(pfx)},
		)
	}
	leaves = append(leaves,
		gnmi.Leaf{Path: gnmi.LSDBStatePath(gnmi.LSDBNodes), Value: uint64(len(f.nodes))},
		gnmi.Leaf{Path: gnmi.LSDBStatePath(gnmi.LSDBFragments), Value: uint64(len(f.nodes))})
	return leaves, nil
}

func (f *Fabric) neighborLeaves(n *node) []gnmi.Leaf {
	var leaves []gnmi.Leaf
	for p, l := range n.ports {
		dir, other, otherPort := 0, l.spec.B, l.portB
		if l.spec.B == n.spec.Name {
			dir, other, otherPort = 1, l.spec.A, l.portA
		}
		state, oper := "UP", gnmi.OperUp
		if !l.up {
			state, oper = "DOWN", gnmi.OperDown
		}
		leaves = append(leaves,
			gnmi.Leaf{Path: gnmi.NeighborStatePath(p, gnmi.NeighborID), Value: other},
			gnmi.Leaf{Path: gnmi.NeighborStatePath(p, gnmi.NeighborPort), Value: uint64(otherPort)},
			gnmi.Leaf{Path: gnmi.NeighborStatePath(p, gnmi.NeighborMetric), Value: uint64(l.metric)},
			gnmi.Leaf{Path: gnmi.NeighborStatePath(p, gnmi.NeighborCapacityBps), Value: l.capacity},
			gnmi.Leaf{Path: gnmi.NeighborStatePath(p, gnmi.NeighborState), Value: state},
			gnmi.Leaf{Path: gnmi.NeighborStatePath(p, gnmi.NeighborDelayNs), Value: uint64(l.delay[dir])},
			gnmi.Leaf{Path: gnmi.NeighborStatePath(p, gnmi.NeighborJitterNs), Value: uint64(l.jitter[dir])},
			gnmi.Leaf{Path: gnmi.NeighborStatePath(p, gnmi.NeighborLoss), Value: l.loss},
			gnmi.Leaf{Path: gnmi.NeighborStatePath(p, gnmi.NeighborUtilizationBps), Value: l.utilization[dir]},
			gnmi.Leaf{Path: gnmi.InterfaceOperStatusPath(p), Value: oper},
		)
	}
	return leaves
}

func (f *Fabric) policyLeaves(n *node, now time.Time) []gnmi.Leaf {
	var leaves []gnmi.Leaf
	for id, h := range n.held {
		if now.Before(h.expires) {
			leaves = append(leaves,
				gnmi.Leaf{Path: gnmi.PolicyConfigPath(id), Value: mustJSON(h.doc)},
				gnmi.Leaf{Path: gnmi.PolicyStatePath(id, gnmi.PolicyApplied), Value: true},
				gnmi.Leaf{Path: gnmi.PolicyStatePath(id, gnmi.PolicyExpires), Value: h.expires.UnixNano()})
		}
	}
	return leaves
}

func (f *Fabric) probeLeaves(n *node, now time.Time) []gnmi.Leaf {
	if !n.spec.SG {
		return nil
	}
	var leaves []gnmi.Leaf
	add := func(target string, inst uint32, r result) {
		leaves = append(leaves,
			gnmi.Leaf{Path: gnmi.ProbeStatePath(target, inst, gnmi.ProbeDelayNs), Value: uint64(r.delay)},
			gnmi.Leaf{Path: gnmi.ProbeStatePath(target, inst, gnmi.ProbeJitterNs), Value: uint64(r.jitter)},
			gnmi.Leaf{Path: gnmi.ProbeStatePath(target, inst, gnmi.ProbeLoss), Value: r.loss},
			gnmi.Leaf{Path: gnmi.ProbeStatePath(target, inst, gnmi.ProbeBandwidthBps), Value: r.bandwidth})
	}
	for _, s := range f.svcs {
		if _, local := s.hosts[n.spec.Name]; local {
			continue
		}
		if n.spec.Probes != nil && !slices.Contains(n.spec.Probes, s.name) {
			continue
		}
		probe := func(inst uint32) result {
			if f.opts.StaticProbes {
				// Varies with time so that every sample carries a new value.
				return result{delay: time.Millisecond + time.Duration(now.UnixNano()%1000), jitter: 100 * time.Microsecond, bandwidth: 1e9}
			}
			return f.forward(n, s, inst, now)
		}
		add(s.name, 0, probe(0))
		for _, host := range sortedKeys(s.hosts) {
			for _, id := range s.hosts[host] {
				r := probe(id)
				r.delay += f.instanceDelay[instKey{s.name, id}]
				add(s.name, id, r)
			}
		}
	}
	return leaves
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// result is what a probe along the simulated forwarding measures.
type result struct {
	delay, jitter time.Duration
	loss          float64
	bandwidth     uint64
	path          []string
}

// Forwarding returns the path a packet from node takes to a service (or
// one instance of it) under the policies the nodes hold now.
func (f *Fabric) Forwarding(from, service string, instance uint32) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, s := range f.svcs {
		if s.name == service {
			return f.forward(f.byN[from], s, instance, time.Now()).path
		}
	}
	return nil
}

// forward follows the simulated forwarding from n to s (instance 0: any
// host) and sums what the links on the way add.
func (f *Fabric) forward(n *node, s svc, instance uint32, now time.Time) result {
	var dests []string
	for h, ids := range s.hosts {
		if instance == 0 || slices.Contains(ids, instance) {
			dests = append(dests, h)
		}
	}
	dist := f.spfTo(dests)
	r := result{bandwidth: math.MaxUint64, path: []string{n.spec.Name}}
	delivered := 1.0
	seen := map[string]bool{n.spec.Name: true}
	cur := n
	for !slices.Contains(dests, cur.spec.Name) || f.policyNext(cur, s, instance, now) != "" {
		next := f.policyNext(cur, s, instance, now)
		if next == "" {
			next = f.spfNext(cur, dist)
		}
		if next == "" || seen[next] {
			// A blackhole or a loop: the probes are lost.
			return result{delay: 0, loss: 1, path: append(r.path, next)}
		}
		l, dir := f.linkOf(cur.spec.Name, next)
		r.delay += l.delay[dir]
		r.jitter += l.jitter[dir]
		delivered *= 1 - l.loss
		if l.capacity > 0 {
			r.bandwidth = min(r.bandwidth, l.capacity-min(l.capacity, l.utilization[dir]))
		}
		seen[next] = true
		r.path = append(r.path, next)
		cur = f.byN[next]
	}
	r.loss = 1 - delivered
	if r.bandwidth == math.MaxUint64 {
		r.bandwidth = 0
	}
	return r
}

// policyNext is the successor a node's policies give for s (the policy
// covers the service and, if its path ends where the instance is, the
// instance key), "" if none applies.
func (f *Fabric) policyNext(n *node, s svc, instance uint32, now time.Time) string {
	ids := make([]string, 0, len(n.held))
	for id := range n.held {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		h := n.held[id]
		if h.doc.Service != s.name || len(h.doc.Path) == 0 || !now.Before(h.expires) {
			continue
		}
		last := h.doc.Path[len(h.doc.Path)-1]
		if instance != 0 && !slices.Contains(s.hosts[last], instance) {
			continue
		}
		i := slices.Index(h.doc.Path, n.spec.Name)
		if i < 0 || i+1 >= len(h.doc.Path) {
			continue
		}
		next := h.doc.Path[i+1]
		if l, _ := f.linkOf(n.spec.Name, next); l.up {
			return next
		}
	}
	return ""
}

// spfTo is every node's metric distance to the nearest of dests.
func (f *Fabric) spfTo(dests []string) map[string]uint64 {
	dist := map[string]uint64{}
	for _, d := range dests {
		dist[d] = 0
	}
	// Bellman-Ford: the fabrics of the tests are small.
	for changed := true; changed; {
		changed = false
		for _, l := range f.links {
			if !l.up {
				continue
			}
			for _, e := range [][2]string{{l.spec.A, l.spec.B}, {l.spec.B, l.spec.A}} {
				if d, ok := dist[e[1]]; ok {
					if old, ok := dist[e[0]]; !ok || d+uint64(l.metric) < old {
						dist[e[0]] = d + uint64(l.metric)
						changed = true
					}
				}
			}
		}
	}
	return dist
}

func (f *Fabric) spfNext(n *node, dist map[string]uint64) string {
	best, bestD := "", uint64(math.MaxUint64)
	for _, l := range f.links {
		if !l.up {
			continue
		}
		var other string
		switch n.spec.Name {
		case l.spec.A:
			other = l.spec.B
		case l.spec.B:
			other = l.spec.A
		default:
			continue
		}
		if d, ok := dist[other]; ok && d+uint64(l.metric) == dist[n.spec.Name] && (d < bestD || (d == bestD && other < best)) {
			best, bestD = other, d
		}
	}
	return best
}

// setter is a fake agent's policy Setter: it checks a policy the way
// docs/telemetry.md says an agent does.
type setter struct {
	f *Fabric
	n *node
}

func (s *setter) Writable(p *gpb.Path) bool { return gnmi.Match(gnmi.PolicyConfigPattern(), p) }

func (s *setter) Set(_ context.Context, ops []gnmi.SetOp) error {
	f := s.f
	f.mu.Lock()
	defer f.mu.Unlock()
	now := time.Now()
	rec := func(r SetRecord) {
		if !f.opts.Quiet {
			s.n.records = append(s.n.records, r)
		}
	}
	if s.n.refuse != nil {
		for _, op := range ops {
			rec(SetRecord{Time: now, Node: s.n.spec.Name, ID: policyID(op.Path), Delete: op.Op == gpb.UpdateResult_DELETE, Err: s.n.refuse})
		}
		return s.n.refuse
	}
	type change struct {
		id  string
		del bool
		doc scsc.PolicyDoc
	}
	var changes []change
	for _, op := range ops {
		id := policyID(op.Path)
		if op.Op == gpb.UpdateResult_DELETE {
			changes = append(changes, change{id: id, del: true})
			continue
		}
		j, ok := op.Value.(gnmi.JSON)
		if !ok {
			return status.Errorf(codes.InvalidArgument, "policy %s: want a JSON object", id)
		}
		doc, err := scsc.ParsePolicyDoc(j)
		if err == nil {
			err = f.check(s.n, doc)
		}
		if err != nil {
			rec(SetRecord{Time: now, Node: s.n.spec.Name, ID: id, Doc: doc, Err: err})
			return err
		}
		changes = append(changes, change{id: id, doc: doc})
	}
	for _, c := range changes {
		if c.del {
			if c.id == gnmi.AnyKey {
				clear(s.n.held)
			} else {
				delete(s.n.held, c.id)
			}
			rec(SetRecord{Time: now, Node: s.n.spec.Name, ID: c.id, Delete: true})
			continue
		}
		s.n.held[c.id] = heldPolicy{doc: c.doc, expires: now.Add(time.Duration(c.doc.TTLms) * time.Millisecond)}
		rec(SetRecord{Time: now, Node: s.n.spec.Name, ID: c.id, Doc: c.doc})
	}
	return nil
}

func policyID(p *gpb.Path) string {
	el := p.GetElem()
	if len(el) >= 3 {
		return el[2].GetKey()["id"]
	}
	return ""
}

// check validates a policy at node n: INVALID_ARGUMENT for a bad service, a
// non-simple path, an unknown node; FAILED_PRECONDITION when n is not on
// the path or its successor is not an up adjacency; a path must end at an
// SG that hosts the service. At the path's last node (the egress) the path
// steers nothing and is accepted. A weights policy must reach an SG that
// hosts the instances.
func (f *Fabric) check(n *node, d scsc.PolicyDoc) error {
	name, err := wire.ParseName(d.Service)
	if err != nil {
		return status.Errorf(codes.InvalidArgument, "service: %v", err)
	}
	var s *svc
	for i := range f.svcs {
		if f.svcs[i].name == name.String() {
			s = &f.svcs[i]
		}
	}
	if len(d.Path) > 0 {
		seen := map[string]bool{}
		for _, p := range d.Path {
			if seen[p] {
				return status.Errorf(codes.InvalidArgument, "path: %s twice: not a simple path", p)
			}
			seen[p] = true
			if f.byN[p] == nil {
				return status.Errorf(codes.InvalidArgument, "path: %s is not in the LSDB", p)
			}
		}
		last := d.Path[len(d.Path)-1]
		if s == nil || s.hosts[last] == nil || !f.byN[last].spec.SG {
			return status.Errorf(codes.InvalidArgument, "path: it ends at %s, which does not host %s", last, d.Service)
		}
		i := slices.Index(d.Path, n.spec.Name)
		if i < 0 {
			return status.Errorf(codes.FailedPrecondition, "path: %s is not on it", n.spec.Name)
		}
		if i+1 < len(d.Path) {
			next := d.Path[i+1]
			up := false
			for _, l := range f.links {
				if l.up && ((l.spec.A == n.spec.Name && l.spec.B == next) || (l.spec.B == n.spec.Name && l.spec.A == next)) {
					up = true
				}
			}
			if !up {
				return status.Errorf(codes.FailedPrecondition, "path: successor %s is not an up adjacency of %s", next, n.spec.Name)
			}
		}
	}
	if len(d.InstanceWeights) > 0 && len(d.Path) == 0 {
		if s == nil || s.hosts[n.spec.Name] == nil {
			return status.Errorf(codes.FailedPrecondition, "instance_weights: %s hosts no instance of %s", n.spec.Name, d.Service)
		}
		for k := range d.InstanceWeights {
			id, _ := strconv.ParseUint(k, 10, 32)
			if !slices.Contains(s.hosts[n.spec.Name], uint32(id)) {
				return status.Errorf(codes.FailedPrecondition, "instance_weights: %s does not host instance %s", n.spec.Name, k)
			}
		}
	}
	return nil
}

func mustJSON(v any) gnmi.JSON {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // the fabric's own types always encode
	}
	return gnmi.JSON(b)
}

// ErrRefused is a handy error for Refuse: UNAVAILABLE, as from an agent
// whose switch is restarting.
var ErrRefused = status.Error(codes.Unavailable, "scsctest: this agent refuses Sets")
