package softswitch

import (
	"encoding/binary"
	"hash/crc32"
	"time"

	"github.com/dmsc-mesh/dmsc/p4"
	"github.com/dmsc-mesh/dmsc/wire"
)

// verdict is where ingress sent a frame.
type verdict struct {
	kind   uint8
	reason uint8  // punt reason for vPunt
	port   uint16 // egress_spec for vOut
}

const (
	vDrop uint8 = iota // dropped and counted in drop_counter
	vOut               // to port (which may be the CPU port or the drop port)
	vPunt              // to the CPU with a packet_in header
)

// work is the per-loop state ingress needs besides the frame: the batch's
// ingress timestamp, read at most once per batch and only when a probe needs
// it, and room for the selector's hash input (on the heap with the loop, so
// that handing it to the CRC code allocates nothing).
type work struct {
	now  func() time.Time
	ns   uint64
	set  bool
	hash [36]byte
}

func (w *work) nanos() uint64 {
	if !w.set {
		w.ns, w.set = uint64(w.now().UnixNano()), true
	}
	return w.ns
}

// ingress runs DmscIngress (dmsc.p4's apply block) on one frame, rewriting it
// in place. in is the ingress port (p4.CPUPort for a routed packet-out) and
// ilen the ingress length BMv2 would count: the frame's length, plus the
// packet_out header for packet-outs. port_rx is counted by the caller, per
// batch; drop_counter and the FIB's direct counters here.
//
// It must not allocate: it runs for every frame.
func ingress(sn *snapshot, in uint16, b []byte, ilen uint64, fromCPU bool, w *work) verdict {
	pipe := sn.pipe
	var f wire.Frame
	// The well-formedness checks, in the order of the P4 ingress. dmsc.p4
	// checks the hop limit only later (after the CONTROL punt, port_role
	// and src_guard), below; ParseFrame leaves it alone, and were it ever
	// to report it, that would not be the frame's fate yet.
	if r := wire.ParseFrame(b, &f); r != 0 && r != dropHopLimit {
		return drop(pipe, r, ilen)
	}
	if len(b) < offProbe {
		// ParseFrame accepted fewer bytes than a DMSC header: a bug
		// there must not become a crash here.
		return drop(pipe, dropMalformed, ilen)
	}
	typ := b[offVerType] & 0x0f

	if !fromCPU {
		role := sn.roles.role[in&(p4.MaxPorts-1)]
		if typ == typeControl {
			return verdict{kind: vPunt, reason: puntControl}
		}
		if role == p4.RoleUnset {
			return drop(pipe, dropPortUnconfigured, ilen)
		}
		if role == p4.RolePod {
			if _, ok := sn.guard.get(guardKey{port: in, key: wire.Key(b[offSrcKey : offSrcKey+16])}); !ok {
				return drop(pipe, dropSrcGuard, ilen)
			}
		}
	}

	hop := b[offHopLimit]
	if hop == 0 {
		return drop(pipe, dropHopLimit, ilen)
	}
	b[offHopLimit] = hop - 1

	e := lookup(sn, b[offDstKey:offDstKey+16])
	if e == nil {
		return drop(pipe, dropNoRoute, ilen)
	}
	e.ctr.add(1, ilen)
	switch e.fwd {
	case fwdDrop:
		return drop(pipe, dropFIB, ilen)
	case fwdCPU:
		return verdict{kind: vPunt, reason: puntToCPU}
	case fwdGroup:
		se, ok := sn.nh.get(uint32(e.group))
		if !ok || se.sel == nil {
			return drop(pipe, dropNoNexthop, ilen)
		}
		m := pick(se.sel, b, w)
		copy(b[offEthDst:offEthDst+6], m.dmac[:])
		return verdict{kind: vOut, port: m.port}
	case fwdLocal:
		se, ok := sn.li.get(uint32(e.group))
		if !ok || se.sel == nil {
			return drop(pipe, dropNoNexthop, ilen)
		}
		m := pick(se.sel, b, w)
		binary.BigEndian.PutUint32(b[offInstance:], m.instance)
		copy(b[offEthDst:offEthDst+6], m.dmac[:])
		if typ != typeProbe {
			return verdict{kind: vOut, port: m.port}
		}
		if len(b) < offTReply+8 {
			return drop(pipe, dropMalformed, ilen) // as above: never for a parsed probe
		}
		reflectProbe(b, w.nanos())
		if fromCPU {
			return verdict{kind: vPunt, reason: puntToCPU}
		}
		return verdict{kind: vOut, port: in}
	}
	return drop(pipe, dropNoRoute, ilen) // unreachable: Apply writes only the four actions
}

func drop(pipe *pipeline, r wire.DropReason, ilen uint64) verdict {
	pipe.drops[r].add(1, ilen)
	return verdict{kind: vDrop}
}

