package softswitch

import (
	"encoding/binary"
	"math/rand/v2"
	"sync/atomic"
	"testing"
	"time"

	p4v1 "github.com/p4lang/p4runtime/go/p4/v1"

	"github.com/dmsc-mesh/dmsc/p4"
	"github.com/dmsc-mesh/dmsc/p4rt/server"
	"github.com/dmsc-mesh/dmsc/wire"
)

// nullPort takes every frame and counts it: the data plane's cost without a
// link's.
type nullPort struct{ frames atomic.Uint64 }

func (p *nullPort) ReadBatch([]Message) (int, error) { select {} }
func (p *nullPort) WriteBatch(ms []Message) (int, error) {
	p.frames.Add(uint64(len(ms)))
	return len(ms), nil
}
func (p *nullPort) SetReadDeadline(time.Time) error { return nil }
func (p *nullPort) Close() error                    { return nil }

// programmed is a switch with null ports 1-4 (fabric) and 9 (pod), and an
// entry of every kind: the fuzzer's and the benchmarks' switch.
func programmed(tb testing.TB) (*Switch, map[uint16]*nullPort) {
	tb.Helper()
	b := newP4B(tb)
	sw := New(Config{})
	if err := sw.CommitPipeline(b.schema, nil); err != nil {
		tb.Fatal(err)
	}
	ports := map[uint16]*nullPort{}
	for _, n := range []uint16{1, 2, 3, 4, 9} {
		ports[n] = &nullPort{}
		if err := sw.AddPort(n, ports[n]); err != nil {
			tb.Fatal(err)
		}
	}
	var es []*p4v1.Entity
	for _, p := range []uint16{1, 2, 3, 4} {
		es = append(es, b.portRole(p, p4.RoleFabric), b.nhMember(uint32(p), p, mac(byte(p))))
	}
	es = append(es,
		b.portRole(9, p4.RolePod), b.srcGuard(9, kPod),
		b.nhMember(77, 77, mac(77)), b.nhMember(255, p4.CPUPort, mac(255)), b.nhMember(511, dropPort, mac(1)),
		b.group(p4.ProfileNexthop, 100, wm{1, 1}, wm{2, 1}, wm{3, 1}, wm{4, 1}),
		b.group(p4.ProfileNexthop, 101, wm{2, 3}, wm{3, 1}),
		b.group(p4.ProfileNexthop, 102),
		b.selGroup(p4.TableNexthop, 100, 100), b.selGroup(p4.TableNexthop, 101, 101), b.selGroup(p4.TableNexthop, 102, 102),
		b.selMember(p4.TableNexthop, 77, 77), b.selMember(p4.TableNexthop, 255, 255), b.selMember(p4.TableNexthop, 511, 511),
		b.instMember(1, 9, 7, mac(0x77)), b.instMember(2, 9, 8, mac(0x78)),
		b.group(p4.ProfileInstance, 50, wm{1, 1}, wm{2, 1}),
		b.selGroup(p4.TableLocalInstance, 60, 50),
		b.fib(128, key(h1, h2, h3, 7), p4.ActionSetNexthopGroup, 101),
		b.fib(96, key(h1, h2, h3, 0), p4.ActionSetNexthopGroup, 100),
		b.fib(64, key(h1, h2, 0, 0), p4.ActionDeliverLocal, 60),
		b.fib(32, key(h1, 0, 0, 0), p4.ActionSetNexthopGroup, 100),
		b.fib(32, key(1, 0, 0, 0), p4.ActionDrop, 0),
		b.fib(32, key(2, 0, 0, 0), p4.ActionToCPU, 0),
		b.fib(32, key(3, 0, 0, 0), p4.ActionSetNexthopGroup, 102),
		b.fib(32, key(4, 0, 0, 0), p4.ActionSetNexthopGroup, 999),
		b.fib(32, key(5, 0, 0, 0), p4.ActionSetNexthopGroup, 77),
		b.fib(32, key(6, 0, 0, 0), p4.ActionSetNexthopGroup, 255),
		b.fib(32, key(7, 0, 0, 0), p4.ActionSetNexthopGroup, 511),
	)
	for i, err := range sw.Apply(ins(es...), true) {
		if err != nil {
			tb.Fatalf("change %d: %v", i, err)
		}
	}
	return sw, ports
}

