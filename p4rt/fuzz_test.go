package p4rt

import (
	"testing"

	p4v1 "github.com/p4lang/p4runtime/go/p4/v1"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/dmsc-mesh/dmsc/p4"
)

// FuzzDecodePacketIn feeds arbitrary PacketIn messages (as the switch could
// send them) through metadata decoding: errors, never a panic.
func FuzzDecodePacketIn(f *testing.F) {
	s, err := p4.Schema()
	if err != nil {
		f.Fatal(err)
	}
	seed, _ := proto.Marshal(&p4v1.PacketIn{Payload: []byte{1}, Metadata: []*p4v1.PacketMetadata{{MetadataId: 1, Value: []byte{0, 2}}}})
	f.Add(seed)
	f.Fuzz(func(t *testing.T, b []byte) {
		var pin p4v1.PacketIn
		if proto.Unmarshal(b, &pin) != nil {
			return
		}
		meta, _ := DecodePacketMetadata(s, "packet_in", pin.Metadata)
		if len(meta) > len(pin.Metadata) {
			t.Fatalf("%d fields from %d metadata", len(meta), len(pin.Metadata))
		}
	})
}

// FuzzDecodeWriteError feeds arbitrary status details through the batch
// error decoder.
func FuzzDecodeWriteError(f *testing.F) {
	d, _ := anypb.New(&p4v1.Error{CanonicalCode: int32(codes.NotFound), Message: "x"})
	seed, _ := proto.Marshal(&spb.Status{Code: int32(codes.Unknown), Details: []*anypb.Any{d, d}})
	f.Add(seed, 2)
	f.Fuzz(func(t *testing.T, b []byte, n int) {
		var st spb.Status
		if proto.Unmarshal(b, &st) != nil || n < 0 || n > 64 {
			return
		}
		ups := make([]*p4v1.Update, n)
		errs, ok := decodeWriteError(status.ErrorProto(&st), ups, 10)
		if !ok {
			return
		}
		for _, e := range errs {
			if e.Code == codes.OK || e.Index < 10 {
				t.Fatalf("bad decoded error %+v", e)
			}
		}
	})
}
