package controller

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/dmsc-mesh/dmsc/controller/fib"
	"github.com/dmsc-mesh/dmsc/spf"
)

// Snapshot is the agent's state at one moment, for inspection (tests, gNMI,
// dmsc show).
type Snapshot struct {
	Node      spf.NodeID
	Role      Role
	Neighbors []NeighborInfo
	// LSDB lists every fragment held.
	LSDB []spf.Summary
	// Routes is what SPF computed, FIB what the agent wants on the switch.
	Routes spf.RouteTable
	FIB    fib.Routes
	// FIBGeneration is the newest route generation handed to the writer,
	// FIBApplied the one on the switch, FIBError the last write error while
	// they differ.
	FIBGeneration, FIBApplied uint64
	FIBError                  error
	FIBWrites                 uint64
	// FIBWrittenAt is when the agent last changed the switch: with
	// FIBApplied, when the switch came to hold what it holds.
	FIBWrittenAt time.Time
	// RoutesPending: the LSDB changed since the last route calculation,
	// which waits for the SPF back-off.
	RoutesPending bool
	Warm          bool
	Counters      Counters
	// Policies are the SCSC policies the agent holds.
	Policies []PolicyInfo
	// SG is the SG's pod signalling counters (zero for an SR).
	SG SGCounters
}

// NeighborInfo is one fabric port's adjacency.
type NeighborInfo struct {
	Port         uint16
	State        AdjState
	Neighbor     spf.NodeID
	NeighborPort uint32
	Synced       bool
	// Changed is when the adjacency last went up or down.
	Changed  time.Time
	Metric   uint32
	Capacity uint64
}

// Snapshot returns the agent's current state. It fails if the agent is not
// running.
func (a *Agent) Snapshot(ctx context.Context) (Snapshot, error) {
	var s Snapshot
	err := a.do(ctx, func() {
		l := a.loop
		now := a.now()
		s = Snapshot{Node: a.cfg.NodeID, Role: a.cfg.Role, Warm: l.warm}
		for _, port := range l.fabric {
			adj, _ := l.adj.Get(port)
			ni := NeighborInfo{Port: port, State: adj.State, Neighbor: adj.Neighbor, NeighborPort: adj.NeighborPort,
				Metric: l.ports[port].Metric, Capacity: l.ports[port].Capacity, Changed: l.ports[port].adjChanged}
			if n, ok := l.nbrs[port]; ok {
				ni.Synced = n.synced(now, 2*a.t.Retransmit)
			}
			s.Neighbors = append(s.Neighbors, ni)
		}
		s.LSDB = l.db.Summary(now)
		s.Routes = l.rib.Routes()
		s.FIB = fib.Routes{}
		for p, r := range s.Routes {
			if fr := a.fibRoute(p, r); fr != nil {
				s.FIB[p] = *fr
			}
		}
		s.Counters = l.counters
		s.Counters.Dropped = maps.Clone(l.counters.Dropped)
		s.FIBApplied, s.FIBGeneration, s.FIBWrites, s.FIBError = l.w.status()
		s.FIBWrittenAt = l.w.lastWritten()
		s.RoutesPending = l.spf.Pending() || l.prcPending || l.db.PendingTopology()
		s.Policies = a.policyInfos()
		if l.sg != nil {
			s.SG = l.sg.counters
		}
	})
	return s, err
}

// Converged reports whether the switch holds the newest routes the agent
// computed and no SPF run is pending.
func (s Snapshot) Converged() bool {
	return !s.RoutesPending && s.FIBApplied == s.FIBGeneration && s.FIBError == nil
}

// LSDBsAgree reports whether every snapshot holds the same fragments in
// the same versions (remaining lifetimes differ from node to node): the
// flooding has converged. The error names two nodes that differ.
func LSDBsAgree(snaps map[string]Snapshot) error {
	var ref []spf.Summary
	var refNode string
	for _, n := range slices.Sorted(maps.Keys(snaps)) {
		cur := make([]spf.Summary, len(snaps[n].LSDB))
		for i, e := range snaps[n].LSDB {
			e.RemainingLifetime = min(e.RemainingLifetime, 1)
			cur[i] = e
		}
		if ref == nil {
			ref, refNode = cur, n
			continue
		}
		if !slices.Equal(ref, cur) {
			return fmt.Errorf("LSDBs differ: %s holds %d fragments %v, %s %d %v", refNode, len(ref), ref, n, len(cur), cur)
		}
	}
	return nil
}

// UpNeighbors lists the neighbours with a two-way adjacency, sorted.
func (s Snapshot) UpNeighbors() []spf.NodeID {
	var out []spf.NodeID
	for _, n := range s.Neighbors {
		if n.State == AdjUp {
			out = append(out, n.Neighbor)
		}
	}
	slices.Sort(out)
	return out
}
