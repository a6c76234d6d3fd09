package softswitch

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Netlink (NETLINK_ROUTE) as far as a carrier watcher reads it: messages
// of a 16-byte header (length, type, flags, sequence, port id, in host byte
// order) padded to 4 bytes, RTM_NEWLINK and RTM_DELLINK carrying an
// ifinfomsg (family, type, index, flags, change). The carrier is
// IFF_LOWER_UP; an interface counts as up when it is administratively up
// (IFF_UP) and has it. The values are Linux's ABI; they are spelled out
// here so that the parser builds and is fuzzed on every platform.
const (
	nlmsgHdrLen  = 16
	ifinfomsgLen = 16
	nlmsgDone    = 3
	rtmNewLink   = 16
	rtmDelLink   = 17
	iffUp        = 0x1
	iffLowerUp   = 0x10000
)

// PortSetter is what WatchCarrier drives: a Switch.
type PortSetter interface {
	SetPortUp(num uint16, up bool) error
}

// linkEvent is what one netlink message says of one interface.
type linkEvent struct {
	Index int32
	Up    bool
}

var errNetlinkShort = errors.New("netlink: message shorter than its header")

// parseLinkEvents reads the link messages of one netlink datagram; other
// message types are skipped. A malformed datagram yields the events before
// the fault and an error.
func parseLinkEvents(b []byte) ([]linkEvent, error) {
	var out []linkEvent
	for len(b) > 0 {
		if len(b) < nlmsgHdrLen {
			return out, errNetlinkShort
		}
		n := int(binary.NativeEndian.Uint32(b[0:4]))
		typ := binary.NativeEndian.Uint16(b[4:6])
		if n < nlmsgHdrLen || n > len(b) {
			return out, fmt.Errorf("netlink: message length %d with %d bytes left", n, len(b))
		}
		body := b[nlmsgHdrLen:n]
		switch typ {
		case rtmNewLink, rtmDelLink:
			if len(body) < ifinfomsgLen {
				return out, fmt.Errorf("netlink: link message of %d bytes, want at least %d", len(body), ifinfomsgLen)
			}
			idx := int32(binary.NativeEndian.Uint32(body[4:8]))
			flags := binary.NativeEndian.Uint32(body[8:12])
			out = append(out, linkEvent{Index: idx, Up: typ == rtmNewLink && flags&iffUp != 0 && flags&iffLowerUp != 0})
		case nlmsgDone:
			return out, nil
		}
		// Messages are padded to 4 bytes; the last one may end the
		// datagram without its padding.
		n = (n + 3) &^ 3
		if n > len(b) {
			n = len(b)
		}
		b = b[n:]
	}
	return out, nil
}
