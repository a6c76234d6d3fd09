package server

import (
	"bytes"
	"testing"
	"time"

	p4v1 "github.com/p4lang/p4runtime/go/p4/v1"
	"google.golang.org/grpc/codes"

	"github.com/dmsc-mesh/dmsc/p4rt/portstatus"
)

func packetIn(payload string) *p4v1.PacketIn {
	return &p4v1.PacketIn{Payload: []byte(payload), Metadata: []*p4v1.PacketMetadata{
		{MetadataId: 1, Value: []byte{3}}, {MetadataId: 2, Value: []byte{1}},
	}}
}

func TestPacketInToPrimaryOnly(t *testing.T) {
	h := newHarness(t, Options{})
	sink := h.target.getSink()
	if sink == nil {
		t.Fatal("no packet-in sink registered")
	}
	sink(packetIn("nobody")) // no primary yet
	if st := h.srv.Stats(); st.PacketInDropsNoPrimary != 1 {
		t.Errorf("stats %+v", st)
	}
	p := h.primary()
	b, _ := h.connect("", eid(3))
	other, _ := h.connect("other", eid(1)) // primary of another role
	sink(packetIn("hello"))
	for _, c := range []*ctrl{p, other} {
		m := c.next()
		if got := m.GetPacket(); got == nil || string(got.Payload) != "hello" || len(got.Metadata) != 2 {
			t.Errorf("primary got %v", m)
		}
	}
	b.quiet()
	// The primary leaves: nothing more for anyone of its role.
	p.close()
	if a := b.arb(); codes.Code(a.Status.Code) != codes.NotFound {
		t.Errorf("backup told %v", a)
	}
	sink(packetIn("later"))
	if m := other.next(); string(m.GetPacket().GetPayload()) != "later" {
		t.Errorf("other role got %v", m)
	}
	b.quiet()
	if st := h.srv.Stats(); st.PacketIns != 3 {
		t.Errorf("stats %+v", st)
	}
}

// Carrier changes go to the primary of every role, never to a backup, in
// the order the target reported them; Close unregisters the sink.
func TestPortStatusToPrimaries(t *testing.T) {
	h := newHarness(t, Options{})
	sink := h.target.getStatusSink()
	if sink == nil {
		t.Fatal("no port-status sink registered")
	}
	sink(1, false) // no primary yet: nobody to tell
	p := h.primary()
	b, _ := h.connect("", eid(3))
	other, _ := h.connect("other", eid(1))
	sink(4, false)
	sink(4, true)
	for _, c := range []*ctrl{p, other} {
		for _, want := range []portstatus.Status{{Port: 4}, {Port: 4, Up: true}} {
			m := c.next()
			got, err := portstatus.Parse(m.GetOther())
			if err != nil || got != want {
				t.Errorf("got %v (%v), want %+v", m, err, want)
			}
		}
	}
	b.quiet()
	h.srv.Close()
	if h.target.getStatusSink() != nil {
		t.Error("port-status sink still registered after Close")
	}
}

// TestPacketInQueueFull: a primary whose queue is full loses packets; the
// sink never blocks.
func TestPacketInQueueFull(t *testing.T) {
	ft := &fakeTarget{}
	s := New(ft, Options{PacketInQueue: 2})
	defer s.Close()
	st := &stream{pkts: make(chan *p4v1.PacketIn, 2), wake: make(chan struct{}, 1)}
	r := &role{streams: map[*stream]struct{}{st: {}}}
	s.arb.Lock()
	s.roles[""] = r
	st.role, st.hasElection = r, true
	s.elect(r, st)
	s.arb.Unlock()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 5 {
			ft.getSink()(packetIn("x"))
		}
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("packet-in sink blocked")
	}
	if got := s.Stats(); got.PacketIns != 2 || got.PacketInDropsQueueFull != 3 {
		t.Errorf("stats %+v", got)
	}
}

