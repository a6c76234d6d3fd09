package softswitch

import (
	"context"
	"encoding/binary"
	"sync"
	"testing"
	"time"

	p4v1 "github.com/p4lang/p4runtime/go/p4/v1"

	"github.com/dmsc-mesh/dmsc/p4"
	"github.com/dmsc-mesh/dmsc/p4rt/p4info"
	"github.com/dmsc-mesh/dmsc/p4rt/server"
	"github.com/dmsc-mesh/dmsc/wire"
)

// P4Runtime messages built from the real DMSC P4Info, ids by name.

type p4b struct {
	t      testing.TB
	schema *p4info.Schema
}

func newP4B(t testing.TB) *p4b {
	t.Helper()
	s, err := p4.Schema()
	if err != nil {
		t.Fatal(err)
	}
	return &p4b{t: t, schema: s}
}

func (b *p4b) tableID(name string) uint32 {
	t, err := b.schema.Table(name)
	if err != nil {
		b.t.Fatal(err)
	}
	return t.Preamble.Id
}

func (b *p4b) field(table, name string) uint32 {
	t, err := b.schema.Table(table)
	if err != nil {
		b.t.Fatal(err)
	}
	f, err := t.Field(name)
	if err != nil {
		b.t.Fatal(err)
	}
	return f.Id
}

func (b *p4b) action(name string, params map[string][]byte) *p4v1.Action {
	a, err := b.schema.Action(name)
	if err != nil {
		b.t.Fatal(err)
	}
	out := &p4v1.Action{ActionId: a.Preamble.Id}
	for _, p := range a.Params { // P4Info order, deterministic
		v, ok := params[p.Name]
		if !ok {
			b.t.Fatalf("action %s: parameter %s missing", name, p.Name)
		}
		out.Params = append(out.Params, &p4v1.Action_Param{ParamId: p.Id, Value: p4info.Canonical(v)})
	}
	return out
}

func (b *p4b) profileID(name string) uint32 {
	p, err := b.schema.ActionProfile(name)
	if err != nil {
		b.t.Fatal(err)
	}
	return p.Preamble.Id
}

func (b *p4b) counterID(name string) uint32 {
	c, err := b.schema.Counter(name)
	if err != nil {
		b.t.Fatal(err)
	}
	return c.Preamble.Id
}

func (b *p4b) metaID(header, name string) uint32 {
	pm, err := b.schema.PacketMetadata(header)
	if err != nil {
		b.t.Fatal(err)
	}
	f, err := pm.Field(name)
	if err != nil {
		b.t.Fatal(err)
	}
	return f.Id
}

func exact(id uint32, v []byte) *p4v1.FieldMatch {
	return &p4v1.FieldMatch{FieldId: id, FieldMatchType: &p4v1.FieldMatch_Exact_{Exact: &p4v1.FieldMatch_Exact{Value: p4info.Canonical(v)}}}
}

func tableEntity(te *p4v1.TableEntry) *p4v1.Entity {
	return &p4v1.Entity{Entity: &p4v1.Entity_TableEntry{TableEntry: te}}
}

func u(v uint64) []byte { return p4info.Uint(v) }

func mac(last byte) [6]byte { return [6]byte{0x02, 0, 0, 0, 0, last} }

func (b *p4b) portRole(port uint16, role uint8) *p4v1.Entity {
	return tableEntity(&p4v1.TableEntry{
		TableId: b.tableID(p4.TablePortRole),
		Match:   []*p4v1.FieldMatch{exact(b.field(p4.TablePortRole, p4.FieldPort), u(uint64(port)))},
		Action:  &p4v1.TableAction{Type: &p4v1.TableAction_Action{Action: b.action(p4.ActionSetPortRole, map[string][]byte{p4.ParamRole: u(uint64(role))})}},
	})
}

func (b *p4b) srcGuard(port uint16, key wire.Key) *p4v1.Entity {
	return tableEntity(&p4v1.TableEntry{
		TableId: b.tableID(p4.TableSrcGuard),
		Match: []*p4v1.FieldMatch{
			exact(b.field(p4.TableSrcGuard, p4.FieldPort), u(uint64(port))),
			exact(b.field(p4.TableSrcGuard, p4.FieldSrcKey), key[:]),
		},
		Action: &p4v1.TableAction{Type: &p4v1.TableAction_Action{Action: b.action(p4.ActionAllow, nil)}},
	})
}

// fibTable returns the name of the FIB table for a prefix length.
func fibTable(plen int) string {
	for _, f := range p4.FIBTables {
		if f.PrefixLen == plen {
			return f.Name
		}
	}
	panic("bad prefix length")
}

