package wire

import (
	"bytes"
	"encoding/binary"
	"testing"
)

var (
	testEth = Ethernet{Dst: [6]byte{2, 0, 0, 0, 0, 2}, Src: [6]byte{2, 0, 0, 0, 0, 1}}
	testHdr = Header{
		Type:      TypeData,
		HopLimit:  DefaultHopLimit,
		FlowLabel: 0x01020304,
		NextProto: ProtoDatagram,
		Dst:       KeyOf(MustParseName("/shop/cart")),
		Src:       KeyOf(MustParseName("/shop/frontend")).WithInstance(3),
	}
)

func frameOf(h Header, probe *ProbeHeader, payload []byte) []byte {
	return AppendFrame(nil, testEth, h, probe, payload)
}

func TestParseFrameRoundTrip(t *testing.T) {
	probe := &ProbeHeader{Seq: 9, TTx: 1, TRx: 2, TReply: 3}
	tests := []struct {
		name    string
		hdr     Header
		probe   *ProbeHeader
		payload []byte
	}{
		{"data", testHdr, nil, []byte("hello, cart")},
		{"data empty payload (padded)", testHdr, nil, nil},
		{"data 1400 bytes", testHdr, nil, bytes.Repeat([]byte{0xab}, 1400)},
		{"probe", withType(testHdr, TypeProbe), probe, nil},
		{"probe reply", withType(testHdr, TypeProbeReply), probe, []byte{1, 2}},
		{"control", withType(testHdr, TypeControl), nil, []byte{SignalLinkState, LSHello, 0, 0, 0, 0, 0, 0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := frameOf(tt.hdr, tt.probe, tt.payload)
			if len(b) < MinEthernetFrame {
				t.Fatalf("frame of %d bytes is not padded", len(b))
			}
			var f Frame
			if r := ParseFrame(b, &f); r != DropNone {
				t.Fatalf("ParseFrame: %v", r)
			}
			want := tt.hdr
			want.Version = Version
			want.PayloadLen = uint16(len(tt.payload))
			if f.Hdr != want {
				t.Errorf("header %+v, want %+v", f.Hdr, want)
			}
			if f.HasProbe != (tt.probe != nil) || (tt.probe != nil && f.Probe != *tt.probe) {
				t.Errorf("probe %v %+v", f.HasProbe, f.Probe)
			}
			if !bytes.Equal(f.Payload, tt.payload) {
				t.Errorf("payload %x, want %x", f.Payload, tt.payload)
			}
			if f.Eth.Dst != testEth.Dst || f.Eth.Src != testEth.Src || f.Eth.EtherType != EtherType {
				t.Errorf("ethernet %+v", f.Eth)
			}
		})
	}
}

func withType(h Header, typ uint8) Header {
	h.Type = typ
	return h
}

// malformed returns a copy of a good frame changed by fn.
func malformed(b []byte, fn func([]byte) []byte) []byte {
	return fn(append([]byte(nil), b...))
}

