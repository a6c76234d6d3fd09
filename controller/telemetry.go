package controller

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/dmsc-mesh/dmsc/ca"
	"github.com/dmsc-mesh/dmsc/controller/fib"
	"github.com/dmsc-mesh/dmsc/gnmi"
	"github.com/dmsc-mesh/dmsc/p4"
	"github.com/dmsc-mesh/dmsc/spf"
)

// The agent's gNMI side (docs/telemetry.md): a target the loop publishes
// into, a poller that reads the switch's counters, and policies by Set.

// startGNMI starts the target and its server; the returned function stops
// them.
func (a *Agent) startGNMI(ctx context.Context) (func(), error) {
	c := a.cfg.GNMI
	tg, err := gnmi.NewTarget(gnmi.TargetOptions{
		Name:      string(a.cfg.NodeID),
		Logger:    a.log.With("component", "gnmi"),
		Setter:    a,
		Authorize: a.authorizeGNMI,
		TLS:       c.TLS,
	})
	if err != nil {
		return nil, err
	}
	lis, err := net.Listen("tcp", c.Listen)
	if err != nil {
		tg.Close()
		return nil, fmt.Errorf("gnmi: %w", err)
	}
	a.gnmiAddr = lis.Addr().String()
	served := make(chan struct{})
	go func() {
		defer close(served)
		if err := tg.Serve(lis); err != nil && !errors.Is(err, net.ErrClosed) {
			a.log.Error("gNMI server stopped", "err", err)
		}
	}()
	a.loop.gnmi = tg
	pctx, stopPoll := context.WithCancel(ctx)
	polled := make(chan struct{})
	go func() { defer close(polled); a.pollCounters(pctx, max(c.Interval, 50*time.Millisecond)) }()
	a.log.Info("gNMI serving", "addr", a.gnmiAddr, "tls", c.TLS != nil)
	return func() {
		stopPoll()
		<-polled
		tg.Close()
		<-served
	}, nil
}

// GNMIAddr is the address the gNMI target listens on ("" without gNMI),
// known once Run has started.
func (a *Agent) GNMIAddr() string {
	<-a.running
	return a.gnmiAddr
}

// authorizeGNMI lets any node of the domain read and only SCSC set, when
// the target runs with TLS.
func (a *Agent) authorizeGNMI(ctx context.Context, rpc string) error {
	if a.cfg.GNMI.TLS == nil {
		return nil
	}
	cs, ok := gnmi.PeerTLS(ctx)
	if !ok {
		return status.Error(codes.Unauthenticated, "no TLS peer")
	}
	id, err := ca.PeerIdentity(cs, a.cfg.GNMI.Domain)
	if err != nil {
		return status.Errorf(codes.PermissionDenied, "peer: %v", err)
	}
	if id.Kind != ca.KindNode {
		return status.Errorf(codes.PermissionDenied, "%s is not a node of the domain", id)
	}
	if rpc == gnmi.RPCSet && id.Role != ca.RoleSCSC {
		return status.Errorf(codes.PermissionDenied, "%s may not set: only the scheduling center (role scsc) may", id)
	}
	return nil
}

// portRates is what the poller learned about ports.
type portRates struct {
	txBps map[uint16]uint64
}

// pollCounters reads the switch's port counters every interval, publishes
// them, and tells the loop the ports' send rates.
func (a *Agent) pollCounters(ctx context.Context, every time.Duration) {
	tick := time.NewTicker(every)
	defer tick.Stop()
	type sample struct {
		at      time.Time
		txBytes int64
	}
	last := map[uint16]sample{}
	cells := make([]int64, len(a.cfg.Ports))
	for i, p := range a.cfg.Ports {
		cells[i] = int64(p.Num)
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		rctx, cancel := context.WithTimeout(ctx, every)
		rx, err1 := a.loop.client.ReadCounterCells(rctx, p4.CounterPortRx, cells...)
		tx, err2 := a.loop.client.ReadCounterCells(rctx, p4.CounterPortTx, cells...)
		cancel()
		if err := errors.Join(err1, err2); err != nil {
			if ctx.Err() == nil {
				a.log.Debug("reading port counters failed", "err", err)
			}
			continue
		}
		now := time.Now()
		rates := portRates{txBps: map[uint16]uint64{}}
		var leaves []gnmi.Leaf
		for _, port := range a.cfg.Ports {
			i := int64(port.Num)
			r, t := rx[i], tx[i]
			leaves = append(leaves,
				gnmi.Leaf{Path: gnmi.InterfaceCounterPath(uint32(port.Num), gnmi.InPkts), Value: uint64(r.Packets)},
				gnmi.Leaf{Path: gnmi.InterfaceCounterPath(uint32(port.Num), gnmi.InOctets), Value: uint64(r.Bytes)},
				gnmi.Leaf{Path: gnmi.InterfaceCounterPath(uint32(port.Num), gnmi.OutPkts), Value: uint64(t.Packets)},
				gnmi.Leaf{Path: gnmi.InterfaceCounterPath(uint32(port.Num), gnmi.OutOctets), Value: uint64(t.Bytes)},
			)
			if prev, ok := last[port.Num]; ok && now.After(prev.at) && t.Bytes >= prev.txBytes {
				rates.txBps[port.Num] = uint64(float64(t.Bytes-prev.txBytes) * 8 / now.Sub(prev.at).Seconds())
			}
			last[port.Num] = sample{now, t.Bytes}
		}
		a.loop.gnmi.Update(now, leaves...)
		select {
		case a.events <- func() { a.ratesUpdated(rates) }:
		case <-ctx.Done():
			return
		}
	}
}

