package gnmi

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/dmsc-mesh/dmsc/wire"
	gpb "github.com/openconfig/gnmi/proto/gnmi"
)

// DMSC's gNMI tree (README.md has the whole table). Every agent serves it;
// SCSC and `dmsc show` read it. Keys are strings on the wire (gNMI path
// conventions); the constructors below format them so that every party
// spells a key the same way: ports, instances and fragments in decimal,
// service names as wire prints them (/shop/cart), route prefixes as
// RouteKey does.
//
//	/interfaces/interface[name=<port>]/state/oper-status          string UP | DOWN
//	/interfaces/interface[name=<port>]/state/counters/<counter>   uint64
//	/dmsc/neighbors/neighbor[port=<port>]/state/<leaf>            see NeighborLeaf
//	/dmsc/probes/probe[instance=<id>][target=<service>]/state/<leaf>   see ProbeLeaf; instance 0 = the service as a whole
//	/dmsc/lsdb/state/<leaf>                                       uint64 counts
//	/dmsc/lsdb/lsp[fragment=<n>][origin=<router id>]/state/<leaf> see LSPLeaf
//	/dmsc/fib/route[prefix=<key>/<len>]/state/<leaf>              see RouteLeaf
//	/dmsc/policies/policy[id=<id>]/config                         JSON object, writable by Set
//	/dmsc/policies/policy[id=<id>]/state/<leaf>                   see PolicyLeaf
//
// The value types given are what the agent publishes; Get and Subscribe
// work whatever they are.

// SchemaVersion is the version of this tree, reported by Capabilities as the
// "dmsc" model's version. Adding leaves is a minor change; renaming or
// retyping one is a major change.
const SchemaVersion = "1.0.0"

// Roots of the tree's parts, for subscriptions and Get.
const (
	InterfacesRoot = "/interfaces"
	NeighborsRoot  = "/dmsc/neighbors"
	ProbesRoot     = "/dmsc/probes"
	LSDBRoot       = "/dmsc/lsdb"
	FIBRoot        = "/dmsc/fib"
	PoliciesRoot   = "/dmsc/policies"
)

// OpenConfig oper-status values DMSC uses.
const (
	OperUp   = "UP"
	OperDown = "DOWN"
)

// CounterLeaf names an interface counter (openconfig-interfaces), a uint64
// since the agent started.
type CounterLeaf string

// The interface counters.
const (
	InPkts      CounterLeaf = "in-pkts"
	OutPkts     CounterLeaf = "out-pkts"
	InOctets    CounterLeaf = "in-octets"
	OutOctets   CounterLeaf = "out-octets"
	InDiscards  CounterLeaf = "in-discards"
	OutDiscards CounterLeaf = "out-discards"
)

// Counters lists the interface counters in a stable order.
func Counters() []CounterLeaf {
	return []CounterLeaf{InPkts, OutPkts, InOctets, OutOctets, InDiscards, OutDiscards}
}

// NeighborLeaf names a leaf of a neighbour (an adjacency on a fabric port).
type NeighborLeaf string

// Neighbour leaves.
const (
	NeighborID          NeighborLeaf = "neighbor"      // string: the neighbour's router id
	NeighborPort        NeighborLeaf = "neighbor-port" // uint64: its port on the link
	NeighborState       NeighborLeaf = "state"         // string: the adjacency state (DOWN, INIT, UP)
	NeighborMetric      NeighborLeaf = "metric"        // uint64: the link's SPF metric
	NeighborCapacityBps NeighborLeaf = "capacity-bps"  // uint64: the link's capacity, bit/s
	// Link quality, from the agent's probes of the neighbour's node key and
	// the port's counters.
	NeighborDelayNs        NeighborLeaf = "delay-ns"        // uint64: one-way delay (half the round trip)
	NeighborJitterNs       NeighborLeaf = "jitter-ns"       // uint64: RFC 3550 jitter of the one-way delay
	NeighborLoss           NeighborLeaf = "loss"            // float64: lost fraction of probes, 0 to 1
	NeighborUtilizationBps NeighborLeaf = "utilization-bps" // uint64: bits/s sent on the port, last interval
)

// ProbeLeaf names a leaf of a probe result (an SG probing a target service).
type ProbeLeaf string