// fib builds a FIB entry for the first plen bits of key. action is one of the
// four FIB action names; group is its parameter where it takes one.
func (b *p4b) fib(plen int, key wire.Key, action string, group uint16) *p4v1.Entity {
	name := fibTable(plen)
	var params map[string][]byte
	if action == p4.ActionSetNexthopGroup || action == p4.ActionDeliverLocal {
		params = map[string][]byte{p4.ParamGroupID: u(uint64(group))}
	}
	return tableEntity(&p4v1.TableEntry{
		TableId: b.tableID(name),
		Match:   []*p4v1.FieldMatch{exact(b.field(name, p4.FieldDstKey), key[:plen/8])},
		Action:  &p4v1.TableAction{Type: &p4v1.TableAction_Action{Action: b.action(action, params)}},
	})
}

func (b *p4b) nhMember(id uint32, port uint16, dmac [6]byte) *p4v1.Entity {
	return &p4v1.Entity{Entity: &p4v1.Entity_ActionProfileMember{ActionProfileMember: &p4v1.ActionProfileMember{
		ActionProfileId: b.profileID(p4.ProfileNexthop),
		MemberId:        id,
		Action:          b.action(p4.ActionSetNexthop, map[string][]byte{p4.ParamPort: u(uint64(port)), p4.ParamDmac: dmac[:]}),
	}}}
}

func (b *p4b) instMember(id uint32, port uint16, instance uint32, dmac [6]byte) *p4v1.Entity {
	return &p4v1.Entity{Entity: &p4v1.Entity_ActionProfileMember{ActionProfileMember: &p4v1.ActionProfileMember{
		ActionProfileId: b.profileID(p4.ProfileInstance),
		MemberId:        id,
		Action: b.action(p4.ActionDeliverInstance, map[string][]byte{
			p4.ParamPort: u(uint64(port)), p4.ParamInstance: u(uint64(instance)), p4.ParamDmac: dmac[:]}),
	}}}
}

type wm struct {
	id     uint32
	weight int32
}

func (b *p4b) group(profile string, id uint32, members ...wm) *p4v1.Entity {
	g := &p4v1.ActionProfileGroup{ActionProfileId: b.profileID(profile), GroupId: id}
	for _, m := range members {
		g.Members = append(g.Members, &p4v1.ActionProfileGroup_Member{MemberId: m.id, Weight: m.weight})
	}
	return &p4v1.Entity{Entity: &p4v1.Entity_ActionProfileGroup{ActionProfileGroup: g}}
}

// selGroup is an entry of nexthop or local_instance naming a group.
func (b *p4b) selGroup(table string, key uint16, group uint32) *p4v1.Entity {
	return tableEntity(&p4v1.TableEntry{
		TableId: b.tableID(table),
		Match:   []*p4v1.FieldMatch{exact(b.field(table, p4.FieldGroupID), u(uint64(key)))},
		Action:  &p4v1.TableAction{Type: &p4v1.TableAction_ActionProfileGroupId{ActionProfileGroupId: group}},
	})
}

// selMember is an entry of nexthop or local_instance naming one member.
func (b *p4b) selMember(table string, key uint16, member uint32) *p4v1.Entity {
	return tableEntity(&p4v1.TableEntry{
		TableId: b.tableID(table),
		Match:   []*p4v1.FieldMatch{exact(b.field(table, p4.FieldGroupID), u(uint64(key)))},
		Action:  &p4v1.TableAction{Type: &p4v1.TableAction_ActionProfileMemberId{ActionProfileMemberId: member}},
	})
}

func ins(es ...*p4v1.Entity) []server.Change {
	return changes(p4v1.Update_INSERT, es...)
}

func changes(typ p4v1.Update_Type, es ...*p4v1.Entity) []server.Change {
	out := make([]server.Change, len(es))
	for i, e := range es {
		out[i] = server.Change{Type: typ, Entity: e}
	}
	return out
}

// Frames.

type frameSpec struct {
	dmac, smac [6]byte
	etherType  uint16 // default 0x88B5
	version    uint8  // default 1
	typ        uint8
	hop        uint8
	flow       uint32
	dst, src   wire.Key
	payload    []byte
	seq        uint32 // probes
	tTx        uint64 // probes
	plenDelta  int    // added to payload_len (to make length errors)
}

func (fs frameSpec) bytes() []byte {
	et := fs.etherType
	if et == 0 {
		et = 0x88B5
	}
	v := fs.version
	if v == 0 {
		v = 1
	}
	b := make([]byte, 0, 90+len(fs.payload))
	b = append(b, fs.dmac[:]...)
	b = append(b, fs.smac[:]...)
	b = binary.BigEndian.AppendUint16(b, et)
	b = append(b, v<<4|fs.typ&0x0f, 0, fs.hop, 0)
	b = binary.BigEndian.AppendUint32(b, fs.flow)
	b = binary.BigEndian.AppendUint16(b, uint16(len(fs.payload)+fs.plenDelta))
	b = append(b, 0, 0)
	b = append(b, fs.dst[:]...)
	b = append(b, fs.src[:]...)
	if fs.typ == typeProbe || fs.typ == typeProbeReply {
		b = binary.BigEndian.AppendUint32(b, fs.seq)
		b = binary.BigEndian.AppendUint32(b, 0)
		b = binary.BigEndian.AppendUint64(b, fs.tTx)
		b = binary.BigEndian.AppendUint64(b, 0)
		b = binary.BigEndian.AppendUint64(b, 0)
	}
	return append(b, fs.payload...)
}

