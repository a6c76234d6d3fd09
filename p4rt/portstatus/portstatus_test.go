package portstatus

import (
	"errors"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/types/known/anypb"
)

func TestRoundTrip(t *testing.T) {
	for _, s := range []Status{{Port: 0}, {Port: 1, Up: true}, {Port: 7}, {Port: 0xffffffff, Up: true}} {
		got, err := Parse(s.Any())
		if err != nil || got != s {
			t.Errorf("%+v: got %+v, %v", s, got, err)
		}
	}
}

func TestParseErrors(t *testing.T) {
	unknown := protowire.AppendTag(nil, 9, protowire.BytesType)
	unknown = protowire.AppendBytes(unknown, []byte("later"))
	unknown = append(unknown, Status{Port: 3, Up: true}.Any().Value...)
	wide := protowire.AppendTag(nil, 1, protowire.VarintType)
	wide = protowire.AppendVarint(wide, 1<<40)
	for _, c := range []struct {
		name string
		a    *anypb.Any
		want Status
		err  bool
	}{
		{"unknown field skipped", &anypb.Any{TypeUrl: TypeURL, Value: unknown}, Status{Port: 3, Up: true}, false},
		{"empty is port 0 down", &anypb.Any{TypeUrl: TypeURL}, Status{}, false},
		{"truncated varint", &anypb.Any{TypeUrl: TypeURL, Value: []byte{0x08, 0x80}}, Status{}, true},
		{"bad tag", &anypb.Any{TypeUrl: TypeURL, Value: []byte{0x80}}, Status{}, true},
		{"port wider than 32 bits", &anypb.Any{TypeUrl: TypeURL, Value: wide}, Status{}, true},
	} {
		got, err := Parse(c.a)
		if (err != nil) != c.err || got != c.want {
			t.Errorf("%s: got %+v, %v", c.name, got, err)
		}
	}
	if _, err := Parse(&anypb.Any{TypeUrl: "type.googleapis.com/other.Thing"}); !errors.Is(err, ErrOtherType) {
		t.Errorf("other type: %v", err)
	}
	if _, err := Parse(nil); !errors.Is(err, ErrOtherType) {
		t.Errorf("nil: %v", err)
	}
}

func FuzzParse(f *testing.F) {
	f.Add(Status{Port: 2, Up: true}.Any().Value)
	f.Add([]byte{0x08, 0x80})
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := Parse(&anypb.Any{TypeUrl: TypeURL, Value: b})
		if err != nil {
			return
		}
		// What parses re-encodes to something that parses the same.
		if again, err := Parse(s.Any()); err != nil || again != s {
			t.Fatalf("%x: %+v then %+v, %v", b, s, again, err)
		}
	})
}