// Probe leaves.
const (
	ProbeDelayNs      ProbeLeaf = "delay-ns"      // uint64: mean one-way delay
	ProbeJitterNs     ProbeLeaf = "jitter-ns"     // uint64: delay variation
	ProbeLoss         ProbeLeaf = "loss"          // float64: lost fraction, 0 to 1
	ProbeSent         ProbeLeaf = "sent"          // uint64: probes sent
	ProbeReceived     ProbeLeaf = "received"      // uint64: replies received
	ProbeBandwidthBps ProbeLeaf = "bandwidth-bps" // uint64: available bandwidth estimate, bit/s
)

// LSDBLeaf names a summary leaf of the link-state database (uint64 counts).
type LSDBLeaf string

// LSDB summary leaves.
const (
	LSDBFragments LSDBLeaf = "fragments"
	LSDBNodes     LSDBLeaf = "nodes"
	LSDBPrefixes  LSDBLeaf = "prefixes"
)

// LSPLeaf names a leaf of one LSP fragment in the database.
type LSPLeaf string

// LSP leaves.
const (
	LSPSeq               LSPLeaf = "seq"                // uint64: sequence number
	LSPRemainingLifetime LSPLeaf = "remaining-lifetime" // uint64: seconds until it ages out
	LSPAdjacencies       LSPLeaf = "adjacencies"        // JSON: [{"neighbor":"sr1","metric":10,"link":1}] (docs/telemetry.md)
	LSPPrefixes          LSPLeaf = "prefixes"           // JSON: [{"prefix":"<key>/<len>","metric":0}]
)

// RouteLeaf names a leaf of a FIB route.
type RouteLeaf string

// Route leaves.
const (
	RouteKind     RouteLeaf = "kind"      // string: spf, policy, local, cpu
	RouteNextHops RouteLeaf = "next-hops" // JSON array: [{"port":1,"weight":1}, ...]
	RouteMetric   RouteLeaf = "metric"    // uint64: path metric
)

// PolicyLeaf names a state leaf of an SCSC policy.
type PolicyLeaf string

// Policy state leaves.
const (
	PolicyApplied PolicyLeaf = "applied" // bool: installed in the FIB
	PolicyExpires PolicyLeaf = "expires" // int64: Unix time in ns when it lapses unless renewed
)

func elem(name string, kv ...string) *gpb.PathElem {
	e := &gpb.PathElem{Name: name}
	if len(kv) > 0 {
		e.Key = make(map[string]string, len(kv)/2)
		for i := 0; i+1 < len(kv); i += 2 {
			e.Key[kv[i]] = kv[i+1]
		}
	}
	return e
}

func path(elems ...*gpb.PathElem) *gpb.Path { return &gpb.Path{Elem: elems} }

func u32(n uint32) string { return strconv.FormatUint(uint64(n), 10) }

// InterfacePath is /interfaces/interface[name=<port>].
func InterfacePath(port uint32) *gpb.Path {
	return path(elem("interfaces"), elem("interface", "name", u32(port)))
}

// InterfaceOperStatusPath is /interfaces/interface[name=<port>]/state/oper-status
// (OperUp or OperDown).
func InterfaceOperStatusPath(port uint32) *gpb.Path {
	p := InterfacePath(port)
	p.Elem = append(p.Elem, elem("state"), elem("oper-status"))
	return p
}

// InterfaceCounterPath is /interfaces/interface[name=<port>]/state/counters/<c>.
func InterfaceCounterPath(port uint32, c CounterLeaf) *gpb.Path {
	p := InterfacePath(port)
	p.Elem = append(p.Elem, elem("state"), elem("counters"), elem(string(c)))
	return p
}

// NeighborPath is /dmsc/neighbors/neighbor[port=<port>].
func NeighborPath(port uint32) *gpb.Path {
	return path(elem("dmsc"), elem("neighbors"), elem("neighbor", "port", u32(port)))
}

// NeighborStatePath is /dmsc/neighbors/neighbor[port=<port>]/state/<leaf>.
func NeighborStatePath(port uint32, leaf NeighborLeaf) *gpb.Path {
	p := NeighborPath(port)
	p.Elem = append(p.Elem, elem("state"), elem(string(leaf)))
	return p
}

// ProbePath is /dmsc/probes/probe[instance=<id>][target=<service>]: the
// results of probing service target (a name such as /shop/cart), for one
// instance, or for the service as a whole when instance is 0.
func ProbePath(target string, instance uint32) *gpb.Path {
	return path(elem("dmsc"), elem("probes"), elem("probe", "target", target, "instance", u32(instance)))
}

