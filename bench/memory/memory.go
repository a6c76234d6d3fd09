// Package memory measures the memory of one agent holding 100k service
// prefixes (issue 3, target < 200 MB):
//
//   - AgentMemory: a real agent on its software switch, fed by an emulated
//     neighbour (harness.Neighbor) that floods it the LSPs of 1,000 origins
//     announcing 100 /64 prefixes each. The agent verifies, stores, computes
//     and programs them all; its heap is what the process holds with the
//     agent running minus what it holds once the agent is stopped (the
//     switch keeps its tables, as after a crash).
//   - DataModel: the same LSPs through the agent's own data structures
//     without the agent (spf.LSDB, spf.RIB, the desired fib.Routes and the
//     fib.Programmer), each measured on its own.
//   - FixedOverhead: what one agent costs with no prefixes beyond the node
//     keys, in a 3-node line.
//
// Run it with
//
//	go test -run '^$' -bench . -benchtime 1x ./bench/memory
package memory

import (
	"cmp"
	"context"
	"crypto/ed25519"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"runtime/metrics"
	"slices"
	"time"

	"github.com/dmsc-mesh/dmsc/bench/internal/harness"
	"github.com/dmsc-mesh/dmsc/controller"
	"github.com/dmsc-mesh/dmsc/controller/fib"
	"github.com/dmsc-mesh/dmsc/controller/lsmsg"
	"github.com/dmsc-mesh/dmsc/p4"
	"github.com/dmsc-mesh/dmsc/spf"
	"github.com/dmsc-mesh/dmsc/topo"
)

// World is an emulated network behind one port of the measured agent: a
// hub (the agent's neighbour) linked to every origin, each origin
// announcing its node key and its share of the service prefixes, as the
// sealed LSP fragments its agent would flood.
type World struct {
	Agent     spf.NodeID
	AgentPort uint32
	Hub       spf.NodeID
	Origins   []spf.NodeID
	// Prefixes is the number of service prefixes in all.
	Prefixes int
	LSPs     []spf.LSP
	keys     map[spf.NodeID]ed25519.PublicKey
}

// Routes is how many routes the agent has once it holds the world: the
// service prefixes, a node key per origin, the hub's and its own.
func (w *World) Routes() int { return w.Prefixes + len(w.Origins) + 2 }

// Trusted extends an agent's trusted keys with the world's origins.
func (w *World) Trusted(base lsmsg.Keys) lsmsg.Keys {
	return func(id spf.NodeID) (ed25519.PublicKey, bool) {
		if k, ok := w.keys[id]; ok {
			return k, true
		}
		return base(id)
	}
}

// NewWorld builds origins origins with perOrigin random /64 prefixes each
// behind the hub, which faces agent's port agentPort.
func NewWorld(agent spf.NodeID, agentPort uint32, origins, perOrigin int, seed uint64) *World {
	rng := rand.New(rand.NewPCG(seed, 0x3e3))
	w := &World{Agent: agent, AgentPort: agentPort, Hub: "hub", keys: map[spf.NodeID]ed25519.PublicKey{}}
	hubAdj := []spf.Adjacency{{Neighbor: agent, Metric: 10, LinkID: 1}}
	for i := range origins {
		id := spf.NodeID(fmt.Sprintf("o%04d", i))
		w.Origins = append(w.Origins, id)
		hubAdj = append(hubAdj, spf.Adjacency{Neighbor: id, Metric: 10, LinkID: uint32(i + 2)})
		pfx := []spf.PrefixReach{{Prefix: harness.NodePrefix(string(id))}}
		for range perOrigin {
			p := spf.Prefix{Len: 64}
			binary.BigEndian.PutUint32(p.Key[0:], rng.Uint32()|1)
			binary.BigEndian.PutUint32(p.Key[4:], rng.Uint32()|1)
			pfx = append(pfx, spf.PrefixReach{Prefix: p})
		}
		w.Prefixes += perOrigin
		w.add(id, []spf.Adjacency{{Neighbor: w.Hub, Metric: 10, LinkID: 1}}, pfx)
	}
	w.add(w.Hub, hubAdj, []spf.PrefixReach{{Prefix: harness.NodePrefix(string(w.Hub))}})
	return w
}

