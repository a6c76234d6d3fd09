package scsc

import (
	"testing"
	"time"

	"github.com/dmsc-mesh/dmsc/gnmi"
)

func TestApplyTelemetry(t *testing.T) {
	tel := NewAgentTelemetry()
	t0 := time.Unix(100, 0)
	read := func(ts time.Time, rs ...gnmi.Reading) {
		for i := range rs {
			rs[i].Time = ts
		}
		applyTelemetry(tel, rs)
	}
	probe := func(leaf gnmi.ProbeLeaf, v any) gnmi.Reading {
		return gnmi.Reading{Path: gnmi.ProbeStatePath(cart, 0, leaf), Value: v}
	}
	read(t0, probe(gnmi.ProbeDelayNs, uint64(2e6)), probe(gnmi.ProbeJitterNs, uint64(1e5)), probe(gnmi.ProbeLoss, 0.25),
		probe(gnmi.ProbeBandwidthBps, uint64(5e8)), probe(gnmi.ProbeSent, "not a number"))
	p := tel.Probes[ProbeID{cart, 0}]
	if p == nil || p.Delay != 2*time.Millisecond || p.Jitter != 100*time.Microsecond || p.Loss != 0.25 ||
		p.BandwidthBps != 5e8 || !p.HasBandwidth || p.Samples != 1 || p.Sent != 0 {
		t.Fatalf("probe %+v", p)
	}
	// The same collection time read again (the next SAMPLE of an agent that
	// did not re-publish) is no new sample; a new time is.
	read(t0, probe(gnmi.ProbeDelayNs, uint64(2e6)))
	read(t0.Add(time.Second), probe(gnmi.ProbeDelayNs, uint64(3e6)))
	if p.Samples != 2 || p.Delay != 3*time.Millisecond {
		t.Errorf("samples %d delay %v, want 2 and 3ms", p.Samples, p.Delay)
	}
	nb := func(leaf gnmi.NeighborLeaf, v any) gnmi.Reading {
		return gnmi.Reading{Path: gnmi.NeighborStatePath(3, leaf), Value: v}
	}
	read(t0, nb(gnmi.NeighborID, "sr1"), nb(gnmi.NeighborState, "UP"), nb(gnmi.NeighborDelayNs, uint64(5e5)),
		nb(gnmi.NeighborCapacityBps, uint64(1e9)), nb(gnmi.NeighborUtilizationBps, uint64(2e8)), nb(gnmi.NeighborLoss, 1.5),
		gnmi.Reading{Path: gnmi.InterfaceOperStatusPath(3), Value: "DOWN"},
		gnmi.Reading{Path: gnmi.InterfaceCounterPath(3, gnmi.InPkts), Value: uint64(7)})
	l := tel.Links[3]
	if l == nil || l.Neighbor != "sr1" || l.State != "UP" || l.Delay != 500*time.Microsecond || l.CapacityBps != 1e9 ||
		l.UtilizationBps != 2e8 || !l.HasUtilization || l.Loss != 1 || tel.Oper[3] != "DOWN" {
		t.Fatalf("link %+v oper %v", l, tel.Oper)
	}
	// Deletes remove the whole probe or neighbour.
	read(t0, gnmi.Reading{Path: gnmi.ProbeStatePath(cart, 0, gnmi.ProbeDelayNs), Deleted: true},
		gnmi.Reading{Path: gnmi.NeighborPath(3), Deleted: true})
	if len(tel.Probes) != 0 || len(tel.Links) != 0 {
		t.Errorf("after deletes: probes %v links %v", tel.Probes, tel.Links)
	}
}

func TestApplyLSDBAndTopology(t *testing.T) {
	db := newLSDBCopy()
	lsp := func(origin string, frag uint32, leaf gnmi.LSPLeaf, v any) gnmi.Reading {
		return gnmi.Reading{Path: gnmi.LSPStatePath(origin, frag, leaf), Value: v}
	}
	s, _ := NewService(cart, Thresholds{})
	changed := applyLSDB(db, []gnmi.Reading{
		lsp("sg1", 0, gnmi.LSPAdjacencies, gnmi.JSON(`[{"neighbor":"sr1","metric":10,"link":1},{"neighbor":"sr2","metric":5,"link":2}]`)),
		lsp("sr1", 0, gnmi.LSPAdjacencies, gnmi.JSON(`[{"neighbor":"sg1","metric":10,"link":4}]`)),
		lsp("sr2", 0, gnmi.LSPAdjacencies, gnmi.JSON(`[]`)), // not yet two-way
		lsp("sr1", 1, gnmi.LSPPrefixes, gnmi.JSON(`[{"prefix":"`+gnmi.RouteKey(s.Key, 64)+`","metric":3},{"prefix":"`+gnmi.RouteKey(s.Key.WithInstance(7), 128)+`"}]`)),
		lsp("sr3", 0, gnmi.LSPRemainingLifetime, uint64(0)), // purged: not a node
		lsp("sr1", 0, gnmi.LSPAdjacencies, uint64(1)),       // a count, not the JSON the contract gives: ignored
	})
	if !changed || db.gen != 1 {
		t.Fatalf("changed %v gen %d", changed, db.gen)
	}
	topo := BuildTopology(db.frags)
	if got := topo.Nodes(); len(got) != 3 || topo.Has("sr3") {
		t.Errorf("nodes %v, want sg1 sr1 sr2", got)
	}
	if !topo.Adjacent("sg1", "sr1") || !topo.Adjacent("sr1", "sg1") || topo.Adjacent("sg1", "sr2") {
		t.Error("want sg1-sr1 two-way and sg1-sr2 (one-way) absent")
	}
	if h := topo.Hosts(&s); len(h) != 1 || h[0] != "sr1" {
		t.Errorf("hosts %v", h)
	}
	if n, ok := topo.InstanceNode(&s, 7); !ok || n != "sr1" {
		t.Errorf("instance 7 at %q %v", n, ok)
	}
	// Only a change of liveness counts, not the countdown.
	if applyLSDB(db, []gnmi.Reading{lsp("sg1", 0, gnmi.LSPRemainingLifetime, uint64(1199))}) {
		t.Error("a lifetime countdown counted as a change")
	}
	if !applyLSDB(db, []gnmi.Reading{{Path: gnmi.LSPPath("sr1", 1), Deleted: true}}) {
		t.Error("a deleted fragment is a change")
	}
}
