package softswitch

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	p4cfg "github.com/p4lang/p4runtime/go/p4/config/v1"
	p4v1 "github.com/p4lang/p4runtime/go/p4/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/dmsc-mesh/dmsc/p4"
	"github.com/dmsc-mesh/dmsc/p4rt/p4info"
	"github.com/dmsc-mesh/dmsc/p4rt/server"
	"github.com/dmsc-mesh/dmsc/wire"
)

// Service keys of the tests: /shop = H1, /shop/cart = H1|H2, /shop/cart/v2 =
// H1|H2|H3, instance 7 of it = H1|H2|H3|7.
const (
	h1 = 0x11111111
	h2 = 0x22222222
	h3 = 0x33333333
)

var (
	kPod   = key(0xaaaaaaaa, 0xbbbbbbbb, 0, 5) // the pod on port 9
	kOther = key(0x99999999, 1, 2, 3)
)

// Ports of the tests: 1-4 fabric, 9 pod, 10 unconfigured.
var testPorts = []uint16{1, 2, 3, 4, 9, 10}

// fabric installs the roles, one single-member next hop per fabric port
// (group key = port) and a local instance group.
func fabric(r *rig) {
	r.t.Helper()
	var cs []*p4v1.Entity
	for _, p := range []uint16{1, 2, 3, 4} {
		cs = append(cs, r.portRole(p, p4.RoleFabric),
			r.nhMember(uint32(p), p, mac(byte(p))),
			r.group(p4.ProfileNexthop, uint32(p), wm{uint32(p), 1}),
			r.selGroup(p4.TableNexthop, p, uint32(p)))
	}
	cs = append(cs, r.portRole(9, p4.RolePod), r.srcGuard(9, kPod))
	r.apply(ins(cs...))
}

