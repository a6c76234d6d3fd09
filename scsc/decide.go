package scsc

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Decider takes SCSC's decisions: from a telemetry Snapshot and the time it
// computes the policies to have. It keeps the hysteresis state between
// calls and is otherwise pure: no I/O, no clock, no goroutines, so that the
// decisions are tested as a table and the event loop that owns the Decider
// does all the I/O. Not safe for concurrent use.
//
// Per (ingress SG, service) it follows the SG's probe of the service
// (instance 0):
//
//   - idle: a probe sample that shows the draft's condition (delay ≥
//     max_delay, jitter ≥ max_jitter, loss ≥ max_loss, bandwidth ≤
//     min_bandwidth) counts; trigger_after consecutive ones make SCSC run
//     the QoS-weighted Dijkstra. If the best path is cheaper than the SPF
//     path by the improvement margin (the worst of SPF's equal-cost paths,
//     over which traffic spreads), a path policy along it is decided;
//     otherwise nothing ("no-alternate", said once per episode).
//   - active: the probe now measures the policy's path, so whether the
//     condition still holds is judged on the SPF path as the links'
//     telemetry estimates it (plus what the probe measures beyond the links'
//     sum on the current path). Once that estimate is clear for clear_after,
//     the policy is withdrawn. A path that breaks (an adjacency down, a link
//     below min_bandwidth, the egress no longer hosting the service) is
//     replaced or withdrawn at once; a better path replaces it only if it is
//     cheaper by the margin and the last change is clear_after old.
//
// Paths of one service from different ingresses come from one QoS tree
// towards the service, so they agree at every shared node (forwarding is by
// destination key, so two policies for one service at one node must name
// the same successor); a decision that would break that re-paths the
// others along the same tree.
//
// Per (service, instance) it follows the instance-level probes (instance ≠
// 0): an instance whose probes show the condition while another instance of
// the service, probed from the same SG, does not, trigger_after samples in a
// row, is drained (weight 0) by a weights policy at the SG hosting it, and
// restored once it has been clear for clear_after. An instance is never
// drained when that would drain every instance of the service.
type Decider struct {
	hyst     Hysteresis
	services map[string]*ServiceConfig
	flows    map[flowKey]*flowState
	drains   map[drainKey]*drainState
	round    uint64

	// SPF trees depend on the topology only; they are kept while the
	// topology is the same object.
	spfTopo *Topology
	spf     map[string]*spfTree
}

// NewDecider returns a Decider for the services and hysteresis given.
func NewDecider(services []ServiceConfig, h Hysteresis) *Decider {
	d := &Decider{
		hyst:     h,
		services: make(map[string]*ServiceConfig, len(services)),
		flows:    map[flowKey]*flowState{},
		drains:   map[drainKey]*drainState{},
	}
	for i := range services {
		s := services[i]
		d.services[s.Name] = &s
	}
	if d.hyst.TriggerAfter < 1 {
		d.hyst.TriggerAfter = 1
	}
	return d
}

// Decision is one change of SCSC's mind, with its reason; the event loop
// logs each once and keeps the recent ones for Status.
type Decision struct {
	Time     time.Time         `json:"time"`
	Action   string            `json:"action"`
	PolicyID string            `json:"policy_id,omitempty"`
	Service  string            `json:"service"`
	Ingress  string            `json:"ingress,omitempty"`
	Egress   string            `json:"egress,omitempty"`
	Instance uint32            `json:"instance,omitempty"`
	Path     []string          `json:"path,omitempty"`
	Weights  map[uint32]uint32 `json:"weights,omitempty"`
	Reason   string            `json:"reason"`
}

// Decision actions.
const (
	ActionInstall     = "install"      // a path policy is decided
	ActionSwitch      = "switch"       // an active path policy takes another path
	ActionWithdraw    = "withdraw"     // a path policy is no longer wanted
	ActionNoAlternate = "no-alternate" // the condition holds but no path is better by the margin
	ActionDrain       = "drain"        // an instance gets weight 0
	ActionRestore     = "restore"      // a drained instance gets its weight back
)