func (a *Agent) ratesUpdated(r portRates) {
	l := a.loop
	l.txBps = r.txBps
	if l.gnmi == nil {
		return
	}
	now := time.Now()
	var leaves []gnmi.Leaf
	for _, port := range l.fabric {
		leaves = append(leaves, gnmi.Leaf{Path: gnmi.NeighborStatePath(uint32(port), gnmi.NeighborUtilizationBps), Value: r.txBps[port]})
	}
	l.gnmi.Update(now, leaves...)
}

// publishState publishes neighbours, the LSDB and the FIB changes; the loop
// calls it after route computations and on its telemetry tick.
func (a *Agent) publishState(now time.Duration) {
	l := a.loop
	tg := l.gnmi
	if tg == nil {
		return
	}
	ts := time.Now()
	var leaves []gnmi.Leaf
	for _, port := range l.fabric {
		adj, _ := l.adj.Get(port)
		ps := l.ports[port]
		p := uint32(port)
		oper := gnmi.OperDown
		if adj.State == AdjUp {
			oper = gnmi.OperUp
		}
		leaves = append(leaves,
			gnmi.Leaf{Path: gnmi.InterfaceOperStatusPath(p), Value: oper},
			gnmi.Leaf{Path: gnmi.NeighborStatePath(p, gnmi.NeighborID), Value: string(adj.Neighbor)},
			gnmi.Leaf{Path: gnmi.NeighborStatePath(p, gnmi.NeighborPort), Value: uint64(adj.NeighborPort)},
			gnmi.Leaf{Path: gnmi.NeighborStatePath(p, gnmi.NeighborState), Value: upper(adj.State.String())},
			gnmi.Leaf{Path: gnmi.NeighborStatePath(p, gnmi.NeighborMetric), Value: uint64(ps.Metric)},
			gnmi.Leaf{Path: gnmi.NeighborStatePath(p, gnmi.NeighborCapacityBps), Value: ps.Capacity},
		)
		if st := l.linkProbes[port]; st != nil && st.received > 0 {
			leaves = append(leaves,
				gnmi.Leaf{Path: gnmi.NeighborStatePath(p, gnmi.NeighborDelayNs), Value: uint64(st.meanDelay(now, a.probeWindow()))},
				gnmi.Leaf{Path: gnmi.NeighborStatePath(p, gnmi.NeighborJitterNs), Value: uint64(st.jitter)},
				gnmi.Leaf{Path: gnmi.NeighborStatePath(p, gnmi.NeighborLoss), Value: st.loss(now, a.probeWindow(), a.probeTimeout())},
			)
		}
	}
	summ := l.db.Summary(a.now())
	nodes := map[spf.NodeID]bool{}
	prefixes := 0
	seen := map[spf.FragmentID]bool{}
	for _, s := range summ {
		if s.RemainingLifetime == 0 {
			continue
		}
		nodes[s.Origin] = true
		lsp, ok := l.db.Get(s.ID(), a.now())
		if !ok {
			continue
		}
		prefixes += len(lsp.Prefixes)
		origin, frag := string(s.Origin), uint32(s.Fragment)
		seen[s.ID()] = true
		leaves = append(leaves,
			gnmi.Leaf{Path: gnmi.LSPStatePath(origin, frag, gnmi.LSPSeq), Value: uint64(s.Seq)},
			gnmi.Leaf{Path: gnmi.LSPStatePath(origin, frag, gnmi.LSPRemainingLifetime), Value: uint64(s.RemainingLifetime)},
			gnmi.Leaf{Path: gnmi.LSPStatePath(origin, frag, gnmi.LSPAdjacencies), Value: adjacencyJSON(lsp.Adjacencies)},
			gnmi.Leaf{Path: gnmi.LSPStatePath(origin, frag, gnmi.LSPPrefixes), Value: prefixJSON(lsp.Prefixes)},
		)
	}
	for id := range l.publishedLSPs {
		if !seen[id] {
			tg.Delete(ts, gnmi.LSPPath(string(id.Origin), uint32(id.Fragment)))
		}
	}
	l.publishedLSPs = seen
	leaves = append(leaves,
		gnmi.Leaf{Path: gnmi.LSDBStatePath(gnmi.LSDBFragments), Value: uint64(len(summ))},
		gnmi.Leaf{Path: gnmi.LSDBStatePath(gnmi.LSDBNodes), Value: uint64(len(nodes))},
		gnmi.Leaf{Path: gnmi.LSDBStatePath(gnmi.LSDBPrefixes), Value: uint64(prefixes)},
	)
	tg.Update(ts, leaves...)
}

