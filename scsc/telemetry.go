package scsc

import (
	"strconv"
	"time"

	gpb "github.com/openconfig/gnmi/proto/gnmi"

	"github.com/dmsc-mesh/dmsc/gnmi"
)

// Snapshot is the telemetry SCSC decides on: the live topology and what
// every agent heard from recently publishes. Decide only reads it.
type Snapshot struct {
	Topology *Topology // nil until an LSDB has been read
	// Agents holds the telemetry of the agents heard from within
	// stale_after; an agent missing here is unknown.
	Agents map[string]*AgentTelemetry
}

// AgentTelemetry is what one agent publishes, as SCSC last read it.
type AgentTelemetry struct {
	Probes map[ProbeID]*Probe
	Links  map[uint32]*Link  // by fabric port
	Oper   map[uint32]string // interface oper-status by port
}

// NewAgentTelemetry returns an empty AgentTelemetry.
func NewAgentTelemetry() *AgentTelemetry {
	return &AgentTelemetry{Probes: map[ProbeID]*Probe{}, Links: map[uint32]*Link{}, Oper: map[uint32]string{}}
}

// ProbeID names an SG's probe: a target service and an instance (0: the
// service as a whole).
type ProbeID struct {
	Service  string
	Instance uint32
}

// Probe is one probe result (docs/telemetry.md, /dmsc/probes).
type Probe struct {
	Delay, Jitter  time.Duration
	Loss           float64
	BandwidthBps   uint64
	HasDelay       bool
	HasBandwidth   bool
	Sent, Received uint64
	// At is the collection time of the delay leaf; Samples counts the
	// distinct collection times seen, so that a decision counts each sample
	// the agent took once however often it is read.
	At      time.Time
	Samples uint64
}

// Link is an agent's view of one of its fabric ports (/dmsc/neighbors).
type Link struct {
	Neighbor       string
	NeighborPort   uint64
	State          string // DOWN, INIT, UP
	Metric         uint64
	CapacityBps    uint64
	Delay, Jitter  time.Duration
	Loss           float64
	UtilizationBps uint64
	HasDelay       bool
	HasUtilization bool
}

// lsdbCopy is one agent's LSDB as read by an ON_CHANGE subscription.
type lsdbCopy struct {
	frags  map[FragmentID]*LSP
	synced bool   // the initial state has arrived
	gen    uint64 // bumped on every change
}

func newLSDBCopy() *lsdbCopy { return &lsdbCopy{frags: map[FragmentID]*LSP{}} }

// applyTelemetry applies readings of the telemetry subscription to t.
// Readings outside the tree SCSC uses, or of a type the contract does not
// give, are ignored: an agent newer than SCSC may publish more.
func applyTelemetry(t *AgentTelemetry, rs []gnmi.Reading) {
	for i := range rs {
		r := &rs[i]
		el := r.Path.GetElem()
		switch {
		case len(el) >= 5 && el[0].GetName() == "dmsc" && el[1].GetName() == "probes" && el[2].GetName() == "probe" && el[3].GetName() == "state":
			applyProbe(t, el[2].GetKey(), el[4].GetName(), r)
		case len(el) >= 5 && el[0].GetName() == "dmsc" && el[1].GetName() == "neighbors" && el[2].GetName() == "neighbor" && el[3].GetName() == "state":
			applyNeighbor(t, el[2].GetKey(), el[4].GetName(), r)
		case len(el) >= 3 && el[0].GetName() == "interfaces" && el[1].GetName() == "interface":
			port, ok := parsePort(el[1].GetKey()["name"])
			if !ok {
				continue
			}
			if r.Deleted && len(el) <= 4 {
				delete(t.Oper, port)
				continue
			}
			if len(el) == 4 && el[2].GetName() == "state" && el[3].GetName() == "oper-status" {
				if s, ok := r.Value.(string); ok {
					t.Oper[port] = s
				}
			}
		case len(el) == 3 && r.Deleted && el[0].GetName() == "dmsc":
			// A delete of a whole subtree root (/dmsc/probes/probe[...]).
			switch el[1].GetName() {
			case "probes":
				if id, ok := probeID(el[2].GetKey()); ok {
					delete(t.Probes, id)
				}
			case "neighbors":
				if port, ok := parsePort(el[2].GetKey()["port"]); ok {
					delete(t.Links, port)
				}
			}
		}
	}
}

