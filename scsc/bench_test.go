package scsc

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	gpb "github.com/openconfig/gnmi/proto/gnmi"

	"github.com/dmsc-mesh/dmsc/gnmi"
)

// benchFabric is a synthetic snapshot of a large domain: nodes switches
// (the first sgs SGs) on a ring with chords, services each hosted at two
// SGs with one instance each, every SG probing probesPerSG services (the
// service and its instances).
type benchFabric struct {
	snap     *Snapshot
	services []ServiceConfig
	flows    []*Probe // instance-0 probes
	spfLinks map[*Probe][]*Link
}

func newBenchFabric(b *testing.B, nodes, sgs, services, probesPerSG int) *benchFabric {
	rng := rand.New(rand.NewPCG(7, 8))
	name := func(i int) string {
		if i < sgs {
			return fmt.Sprintf("sg%d", i)
		}
		return fmt.Sprintf("sr%d", i-sgs)
	}
	srs := nodes - sgs
	type edge struct{ a, b int }
	var edges []edge
	has := map[edge]bool{}
	add := func(a, c int) {
		if a == c || has[edge{a, c}] || has[edge{c, a}] {
			return
		}
		has[edge{a, c}] = true
		edges = append(edges, edge{a, c})
	}
	for i := range srs {
		add(sgs+i, sgs+(i+1)%srs)
	}
	for range srs {
		add(sgs+rng.IntN(srs), sgs+rng.IntN(srs))
	}
	for i := range sgs {
		add(i, sgs+rng.IntN(srs))
		add(i, sgs+rng.IntN(srs))
	}
	lsdb := map[FragmentID]*LSP{}
	agents := map[string]*AgentTelemetry{}
	ports := make([]uint32, nodes)
	for i := range nodes {
		lsdb[FragmentID{name(i), 0}] = &LSP{Origin: name(i), Seq: 1}
		agents[name(i)] = NewAgentTelemetry()
	}
	for _, e := range edges {
		for _, end := range [][2]int{{e.a, e.b}, {e.b, e.a}} {
			u, v := end[0], end[1]
			ports[u]++
			lsp := lsdb[FragmentID{name(u), 0}]
			lsp.Adjacencies = append(lsp.Adjacencies, LSPAdjacency{Neighbor: name(v), Metric: 10, Link: ports[u]})
			agents[name(u)].Links[ports[u]] = &Link{Neighbor: name(v), State: "UP", CapacityBps: 1e9,
				Delay: time.Duration(500+rng.IntN(1000)) * time.Microsecond, HasDelay: true, UtilizationBps: uint64(rng.IntN(500)) * 1e6, HasUtilization: true}
		}
	}
	f := &benchFabric{}
	for s := range services {
		svc, err := NewService(fmt.Sprintf("/svc%d/api", s), Thresholds{MaxDelay: 10 * time.Millisecond, MinBandwidth: 100e6})
		if err != nil {
			b.Fatal(err)
		}
		f.services = append(f.services, svc)
		for inst, h := range []int{rng.IntN(sgs), rng.IntN(sgs)} {
			lsp := lsdb[FragmentID{name(h), 0}]
			lsp.Prefixes = append(lsp.Prefixes, LSPPrefix{Prefix: gnmi.RouteKey(svc.Key, svc.PrefixLen)},
				LSPPrefix{Prefix: gnmi.RouteKey(svc.Key.WithInstance(uint32(inst+1)), 128)})
		}
	}
	for i := range sgs {
		tel := agents[name(i)]
		for range probesPerSG {
			svc := f.services[rng.IntN(services)]
			for inst := range uint32(3) {
				p := &Probe{Delay: 3 * time.Millisecond, HasDelay: true, BandwidthBps: 5e8, HasBandwidth: true}
				tel.Probes[ProbeID{svc.Name, inst}] = p
				if inst == 0 {
					f.flows = append(f.flows, p)
				}
			}
		}
	}
	f.snap = &Snapshot{Topology: BuildTopology(lsdb), Agents: agents}
	return f
}

// sample gives every probe a new sample; the first bad of them show the
// condition.
func (f *benchFabric) sample(bad int) {
	for _, tel := range f.snap.Agents {
		for _, p := range tel.Probes {
			p.Samples++
		}
	}
	for i, p := range f.flows {
		if i < bad {
			p.Delay = 25 * time.Millisecond
		} else {
			p.Delay = 3 * time.Millisecond
		}
	}
}