// Result is what Decide returns: the policies to have (sorted by id) and the
// decisions taken in this call.
type Result struct {
	Policies  []Policy
	Decisions []Decision
}

type flowKey struct{ ingress, service string }

type flowState struct {
	seen       uint64 // probe samples counted
	sampled    uint64 // round in which the last new sample was counted
	bad        int    // consecutive samples showing the condition
	violation  string // the last condition seen, for reasons
	probe      *Probe // latest probe (nil if none this round)
	present    uint64 // round in which the probe was last seen
	active     *Policy
	clearSince time.Time
	lastChange time.Time
	noAltSaid  bool
	// nextCheck is when routes may next be computed for this flow while
	// nothing forces it (a standing condition without a better path, an
	// active policy that might be bettered).
	nextCheck time.Time
}

// recheckInterval bounds how often a flow whose condition stands has its
// routes computed again.
const recheckInterval = time.Second

type drainKey struct {
	service  string
	instance uint32
	ingress  string
}

type drainState struct {
	seen       uint64
	sampled    uint64 // round of the last new sample
	bad        int
	violation  string // of the last sample; "" if within
	present    uint64
	active     bool
	since      time.Time
	clearSince time.Time
	lastChange time.Time
}

// round is the work of one Decide call.
type round struct {
	d    *Decider
	snap *Snapshot
	t    *Topology
	now  time.Time
	q    qualities
	qos  map[string]*qosTree
	out  []Decision
}

// Decide returns the policies to have at now, given the telemetry in snap,
// and the decisions that changed since the last call. now must not go
// backwards.
func (d *Decider) Decide(snap *Snapshot, now time.Time) Result {
	d.round++
	r := &round{d: d, snap: snap, t: snap.Topology, now: now, qos: map[string]*qosTree{}}
	if r.t == nil {
		// Without a topology nothing can be checked; decisions stay as they
		// are (and expire at the agents if this lasts).
		return Result{Policies: d.current(nil)}
	}
	if d.spfTopo != r.t {
		d.spfTopo, d.spf = r.t, map[string]*spfTree{}
	}
	d.ingest(snap)
	// Only flows that may change need stepping: in steady state that is
	// none, so a round costs one pass over the probes.
	var keys []flowKey
	for k, st := range d.flows {
		switch {
		case st.present != d.round && st.active == nil:
			delete(d.flows, k) // the probe is gone and nothing is in force
		case st.active != nil || (st.sampled == d.round && st.bad >= d.hyst.TriggerAfter):
			keys = append(keys, k)
		}
	}
	slices.SortFunc(keys, func(a, b flowKey) int {
		return cmp.Or(cmp.Compare(a.service, b.service), cmp.Compare(a.ingress, b.ingress))
	})
	changed := map[string]bool{}
	for _, k := range keys {
		if r.stepFlow(k, d.flows[k]) {
			changed[k.service] = true
		}
	}
	for svc := range changed {
		r.makeConsistent(svc, keys)
	}
	weights := r.stepDrains()
	return Result{Policies: d.current(weights), Decisions: r.out}
}

// ingest counts the new probe samples of every fresh agent.
func (d *Decider) ingest(snap *Snapshot) {
	for g, tel := range snap.Agents {
		for id, p := range tel.Probes {
			svc := d.services[id.Service]
			if svc == nil || !p.HasDelay {
				continue
			}
			if id.Instance == 0 {
				k := flowKey{g, svc.Name}
				st := d.flows[k]
				if st == nil {
					st = &flowState{}
					d.flows[k] = st
				}
				st.present, st.probe = d.round, p
				if p.Samples != st.seen {
					st.seen, st.sampled = p.Samples, d.round
					if v := violations(probeMeasure(p), svc.Thresholds); v != "" {
						st.bad++
						st.violation = v
					} else {
						st.bad, st.noAltSaid = 0, false
					}
				}
				continue
			}
			k := drainKey{svc.Name, id.Instance, g}
			st := d.drains[k]
			if st != nil && p.Samples == st.seen {
				st.present = d.round
				continue
			}
			v := instanceViolations(p, svc.Thresholds)
			if st == nil {
				if v == "" {
					continue // within the thresholds and never drained: no state
				}
				st = &drainState{}
				d.drains[k] = st
			}
			st.present, st.seen, st.sampled, st.violation = d.round, p.Samples, d.round, v
		}
	}
}