func probeID(keys map[string]string) (ProbeID, bool) {
	inst, err := strconv.ParseUint(keys["instance"], 10, 32)
	target := keys["target"]
	if err != nil || target == "" {
		return ProbeID{}, false
	}
	return ProbeID{Service: target, Instance: uint32(inst)}, true
}

func parsePort(s string) (uint32, bool) {
	n, err := strconv.ParseUint(s, 10, 32)
	return uint32(n), err == nil
}

func applyProbe(t *AgentTelemetry, keys map[string]string, leaf string, r *gnmi.Reading) {
	id, ok := probeID(keys)
	if !ok {
		return
	}
	if r.Deleted {
		// The agent removes a probe as a whole; one leaf gone means the
		// result is incomplete, so it is forgotten.
		delete(t.Probes, id)
		return
	}
	p := t.Probes[id]
	if p == nil {
		p = &Probe{}
		t.Probes[id] = p
	}
	switch gnmi.ProbeLeaf(leaf) {
	case gnmi.ProbeDelayNs:
		if v, ok := asUint(r.Value); ok {
			p.Delay, p.HasDelay = nsDuration(v), true
			if !r.Time.Equal(p.At) {
				p.At = r.Time
				p.Samples++
			}
		}
	case gnmi.ProbeJitterNs:
		if v, ok := asUint(r.Value); ok {
			p.Jitter = nsDuration(v)
		}
	case gnmi.ProbeLoss:
		if v, ok := asFraction(r.Value); ok {
			p.Loss = v
		}
	case gnmi.ProbeBandwidthBps:
		if v, ok := asUint(r.Value); ok {
			p.BandwidthBps, p.HasBandwidth = v, true
		}
	case gnmi.ProbeSent:
		if v, ok := asUint(r.Value); ok {
			p.Sent = v
		}
	case gnmi.ProbeReceived:
		if v, ok := asUint(r.Value); ok {
			p.Received = v
		}
	}
}

func applyNeighbor(t *AgentTelemetry, keys map[string]string, leaf string, r *gnmi.Reading) {
	port, ok := parsePort(keys["port"])
	if !ok {
		return
	}
	if r.Deleted {
		delete(t.Links, port)
		return
	}
	l := t.Links[port]
	if l == nil {
		l = &Link{}
		t.Links[port] = l
	}
	switch gnmi.NeighborLeaf(leaf) {
	case gnmi.NeighborID:
		if s, ok := r.Value.(string); ok {
			l.Neighbor = s
		}
	case gnmi.NeighborState:
		if s, ok := r.Value.(string); ok {
			l.State = s
		}
	case gnmi.NeighborPort:
		l.NeighborPort, _ = asUint(r.Value)
	case gnmi.NeighborMetric:
		l.Metric, _ = asUint(r.Value)
	case gnmi.NeighborCapacityBps:
		l.CapacityBps, _ = asUint(r.Value)
	case gnmi.NeighborDelayNs:
		if v, ok := asUint(r.Value); ok {
			l.Delay, l.HasDelay = nsDuration(v), true
		}
	case gnmi.NeighborJitterNs:
		if v, ok := asUint(r.Value); ok {
			l.Jitter = nsDuration(v)
		}
	case gnmi.NeighborLoss:
		if v, ok := asFraction(r.Value); ok {
			l.Loss = v
		}
	case gnmi.NeighborUtilizationBps:
		if v, ok := asUint(r.Value); ok {
			l.UtilizationBps, l.HasUtilization = v, true
		}
	}
}