// BenchmarkDecide1000 is one decision round over 1,000 agents (200 SGs)
// and 1,000 services, each SG probing 100 services and their two
// instances (20,000 flows, 60,000 probes), 100 ms of time apart:
//
//   - steady: nothing violated;
//   - storm-onset: 5 % of the (ingress, service) flows show the condition
//     at once, so every one of them has its routes computed in the round
//     (a fresh Decider per round);
//   - storm-standing: those 1,000 policies stand while the condition
//     holds (clear_after 1 s, so each is re-examined for a better path
//     once a second).
func BenchmarkDecide1000(b *testing.B) {
	for _, tc := range []struct {
		name  string
		bad   float64
		fresh bool
	}{{"steady", 0, false}, {"storm-onset", 0.05, true}, {"storm-standing", 0.05, false}} {
		b.Run(tc.name, func(b *testing.B) {
			f := newBenchFabric(b, 1000, 200, 1000, 100)
			h := Hysteresis{TriggerAfter: 1, ClearAfter: time.Second, Improvement: 0.2}
			d := NewDecider(f.services, h)
			bad := int(tc.bad * float64(len(f.flows)))
			now := time.Unix(1000, 0)
			// Warm up: the SPF trees are computed and the storm's decisions
			// taken.
			f.sample(bad)
			res := d.Decide(f.snap, now)
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				now = now.Add(100 * time.Millisecond)
				f.sample(bad)
				if tc.fresh {
					d = NewDecider(f.services, h)
				}
				res = d.Decide(f.snap, now)
			}
			b.ReportMetric(float64(len(f.flows)), "flows")
			b.ReportMetric(float64(len(res.Policies)), "policies")
		})
	}
}

// BenchmarkIngest decodes and applies one agent's SAMPLE notification: 100
// probes of 4 leaves and 4 neighbours of 9 leaves (436 readings).
func BenchmarkIngest(b *testing.B) {
	target, err := gnmi.NewTarget(gnmi.TargetOptions{Name: "sg1"})
	if err != nil {
		b.Fatal(err)
	}
	defer target.Close()
	var leaves []gnmi.Leaf
	for s := range 100 {
		svc := fmt.Sprintf("/svc%d/api", s)
		for _, l := range []gnmi.ProbeLeaf{gnmi.ProbeDelayNs, gnmi.ProbeJitterNs, gnmi.ProbeBandwidthBps, gnmi.ProbeSent} {
			leaves = append(leaves, gnmi.Leaf{Path: gnmi.ProbeStatePath(svc, 0, l), Value: uint64(1000 + s)})
		}
	}
	for p := range uint32(4) {
		for _, l := range []gnmi.NeighborLeaf{gnmi.NeighborID, gnmi.NeighborState, gnmi.NeighborMetric, gnmi.NeighborCapacityBps,
			gnmi.NeighborDelayNs, gnmi.NeighborJitterNs, gnmi.NeighborUtilizationBps, gnmi.NeighborPort, gnmi.NeighborLoss} {
			var v any = uint64(10)
			switch l {
			case gnmi.NeighborID:
				v = "sr1"
			case gnmi.NeighborState:
				v = "UP"
			case gnmi.NeighborLoss:
				v = 0.0
			}
			leaves = append(leaves, gnmi.Leaf{Path: gnmi.NeighborStatePath(p+1, l), Value: v})
		}
	}
	// The notification as the target sends it, PROTO-encoded.
	n := &gpb.Notification{Timestamp: time.Now().UnixNano()}
	for _, l := range leaves {
		tv, err := encodeForBench(l.Value)
		if err != nil {
			b.Fatal(err)
		}
		n.Update = append(n.Update, &gpb.Update{Path: l.Path, Val: tv})
	}
	tel := NewAgentTelemetry()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		n.Timestamp++
		rs, err := gnmi.Decode(n)
		if err != nil {
			b.Fatal(err)
		}
		applyTelemetry(tel, rs)
	}
	b.ReportMetric(float64(len(leaves)), "readings/op")
	b.ReportMetric(float64(b.N*len(leaves))/b.Elapsed().Seconds(), "readings/s")
}

func encodeForBench(v any) (*gpb.TypedValue, error) {
	switch x := v.(type) {
	case uint64:
		return &gpb.TypedValue{Value: &gpb.TypedValue_UintVal{UintVal: x}}, nil
	case string:
		return &gpb.TypedValue{Value: &gpb.TypedValue_StringVal{StringVal: x}}, nil
	case float64:
		return &gpb.TypedValue{Value: &gpb.TypedValue_DoubleVal{DoubleVal: x}}, nil
	}
	return nil, fmt.Errorf("no encoding for %T", v)
}
