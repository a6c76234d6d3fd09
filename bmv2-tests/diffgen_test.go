package bmv2tests

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"

	"github.com/dmsc-mesh/dmsc/p4"
	"github.com/dmsc-mesh/dmsc/wire"
)

// The differential test's addressing plan: every FIB table, every FIB
// action, every way a group lookup can end.
var (
	keyAlpha   = nameKey("/diff/alpha")                   // fib_64 → group {port 2}
	keyAlphaV2 = nameKey("/diff/alpha/v2")                // fib_96 → group {port 3}: longer than alpha
	keyBeta    = nameKey("/diff/beta")                    // fib_64 → ECMP {2, 3}
	keyGamma   = nameKey("/diff/gamma")                   // fib_64 → WCMP {2 ×3, 3 ×1}
	keyDelta   = nameKey("/diff/delta")                   // fib_64 → ECMP {2, 3, 4}
	keyLocal   = nameKey("/diff/local")                   // fib_64 → deliver_local {port 1 #5, port 4 #9}
	keyLocal5  = nameKey("/diff/local").WithInstance(5)   // fib_128 → deliver_local {port 1 #5}
	keyNode    = nodeKey("dut")                           // fib_64 → to_cpu
	keyDiff    = nameKey("/diff")                         // fib_32 → drop
	keyNoNH    = nameKey("/diff/alpha").WithInstance(77)  // fib_128 → group 999, which does not exist
	keyCPU     = nameKey("/diff/cpu")                     // fib_64 → nexthop 900: member set_nexthop(255)
	keyNowhere = nameKey("/diff/nowhere")                 // fib_64 → nexthop 901: member set_nexthop(7), a port without a link
	keyDirect  = nameKey("/diff/direct")                  // fib_64 → nexthop 902: an entry on a member, not a group
	keyOther   = nameKey("/other/thing")                  // no route
	keyPod     = nameKey("/diff/pod").WithInstance(1)     // src_guard (1, keyPod)
	keyUnknown = nameKey("/diff/unknown").WithInstance(3) // falls to fib_32's drop
)

// Ports of the devices under test: 1 POD, 2 and 3 FABRIC, 4 without a role.
const (
	portPod    = 1
	portFabA   = 2
	portFabB   = 3
	portNoRole = 4
	portNoLink = 7 // a port number no interface is bound to
	dropPort   = p4.MaxPorts - 1
)

// Selector member MACs: the port in the last byte.
func hopMAC(port uint16) uint64 { return 0x02_00_00_00_0d_00 | uint64(port) }

func nameKey(s string) wire.Key { return wire.KeyOf(wire.MustParseName(s)) }

func nodeKey(id string) wire.Key {
	n, err := wire.NodeName(id)
	if err != nil {
		panic(err)
	}
	return wire.KeyOf(n)
}

// sentinel is t_rx and t_reply of every probe the test sends: a reply that
// still carries it was forwarded, one that does not was reflected by the
// switch, which wrote its own clock there.
const sentinel = 0x5e5e_5e5e_5e5e_5e5e

// gen makes the test's frames from a seeded source, so that a run is
// reproducible from its seed.
type gen struct {
	r *rand.Rand
}

func newGen(seed uint64) *gen { return &gen{r: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))} }

// frame is one generated frame and what it is, for messages.
type frame struct {
	desc string
	b    []byte
	// Packet-outs only: the packet_out metadata to send.
	meta map[string]uint64
}

func (g *gen) mac() [6]byte {
	var m [6]byte
	binary.BigEndian.PutUint32(m[2:], g.r.Uint32())
	m[0], m[1] = 0x02, byte(g.r.UintN(256))
	return m
}

func (g *gen) key() wire.Key {
	var k wire.Key
	for i := range 4 {
		binary.BigEndian.PutUint32(k[4*i:], g.r.Uint32())
	}
	return k
}

func (g *gen) hop() uint8 {
	switch g.r.IntN(6) {
	case 0:
		return 0
	case 1:
		return 1
	case 2:
		return 255
	case 3:
		return uint8(2 + g.r.IntN(253))
	}
	return 64
}

