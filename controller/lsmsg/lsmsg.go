// Package lsmsg encodes and decodes the bodies of the link-state control
// messages (signal 2, DESIGN §6) that agents exchange on fabric links: HELLO,
// LSP, ACK, DB_SUMMARY and DB_REQUEST, and signs and verifies LSPs. It is
// pure: no I/O, no clocks. docs/linkstate.md describes the formats byte by
// byte so that another implementation can interoperate.
package lsmsg

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/dmsc-mesh/dmsc/spf"
	"github.com/dmsc-mesh/dmsc/wire"
)

// MaxFrame is the largest frame an LSP travels in (DESIGN: fragments that fit
// a 1,400-byte frame), and MaxBody the largest message body that fits it
// after the Ethernet and DMSC headers and the control envelope.
const (
	MaxFrame = 1400
	MaxBody  = MaxFrame - wire.EthernetHeaderLen - wire.HeaderLen - wire.ControlHeaderLen
)

// Errors. Decoders wrap them with the field at fault.
var (
	ErrTruncated = errors.New("lsmsg: message truncated")
	ErrTrailing  = errors.New("lsmsg: bytes after the message")
	ErrField     = errors.New("lsmsg: bad field")
	ErrTooLarge  = errors.New("lsmsg: message larger than one frame")
)

// reader consumes a message; the first failure sticks, so decoders read
// every field and check once.
type reader struct {
	b   []byte
	err error
}

func (r *reader) fail(field string, err error) {
	if r.err == nil {
		r.err = fmt.Errorf("%w: %s", err, field)
	}
}

func (r *reader) take(field string, n int) []byte {
	if r.err != nil {
		return nil
	}
	if n < 0 || len(r.b) < n {
		r.fail(field, ErrTruncated)
		return nil
	}
	v := r.b[:n:n]
	r.b = r.b[n:]
	return v
}

func (r *reader) u8(field string) uint8 {
	if v := r.take(field, 1); v != nil {
		return v[0]
	}
	return 0
}

func (r *reader) u16(field string) uint16 {
	if v := r.take(field, 2); v != nil {
		return binary.BigEndian.Uint16(v)
	}
	return 0
}

func (r *reader) u32(field string) uint32 {
	if v := r.take(field, 4); v != nil {
		return binary.BigEndian.Uint32(v)
	}
	return 0
}

func (r *reader) u64(field string) uint64 {
	if v := r.take(field, 8); v != nil {
		return binary.BigEndian.Uint64(v)
	}
	return 0
}

// node reads a length-prefixed node id (1..255 bytes).
func (r *reader) node(field string) spf.NodeID {
	n := int(r.u8(field))
	v := r.take(field, n)
	if r.err == nil && n == 0 {
		r.fail(field, fmt.Errorf("%w (empty node id)", ErrField))
	}
	return spf.NodeID(v)
}

// optNode reads a length-prefixed node id that may be empty.
func (r *reader) optNode(field string) spf.NodeID {
	n := int(r.u8(field))
	return spf.NodeID(r.take(field, n))
}

func (r *reader) done() error {
	if r.err == nil && len(r.b) != 0 {
		return fmt.Errorf("%w: %d bytes", ErrTrailing, len(r.b))
	}
	return r.err
}

func appendNode(dst []byte, id spf.NodeID) ([]byte, error) {
	if len(id) > spf.MaxNodeIDLen {
		return dst, fmt.Errorf("%w: node id of %d bytes", ErrField, len(id))
	}
	dst = append(dst, byte(len(id)))
	return append(dst, id...), nil
}

// Hello is a HELLO body: who sends it, on which of its ports, whom it hears
// on that port, how long the receiver may trust it, and the sender's MAC
// address on that port (the receiver's next hops write it as dmac).
type Hello struct {
	Router      spf.NodeID
	Port        uint32
	HeardRouter spf.NodeID // empty: nobody heard yet
	HeardPort   uint32
	HoldTime    time.Duration // millisecond resolution on the wire
	MAC         [6]byte
}

// AppendHello appends a HELLO body.
func AppendHello(dst []byte, h Hello) ([]byte, error) {
	if h.Router == "" {
		return dst, fmt.Errorf("%w: hello without a router id", ErrField)
	}
	ms := h.HoldTime / time.Millisecond
	if ms < 0 || ms > 1<<32-1 {
		return dst, fmt.Errorf("%w: hold time %v", ErrField, h.HoldTime)
	}
	var err error
	if dst, err = appendNode(dst, h.Router); err != nil {
		return dst, err
	}
	dst = binary.BigEndian.AppendUint32(dst, h.Port)
	if dst, err = appendNode(dst, h.HeardRouter); err != nil {
		return dst, err
	}
	dst = binary.BigEndian.AppendUint32(dst, h.HeardPort)
	dst = binary.BigEndian.AppendUint32(dst, uint32(ms))
	return append(dst, h.MAC[:]...), nil
}

// DecodeHello reads a HELLO body.
func DecodeHello(b []byte) (Hello, error) {
	r := reader{b: b}
	var h Hello
	h.Router = r.node("router")
	h.Port = r.u32("port")
	h.HeardRouter = r.optNode("heard router")
	h.HeardPort = r.u32("heard port")
	h.HoldTime = time.Duration(r.u32("hold time")) * time.Millisecond
	copy(h.MAC[:], r.take("mac", 6))
	return h, r.done()
}
