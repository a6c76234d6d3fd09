package softswitch

import (
	"cmp"
	"slices"
	"sync/atomic"

	"github.com/dmsc-mesh/dmsc/p4"
	"github.com/dmsc-mesh/dmsc/p4rt/p4info"
	"github.com/dmsc-mesh/dmsc/wire"
)

// counterCell is one packets-and-bytes counter. Cells are updated with atomic
// adds from every receive loop and read by the control plane at any time.
type counterCell struct {
	packets atomic.Uint64
	bytes   atomic.Uint64
}

func (c *counterCell) add(packets, bytes uint64) {
	c.packets.Add(packets)
	c.bytes.Add(bytes)
}

func (c *counterCell) load() (packets, bytes uint64) {
	return c.packets.Load(), c.bytes.Load()
}

func (c *counterCell) store(packets, bytes uint64) {
	c.packets.Store(packets)
	c.bytes.Store(bytes)
}

// pipeline is one committed P4Info: the ids the switch maps it by and the
// indexed counters, which, like BMv2's, start at zero with each commit.
type pipeline struct {
	schema *p4info.Schema
	ids    *ids
	portRx [p4.MaxPorts]counterCell
	portTx [p4.MaxPorts]counterCell
	drops  [numDropReasons]counterCell
}

// What a FIB entry decided (meta.fwd in dmsc.p4).
const (
	fwdNone  = 0
	fwdGroup = 1
	fwdLocal = 2
	fwdCPU   = 3
	fwdDrop  = 4
)

// fibEntry is an installed FIB entry. The entry is immutable; its direct
// counter is a separate cell that a MODIFY carries over to the new entry, so
// counts survive modifications and snapshot rebuilds, as on BMv2.
type fibEntry struct {
	fwd   uint8
	group uint16
	ctr   *counterCell
}

// memberAction is a resolved selector member: set_nexthop(port, dmac) or
// deliver_instance(port, instance, dmac).
type memberAction struct {
	port     uint16
	instance uint32
	dmac     [6]byte
}

// selection is what an entry of nexthop or local_instance resolves to: the
// members of its group sorted by member id, with cumulative weights. A flow
// picks member i where cum[i-1] <= hash % total < cum[i], which is the same as
// indexing a list in which each member is repeated weight times.
type selection struct {
	acts  []memberAction
	cum   []uint32
	total uint32
}

// pick chooses a member for a flow hash.
func (s *selection) pick(h uint32) *memberAction {
	if len(s.acts) == 1 {
		return &s.acts[0]
	}
	x := h % s.total
	lo, hi := 0, len(s.cum)-1
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		if s.cum[mid] > x {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	return &s.acts[lo]
}

// selEntry is an installed entry of a selector table (nexthop or
// local_instance): a reference to a group or to a single member, and the
// selection it resolves to in this snapshot. sel is nil for an empty group,
// which the data plane treats as a miss (NoNexthop).
type selEntry struct {
	isGroup bool
	ref     uint32 // group id or member id
	sel     *selection
}

// member is an action profile member. refs counts the groups and table
// entries that use it: a member in use cannot be deleted.
type member struct {
	act  memberAction
	refs int
}

// group is an action profile group, members sorted by id. refs counts the
// table entries that use it.
type group struct {
	members []groupMember
	maxSize int32
	refs    int
	sel     *selection
}

type groupMember struct {
	id     uint32
	weight uint32
}

// profile is the state of one action selector.
type profile struct {
	members cowMap[uint32, *member]
	groups  cowMap[uint32, *group]
}

type guardKey struct {
	port uint16
	key  wire.Key
}

// roleTable is port_role: 512 ports is small enough for a flat array that is
// copied whole on write.
type roleTable struct {
	role    [p4.MaxPorts]uint8
	present [p4.MaxPorts]bool
	n       int
}

// snapshot is the complete forwarding state the data plane reads: immutable
// once published, replaced as a whole by Apply through an atomic pointer. A
// receive loop loads it once per batch, so every frame sees one consistent
// state and an atomic Apply is atomic for the data plane too.
type snapshot struct {
	pipe   *pipeline
	roles  *roleTable
	guard  cowMap[guardKey, struct{}]
	fib128 cowMap[[16]byte, *fibEntry]
	fib96  cowMap[[12]byte, *fibEntry]
	fib64  cowMap[uint64, *fibEntry]
	fib32  cowMap[uint32, *fibEntry]
	nh     cowMap[uint32, *selEntry] // keyed by the 16-bit group id
	li     cowMap[uint32, *selEntry]
	prof   [2]profile // profNH, profLI
}

// Indexes of the two selectors in snapshot.prof.
const (
	profNH = 0
	profLI = 1
)

func newSnapshot(pipe *pipeline) *snapshot {
	return &snapshot{pipe: pipe, roles: &roleTable{}}
}

// compileSelection builds the selection of a group from the profile's
// members; nil when the group is empty.
func compileSelection(ms []groupMember, lookup func(uint32) (*member, bool)) *selection {
	if len(ms) == 0 {
		return nil
	}
	s := &selection{acts: make([]memberAction, 0, len(ms)), cum: make([]uint32, 0, len(ms))}
	for _, gm := range ms {
		m, ok := lookup(gm.id)
		if !ok {
			// Validated on the way in; a vanished member would be a bug.
			continue
		}
		s.total += gm.weight
		s.acts = append(s.acts, m.act)
		s.cum = append(s.cum, s.total)
	}
	if s.total == 0 {
		return nil
	}
	return s
}

func singleSelection(act memberAction) *selection {
	return &selection{acts: []memberAction{act}, cum: []uint32{1}, total: 1}
}

// sortMembers sorts group members by id: the order the selector indexes.
func sortMembers(ms []groupMember) {
	slices.SortFunc(ms, func(a, b groupMember) int { return cmp.Compare(a.id, b.id) })
}
