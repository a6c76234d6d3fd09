package controller

import (
	"context"
	"fmt"
	"time"

	"github.com/dmsc-mesh/dmsc/controller/lsmsg"
	"github.com/dmsc-mesh/dmsc/p4"
	"github.com/dmsc-mesh/dmsc/p4rt"
	"github.com/dmsc-mesh/dmsc/wire"
)

// packetIn handles one frame the switch punted.
func (a *Agent) packetIn(pi p4rt.PacketIn) {
	l := a.loop
	port64, ok := pi.Meta[p4.MetaIngress]
	if !ok || port64 >= p4.MaxPorts {
		a.drop("packet_in_metadata")
		return
	}
	port := uint16(port64)
	var f wire.Frame
	if r := wire.ParseFrame(pi.Payload, &f); r != wire.DropNone {
		a.drop("malformed_frame")
		return
	}
	ps, known := l.ports[port]
	if f.Hdr.Type != wire.TypeControl {
		// A frame routed to our node key (to_cpu): agent-to-agent traffic and
		// probe replies.
		a.nodeFrame(port, &f)
		return
	}
	if !known {
		a.drop("control_on_unmanaged_port")
		return
	}
	if f.Hdr.NextProto != wire.ProtoControl {
		a.drop("control_bad_next_proto")
		return
	}
	c, err := wire.DecodeControl(f.Payload)
	if err != nil {
		a.drop("control_malformed")
		return
	}
	switch {
	case c.Signal == wire.SignalLinkState && ps.Kind == PortFabric:
		a.linkState(port, c, len(pi.Payload))
	case c.Signal == wire.SignalPod && ps.Kind == PortPod && l.sg != nil:
		a.podSignal(port, &f, c)
	default:
		// Link-state on a pod port would let a pod forge the fabric's
		// topology; pod signalling on a fabric port has no pod behind it.
		a.drop(fmt.Sprintf("signal_%d_on_%s_port", c.Signal, ps.Kind))
	}
}

// nodeFrame handles a DATA or probe frame addressed to this node.
func (a *Agent) nodeFrame(port uint16, f *wire.Frame) {
	if a.probeFrame(port, f) {
		return
	}
	a.drop("node_frame_unhandled")
}

// linkState dispatches a link-state message from a fabric port.
func (a *Agent) linkState(port uint16, c wire.Control, frameLen int) {
	l := a.loop
	now := a.now()
	switch c.MsgType {
	case wire.LSHello:
		h, err := lsmsg.DecodeHello(c.Body)
		if err != nil {
			a.drop("hello_malformed")
			return
		}
		l.counters.HellosReceived++
		for _, ch := range l.adj.Receive(port, HelloInfo{
			Router: h.Router, Port: h.Port, HeardRouter: h.HeardRouter, HeardPort: h.HeardPort,
			HoldTime: h.HoldTime, NeighborDMAC: macUint(h.MAC),
		}, now) {
			a.adjacencyChanged(ch, now)
		}
		a.neighborMACChanged(port)
		return
	}
	n, up := l.nbrs[port]
	if !up {
		// Only a two-way adjacency exchanges the database.
		a.drop("linkstate_without_adjacency")
		return
	}
	switch c.MsgType {
	case wire.LSLSP:
		if frameLen > lsmsg.MaxFrame || len(c.Body) > lsmsg.MaxBody {
			a.drop("lsp_oversized")
			a.logOnce("oversized/"+string(n.id), "oversized LSP frame dropped", "from", string(n.id), "port", port, "bytes", frameLen)
			return
		}
		lsp, err := lsmsg.DecodeLSP(c.Body)
		if err != nil {
			a.drop("lsp_malformed")
			a.logOnce("malformed/"+string(n.id), "malformed LSP dropped", "from", string(n.id), "port", port, "err", err)
			return
		}
		a.receiveLSP(port, n, lsp, now)
	case wire.LSAck:
		ack, err := lsmsg.DecodeAck(c.Body)
		if err != nil {
			a.drop("ack_malformed")
			return
		}
		l.counters.AcksReceived++
		for _, s := range ack.Entries {
			if l.db.Covers(s) {
				delete(n.send, s.ID())
			}
		}
	case wire.LSDBSummary:
		s, err := lsmsg.DecodeDBSummary(c.Body)
		if err != nil {
			a.drop("summary_malformed")
			return
		}
		a.receiveSummary(n, s, now)
	case wire.LSDBRequest:
		q, err := lsmsg.DecodeDBRequest(c.Body)
		if err != nil {
			a.drop("request_malformed")
			return
		}
		for _, id := range q.IDs {
			if _, ok := l.db.Get(id, now); ok {
				n.send[id] = now
			}
		}
	default:
		a.drop("linkstate_unknown_type")
	}
}

// sendControl sends a control message out of a port, link-local.
func (a *Agent) sendControl(port uint16, signal, msgType uint8, body []byte, src wire.Key, dstMAC [6]byte) error {
	l := a.loop
	payload, err := wire.AppendControl(make([]byte, 0, wire.ControlHeaderLen+len(body)), signal, msgType, body)
	if err != nil {
		return err
	}
	ps := l.ports[port]
	eth := wire.Ethernet{Dst: dstMAC, EtherType: wire.EtherType}
	if ps != nil {
		eth.Src = ps.mac
	}
	h := wire.Header{
		Version: wire.Version, Type: wire.TypeControl, HopLimit: 1,
		PayloadLen: uint16(len(payload)), NextProto: wire.ProtoControl, Src: src,
	}
	frame := wire.AppendFrame(make([]byte, 0, wire.EthernetHeaderLen+wire.HeaderLen+len(payload)), eth, h, nil, payload)
	return a.packetOut(frame, port, p4.OutDirect)
}

// packetOut hands a frame to the switch. A stream that is down loses the
// frame; the protocols above retransmit what matters.
func (a *Agent) packetOut(frame []byte, port uint16, mode uint64) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	err := a.loop.client.PacketOut(ctx, frame, map[string]uint64{p4.MetaEgressPort: uint64(port), p4.MetaMode: mode})
	if err != nil {
		a.drop("packet_out_failed")
		a.logOnce("packetout", "packet-out failed; control traffic is lost until the stream is back", "err", err)
	}
	return err
}

var broadcastMAC = [6]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}

// sendHellos sends the HELLOs that are due.
func (a *Agent) sendHellos(now time.Duration) {
	l := a.loop
	for _, port := range l.fabric {
		ps := l.ports[port]
		if now < ps.nextHello {
			continue
		}
		ps.nextHello = now + jitter(a.t.Hello)
		hi := l.adj.Hello(port)
		body, err := lsmsg.AppendHello(nil, lsmsg.Hello{
			Router: hi.Router, Port: hi.Port, HeardRouter: hi.HeardRouter, HeardPort: hi.HeardPort,
			HoldTime: a.t.Dead, MAC: ps.mac,
		})
		if err != nil {
			a.logOnce("hello-encode", "cannot encode HELLO", "err", err)
			continue
		}
		if a.sendControl(port, wire.SignalLinkState, wire.LSHello, body, a.nodeKey, broadcastMAC) == nil {
			l.counters.HellosSent++
		}
	}
}