// current lists the active path policies and the weights policies given.
func (d *Decider) current(weights []Policy) []Policy {
	var out []Policy
	for _, st := range d.flows {
		if st.active != nil {
			out = append(out, *st.active)
		}
	}
	out = append(out, weights...)
	slices.SortFunc(out, func(a, b Policy) int { return cmp.Compare(a.ID, b.ID) })
	return out
}

func (r *round) say(dec Decision) {
	dec.Time = r.now
	r.out = append(r.out, dec)
}

func (r *round) qualities() qualities {
	if r.q == nil {
		r.q = measure(r.t, r.snap.Agents)
	}
	return r.q
}

func (r *round) hosts(svc *ServiceConfig) []Host { return r.t.hosts[servicePrefix(svc)] }

func (r *round) spfTree(svc *ServiceConfig) *spfTree {
	tr := r.d.spf[svc.Name]
	if tr == nil {
		tr = spfToward(r.t, r.hosts(svc))
		r.d.spf[svc.Name] = tr
	}
	return tr
}

func (r *round) qosTree(svc *ServiceConfig) *qosTree {
	tr := r.qos[svc.Name]
	if tr == nil {
		tr = qosToward(r.t, r.qualities(), r.hosts(svc), svc.MinBandwidth)
		r.qos[svc.Name] = tr
	}
	return tr
}

// choice is the routing picture of one flow.
type choice struct {
	best     []int32
	bestEst  PathEstimate
	spf      []int32 // the worst SPF path
	spfEst   PathEstimate
	spfPaths int
}

func (r *round) choose(g int32, svc *ServiceConfig) choice {
	var c choice
	q := r.qualities()
	hosts := r.hosts(svc)
	c.spf, c.spfPaths = worstSPFPath(r.t, q, r.spfTree(svc), hosts, g, svc.MinBandwidth)
	c.spfEst = estimate(r.t, q, hosts, c.spf, svc.MinBandwidth)
	c.best = r.qosTree(svc).path(g)
	c.bestEst = estimate(r.t, q, hosts, c.best, svc.MinBandwidth)
	return c
}

// betterThanSPF reports whether the best path is worth a policy: it is
// usable, it is not simply the one SPF path, and it is cheaper than the
// worst SPF path by the margin.
func (r *round) betterThanSPF(c choice, svc *ServiceConfig) bool {
	if c.best == nil || math.IsInf(c.bestEst.Cost, 1) {
		return false
	}
	if c.spfPaths <= 1 && slices.Equal(c.best, c.spf) {
		return false
	}
	if c.spfPaths > 1 && onSPF(r.t, r.spfTree(svc), r.hosts(svc), c.best) && c.bestEst.Cost >= c.spfEst.Cost {
		return false
	}
	return cheaper(c.bestEst.Cost, c.spfEst.Cost, r.d.hyst.Improvement)
}

// cheaper reports whether cost a beats b by the improvement margin.
func cheaper(a, b, improvement float64) bool {
	if math.IsInf(a, 1) {
		return false
	}
	if math.IsInf(b, 1) {
		return true
	}
	return a <= (1-improvement)*b
}

func (r *round) names(path []int32) []string {
	out := make([]string, len(path))
	for i, u := range path {
		out[i] = r.t.nodes[u]
	}
	return out
}

func (r *round) indices(path []string) ([]int32, bool) {
	out := make([]int32, len(path))
	for i, n := range path {
		u, ok := r.t.index[n]
		if !ok {
			return nil, false
		}
		out[i] = u
	}
	return out, true
}

