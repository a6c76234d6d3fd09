package wire

// DropReason says why a frame was dropped. The values are the indexes of the
// P4 program's drop_counter (p4/dmsc.p4): keep them in step.
type DropReason uint8

// Drop reasons. 1–11 exist in the P4 program; 12–14 only in the software
// switch, whose ports can be down, lossy or full.
const (
	DropNone             DropReason = 0
	DropNotDMSC          DropReason = 1
	DropMalformed        DropReason = 2
	DropBadVersion       DropReason = 3
	DropBadType          DropReason = 4
	DropBadLength        DropReason = 5
	DropHopLimit         DropReason = 6
	DropPortUnconfigured DropReason = 7
	DropSrcGuard         DropReason = 8
	DropNoRoute          DropReason = 9
	DropFIB              DropReason = 10
	DropNoNexthop        DropReason = 11
	DropPortDown         DropReason = 12
	DropImpairment       DropReason = 13
	DropQueueFull        DropReason = 14
)

// NumDropReasons is the size of the drop counter.
const NumDropReasons = 16

var dropNames = [NumDropReasons]string{
	"none", "not_dmsc", "malformed", "bad_version", "bad_type", "bad_length",
	"hop_limit", "port_unconfigured", "src_guard", "no_route", "fib",
	"no_nexthop", "port_down", "impairment", "queue_full", "reserved_15",
}

// String is a stable name, used as a metric label.
func (r DropReason) String() string {
	if int(r) < len(dropNames) {
		return dropNames[r]
	}
	return "unknown"
}

// PacketInReason is the packet_in.reason of a frame punted to the agent.
type PacketInReason uint16

// Packet-in reasons.
const (
	PuntControl PacketInReason = 1 // a CONTROL frame (link-local signaling)
	PuntToCPU   PacketInReason = 2 // a FIB entry's to_cpu action (node key, probe reply)
)

func (r PacketInReason) String() string {
	switch r {
	case PuntControl:
		return "control"
	case PuntToCPU:
		return "to_cpu"
	}
	return "unknown"
}