func key(a, b, c, d uint32) wire.Key {
	var k wire.Key
	binary.BigEndian.PutUint32(k[0:], a)
	binary.BigEndian.PutUint32(k[4:], b)
	binary.BigEndian.PutUint32(k[8:], c)
	binary.BigEndian.PutUint32(k[12:], d)
	return k
}

func dstOf(b []byte) wire.Key { return wire.Key(b[offDstKey : offDstKey+16]) }
func srcOf(b []byte) wire.Key { return wire.Key(b[offSrcKey : offSrcKey+16]) }

// contextWithCleanup is a context cancelled at the end of the test at the
// latest.
func contextWithCleanup(t testing.TB) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	return ctx, cancel
}

// A running switch with memory ports.

type rig struct {
	*p4b
	t     testing.TB
	sw    *Switch
	peers map[uint16]*MemPort // the test's ends

	mu    sync.Mutex
	pins  []*p4v1.PacketIn
	pinCh chan *p4v1.PacketIn
}

type rigOpt func(*Config)

// newRig starts a switch with the DMSC pipeline and memory ports numbered
// ports, running until the test ends.
func newRig(t testing.TB, ports []uint16, opts ...rigOpt) *rig {
	t.Helper()
	cfg := Config{}
	for _, o := range opts {
		o(&cfg)
	}
	r := &rig{p4b: newP4B(t), t: t, sw: New(cfg), peers: map[uint16]*MemPort{}, pinCh: make(chan *p4v1.PacketIn, 1024)}
	if err := r.sw.CommitPipeline(r.schema, nil); err != nil {
		t.Fatal(err)
	}
	r.sw.SetPacketInSink(func(p *p4v1.PacketIn) {
		select {
		case r.pinCh <- p:
		default:
			t.Error("packet-in channel full")
		}
	})
	for _, n := range ports {
		a, b := NewMemPair()
		if err := r.sw.AddPort(n, a); err != nil {
			t.Fatal(err)
		}
		r.peers[n] = b
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.sw.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
		if err := r.sw.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return r
}

func (r *rig) apply(cs []server.Change) {
	r.t.Helper()
	for i, err := range r.sw.Apply(cs, true) {
		if err != nil {
			r.t.Fatalf("change %d: %v", i, err)
		}
	}
}

func (r *rig) send(port uint16, frame []byte) {
	r.t.Helper()
	if err := r.peers[port].Send(frame); err != nil {
		r.t.Fatal(err)
	}
}

func (r *rig) expect(port uint16) []byte {
	r.t.Helper()
	f, err := r.peers[port].Recv(2 * time.Second)
	if err != nil {
		r.t.Fatalf("port %d: no frame: %v", port, err)
	}
	return f
}

func (r *rig) expectNone(port uint16, d time.Duration) {
	r.t.Helper()
	if f, err := r.peers[port].Recv(d); err == nil {
		r.t.Fatalf("port %d: unexpected frame % x", port, f)
	}
}

func (r *rig) packetIn() *p4v1.PacketIn {
	r.t.Helper()
	select {
	case p := <-r.pinCh:
		return p
	case <-time.After(2 * time.Second):
		r.t.Fatal("no packet-in")
		return nil
	}
}

// waitDrop waits until drop_counter[reason] reaches n packets.
func (r *rig) waitDrop(reason wire.DropReason, n uint64) {
	r.t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for {
		got, _ := r.sw.DropCount(reason)
		if got >= n {
			if got > n {
				r.t.Fatalf("drop reason %d: %d drops, want %d", reason, got, n)
			}
			return
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("drop reason %d: %d drops, want %d", reason, got, n)
		}
		time.Sleep(time.Millisecond)
	}
}

// drops returns every drop counter's packets.
func (r *rig) drops() [numDropReasons]uint64 {
	var out [numDropReasons]uint64
	for i := range out {
		out[i], _ = r.sw.DropCount(wire.DropReason(i))
	}
	return out
}

func (r *rig) counter(name string, index int64) (packets, bytes int64) {
	r.t.Helper()
	cd, err := r.sw.Counter(r.counterID(name), index)
	if err != nil {
		r.t.Fatal(err)
	}
	return cd.PacketCount, cd.ByteCount
}
