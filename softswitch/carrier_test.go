package softswitch

import (
	"encoding/binary"
	"reflect"
	"testing"
)

// linkMsg builds a netlink link message as the kernel sends it.
func linkMsg(typ uint16, index int32, flags uint32, attrs int) []byte {
	n := nlmsgHdrLen + ifinfomsgLen + attrs
	b := make([]byte, (n+3)&^3)
	binary.NativeEndian.PutUint32(b[0:], uint32(n))
	binary.NativeEndian.PutUint16(b[4:], typ)
	binary.NativeEndian.PutUint32(b[nlmsgHdrLen+4:], uint32(index))
	binary.NativeEndian.PutUint32(b[nlmsgHdrLen+8:], flags)
	return b
}

func TestParseLinkEvents(t *testing.T) {
	cat := func(bs ...[]byte) []byte {
		var out []byte
		for _, b := range bs {
			out = append(out, b...)
		}
		return out
	}
	other := linkMsg(20, 9, 0, 8) // RTM_NEWADDR: not ours
	for _, c := range []struct {
		name string
		in   []byte
		want []linkEvent
		err  bool
	}{
		{"up with carrier", linkMsg(rtmNewLink, 4, iffUp|iffLowerUp, 30), []linkEvent{{4, true}}, false},
		{"up without carrier", linkMsg(rtmNewLink, 4, iffUp, 30), []linkEvent{{4, false}}, false},
		{"carrier but down", linkMsg(rtmNewLink, 4, iffLowerUp, 0), []linkEvent{{4, false}}, false},
		{"deleted", linkMsg(rtmDelLink, 5, iffUp|iffLowerUp, 0), []linkEvent{{5, false}}, false},
		{"several, others skipped", cat(linkMsg(rtmNewLink, 1, iffUp|iffLowerUp, 1), other, linkMsg(rtmNewLink, 2, 0, 2)), []linkEvent{{1, true}, {2, false}}, false},
		{"done ends the datagram", cat(linkMsg(nlmsgDone, 0, 0, 4), linkMsg(rtmNewLink, 1, iffUp|iffLowerUp, 0)), nil, false},
		{"empty", nil, nil, false},
		{"short header", []byte{1, 2, 3}, nil, true},
		{"length past the end", linkMsg(rtmNewLink, 1, 0, 0)[:20], nil, true},
		{"length below the header", func() []byte { b := linkMsg(rtmNewLink, 1, 0, 0); binary.NativeEndian.PutUint32(b, 8); return b }(), nil, true},
		{"link message without ifinfomsg", func() []byte {
			b := make([]byte, nlmsgHdrLen+4)
			binary.NativeEndian.PutUint32(b, uint32(len(b)))
			binary.NativeEndian.PutUint16(b[4:], rtmNewLink)
			return b
		}(), nil, true},
		{"events before a fault are kept", cat(linkMsg(rtmNewLink, 3, iffUp|iffLowerUp, 0), []byte{9, 9}), []linkEvent{{3, true}}, true},
	} {
		got, err := parseLinkEvents(c.in)
		if (err != nil) != c.err || !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s: got %v, %v", c.name, got, err)
		}
	}
}

// FuzzParseLinkEvents: netlink datagrams come from the kernel, but the
// parser must not trust their lengths.
func FuzzParseLinkEvents(f *testing.F) {
	f.Add(linkMsg(rtmNewLink, 4, iffUp|iffLowerUp, 30))
	f.Add(append(linkMsg(rtmDelLink, 5, 0, 0), linkMsg(nlmsgDone, 0, 0, 0)...))
	f.Fuzz(func(t *testing.T, b []byte) {
		evs, _ := parseLinkEvents(b)
		if len(evs) > len(b)/(nlmsgHdrLen+ifinfomsgLen) {
			t.Fatalf("%d events from %d bytes", len(evs), len(b))
		}
	})
}