// add packs an origin's adjacencies and prefixes into fragments that fit
// one frame each, adjacencies first, as an agent does, and seals them.
func (w *World) add(id spf.NodeID, adj []spf.Adjacency, pfx []spf.PrefixReach) {
	// LSPs carry both lists in canonical order.
	slices.SortFunc(adj, func(x, y spf.Adjacency) int {
		return cmp.Or(cmp.Compare(x.Neighbor, y.Neighbor), cmp.Compare(x.LinkID, y.LinkID), cmp.Compare(x.Metric, y.Metric))
	})
	slices.SortFunc(pfx, func(x, y spf.PrefixReach) int { return x.Prefix.Compare(y.Prefix) })
	key := topo.NodeKey(string(id))
	w.keys[id] = key.Public().(ed25519.PublicKey)
	signer := lsmsg.Signer{ID: id, Key: key}
	budget := lsmsg.MaxBody - lsmsg.HeaderSize(id)
	frag := uint8(0)
	for len(adj)+len(pfx) > 0 || frag == 0 {
		l := spf.LSP{Origin: id, Fragment: frag, Seq: 1, RemainingLifetime: 1200}
		used := 0
		for len(adj) > 0 && used+lsmsg.AdjacencySize(adj[0]) <= budget {
			used += lsmsg.AdjacencySize(adj[0])
			l.Adjacencies = append(l.Adjacencies, adj[0])
			adj = adj[1:]
		}
		for len(adj) == 0 && len(pfx) > 0 && used+lsmsg.PrefixSize(pfx[0]) <= budget {
			used += lsmsg.PrefixSize(pfx[0])
			l.Prefixes = append(l.Prefixes, pfx[0])
			pfx = pfx[1:]
		}
		signer.Seal(&l)
		w.LSPs = append(w.LSPs, l)
		frag++
	}
}

// Heap is the heap in use after two garbage collections.
func Heap() int64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapAlloc)
}

// ModelResult is the heap held by each of the agent's data structures.
type ModelResult struct {
	Routes int
	// LSDB holds the fragments as decoded from their frames; RIB the
	// shortest-path tree and the route table; Desired the FIB the writer
	// wants (fib.Routes); Programmer what it believes is installed (routes,
	// groups, members). Plan is the transient peak of the first plan (the
	// P4Runtime updates of every entry) before it is written.
	LSDB, RIB, Desired, Programmer, Plan int64
}

// Total is what the agent holds in steady state.
func (r ModelResult) Total() int64 { return r.LSDB + r.RIB + r.Desired + r.Programmer }

// DataModel loads w into the agent's data structures, as the agent does on
// receipt (each LSP encoded and decoded again, so that it holds what a
// frame gives), and measures each.
func DataModel(w *World) (ModelResult, error) {
	var r ModelResult
	h := Heap()
	self := lsmsg.Signer{ID: w.Agent, Key: topo.NodeKey(string(w.Agent))}
	db := spf.New(spf.Options{Self: w.Agent, Seal: self.Seal})
	if _, res := db.Originate(0, []spf.Adjacency{{Neighbor: w.Hub, Metric: 10, LinkID: w.AgentPort}},
		[]spf.PrefixReach{{Prefix: harness.NodePrefix(string(w.Agent))}}, 0); res.Verdict == spf.Invalid {
		return r, fmt.Errorf("memory: own LSP: %w", res.Err)
	}
	for i := range w.LSPs {
		body, err := lsmsg.AppendLSP(nil, &w.LSPs[i])
		if err != nil {
			return r, err
		}
		l, err := lsmsg.DecodeLSP(body)
		if err != nil {
			return r, err
		}
		if res := db.Receive(l, 0); res.Verdict != spf.Newer {
			return r, fmt.Errorf("memory: LSP %v: %v %v", l.ID(), res.Verdict, res.Err)
		}
	}
	h1 := Heap()
	r.LSDB = h1 - h

	rib := spf.NewRIB(w.Agent)
	rib.Update(db, db.TakeChanges())
	h2 := Heap()
	r.RIB = h2 - h1
	r.Routes = rib.Len()

	desired := make(fib.Routes, rib.Len())
	for p, rt := range rib.Routes() {
		if rt.Local {
			desired[p] = fib.Route{Kind: fib.ToCPU}
			continue
		}
		hops := make([]fib.Hop, 0, len(rt.NextHops))
		for _, nh := range rt.NextHops {
			hops = append(hops, fib.Hop{Port: uint16(nh.LinkID), DMAC: 0x02ee00000001, Weight: 1})
		}
		desired[p] = fib.Route{Kind: fib.Forward, Hops: hops}
	}
	h3 := Heap()
	r.Desired = h3 - h2

	schema, err := p4.Schema()
	if err != nil {
		return r, err
	}
	prog := fib.New(schema)
	plan, err := prog.Plan(desired)
	if err != nil {
		return r, err
	}
	h4 := Heap()
	r.Plan = h4 - h3
	prog.Commit(plan)
	plan = nil
	h5 := Heap()
	r.Programmer = h5 - h3
	runtime.KeepAlive(db)
	runtime.KeepAlive(rib)
	runtime.KeepAlive(desired)
	runtime.KeepAlive(prog)
	return r, nil
}

