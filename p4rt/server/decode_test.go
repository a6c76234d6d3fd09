package server

import (
	"testing"

	p4v1 "github.com/p4lang/p4runtime/go/p4/v1"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/dmsc-mesh/dmsc/p4"
)

// TestDecodeWrite checks decodeWrite against proto.Unmarshal on the shapes
// it decodes itself and on those it hands to proto.Unmarshal.
func TestDecodeWrite(t *testing.T) {
	h := &harness{t: t}
	var err error
	if h.schema, err = p4.Schema(); err != nil {
		t.Fatal(err)
	}
	marshal := func(req *p4v1.WriteRequest) []byte {
		b, err := proto.Marshal(req)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	ternary := h.fib64(1, 1)
	ternary.Match = append(ternary.Match,
		&p4v1.FieldMatch{FieldId: 2, FieldMatchType: &p4v1.FieldMatch_Ternary_{Ternary: &p4v1.FieldMatch_Ternary{Value: []byte{1}, Mask: []byte{3}}}},
		&p4v1.FieldMatch{FieldId: 3, FieldMatchType: &p4v1.FieldMatch_Lpm{Lpm: &p4v1.FieldMatch_LPM{Value: []byte{1}, PrefixLen: 8}}},
		&p4v1.FieldMatch{FieldId: 4, FieldMatchType: &p4v1.FieldMatch_Range_{Range: &p4v1.FieldMatch_Range{Low: []byte{1}, High: []byte{2}}}},
		&p4v1.FieldMatch{FieldId: 5, FieldMatchType: &p4v1.FieldMatch_Optional_{Optional: &p4v1.FieldMatch_Optional{Value: []byte{}}}},
	)
	ternary.Priority, ternary.Metadata, ternary.IsConst, ternary.IdleTimeoutNs = -3, []byte("m"), true, 5
	watched := h.group(3, 1, 2)
	watched.Members[0].WatchKind = &p4v1.ActionProfileGroup_Member_WatchPort{WatchPort: []byte{1}}
	withCounter := h.fib64(2, 2)
	withCounter.CounterData = &p4v1.CounterData{PacketCount: 1}
	full := &p4v1.WriteRequest{
		DeviceId: 3, Role: "sg", ElectionId: &p4v1.Uint128{High: 1, Low: 2}, Atomicity: p4v1.WriteRequest_DATAPLANE_ATOMIC,
		Updates: []*p4v1.Update{
			ins(h.fib64(5, 6)),
			ins(ternary),
			mod(h.member(1, 2)),
			ins(h.group(2, 1, 2)),
			del(h.nexthopEntry(1, memberRef(4))),
			ins(h.nexthopEntry(1, groupRef(4))),
			ins(watched),     // generic: watch port
			ins(withCounter), // generic: counter data
			mod(&p4v1.MeterEntry{MeterId: 1}),
			{Type: p4v1.Update_INSERT},
			{},
		},
	}
	unknownField := protowire.AppendTag(marshal(&p4v1.WriteRequest{DeviceId: 1}), 99, protowire.VarintType)
	unknownField = protowire.AppendVarint(unknownField, 5)
	nestedUnknown := marshal(&p4v1.WriteRequest{Updates: []*p4v1.Update{ins(h.fib64(1, 1))}})
	// Append an unknown field to the last update's table entry: rebuild it by hand.
	te := protowire.AppendTag(marshal1(t, h.fib64(1, 1)), 50, protowire.BytesType)
	te = protowire.AppendBytes(te, []byte("x"))
	ent := protowire.AppendBytes(protowire.AppendTag(nil, 2, protowire.BytesType), te)
	up := protowire.AppendVarint(protowire.AppendTag(nil, 1, protowire.VarintType), 1)
	up = protowire.AppendBytes(protowire.AppendTag(up, 2, protowire.BytesType), ent)
	nestedUnknown = protowire.AppendBytes(protowire.AppendTag(nestedUnknown, 4, protowire.BytesType), up)
	repeatedElection := append(marshal(&p4v1.WriteRequest{ElectionId: &p4v1.Uint128{High: 1}}), marshal(&p4v1.WriteRequest{ElectionId: &p4v1.Uint128{Low: 2}})...)
	badRole := protowire.AppendBytes(protowire.AppendTag(nil, 6, protowire.BytesType), []byte{0xff})
	truncated := marshal(full)
	truncated = truncated[:len(truncated)-3]

	tests := []struct {
		name    string
		b       []byte
		wantErr bool
	}{
		{"empty", nil, false},
		{"full", marshal(full), false},
		{"unknown top-level field", unknownField, false},
		{"unknown nested field", nestedUnknown, false},
		{"repeated election id merges", repeatedElection, false},
		{"invalid UTF-8 role", badRole, true},
		{"truncated", truncated, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := &p4v1.WriteRequest{}
			werr := proto.Unmarshal(tt.b, want)
			got, err := decodeWrite(append([]byte(nil), tt.b...))
			if (err != nil) != tt.wantErr || (werr != nil) != tt.wantErr {
				t.Fatalf("decodeWrite error %v, proto.Unmarshal error %v, want error %v", err, werr, tt.wantErr)
			}
			if err == nil && !proto.Equal(got, want) {
				t.Errorf("differs:\n got %v\nwant %v", got, want)
			}
		})
	}
}

func marshal1(t *testing.T, m proto.Message) []byte {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
