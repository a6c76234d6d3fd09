package wire

import (
	"encoding/binary"
	"errors"
)

// Sizes and constants of a DMSC frame (DESIGN §3).
const (
	EtherType         = 0x88B5
	EthernetHeaderLen = 14
	HeaderLen         = 44
	ProbeHeaderLen    = 32
	// MinEthernetFrame is the shortest Ethernet frame (without FCS). A
	// shorter DMSC frame is padded to it, and only that padding is tolerated
	// after the payload.
	MinEthernetFrame = 60
	Version          = 1
	// DefaultHopLimit is what senders put in new frames, and what a
	// reflected probe reply starts with.
	DefaultHopLimit = 64
	// MaxPayload keeps a frame within a 1,500-byte MTU.
	MaxPayload = 1500 - HeaderLen
)

// Frame types.
const (
	TypeData       = 0
	TypeProbe      = 1
	TypeProbeReply = 2
	TypeControl    = 3
)

// next_proto values.
const (
	ProtoNone     = 0
	ProtoDatagram = 1 // QUIC or another datagram protocol
	ProtoControl  = 2 // a control-message envelope
)

// Ethernet is the Ethernet II header in front of every DMSC header.
type Ethernet struct {
	Dst, Src  [6]byte
	EtherType uint16
}

// Header is the fixed 44-byte DMSC header.
type Header struct {
	Version    uint8 // 4 bits
	Type       uint8 // 4 bits
	Flags      uint8
	HopLimit   uint8
	QoSClass   uint8
	FlowLabel  uint32
	PayloadLen uint16
	NextProto  uint8
	Reserved   uint8
	Dst, Src   Key
}

// ProbeHeader follows the DMSC header in PROBE and PROBE_REPLY frames. Times
// are nanoseconds: t_tx on the prober's clock, t_rx and t_reply on the
// reflector's, so a round trip needs no synchronized clocks.
type ProbeHeader struct {
	Seq      uint32
	Reserved uint32
	TTx      uint64
	TRx      uint64
	TReply   uint64
}

// Frame is a parsed DMSC frame. Payload aliases the parsed buffer and
// excludes Ethernet padding.
type Frame struct {
	Eth      Ethernet
	Hdr      Header
	Probe    ProbeHeader
	HasProbe bool
	Payload  []byte
}

// ErrShort is returned by decoders given too few bytes.
var ErrShort = errors.New("wire: buffer too short")

// IsProbeType reports whether frames of type t carry a probe header.
func IsProbeType(t uint8) bool { return t == TypeProbe || t == TypeProbeReply }

// Decode reads the header from the first HeaderLen bytes of b.
func (h *Header) Decode(b []byte) error {
	if len(b) < HeaderLen {
		return ErrShort
	}
	h.Version = b[0] >> 4
	h.Type = b[0] & 0x0f
	h.Flags = b[1]
	h.HopLimit = b[2]
	h.QoSClass = b[3]
	h.FlowLabel = binary.BigEndian.Uint32(b[4:])
	h.PayloadLen = binary.BigEndian.Uint16(b[8:])
	h.NextProto = b[10]
	h.Reserved = b[11]
	copy(h.Dst[:], b[12:28])
	copy(h.Src[:], b[28:44])
	return nil
}

// Encode writes the header into the first HeaderLen bytes of b.
func (h *Header) Encode(b []byte) {
	_ = b[HeaderLen-1]
	b[0] = h.Version<<4 | h.Type&0x0f
	b[1] = h.Flags
	b[2] = h.HopLimit
	b[3] = h.QoSClass
	binary.BigEndian.PutUint32(b[4:], h.FlowLabel)
	binary.BigEndian.PutUint16(b[8:], h.PayloadLen)
	b[10] = h.NextProto
	b[11] = h.Reserved
	copy(b[12:28], h.Dst[:])
	copy(b[28:44], h.Src[:])
}

// Decode reads the probe header from the first ProbeHeaderLen bytes of b.
func (p *ProbeHeader) Decode(b []byte) error {
	if len(b) < ProbeHeaderLen {
		return ErrShort
	}
	p.Seq = binary.BigEndian.Uint32(b[0:])
	p.Reserved = binary.BigEndian.Uint32(b[4:])
	p.TTx = binary.BigEndian.Uint64(b[8:])
	p.TRx = binary.BigEndian.Uint64(b[16:])
	p.TReply = binary.BigEndian.Uint64(b[24:])
	return nil
}