// stepFlow advances one flow and reports whether its policy changed.
func (r *round) stepFlow(k flowKey, st *flowState) bool {
	svc := r.d.services[k.service]
	h := r.d.hyst
	g, inTopo := r.t.index[k.ingress]
	fresh := st.present == r.d.round
	if st.active == nil {
		if !inTopo || !fresh || st.bad < h.TriggerAfter || st.sampled != r.d.round {
			return false
		}
		if !st.lastChange.IsZero() && r.now.Sub(st.lastChange) < h.ClearAfter {
			return false // hold-down: at most one change per clear period
		}
		if isHostAt(r.hosts(svc), g, r.spfTree(svc).dist[g]) {
			return false // the ingress delivers the service itself
		}
		if st.noAltSaid && r.now.Before(st.nextCheck) {
			return false
		}
		st.nextCheck = r.now.Add(recheckInterval)
		c := r.choose(g, svc)
		if !r.betterThanSPF(c, svc) {
			if !st.noAltSaid {
				st.noAltSaid = true
				r.say(Decision{Action: ActionNoAlternate, Service: svc.Name, Ingress: k.ingress, Path: r.names(c.spf),
					Reason: fmt.Sprintf("%s from %s for %d samples; %s", st.violation, k.ingress, st.bad, r.whyNoAlternate(c))})
			}
			return false
		}
		reason := fmt.Sprintf("%s from %s; path cost %s vs SPF %s", st.violation, k.ingress, costString(c.bestEst.Cost), costString(c.spfEst.Cost))
		r.activate(k, st, c.best, reason, ActionInstall)
		return true
	}

	// Active.
	if !inTopo {
		r.withdraw(k, st, k.ingress+" left the LSDB")
		return true
	}
	path, why := r.checkPath(st.active.Path, svc)
	if why != "" {
		c := r.choose(g, svc)
		if r.betterThanSPF(c, svc) {
			r.activate(k, st, c.best, fmt.Sprintf("path broken (%s); path cost %s vs SPF %s", why, costString(c.bestEst.Cost), costString(c.spfEst.Cost)), ActionSwitch)
		} else {
			r.withdraw(k, st, fmt.Sprintf("path broken (%s); no path better than SPF", why))
		}
		return true
	}
	q := r.qualities()
	hosts := r.hosts(svc)
	spfPath, spfPaths := worstSPFPath(r.t, q, r.spfTree(svc), hosts, g, svc.MinBandwidth)
	spfEst := estimate(r.t, q, hosts, spfPath, svc.MinBandwidth)
	cur := estimate(r.t, q, hosts, path, svc.MinBandwidth)
	spfNow := measure1(spfEst)
	if fresh && st.probe != nil {
		// What the probe measures beyond the links' sum on the current path
		// (the egress, the switches) is added to the SPF estimate.
		spfNow.delay += max(st.probe.Delay-cur.Delay, 0)
		spfNow.jitter += max(st.probe.Jitter-cur.Jitter, 0)
	}
	if v := violations(spfNow, svc.Thresholds); v == "" {
		if st.clearSince.IsZero() {
			st.clearSince = r.now
		}
		if r.now.Sub(st.clearSince) >= h.ClearAfter {
			r.withdraw(k, st, fmt.Sprintf("condition clear for %v: SPF path estimate %s", r.now.Sub(st.clearSince).Round(time.Millisecond), measureString(spfNow)))
			return true
		}
		return false
	}
	st.clearSince = time.Time{}
	// Whether another path is better by the margin is asked at most once
	// per recheck interval and never within the hold-down: it needs the
	// service's QoS tree, the costly part of a decision.
	if r.now.Sub(st.lastChange) < h.ClearAfter || r.now.Before(st.nextCheck) {
		return false
	}
	st.nextCheck = r.now.Add(recheckInterval)
	best := r.qosTree(svc).path(g)
	bestEst := estimate(r.t, q, hosts, best, svc.MinBandwidth)
	if best == nil || slices.Equal(best, path) || !cheaper(bestEst.Cost, cur.Cost, h.Improvement) {
		return false
	}
	if spfPaths <= 1 && slices.Equal(best, spfPath) {
		r.withdraw(k, st, fmt.Sprintf("the SPF path is now the best (cost %s vs %s)", costString(bestEst.Cost), costString(cur.Cost)))
		return true
	}
	r.activate(k, st, best, fmt.Sprintf("%s from %s; path cost %s vs current %s", st.violation, k.ingress, costString(bestEst.Cost), costString(cur.Cost)), ActionSwitch)
	return true
}

