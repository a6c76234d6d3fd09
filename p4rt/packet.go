package p4rt

import (
	"context"
	"errors"
	"fmt"
	"sort"

	p4v1 "github.com/p4lang/p4runtime/go/p4/v1"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/dmsc-mesh/dmsc/p4rt/p4info"
	"github.com/dmsc-mesh/dmsc/p4rt/portstatus"
)

// PacketIn is a packet from the switch with its packet_in metadata by name.
type PacketIn struct {
	Payload []byte
	Meta    map[string]uint64
}

// PacketIns delivers packets punted by the switch to this (primary) client.
// When the reader falls behind, new packets are dropped and counted.
func (c *Client) PacketIns() <-chan PacketIn { return c.packetIns }

// portStatusBuffer bounds the port-status changes waiting for the reader:
// a switch has at most a few hundred ports, and each change matters.
const portStatusBuffer = 512

// PortStatus delivers the carrier changes the switch reports (the software
// switch does, BMv2 does not: package p4rt/portstatus). A reader that falls
// so far behind that the buffer fills loses the newest, and a warning says so.
func (c *Client) PortStatus() <-chan portstatus.Status { return c.ports }

// onOther handles the stream's extension messages: port status, and
// nothing else yet (others are ignored, as the specification asks).
func (c *Client) onOther(a *anypb.Any) {
	st, err := portstatus.Parse(a)
	if errors.Is(err, portstatus.ErrOtherType) {
		c.log.Debug("ignoring an unknown stream message", "type_url", a.GetTypeUrl())
		return
	}
	if err != nil {
		c.log.Warn("malformed port status from the switch", "err", err)
		return
	}
	select {
	case c.ports <- st:
	default:
		c.log.Warn("port-status reader too slow, dropping a change", "port", st.Port, "up", st.Up)
	}
}

func (c *Client) onPacketIn(p *p4v1.PacketIn) {
	pin := PacketIn{Payload: p.Payload}
	if s := c.Schema(); s != nil {
		meta, err := DecodePacketMetadata(s, "packet_in", p.Metadata)
		if err != nil {
			c.log.Warn("packet-in with bad metadata", "err", err)
		}
		pin.Meta = meta
	}
	select {
	case c.packetIns <- pin:
	default:
		if c.packetInsDropped.Add(1)%1000 == 1 {
			c.log.Warn("packet-in reader too slow, dropping", "dropped", c.packetInsDropped.Load())
		}
	}
}

// DecodePacketMetadata names the metadata of a controller header ("packet_in"
// or "packet_out"). Unknown ids and values wider than 64 bits are errors; the
// fields it could decode are returned anyway.
func DecodePacketMetadata(s *p4info.Schema, header string, md []*p4v1.PacketMetadata) (map[string]uint64, error) {
	pm, err := s.PacketMetadata(header)
	if err != nil {
		return nil, err
	}
	out := make(map[string]uint64, len(md))
	var errs []error
	for _, m := range md {
		f, ok := pm.FieldByID(m.MetadataId)
		if !ok {
			errs = append(errs, fmt.Errorf("p4rt: %s has no metadata id %d", header, m.MetadataId))
			continue
		}
		v, err := p4info.ToUint(m.Value)
		if err != nil {
			errs = append(errs, fmt.Errorf("p4rt: %s.%s: %w", header, f.Name, err))
			continue
		}
		out[f.Name] = v
	}
	return out, errors.Join(errs...)
}

// EncodePacketMetadata builds controller-header metadata from values by
// name, checking each name and width against the P4Info.
func EncodePacketMetadata(s *p4info.Schema, header string, meta map[string]uint64) ([]*p4v1.PacketMetadata, error) {
	pm, err := s.PacketMetadata(header)
	if err != nil {
		return nil, err
	}
	out := make([]*p4v1.PacketMetadata, 0, len(meta))
	for name, v := range meta {
		f, err := pm.Field(name)
		if err != nil {
			return nil, err
		}
		b := p4info.Uint(v)
		if err := p4info.CheckWidth(header+"."+name, b, f.Bitwidth); err != nil {
			return nil, err
		}
		out = append(out, &p4v1.PacketMetadata{MetadataId: f.Id, Value: b})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].MetadataId < out[j].MetadataId })
	return out, nil
}

// PacketOut sends a packet through the switch with packet_out metadata by
// name. It fails when the stream is down; the switch's verdict on the
// packet, if it refuses it, arrives on StreamErrors.
func (c *Client) PacketOut(ctx context.Context, payload []byte, meta map[string]uint64) error {
	s, err := c.requireSchema()
	if err != nil {
		return err
	}
	md, err := EncodePacketMetadata(s, "packet_out", meta)
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	c.mu.Lock()
	stream := c.stream
	c.mu.Unlock()
	if stream == nil {
		return errors.New("p4rt: packet-out: stream to the switch is down")
	}
	return c.send(stream, &p4v1.StreamMessageRequest{Update: &p4v1.StreamMessageRequest_Packet{
		Packet: &p4v1.PacketOut{Payload: payload, Metadata: md},
	}})
}