func upper(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'a' <= c && c <= 'z' {
			b[i] = c - 'a' + 'A'
		}
	}
	return string(b)
}

func adjacencyJSON(adj []spf.Adjacency) gnmi.JSON {
	type entry struct {
		Neighbor string `json:"neighbor"`
		Metric   uint32 `json:"metric"`
		Link     uint32 `json:"link"`
	}
	out := make([]entry, len(adj))
	for i, x := range adj {
		out[i] = entry{string(x.Neighbor), x.Metric, x.LinkID}
	}
	b, _ := json.Marshal(out)
	return b
}

func prefixJSON(ps []spf.PrefixReach) gnmi.JSON {
	type entry struct {
		Prefix string `json:"prefix"`
		Metric uint32 `json:"metric"`
	}
	out := make([]entry, len(ps))
	for i, p := range ps {
		out[i] = entry{gnmi.RouteKey(p.Prefix.Key, int(p.Prefix.Len)), p.Metric}
	}
	b, _ := json.Marshal(out)
	return b
}

// publishRoutes publishes FIB entries that changed (nil: removed).
func (a *Agent) publishRoutes(changes map[spf.Prefix]*fib.Route) {
	l := a.loop
	tg := l.gnmi
	if tg == nil {
		return
	}
	ts := time.Now()
	var leaves []gnmi.Leaf
	for p, r := range changes {
		if r == nil {
			tg.Delete(ts, gnmi.RoutePath(p.Key, int(p.Len)))
			continue
		}
		kind := "spf"
		switch r.Kind {
		case fib.Local:
			kind = "local"
		case fib.ToCPU:
			kind = "cpu"
		case fib.Drop:
			kind = "drop"
		}
		if e, ok := a.policyEntry(p); ok && (e.successor != "" && r.Kind == fib.Forward || len(e.instanceWeights) > 0 && r.Kind == fib.Local) {
			kind = "policy"
		}
		type hop struct {
			Port     uint16 `json:"port"`
			Neighbor string `json:"neighbor,omitempty"`
			Instance uint32 `json:"instance,omitempty"`
			Weight   int32  `json:"weight"`
		}
		hops := make([]hop, 0, len(r.Hops))
		for _, h := range r.Hops {
			x := hop{Port: h.Port, Instance: h.Instance, Weight: max(h.Weight, 1)}
			if n, ok := l.nbrs[h.Port]; ok && r.Kind == fib.Forward {
				x.Neighbor = string(n.id)
			}
			hops = append(hops, x)
		}
		hb, _ := json.Marshal(hops)
		var metric uint64
		if rt, ok := l.rib.Route(p); ok {
			metric = rt.Metric
		}
		leaves = append(leaves,
			gnmi.Leaf{Path: gnmi.RouteStatePath(p.Key, int(p.Len), gnmi.RouteKind), Value: kind},
			gnmi.Leaf{Path: gnmi.RouteStatePath(p.Key, int(p.Len), gnmi.RouteNextHops), Value: gnmi.JSON(hb)},
			gnmi.Leaf{Path: gnmi.RouteStatePath(p.Key, int(p.Len), gnmi.RouteMetric), Value: metric},
		)
	}
	tg.Update(ts, leaves...)
}

func (a *Agent) policyEntry(p spf.Prefix) (*policyEntry, bool) {
	if a.loop.policy == nil {
		return nil, false
	}
	e, ok := a.loop.policy.byPrefix[p]
	return e, ok
}
