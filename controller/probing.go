package controller

import (
	"math"
	"slices"
	"time"

	"github.com/dmsc-mesh/dmsc/gnmi"
	"github.com/dmsc-mesh/dmsc/p4"
	"github.com/dmsc-mesh/dmsc/spf"
	"github.com/dmsc-mesh/dmsc/wire"
)

// Probing (DESIGN §6, docs/telemetry.md): every node probes its
// neighbours' node keys over each fabric link, for the links' delay, jitter
// and loss; an SG also probes its target services and their instances,
// reflected in the data plane by the egress SG.

// probeStats is one probed thing's recent history.
type probeStats struct {
	sent, received uint64
	samples        []probeSample // sent within the window, oldest first
	jitter         float64       // RFC 3550 estimate of the one-way delay's variation, ns
	lastDelay      time.Duration
	haveLast       bool
}

type probeSample struct {
	seq     uint32
	at      time.Duration // sent
	delay   time.Duration // one-way (RTT/2); valid when replied
	replied bool
}

// sent records a probe sent at now.
func (s *probeStats) sent1(seq uint32, now, window time.Duration) {
	s.sent++
	s.samples = append(s.samples, probeSample{seq: seq, at: now})
	i := 0
	for i < len(s.samples) && now-s.samples[i].at > window {
		i++
	}
	s.samples = s.samples[i:]
}

// reply records the answer to probe seq.
func (s *probeStats) reply(seq uint32, rtt time.Duration) {
	for i := range s.samples {
		if s.samples[i].seq == seq && !s.samples[i].replied {
			d := rtt / 2
			s.samples[i].replied, s.samples[i].delay = true, d
			s.received++
			if s.haveLast {
				// RFC 3550 §6.4.1: J += (|D| - J) / 16.
				diff := math.Abs(float64(d - s.lastDelay))
				s.jitter += (diff - s.jitter) / 16
			}
			s.lastDelay, s.haveLast = d, true
			return
		}
	}
}

// meanDelay is the mean one-way delay of the replies in the window.
func (s *probeStats) meanDelay(now, window time.Duration) time.Duration {
	var sum time.Duration
	n := 0
	for _, x := range s.samples {
		if x.replied && now-x.at <= window {
			sum += x.delay
			n++
		}
	}
	if n == 0 {
		return 0
	}
	return sum / time.Duration(n)
}

// loss is the fraction of probes in the window, old enough to have been
// answered, that were not.
func (s *probeStats) loss(now, window, timeout time.Duration) float64 {
	due, lost := 0, 0
	for _, x := range s.samples {
		if now-x.at < timeout || now-x.at > window {
			continue
		}
		due++
		if !x.replied {
			lost++
		}
	}
	if due == 0 {
		return 0
	}
	return float64(lost) / float64(due)
}

func (a *Agent) probeInterval() time.Duration {
	if a.cfg.Probe.Interval == 0 {
		return 100 * time.Millisecond
	}
	return a.cfg.Probe.Interval
}

func (a *Agent) probeWindow() time.Duration {
	if a.cfg.Probe.Window == 0 {
		return 2 * time.Second
	}
	return a.cfg.Probe.Window
}

// probeTimeout is how long a probe may take before it counts as lost.
func (a *Agent) probeTimeout() time.Duration { return min(time.Second, a.probeWindow()/2) }

// probeTarget is a service an SG probes.
type probeTarget struct {
	name    string
	service spf.Prefix
	// stats by instance id; 0 is the service key itself.
	stats map[uint32]*probeStats
}

