package server

import (
	"fmt"

	p4v1 "github.com/p4lang/p4runtime/go/p4/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/dmsc-mesh/dmsc/p4rt/p4info"
	"github.com/dmsc-mesh/dmsc/p4rt/portstatus"
)

// packetIn is the sink registered with the target. It must never block the
// target's packet path: each primary stream has a bounded queue, and a
// packet that finds no primary or a full queue is dropped and counted.
// Every role has full access, so the primary of every role receives it.
func (s *Server) packetIn(pkt *p4v1.PacketIn) {
	prim := *s.primaries.Load()
	if len(prim) == 0 {
		s.stats.dropNoPrimary.Add(1)
		return
	}
	for _, st := range prim {
		select {
		case st.pkts <- pkt:
			s.stats.packetIns.Add(1)
		default:
			s.stats.dropQueueFull.Add(1)
		}
	}
}

// portStatus tells every primary controller of a port's carrier change.
func (s *Server) portStatus(port uint32, up bool) {
	for _, st := range *s.primaries.Load() {
		st.queue(&p4v1.StreamMessageResponse{Update: &p4v1.StreamMessageResponse_Other{
			Other: portstatus.Status{Port: port, Up: up}.Any(),
		}})
	}
}

// packetOut validates a packet-out from st and hands it to the target.
// Problems are reported on the stream as StreamErrors (spec, "Stream Error Reporting"); the
// packet is dropped.
func (s *Server) packetOut(st *stream, pkt *p4v1.PacketOut) {
	err := s.checkPacketOut(st, pkt)
	if err == nil {
		err = s.target.PacketOut(pkt)
	}
	if err == nil {
		s.stats.packetOuts.Add(1)
		return
	}
	s.stats.packetOutErrors.Add(1)
	e := status.Convert(err)
	s.streamError(st, &p4v1.StreamError{
		CanonicalCode: int32(e.Code()),
		Message:       e.Message(),
		// The metadata identifies the packet; echoing the payload would
		// only cost bandwidth.
		Details: &p4v1.StreamError_PacketOut{PacketOut: &p4v1.PacketOutError{
			PacketOut: &p4v1.PacketOut{Metadata: pkt.GetMetadata()},
		}},
	})
}

func (s *Server) checkPacketOut(st *stream, pkt *p4v1.PacketOut) error {
	if pkt == nil {
		return status.Error(codes.InvalidArgument, "empty packet")
	}
	if !st.isPrimary.Load() {
		return status.Error(codes.PermissionDenied, "only the primary controller may send packets")
	}
	schema := s.dataplane.Load()
	if schema == nil {
		return status.Error(codes.FailedPrecondition, "no forwarding pipeline running")
	}
	return checkPacketMetadata(schema, pkt.Metadata)
}

// checkPacketMetadata checks metadata against the packet_out controller
// header: every field exactly once, each value fitting its width, and
// canonicalises the values in place.
func checkPacketMetadata(schema *p4info.Schema, md []*p4v1.PacketMetadata) error {
	hdr, err := schema.PacketMetadata("packet_out")
	if err != nil {
		if len(md) > 0 {
			return status.Error(codes.InvalidArgument, "the P4Info has no packet_out header: metadata must be empty")
		}
		return nil
	}
	for i, m := range md {
		if m == nil {
			return status.Error(codes.InvalidArgument, "empty packet_out metadata")
		}
		f, ok := hdr.FieldByID(m.MetadataId)
		if !ok {
			return status.Errorf(codes.InvalidArgument, "packet_out has no metadata id %d", m.MetadataId)
		}
		for _, prev := range md[:i] {
			if prev.MetadataId == m.MetadataId {
				return status.Errorf(codes.InvalidArgument, "packet_out metadata %q given twice", f.Name)
			}
		}
		c, err := canonical(m.Value, f.Bitwidth, func() string { return fmt.Sprintf("packet_out metadata %q", f.Name) })
		if err != nil {
			return err
		}
		if len(c) != len(m.Value) {
			m.Value = c
		}
	}
	if len(md) != len(hdr.Metadata) {
		for _, f := range hdr.Metadata {
			found := false
			for _, m := range md {
				found = found || m.MetadataId == f.Id
			}
			if !found {
				return status.Errorf(codes.InvalidArgument, "packet_out metadata %q is missing", f.Name)
			}
		}
	}
	return nil
}