// Encode writes the probe header into the first ProbeHeaderLen bytes of b.
func (p *ProbeHeader) Encode(b []byte) {
	_ = b[ProbeHeaderLen-1]
	binary.BigEndian.PutUint32(b[0:], p.Seq)
	binary.BigEndian.PutUint32(b[4:], p.Reserved)
	binary.BigEndian.PutUint64(b[8:], p.TTx)
	binary.BigEndian.PutUint64(b[16:], p.TRx)
	binary.BigEndian.PutUint64(b[24:], p.TReply)
}

// Decode reads the Ethernet header from the first 14 bytes of b.
func (e *Ethernet) Decode(b []byte) error {
	if len(b) < EthernetHeaderLen {
		return ErrShort
	}
	copy(e.Dst[:], b[0:6])
	copy(e.Src[:], b[6:12])
	e.EtherType = binary.BigEndian.Uint16(b[12:])
	return nil
}

// Encode writes the Ethernet header into the first 14 bytes of b.
func (e *Ethernet) Encode(b []byte) {
	_ = b[EthernetHeaderLen-1]
	copy(b[0:6], e.Dst[:])
	copy(b[6:12], e.Src[:])
	binary.BigEndian.PutUint16(b[12:], e.EtherType)
}

// ParseFrame checks and decodes an Ethernet frame, without allocating. It
// applies the P4 pipeline's well-formedness checks in the same order and
// returns the first that fails, or DropNone:
//
//  1. shorter than an Ethernet header          → DropMalformed
//  2. EtherType is not 0x88B5                  → DropNotDMSC
//  3. shorter than Ethernet + DMSC header      → DropMalformed
//  4. version is not 1                         → DropBadVersion
//  5. probe type without a whole probe header  → DropMalformed
//  6. type above 3                             → DropBadType
//  7. length is not 58 + payload_len (+32 for probes), except padding to
//     60 bytes                                 → DropBadLength
//
// The hop limit is not checked here: the pipeline checks it only for frames
// it forwards, after CONTROL frames have been punted.
func ParseFrame(b []byte, f *Frame) DropReason {
	if len(b) < EthernetHeaderLen {
		return DropMalformed
	}
	f.Eth.Decode(b)
	if f.Eth.EtherType != EtherType {
		return DropNotDMSC
	}
	if len(b) < EthernetHeaderLen+HeaderLen {
		return DropMalformed
	}
	f.Hdr.Decode(b[EthernetHeaderLen:])
	if f.Hdr.Version != Version {
		return DropBadVersion
	}
	off := EthernetHeaderLen + HeaderLen
	f.HasProbe = IsProbeType(f.Hdr.Type)
	if f.HasProbe {
		if len(b) < off+ProbeHeaderLen {
			return DropMalformed
		}
		f.Probe.Decode(b[off:])
		off += ProbeHeaderLen
	} else {
		f.Probe = ProbeHeader{}
	}
	if f.Hdr.Type > TypeControl {
		return DropBadType
	}
	expected := off + int(f.Hdr.PayloadLen)
	if len(b) < expected || (len(b) > expected && len(b) > MinEthernetFrame) {
		return DropBadLength
	}
	f.Payload = b[off:expected:expected]
	return DropNone
}

// AppendFrame appends a whole frame to dst: Ethernet, header (payload_len and
// version set here), the probe header when probe is not nil, the payload, and
// zero padding up to 60 bytes.
func AppendFrame(dst []byte, eth Ethernet, h Header, probe *ProbeHeader, payload []byte) []byte {
	n := EthernetHeaderLen + HeaderLen + len(payload)
	if probe != nil {
		n += ProbeHeaderLen
	}
	total := max(n, MinEthernetFrame)
	start := len(dst)
	dst = append(dst, make([]byte, total)...)
	b := dst[start:]
	eth.EtherType = EtherType
	eth.Encode(b)
	h.Version = Version
	h.PayloadLen = uint16(len(payload))
	h.Encode(b[EthernetHeaderLen:])
	off := EthernetHeaderLen + HeaderLen
	if probe != nil {
		probe.Encode(b[off:])
		off += ProbeHeaderLen
	}
	copy(b[off:], payload)
	return dst
}
