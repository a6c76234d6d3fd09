package p4info

import (
	"fmt"
	"math/bits"
)

// P4Runtime carries every match value, parameter and metadata field as a
// big-endian byte string. The canonical form (P4Runtime spec §8.4) has no
// leading zero bytes, except that zero is one zero byte. Servers accept any
// string whose value fits the field's bit width and answer in canonical form.

// Canonical returns b without leading zero bytes (a single zero byte for zero).
// It returns a subslice of b.
func Canonical(b []byte) []byte {
	for len(b) > 1 && b[0] == 0 {
		b = b[1:]
	}
	if len(b) == 0 {
		return []byte{0}
	}
	return b
}

// Fits reports whether the value in b fits in bitwidth bits.
func Fits(b []byte, bitwidth int32) bool {
	c := Canonical(b)
	n := (len(c)-1)*8 + bits.Len8(c[0])
	return n <= int(bitwidth)
}

// CheckWidth returns a clear error when b is empty or its value does not fit.
func CheckWidth(what string, b []byte, bitwidth int32) error {
	if len(b) == 0 {
		return fmt.Errorf("%s: empty value", what)
	}
	if !Fits(b, bitwidth) {
		return fmt.Errorf("%s: value 0x%x does not fit in %d bits", what, b, bitwidth)
	}
	return nil
}

// Uint encodes v in canonical form.
func Uint(v uint64) []byte {
	if v == 0 {
		return []byte{0}
	}
	n := (bits.Len64(v) + 7) / 8
	out := make([]byte, n)
	for i := n - 1; i >= 0; i-- {
		out[i] = byte(v)
		v >>= 8
	}
	return out
}

// Padded returns b left-padded with zeros (or trimmed of leading zeros) to the
// byte width of bitwidth, the fixed-width form targets index tables by. It
// assumes Fits(b, bitwidth).
func Padded(b []byte, bitwidth int32) []byte {
	n := int(bitwidth+7) / 8
	b = Canonical(b)
	if len(b) >= n {
		return b[len(b)-n:]
	}
	out := make([]byte, n)
	copy(out[n-len(b):], b)
	return out
}

// ToUint decodes b as a big-endian unsigned integer. Values wider than 64 bits
// return an error.
func ToUint(b []byte) (uint64, error) {
	c := Canonical(b)
	if len(c) > 8 {
		return 0, fmt.Errorf("value 0x%x wider than 64 bits", b)
	}
	var v uint64
	for _, x := range c {
		v = v<<8 | uint64(x)
	}
	return v, nil
}
