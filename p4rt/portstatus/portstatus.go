// Package portstatus is DMSC's extension of the P4Runtime stream for port
// carrier changes: a switch that knows when a port loses or regains its link
// (the software switch does; BMv2 does not) tells its primary controllers at
// once in StreamMessageResponse.other, so that the agent takes the adjacency
// down without waiting for the HELLO dead interval, as a router does on an
// interface-down event. HELLOs stay the only way an adjacency comes up, and
// catch the failures a carrier does not show (a silent peer, a one-way link).
//
// The message is a google.protobuf.Any whose type URL is TypeURL and whose
// value is the protobuf encoding of
//
//	message PortStatus {
//	  uint32 port = 1; // the switch's port number
//	  bool up = 2;     // carrier present
//	}
//
// encoded by hand here so that the project needs no generated code for two
// fields. Controllers that do not know the type URL ignore the message, as
// the P4Runtime specification requires of unknown "other" messages.
package portstatus

import (
	"errors"
	"fmt"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/types/known/anypb"
)

// TypeURL names the message in the Any.
const TypeURL = "type.googleapis.com/dmsc.p4rt.PortStatus"

// Status is one port's carrier change.
type Status struct {
	Port uint32
	Up   bool
}

// Any encodes s for StreamMessageResponse.other.
func (s Status) Any() *anypb.Any {
	var b []byte
	b = protowire.AppendTag(b, 1, protowire.VarintType)
	b = protowire.AppendVarint(b, uint64(s.Port))
	if s.Up {
		b = protowire.AppendTag(b, 2, protowire.VarintType)
		b = protowire.AppendVarint(b, 1)
	}
	return &anypb.Any{TypeUrl: TypeURL, Value: b}
}

// ErrOtherType says the Any is not a port status (some other extension).
var ErrOtherType = errors.New("portstatus: not a port status message")

// Parse decodes a port status. Unknown fields are skipped, as protobuf
// requires; a malformed value is an error.
func Parse(a *anypb.Any) (Status, error) {
	if a.GetTypeUrl() != TypeURL {
		return Status{}, ErrOtherType
	}
	var s Status
	b := a.GetValue()
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return Status{}, fmt.Errorf("portstatus: %w", protowire.ParseError(n))
		}
		b = b[n:]
		if typ == protowire.VarintType && (num == 1 || num == 2) {
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return Status{}, fmt.Errorf("portstatus: field %d: %w", num, protowire.ParseError(n))
			}
			b = b[n:]
			if num == 1 {
				if v > 0xffffffff {
					return Status{}, fmt.Errorf("portstatus: port %d does not fit 32 bits", v)
				}
				s.Port = uint32(v)
			} else {
				s.Up = v != 0
			}
			continue
		}
		n = protowire.ConsumeFieldValue(num, typ, b)
		if n < 0 {
			return Status{}, fmt.Errorf("portstatus: field %d: %w", num, protowire.ParseError(n))
		}
		b = b[n:]
	}
	return s, nil
}
