package controller

import (
	"time"

	"github.com/dmsc-mesh/dmsc/controller/fib"
	"github.com/dmsc-mesh/dmsc/spf"
)

// runSPF computes routes when the back-off says so and hands the changed
// FIB entries to the writer.
// lsdbChanged schedules the route calculation an LSDB change needs. A
// change of the topology waits for the RFC 8405 back-off, which keeps an
// unstable network from being recomputed over and over. A change of
// prefixes alone needs only a partial calculation of those prefixes (tens
// of microseconds, docs/benchmarks.md), so it runs at the end of this step,
// batched with whatever else the step received, and leaves the back-off
// alone, as IS-IS implementations run PRC apart from SPF: otherwise a
// burst of registrations anywhere in the domain would hold every new
// service back by the back-off's long delay.
func (a *Agent) lsdbChanged(topology bool, now time.Duration) {
	if topology {
		a.loop.spf.Event(now)
		return
	}
	a.loop.prcPending = true
}

func (a *Agent) runSPF(now time.Duration) {
	l := a.loop
	if l.warm && now >= l.warmUntil {
		a.endWarm("hold time over")
	}
	if l.warm && a.allSynced(now) && !l.spf.Pending() && !l.prcPending && !l.own.pending() {
		a.endWarm("every fabric port is up and synced")
	}
	if l.prcPending && l.db.PendingTopology() && !l.spf.Pending() {
		// Every topology change schedules SPF (lsdbChanged); should one
		// have come another way, schedule it rather than wait forever.
		l.spf.Event(now)
	}
	due := l.spf.Due(now)
	if !due && l.prcPending && !l.db.PendingTopology() {
		due = true // a partial calculation need not wait for the back-off
	}
	if !due {
		return
	}
	l.prcPending = false
	t0 := time.Now()
	ch := l.db.TakeChanges()
	comp := l.rib.Update(l.db, ch)
	if comp.Kind == spf.KindFull {
		l.counters.SPFRuns++
	} else {
		l.counters.PartialRuns++
	}
	changes := make(map[spf.Prefix]*fib.Route, comp.Diff.Len())
	for _, u := range comp.Diff.Added {
		changes[u.Prefix] = a.fibRoute(u.Prefix, u.New)
	}
	for _, u := range comp.Diff.Changed {
		changes[u.Prefix] = a.fibRoute(u.Prefix, u.New)
	}
	for _, u := range comp.Diff.Removed {
		changes[u.Prefix] = nil
	}
	var added, removed []spf.Prefix
	for _, u := range comp.Diff.Added {
		added = append(added, u.Prefix)
	}
	for _, u := range comp.Diff.Removed {
		removed = append(removed, u.Prefix)
	}
	a.trackServices(added, removed)
	if len(changes) > 0 {
		l.routesGen = l.w.submitRoutes(changes)
		a.publishRoutes(changes)
		if l.sg != nil {
			// ACCEPTs waiting for these routes wait for this generation.
			a.stampAccepts(now)
		}
	}
	if comp.Diff.Len() > 0 {
		// Policies depend on adjacencies and on what the egress announces.
		a.refreshPolicies()
	}
	a.log.Debug("routes computed", "kind", comp.Kind, "changed", comp.Diff.Len(),
		"reachable", comp.Reachable, "took", time.Since(t0))
}

// allSynced reports whether every fabric port has a synced adjacency.
func (a *Agent) allSynced(now time.Duration) bool {
	l := a.loop
	for _, port := range l.fabric {
		n, ok := l.nbrs[port]
		if !ok || !n.synced(now, 2*a.t.Retransmit) {
			return false
		}
	}
	return true
}

func (a *Agent) endWarm(why string) {
	l := a.loop
	l.warm = false
	a.log.Info("warm restart over: programming the FIB", "why", why)
	// Everything the switch kept that the routes no longer have goes now.
	l.w.release()
}

// fibRoute turns a computed route into what the FIB should do; nil means no
// entry (the frame is dropped as no_route).
func (a *Agent) fibRoute(p spf.Prefix, r spf.Route) *fib.Route {
	l := a.loop
	if r.Local {
		lr, ok := l.local[p]
		if !ok {
			// Announced by us a moment ago and withdrawn since: the next
			// computation removes it.
			return nil
		}
		if len(lr.hops) == 0 {
			return &fib.Route{Kind: fib.ToCPU}
		}
		hops := make([]fib.Hop, len(lr.hops))
		for i, h := range lr.hops {
			hops[i] = fib.Hop{Port: h.port, DMAC: h.mac, Instance: h.instance, Weight: max(h.weight, 1)}
		}
		return a.overlay(p, &fib.Route{Kind: fib.Local, Hops: hops})
	}
	var hops []fib.Hop
	for _, nh := range r.NextHops {
		port := uint16(nh.LinkID)
		n, ok := l.nbrs[port]
		if !ok || n.id != nh.Neighbor {
			continue // the adjacency went down after the computation
		}
		hops = append(hops, fib.Hop{Port: port, DMAC: macUint(n.mac), Weight: 1})
	}
	if len(hops) == 0 {
		return nil
	}
	return a.overlay(p, &fib.Route{Kind: fib.Forward, Hops: hops})
}

// overlay applies forwarding policy to a computed route (SCSC's overrides);
// without policy, the route stands.
func (a *Agent) overlay(p spf.Prefix, r *fib.Route) *fib.Route {
	if a.loop.policy == nil {
		return r
	}
	return a.loop.policy.apply(p, r, a.loop)
}

// reprogram recomputes the FIB entries of prefixes whose delivery changed
// without a route change (local instances, policies).
func (a *Agent) reprogram(prefixes ...spf.Prefix) {
	l := a.loop
	changes := make(map[spf.Prefix]*fib.Route, len(prefixes))
	for _, p := range prefixes {
		if r, ok := l.rib.Route(p); ok {
			changes[p] = a.fibRoute(p, r)
		} else {
			changes[p] = nil
		}
	}
	if len(changes) > 0 {
		l.routesGen = l.w.submitRoutes(changes)
		a.publishRoutes(changes)
	}
}

// reprogramAll recomputes every FIB entry (a neighbour's MAC changed).
func (a *Agent) reprogramAll() {
	l := a.loop
	routes := l.rib.Routes()
	prefixes := make([]spf.Prefix, 0, len(routes))
	for p := range routes {
		prefixes = append(prefixes, p)
	}
	a.reprogram(prefixes...)
}
