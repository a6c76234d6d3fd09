package softswitch

import (
	"encoding/binary"
	"testing"

	"github.com/dmsc-mesh/dmsc/wire"
)

// TestOffsetsMatchWire checks the pipeline's in-place offsets against the
// wire package's encoder.
func TestOffsetsMatchWire(t *testing.T) {
	h := wire.Header{Type: wire.TypeProbe, HopLimit: 0x42, FlowLabel: 0x01020304,
		Dst: key(1, 2, 3, 4), Src: key(5, 6, 7, 8)}
	p := &wire.ProbeHeader{Seq: 9, TTx: 10, TRx: 11, TReply: 12}
	eth := wire.Ethernet{Dst: mac(1), Src: mac(2)}
	b := wire.AppendFrame(nil, eth, h, p, []byte("x"))
	switch {
	case b[offVerType] != wire.Version<<4|wire.TypeProbe:
		t.Error("version/type")
	case b[offHopLimit] != 0x42:
		t.Error("hop limit")
	case binary.BigEndian.Uint32(b[offFlowLabel:]) != 0x01020304:
		t.Error("flow label")
	case dstOf(b) != h.Dst || srcOf(b) != h.Src:
		t.Error("keys")
	case binary.BigEndian.Uint32(b[offInstance:]) != 4:
		t.Error("instance")
	case binary.BigEndian.Uint64(b[offTRx:]) != 11 || binary.BigEndian.Uint64(b[offTReply:]) != 12:
		t.Error("probe times")
	case [6]byte(b[offEthDst:]) != eth.Dst || [6]byte(b[offEthSrc:]) != eth.Src:
		t.Error("Ethernet")
	}
}
