package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// The control-message envelope is the payload of a CONTROL frame (next_proto
// 2), and of DATA frames between agents: 8 bytes, then the body.
//
//	signal (8) | msg_type (8) | body_len (16) | reserved (32) | body
const ControlHeaderLen = 8

// MaxControlBody keeps a control message within one 1,500-byte MTU frame.
const MaxControlBody = MaxPayload - ControlHeaderLen

// Signals: the draft's control signaling types.
const (
	SignalPod       = 1 // Service Prefix Announcement, pod ↔ SG
	SignalLinkState = 2 // Service Prefix LSA, SG/SR ↔ SG/SR
	SignalQoS       = 4 // QoS telemetry and policy
)

// Message types of SignalPod.
const (
	PodAnnounce  = 1
	PodChallenge = 2
	PodProof     = 3
	PodAccept    = 4
	PodReject    = 5
	PodKeepalive = 6
	PodWithdraw  = 7
)

// Message types of SignalLinkState.
const (
	LSHello     = 1
	LSLSP       = 2
	LSAck       = 3
	LSDBSummary = 4
	LSDBRequest = 5
)

// Control is a decoded envelope. Body aliases the decoded buffer.
type Control struct {
	Signal  uint8
	MsgType uint8
	Body    []byte
}

// Errors of DecodeControl.
var (
	ErrControlShort   = errors.New("wire: control message shorter than its 8-byte envelope")
	ErrControlBodyLen = errors.New("wire: control message body_len beyond the message")
	ErrControlTooLong = fmt.Errorf("wire: control message body_len beyond the %d bytes one frame carries", MaxControlBody)
	ErrControlSignal  = errors.New("wire: control message of an unknown signal")
)

// DecodeControl reads an envelope without allocating. Bytes after the body
// (frame padding) are ignored; reserved bits are ignored.
func DecodeControl(b []byte) (Control, error) {
	if len(b) < ControlHeaderLen {
		return Control{}, ErrControlShort
	}
	c := Control{Signal: b[0], MsgType: b[1]}
	switch c.Signal {
	case SignalPod, SignalLinkState, SignalQoS:
	default:
		return Control{}, ErrControlSignal
	}
	n := int(binary.BigEndian.Uint16(b[2:]))
	if n > MaxControlBody {
		// No conforming sender writes it (AppendControl refuses), and
		// no frame carries it.
		return Control{}, ErrControlTooLong
	}
	if ControlHeaderLen+n > len(b) {
		return Control{}, ErrControlBodyLen
	}
	c.Body = b[ControlHeaderLen : ControlHeaderLen+n : ControlHeaderLen+n]
	return c, nil
}

// AppendControl appends an envelope and its body to dst.
func AppendControl(dst []byte, signal, msgType uint8, body []byte) ([]byte, error) {
	if len(body) > MaxControlBody {
		return dst, fmt.Errorf("wire: control body of %d bytes exceeds %d", len(body), MaxControlBody)
	}
	var h [ControlHeaderLen]byte
	h[0], h[1] = signal, msgType
	binary.BigEndian.PutUint16(h[2:], uint16(len(body)))
	dst = append(dst, h[:]...)
	return append(dst, body...), nil
}
