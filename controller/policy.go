package controller

import (
	"github.com/dmsc-mesh/dmsc/controller/fib"
	"github.com/dmsc-mesh/dmsc/spf"
)

// policyTable holds the forwarding policies SCSC pushed, by prefix.
type policyTable struct {
	byPrefix map[spf.Prefix]*policyEntry
}

type policyEntry struct {
	// nextHops override SPF's next hops (by neighbour) with weights.
	nextHops map[spf.NodeID]int32
	// instanceWeights set the weights of local instances (egress SG).
	instanceWeights map[uint32]int32
}

// apply returns r with the policy of p applied. A policy naming no usable
// next hop leaves SPF's route in place: policy may steer, never blackhole.
func (t *policyTable) apply(p spf.Prefix, r *fib.Route, l *loopState) *fib.Route {
	e, ok := t.byPrefix[p]
	if !ok {
		return r
	}
	out := &fib.Route{Kind: r.Kind}
	switch r.Kind {
	case fib.Forward:
		if len(e.nextHops) == 0 {
			return r
		}
		for _, port := range l.fabric {
			n, up := l.nbrs[port]
			if !up {
				continue
			}
			if w, ok := e.nextHops[n.id]; ok && w > 0 {
				out.Hops = append(out.Hops, fib.Hop{Port: port, DMAC: macUint(n.mac), Weight: w})
			}
		}
	case fib.Local:
		if len(e.instanceWeights) == 0 {
			return r
		}
		for _, h := range r.Hops {
			if w, ok := e.instanceWeights[h.Instance]; ok {
				if w <= 0 {
					continue // weight 0 drains the instance
				}
				h.Weight = w
			}
			out.Hops = append(out.Hops, h)
		}
	default:
		return r
	}
	if len(out.Hops) == 0 {
		return r
	}
	return out
}