// AgentResult is a real agent holding w.
type AgentResult struct {
	Routes int
	// Agent is the agent's heap: with it running minus after it stopped.
	// Switch is what the switch and its P4Runtime server hold for the same
	// routes (after the stop, minus before the flood). Fabric is the
	// process heap before the flood (one switch, one agent, no prefixes).
	Agent, Switch, Fabric int64
	// Flood is how long the neighbour took to have every LSP
	// acknowledged; Learned until the switch held every route (the agent
	// reported its FIB applied); Snapshot is what one Snapshot costs then.
	Flood, Learned, Snapshot time.Duration
	// Frames is how many LSP frames the neighbour sent (retransmissions
	// included) for len(w.LSPs) LSPs.
	Frames, LSPs int
	Goroutines   int
	// Peak is the largest heap (live and not yet collected objects) seen
	// while the agent learned and programmed the routes, minus Fabric:
	// agent and switch together, transient plans and messages included.
	Peak int64
	// SPFRuns, PartialRuns and FIBWrites are the agent's counters once
	// it holds every route.
	SPFRuns, PartialRuns, FIBWrites uint64
}

// AgentMemory runs one agent (node w.Agent, alone on its switch), floods
// it w through an emulated neighbour on port w.AgentPort, waits until its
// switch holds every route, and measures.
func AgentMemory(ctx context.Context, w *World, logf func(string, ...any)) (AgentResult, error) {
	var r AgentResult
	port := uint16(w.AgentPort)
	t := &topo.Topology{Name: "one", Nodes: map[string]*topo.Node{string(w.Agent): {Name: string(w.Agent), Role: topo.RoleSR}}}
	f, err := harness.Start(ctx, t, topo.AgentOptions{
		Configure: func(node string, c *controller.Config) {
			c.Ports = append(c.Ports, controller.Port{Num: port, Kind: controller.PortFabric, Metric: 10})
			c.TrustedKeys = w.Trusted(c.TrustedKeys)
			c.Probe.Interval = -1 // the emulated neighbour does not answer probes
		},
	})
	if err != nil {
		return r, err
	}
	defer f.Close()
	node := string(w.Agent)
	if err := waitFor(ctx, 10*time.Second, func() error {
		s, err := f.Snapshot(ctx, node)
		if err != nil {
			return err
		}
		if !s.Converged() || len(s.Routes) != 1 {
			return fmt.Errorf("agent alone: %d routes, converged %v", len(s.Routes), s.Converged())
		}
		return nil
	}); err != nil {
		return r, err
	}
	link, err := f.AttachPod(node, port)
	if err != nil {
		return r, err
	}
	nb := harness.NewNeighbor(link, w.Hub, w.Agent, w.AgentPort, 25*time.Millisecond)
	defer nb.Close()
	if err := waitFor(ctx, 10*time.Second, func() error {
		s, err := f.Snapshot(ctx, node)
		if err != nil {
			return err
		}
		for _, n := range s.Neighbors {
			if n.Port == port && n.State == controller.AdjUp {
				return nil
			}
		}
		return errors.New("no adjacency with the emulated neighbour")
	}); err != nil {
		return r, err
	}
	r.Fabric = Heap()

	stopPeak := samplePeak(&r.Peak)
	start := time.Now()
	r.LSPs = len(w.LSPs)
	if r.Frames, err = nb.Flood(ctx, w.LSPs, 256, 500*time.Millisecond); err != nil {
		return r, err
	}
	r.Flood = time.Since(start)
	logf("flooded %d LSPs (%d frames) in %v", r.LSPs, r.Frames, r.Flood.Round(time.Millisecond))
	want := w.Routes()
	if err := waitFor(ctx, 2*time.Minute, func() error {
		s, err := f.Snapshot(ctx, node)
		if err != nil {
			return err
		}
		if !s.Converged() || len(s.Routes) != want {
			return fmt.Errorf("%d routes of %d, generation %d applied %d (%v)", len(s.Routes), want, s.FIBGeneration, s.FIBApplied, s.FIBError)
		}
		r.Routes = len(s.Routes)
		r.SPFRuns, r.PartialRuns, r.FIBWrites = s.Counters.SPFRuns, s.Counters.PartialRuns, s.FIBWrites
		return nil
	}); err != nil {
		return r, err
	}
	r.Learned = time.Since(start)
	stopPeak()
	r.Peak -= r.Fabric
	ts := time.Now()
	if _, err := f.Snapshot(ctx, node); err != nil {
		return r, err
	}
	r.Snapshot = time.Since(ts)
	logf("switch holds %d routes %v after the first LSP; a snapshot takes %v", r.Routes, r.Learned.Round(time.Millisecond), r.Snapshot.Round(time.Millisecond))

	with := Heap()
	r.Goroutines = runtime.NumGoroutine()
	if err := f.StopAgent(node); err != nil {
		return r, err
	}
	without := Heap()
	r.Goroutines -= runtime.NumGoroutine()
	r.Agent = with - without
	r.Switch = without - r.Fabric
	runtime.KeepAlive(nb)
	return r, nil
}