// FuzzPipeline feeds arbitrary bytes into a programmed switch, from any
// port or from the CPU: the pipeline must not panic, and every frame must be
// forwarded, punted or counted in exactly one drop reason.
func FuzzPipeline(f *testing.F) {
	seeds := []frameSpec{
		{hop: 9, dst: key(h1, h2, h3, 7), src: kPod},
		{hop: 9, dst: key(h1, h2, h3, 1), src: kOther, payload: []byte("x")},
		{typ: typeProbe, hop: 9, dst: key(h1, h2, 0, 0), src: kPod},
		{typ: typeProbeReply, hop: 9, dst: key(h1, 5, 0, 0), src: kPod},
		{typ: typeControl, hop: 0, dst: key(h1, 0, 0, 0)},
		{hop: 1, dst: key(2, 0, 0, 0)},
		{hop: 1, dst: key(6, 0, 0, 0)},
		{hop: 1, dst: key(7, 0, 0, 0)},
		{hop: 0, dst: key(5, 0, 0, 0), plenDelta: 3},
	}
	for i, s := range seeds {
		f.Add(s.bytes(), uint16(i%5+1), false, uint16(p4.OutRoute))
		f.Add(s.bytes(), uint16(9), true, uint16(i%2))
	}
	f.Add([]byte{}, uint16(1), false, uint16(0))
	f.Add(make([]byte, 13), uint16(300), false, uint16(0))

	sw, ports := programmed(f)
	pb := newP4B(f)
	var punted atomic.Uint64
	sw.SetPacketInSink(func(*p4v1.PacketIn) { punted.Add(1) })
	sc := newScratch(time.Now, 1)

	f.Fuzz(func(t *testing.T, frame []byte, port uint16, fromCPU bool, mode uint16) {
		var before [numDropReasons]uint64
		for i := range before {
			before[i], _ = sw.DropCount(wire.DropReason(i))
		}
		var fwdBefore uint64
		for _, p := range ports {
			fwdBefore += p.frames.Load()
		}
		puntBefore := punted.Load() + sw.Stats().PuntDropped

		if fromCPU {
			pkt := &p4v1.PacketOut{Payload: frame, Metadata: pb.poutMeta(uint64(port), uint64(mode))}
			if err := sw.PacketOut(pkt); err != nil {
				t.Fatal(err)
			}
		} else {
			in := port % p4.MaxPorts
			if in == p4.CPUPort {
				in = 1
			}
			buf := make([]byte, len(frame))
			copy(buf, frame)
			sw.processBatch(sw.snap.Load(), in, []Message{{Buf: buf, N: len(buf)}}, sc)
			// Packet-ins from a receive loop are queued for Run.
			for len(sw.punts) > 0 {
				<-sw.punts
				punted.Add(1)
			}
		}

		drops := 0
		for i := range before {
			after, _ := sw.DropCount(wire.DropReason(i))
			switch d := after - before[i]; d {
			case 0:
			case 1:
				drops++
			default:
				t.Fatalf("drop reason %d counted %d times", i, d)
			}
		}
		var fwd uint64
		for _, p := range ports {
			fwd += p.frames.Load()
		}
		fwd -= fwdBefore
		punts := punted.Load() + sw.Stats().PuntDropped - puntBefore
		if total := uint64(drops) + fwd + punts; total != 1 {
			t.Fatalf("frame % x from %d (cpu %v mode %d): %d drops, %d forwarded, %d punted",
				frame, port, fromCPU, mode, drops, fwd, punts)
		}
	})
}

// benchFrames are 64 frames to the 4-way ECMP route, different flows.
func benchFrames(payload int) []Message {
	ms := make([]Message, 64)
	for i := range ms {
		f := frameSpec{hop: 64, flow: uint32(i) * 2654435761, dst: key(h1, h2, h3, 9), src: kOther, payload: make([]byte, payload)}.bytes()
		buf := make([]byte, 2048)
		ms[i] = Message{Buf: buf, N: copy(buf, f)}
	}
	return ms
}

func TestForwardingDoesNotAllocate(t *testing.T) {
	sw, _ := programmed(t)
	ms := benchFrames(64)
	sc := newScratch(time.Now, len(ms))
	sn := sw.snap.Load()
	allocs := testing.AllocsPerRun(100, func() {
		for i := range ms {
			ms[i].Buf[offHopLimit] = 64
		}
		sw.processBatch(sn, 1, ms, sc)
	})
	if allocs != 0 {
		t.Errorf("%v allocations per batch of %d frames", allocs, len(ms))
	}
	// Probe reflection and local delivery too.
	probe := frameSpec{typ: typeProbe, hop: 9, dst: key(h1, h2, 0, 0), src: kOther}.bytes()
	pm := []Message{{Buf: make([]byte, 2048)}}
	pm[0].N = copy(pm[0].Buf, probe)
	allocs = testing.AllocsPerRun(100, func() {
		copy(pm[0].Buf, probe)
		sw.processBatch(sn, 1, pm, sc)
	})
	if allocs != 0 {
		t.Errorf("%v allocations per probe", allocs)
	}
}

