package server

import (
	p4v1 "github.com/p4lang/p4runtime/go/p4/v1"

	"github.com/dmsc-mesh/dmsc/p4rt/p4info"
)

// Target is the forwarding device behind the P4Runtime service: the Go
// software switch, or a test double.
//
// The server owns the control-plane view: it enforces arbitration, validates
// every request against the P4Info, keeps the installed entries, members and
// groups (for Read and for ALREADY_EXISTS / NOT_FOUND), and hands the target
// only changes that are valid. The target installs them into its data plane
// and answers for what only it knows: counters and packets.
type Target interface {
	// VerifyPipeline reports whether the target can run this pipeline: the
	// P4Info and the opaque device config (BMv2 JSON for the DMSC program). It
	// must not change forwarding.
	VerifyPipeline(schema *p4info.Schema, deviceConfig []byte) error

	// CommitPipeline replaces the running pipeline. All forwarding state
	// (entries, members, groups, counters) starts empty afterwards.
	CommitPipeline(schema *p4info.Schema, deviceConfig []byte) error

	// Apply installs validated changes in order. With atomic set, the target
	// applies all or none, and the data plane never sees a partial batch;
	// without it, errs[i] (nil on success) reports changes[i]. A nil or
	// all-nil result means everything applied. Errors should be gRPC status
	// errors (RESOURCE_EXHAUSTED when a table is full, for instance).
	Apply(changes []Change, atomic bool) (errs []error)

	// DirectCounter returns the direct counter of an installed table entry.
	DirectCounter(entry *p4v1.TableEntry) (*p4v1.CounterData, error)

	// Counter returns one cell of an indexed counter.
	Counter(counterID uint32, index int64) (*p4v1.CounterData, error)

	// PacketOut sends a packet from the controller. Its metadata has been
	// validated against the packet_out controller header.
	PacketOut(pkt *p4v1.PacketOut) error

	// SetPacketInSink tells the target where to deliver packets for the
	// controller; nil stops delivery. The sink must not block for long: the
	// server queues and drops when no primary controller keeps up.
	SetPacketInSink(sink func(*p4v1.PacketIn))
}

// PortStatusReporter is a Target that sees its ports' carrier come and go.
// The server passes each change to the primary controllers in
// StreamMessageResponse.other (package p4rt/portstatus), queued with the
// arbitration updates, so it is never dropped. The sink must not block.
type PortStatusReporter interface {
	SetPortStatusSink(sink func(port uint32, up bool))
}

// Change is one validated update for a Target. Entity holds a TableEntry, an
// ActionProfileMember or an ActionProfileGroup with canonical byte strings.
// For MODIFY it is the complete new state; for DELETE it is the state being
// removed, as it was installed.
type Change struct {
	Type   p4v1.Update_Type
	Entity *p4v1.Entity
}