// probing sends the probes that are due.
func (a *Agent) probing(now time.Duration) {
	l := a.loop
	if a.probeInterval() < 0 || now < l.nextProbe {
		return
	}
	l.nextProbe = now + a.probeInterval()
	if l.linkProbes == nil {
		l.linkProbes = map[uint16]*probeStats{}
	}
	// Forget probes that will not be answered any more.
	for seq, w := range l.probes {
		if w.periodic && now-w.sentAt > a.probeTimeout() {
			delete(l.probes, seq)
		}
	}
	for _, port := range l.fabric {
		n, up := l.nbrs[port]
		if !up {
			delete(l.linkProbes, port)
			continue
		}
		st := l.linkProbes[port]
		if st == nil {
			st = &probeStats{}
			l.linkProbes[port] = st
		}
		name, err := wire.NodeName(string(n.id))
		if err != nil {
			continue
		}
		a.periodicProbe(wire.KeyOf(name), port, 0, st, now)
	}
	if l.sg == nil {
		return
	}
	for _, t := range a.probeTargets() {
		a.periodicProbe(t.service.Key, 0, 0, t.statsOf(0), now)
		for _, id := range a.instancesOf(t.service) {
			a.periodicProbe(wire.Key(t.service.Key).WithInstance(id), 0, 0, t.statsOf(id), now)
		}
	}
}

func (t *probeTarget) statsOf(id uint32) *probeStats {
	st := t.stats[id]
	if st == nil {
		st = &probeStats{}
		t.stats[id] = st
	}
	return st
}

// periodicProbe sends one probe to dst: out of port directly (a link
// probe), or through the FIB when port is 0.
func (a *Agent) periodicProbe(dst wire.Key, port uint16, flow uint32, st *probeStats, now time.Duration) {
	l := a.loop
	l.probeSeq++
	seq := l.probeSeq
	ph := wire.ProbeHeader{Seq: seq, TTx: uint64(time.Now().UnixNano())}
	h := wire.Header{Version: wire.Version, Type: wire.TypeProbe, HopLimit: wire.DefaultHopLimit,
		FlowLabel: flow, Dst: dst, Src: a.nodeKey}
	eth := wire.Ethernet{Dst: broadcastMAC}
	mode := uint64(p4.OutRoute)
	if port != 0 {
		mode = p4.OutDirect
		if ps := l.ports[port]; ps != nil {
			eth.Src = ps.mac
		}
		if n := l.nbrs[port]; n != nil {
			eth.Dst = n.mac
		}
	}
	frame := wire.AppendFrame(nil, eth, h, &ph, nil)
	if a.packetOut(frame, port, mode) != nil {
		return
	}
	if l.probes == nil {
		l.probes = map[uint32]*probeWait{}
	}
	st.sent1(seq, now, a.probeWindow())
	l.probes[seq] = &probeWait{periodic: true, sentAt: now, reply: func(r ProbeResult) {
		st.reply(seq, r.RTT)
		a.probeAnswered(dst, r)
	}}
}

// probeAnswered publishes a target's figures when one of its probes came
// back.
func (a *Agent) probeAnswered(dst wire.Key, r ProbeResult) {
	l := a.loop
	if l.gnmi == nil || l.sg == nil {
		return
	}
	now := a.now()
	for _, t := range l.targets {
		if dst.Mask(int(t.service.Len)) != t.service.Key {
			continue
		}
		id := dst.Instance()
		if dst == t.service.Key {
			id = 0
		}
		st := t.stats[id]
		if st == nil {
			return
		}
		ts := time.Now()
		bw := a.firstHopAvailable(t.service)
		l.gnmi.Update(ts,
			gnmi.Leaf{Path: gnmi.ProbeStatePath(t.name, id, gnmi.ProbeDelayNs), Value: uint64(st.meanDelay(now, a.probeWindow()))},
			gnmi.Leaf{Path: gnmi.ProbeStatePath(t.name, id, gnmi.ProbeJitterNs), Value: uint64(st.jitter)},
			gnmi.Leaf{Path: gnmi.ProbeStatePath(t.name, id, gnmi.ProbeLoss), Value: st.loss(now, a.probeWindow(), a.probeTimeout())},
			gnmi.Leaf{Path: gnmi.ProbeStatePath(t.name, id, gnmi.ProbeSent), Value: st.sent},
			gnmi.Leaf{Path: gnmi.ProbeStatePath(t.name, id, gnmi.ProbeReceived), Value: st.received},
			gnmi.Leaf{Path: gnmi.ProbeStatePath(t.name, id, gnmi.ProbeBandwidthBps), Value: bw},
		)
		return
	}
}

