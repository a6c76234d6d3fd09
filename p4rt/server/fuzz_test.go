package server

import (
	"context"
	"fmt"
	"testing"
	"time"

	p4v1 "github.com/p4lang/p4runtime/go/p4/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/dmsc-mesh/dmsc/p4"
	"github.com/dmsc-mesh/dmsc/p4rt/p4info"
)

// FuzzWrite feeds arbitrary bytes, decoded as a WriteRequest, through
// validation and the batch engine against the DMSC P4Info. It must never
// panic, decodeWrite must agree with proto.Unmarshal, every failure must be a
// proper status, and the reference counts must stay consistent however the
// batch ends (a target that refuses every third change exercises undo).
func FuzzWrite(f *testing.F) {
	h := &harness{t: f}
	var err error
	if h.schema, err = p4.Schema(); err != nil {
		f.Fatal(err)
	}
	seed := func(atomicity p4v1.WriteRequest_Atomicity, ups ...*p4v1.Update) {
		b, err := proto.Marshal(&p4v1.WriteRequest{Updates: ups, Atomicity: atomicity})
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	seed(0, ins(h.member(1, 1)), ins(h.group(1, 1)), ins(h.nexthopEntry(1, groupRef(1))), ins(h.fib64(5, 1)))
	seed(1, ins(h.member(1, 1)), ins(h.group(1, 1)), del(h.member(1, 0)), mod(h.fib64(5, 1)))
	seed(2, ins(h.fib64(1, 1)), ins(h.fib64(1, 1)), del(h.fib64(1, 1)), del(h.fib64(1, 1)))
	seed(0, ins(h.member(1, 1)), ins(h.nexthopEntry(2, memberRef(1))), del(h.member(1, 1)), mod(h.nexthopEntry(2, groupRef(3))))
	seed(0, mod(&p4v1.CounterEntry{CounterId: h.counterID(p4.CounterDrop), Index: &p4v1.Index{Index: 3}}),
		mod(&p4v1.DirectCounterEntry{TableEntry: h.fib64(5, 1)}))

	watched := h.group(3, 1)
	watched.Members[0].WatchKind = &p4v1.ActionProfileGroup_Member_WatchPort{WatchPort: []byte{1}}
	ternary := h.fib64(1, 1)
	ternary.Match = append(ternary.Match, &p4v1.FieldMatch{FieldId: 2, FieldMatchType: &p4v1.FieldMatch_Ternary_{Ternary: &p4v1.FieldMatch_Ternary{Value: []byte{1}, Mask: []byte{3}}}})
	seed(0, ins(ternary), ins(watched), mod(&p4v1.MeterEntry{MeterId: 1}), ins(h.nexthopEntry(1, memberRef(1))))

	f.Fuzz(func(t *testing.T, b []byte) {
		// decodeWrite must agree with proto.Unmarshal exactly.
		generic := &p4v1.WriteRequest{}
		gerr := proto.Unmarshal(b, generic)
		fast, err := decodeWrite(append([]byte(nil), b...))
		if (err == nil) != (gerr == nil) {
			t.Fatalf("decodeWrite error %v, proto.Unmarshal error %v", err, gerr)
		}
		if err != nil {
			return
		}
		if !proto.Equal(fast, generic) {
			t.Fatalf("decodeWrite differs from proto.Unmarshal:\n%v\n%v", fast, generic)
		}
		ft := &fakeTarget{}
		n := 0
		ft.fail = func(Change) error {
			n++
			if n%3 == 0 {
				return status.Error(codes.ResourceExhausted, "full")
			}
			return nil
		}
		s := New(ft, Options{})
		defer s.Close()
		info, err := p4info.ParseText(p4.P4InfoText())
		if err != nil {
			t.Fatal(err)
		}
		p := newPipeline(h.schema, &p4v1.ForwardingPipelineConfig{P4Info: info})
		atomicity := fast.Atomicity % 3
		if atomicity < 0 {
			atomicity = -atomicity
		}
		// Twice: the second run meets the state the first one left.
		for _, req := range []*p4v1.WriteRequest{fast, generic} {
			s.mu.Lock()
			errs := s.applyBatch(p, req.Updates, atomicity, true)
			s.mu.Unlock()
			if errs != nil && len(errs) != len(req.Updates) {
				t.Fatalf("%d errors for %d updates", len(errs), len(req.Updates))
			}
			for _, e := range errs {
				if e == nil {
					continue
				}
				if _, ok := status.FromError(e); !ok || status.Code(e) == codes.OK {
					t.Fatalf("not a status error: %v", e)
				}
			}
			checkState(t, p.state)
			r := &reader{s: s, p: p}
			for _, e := range []*p4v1.Entity{ent(&p4v1.TableEntry{CounterData: &p4v1.CounterData{}}), ent(&p4v1.ActionProfileMember{}), ent(&p4v1.ActionProfileGroup{})} {
				if err := r.entity(e); err != nil {
					t.Fatalf("read after write: %v", err)
				}
			}
		}
	})
}

// BenchmarkWrite1000 inserts 1,000 fib_64 entries per Write through real
// gRPC into the fake target (and deletes them again, untimed).
func BenchmarkWrite1000(b *testing.B) { benchWrite(b, nil) }

// BenchmarkWrite1000Generic is BenchmarkWrite1000 with the generated
// service descriptor, so with generic protobuf decoding of the request: the
// baseline for decodeWrite.
func BenchmarkWrite1000Generic(b *testing.B) {
	benchWrite(b, func(gs *grpc.Server, s *Server) { p4v1.RegisterP4RuntimeServer(gs, &service{s: s}) })
}

func benchWrite(b *testing.B, register func(*grpc.Server, *Server)) {
	h := newHarnessWith(b, Options{}, register)
	c := h.primary()
	const n = 1000
	insert := &p4v1.WriteRequest{DeviceId: testDevice, ElectionId: c.eid}
	remove := &p4v1.WriteRequest{DeviceId: testDevice, ElectionId: c.eid}
	for i := range n {
		// Padded keys, as a client that encodes fixed width sends them.
		e := h.fib64(0, uint64(i%4096))
		e.Match[0] = exact(1, p4info.Padded(p4info.Uint(uint64(0x1234_5678_0000_0000)+uint64(i)), 64))
		insert.Updates = append(insert.Updates, ins(e))
		remove.Updates = append(remove.Updates, del(proto.Clone(e).(*p4v1.TableEntry)))
	}
	ctx := context.Background()
	var timed time.Duration
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		start := time.Now()
		if _, err := h.client.Write(ctx, insert); err != nil {
			b.Fatal(err)
		}
		timed += time.Since(start)
		b.StopTimer()
		if _, err := h.client.Write(ctx, remove); err != nil {
			b.Fatal(err)
		}
		h.target.reset()
		b.StartTimer()
	}
	b.ReportMetric(float64(n*b.N)/timed.Seconds(), "updates/s")
	if testing.Verbose() {
		fmt.Printf("stats %+v\n", h.srv.Stats())
	}
}