func TestPacketOut(t *testing.T) {
	md := func(kv ...uint32) []*p4v1.PacketMetadata {
		var out []*p4v1.PacketMetadata
		for i := 0; i+1 < len(kv); i += 2 {
			out = append(out, &p4v1.PacketMetadata{MetadataId: kv[i], Value: []byte{0, 0, byte(kv[i+1] >> 8), byte(kv[i+1])}})
		}
		return out
	}
	tests := []struct {
		name string
		md   []*p4v1.PacketMetadata
		want codes.Code
	}{
		{"valid", md(1, 5, 2, 0), codes.OK},
		{"valid, any order", md(2, 1, 1, 300), codes.OK},
		{"unknown id", md(1, 5, 2, 0, 7, 1), codes.InvalidArgument},
		{"missing field", md(1, 5), codes.InvalidArgument},
		{"duplicate field", md(1, 5, 1, 6), codes.InvalidArgument},
		{"too wide", []*p4v1.PacketMetadata{{MetadataId: 1, Value: []byte{1, 0, 0}}, {MetadataId: 2, Value: []byte{0}}}, codes.InvalidArgument},
		{"empty value", []*p4v1.PacketMetadata{{MetadataId: 1}, {MetadataId: 2, Value: []byte{0}}}, codes.InvalidArgument},
	}
	h := newHarness(t, Options{})
	p := h.primary()
	b, _ := h.connect("", eid(3))
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := len(h.target.packetsSent())
			send(t, p, &p4v1.PacketOut{Payload: []byte("frame"), Metadata: tt.md})
			if tt.want == codes.OK {
				waitFor(t, func() bool { return len(h.target.packetsSent()) == n+1 })
				got := h.target.packetsSent()[n]
				for _, m := range got.Metadata {
					if len(m.Value) == 0 || (len(m.Value) > 1 && m.Value[0] == 0) {
						t.Errorf("target got non-canonical metadata %x", m.Value)
					}
				}
				return
			}
			m := p.next()
			e := m.GetError()
			if e == nil || codes.Code(e.CanonicalCode) != tt.want || e.GetPacketOut() == nil || e.Message == "" {
				t.Errorf("want a StreamError %v, got %v", tt.want, m)
			}
		})
	}
	// A backup may not send.
	send(t, b, &p4v1.PacketOut{Payload: []byte("x"), Metadata: md(1, 1, 2, 0)})
	if e := b.next().GetError(); codes.Code(e.GetCanonicalCode()) != codes.PermissionDenied {
		t.Errorf("backup packet-out: %v", e)
	}
	// Other stream messages get a StreamError too, and the stream lives on.
	send(t, p, nil)
	if e := p.next().GetError(); codes.Code(e.GetCanonicalCode()) != codes.Unimplemented || e.GetOther() == nil {
		t.Errorf("unknown stream message: %v", e)
	}
	if err := p.stream.Send(&p4v1.StreamMessageRequest{Update: &p4v1.StreamMessageRequest_DigestAck{DigestAck: &p4v1.DigestListAck{DigestId: 4}}}); err != nil {
		t.Fatal(err)
	}
	if e := p.next().GetError(); codes.Code(e.GetCanonicalCode()) != codes.InvalidArgument || e.GetDigestListAck() == nil {
		t.Errorf("digest ack: %v", e)
	}
	st := h.srv.Stats()
	if st.PacketOuts != 2 || st.PacketOutErrors != 6 {
		t.Errorf("stats %+v", st)
	}
	if got := h.target.packetsSent(); !bytes.Equal(got[0].Payload, []byte("frame")) {
		t.Errorf("payload %q", got[0].Payload)
	}
}

func TestPacketOutBeforePipeline(t *testing.T) {
	h := newHarness(t, Options{})
	c, _ := h.connect("", eid(1))
	send(t, c, &p4v1.PacketOut{Payload: []byte("x")})
	if e := c.next().GetError(); codes.Code(e.GetCanonicalCode()) != codes.FailedPrecondition {
		t.Errorf("packet-out before pipeline: %v", e)
	}
}

func send(t *testing.T, c *ctrl, pkt *p4v1.PacketOut) {
	t.Helper()
	req := &p4v1.StreamMessageRequest{}
	if pkt != nil {
		req.Update = &p4v1.StreamMessageRequest_Packet{Packet: pkt}
	}
	if err := c.stream.Send(req); err != nil {
		t.Fatal(err)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5s")
		}
		time.Sleep(time.Millisecond)
	}
}