// ProbeStatePath is ProbePath's state leaf.
func ProbeStatePath(target string, instance uint32, leaf ProbeLeaf) *gpb.Path {
	p := ProbePath(target, instance)
	p.Elem = append(p.Elem, elem("state"), elem(string(leaf)))
	return p
}

// LSDBStatePath is /dmsc/lsdb/state/<leaf>.
func LSDBStatePath(leaf LSDBLeaf) *gpb.Path {
	return path(elem("dmsc"), elem("lsdb"), elem("state"), elem(string(leaf)))
}

// LSPPath is /dmsc/lsdb/lsp[fragment=<n>][origin=<router id>].
func LSPPath(origin string, fragment uint32) *gpb.Path {
	return path(elem("dmsc"), elem("lsdb"), elem("lsp", "origin", origin, "fragment", u32(fragment)))
}

// LSPStatePath is LSPPath's state leaf.
func LSPStatePath(origin string, fragment uint32, leaf LSPLeaf) *gpb.Path {
	p := LSPPath(origin, fragment)
	p.Elem = append(p.Elem, elem("state"), elem(string(leaf)))
	return p
}

// RouteKey is the key of a FIB route: the masked service key as wire prints
// it, "/" and the prefix length, e.g. 8d9001d3:1c42ddc0:00000000:00000000/64.
func RouteKey(key wire.Key, prefixLen int) string {
	return key.Mask(prefixLen).String() + "/" + strconv.Itoa(prefixLen)
}

// ParseRouteKey reads RouteKey's form back. The length must be 32, 64, 96
// or 128 (the FIB's tables) and the key must have no bits beyond it.
func ParseRouteKey(s string) (wire.Key, int, error) {
	ks, ls, ok := strings.Cut(s, "/")
	if !ok {
		return wire.Key{}, 0, fmt.Errorf("gnmi: route key %q: want <key>/<length>", s)
	}
	k, err := wire.ParseKey(ks)
	if err != nil {
		return wire.Key{}, 0, fmt.Errorf("gnmi: route key %q: %w", s, err)
	}
	n, err := strconv.Atoi(ls)
	if err != nil || (n != 32 && n != 64 && n != 96 && n != 128) {
		return wire.Key{}, 0, fmt.Errorf("gnmi: route key %q: length %q is not 32, 64, 96 or 128", s, ls)
	}
	if k.Mask(n) != k {
		return wire.Key{}, 0, fmt.Errorf("gnmi: route key %q: key has bits beyond /%d", s, n)
	}
	return k, n, nil
}

// RoutePath is /dmsc/fib/route[prefix=<RouteKey>].
func RoutePath(key wire.Key, prefixLen int) *gpb.Path {
	return path(elem("dmsc"), elem("fib"), elem("route", "prefix", RouteKey(key, prefixLen)))
}

// RouteStatePath is RoutePath's state leaf.
func RouteStatePath(key wire.Key, prefixLen int, leaf RouteLeaf) *gpb.Path {
	p := RoutePath(key, prefixLen)
	p.Elem = append(p.Elem, elem("state"), elem(string(leaf)))
	return p
}

// PolicyPath is /dmsc/policies/policy[id=<id>].
func PolicyPath(id string) *gpb.Path {
	return path(elem("dmsc"), elem("policies"), elem("policy", "id", id))
}

// PolicyConfigPath is /dmsc/policies/policy[id=<id>]/config, the policy as
// SCSC sets it: one JSON object (JSON_IETF), replaced or deleted whole.
func PolicyConfigPath(id string) *gpb.Path {
	p := PolicyPath(id)
	p.Elem = append(p.Elem, elem("config"))
	return p
}

// PolicyStatePath is /dmsc/policies/policy[id=<id>]/state/<leaf>.
func PolicyStatePath(id string, leaf PolicyLeaf) *gpb.Path {
	p := PolicyPath(id)
	p.Elem = append(p.Elem, elem("state"), elem(string(leaf)))
	return p
}

// PolicyConfigPattern is /dmsc/policies/policy[id=*]/config: what an agent's
// Setter declares writable (Writable: Match(PolicyConfigPattern(), p)).
func PolicyConfigPattern() *gpb.Path { return PolicyConfigPath(AnyKey) }
