package bmv2tests

import (
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash/crc32"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	p4v1 "github.com/p4lang/p4runtime/go/p4/v1"
	"google.golang.org/protobuf/proto"

	"github.com/dmsc-mesh/dmsc/controller/fib"
	"github.com/dmsc-mesh/dmsc/p4"
	"github.com/dmsc-mesh/dmsc/p4rt"
	"github.com/dmsc-mesh/dmsc/p4rt/p4info"
	"github.com/dmsc-mesh/dmsc/spf"
	"github.com/dmsc-mesh/dmsc/wire"
)

// SeedEnv overrides the differential test's seed.
const SeedEnv = "DMSC_BMV2_SEED"

const diffPorts = 4

// chunk is how many frames the differential test sends before it waits for
// the switches to go quiet.
const chunk = 16

// diffRoutes are the routes the differential test installs through the
// controller's own FIB programmer (controller/fib), as an agent would.
func diffRoutes() fib.Routes {
	fwd := func(hops ...fib.Hop) fib.Route { return fib.Route{Kind: fib.Forward, Hops: hops} }
	hop := func(port uint16, w int32) fib.Hop { return fib.Hop{Port: port, DMAC: hopMAC(port), Weight: w} }
	inst := func(port uint16, id uint32) fib.Hop {
		return fib.Hop{Port: port, DMAC: hopMAC(port) | 0x10_00, Instance: id, Weight: 1}
	}
	return fib.Routes{
		pfx(keyAlpha, 64):   fwd(hop(portFabA, 1)),
		pfx(keyAlphaV2, 96): fwd(hop(portFabB, 1)),
		pfx(keyBeta, 64):    fwd(hop(portFabA, 1), hop(portFabB, 1)),
		pfx(keyGamma, 64):   fwd(hop(portFabA, 3), hop(portFabB, 1)),
		pfx(keyDelta, 64):   fwd(hop(portFabA, 1), hop(portFabB, 1), hop(portNoRole, 1)),
		pfx(keyLocal, 64):   {Kind: fib.Local, Hops: []fib.Hop{inst(portPod, 5), inst(portNoRole, 9)}},
		pfx(keyLocal5, 128): {Kind: fib.Local, Hops: []fib.Hop{inst(portPod, 5)}},
		pfx(keyNode, 64):    {Kind: fib.ToCPU},
		pfx(keyDiff, 32):    {Kind: fib.Drop},
	}
}

func pfx(k wire.Key, n int) spf.Prefix { return spf.Prefix{Key: k.Mask(n), Len: uint8(n)} }

// Hand-made entries for what the FIB programmer never writes.
const (
	groupCPU     = 900 // set_nexthop(255): a frame to the CPU port without packet_in header
	groupNoLink  = 901 // set_nexthop(7): a port without a link
	groupDirect  = 902 // nexthop entry on a member
	groupMissing = 999 // named by a route, never installed
)