// firstHopAvailable is the available bandwidth of the first hop toward a
// service: the least of capacity minus utilisation over its next hops'
// ports (0 when unknown). SCSC computes the path's bottleneck from every
// node's link figures.
func (a *Agent) firstHopAvailable(svc spf.Prefix) uint64 {
	l := a.loop
	r, ok := l.rib.Route(svc)
	if !ok || r.Local {
		return 0
	}
	var best uint64
	for _, nh := range r.NextHops {
		ps := l.ports[uint16(nh.LinkID)]
		if ps == nil || ps.Capacity == 0 {
			continue
		}
		used := l.txBps[ps.Num]
		avail := uint64(0)
		if used < ps.Capacity {
			avail = ps.Capacity - used
		}
		best = max(best, avail)
	}
	return best
}

// probeTargets is the SG's list of targets, resolved against the routes:
// the configured names, or every service prefix the node has a route to.
func (a *Agent) probeTargets() []*probeTarget {
	l := a.loop
	if l.targets == nil {
		l.targets = map[spf.Prefix]*probeTarget{}
		for _, n := range a.cfg.Probe.Targets {
			name, err := wire.ParseName(n)
			if err != nil {
				continue // Validate refused it already
			}
			k := wire.KeyOf(name)
			p := spf.Prefix{Key: k, Len: uint8(k.PrefixLen())}
			l.targets[p] = &probeTarget{name: n, service: p, stats: map[uint32]*probeStats{}}
		}
	}
	if len(a.cfg.Probe.Targets) == 0 {
		for p := range l.services {
			if _, ok := l.targets[p]; !ok {
				l.targets[p] = &probeTarget{name: gnmi.RouteKey(p.Key, int(p.Len)), service: p, stats: map[uint32]*probeStats{}}
			}
		}
		for p := range l.targets {
			if !l.services[p] {
				delete(l.targets, p)
			}
		}
	}
	out := make([]*probeTarget, 0, len(l.targets))
	for _, t := range l.targets {
		if _, ok := l.rib.Route(t.service); ok {
			out = append(out, t)
		}
	}
	slices.SortFunc(out, func(x, y *probeTarget) int { return x.service.Compare(y.service) })
	return out
}

// instancesOf lists the instance ids of a service that have routes.
func (a *Agent) instancesOf(svc spf.Prefix) []uint32 {
	var out []uint32
	for p := range a.loop.instances[svc] {
		out = append(out, wire.Key(p.Key).Instance())
	}
	slices.Sort(out)
	return out
}

// trackServices keeps the index of services and instances with routes, from
// a route computation's changes.
func (a *Agent) trackServices(added, removed []spf.Prefix) {
	l := a.loop
	if l.services == nil {
		l.services = map[spf.Prefix]bool{}
		l.instances = map[spf.Prefix]map[spf.Prefix]bool{}
	}
	isNode := func(p spf.Prefix) bool {
		k := wire.Key(p.Key)
		return p.Len == 64 && k.Segment(0) == a.nodeKey.Segment(0)
	}
	for _, p := range added {
		switch {
		case p.Len == 128:
			for svc := range l.services {
				if wire.Key(p.Key).Mask(int(svc.Len)) == svc.Key {
					if l.instances[svc] == nil {
						l.instances[svc] = map[spf.Prefix]bool{}
					}
					l.instances[svc][p] = true
				}
			}
		case !isNode(p):
			l.services[p] = true
		}
	}
	for _, p := range removed {
		delete(l.services, p)
		delete(l.instances, p)
		if p.Len == 128 {
			for _, m := range l.instances {
				delete(m, p)
			}
		}
	}
}