// FixedOverhead is the heap and goroutines one agent adds with nothing but
// node keys to route: agents started on a running n-node line, divided by n.
func FixedOverhead(ctx context.Context, n int) (heap int64, goroutines int, err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	t := topo.Line(n)
	f, err := topo.Start(ctx, t, topo.Options{})
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	h0, g0 := Heap(), runtime.NumGoroutine()
	if err := f.StartAgents(ctx, topo.AgentOptions{}); err != nil {
		return 0, 0, err
	}
	hf := &harness.Fabric{Fabric: f}
	base, err := harness.Model{Topo: t}.FIBs()
	if err != nil {
		return 0, 0, err
	}
	if _, err := hf.WaitFIBs(ctx, base, 20*time.Second); err != nil {
		return 0, 0, err
	}
	h1, g1 := Heap(), runtime.NumGoroutine()
	return (h1 - h0) / int64(n), (g1 - g0) / n, nil
}

// samplePeak records the largest heap seen into peak until the returned
// function is called. runtime/metrics reads it without stopping the world.
func samplePeak(peak *int64) (stop func()) {
	done, finished := make(chan struct{}), make(chan struct{})
	sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	go func() {
		defer close(finished)
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			metrics.Read(sample)
			if v := int64(sample[0].Value.Uint64()); v > *peak {
				*peak = v
			}
			select {
			case <-done:
				return
			case <-tick.C:
			}
		}
	}()
	return func() { close(done); <-finished }
}

// poll is the pause between two looks at the agent: a Snapshot at 100k
// routes costs the agent's loop tens of milliseconds, so polling faster
// would slow down what is measured.
const poll = 250 * time.Millisecond

func waitFor(ctx context.Context, timeout time.Duration, cond func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("memory: after %v: %w", timeout, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(poll):
		}
	}
}
