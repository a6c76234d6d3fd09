// Package p4 carries the DMSC P4 program's compiled artifacts (embedded from
// p4/build/) and the names through which Go code refers to its tables,
// actions, fields and counters. Every name here is checked against the P4Info
// by TestNamesExistInP4Info, so a rename in dmsc.p4 fails the build's tests
// instead of failing at run time on a switch.
package p4

import (
	_ "embed"
	"fmt"

	"github.com/dmsc-mesh/dmsc/p4rt/p4info"
)

//go:embed build/dmsc.p4info.txtpb
var p4infoText []byte

// P4InfoText returns the committed P4Info in protobuf text format.
func P4InfoText() []byte { return p4infoText }

// Schema parses and indexes the committed P4Info. Each call returns a new
// Schema: callers keep the one they need.
func Schema() (*p4info.Schema, error) {
	info, err := p4info.ParseText(p4infoText)
	if err != nil {
		return nil, fmt.Errorf("embedded p4info: %w", err)
	}
	return p4info.New(info)
}

// CPUPort is the port number of the controller port (simple_switch_grpc --cpu-port).
const CPUPort = 255

// MaxPorts bounds port numbers; the port counters have this many cells.
const MaxPorts = 512

// Tables.
const (
	TablePortRole      = "DmscIngress.port_role"
	TableSrcGuard      = "DmscIngress.src_guard"
	TableFIB128        = "DmscIngress.fib_128"
	TableFIB96         = "DmscIngress.fib_96"
	TableFIB64         = "DmscIngress.fib_64"
	TableFIB32         = "DmscIngress.fib_32"
	TableNexthop       = "DmscIngress.nexthop"
	TableLocalInstance = "DmscIngress.local_instance"
)

// FIBTables lists the FIB tables longest prefix first, with their prefix length.
var FIBTables = [4]struct {
	Name      string
	PrefixLen int
}{{TableFIB128, 128}, {TableFIB96, 96}, {TableFIB64, 64}, {TableFIB32, 32}}

// Match fields.
const (
	FieldPort    = "port"     // port_role, src_guard
	FieldSrcKey  = "src_key"  // src_guard
	FieldDstKey  = "dst_key"  // fib_*: the destination key cut to the table's prefix length
	FieldGroupID = "group_id" // nexthop, local_instance
)

// Actions and their parameters.
const (
	ActionNoAction        = "NoAction"
	ActionSetPortRole     = "DmscIngress.set_port_role" // role
	ActionAllow           = "DmscIngress.allow"
	ActionSetNexthopGroup = "DmscIngress.set_nexthop_group" // group_id
	ActionDeliverLocal    = "DmscIngress.deliver_local"     // group_id
	ActionToCPU           = "DmscIngress.to_cpu"
	ActionDrop            = "DmscIngress.drop"
	ActionSetNexthop      = "DmscIngress.set_nexthop"      // port, dmac
	ActionDeliverInstance = "DmscIngress.deliver_instance" // port, instance, dmac

	ParamRole     = "role"
	ParamGroupID  = "group_id"
	ParamPort     = "port"
	ParamDmac     = "dmac"
	ParamInstance = "instance"
)

// Action selectors.
const (
	ProfileNexthop  = "DmscIngress.nexthop_selector"
	ProfileInstance = "DmscIngress.instance_selector"
)

// Counters.
const (
	CounterPortRx  = "DmscIngress.port_rx"
	CounterPortTx  = "DmscEgress.port_tx"
	CounterDrop    = "DmscIngress.drop_counter" // indexed by wire.DropReason
	DirectFIB128   = "DmscIngress.fib_128_counter"
	DirectFIB96    = "DmscIngress.fib_96_counter"
	DirectFIB64    = "DmscIngress.fib_64_counter"
	DirectFIB32    = "DmscIngress.fib_32_counter"
	PacketIn       = "packet_in"
	PacketOut      = "packet_out"
	MetaIngress    = "ingress_port" // packet_in
	MetaReason     = "reason"       // packet_in: wire.PacketInReason
	MetaEgressPort = "egress_port"  // packet_out
	MetaMode       = "mode"         // packet_out: OutDirect or OutRoute
)

// Port roles, the value of set_port_role's parameter.
const (
	RoleUnset  = 0
	RolePod    = 1
	RoleFabric = 2
)

// Packet-out modes.
const (
	// OutDirect sends the frame on packet_out.egress_port unchanged.
	OutDirect = 0
	// OutRoute forwards the frame through the FIB as if it had been received,
	// skipping port_role and src_guard: agents use it for probes and for DATA
	// frames to distant agents.
	OutRoute = 1
)

// DefaultHopLimit is what a reflected probe reply starts with.
const DefaultHopLimit = 64