// maxFrame is the longest frame a veth with the default 1500-byte MTU
// carries; malformations that lengthen a frame stay under it.
const maxFrame = 1514

// payloadLen favours short frames (padding) and reaches the MTU, less
// room bytes.
func (g *gen) payloadLen(probe bool, room int) int {
	maxLen := wire.MaxPayload - room
	if probe {
		maxLen -= wire.ProbeHeaderLen
	}
	switch x := g.r.IntN(20); {
	case x < 4:
		return g.r.IntN(3) // inside the 60-byte minimum
	case x < 14:
		return g.r.IntN(64)
	case x < 18:
		return 64 + g.r.IntN(400)
	default:
		return maxLen - g.r.IntN(200)
	}
}

// destinations are the keys frames are sent to: every route, a key under
// each (instances of a service, an unknown name under /diff), no route.
var destinations = []struct {
	name string
	key  wire.Key
}{
	{"alpha", keyAlpha}, {"alpha#9", keyAlpha.WithInstance(9)}, {"alpha/v2", keyAlphaV2},
	{"alpha/v2#4", keyAlphaV2.WithInstance(4)}, {"beta", keyBeta}, {"beta#2", keyBeta.WithInstance(2)},
	{"delta", keyDelta}, {"local", keyLocal}, {"local#5", keyLocal5}, {"local#6", keyLocal.WithInstance(6)},
	{"node", keyNode}, {"/diff", keyDiff}, {"unknown", keyUnknown}, {"no-nexthop", keyNoNH},
	{"cpu-member", keyCPU}, {"no-link", keyNowhere}, {"direct-member", keyDirect}, {"no-route", keyOther},
}

// good makes a well-formed frame of type typ to dst from src.
func (g *gen) good(typ uint8, dstName string, dst, src wire.Key) frame {
	return g.goodRoom(typ, dstName, dst, src, 0)
}

// goodRoom is good with room bytes left below the MTU.
func (g *gen) goodRoom(typ uint8, dstName string, dst, src wire.Key, room int) frame {
	h := wire.Header{
		Type: typ, Flags: uint8(g.r.UintN(256)), HopLimit: g.hop(), QoSClass: uint8(g.r.UintN(4)),
		FlowLabel: g.r.Uint32(), NextProto: uint8(g.r.UintN(3)), Reserved: uint8(g.r.UintN(256)),
		Dst: dst, Src: src,
	}
	var probe *wire.ProbeHeader
	if wire.IsProbeType(typ) {
		probe = &wire.ProbeHeader{Seq: g.r.Uint32(), Reserved: g.r.Uint32(), TTx: g.r.Uint64(), TRx: sentinel, TReply: sentinel}
	}
	payload := make([]byte, g.payloadLen(probe != nil, room))
	for i := range payload {
		payload[i] = byte(g.r.UintN(256))
	}
	b := wire.AppendFrame(nil, wire.Ethernet{Dst: g.mac(), Src: g.mac()}, h, probe, payload)
	desc := fmt.Sprintf("%s to %s hop %d flow %08x payload %d", typeName(typ), dstName, h.HopLimit, h.FlowLabel, len(payload))
	if len(b) == wire.MinEthernetFrame && g.r.IntN(2) == 0 {
		// Junk in the Ethernet padding: the frame is still well-formed,
		// and a switch must pass the padding on as it came.
		n := wire.EthernetHeaderLen + wire.HeaderLen + len(payload)
		for i := n; i < len(b); i++ {
			b[i] = byte(g.r.UintN(256))
		}
		desc += ", junk padding"
	}
	return frame{desc: desc, b: b}
}

func typeName(t uint8) string {
	switch t {
	case wire.TypeData:
		return "DATA"
	case wire.TypeProbe:
		return "PROBE"
	case wire.TypeProbeReply:
		return "PROBE_REPLY"
	case wire.TypeControl:
		return "CONTROL"
	}
	return fmt.Sprintf("type-%d", t)
}

