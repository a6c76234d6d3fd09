package pod

import (
	"sync/atomic"

	"github.com/dmsc-mesh/dmsc/wire"
)

// Drop reasons of the Endpoint beyond those of wire.ParseFrame (which appear
// in Stats.Drops under their wire.DropReason names: "malformed",
// "not_dmsc", "bad_version", "bad_type", "bad_length").
const (
	DropNotDatagram    = "not_datagram"       // DATA frame whose next_proto is not 1 (QUIC)
	DropNotControl     = "not_control"        // CONTROL frame whose next_proto is not 2
	DropUnexpectedType = "unexpected_type"    // PROBE or PROBE_REPLY: the SG reflects probes, pods never see them
	DropNoLocalKey     = "no_local_key"       // DATA before SetLocalKey
	DropWrongDst       = "wrong_dst"          // DATA whose dst_key is not this pod's instance key
	DropNoListener     = "no_listener"        // QUIC frame of no dial, and nothing listens
	DropStrayReply     = "stray_reply"        // reply to a pinned dial from another instance of the service
	DropQueueFull      = "queue_full"         // the PacketConn's receive queue was full
	DropLinkFull       = "link_full"          // the port refused the frame (its queue was full)
	DropNoHandler      = "no_control_handler" // CONTROL frame and no handler set
	DropConnClosed     = "conn_closed"        // datagram for a PacketConn closing at that moment
)

type counter int

const (
	cntFramesIn counter = iota
	cntFramesOut
	cntBytesIn
	cntBytesOut
	cntControlIn
	cntControlOut
	cntLoopback
	cntReadErrors
	cntTLSRefused
	cntDials
	cntDialErrors
	cntAccepted
	numCounters
)

// dropIndex indexes counters.drops: the wire reasons first, then the
// Endpoint's own, in the order of podDrops.
type dropIndex int

const (
	idxNotDatagram dropIndex = wire.NumDropReasons + iota
	idxNotControl
	idxUnexpectedType
	idxNoLocalKey
	idxWrongDst
	idxNoListener
	idxStrayReply
	idxQueueFull
	idxLinkFull
	idxNoHandler
	idxConnClosed
	numDrops
)

var podDrops = [numDrops - wire.NumDropReasons]string{
	DropNotDatagram, DropNotControl, DropUnexpectedType, DropNoLocalKey, DropWrongDst,
	DropNoListener, DropStrayReply, DropQueueFull, DropLinkFull, DropNoHandler,
	DropConnClosed,
}

// counters are the Endpoint's statistics, updated lock-free by the reader
// and the senders.
type counters struct {
	c     [numCounters]atomic.Uint64
	drops [numDrops]atomic.Uint64
}

func (s *counters) add(c counter, n uint64) { s.c[c].Add(n) }
func (s *counters) drop(i dropIndex)        { s.drops[i].Add(1) }
func (s *counters) dropWire(r wire.DropReason) {
	if int(r) < wire.NumDropReasons {
		s.drops[r].Add(1)
	}
}

// Stats is a snapshot of an Endpoint's counters.
type Stats struct {
	FramesIn, FramesOut uint64 // well-formed frames received; frames sent
	BytesIn, BytesOut   uint64 // their lengths, Ethernet header included
	ControlIn           uint64 // CONTROL frames handed to the control handler
	ControlOut          uint64 // CONTROL frames sent
	// Loopback counts datagrams a pod sent to its own instance key, which
	// the Endpoint delivers itself (a pod calling its own service).
	Loopback   uint64
	ReadErrors uint64 // errors of the port's ReadBatch other than Close
	// TLSRefused counts QUIC handshakes this pod's listener refused: a
	// client certificate that does not verify, or a dialed name the pod's
	// certificate does not own.
	TLSRefused   uint64
	Dials        uint64 // QUIC dials started
	DialErrors   uint64 // of those, the ones that failed
	Accepted     uint64 // QUIC connections accepted
	PendingDials int    // dials whose handshake is still running
	// Drops counts dropped frames by reason: the wire.DropReason names of
	// malformed frames and the Drop* constants of this package. A reason
	// that never happened is absent.
	Drops map[string]uint64
}

func (s *counters) snapshot() Stats {
	st := Stats{
		FramesIn:   s.c[cntFramesIn].Load(),
		FramesOut:  s.c[cntFramesOut].Load(),
		BytesIn:    s.c[cntBytesIn].Load(),
		BytesOut:   s.c[cntBytesOut].Load(),
		ControlIn:  s.c[cntControlIn].Load(),
		ControlOut: s.c[cntControlOut].Load(),
		Loopback:   s.c[cntLoopback].Load(),
		ReadErrors: s.c[cntReadErrors].Load(),
		TLSRefused: s.c[cntTLSRefused].Load(),
		Dials:      s.c[cntDials].Load(),
		DialErrors: s.c[cntDialErrors].Load(),
		Accepted:   s.c[cntAccepted].Load(),
		Drops:      map[string]uint64{},
	}
	for i := range s.drops {
		n := s.drops[i].Load()
		if n == 0 {
			continue
		}
		if i < wire.NumDropReasons {
			st.Drops[wire.DropReason(i).String()] = n
		} else {
			st.Drops[podDrops[i-wire.NumDropReasons]] = n
		}
	}
	return st
}

// Dropped is the total of Drops.
func (s Stats) Dropped() uint64 {
	var n uint64
	for _, v := range s.Drops {
		n += v
	}
	return n
}
