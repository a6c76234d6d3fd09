package p4info

import (
	"bytes"
	"testing"
)

func TestCanonical(t *testing.T) {
	tests := []struct {
		in, want []byte
	}{
		{nil, []byte{0}},
		{[]byte{0}, []byte{0}},
		{[]byte{0, 0, 0}, []byte{0}},
		{[]byte{0, 0, 1}, []byte{1}},
		{[]byte{0x01, 0x00}, []byte{0x01, 0x00}},
		{[]byte{0, 0x80, 0}, []byte{0x80, 0}},
	}
	for _, tt := range tests {
		if got := Canonical(tt.in); !bytes.Equal(got, tt.want) {
			t.Errorf("Canonical(%x) = %x, want %x", tt.in, got, tt.want)
		}
	}
}

func TestFits(t *testing.T) {
	tests := []struct {
		in       []byte
		bitwidth int32
		want     bool
	}{
		{[]byte{0}, 1, true},
		{[]byte{1}, 1, true},
		{[]byte{2}, 1, false},
		{[]byte{0x01, 0xff}, 9, true},
		{[]byte{0x02, 0x00}, 9, false},
		{[]byte{0, 0, 0x01, 0xff}, 9, true}, // padded is fine
		{bytes.Repeat([]byte{0xff}, 16), 128, true},
		{append([]byte{1}, make([]byte, 16)...), 128, false},
		{[]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, 48, true},
	}
	for _, tt := range tests {
		if got := Fits(tt.in, tt.bitwidth); got != tt.want {
			t.Errorf("Fits(%x, %d) = %v, want %v", tt.in, tt.bitwidth, got, tt.want)
		}
	}
}

func TestCheckWidth(t *testing.T) {
	if err := CheckWidth("port", nil, 9); err == nil {
		t.Error("empty value accepted")
	}
	if err := CheckWidth("port", []byte{2, 0}, 9); err == nil {
		t.Error("512 accepted in 9 bits")
	}
	if err := CheckWidth("port", []byte{1, 0xff}, 9); err != nil {
		t.Error(err)
	}
}

func TestUintRoundTrip(t *testing.T) {
	for _, v := range []uint64{0, 1, 255, 256, 0x1ff, 1<<32 - 1, 1 << 63, ^uint64(0)} {
		b := Uint(v)
		if !bytes.Equal(b, Canonical(b)) {
			t.Errorf("Uint(%d) = %x is not canonical", v, b)
		}
		got, err := ToUint(b)
		if err != nil || got != v {
			t.Errorf("ToUint(Uint(%d)) = %d, %v", v, got, err)
		}
	}
	if _, err := ToUint(make([]byte, 9)); err != nil {
		t.Errorf("nine zero bytes are zero: %v", err)
	}
	if _, err := ToUint(append([]byte{1}, make([]byte, 8)...)); err == nil {
		t.Error("a 65-bit value decoded")
	}
}

func TestPadded(t *testing.T) {
	tests := []struct {
		in       []byte
		bitwidth int32
		want     []byte
	}{
		{[]byte{1}, 9, []byte{0, 1}},
		{[]byte{0, 0, 0, 1}, 9, []byte{0, 1}},
		{[]byte{0xab}, 48, []byte{0, 0, 0, 0, 0, 0xab}},
		{[]byte{0}, 32, []byte{0, 0, 0, 0}},
	}
	for _, tt := range tests {
		if got := Padded(tt.in, tt.bitwidth); !bytes.Equal(got, tt.want) {
			t.Errorf("Padded(%x, %d) = %x, want %x", tt.in, tt.bitwidth, got, tt.want)
		}
	}
}

func FuzzCanonicalWidth(f *testing.F) {
	f.Add([]byte{0, 1, 2}, int32(9))
	f.Add([]byte{}, int32(0))
	f.Fuzz(func(t *testing.T, b []byte, bitwidth int32) {
		if bitwidth < 0 || bitwidth > 4096 {
			return
		}
		c := Canonical(b)
		if len(c) == 0 || (len(c) > 1 && c[0] == 0) {
			t.Fatalf("Canonical(%x) = %x", b, c)
		}
		if Fits(b, bitwidth) {
			p := Padded(b, bitwidth)
			if len(p) != int(bitwidth+7)/8 && !(bitwidth == 0 && len(p) == 1) {
				t.Fatalf("Padded(%x, %d) = %x", b, bitwidth, p)
			}
			if !bytes.Equal(Canonical(p), c) {
				t.Fatalf("Padded changed the value: %x → %x", b, p)
			}
		}
	})
}