func (r *round) whyNoAlternate(c choice) string {
	switch {
	case c.best == nil:
		return "no usable path"
	case c.spfPaths <= 1 && slices.Equal(c.best, c.spf):
		return "the SPF path is the best path"
	default:
		return fmt.Sprintf("best path cost %s is not %.0f%% below SPF's %s", costString(c.bestEst.Cost), r.d.hyst.Improvement*100, costString(c.spfEst.Cost))
	}
}

func (r *round) activate(k flowKey, st *flowState, path []int32, reason, action string) {
	names := r.names(path)
	st.active = &Policy{ID: PathPolicyID(k.ingress, k.service), Service: k.service, Ingress: k.ingress,
		Egress: names[len(names)-1], Path: names, Reason: reason, Since: r.now}
	st.lastChange, st.clearSince, st.noAltSaid = r.now, time.Time{}, false
	r.say(Decision{Action: action, PolicyID: st.active.ID, Service: k.service, Ingress: k.ingress,
		Egress: st.active.Egress, Path: names, Reason: reason})
}

func (r *round) withdraw(k flowKey, st *flowState, reason string) {
	r.say(Decision{Action: ActionWithdraw, PolicyID: st.active.ID, Service: k.service, Ingress: k.ingress,
		Path: st.active.Path, Reason: reason})
	st.active = nil
	st.bad, st.lastChange, st.clearSince, st.noAltSaid = 0, r.now, time.Time{}, false
}

// checkPath checks that an active path still stands: every node live, every
// hop a two-way adjacency that is up and has the bandwidth, the path simple
// and ending at a host of the service. It returns the path's indices, or
// why it does not stand.
func (r *round) checkPath(path []string, svc *ServiceConfig) ([]int32, string) {
	idx, ok := r.indices(path)
	if !ok {
		return nil, "a node left the LSDB"
	}
	if !isSimple(idx) {
		return nil, "not a simple path"
	}
	q := r.qualities()
	for i := 0; i+1 < len(idx); i++ {
		pos, ok := edgePos(r.t, idx[i], idx[i+1])
		if !ok {
			return nil, fmt.Sprintf("%s-%s is no adjacency", path[i], path[i+1])
		}
		eq := &q[idx[i]][pos]
		if !eq.up {
			return nil, fmt.Sprintf("%s-%s is down", path[i], path[i+1])
		}
		if math.IsInf(eq.cost(svc.MinBandwidth), 1) {
			return nil, fmt.Sprintf("%s-%s has %s available, below %s", path[i], path[i+1], rateString(uint64(eq.avail)), rateString(svc.MinBandwidth))
		}
	}
	last := idx[len(idx)-1]
	if !slices.ContainsFunc(r.hosts(svc), func(h Host) bool { return h.Node == last }) {
		return nil, fmt.Sprintf("%s no longer hosts %s", path[len(path)-1], svc.Name)
	}
	return idx, ""
}

// makeConsistent re-paths the active policies of a service along its QoS
// tree if two of them name different successors at a shared node.
func (r *round) makeConsistent(service string, keys []flowKey) {
	var active []flowKey
	for _, k := range keys {
		if k.service == service && r.d.flows[k] != nil && r.d.flows[k].active != nil {
			active = append(active, k)
		}
	}
	if len(active) < 2 {
		return
	}
	succ := map[string]string{}
	conflict := ""
	for _, k := range active {
		p := r.d.flows[k].active.Path
		for i, n := range p {
			next := ""
			if i+1 < len(p) {
				next = p[i+1]
			}
			if prev, ok := succ[n]; ok && prev != next && conflict == "" {
				conflict = n
			}
			succ[n] = next
		}
	}
	if conflict == "" {
		return
	}
	svc := r.d.services[service]
	tree := r.qosTree(svc)
	for _, k := range active {
		st := r.d.flows[k]
		g := r.t.index[k.ingress]
		p := tree.path(g)
		if p == nil {
			r.withdraw(k, st, fmt.Sprintf("policies of %s disagreed at %s and %s has no QoS path", service, conflict, k.ingress))
			continue
		}
		if slices.Equal(r.names(p), st.active.Path) {
			continue
		}
		r.activate(k, st, p, fmt.Sprintf("re-pathed along %s's QoS tree: policies disagreed at %s", service, conflict), ActionSwitch)
	}
}