func (g *gen) typ() uint8 {
	switch x := g.r.IntN(20); {
	case x < 9:
		return wire.TypeData
	case x < 13:
		return wire.TypeProbe
	case x < 16:
		return wire.TypeProbeReply
	}
	return wire.TypeControl
}

// wellFormed makes a random well-formed frame; from a POD port its source is
// mostly the one src_guard allows.
func (g *gen) wellFormed(in uint16) frame { return g.wellFormedRoom(in, 0) }

func (g *gen) wellFormedRoom(in uint16, room int) frame {
	d := destinations[g.r.IntN(len(destinations))]
	src := g.key()
	if in == portPod && g.r.IntN(4) != 0 {
		src = keyPod
	}
	return g.goodRoom(g.typ(), d.name, d.key, src, room)
}

// malformed makes a frame that fails one well-formedness check (or, for the
// cases at the 60-byte minimum, one that just passes it), after wire's
// golden vectors: short, wrong EtherType, bad version, bad type, wrong
// payload_len, trailing bytes, a cut probe header.
func (g *gen) malformed(in uint16) frame {
	base := g.wellFormedRoom(in, 16)
	b := base.b
	probe := len(b) >= 90 && wire.IsProbeType(b[14]&0x0f)
	switch g.r.IntN(10) {
	case 0:
		n := wire.EthernetHeaderLen + g.r.IntN(wire.HeaderLen) // 14..57: no whole DMSC header
		return frame{desc: fmt.Sprintf("cut to %d bytes (%s)", n, base.desc), b: b[:n]}
	case 1:
		et := []uint16{EtherTypeTest, 0x0800, 0x86dd, 0x0000}[g.r.IntN(4)]
		binary.BigEndian.PutUint16(b[12:], et)
		return frame{desc: fmt.Sprintf("EtherType %#04x (%s)", et, base.desc), b: b}
	case 2:
		v := []uint8{0, 2, 15}[g.r.IntN(3)]
		b[14] = v<<4 | b[14]&0x0f
		return frame{desc: fmt.Sprintf("version %d (%s)", v, base.desc), b: b}
	case 3:
		ty := uint8(4 + g.r.IntN(12))
		b[14] = b[14]&0xf0 | ty
		return frame{desc: fmt.Sprintf("type %d (%s)", ty, base.desc), b: b}
	case 4:
		pl := binary.BigEndian.Uint16(b[22:])
		delta := []int{-2, -1, 1, 2, 3, 1000}[g.r.IntN(6)]
		npl := uint16(int(pl) + delta)
		binary.BigEndian.PutUint16(b[22:], npl)
		return frame{desc: fmt.Sprintf("payload_len %d for %d (%s)", npl, pl, base.desc), b: b}
	case 5:
		n := 1 + g.r.IntN(8)
		for range n {
			b = append(b, byte(g.r.UintN(256)))
		}
		return frame{desc: fmt.Sprintf("%d trailing bytes (%s)", n, base.desc), b: b}
	case 6:
		if probe {
			n := 58 + g.r.IntN(32) // DMSC header, part of the probe header
			return frame{desc: fmt.Sprintf("probe cut to %d bytes (%s)", n, base.desc), b: b[:n]}
		}
		fallthrough
	case 7:
		// The 60-byte minimum: DATA with payload_len 0..3 in a 60-byte
		// frame; 0-2 fit the padding, 3 does not.
		f := g.good(wire.TypeData, "alpha", keyAlpha, g.key())
		if in == portPod {
			f = g.good(wire.TypeData, "alpha", keyAlpha, keyPod)
		}
		f.b = f.b[:58]
		pl := g.r.IntN(4)
		binary.BigEndian.PutUint16(f.b[22:], uint16(pl))
		for len(f.b) < 60 {
			f.b = append(f.b, byte(g.r.UintN(256)))
		}
		return frame{desc: fmt.Sprintf("60-byte DATA to alpha with payload_len %d", pl), b: f.b}
	case 8:
		// Shorter than the minimum but whole: an unpadded DATA frame of
		// 58 + payload_len < 60 bytes is well-formed.
		f := g.good(wire.TypeData, "beta", keyBeta, g.key())
		if in == portPod {
			f = g.good(wire.TypeData, "beta", keyBeta, keyPod)
		}
		pl := g.r.IntN(2)
		binary.BigEndian.PutUint16(f.b[22:], uint16(pl))
		return frame{desc: fmt.Sprintf("unpadded %d-byte DATA to beta", 58+pl), b: f.b[:58+pl]}
	}
	// Everything wrong at once: the first check that fails counts.
	b[14] = 0x2f
	binary.BigEndian.PutUint16(b[22:], 7)
	return frame{desc: "version 2, type 15, payload_len 7 (" + base.desc + ")", b: append(b, 1, 2, 3)}
}