// applyLSDB applies readings of the LSDB subscription and reports whether
// the topology may have changed (an LSP's content or liveness).
func applyLSDB(db *lsdbCopy, rs []gnmi.Reading) (changed bool) {
	for i := range rs {
		r := &rs[i]
		el := r.Path.GetElem()
		if len(el) < 3 || el[0].GetName() != "dmsc" || el[1].GetName() != "lsdb" || el[2].GetName() != "lsp" {
			continue
		}
		keys := el[2].GetKey()
		frag, err := strconv.ParseUint(keys["fragment"], 10, 32)
		origin := keys["origin"]
		if err != nil || origin == "" {
			continue
		}
		id := FragmentID{Origin: origin, Fragment: uint32(frag)}
		if r.Deleted {
			if _, ok := db.frags[id]; ok {
				delete(db.frags, id)
				changed = true
			}
			continue
		}
		if len(el) != 5 || el[3].GetName() != "state" {
			continue
		}
		l := db.frags[id]
		if l == nil {
			l = &LSP{Origin: origin, Fragment: uint32(frag)}
			db.frags[id] = l
			changed = true
		}
		switch gnmi.LSPLeaf(el[4].GetName()) {
		case gnmi.LSPSeq:
			l.Seq, _ = asUint(r.Value)
		case gnmi.LSPRemainingLifetime:
			v, ok := asUint(r.Value)
			if ok {
				// Only a change of liveness matters to the topology; the
				// lifetime counts down all the time.
				if wasLive := !l.HasLifetime || l.RemainingLifetime > 0; wasLive != (v > 0) {
					changed = true
				}
				l.RemainingLifetime, l.HasLifetime = v, true
			}
		case gnmi.LSPAdjacencies:
			if j, ok := r.Value.(gnmi.JSON); ok {
				if adj, err := parseAdjacencies(j); err == nil {
					l.Adjacencies = adj
					changed = true
				}
			}
		case gnmi.LSPPrefixes:
			if j, ok := r.Value.(gnmi.JSON); ok {
				if pfx, err := parsePrefixes(j); err == nil {
					l.Prefixes = pfx
					changed = true
				}
			}
		}
	}
	if changed {
		db.gen++
	}
	return changed
}

func asUint(v any) (uint64, bool) {
	switch x := v.(type) {
	case uint64:
		return x, true
	case int64:
		if x >= 0 {
			return uint64(x), true
		}
	case float64:
		if x >= 0 && x < 1<<63 {
			return uint64(x), true
		}
	}
	return 0, false
}

func asFraction(v any) (float64, bool) {
	var f float64
	switch x := v.(type) {
	case float64:
		f = x
	case uint64:
		f = float64(x)
	case int64:
		f = float64(x)
	default:
		return 0, false
	}
	if !(f >= 0) {
		return 0, false
	}
	return min(f, 1), true
}

func nsDuration(ns uint64) time.Duration {
	if ns > 1<<62 {
		return 1 << 62
	}
	return time.Duration(ns)
}

// telemetrySubscriptions is the STREAM list of an agent's telemetry: SAMPLE
// of probes, neighbours and interfaces every interval.
func telemetrySubscriptions(interval time.Duration) *gpb.SubscriptionList {
	subs, err := gnmi.Subscriptions(&gpb.Subscription{Mode: gpb.SubscriptionMode_SAMPLE, SampleInterval: uint64(interval)},
		gnmi.ProbesRoot, gnmi.NeighborsRoot, gnmi.InterfacesRoot)
	if err != nil {
		panic(err) // constant paths: cannot fail
	}
	return &gpb.SubscriptionList{Mode: gpb.SubscriptionList_STREAM, Encoding: gpb.Encoding_PROTO, Subscription: subs}
}

// lsdbSubscriptions is the STREAM list of an agent's LSDB: ON_CHANGE.
func lsdbSubscriptions() *gpb.SubscriptionList {
	subs, err := gnmi.Subscriptions(&gpb.Subscription{Mode: gpb.SubscriptionMode_ON_CHANGE}, gnmi.LSDBRoot)
	if err != nil {
		panic(err) // constant paths: cannot fail
	}
	return &gpb.SubscriptionList{Mode: gpb.SubscriptionList_STREAM, Encoding: gpb.Encoding_PROTO, Subscription: subs}
}