// BenchmarkApplyBatch1000 is the server's own share of BenchmarkWrite1000:
// unmarshalling the request and validating and storing 1,000 fib_64
// INSERTs, without gRPC.
func BenchmarkApplyBatch1000(b *testing.B) {
	h := &harness{t: b}
	var err error
	if h.schema, err = p4.Schema(); err != nil {
		b.Fatal(err)
	}
	info, _ := p4info.ParseText(p4.P4InfoText())
	const n = 1000
	req := &p4v1.WriteRequest{}
	for i := range n {
		e := h.fib64(0, uint64(i%4096))
		e.Match[0] = exact(1, p4info.Padded(p4info.Uint(uint64(0x1234_5678_0000_0000)+uint64(i)), 64))
		req.Updates = append(req.Updates, ins(e))
	}
	wire, _ := proto.Marshal(req)
	b.Run("unmarshal", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			var r p4v1.WriteRequest
			if err := proto.Unmarshal(wire, &r); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "updates/s")
	})
	b.Run("decodeWrite", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			buf := append([]byte(nil), wire...) // as gRPC hands it over
			if _, err := decodeWrite(buf); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "updates/s")
	})
	b.Run("validate+store", func(b *testing.B) {
		b.ReportAllocs()
		s := New(nopTarget{}, Options{})
		defer s.Close()
		for range b.N {
			b.StopTimer()
			r := &p4v1.WriteRequest{}
			_ = proto.Unmarshal(wire, r)
			p := newPipeline(h.schema, &p4v1.ForwardingPipelineConfig{P4Info: info})
			b.StartTimer()
			s.mu.Lock()
			errs := s.applyBatch(p, r.Updates, 0, true)
			s.mu.Unlock()
			if errs != nil {
				b.Fatal(errs)
			}
		}
		b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "updates/s")
	})
}

// nopTarget accepts everything and keeps nothing.
type nopTarget struct{}

func (nopTarget) VerifyPipeline(*p4info.Schema, []byte) error { return nil }
func (nopTarget) CommitPipeline(*p4info.Schema, []byte) error { return nil }
func (nopTarget) Apply([]Change, bool) []error                { return nil }
func (nopTarget) DirectCounter(*p4v1.TableEntry) (*p4v1.CounterData, error) {
	return &p4v1.CounterData{}, nil
}
func (nopTarget) Counter(uint32, int64) (*p4v1.CounterData, error) { return &p4v1.CounterData{}, nil }
func (nopTarget) PacketOut(*p4v1.PacketOut) error                  { return nil }
func (nopTarget) SetPacketInSink(func(*p4v1.PacketIn))             {}