// stepDrains advances the instance decisions and returns the weights
// policies they call for.
func (r *round) stepDrains() []Policy {
	h := r.d.hyst
	keys := make([]drainKey, 0, len(r.d.drains))
	for k := range r.d.drains {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b drainKey) int {
		return cmp.Or(cmp.Compare(a.service, b.service), cmp.Compare(a.instance, b.instance), cmp.Compare(a.ingress, b.ingress))
	})
	for _, k := range keys {
		st := r.d.drains[k]
		svc := r.d.services[k.service]
		if st.present != r.d.round {
			if st.active {
				r.say(Decision{Action: ActionRestore, Service: k.service, Ingress: k.ingress, Instance: k.instance,
					Reason: fmt.Sprintf("%s no longer probes instance %d", k.ingress, k.instance)})
			}
			delete(r.d.drains, k)
			continue
		}
		if st.sampled == r.d.round {
			if st.violation != "" && r.otherInstanceWithin(k, svc) {
				st.bad++
			} else {
				st.bad = 0
			}
		}
		hold := !st.lastChange.IsZero() && r.now.Sub(st.lastChange) < h.ClearAfter
		switch {
		case !st.active && st.bad >= h.TriggerAfter && !hold:
			st.active, st.since, st.lastChange, st.clearSince = true, r.now, r.now, time.Time{}
			r.say(Decision{Action: ActionDrain, Service: k.service, Ingress: k.ingress, Instance: k.instance,
				Reason: fmt.Sprintf("instance %d: %s from %s while other instances are within", k.instance, st.violation, k.ingress)})
		case st.active && st.bad == 0:
			if st.clearSince.IsZero() {
				st.clearSince = r.now
			}
			if r.now.Sub(st.clearSince) >= h.ClearAfter {
				st.active, st.lastChange = false, r.now
				r.say(Decision{Action: ActionRestore, Service: k.service, Ingress: k.ingress, Instance: k.instance,
					Reason: fmt.Sprintf("instance %d clear for %v from %s", k.instance, r.now.Sub(st.clearSince).Round(time.Millisecond), k.ingress)})
			}
		case st.active:
			st.clearSince = time.Time{}
		case st.bad == 0 && !hold:
			delete(r.d.drains, k) // within again and nothing in force
		}
	}

	// Drained instances by service, then by the egress that hosts them.
	type drained struct {
		since  time.Time
		reason string
	}
	bySvc := map[string]map[uint32]drained{}
	for _, k := range keys {
		st := r.d.drains[k]
		if st == nil || !st.active {
			continue
		}
		m := bySvc[k.service]
		if m == nil {
			m = map[uint32]drained{}
			bySvc[k.service] = m
		}
		if d, ok := m[k.instance]; !ok || st.since.Before(d.since) {
			m[k.instance] = drained{st.since, fmt.Sprintf("instance %d: %s from %s", k.instance, st.violation, k.ingress)}
		}
	}
	var out []Policy
	services := make([]string, 0, len(bySvc))
	for s := range bySvc {
		services = append(services, s)
	}
	slices.Sort(services)
	for _, s := range services {
		svc := r.d.services[s]
		all := r.t.instances[servicePrefix(svc)]
		if len(all) > 0 && len(bySvc[s]) >= len(all) {
			continue // never drain every instance of a service
		}
		byEgress := map[string]*Policy{}
		ids := make([]uint32, 0, len(bySvc[s]))
		for id := range bySvc[s] {
			ids = append(ids, id)
		}
		slices.Sort(ids)
		for _, id := range ids {
			node, ok := r.t.InstanceNode(svc, id)
			if !ok {
				continue
			}
			p := byEgress[node]
			if p == nil {
				p = &Policy{ID: WeightsPolicyID(node, s), Service: s, Egress: node, InstanceWeights: map[uint32]uint32{}, Since: bySvc[s][id].since}
				byEgress[node] = p
			}
			p.InstanceWeights[id] = 0
			if bySvc[s][id].since.Before(p.Since) {
				p.Since = bySvc[s][id].since
			}
			if p.Reason != "" {
				p.Reason += "; "
			}
			p.Reason += bySvc[s][id].reason
		}
		for _, p := range byEgress {
			out = append(out, *p)
		}
	}
	return out
}