func TestParseFrameDropReasons(t *testing.T) {
	data := frameOf(testHdr, nil, []byte("0123456789"))
	probe := frameOf(withType(testHdr, TypeProbe), &ProbeHeader{}, nil)
	tests := []struct {
		name  string
		frame []byte
		want  DropReason
	}{
		{"empty", nil, DropMalformed},
		{"13 bytes", data[:13], DropMalformed},
		{"ethernet only, not DMSC", malformed(data[:14], func(b []byte) []byte { b[12] = 0x08; b[13] = 0; return b }), DropNotDMSC},
		{"IPv4", malformed(data, func(b []byte) []byte { b[12] = 0x08; b[13] = 0; return b }), DropNotDMSC},
		{"DMSC header cut", data[:57], DropMalformed},
		{"version 0", malformed(data, func(b []byte) []byte { b[14] = 0x00; return b }), DropBadVersion},
		{"version 2", malformed(data, func(b []byte) []byte { b[14] = 0x20; return b }), DropBadVersion},
		{"version 2 type probe, short", malformed(data[:58], func(b []byte) []byte { b[14] = 0x21; return b }), DropBadVersion},
		{"probe header cut", probe[:80], DropMalformed},
		{"type 4", malformed(data, func(b []byte) []byte { b[14] = 0x14; return b }), DropBadType},
		{"type 15", malformed(data, func(b []byte) []byte { b[14] = 0x1f; return b }), DropBadType},
		{"payload_len too long", malformed(data, func(b []byte) []byte { b[23]++; return b }), DropBadLength},
		{"payload_len too short", malformed(data, func(b []byte) []byte { b[23]--; return b }), DropBadLength},
		{"trailing byte", append(append([]byte(nil), data...), 0), DropBadLength},
		{"padding to 60 is fine", frameOf(testHdr, nil, []byte{1}), DropNone},
		{"padding past 60", append(frameOf(testHdr, nil, []byte{1}), 0), DropBadLength},
		{"hop limit 0 is not ParseFrame's business", malformed(data, func(b []byte) []byte { b[16] = 0; return b }), DropNone},
		{"reserved bits ignored", malformed(data, func(b []byte) []byte { b[15], b[25] = 0xff, 0xff; return b }), DropNone},
	}
	for _, tt := range tests {
		var f Frame
		if got := ParseFrame(tt.frame, &f); got != tt.want {
			t.Errorf("%s: ParseFrame = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestParseFrameDoesNotAllocate(t *testing.T) {
	b := frameOf(withType(testHdr, TypeProbe), &ProbeHeader{Seq: 1}, []byte("x"))
	var f Frame
	if n := testing.AllocsPerRun(1000, func() { ParseFrame(b, &f) }); n != 0 {
		t.Errorf("ParseFrame allocates %v times", n)
	}
	ctl, _ := AppendControl(nil, SignalPod, PodAnnounce, []byte("cert"))
	if n := testing.AllocsPerRun(1000, func() { DecodeControl(ctl) }); n != 0 {
		t.Errorf("DecodeControl allocates %v times", n)
	}
}

func TestDropReasonNames(t *testing.T) {
	seen := map[string]bool{}
	for r := DropReason(0); r < NumDropReasons; r++ {
		s := r.String()
		if s == "" || s == "unknown" || seen[s] {
			t.Errorf("DropReason(%d) = %q", r, s)
		}
		seen[s] = true
	}
	if DropReason(200).String() != "unknown" {
		t.Error("out of range")
	}
}

func TestControlEnvelope(t *testing.T) {
	b, err := AppendControl(nil, SignalLinkState, LSLSP, []byte("lsp"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := DecodeControl(append(b, 0, 0)) // padding after the body
	if err != nil || c.Signal != SignalLinkState || c.MsgType != LSLSP || string(c.Body) != "lsp" {
		t.Fatalf("DecodeControl = %+v, %v", c, err)
	}
	// A body longer than a frame carries, even with the bytes there.
	tooLong := make([]byte, ControlHeaderLen+MaxControlBody+1)
	tooLong[0], tooLong[1] = SignalPod, PodAnnounce
	binary.BigEndian.PutUint16(tooLong[2:], MaxControlBody+1)
	for _, tt := range []struct {
		in   []byte
		want error
	}{
		{b[:7], ErrControlShort},
		{b[:9], ErrControlBodyLen},
		{append([]byte{9}, b[1:]...), ErrControlSignal},
		{tooLong, ErrControlTooLong},
	} {
		if _, err := DecodeControl(tt.in); err != tt.want {
			t.Errorf("DecodeControl(%x) = %v, want %v", tt.in, err, tt.want)
		}
	}
	if _, err := AppendControl(nil, SignalPod, PodAnnounce, make([]byte, MaxControlBody+1)); err == nil {
		t.Error("oversized body accepted")
	}
}

func FuzzParseFrame(f *testing.F) {
	for _, v := range goldenFrames() {
		f.Add(v.frame)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var fr Frame
		if ParseFrame(b, &fr) != DropNone {
			return
		}
		// A well-formed frame re-encodes to its own bytes (less padding).
		var probe *ProbeHeader
		if fr.HasProbe {
			probe = &fr.Probe
		}
		again := AppendFrame(nil, fr.Eth, fr.Hdr, probe, fr.Payload)
		n := EthernetHeaderLen + HeaderLen + len(fr.Payload)
		if fr.HasProbe {
			n += ProbeHeaderLen
		}
		if !bytes.Equal(again[:n], b[:n]) {
			t.Fatalf("re-encoding differs:\n in  %x\n out %x", b[:n], again[:n])
		}
	})
}

func FuzzDecodeControl(f *testing.F) {
	b, _ := AppendControl(nil, SignalPod, PodProof, []byte("sig"))
	f.Add(b)
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := DecodeControl(b)
		if err != nil {
			return
		}
		again, err := AppendControl(nil, c.Signal, c.MsgType, c.Body)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(again[ControlHeaderLen:], c.Body) || !bytes.Equal(again[:4], b[:4]) {
			t.Fatalf("round trip differs: %x vs %x", again, b)
		}
	})
}

func BenchmarkParseFrame(b *testing.B) {
	frame := frameOf(testHdr, nil, make([]byte, 64))
	var f Frame
	b.SetBytes(int64(len(frame)))
	for b.Loop() {
		ParseFrame(frame, &f)
	}
}