// diffProgram is every update of the differential test, in phases that
// must be written in order. It is built once and written to both switches.
func diffProgram(t testing.TB, s *p4info.Schema) (phases [][]*p4v1.Update, fibEntries []*p4v1.TableEntry) {
	t.Helper()
	must := func(e *p4v1.TableEntry, err error) *p4v1.TableEntry {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	var base []*p4v1.Update
	for port, role := range map[uint16]uint64{portPod: p4.RolePod, portFabA: p4.RoleFabric, portFabB: p4.RoleFabric} {
		base = append(base, p4rt.Insert(must(p4rt.NewTableEntry(s, p4.TablePortRole).ExactUint(p4.FieldPort, uint64(port)).
			Action(p4.ActionSetPortRole, p4rt.Param(p4.ParamRole, role)).Build())))
	}
	slices.SortFunc(base, func(a, b *p4v1.Update) int {
		return bytes.Compare(a.GetEntity().GetTableEntry().Match[0].GetExact().Value, b.GetEntity().GetTableEntry().Match[0].GetExact().Value)
	})
	base = append(base, p4rt.Insert(must(p4rt.NewTableEntry(s, p4.TableSrcGuard).ExactUint(p4.FieldPort, portPod).
		Exact(p4.FieldSrcKey, keyPod[:]).Action(p4.ActionAllow).Build())))
	phases = append(phases, base)

	plan, err := fib.New(s).Plan(diffRoutes())
	if err != nil {
		t.Fatal(err)
	}
	phases = append(phases, plan.Phases...)

	var members, groups, entries, routes []*p4v1.Update
	for _, h := range []struct {
		id   uint32
		port uint16
	}{{groupCPU, p4.CPUPort}, {groupNoLink, portNoLink}, {groupDirect, portNoRole}} {
		m, err := p4rt.NewMember(s, p4.ProfileNexthop, h.id, p4.ActionSetNexthop,
			p4rt.Param(p4.ParamPort, uint64(h.port)), p4rt.Param(p4.ParamDmac, hopMAC(h.port)))
		if err != nil {
			t.Fatal(err)
		}
		members = append(members, p4rt.Insert(m))
		b := p4rt.NewTableEntry(s, p4.TableNexthop).ExactUint(p4.FieldGroupID, uint64(h.id))
		if h.id == groupDirect {
			b.Member(h.id)
		} else {
			g, err := p4rt.NewGroup(s, p4.ProfileNexthop, h.id, 0).Add(h.id, 1).Build()
			if err != nil {
				t.Fatal(err)
			}
			groups = append(groups, p4rt.Insert(g))
			b.Group(h.id)
		}
		entries = append(entries, p4rt.Insert(must(b.Build())))
	}
	for _, r := range []struct {
		key   wire.Key
		len   int
		group uint64
	}{{keyCPU, 64, groupCPU}, {keyNowhere, 64, groupNoLink}, {keyDirect, 64, groupDirect}, {keyNoNH, 128, groupMissing}} {
		table := p4.TableFIB64
		if r.len == 128 {
			table = p4.TableFIB128
		}
		routes = append(routes, p4rt.Insert(must(p4rt.NewTableEntry(s, table).Exact(p4.FieldDstKey, r.key[:r.len/8]).
			Action(p4.ActionSetNexthopGroup, p4rt.Param(p4.ParamGroupID, r.group)).Build())))
	}
	phases = append(phases, members, groups, entries, routes)

	for _, ph := range phases {
		for _, u := range ph {
			te := u.GetEntity().GetTableEntry()
			if te == nil {
				continue
			}
			for _, f := range p4.FIBTables {
				if tb, _ := s.Table(f.Name); tb.Preamble.Id == te.TableId {
					fibEntries = append(fibEntries, te)
				}
			}
		}
	}
	return phases, fibEntries
}

// modifyUpdates are MODIFYs of what diffProgram installed, each of a kind
// the agent writes when routes change: a route to another group, a route's
// action, a member's action (every group using it changes), a group's
// members, a local instance. Direct counters must survive them on both.
func modifyUpdates(t testing.TB, s *p4info.Schema, phases [][]*p4v1.Update) []*p4v1.Update {
	t.Helper()
	var routes = map[string]*p4v1.TableEntry{}
	var members []*p4v1.ActionProfileMember
	var groups []*p4v1.ActionProfileGroup
	for _, ph := range phases {
		for _, u := range ph {
			switch e := u.GetEntity(); {
			case e.GetTableEntry() != nil && len(e.GetTableEntry().Match) == 1:
				routes[string(e.GetTableEntry().Match[0].GetExact().Value)] = e.GetTableEntry()
			case e.GetActionProfileMember() != nil:
				members = append(members, e.GetActionProfileMember())
			case e.GetActionProfileGroup() != nil:
				groups = append(groups, e.GetActionProfileGroup())
			}
		}
	}
	route := func(k wire.Key, n int) *p4v1.TableEntry {
		t.Helper()
		e, ok := routes[string(p4info.Canonical(k[:n/8]))]
		if !ok {
			t.Fatalf("no route for %v/%d", k, n)
		}
		return proto.Clone(e).(*p4v1.TableEntry)
	}
	groupOf := func(e *p4v1.TableEntry) uint64 {
		v, _ := p4info.ToUint(e.GetAction().GetAction().GetParams()[0].GetValue())
		return v
	}
	memberOn := func(action string, port uint64, skip uint32) *p4v1.ActionProfileMember {
		t.Helper()
		a, _ := s.Action(action)
		for _, m := range members {
			if p, _ := p4info.ToUint(m.GetAction().GetParams()[0].GetValue()); m.GetAction().GetActionId() == a.Preamble.Id && p == port && m.MemberId < skip {
				return proto.Clone(m).(*p4v1.ActionProfileMember)
			}
		}
		t.Fatalf("no %s member on port %d", action, port)
		return nil
	}
	must := func(e *p4v1.TableEntry, err error) *p4v1.TableEntry {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	var ups []*p4v1.Update
	// alpha: to beta's group.
	alpha, beta := route(keyAlpha, 64), route(keyBeta, 64)
	alpha.Action = must(p4rt.NewTableEntry(s, p4.TableFIB64).Exact(p4.FieldDstKey, keyAlpha[:8]).
		Action(p4.ActionSetNexthopGroup, p4rt.Param(p4.ParamGroupID, groupOf(beta))).Build()).Action
	ups = append(ups, p4rt.Modify(alpha))
	// alpha/v2: dropped.
	v2 := route(keyAlphaV2, 96)
	v2.Action = must(p4rt.NewTableEntry(s, p4.TableFIB96).Exact(p4.FieldDstKey, keyAlphaV2[:12]).Action(p4.ActionDrop).Build()).Action
	ups = append(ups, p4rt.Modify(v2))
	// The member on port 3 now sends to port 4: beta, gamma, delta change.
	m3 := memberOn(p4.ActionSetNexthop, portFabB, groupCPU)
	m3new, err := p4rt.NewMember(s, p4.ProfileNexthop, m3.MemberId, p4.ActionSetNexthop,
		p4rt.Param(p4.ParamPort, portNoRole), p4rt.Param(p4.ParamDmac, hopMAC(portNoRole)))
	if err != nil {
		t.Fatal(err)
	}
	ups = append(ups, p4rt.Modify(m3new))
	// beta's group: its member on port 2 only.
	m2 := memberOn(p4.ActionSetNexthop, portFabA, groupCPU)
	for _, g := range groups {
		if uint64(g.GroupId) == groupOf(beta) {
			ng := proto.Clone(g).(*p4v1.ActionProfileGroup)
			ng.Members = []*p4v1.ActionProfileGroup_Member{{MemberId: m2.MemberId, Weight: 1}}
			ups = append(ups, p4rt.Modify(ng))
		}
	}
	// The local instance 9 on port 4 becomes instance 10.
	li := memberOn(p4.ActionDeliverInstance, portNoRole, groupCPU)
	linew, err := p4rt.NewMember(s, p4.ProfileInstance, li.MemberId, p4.ActionDeliverInstance,
		p4rt.Param(p4.ParamPort, portNoRole), p4rt.Param(p4.ParamInstance, 10), p4rt.Param(p4.ParamDmac, hopMAC(portNoRole)|0x10_00))
	if err != nil {
		t.Fatal(err)
	}
	ups = append(ups, p4rt.Modify(linew))
	if len(ups) != 5 {
		t.Fatalf("%d modifications, want 5", len(ups))
	}
	return ups
}

func diffSeed(t *testing.T) uint64 {
	seed := uint64(20260112)
	if v := os.Getenv(SeedEnv); v != "" {
		s, err := strconv.ParseUint(v, 0, 64)
		if err != nil {
			t.Fatalf("%s=%q: %v", SeedEnv, v, err)
		}
		seed = s
	}
	t.Logf("frames from seed %d (%s=<n> for others)", seed, SeedEnv)
	return seed
}

// TestDifferentialBMv2VersusSoftswitch sends the same generated frames
// (every type, hop limits 0, 1, 64, 255, malformed ones of every kind,
// packet-outs in both modes) to BMv2 and to the software switch, both
// programmed with the same entries by the same client code, and compares
// what comes out of every port byte for byte, the packet-ins, every
// port_rx/port_tx cell, every drop_counter cell and the direct counter of
// every FIB entry, batch by batch; then the tables read back. The only
// differences it accepts are the ones bmv2-tests/README.md documents, each
// checked for what it is.
func TestDifferentialBMv2VersusSoftswitch(t *testing.T) {
	tools := Require(t, Needs{Switch: true})
	bm := startBMv2DUT(t, tools, diffPorts)
	sw := startSoftDUT(t, diffPorts)
	s := bm.c.Schema()
	phases, fibEntries := diffProgram(t, s)
	for _, ph := range phases {
		bm.write(t, ph...)
		sw.write(t, ph...)
	}
	t.Run("read-back", func(t *testing.T) { compareReadBack(t, bm, sw, 40) })

	g := newGen(diffSeed(t))
	type batch struct {
		name   string
		in     uint16 // 0: packet-outs
		frames []frame
		// weighted: a weighted group's flows, whose members the two
		// switches order differently (README.md, "Selector members").
		weighted bool
		// before, if set, is written to both switches first.
		before []*p4v1.Update
	}
	var batches []batch
	for _, in := range []uint16{portPod, portFabA, portFabB, portNoRole} {
		batches = append(batches, batch{name: fmt.Sprintf("port-%d", in), in: in, frames: g.portBatch(in, 120)})
	}
	batches = append(batches,
		batch{name: "ecmp-beta", in: portFabA, frames: g.flows("beta", keyBeta, 64)},
		batch{name: "ecmp-delta", in: portFabB, frames: g.flows("delta", keyDelta, 64)},
		batch{name: "ecmp-local", in: portFabA, frames: g.flows("local", keyLocal, 64)},
		batch{name: "wcmp-gamma", in: portFabA, frames: g.flows("gamma", keyGamma, 200), weighted: true},
		batch{name: "after-modify", in: portFabA, before: modifyUpdates(t, s, phases),
			frames: slices.Concat(g.flows("alpha", keyAlpha, 24), g.flows("alpha/v2", keyAlphaV2, 8), g.flows("beta", keyBeta, 24),
				g.flows("delta", keyDelta, 32), g.flows("local", keyLocal, 24), g.portBatch(portFabA, 40))},
		batch{name: "packet-out-direct", frames: g.directOuts(60)},
		batch{name: "packet-out-route", frames: g.routedOuts(80)},
	)

	cs := newCounterSet(fibEntries)
	cov := &coverage{drops: map[wire.DropReason]int64{}, ports: map[uint16]int{}}
	for _, b := range batches {
		t.Run(b.name, func(t *testing.T) {
			// A batch starts from what the switches hold now, so that one
			// that failed half-way does not spill into the next.
			settle(100*time.Millisecond, 5*time.Second, bm, sw)
			takeOutputs(bm)
			takeOutputs(sw)
			prevB, prevS := cs.readStable(t, bm), cs.read(t, sw)
			if len(b.before) > 0 {
				bm.write(t, b.before...)
				sw.write(t, b.before...)
			}
			// In chunks, each let through before the next: BMv2 drops
			// silently when an egress queue (64 frames) overflows
			// (README.md, "Pacing").
			for start := 0; start < len(b.frames); start += chunk {
				part := b.frames[start:min(start+chunk, len(b.frames))]
				for _, d := range []*dut{bm, sw} {
					inject(t, d, b.in, part)
				}
				settle(20*time.Millisecond, 2*time.Second, bm, sw)
			}
			settle(250*time.Millisecond, 10*time.Second, bm, sw)
			bm.bmv2.CheckAlive(t)
			outB, outS := takeOutputs(bm), takeOutputs(sw)
			cov.outputs(outB)
			if b.weighted {
				compareSpread(t, b.frames, outB, outS)
			} else {
				compareOutputs(t, outB, outS)
			}
			// BMv2 counts asynchronously to its packet I/O: read until
			// two reads agree.
			curB := cs.readStable(t, bm)
			curS := cs.read(t, sw)
			var pool []int64
			if b.weighted {
				pool = []int64{portFabA, portFabB}
			}
			compareCounters(t, b.frames, b.in, pool, prevB, curB, prevS, curS)
			cov.counters(prevB, curB)
			t.Logf("%d frames in: %s", len(b.frames), summary(outB, prevB, curB))
		})
	}
	t.Run("read-back-after", func(t *testing.T) { compareReadBack(t, bm, sw, 40) })
	t.Run("coverage", func(t *testing.T) { cov.check(t) })
	t.Run("write-errors", func(t *testing.T) { testWriteErrors(t, bm, sw) })
	t.Run("packet-out-metadata", func(t *testing.T) { testPacketOutMetadata(t, bm, sw) })
	t.Run("cpu-port-order", func(t *testing.T) { testCPUPortOrder(t, bm, sw) })
	t.Run("warm-restart-plan", func(t *testing.T) { testWarmRestartPlan(t, bm, sw, phases[len(phases)-4:]) })
	for p, tap := range bm.taps {
		if n := tap.Noise(); n > 0 {
			t.Logf("BMv2 port %d: %d frames of other EtherTypes ignored (the kernel's)", p, n)
		}
	}
}

// inject sends frames into port in of d, or as packet-outs when in is 0.
func inject(t *testing.T, d *dut, in uint16, frames []frame) {
	t.Helper()
	if in != 0 {
		if err := d.taps[in].Send(framesOf(frames)...); err != nil {
			t.Fatalf("%s: %v", d.name, err)
		}
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, f := range frames {
		if err := d.c.PacketOut(ctx, f.b, f.meta); err != nil {
			t.Fatalf("%s: %s: %v", d.name, f.desc, err)
		}
	}
}

func framesOf(fs []frame) [][]byte {
	out := make([][]byte, len(fs))
	for i, f := range fs {
		out[i] = f.b
	}
	return out
}

// outputs is what a batch made a switch emit: frames per port, packet-ins.
type outputs struct {
	ports map[uint16][][]byte
	pins  []p4rt.PacketIn
}

func takeOutputs(d *dut) outputs {
	o := outputs{ports: map[uint16][][]byte{}, pins: d.pins.take()}
	for p, tap := range d.taps {
		o.ports[p] = tap.Take()
	}
	return o
}

// Offsets in a DMSC frame.
const (
	offType   = 14
	offTRx    = 14 + 44 + 16
	offTReply = offTRx + 8
)

// reflected reports whether f is a probe reply the switch made (its t_rx
// is not the sentinel every probe is sent with), and returns t_rx, t_reply.
func reflected(f []byte) (bool, uint64, uint64) {
	if len(f) < offTReply+8 || binary.BigEndian.Uint16(f[12:]) != wire.EtherType || f[offType] != wire.Version<<4|wire.TypeProbeReply {
		return false, 0, 0
	}
	rx, reply := binary.BigEndian.Uint64(f[offTRx:]), binary.BigEndian.Uint64(f[offTReply:])
	return rx != sentinel, rx, reply
}

// masked hides the timestamps of a reflected probe (README.md, "Probe
// timestamps"): each switch writes its own clock there.
func masked(f []byte) []byte {
	if ok, _, _ := reflected(f); !ok {
		return f
	}
	c := slices.Clone(f)
	clear(c[offTRx : offTReply+8])
	return c
}

// checkReflection checks what both switches must agree on in a reflected
// probe's timestamps: t_rx = t_reply, and BMv2's a whole number of
// microseconds (its ingress timestamp ×1000).
func checkReflection(t *testing.T, who string, f []byte) {
	t.Helper()
	ok, rx, reply := reflected(f)
	if !ok {
		return
	}
	if rx != reply {
		t.Errorf("%s: reflected probe with t_rx %d ≠ t_reply %d", who, rx, reply)
	}
	if who == "bmv2" && rx%1000 != 0 {
		t.Errorf("bmv2: reflected probe t_rx %d is not microseconds ×1000", rx)
	}
}

func compareOutputs(t *testing.T, b, s outputs) {
	t.Helper()
	for p := uint16(1); p <= diffPorts; p++ {
		fb, fs := b.ports[p], s.ports[p]
		for _, f := range fb {
			checkReflection(t, "bmv2", f)
		}
		for _, f := range fs {
			checkReflection(t, "softswitch", f)
		}
		if i, ok := firstDiff(fb, fs); !ok {
			t.Errorf("port %d: BMv2 sent %d frames, the software switch %d; first difference at #%d:\n%s",
				p, len(fb), len(fs), i, describePair(fb, fs, i))
		}
	}
	// Punts (packet_in header) and frames that reached the CPU port
	// without one (set_nexthop(255), direct packet-outs to 255) are each
	// compared in order; between the two kinds the software switch
	// reorders (README.md, "Open: software switch"; subtest
	// softswitch-deviations/cpu-port-order).
	for _, kind := range []bool{true, false} {
		pb, ps := filterPins(b.pins, kind), filterPins(s.pins, kind)
		what := map[bool]string{true: "punts", false: "frames to the CPU port without packet_in header"}[kind]
		for i := range max(len(pb), len(ps)) {
			if i >= len(pb) || i >= len(ps) {
				t.Errorf("packet-ins (%s): BMv2 %d, the software switch %d; first unmatched at #%d: bmv2 %s, softswitch %s",
					what, len(pb), len(ps), i, describePin(pb, i), describePin(ps, i))
				break
			}
			checkReflection(t, "bmv2", pb[i].Payload)
			checkReflection(t, "softswitch", ps[i].Payload)
			if !bytes.Equal(masked(pb[i].Payload), masked(ps[i].Payload)) || !equalMeta(pb[i].Meta, ps[i].Meta) {
				t.Errorf("packet-in (%s) #%d differs: bmv2 %s\n  softswitch %s", what, i, describePin(pb, i), describePin(ps, i))
				break
			}
		}
	}
}

// isPunt tells a punt (reason 1 or 2, a real ingress port) from a frame
// that reached the CPU port without a packet_in header, whose first four
// bytes were read as one.
func isPunt(p p4rt.PacketIn) bool {
	r := p.Meta[p4.MetaReason]
	return p.Meta[p4.MetaIngress] < p4.MaxPorts && (r == uint64(wire.PuntControl) || r == uint64(wire.PuntToCPU))
}

func filterPins(ps []p4rt.PacketIn, punts bool) []p4rt.PacketIn {
	var out []p4rt.PacketIn
	for _, p := range ps {
		if isPunt(p) == punts {
			out = append(out, p)
		}
	}
	return out
}

func equalMeta(a, b map[string]uint64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// firstDiff compares two frame sequences with reflected probes' timestamps
// masked, and returns the first index where they differ.
func firstDiff(a, b [][]byte) (int, bool) {
	for i := range max(len(a), len(b)) {
		if i >= len(a) || i >= len(b) || !bytes.Equal(masked(a[i]), masked(b[i])) {
			return i, false
		}
	}
	return 0, true
}

func describePair(a, b [][]byte, i int) string {
	get := func(fs [][]byte) []byte {
		if i < len(fs) {
			return fs[i]
		}
		return nil
	}
	fa, fb := get(a), get(b)
	at := -1
	for j := range min(len(fa), len(fb)) {
		if fa[j] != fb[j] {
			at = j
			break
		}
	}
	return fmt.Sprintf("  bmv2       %s\n  softswitch %s\n  (first differing byte: %d)", describeFrame(fa), describeFrame(fb), at)
}

func describePin(ps []p4rt.PacketIn, i int) string {
	if i >= len(ps) {
		return "(none)"
	}
	return fmt.Sprintf("meta %v %s", ps[i].Meta, describeFrame(ps[i].Payload))
}

// describeFrame decodes a frame for a message.
func describeFrame(f []byte) string {
	if f == nil {
		return "(none)"
	}
	var fr wire.Frame
	r := wire.ParseFrame(f, &fr)
	h := hex.EncodeToString(f)
	if len(h) > 160 {
		h = h[:160] + "…"
	}
	if r != wire.DropNone {
		return fmt.Sprintf("%d bytes (%s) %s", len(f), r, h)
	}
	return fmt.Sprintf("%d bytes %s hop %d dst %s src %s dmac %x %s", len(f), typeName(fr.Hdr.Type), fr.Hdr.HopLimit, fr.Hdr.Dst, fr.Hdr.Src, fr.Eth.Dst, h)
}

// Member order of the weighted group gamma (members 2 ×3 and 3 ×1, by
// port) as each switch lays it out: a flow goes to order[crc32 % 4]. The
// software switch repeats each member weight times in member-id order; PI
// gives a member of weight w w-1 extra BMv2 member handles, created after
// the group's members, and BMv2 orders a group by handle (README.md,
// "Selector members").
var (
	gammaOrderBMv2 = []uint16{portFabA, portFabB, portFabA, portFabA}
	gammaOrderSoft = []uint16{portFabA, portFabA, portFabA, portFabB}
)

// selectorHash is the selectors' hash: CRC-32 over flow_label, src_key and
// dst_key, the selector's key fields in dmsc.p4's order.
func selectorHash(f []byte) uint32 {
	var in []byte
	in = append(in, f[18:22]...)       // flow_label
	in = append(in, f[14+28:14+44]...) // src_key
	in = append(in, f[14+12:14+28]...) // dst_key
	return crc32.ChecksumIEEE(in)
}

// compareSpread checks a weighted group's batch: each flow leaves exactly
// once on each switch, on the port that switch's member order predicts,
// rewritten identically but for the member's MAC; and the flows follow the
// weights on both.
func compareSpread(t *testing.T, sent []frame, b, s outputs) {
	t.Helper()
	type where struct {
		port uint16
		f    []byte
	}
	index := func(who string, o outputs) map[uint32]where {
		m := map[uint32]where{}
		for p, fs := range o.ports {
			for _, f := range fs {
				flow := binary.BigEndian.Uint32(f[18:])
				if _, dup := m[flow]; dup {
					t.Errorf("%s: flow %08x left twice", who, flow)
				}
				if got := binary.BigEndian.Uint64(append([]byte{0, 0}, f[0:6]...)); got != hopMAC(p) {
					t.Errorf("%s: flow %08x left on port %d with dmac %012x, not that member's %012x", who, flow, p, got, hopMAC(p))
				}
				m[flow] = where{p, f}
			}
		}
		if len(o.pins) > 0 {
			t.Errorf("%s: %d packet-ins for a forwarding group", who, len(o.pins))
		}
		return m
	}
	mb, ms := index("bmv2", b), index("softswitch", s)
	moved := 0
	perPort := map[string]map[uint16]int{"bmv2": {}, "softswitch": {}}
	for _, f := range sent {
		flow := binary.BigEndian.Uint32(f.b[18:])
		wb, okb := mb[flow]
		ws, oks := ms[flow]
		if !okb || !oks {
			t.Errorf("flow %08x: delivered by bmv2 %v, by the software switch %v", flow, okb, oks)
			continue
		}
		h := selectorHash(f.b)
		if want := gammaOrderBMv2[h%4]; wb.port != want {
			t.Errorf("bmv2: flow %08x (hash %08x) left on port %d, its member order predicts %d", flow, h, wb.port, want)
		}
		if want := gammaOrderSoft[h%4]; ws.port != want {
			t.Errorf("softswitch: flow %08x (hash %08x) left on port %d, its member order predicts %d", flow, h, ws.port, want)
		}
		perPort["bmv2"][wb.port]++
		perPort["softswitch"][ws.port]++
		if wb.port != ws.port {
			moved++
		}
		if !bytes.Equal(wb.f[6:], ws.f[6:]) {
			t.Errorf("flow %08x: the frames differ beyond the destination MAC:\n  bmv2       %s\n  softswitch %s", flow, describeFrame(wb.f), describeFrame(ws.f))
		}
	}
	t.Logf("weighted group (port %d ×3, port %d ×1), %d flows: bmv2 %v, softswitch %v; %d flows on another member, each as predicted",
		portFabA, portFabB, len(sent), perPort["bmv2"], perPort["softswitch"], moved)
	for who, pp := range perPort {
		if pp[portFabA] < 2*pp[portFabB] {
			t.Errorf("%s: %v flows per port do not follow the weights 3:1", who, pp)
		}
	}
}

// counterSet reads the counters the differential test compares.
type counterSet struct {
	fib []*p4v1.TableEntry
}

func newCounterSet(fibEntries []*p4v1.TableEntry) *counterSet {
	return &counterSet{fib: fibEntries}
}

// counters holds every cell of port_rx, port_tx and drop_counter and the
// direct counter of each FIB entry.
type counters struct {
	rx, tx, drop map[int64]p4rt.CounterValue
	direct       []p4rt.CounterValue
}

func (cs *counterSet) read(t testing.TB, d *dut) counters {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var c counters
	var err error
	if c.rx, err = d.c.ReadCounter(ctx, p4.CounterPortRx, -1); err != nil {
		t.Fatalf("%s: %v", d.name, err)
	}
	if c.tx, err = d.c.ReadCounter(ctx, p4.CounterPortTx, -1); err != nil {
		t.Fatalf("%s: %v", d.name, err)
	}
	if c.drop, err = d.c.ReadCounter(ctx, p4.CounterDrop, -1); err != nil {
		t.Fatalf("%s: %v", d.name, err)
	}
	for _, e := range cs.fib {
		v, err := d.c.ReadDirectCounter(ctx, e)
		if err != nil {
			t.Fatalf("%s: direct counter: %v", d.name, err)
		}
		c.direct = append(c.direct, v)
	}
	return c
}

func (cs *counterSet) readStable(t testing.TB, d *dut) counters {
	t.Helper()
	prev := cs.read(t, d)
	for range 20 {
		time.Sleep(50 * time.Millisecond)
		cur := cs.read(t, d)
		if equalCounters(prev, cur) {
			return cur
		}
		prev = cur
	}
	return prev
}

func equalCounters(a, b counters) bool {
	eq := func(x, y map[int64]p4rt.CounterValue) bool {
		if len(x) != len(y) {
			return false
		}
		for k, v := range x {
			if y[k] != v {
				return false
			}
		}
		return true
	}
	return eq(a.rx, b.rx) && eq(a.tx, b.tx) && eq(a.drop, b.drop) && slices.Equal(a.direct, b.direct)
}

func delta(prev, cur p4rt.CounterValue) p4rt.CounterValue {
	return p4rt.CounterValue{Packets: cur.Packets - prev.Packets, Bytes: cur.Bytes - prev.Bytes}
}

// compareCounters compares the batch's counter deltas. The one accepted
// difference is drop_counter[port_down], which only the software switch
// has (README.md, "Frames to ports without a link"): it must count exactly
// the frames sent to port 7 (port_tx[7], equal on both) and the direct
// packet-outs to port 511.
//
// pool names ports whose port_tx cells are compared as one sum: the ports
// of a weighted group, whose members the two switches choose differently
// (README.md, "Selector members").
func compareCounters(t *testing.T, frames []frame, in uint16, pool []int64, pb, cb, ps, cs counters) {
	t.Helper()
	cells := func(m map[int64]p4rt.CounterValue) []int64 {
		var ks []int64
		for k := range m {
			ks = append(ks, k)
		}
		slices.Sort(ks)
		return ks
	}
	var diffs []string
	for _, c := range []struct {
		name                   string
		prevB, curB, prevS, cs map[int64]p4rt.CounterValue
	}{
		{"port_rx", pb.rx, cb.rx, ps.rx, cs.rx},
		{"port_tx", pb.tx, cb.tx, ps.tx, cs.tx},
		{"drop_counter", pb.drop, cb.drop, ps.drop, cs.drop},
	} {
		var poolB, poolS p4rt.CounterValue
		for _, i := range cells(c.curB) {
			db, ds := delta(c.prevB[i], c.curB[i]), delta(c.prevS[i], c.cs[i])
			if c.name == "drop_counter" && i == int64(wire.DropPortDown) {
				continue // checked below
			}
			if c.name == "port_tx" && slices.Contains(pool, i) {
				poolB.Packets, poolB.Bytes = poolB.Packets+db.Packets, poolB.Bytes+db.Bytes
				poolS.Packets, poolS.Bytes = poolS.Packets+ds.Packets, poolS.Bytes+ds.Bytes
				continue
			}
			if db != ds {
				diffs = append(diffs, fmt.Sprintf("%s[%d]: bmv2 %+v, softswitch %+v", c.name, i, db, ds))
			}
		}
		if poolB != poolS {
			diffs = append(diffs, fmt.Sprintf("%s%v (sum): bmv2 %+v, softswitch %+v", c.name, pool, poolB, poolS))
		}
	}
	for i := range cb.direct {
		db, ds := delta(pb.direct[i], cb.direct[i]), delta(ps.direct[i], cs.direct[i])
		if db != ds {
			diffs = append(diffs, fmt.Sprintf("direct counter of FIB entry #%d: bmv2 %+v, softswitch %+v", i, db, ds))
		}
	}
	// port_down: 0 on BMv2. On the software switch, one per frame sent to
	// port 7 (port_tx[7], equal on both) or by direct packet-out to 511,
	// counting "the frame's length in bytes" (softswitch/doc.go): without
	// the 4-byte packet_out header that port_tx counts for packet-outs.
	downB := delta(pb.drop[int64(wire.DropPortDown)], cb.drop[int64(wire.DropPortDown)])
	downS := delta(ps.drop[int64(wire.DropPortDown)], cs.drop[int64(wire.DropPortDown)])
	want := delta(ps.tx[portNoLink], cs.tx[portNoLink])
	if in == 0 {
		want.Bytes -= 4 * want.Packets
		for _, f := range frames {
			if f.meta[p4.MetaMode] == p4.OutDirect && f.meta[p4.MetaEgressPort] == dropPort {
				want.Packets++
				want.Bytes += int64(len(f.b))
			}
		}
	}
	if downB != (p4rt.CounterValue{}) {
		diffs = append(diffs, fmt.Sprintf("drop_counter[port_down] on BMv2: %+v (BMv2 has no such drop)", downB))
	}
	if downS != want {
		diffs = append(diffs, fmt.Sprintf("drop_counter[port_down] on the software switch: %+v, want %+v for the frames to port %d and to %d "+
			"(softswitch bug, README.md \"Open\": a direct packet-out to 511 counts its packet_out header)", downS, want, portNoLink, dropPort))
	}
	if len(diffs) > 0 {
		slices.Sort(diffs)
		t.Errorf("counters differ after the batch:\n  %s", strings.Join(diffs, "\n  "))
	}
	var total int64
	for _, i := range cells(cb.rx) {
		total += delta(pb.rx[i], cb.rx[i]).Packets
	}
	if in != 0 && total != int64(len(frames)) {
		t.Errorf("BMv2 port_rx grew by %d for %d frames sent", total, len(frames))
	}
}

// compareReadBack reads every table entry, member and group back from both
// switches and compares them as protobuf messages. BMv2 lists a member of
// weight w in a group w times (README.md, "Weighted members read back
// several times"); the copies are checked for exactly that and then set
// aside.
func compareReadBack(t *testing.T, b, s *dut, atLeast int) {
	t.Helper()
	eb, es := readAll(t, b), readAll(t, s)
	eb, copies := dedupeMembers(eb)
	want := extraCopies(eb)
	if !maps.Equal(copies, want) {
		t.Errorf("BMv2 listed members %v extra times, want %v (one less than each member's largest weight)", copies, want)
	}
	if _, dup := dedupeMembers(es); len(dup) > 0 {
		t.Errorf("the software switch listed members %v more than once", dup)
	}
	if len(eb) != len(es) {
		t.Errorf("read back: BMv2 holds %d entities, the software switch %d", len(eb), len(es))
	}
	for i := range min(len(eb), len(es)) {
		if !proto.Equal(eb[i], es[i]) {
			t.Errorf("read back #%d differs:\n  bmv2       %v\n  softswitch %v", i, eb[i], es[i])
			return
		}
	}
	if len(eb) < atLeast {
		t.Errorf("read back only %d entities, want at least %d", len(eb), atLeast)
	}
}

func readAll(t *testing.T, d *dut) []*p4v1.Entity {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	es, err := d.c.Read(ctx, p4rt.AllTableEntries(), p4rt.Members(0), p4rt.Groups(0))
	if err != nil {
		t.Fatalf("%s: %v", d.name, err)
	}
	slices.SortStableFunc(es, compareEntities)
	// A group's members are a set: BMv2 reads them back sorted by id, the
	// project's server in the order they were written.
	for _, e := range es {
		if g := e.GetActionProfileGroup(); g != nil {
			slices.SortFunc(g.Members, func(a, b *p4v1.ActionProfileGroup_Member) int { return cmp.Compare(a.MemberId, b.MemberId) })
		}
	}
	return es
}

type memberRef struct{ profile, member uint32 }

// dedupeMembers drops action profile members listed again with the same
// id and action, and counts the copies.
func dedupeMembers(es []*p4v1.Entity) ([]*p4v1.Entity, map[memberRef]int) {
	seen := map[memberRef]*p4v1.ActionProfileMember{}
	copies := map[memberRef]int{}
	var out []*p4v1.Entity
	for _, e := range es {
		if m := e.GetActionProfileMember(); m != nil {
			k := memberRef{m.ActionProfileId, m.MemberId}
			if first, ok := seen[k]; ok && proto.Equal(first, m) {
				copies[k]++
				continue
			}
			seen[k] = m
		}
		out = append(out, e)
	}
	return out, copies
}

// extraCopies is what PI lists extra: a member whose largest weight in any
// group is w appears w-1 more times.
func extraCopies(es []*p4v1.Entity) map[memberRef]int {
	out := map[memberRef]int{}
	for _, e := range es {
		if g := e.GetActionProfileGroup(); g != nil {
			for _, m := range g.Members {
				k := memberRef{g.ActionProfileId, m.MemberId}
				if int(m.Weight)-1 > out[k] {
					out[k] = int(m.Weight) - 1
				}
			}
		}
	}
	maps.DeleteFunc(out, func(_ memberRef, n int) bool { return n == 0 })
	return out
}

// compareEntities orders entities for comparison: kind, then ids, then
// match.
func compareEntities(a, b *p4v1.Entity) int {
	ka, kb := entityKey(a), entityKey(b)
	return cmp.Compare(ka, kb)
}

func entityKey(e *p4v1.Entity) string {
	switch {
	case e.GetTableEntry() != nil:
		te := e.GetTableEntry()
		var m []string
		for _, f := range te.Match {
			m = append(m, fmt.Sprintf("%d=%x", f.FieldId, f.GetExact().GetValue()))
		}
		slices.Sort(m)
		return fmt.Sprintf("3/%010d/%s", te.TableId, strings.Join(m, ","))
	case e.GetActionProfileMember() != nil:
		m := e.GetActionProfileMember()
		return fmt.Sprintf("1/%010d/%010d", m.ActionProfileId, m.MemberId)
	case e.GetActionProfileGroup() != nil:
		g := e.GetActionProfileGroup()
		return fmt.Sprintf("2/%010d/%010d", g.ActionProfileId, g.GroupId)
	}
	return "9/" + e.String()
}

// summary describes what a batch made BMv2 do.
func summary(o outputs, prev, cur counters) string {
	var b strings.Builder
	for p := uint16(1); p <= diffPorts; p++ {
		fmt.Fprintf(&b, "port %d out %d, ", p, len(o.ports[p]))
	}
	fmt.Fprintf(&b, "%d packet-ins; drops", len(o.pins))
	for r := range int64(wire.NumDropReasons) {
		if d := delta(prev.drop[r], cur.drop[r]); d.Packets > 0 {
			fmt.Fprintf(&b, " %s %d", wire.DropReason(r), d.Packets)
		}
	}
	return b.String()
}

// coverage makes sure the batches exercised what they are meant to: every
// drop reason of the P4 program, every data port, reflected probes, punts
// of both reasons and frames to the CPU port without packet_in header.
type coverage struct {
	drops                          map[wire.DropReason]int64
	ports                          map[uint16]int
	reflected, control, toCPU, raw int
}

func (c *coverage) outputs(o outputs) {
	for p, fs := range o.ports {
		c.ports[p] += len(fs)
		for _, f := range fs {
			if ok, _, _ := reflected(f); ok {
				c.reflected++
			}
		}
	}
	for _, p := range o.pins {
		switch {
		case !isPunt(p):
			c.raw++
		case p.Meta[p4.MetaReason] == uint64(wire.PuntControl):
			c.control++
		default:
			c.toCPU++
			if ok, _, _ := reflected(p.Payload); ok {
				c.reflected++
			}
		}
	}
}

func (c *coverage) counters(prev, cur counters) {
	for r := range int64(wire.NumDropReasons) {
		c.drops[wire.DropReason(r)] += delta(prev.drop[r], cur.drop[r]).Packets
	}
}

func (c *coverage) check(t *testing.T) {
	for r := wire.DropNotDMSC; r <= wire.DropNoNexthop; r++ {
		if c.drops[r] == 0 {
			t.Errorf("no frame was dropped for %s", r)
		}
	}
	for p := uint16(1); p <= diffPorts; p++ {
		if c.ports[p] == 0 {
			t.Errorf("no frame left port %d", p)
		}
	}
	if c.reflected == 0 || c.control == 0 || c.toCPU == 0 || c.raw == 0 {
		t.Errorf("reflected probes %d, CONTROL punts %d, to_cpu punts %d, CPU-port frames %d: each should be > 0", c.reflected, c.control, c.toCPU, c.raw)
	}
	t.Logf("BMv2 dropped %v; sent per port %v; %d reflected probes, %d CONTROL punts, %d to_cpu punts, %d CPU-port frames",
		c.drops, c.ports, c.reflected, c.control, c.toCPU, c.raw)
}