// portBatch is n frames for ingress port in: two thirds well-formed.
func (g *gen) portBatch(in uint16, n int) []frame {
	out := make([]frame, 0, n)
	for range n {
		if g.r.IntN(3) == 0 {
			out = append(out, g.malformed(in))
		} else {
			out = append(out, g.wellFormed(in))
		}
	}
	return out
}

// flows is n DATA frames to dst from a fabric port, each of its own flow:
// for the selectors.
func (g *gen) flows(dstName string, dst wire.Key, n int) []frame {
	out := make([]frame, 0, n)
	for range n {
		f := g.good(wire.TypeData, dstName, dst, g.key())
		f.b[16] = 64 // hop limit: forwarded
		out = append(out, f)
	}
	return out
}

// packetOutEgress are the egress ports of direct packet-outs: each data
// port, the CPU port, a port without a link and v1model's drop port.
var packetOutEgress = []uint16{portPod, portFabA, portFabB, portNoRole, p4.CPUPort, portNoLink, dropPort}

// directOuts is n packet-outs in mode direct: any frame, malformed ones and
// foreign EtherTypes too, goes out as it is.
func (g *gen) directOuts(n int) []frame {
	out := make([]frame, 0, n)
	for range n {
		var f frame
		if g.r.IntN(3) == 0 {
			f = g.malformed(portFabA)
		} else {
			f = g.wellFormed(portFabA)
		}
		if len(f.b) >= 14 && binary.BigEndian.Uint16(f.b[12:]) != wire.EtherType && binary.BigEndian.Uint16(f.b[12:]) != EtherTypeTest {
			binary.BigEndian.PutUint16(f.b[12:], EtherTypeTest) // keep it visible at the tap
		}
		port := packetOutEgress[g.r.IntN(len(packetOutEgress))]
		f.meta = map[string]uint64{p4.MetaEgressPort: uint64(port), p4.MetaMode: p4.OutDirect}
		f.desc = fmt.Sprintf("packet-out direct to %d: %s", port, f.desc)
		out = append(out, f)
	}
	return out
}

// routedOuts is n packet-outs in mode route: through the FIB as if
// received, port_role and src_guard skipped; short frames too, which no
// Ethernet link carries.
func (g *gen) routedOuts(n int) []frame {
	out := make([]frame, 0, n)
	for range n {
		var f frame
		switch x := g.r.IntN(10); {
		case x == 0:
			l := g.r.IntN(wire.EthernetHeaderLen)
			f = g.wellFormed(portFabA)
			f = frame{desc: fmt.Sprintf("cut to %d bytes (%s)", l, f.desc), b: f.b[:l]}
		case x < 4:
			f = g.malformed(portFabA)
		case x < 6:
			// Probes to the local instances: reflected, back to the CPU.
			dst := []wire.Key{keyLocal, keyLocal5}[g.r.IntN(2)]
			f = g.good(wire.TypeProbe, "local", dst, g.key())
		default:
			f = g.wellFormed(portFabA)
		}
		egress := uint64(packetOutEgress[g.r.IntN(len(packetOutEgress))]) // ignored in mode route
		f.meta = map[string]uint64{p4.MetaEgressPort: egress, p4.MetaMode: p4.OutRoute}
		f.desc = "packet-out route: " + f.desc
		out = append(out, f)
	}
	return out
}
