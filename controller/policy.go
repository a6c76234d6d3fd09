package controller

import (
	"bytes"
	"context"
	"encoding/json"
	"maps"
	"slices"
	"strconv"
	"time"

	gpb "github.com/openconfig/gnmi/proto/gnmi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/dmsc-mesh/dmsc/controller/fib"
	"github.com/dmsc-mesh/dmsc/gnmi"
	"github.com/dmsc-mesh/dmsc/spf"
	"github.com/dmsc-mesh/dmsc/wire"
)

// Forwarding policies come from SCSC by gNMI Set (docs/telemetry.md): a
// path to steer a service along, instance weights at its egress SG, and a
// time to live. They overlay SPF's routes and expire, so the fabric falls
// back to plain SPF when SCSC is gone.

// PolicySpec is the JSON of /dmsc/policies/policy[id]/config.
type PolicySpec struct {
	Service         string            `json:"service"`
	Path            []string          `json:"path,omitempty"`
	InstanceWeights map[string]uint32 `json:"instance_weights,omitempty"`
	TTLms           int64             `json:"ttl_ms"`
	Reason          string            `json:"reason,omitempty"`
	Owner           string            `json:"owner,omitempty"`
}

// TTL bounds of a policy.
const (
	MinPolicyTTL = time.Second
	MaxPolicyTTL = 10 * time.Minute
)

// policy is an accepted policy.
type policy struct {
	id      string
	spec    PolicySpec
	raw     []byte
	service spf.Prefix
	// successor is the next node on the path after this one ("" if the
	// policy only sets instance weights here).
	successor spf.NodeID
	last      spf.NodeID // the path's egress SG
	weights   map[uint32]int32
	expires   time.Duration // on the loop's clock
	expiresAt time.Time
	applied   bool
	covered   []spf.Prefix // the prefixes it steers
}

// policyTable is every policy of this node, and the per-prefix overlay
// derived from them.
type policyTable struct {
	byID     map[string]*policy
	byPrefix map[spf.Prefix]*policyEntry
}

type policyEntry struct {
	// successor: forward via this neighbour instead of SPF's next hops.
	successor spf.NodeID
	// instanceWeights set local instances' weights (egress SG).
	instanceWeights map[uint32]int32
}

func newPolicyTable() *policyTable {
	return &policyTable{byID: map[string]*policy{}, byPrefix: map[spf.Prefix]*policyEntry{}}
}