// otherInstanceWithin reports whether the ingress of k probes another
// instance of the service (one the LSDB knows) within the thresholds now.
func (r *round) otherInstanceWithin(k drainKey, svc *ServiceConfig) bool {
	tel := r.snap.Agents[k.ingress]
	if tel == nil {
		return false
	}
	for id := range r.t.instances[servicePrefix(svc)] {
		if id == k.instance {
			continue
		}
		if p := tel.Probes[ProbeID{k.service, id}]; p != nil && p.HasDelay && instanceViolations(p, svc.Thresholds) == "" {
			return true
		}
	}
	return false
}

// measured is a quality to check against thresholds.
type measured struct {
	delay, jitter time.Duration
	loss          float64
	bw            uint64
	hasBW         bool
}

func probeMeasure(p *Probe) measured {
	return measured{delay: p.Delay, jitter: p.Jitter, loss: p.Loss, bw: p.BandwidthBps, hasBW: p.HasBandwidth}
}

func measure1(e PathEstimate) measured {
	return measured{delay: e.Delay, jitter: e.Jitter, loss: e.Loss, bw: e.BandwidthBps, hasBW: e.HasBandwidth}
}

// violations describes which of the draft's conditions m meets ("" if none):
// delay ≥ max_delay, jitter ≥ max_jitter, loss ≥ max_loss, bandwidth ≤
// min_bandwidth.
func violations(m measured, th Thresholds) string {
	var parts []string
	if th.MaxDelay > 0 && m.delay >= th.MaxDelay {
		parts = append(parts, fmt.Sprintf("delay %v ≥ %v", roundDur(m.delay), th.MaxDelay))
	}
	if th.MaxJitter > 0 && m.jitter >= th.MaxJitter {
		parts = append(parts, fmt.Sprintf("jitter %v ≥ %v", roundDur(m.jitter), th.MaxJitter))
	}
	if th.MaxLoss > 0 && m.loss >= th.MaxLoss {
		parts = append(parts, fmt.Sprintf("loss %.3g ≥ %.3g", m.loss, th.MaxLoss))
	}
	if th.MinBandwidth > 0 && m.hasBW && m.bw <= th.MinBandwidth {
		parts = append(parts, fmt.Sprintf("bandwidth %s ≤ %s", rateString(m.bw), rateString(th.MinBandwidth)))
	}
	return strings.Join(parts, ", ")
}

// instanceViolations checks an instance probe: its delay, jitter and loss.
// Bandwidth is the path's, not the instance's, so it is left to the path
// decisions.
func instanceViolations(p *Probe, th Thresholds) string {
	th.MinBandwidth = 0
	return violations(probeMeasure(p), th)
}

func measureString(m measured) string {
	s := fmt.Sprintf("delay %v, jitter %v, loss %.3g", roundDur(m.delay), roundDur(m.jitter), m.loss)
	if m.hasBW {
		s += ", bandwidth " + rateString(m.bw)
	}
	return s
}

func roundDur(d time.Duration) time.Duration {
	switch {
	case d >= time.Second:
		return d.Round(time.Millisecond)
	case d >= time.Millisecond:
		return d.Round(10 * time.Microsecond)
	default:
		return d.Round(time.Microsecond / 10)
	}
}

func costString(c float64) string {
	if math.IsInf(c, 1) {
		return "∞"
	}
	return roundDur(time.Duration(c)).String()
}

// rateString prints bit/s the way configs write rates.
func rateString(bps uint64) string {
	for _, u := range []struct {
		name string
		div  float64
	}{{"gbit", 1e9}, {"mbit", 1e6}, {"kbit", 1e3}} {
		if float64(bps) >= u.div {
			return strconv.FormatFloat(float64(bps)/u.div, 'g', 4, 64) + u.name
		}
	}
	return strconv.FormatUint(bps, 10) + "bit"
}