func TestVerifyPipeline(t *testing.T) {
	b := newP4B(t)
	sw := New(Config{})
	if err := sw.VerifyPipeline(b.schema, nil); err != nil {
		t.Fatalf("the DMSC P4Info: %v", err)
	}
	tests := []struct {
		name   string
		mutate func(*p4cfg.P4Info)
		want   []string
	}{
		{"missing table", func(i *p4cfg.P4Info) {
			i.Tables = i.Tables[1:] // port_role
		}, []string{`"DmscIngress.port_role"`}},
		{"narrow key", func(i *p4cfg.P4Info) {
			for _, t := range i.Tables {
				if t.Preamble.Name == p4.TableFIB96 {
					t.MatchFields[0].Bitwidth = 64
				}
			}
		}, []string{"fib_96", "bitwidth 64", "needs 96"}},
		{"missing counter and param", func(i *p4cfg.P4Info) {
			i.Counters = i.Counters[:0]
			for _, a := range i.Actions {
				if a.Preamble.Name == p4.ActionDeliverInstance {
					a.Params = a.Params[:2]
				}
			}
		}, []string{"port_rx", "drop_counter", "port_tx", `"dmac"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			info := proto.Clone(b.schema.P4Info()).(*p4cfg.P4Info)
			tt.mutate(info)
			s, err := p4info.New(info)
			if err != nil {
				t.Fatal(err)
			}
			err = sw.VerifyPipeline(s, nil)
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %s", err, w)
				}
			}
			if sw.CommitPipeline(s, nil) == nil {
				t.Error("CommitPipeline accepted it")
			}
		})
	}
	if err := sw.VerifyPipeline(nil, nil); err == nil {
		t.Error("nil schema accepted")
	}
}

func TestLongestPrefixAcrossTables(t *testing.T) {
	r := newRig(t, testPorts)
	fabric(r)
	full := key(h1, h2, h3, 7)
	r.apply(ins(
		r.fib(32, full, p4.ActionSetNexthopGroup, 1),
		r.fib(64, full, p4.ActionSetNexthopGroup, 2),
		r.fib(96, full, p4.ActionSetNexthopGroup, 3),
		r.fib(128, full, p4.ActionSetNexthopGroup, 4),
	))
	tests := []struct {
		dst  wire.Key
		port uint16
	}{
		{full, 4},
		{key(h1, h2, h3, 8), 3},
		{key(h1, h2, 9, 7), 2},
		{key(h1, 9, h3, 7), 1},
	}
	for _, tt := range tests {
		in := frameSpec{hop: 9, dst: tt.dst, src: kOther, payload: []byte("hello")}.bytes()
		r.send(1, in)
		out := r.expect(tt.port)
		if len(out) != len(in) {
			t.Fatalf("dst %x: %d bytes out, %d in", tt.dst, len(out), len(in))
		}
		if m := mac(byte(tt.port)); !bytes.Equal(out[:6], m[:]) {
			t.Errorf("dst %x: Ethernet dst %x, want %x", tt.dst, out[:6], m)
		}
		if out[offHopLimit] != 8 {
			t.Errorf("dst %x: hop limit %d, want 8", tt.dst, out[offHopLimit])
		}
		// Apart from the Ethernet dst and the hop limit, nothing changes.
		want := bytes.Clone(in)
		copy(want[:6], out[:6])
		want[offHopLimit] = 8
		if !bytes.Equal(out, want) {
			t.Errorf("dst %x: frame\n% x\nwant\n% x", tt.dst, out, want)
		}
	}
	r.send(1, frameSpec{hop: 9, dst: key(9, h2, h3, 7)}.bytes())
	r.waitDrop(dropNoRoute, 1)

	// Direct counters: each table's entry saw one frame.
	for _, plen := range []int{32, 64, 96, 128} {
		e := r.fib(plen, full, p4.ActionSetNexthopGroup, 0).GetTableEntry()
		cd, err := r.sw.DirectCounter(e)
		if err != nil {
			t.Fatal(err)
		}
		if cd.PacketCount != 1 || cd.ByteCount != int64(58+5) {
			t.Errorf("fib_%d counter: %v", plen, cd)
		}
	}
}

// spread sends n flows from port 1 to dst and counts the frames per port.
func spread(r *rig, dst wire.Key, n int, ports ...uint16) map[uint16]int {
	for i := range n {
		r.send(1, frameSpec{hop: 9, flow: uint32(i) * 2654435761, dst: dst, src: kOther}.bytes())
	}
	return collect(r, n, ports...)
}

// collect waits for n frames on ports and counts them per port.
func collect(r *rig, n int, ports ...uint16) map[uint16]int {
	r.t.Helper()
	got := map[uint16]int{}
	total := 0
	deadline := time.Now().Add(5 * time.Second)
	for total < n && time.Now().Before(deadline) {
		for _, p := range ports {
			for r.peers[p].Pending() > 0 {
				if _, err := r.peers[p].Recv(0); err == nil {
					got[p]++
					total++
				}
			}
		}
		time.Sleep(time.Millisecond)
	}
	if total != n {
		r.t.Fatalf("%d of %d frames arrived: %v", total, n, got)
	}
	return got
}

func TestECMPSpread(t *testing.T) {
	r := newRig(t, testPorts)
	fabric(r)
	r.apply(ins(
		r.group(p4.ProfileNexthop, 100, wm{1, 1}, wm{2, 1}, wm{3, 1}, wm{4, 1}),
		r.selGroup(p4.TableNexthop, 100, 100),
		r.fib(64, key(h1, h2, 0, 0), p4.ActionSetNexthopGroup, 100),
	))
	const n = 4000
	got := spread(r, key(h1, h2, 0, 0), n, 1, 2, 3, 4)
	for _, p := range []uint16{1, 2, 3, 4} {
		if share := float64(got[p]) / n; share < 0.20 || share > 0.30 {
			t.Errorf("port %d got %.1f%% of the flows, want about 25%%: %v", p, share*100, got)
		}
	}
	// One flow always takes one path.
	f := frameSpec{hop: 9, flow: 42, dst: key(h1, h2, 0, 0), src: kOther}.bytes()
	for range 20 {
		r.send(1, f)
	}
	if got := collect(r, 20, 1, 2, 3, 4); len(got) != 1 {
		t.Errorf("one flow took several paths: %v", got)
	}
}

func TestWCMPWeights(t *testing.T) {
	r := newRig(t, testPorts)
	fabric(r)
	r.apply(ins(
		r.group(p4.ProfileNexthop, 100, wm{2, 3}, wm{3, 1}),
		r.selGroup(p4.TableNexthop, 100, 100),
		r.fib(32, key(h1, 0, 0, 0), p4.ActionSetNexthopGroup, 100),
	))
	const n = 4000
	got := spread(r, key(h1, 5, 6, 7), n, 2, 3)
	if share := float64(got[2]) / n; share < 0.70 || share > 0.80 {
		t.Errorf("weight 3 of 4 got %.1f%%, want about 75%%: %v", share*100, got)
	}
}

func TestSelectorOrderIsByMemberID(t *testing.T) {
	// The documented selection: hash % total over members sorted by id,
	// each repeated weight times. Members listed out of order must give the
	// same choice as members listed in order.
	b := newP4B(t)
	for _, order := range [][]wm{{{1, 2}, {2, 1}, {3, 3}}, {{3, 3}, {1, 2}, {2, 1}}} {
		sw := New(Config{})
		if err := sw.CommitPipeline(b.schema, nil); err != nil {
			t.Fatal(err)
		}
		cs := ins(b.nhMember(1, 1, mac(1)), b.nhMember(2, 2, mac(2)), b.nhMember(3, 3, mac(3)),
			b.group(p4.ProfileNexthop, 7, order...), b.selGroup(p4.TableNexthop, 7, 7),
			b.fib(32, key(h1, 0, 0, 0), p4.ActionSetNexthopGroup, 7))
		for _, err := range sw.Apply(cs, true) {
			if err != nil {
				t.Fatal(err)
			}
		}
		sn := sw.snap.Load()
		for flow := range uint32(200) {
			f := frameSpec{hop: 9, flow: flow, dst: key(h1, 1, 1, 1), src: kOther}.bytes()
			h := flowHash(f, new([36]byte)) % 6
			want := uint16(1)
			switch {
			case h >= 3:
				want = 3
			case h >= 2:
				want = 2
			}
			v := ingress(sn, p4.CPUPort, f, uint64(len(f)), true, &work{now: time.Now})
			if v.kind != vOut || v.port != want {
				t.Fatalf("order %v flow %d: %+v, want port %d", order, flow, v, want)
			}
		}
	}
}

func TestDeliverInstanceRewrites(t *testing.T) {
	r := newRig(t, testPorts)
	fabric(r)
	r.apply(ins(
		r.instMember(1, 9, 7, mac(0x77)),
		r.group(p4.ProfileInstance, 50, wm{1, 1}),
		r.selGroup(p4.TableLocalInstance, 60, 50),
		r.fib(64, key(h1, h2, 0, 0), p4.ActionDeliverLocal, 60),
	))
	in := frameSpec{hop: 3, dst: key(h1, h2, 0, 0), src: kOther, payload: []byte{1, 2, 3}}.bytes()
	r.send(2, in)
	out := r.expect(9)
	if got, want := dstOf(out), key(h1, h2, 0, 7); got != want {
		t.Errorf("dst_key %x, want %x", got, want)
	}
	if m := mac(0x77); !bytes.Equal(out[:6], m[:]) {
		t.Errorf("Ethernet dst %x", out[:6])
	}
	if out[offHopLimit] != 2 {
		t.Errorf("hop limit %d", out[offHopLimit])
	}
	if srcOf(out) != kOther {
		t.Errorf("src_key changed")
	}
}

func TestSrcGuardAndRoles(t *testing.T) {
	r := newRig(t, testPorts)
	fabric(r)
	r.apply(ins(r.fib(32, key(h1, 0, 0, 0), p4.ActionSetNexthopGroup, 1)))
	dst := key(h1, 2, 3, 4)

	// The pod's own key passes; another key from the pod port does not.
	r.send(9, frameSpec{hop: 9, dst: dst, src: kPod}.bytes())
	r.expect(1)
	r.send(9, frameSpec{hop: 9, dst: dst, src: kOther}.bytes())
	r.waitDrop(dropSrcGuard, 1)
	// A fabric port has no guard.
	r.send(2, frameSpec{hop: 9, dst: dst, src: kOther}.bytes())
	r.expect(1)
	// A port without a role drops, except CONTROL, punted on any port.
	r.send(10, frameSpec{hop: 9, dst: dst, src: kOther}.bytes())
	r.waitDrop(dropPortUnconfigured, 1)
	r.send(10, frameSpec{typ: typeControl, hop: 0, dst: dst, src: kOther}.bytes())
	pin := r.packetIn()
	if got := pinMeta(r, pin); got != [2]uint64{10, uint64(wire.PuntControl)} {
		t.Errorf("packet-in metadata %v", got)
	}
}

func TestHopLimit(t *testing.T) {
	r := newRig(t, testPorts)
	fabric(r)
	r.apply(ins(r.fib(32, key(h1, 0, 0, 0), p4.ActionSetNexthopGroup, 1)))
	r.send(2, frameSpec{hop: 0, dst: key(h1, 1, 1, 1)}.bytes())
	r.waitDrop(dropHopLimit, 1)
	r.send(2, frameSpec{hop: 1, dst: key(h1, 1, 1, 1)}.bytes())
	if out := r.expect(1); out[offHopLimit] != 0 {
		t.Errorf("hop limit %d, want 0", out[offHopLimit])
	}
	// The hop limit is checked after the role: an unconfigured port counts
	// PortUnconfigured, not HopLimit.
	r.send(10, frameSpec{hop: 0, dst: key(h1, 1, 1, 1)}.bytes())
	r.waitDrop(dropPortUnconfigured, 1)
	r.waitDrop(dropHopLimit, 1)
}

func TestMalformedFramesCounted(t *testing.T) {
	base := frameSpec{hop: 9, dst: key(h1, 1, 1, 1), src: kOther}
	withType := func(typ uint8) frameSpec { f := base; f.typ = typ; return f }
	tests := []struct {
		name  string
		frame []byte
		want  wire.DropReason // 0: forwarded
	}{
		{"empty", nil, dropMalformed},
		{"13 bytes", make([]byte, 13), dropMalformed},
		{"not DMSC", append(make([]byte, 12), 0x08, 0x00, 0x45, 0), dropNotDMSC},
		{"short DMSC header", base.bytes()[:40], dropMalformed},
		{"bad version", func() []byte { f := base; f.version = 2; return f.bytes() }(), dropBadVersion},
		{"version 0", func() []byte { b := base.bytes(); b[offVerType] = 0x00; return b }(), dropBadVersion},
		{"bad type", withType(4).bytes(), dropBadType},
		{"type 15", withType(15).bytes(), dropBadType},
		{"short probe", withType(typeProbe).bytes()[:70], dropMalformed},
		{"short probe reply", withType(typeProbeReply).bytes()[:89], dropMalformed},
		{"payload_len too big", func() []byte { f := base; f.payload = []byte{1, 2, 3}; f.plenDelta = 1; return f.bytes() }(), dropBadLength},
		{"payload_len too small", func() []byte { f := base; f.payload = []byte{1, 2, 3}; f.plenDelta = -1; return f.bytes() }(), dropBadLength},
		{"padded to 60", append(base.bytes(), 0, 0), 0},
		{"padded past 60", append(base.bytes(), 0, 0, 0), dropBadLength},
		{"exact with payload", func() []byte { f := base; f.payload = make([]byte, 100); return f.bytes() }(), 0},
		{"probe without route is well-formed", withType(typeProbe).bytes(), 0},
		{"hop limit 0", func() []byte { f := base; f.hop = 0; return f.bytes() }(), dropHopLimit},
		{"bad length and hop 0", func() []byte { f := base; f.hop = 0; f.plenDelta = 5; return f.bytes() }(), dropBadLength},
	}
	r := newRig(t, testPorts)
	fabric(r)
	r.apply(ins(r.fib(32, key(h1, 0, 0, 0), p4.ActionSetNexthopGroup, 1)))
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := r.drops()
			r.send(2, tt.frame)
			if tt.want == 0 {
				r.expect(1)
				if after := r.drops(); after != before {
					t.Errorf("drop counters changed: %v → %v", before, after)
				}
				return
			}
			r.waitDrop(tt.want, before[tt.want]+1)
			after := r.drops()
			after[tt.want]--
			if after != before {
				t.Errorf("other drop counters changed: %v → %v", before, after)
			}
		})
	}
}

func TestFIBActions(t *testing.T) {
	r := newRig(t, testPorts)
	fabric(r)
	r.apply(ins(
		r.fib(32, key(1, 0, 0, 0), p4.ActionDrop, 0),
		r.fib(32, key(2, 0, 0, 0), p4.ActionToCPU, 0),
		r.fib(32, key(3, 0, 0, 0), p4.ActionSetNexthopGroup, 999), // no such nexthop entry
		r.fib(32, key(4, 0, 0, 0), p4.ActionDeliverLocal, 999),
	))
	r.send(2, frameSpec{hop: 9, dst: key(1, 5, 5, 5)}.bytes())
	r.waitDrop(dropFIB, 1)
	r.send(2, frameSpec{hop: 9, dst: key(3, 5, 5, 5)}.bytes())
	r.send(2, frameSpec{hop: 9, dst: key(4, 5, 5, 5)}.bytes())
	r.waitDrop(dropNoNexthop, 2)

	in := frameSpec{hop: 9, dst: key(2, 5, 5, 5), src: kOther}.bytes()
	r.send(3, in)
	pin := r.packetIn()
	if got := pinMeta(r, pin); got != [2]uint64{3, uint64(wire.PuntToCPU)} {
		t.Errorf("packet-in metadata %v", got)
	}
	want := bytes.Clone(in)
	want[offHopLimit] = 8 // to_cpu comes after the hop-limit decrement
	if !bytes.Equal(pin.Payload, want) {
		t.Errorf("packet-in payload\n% x\nwant\n% x", pin.Payload, want)
	}
	if pk, _ := r.counter(p4.CounterPortTx, p4.CPUPort); pk != 1 {
		t.Errorf("port_tx[CPU] = %d", pk)
	}
}

func TestEmptyGroupIsNoNexthop(t *testing.T) {
	r := newRig(t, testPorts)
	fabric(r)
	r.apply(ins(
		r.group(p4.ProfileNexthop, 100, wm{1, 1}),
		r.selGroup(p4.TableNexthop, 100, 100),
		r.fib(32, key(h1, 0, 0, 0), p4.ActionSetNexthopGroup, 100),
	))
	r.send(2, frameSpec{hop: 9, dst: key(h1, 1, 1, 1)}.bytes())
	r.expect(1)
	r.apply(changes(p4v1.Update_MODIFY, r.group(p4.ProfileNexthop, 100)))
	r.send(2, frameSpec{hop: 9, dst: key(h1, 1, 1, 1)}.bytes())
	r.waitDrop(dropNoNexthop, 1)
	// Members back: forwarding resumes; a member's new port is followed.
	r.apply(changes(p4v1.Update_MODIFY, r.group(p4.ProfileNexthop, 100, wm{1, 1})))
	r.apply(changes(p4v1.Update_MODIFY, r.nhMember(1, 3, mac(3))))
	r.send(2, frameSpec{hop: 9, dst: key(h1, 1, 1, 1)}.bytes())
	r.expect(3)
	// So does an entry naming a member directly.
	r.apply(changes(p4v1.Update_MODIFY, r.selMember(p4.TableNexthop, 100, 4)))
	r.send(2, frameSpec{hop: 9, dst: key(h1, 1, 1, 1)}.bytes())
	r.expect(4)
}

func pinMeta(r *rig, pin *p4v1.PacketIn) [2]uint64 {
	r.t.Helper()
	var out [2]uint64
	for _, m := range pin.Metadata {
		v, err := p4info.ToUint(m.Value)
		if err != nil {
			r.t.Fatal(err)
		}
		switch m.MetadataId {
		case r.metaID(p4.PacketIn, p4.MetaIngress):
			out[0] = v
		case r.metaID(p4.PacketIn, p4.MetaReason):
			out[1] = v
		default:
			r.t.Errorf("unknown packet-in metadata %d", m.MetadataId)
		}
	}
	return out
}

func TestProbeReflection(t *testing.T) {
	now := time.Date(2030, 1, 2, 3, 4, 5, 6, time.UTC)
	r := newRig(t, testPorts, func(c *Config) { c.Now = func() time.Time { return now } })
	fabric(r)
	r.apply(ins(
		r.instMember(1, 9, 7, mac(0x77)),
		r.group(p4.ProfileInstance, 50, wm{1, 1}),
		r.selGroup(p4.TableLocalInstance, 60, 50),
		r.fib(64, key(h1, h2, 0, 0), p4.ActionDeliverLocal, 60),
	))
	sender := key(0x5e, 0x5e, 0x5e, 1)
	in := frameSpec{dmac: mac(0xd0), smac: mac(0x50), typ: typeProbe, hop: 5, flow: 3,
		dst: key(h1, h2, 0, 0), src: sender, seq: 77, tTx: 12345}.bytes()
	r.send(2, in)
	out := r.expect(2) // back out of the ingress port
	if got := out[offVerType]; got != 0x10|typeProbeReply {
		t.Errorf("version/type %#x", got)
	}
	if out[offHopLimit] != p4.DefaultHopLimit {
		t.Errorf("hop limit %d", out[offHopLimit])
	}
	if dstOf(out) != sender || srcOf(out) != key(h1, h2, 0, 7) {
		t.Errorf("keys dst %x src %x: want the sender and the instance that answered", dstOf(out), srcOf(out))
	}
	ns := uint64(now.UnixNano())
	if got := binary.BigEndian.Uint64(out[offTRx:]); got != ns {
		t.Errorf("t_rx %d, want %d", got, ns)
	}
	if got := binary.BigEndian.Uint64(out[offTReply:]); got != ns {
		t.Errorf("t_reply %d, want %d", got, ns)
	}
	if got := binary.BigEndian.Uint64(out[offProbe+8:]); got != 12345 {
		t.Errorf("t_tx %d", got)
	}
	if src, dst := mac(0x77), mac(0x50); !bytes.Equal(out[0:6], dst[:]) || !bytes.Equal(out[6:12], src[:]) {
		t.Errorf("Ethernet dst %x src %x", out[0:6], out[6:12])
	}

	// A probe from the CPU to a local instance comes back to the CPU.
	pkt := &p4v1.PacketOut{Payload: in, Metadata: r.poutMeta(0, p4.OutRoute)}
	if err := r.sw.PacketOut(pkt); err != nil {
		t.Fatal(err)
	}
	pin := r.packetIn()
	if got := pinMeta(r, pin); got != [2]uint64{p4.CPUPort, uint64(wire.PuntToCPU)} {
		t.Errorf("packet-in metadata %v", got)
	}
	if pin.Payload[offVerType] != 0x10|typeProbeReply || dstOf(pin.Payload) != sender {
		t.Errorf("punted reply % x", pin.Payload)
	}
}

func (b *p4b) poutMeta(port, mode uint64) []*p4v1.PacketMetadata {
	return []*p4v1.PacketMetadata{
		{MetadataId: b.metaID(p4.PacketOut, p4.MetaEgressPort), Value: u(port)},
		{MetadataId: b.metaID(p4.PacketOut, p4.MetaMode), Value: u(mode)},
	}
}

func TestPacketOut(t *testing.T) {
	r := newRig(t, testPorts)
	fabric(r)
	r.apply(ins(r.fib(32, key(h1, 0, 0, 0), p4.ActionSetNexthopGroup, 3)))

	// Direct: any bytes, unchanged, port_tx counts the packet_out header.
	raw := []byte("not even a DMSC frame")
	if err := r.sw.PacketOut(&p4v1.PacketOut{Payload: raw, Metadata: r.poutMeta(2, p4.OutDirect)}); err != nil {
		t.Fatal(err)
	}
	if out := r.expect(2); !bytes.Equal(out, raw) {
		t.Errorf("direct packet-out changed: %q", out)
	}
	if pk, by := r.counter(p4.CounterPortTx, 2); pk != 1 || by != int64(len(raw)+4) {
		t.Errorf("port_tx[2] = %d packets %d bytes", pk, by)
	}
	if pk, _ := r.counter(p4.CounterPortRx, p4.CPUPort); pk != 0 {
		t.Errorf("port_rx[CPU] counted a packet-out")
	}

	// Routed: through the FIB, without port_role (the CPU has none).
	in := frameSpec{hop: 9, dst: key(h1, 1, 1, 1), src: kOther}.bytes()
	if err := r.sw.PacketOut(&p4v1.PacketOut{Payload: in, Metadata: r.poutMeta(0, p4.OutRoute)}); err != nil {
		t.Fatal(err)
	}
	out := r.expect(3)
	if out[offHopLimit] != 8 {
		t.Errorf("hop limit %d", out[offHopLimit])
	}
	if in[offHopLimit] != 9 {
		t.Error("PacketOut modified the caller's payload")
	}
	// Routed CONTROL frames are not punted: the CPU sent them.
	ctl := frameSpec{typ: typeControl, hop: 9, dst: key(h1, 1, 1, 1)}.bytes()
	if err := r.sw.PacketOut(&p4v1.PacketOut{Payload: ctl, Metadata: r.poutMeta(0, p4.OutRoute)}); err != nil {
		t.Fatal(err)
	}
	r.expect(3)
	// Routed but malformed: dropped and counted with the header's 4 bytes.
	if err := r.sw.PacketOut(&p4v1.PacketOut{Payload: []byte{1, 2, 3}, Metadata: r.poutMeta(0, p4.OutRoute)}); err != nil {
		t.Fatal(err)
	}
	if pk, by := r.sw.DropCount(dropMalformed); pk != 1 || by != 7 {
		t.Errorf("malformed packet-out counted %d/%d", pk, by)
	}
	// egress_port is cast to 9 bits, as in dmsc.p4.
	if err := r.sw.PacketOut(&p4v1.PacketOut{Payload: raw, Metadata: r.poutMeta(512+4, p4.OutDirect)}); err != nil {
		t.Fatal(err)
	}
	r.expect(4)
	// To v1model's drop port: dropped as port_down, counted without the
	// packet_out header (as BMv2 counts it; bmv2-tests checks).
	if err := r.sw.PacketOut(&p4v1.PacketOut{Payload: raw, Metadata: r.poutMeta(dropPort, p4.OutDirect)}); err != nil {
		t.Fatal(err)
	}
	r.waitDrop(dropPortDown, 1)
	if _, by := r.sw.DropCount(dropPortDown); by != uint64(len(raw)) {
		t.Errorf("drop-port packet-out counted %d bytes, want %d", by, len(raw))
	}
}

// TestCPUPortOrder: frames a route sends to the CPU port and frames punted
// reach the controller in the order they arrived, within one batch too (as
// BMv2 keeps them).
func TestCPUPortOrder(t *testing.T) {
	r := newRig(t, testPorts)
	fabric(r)
	r.apply(ins(
		r.nhMember(255, p4.CPUPort, mac(255)),
		r.selMember(p4.TableNexthop, 255, 255),
		r.fib(32, key(h1, 0, 0, 0), p4.ActionSetNexthopGroup, 255),
	))
	var batch []Message
	for i := range 6 {
		f := frameSpec{hop: 9, dst: key(h1, 1, 1, uint32(i)), src: kOther}
		if i%2 == 0 {
			f.typ = typeControl
		}
		b := f.bytes()
		batch = append(batch, Message{Buf: b, N: len(b)})
	}
	if n, err := r.peers[2].WriteBatch(batch); err != nil || n != len(batch) {
		t.Fatalf("WriteBatch: %d, %v", n, err)
	}
	for i := range 6 {
		payload := r.packetIn().Payload
		if i%2 == 1 {
			// Sent to the CPU port without a packet_in header: its first four
			// bytes were read as that header (toCPURaw).
			payload = append(make([]byte, 4), payload...)
		}
		if got := dstOf(payload); got != key(h1, 1, 1, uint32(i)) {
			t.Fatalf("packet-in %d is the frame to %v, want the frame to %v", i, got, key(h1, 1, 1, uint32(i)))
		}
	}
}

func TestPortDown(t *testing.T) {
	r := newRig(t, testPorts)
	fabric(r)
	r.apply(ins(
		r.fib(32, key(h1, 0, 0, 0), p4.ActionSetNexthopGroup, 1),
		r.nhMember(77, 77, mac(77)), // a port that does not exist
		r.selMember(p4.TableNexthop, 77, 77),
		r.fib(32, key(h2, 0, 0, 0), p4.ActionSetNexthopGroup, 77),
	))
	f := frameSpec{hop: 9, dst: key(h1, 1, 1, 1)}.bytes()
	var carrier []string // what the P4Runtime server would be told
	var cmu sync.Mutex
	r.sw.SetPortStatusSink(func(port uint32, up bool) {
		cmu.Lock()
		defer cmu.Unlock()
		carrier = append(carrier, fmt.Sprintf("%d:%v", port, up))
	})
	if err := r.sw.SetPortUp(1, false); err != nil {
		t.Fatal(err)
	}
	if err := r.sw.SetPortUp(1, false); err != nil { // no change: no report
		t.Fatal(err)
	}
	r.send(2, f)
	r.waitDrop(dropPortDown, 1)
	r.expectNone(1, 20*time.Millisecond)
	if err := r.sw.SetPortUp(1, true); err != nil {
		t.Fatal(err)
	}
	r.send(2, f)
	r.expect(1)
	r.send(2, frameSpec{hop: 9, dst: key(h2, 1, 1, 1)}.bytes())
	r.waitDrop(dropPortDown, 2)
	st, err := r.sw.PortStats(1)
	if err != nil {
		t.Fatal(err)
	}
	if st.TxDown != 1 || st.TxFrames != 1 || !st.Up {
		t.Errorf("port 1 stats %+v", st)
	}
	// port_tx counts what the egress pipeline sent, as on BMv2.
	if pk, _ := r.counter(p4.CounterPortTx, 77); pk != 1 {
		t.Errorf("port_tx[77] = %d", pk)
	}
	// A port that is down receives nothing.
	r.sw.SetPortUp(2, false)
	r.send(2, f)
	time.Sleep(20 * time.Millisecond)
	r.expectNone(1, 10*time.Millisecond)
	if pk, _ := r.counter(p4.CounterPortRx, 2); pk != 3 {
		t.Errorf("port_rx[2] = %d, want 3", pk)
	}
	cmu.Lock()
	defer cmu.Unlock()
	if got := strings.Join(carrier, " "); got != "1:false 1:true 2:false" {
		t.Errorf("carrier reports %q", got)
	}
}

func TestCounters(t *testing.T) {
	r := newRig(t, testPorts)
	fabric(r)
	r.apply(ins(r.fib(64, key(h1, h2, 0, 0), p4.ActionSetNexthopGroup, 1)))
	f := frameSpec{hop: 9, dst: key(h1, h2, 1, 1), payload: make([]byte, 42)}.bytes()
	for range 3 {
		r.send(2, f)
		r.expect(1)
	}
	r.send(2, []byte{1})
	r.waitDrop(dropMalformed, 1)
	n := int64(len(f))
	for _, c := range []struct {
		name          string
		index         int64
		packets, byts int64
	}{
		{p4.CounterPortRx, 2, 4, 3*n + 1},
		{p4.CounterPortTx, 1, 3, 3 * n},
		{p4.CounterPortTx, 2, 0, 0},
		{p4.CounterDrop, int64(dropMalformed), 1, 1},
	} {
		if pk, by := r.counter(c.name, c.index); pk != c.packets || by != c.byts {
			t.Errorf("%s[%d] = %d/%d, want %d/%d", c.name, c.index, pk, by, c.packets, c.byts)
		}
	}
	if _, err := r.sw.Counter(r.counterID(p4.CounterDrop), 16); status.Code(err) != codes.OutOfRange {
		t.Errorf("drop_counter[16]: %v", err)
	}
	if _, err := r.sw.Counter(12345, 0); status.Code(err) != codes.NotFound {
		t.Errorf("unknown counter: %v", err)
	}
	// The direct counter survives a MODIFY of its entry.
	e := r.fib(64, key(h1, h2, 0, 0), p4.ActionSetNexthopGroup, 2)
	r.apply(changes(p4v1.Update_MODIFY, e))
	r.send(2, f)
	r.expect(2)
	cd, err := r.sw.DirectCounter(e.GetTableEntry())
	if err != nil {
		t.Fatal(err)
	}
	if cd.PacketCount != 4 || cd.ByteCount != 4*n {
		t.Errorf("direct counter after MODIFY %v", cd)
	}
	// And starts again after DELETE and INSERT.
	r.apply(changes(p4v1.Update_DELETE, e))
	r.apply(ins(e))
	if cd, _ := r.sw.DirectCounter(e.GetTableEntry()); cd.PacketCount != 0 {
		t.Errorf("direct counter after re-insert %v", cd)
	}
	if _, err := r.sw.DirectCounter(r.fib(32, key(9, 0, 0, 0), p4.ActionDrop, 0).GetTableEntry()); status.Code(err) != codes.NotFound {
		t.Errorf("direct counter of a missing entry: %v", err)
	}
	// A new pipeline starts from zero.
	if err := r.sw.CommitPipeline(r.schema, nil); err != nil {
		t.Fatal(err)
	}
	if pk, _ := r.counter(p4.CounterPortRx, 2); pk != 0 {
		t.Errorf("port_rx after commit %d", pk)
	}
}

func TestApplyErrors(t *testing.T) {
	b := newP4B(t)
	sw := New(Config{})
	if errs := sw.Apply(ins(b.portRole(1, 2)), false); status.Code(errs[0]) != codes.FailedPrecondition {
		t.Fatalf("Apply before a pipeline: %v", errs)
	}
	if err := sw.CommitPipeline(b.schema, nil); err != nil {
		t.Fatal(err)
	}
	mustApply := func(cs []server.Change) {
		t.Helper()
		for i, err := range sw.Apply(cs, true) {
			if err != nil {
				t.Fatalf("change %d: %v", i, err)
			}
		}
	}
	mustApply(ins(b.nhMember(1, 1, mac(1)), b.group(p4.ProfileNexthop, 10, wm{1, 1}),
		b.selGroup(p4.TableNexthop, 5, 10), b.portRole(1, 2)))

	badWidth := b.portRole(1, 2)
	badWidth.GetTableEntry().Match[0].GetExact().Value = []byte{2, 0} // 512: 10 bits
	wrongAction := b.fib(32, key(1, 0, 0, 0), p4.ActionDrop, 0)
	wrongAction.GetTableEntry().Action = &p4v1.TableAction{Type: &p4v1.TableAction_Action{Action: b.action(p4.ActionAllow, nil)}}
	tests := []struct {
		name string
		typ  p4v1.Update_Type
		e    *p4v1.Entity
		code codes.Code
	}{
		{"insert twice", p4v1.Update_INSERT, b.portRole(1, 2), codes.AlreadyExists},
		{"modify missing", p4v1.Update_MODIFY, b.portRole(2, 2), codes.NotFound},
		{"delete missing", p4v1.Update_DELETE, b.fib(32, key(1, 0, 0, 0), p4.ActionDrop, 0), codes.NotFound},
		{"key too wide", p4v1.Update_INSERT, badWidth, codes.InvalidArgument},
		{"action not in table", p4v1.Update_INSERT, wrongAction, codes.InvalidArgument},
		{"member in use", p4v1.Update_DELETE, b.nhMember(1, 1, mac(1)), codes.FailedPrecondition},
		{"group in use", p4v1.Update_DELETE, b.group(p4.ProfileNexthop, 10), codes.FailedPrecondition},
		{"group with missing member", p4v1.Update_INSERT, b.group(p4.ProfileNexthop, 11, wm{9, 1}), codes.NotFound},
		{"negative weight", p4v1.Update_INSERT, b.group(p4.ProfileNexthop, 11, wm{1, -1}), codes.InvalidArgument},
		{"entry to missing group", p4v1.Update_INSERT, b.selGroup(p4.TableNexthop, 6, 99), codes.NotFound},
		{"member of the wrong selector", p4v1.Update_INSERT, func() *p4v1.Entity {
			e := b.nhMember(2, 1, mac(1))
			e.GetActionProfileMember().ActionProfileId = b.profileID(p4.ProfileInstance)
			return e
		}(), codes.InvalidArgument},
		{"unknown table", p4v1.Update_INSERT, tableEntity(&p4v1.TableEntry{TableId: 1}), codes.NotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			errs := sw.Apply(changes(tt.typ, tt.e), false)
			if len(errs) != 1 || status.Code(errs[0]) != tt.code {
				t.Errorf("got %v, want %v", errs, tt.code)
			}
		})
	}
	// Non-atomic: the good changes around a bad one apply.
	errs := sw.Apply(ins(b.portRole(2, 2), b.portRole(1, 2), b.portRole(3, 2)), false)
	if errs[0] != nil || status.Code(errs[1]) != codes.AlreadyExists || errs[2] != nil {
		t.Fatalf("non-atomic: %v", errs)
	}
	if roles := sw.snap.Load().roles; !roles.present[2] || !roles.present[3] {
		t.Error("non-atomic batch lost its good changes")
	}
	// Atomic: nothing applies, the valid changes report ABORTED.
	errs = sw.Apply(ins(b.portRole(4, 2), b.portRole(1, 2)), true)
	if status.Code(errs[0]) != codes.Aborted || status.Code(errs[1]) != codes.AlreadyExists {
		t.Fatalf("atomic: %v", errs)
	}
	if sw.snap.Load().roles.present[4] {
		t.Error("atomic batch partly applied")
	}
	// Deleting in the right order works: entry, group, member.
	mustApply(changes(p4v1.Update_DELETE, b.selGroup(p4.TableNexthop, 5, 10), b.group(p4.ProfileNexthop, 10), b.nhMember(1, 1, mac(1))))
}

func TestAtomicApplyVisibility(t *testing.T) {
	b := newP4B(t)
	sw := New(Config{})
	if err := sw.CommitPipeline(b.schema, nil); err != nil {
		t.Fatal(err)
	}
	setup := ins(b.nhMember(1, 1, mac(1)), b.nhMember(2, 2, mac(2)),
		b.selMember(p4.TableNexthop, 1, 1), b.selMember(p4.TableNexthop, 2, 2),
		b.fib(32, key(1, 0, 0, 0), p4.ActionSetNexthopGroup, 1),
		b.fib(32, key(2, 0, 0, 0), p4.ActionSetNexthopGroup, 1))
	for _, err := range sw.Apply(setup, true) {
		if err != nil {
			t.Fatal(err)
		}
	}
	// A writer flips both routes between the two next hops in atomic
	// batches; a reader processes the two frames against one snapshot each
	// time, as a receive loop does, and must never see them disagree.
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			g := uint16(1 + i%2)
			cs := changes(p4v1.Update_MODIFY,
				b.fib(32, key(1, 0, 0, 0), p4.ActionSetNexthopGroup, g),
				b.fib(32, key(2, 0, 0, 0), p4.ActionSetNexthopGroup, g))
			for _, err := range sw.Apply(cs, true) {
				if err != nil {
					t.Error(err)
					return
				}
			}
		}
	}()
	f1 := frameSpec{hop: 200, dst: key(1, 1, 1, 1)}.bytes()
	f2 := frameSpec{hop: 200, dst: key(2, 1, 1, 1)}.bytes()
	clk := &work{now: time.Now}
	seen := map[uint16]bool{}
	for range 20000 {
		sn := sw.snap.Load()
		f1[offHopLimit], f2[offHopLimit] = 9, 9
		v1 := ingress(sn, p4.CPUPort, f1, 60, true, clk)
		v2 := ingress(sn, p4.CPUPort, f2, 60, true, clk)
		if v1 != v2 {
			t.Fatalf("one snapshot, two answers: %+v %+v", v1, v2)
		}
		seen[v1.port] = true
	}
	close(stop)
	<-done
	if len(seen) != 2 {
		t.Logf("reader saw ports %v (the writer was slow)", seen)
	}
}

func TestNoPipelineDropsQuietly(t *testing.T) {
	sw := New(Config{})
	a, b := NewMemPair()
	if err := sw.AddPort(1, a); err != nil {
		t.Fatal(err)
	}
	if err := sw.PacketOut(&p4v1.PacketOut{}); status.Code(err) != codes.FailedPrecondition {
		t.Errorf("PacketOut without pipeline: %v", err)
	}
	ctx, cancel := contextWithCleanup(t)
	done := make(chan error, 1)
	go func() { done <- sw.Run(ctx) }()
	b.Send(frameSpec{hop: 1}.bytes())
	deadline := time.Now().Add(2 * time.Second)
	for {
		st, _ := sw.PortStats(1)
		if st.RxNoPipeline == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("stats %+v", st)
		}
		time.Sleep(time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := sw.Close(); err != nil {
		t.Fatal(err)
	}
}