// lookup is the FIB: fib_128, fib_96, fib_64, fib_32 on the destination key
// cut to each length, longest first.
func lookup(sn *snapshot, dst []byte) *fibEntry {
	if e, ok := sn.fib128.get([16]byte(dst)); ok {
		return e
	}
	if e, ok := sn.fib96.get([12]byte(dst)); ok {
		return e
	}
	hi := binary.BigEndian.Uint64(dst)
	if e, ok := sn.fib64.get(hi); ok {
		return e
	}
	if e, ok := sn.fib32.get(uint32(hi >> 32)); ok {
		return e
	}
	return nil
}

// pick runs the action selector: CRC-32 (IEEE) over flow_label, src_key and
// dst_key as they are when the selector table is applied (before
// deliver_instance rewrites the instance), in the order of the selector's
// key fields in dmsc.p4.
func pick(s *selection, b []byte, w *work) *memberAction {
	if len(s.acts) == 1 {
		return &s.acts[0]
	}
	return s.pick(flowHash(b, &w.hash))
}

// flowHash copies the selector's fields into in and hashes them in one pass:
// much cheaper than three short CRC updates.
func flowHash(b []byte, in *[36]byte) uint32 {
	copy(in[0:4], b[offFlowLabel:offFlowLabel+4])
	copy(in[4:20], b[offSrcKey:offSrcKey+16])
	copy(in[20:36], b[offDstKey:offDstKey+16])
	return crc32.ChecksumIEEE(in[:])
}

// reflectProbe is dmsc.p4's reflect_probe, but for the egress port: a
// PROBE_REPLY from the instance that answered, back to the sender.
func reflectProbe(b []byte, nowNS uint64) {
	var answered [16]byte
	copy(answered[:], b[offDstKey:offDstKey+16])
	copy(b[offDstKey:offDstKey+16], b[offSrcKey:offSrcKey+16])
	copy(b[offSrcKey:offSrcKey+16], answered[:])
	b[offVerType] = b[offVerType]&0xf0 | typeProbeReply
	b[offHopLimit] = p4.DefaultHopLimit
	binary.BigEndian.PutUint64(b[offTRx:], nowNS)
	binary.BigEndian.PutUint64(b[offTReply:], nowNS)
	var came [6]byte
	copy(came[:], b[offEthSrc:offEthSrc+6])
	copy(b[offEthSrc:offEthSrc+6], b[offEthDst:offEthDst+6])
	copy(b[offEthDst:offEthDst+6], came[:])
}

// scratch is a receive loop's per-batch working memory, reused for every
// batch so that forwarding allocates nothing.
type scratch struct {
	w       work
	out     [p4.MaxPorts][]Message // frames per egress port
	touched []uint16               // ports with frames in out
	punts   []puntRef
}

type puntRef struct {
	idx    int
	reason uint8
	raw    bool // sent to the CPU port without a packet_in header
}

func newScratch(now func() time.Time, batch int) *scratch {
	return &scratch{
		w:       work{now: now},
		touched: make([]uint16, 0, p4.MaxPorts),
		punts:   make([]puntRef, 0, batch),
	}
}

// processBatch runs a batch of frames received on port in through the
// pipeline and hands the results to the egress ports and the CPU.
func (s *Switch) processBatch(sn *snapshot, in uint16, ms []Message, sc *scratch) {
	pipe := sn.pipe
	sc.w.set = false
	var rxBytes uint64
	for i := range ms {
		m := &ms[i]
		ilen := uint64(m.N)
		rxBytes += ilen
		v := ingress(sn, in, m.Buf[:m.N], ilen, false, &sc.w)
		switch v.kind {
		case vOut:
			p := v.port
			if p == dropPort {
				pipe.drops[dropPortDown].add(1, ilen)
				continue
			}
			if p == p4.CPUPort {
				// With the punts, in arrival order, as BMv2 does.
				sc.punts = append(sc.punts, puntRef{idx: i, raw: true})
				continue
			}
			if len(sc.out[p]) == 0 {
				sc.touched = append(sc.touched, p)
			}
			sc.out[p] = append(sc.out[p], Message{Buf: m.Buf, N: m.N})
		case vPunt:
			sc.punts = append(sc.punts, puntRef{idx: i, reason: v.reason})
		}
	}
	pipe.portRx[in].add(uint64(len(ms)), rxBytes)

	// Egress: port_tx, then the ports.
	for _, p := range sc.touched {
		out := sc.out[p]
		var bytes uint64
		for i := range out {
			bytes += uint64(out[i].N)
		}
		pipe.portTx[p].add(uint64(len(out)), bytes)
		if p == p4.CPUPort {
			for i := range out {
				s.toCPURaw(pipe, out[i].Buf[:out[i].N], false)
			}
		} else {
			s.output(pipe, p, out)
		}
		clear(out)
		sc.out[p] = out[:0]
	}
	sc.touched = sc.touched[:0]

	if len(sc.punts) > 0 {
		for _, pr := range sc.punts {
			m := &ms[pr.idx]
			pipe.portTx[p4.CPUPort].add(1, uint64(m.N))
			if pr.raw {
				s.toCPURaw(pipe, m.Buf[:m.N], false)
				continue
			}
			s.punt(pipe, in, uint16(pr.reason), m.Buf[:m.N], false)
		}
		sc.punts = sc.punts[:0]
	}
}