// apply returns r with the policy of p applied. A policy whose successor is
// not an up adjacency leaves SPF's route in place: policy may steer, never
// blackhole.
func (t *policyTable) apply(p spf.Prefix, r *fib.Route, l *loopState) *fib.Route {
	e, ok := t.byPrefix[p]
	if !ok {
		return r
	}
	out := &fib.Route{Kind: r.Kind}
	switch r.Kind {
	case fib.Forward:
		if e.successor == "" {
			return r
		}
		for _, port := range l.fabric {
			if n, up := l.nbrs[port]; up && n.id == e.successor {
				out.Hops = append(out.Hops, fib.Hop{Port: port, DMAC: macUint(n.mac), Weight: 1})
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

// Writable: only policies' config may be set.
func (a *Agent) Writable(p *gpb.Path) bool { return gnmi.Match(gnmi.PolicyConfigPattern(), p) }

// Set applies a gNMI SetRequest's operations on policies, all or nothing.
func (a *Agent) Set(ctx context.Context, ops []gnmi.SetOp) error {
	var err error
	if derr := a.do(ctx, func() { err = a.setPolicies(ops) }); derr != nil {
		return status.Error(codes.Unavailable, derr.Error())
	}
	return err
}

func policyID(p *gpb.Path) (string, bool) {
	for _, e := range p.GetElem() {
		if e.GetName() == "policy" {
			id, ok := e.GetKey()["id"]
			return id, ok
		}
	}
	return "", false
}

// setPolicies validates every op, then applies them together.
func (a *Agent) setPolicies(ops []gnmi.SetOp) error {
	l := a.loop
	if l.policy == nil {
		l.policy = newPolicyTable()
	}
	now := a.now()
	next := maps.Clone(l.policy.byID)
	for _, op := range ops {
		id, ok := policyID(op.Path)
		if !ok {
			return status.Errorf(codes.InvalidArgument, "path %s names no policy id", gnmi.PathString(op.Path))
		}
		switch op.Op {
		case gpb.UpdateResult_DELETE:
			if id == gnmi.AnyKey {
				clear(next)
			} else {
				delete(next, id)
			}
		case gpb.UpdateResult_REPLACE, gpb.UpdateResult_UPDATE:
			raw, ok := op.Value.(gnmi.JSON)
			if !ok {
				return status.Errorf(codes.InvalidArgument, "policy %s: want a JSON object (json_ietf_val)", id)
			}
			p, err := a.parsePolicy(id, raw, now)
			if err != nil {
				return err
			}
			next[id] = p
		default:
			return status.Errorf(codes.InvalidArgument, "policy %s: operation %v", id, op.Op)
		}
	}
	if err := checkConsistent(next); err != nil {
		return err
	}
	old := l.policy.byID
	l.policy.byID = next
	a.policiesChanged(old)
	return nil
}

// parsePolicy validates one policy for this node.
func (a *Agent) parsePolicy(id string, raw []byte, now time.Duration) (*policy, error) {
	bad := func(format string, args ...any) error {
		return status.Errorf(codes.InvalidArgument, "policy %s: "+format, append([]any{id}, args...)...)
	}
	var spec PolicySpec
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&spec); err != nil {
		return nil, bad("%v", err)
	}
	name, err := wire.ParseName(spec.Service)
	if err != nil {
		return nil, bad("service: %v", err)
	}
	ttl := time.Duration(spec.TTLms) * time.Millisecond
	if ttl < MinPolicyTTL || ttl > MaxPolicyTTL {
		return nil, bad("ttl_ms %d: want %d to %d", spec.TTLms, MinPolicyTTL.Milliseconds(), MaxPolicyTTL.Milliseconds())
	}
	key := wire.KeyOf(name)
	p := &policy{id: id, spec: spec, raw: bytes.Clone(raw), service: spf.Prefix{Key: key, Len: uint8(key.PrefixLen())},
		expires: now + ttl, expiresAt: time.Now().Add(ttl), weights: map[uint32]int32{}}
	for k, w := range spec.InstanceWeights {
		n, err := strconv.ParseUint(k, 10, 32)
		if err != nil || n == 0 {
			return nil, bad("instance_weights: %q is not an instance id", k)
		}
		if w > 1<<15 {
			return nil, bad("instance_weights[%s]: weight %d above %d", k, w, 1<<15)
		}
		p.weights[uint32(n)] = int32(w)
	}
	if len(spec.Path) == 0 {
		if len(p.weights) == 0 {
			return nil, bad("neither a path nor instance weights")
		}
		return p, nil
	}
	known := a.lsdbNodes()
	seen := map[string]bool{}
	self := -1
	for i, n := range spec.Path {
		switch {
		case seen[n]:
			return nil, bad("path visits %s twice: a policy path must be simple", n)
		case !known[spf.NodeID(n)]:
			return nil, bad("path names %q, which is not in the link-state database", n)
		}
		seen[n] = true
		if spf.NodeID(n) == a.cfg.NodeID {
			self = i
		}
	}
	p.last = spf.NodeID(spec.Path[len(spec.Path)-1])
	if !a.announces(p.last, p.service) {
		return nil, bad("path ends at %s, which does not host %s", p.last, spec.Service)
	}
	switch {
	case self < 0:
		return nil, status.Errorf(codes.FailedPrecondition, "policy %s: %s is not on the path %v", id, a.cfg.NodeID, spec.Path)
	case self == len(spec.Path)-1:
		// The egress: only instance weights apply here.
	default:
		p.successor = spf.NodeID(spec.Path[self+1])
		if !a.adjacent(p.successor) {
			return nil, status.Errorf(codes.FailedPrecondition, "policy %s: successor %s is not an up adjacency of %s", id, p.successor, a.cfg.NodeID)
		}
	}
	return p, nil
}

// checkConsistent refuses two policies for one service that steer it to
// different successors here: forwarding is by destination, so they cannot
// both hold, and picking one could loop against the other's path.
func checkConsistent(ps map[string]*policy) error {
	succ := map[spf.Prefix]*policy{}
	for _, id := range slices.Sorted(maps.Keys(ps)) {
		p := ps[id]
		if p.successor == "" {
			continue
		}
		if q, ok := succ[p.service]; ok && q.successor != p.successor {
			return status.Errorf(codes.FailedPrecondition, "policy %s steers %s to %s, but policy %s steers it to %s",
				p.id, p.spec.Service, p.successor, q.id, q.successor)
		}
		succ[p.service] = p
	}
	return nil
}

func (a *Agent) lsdbNodes() map[spf.NodeID]bool {
	out := map[spf.NodeID]bool{}
	for _, s := range a.loop.db.Summary(a.now()) {
		if s.RemainingLifetime > 0 {
			out[s.Origin] = true
		}
	}
	return out
}

// announcedBy lists the prefixes node announces.
func (a *Agent) announcedBy(node spf.NodeID) []spf.PrefixReach {
	now := a.now()
	var out []spf.PrefixReach
	for f := 0; f < maxFragments; f++ {
		l, ok := a.loop.db.Get(spf.FragmentID{Origin: node, Fragment: uint8(f)}, now)
		if !ok {
			continue
		}
		out = append(out, l.Prefixes...)
	}
	return out
}

func (a *Agent) announces(node spf.NodeID, p spf.Prefix) bool {
	for _, r := range a.announcedBy(node) {
		if r.Prefix == p {
			return true
		}
	}
	return false
}

func (a *Agent) adjacent(n spf.NodeID) bool {
	for _, nb := range a.loop.nbrs {
		if nb.id == n {
			return true
		}
	}
	return false
}

// policiesChanged rebuilds the overlay and reprograms what it touches
// (before and after), and publishes the policies' state.
func (a *Agent) policiesChanged(old map[string]*policy) {
	l := a.loop
	t := l.policy
	touched := map[spf.Prefix]bool{}
	for _, p := range old {
		for _, c := range p.covered {
			touched[c] = true
		}
	}
	t.byPrefix = map[spf.Prefix]*policyEntry{}
	for _, id := range slices.Sorted(maps.Keys(t.byID)) {
		p := t.byID[id]
		p.covered = append(p.covered[:0], p.service)
		if p.successor != "" && p.last != "" {
			// The instances of the service at the egress follow the path
			// too, so pinned connections move with it.
			for _, r := range a.announcedBy(p.last) {
				if r.Prefix.Len == 128 && wire.Key(r.Prefix.Key).Mask(int(p.service.Len)) == p.service.Key {
					p.covered = append(p.covered, r.Prefix)
				}
			}
		}
		for _, c := range p.covered {
			e := t.byPrefix[c]
			if e == nil {
				e = &policyEntry{}
				t.byPrefix[c] = e
			}
			if p.successor != "" {
				e.successor = p.successor
			}
			if len(p.weights) > 0 {
				e.instanceWeights = p.weights
			}
			touched[c] = true
		}
		p.applied = p.successor == "" || a.adjacent(p.successor)
	}
	if len(touched) > 0 {
		a.reprogram(slices.Collect(maps.Keys(touched))...)
	}
	a.publishPolicies(old)
}

// expirePolicies drops policies whose time ran out.
func (a *Agent) expirePolicies(now time.Duration) {
	t := a.loop.policy
	if t == nil {
		return
	}
	var gone []string
	for id, p := range t.byID {
		if now >= p.expires {
			gone = append(gone, id)
		}
	}
	if len(gone) == 0 {
		return
	}
	old := maps.Clone(t.byID)
	for _, id := range gone {
		a.log.Info("policy expired", "id", id, "service", t.byID[id].spec.Service)
		delete(t.byID, id)
	}
	a.policiesChanged(old)
}

func (a *Agent) nextPolicyExpiry() (time.Duration, bool) {
	t := a.loop.policy
	if t == nil {
		return 0, false
	}
	var next time.Duration
	ok := false
	for _, p := range t.byID {
		if !ok || p.expires < next {
			next, ok = p.expires, true
		}
	}
	return next, ok
}

// refreshPolicies re-derives the overlay after the topology or the LSDB
// changed (a successor came back, the egress announced a new instance).
func (a *Agent) refreshPolicies() {
	if t := a.loop.policy; t != nil && len(t.byID) > 0 {
		a.policiesChanged(t.byID)
	}
}

// PolicyInfo is an accepted policy, for inspection.
type PolicyInfo struct {
	ID        string
	Spec      PolicySpec
	Successor spf.NodeID
	Applied   bool
	Expires   time.Time
	Covered   []spf.Prefix
}

func (a *Agent) policyInfos() []PolicyInfo {
	t := a.loop.policy
	if t == nil {
		return nil
	}
	var out []PolicyInfo
	for _, id := range slices.Sorted(maps.Keys(t.byID)) {
		p := t.byID[id]
		out = append(out, PolicyInfo{ID: id, Spec: p.spec, Successor: p.successor, Applied: p.applied,
			Expires: p.expiresAt, Covered: slices.Clone(p.covered)})
	}
	return out
}

func (a *Agent) publishPolicies(old map[string]*policy) {
	tg := a.loop.gnmi
	if tg == nil {
		return
	}
	ts := time.Now()
	for id := range old {
		if _, ok := a.loop.policy.byID[id]; !ok {
			tg.Delete(ts, gnmi.PolicyPath(id))
		}
	}
	for id, p := range a.loop.policy.byID {
		tg.Update(ts,
			gnmi.Leaf{Path: gnmi.PolicyConfigPath(id), Value: gnmi.JSON(p.raw)},
			gnmi.Leaf{Path: gnmi.PolicyStatePath(id, gnmi.PolicyApplied), Value: p.applied},
			gnmi.Leaf{Path: gnmi.PolicyStatePath(id, gnmi.PolicyExpires), Value: p.expiresAt.UnixNano()},
		)
	}
}