// BenchmarkPipeline is the data plane's cost per frame: parse, checks,
// port_role, FIB (a /96 route, after a miss in fib_128), 4-way ECMP, egress
// counting, handed to a port that takes it for free. ns/op is per frame.
func BenchmarkPipeline(b *testing.B) {
	sw, _ := programmed(b)
	ms := benchFrames(64)
	sc := newScratch(time.Now, len(ms))
	b.ReportAllocs()
	b.ResetTimer()
	for done := 0; done < b.N; done += len(ms) {
		sn := sw.snap.Load()
		batch := ms[:min(len(ms), b.N-done)]
		for i := range batch {
			batch[i].Buf[offHopLimit] = 64
		}
		sw.processBatch(sn, 1, batch, sc)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/frame")
}

// routeKeys makes n distinct FIB keys for plen, random in the bits the
// table matches.
func routeKeys(rng *rand.Rand, n, plen int) []wire.Key {
	seen := map[wire.Key]bool{}
	out := make([]wire.Key, 0, n)
	for len(out) < n {
		var k wire.Key
		for i := 0; i < plen/8; i += 4 {
			binary.BigEndian.PutUint32(k[i:], rng.Uint32()|1) // no zero segments
		}
		if !seen[k] {
			seen[k] = true
			out = append(out, k)
		}
	}
	return out
}

// bigFIB installs 100k routes, 25k in each FIB table, and returns them.
func bigFIB(tb testing.TB, sw *Switch, b *p4b) [4][]wire.Key {
	rng := rand.New(rand.NewPCG(1, 2))
	var keys [4][]wire.Key
	for i, t := range p4.FIBTables {
		keys[i] = routeKeys(rng, 25000, t.PrefixLen)
		var cs []server.Change
		for _, k := range keys[i] {
			cs = append(cs, ins(b.fib(t.PrefixLen, k, p4.ActionSetNexthopGroup, uint16(rng.IntN(4)+1)))...)
		}
		for j, err := range sw.Apply(cs, true) {
			if err != nil {
				tb.Fatalf("route %d: %v", j, err)
			}
		}
	}
	return keys
}

// BenchmarkLookup is the FIB alone with 100k routes over the four tables:
// destinations hit each table equally, so a quarter go through all four.
func BenchmarkLookup(b *testing.B) {
	sw, _ := programmed(b)
	keys := bigFIB(b, sw, newP4B(b))
	rng := rand.New(rand.NewPCG(3, 4))
	dsts := make([]wire.Key, 4096)
	for i := range dsts {
		t := i % 4
		k := keys[t][rng.IntN(len(keys[t]))]
		// Fill the bits the table ignores with noise, so the longer
		// tables miss.
		for j := p4.FIBTables[t].PrefixLen / 8; j < 16; j++ {
			k[j] = byte(rng.Uint32()) | 0x80
		}
		dsts[i] = k
	}
	sn := sw.snap.Load()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if lookup(sn, dsts[i&4095][:]) == nil {
			b.Fatal("miss")
		}
	}
}

// BenchmarkApply1000 writes batches of 1000 updates (half MODIFY of
// existing routes, half INSERT or DELETE of new ones) into a switch holding
// 100k routes, and reports updates per second.
func BenchmarkApply1000(b *testing.B) {
	sw, _ := programmed(b)
	p := newP4B(b)
	keys := bigFIB(b, sw, p)
	rng := rand.New(rand.NewPCG(5, 6))
	const blocks = 16
	fresh := make([][]wire.Key, blocks)
	for i := range fresh {
		fresh[i] = routeKeys(rng, 500, 128)
	}
	// Batch i: 500 MODIFY + 500 INSERT (even i) or DELETE (odd i) of block
	// i/2, so the table stays at 100k and every batch is valid.
	batches := make([][]server.Change, 2*blocks)
	for i := range batches {
		var cs []server.Change
		for range 500 {
			t := rng.IntN(4)
			k := keys[t][rng.IntN(len(keys[t]))]
			cs = append(cs, changes(p4v1.Update_MODIFY, p.fib(p4.FIBTables[t].PrefixLen, k, p4.ActionSetNexthopGroup, uint16(rng.IntN(4)+1)))...)
		}
		typ := p4v1.Update_INSERT
		if i%2 == 1 {
			typ = p4v1.Update_DELETE
		}
		for _, k := range fresh[i/2] {
			cs = append(cs, changes(typ, p.fib(128, k, p4.ActionSetNexthopGroup, 1))...)
		}
		batches[i] = cs
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for _, err := range sw.Apply(batches[i%len(batches)], true) {
			if err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(b.N)*1000/b.Elapsed().Seconds(), "updates/s")
}
