package softswitch

import (
	"github.com/dmsc-mesh/dmsc/p4"
	"github.com/dmsc-mesh/dmsc/wire"
)

// Byte offsets in a DMSC Ethernet frame (DESIGN.md §3), for the fields the
// pipeline reads and rewrites in place once wire.ParseFrame has accepted the
// frame. Rewriting in place, rather than decoding into a wire.Frame and
// encoding again, keeps every byte the pipeline does not touch (padding
// included) exactly as received, as BMv2's deparser does.
const (
	offEthDst    = 0
	offEthSrc    = 6
	offDMSC      = wire.EthernetHeaderLen
	offVerType   = offDMSC + 0 // version (high nibble), type (low nibble)
	offHopLimit  = offDMSC + 2
	offFlowLabel = offDMSC + 4
	offDstKey    = offDMSC + 12
	offInstance  = offDstKey + 12 // the low 32 bits of dst_key
	offSrcKey    = offDMSC + 28
	offProbe     = offDMSC + wire.HeaderLen
	offTRx       = offProbe + 16
	offTReply    = offProbe + 24
)

// DMSC frame types.
const (
	typeProbe      = wire.TypeProbe
	typeProbeReply = wire.TypeProbeReply
	typeControl    = wire.TypeControl
)

// Packet-in reasons (packet_in.reason).
const (
	puntControl = uint8(wire.PuntControl)
	puntToCPU   = uint8(wire.PuntToCPU)
)

// dropPort is v1model's drop port: BMv2 discards a frame whose egress_spec
// is 511 at the end of ingress, before egress (no port_tx).
const dropPort = p4.MaxPorts - 1

// packetOutLen is the packet_out header BMv2 sees in front of a frame from
// the controller; it counts in the ingress length, and so in every byte
// counter, of packet-outs.
const packetOutLen = 4

// Drop reasons: indexes of drop_counter, equal to wire.DropReason.
const (
	dropNotDMSC          = wire.DropNotDMSC
	dropMalformed        = wire.DropMalformed
	dropBadVersion       = wire.DropBadVersion
	dropBadType          = wire.DropBadType
	dropBadLength        = wire.DropBadLength
	dropHopLimit         = wire.DropHopLimit
	dropPortUnconfigured = wire.DropPortUnconfigured
	dropSrcGuard         = wire.DropSrcGuard
	dropNoRoute          = wire.DropNoRoute
	dropFIB              = wire.DropFIB
	dropNoNexthop        = wire.DropNoNexthop
	dropPortDown         = wire.DropPortDown
	dropImpairment       = wire.DropImpairment
	dropQueueFull        = wire.DropQueueFull
	numDropReasons       = wire.NumDropReasons
)
