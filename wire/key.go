package wire

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"strings"
)

// Key is a 128-bit service key: four big-endian 32-bit segments. Segment i
// (i < 3) is the hash of name component i; segment 3 is the instance id that
// SPA allocates (never 0 in an instance key). A 3-component name fills
// segments 0–2, so its instances share segment 3 too: segment 3 is always and
// only the instance.
type Key [16]byte

// KeyOf computes the key of a name: segment i is the first 4 bytes of
// SHA-256(component i) as a big-endian number, with 0 mapped to 1 so that a
// used segment is never 0. The instance segment stays 0.
func KeyOf(n Name) Key {
	var k Key
	for i := 0; i < n.n; i++ {
		sum := sha256.Sum256([]byte(n.comps[i]))
		seg := binary.BigEndian.Uint32(sum[:4])
		if seg == 0 {
			seg = 1
		}
		binary.BigEndian.PutUint32(k[4*i:], seg)
	}
	return k
}

// Segment returns segment i (0..3).
func (k Key) Segment(i int) uint32 { return binary.BigEndian.Uint32(k[4*i:]) }

// Instance returns the instance segment (segment 3).
func (k Key) Instance() uint32 { return k.Segment(3) }

// WithInstance returns k with the instance segment set to id.
func (k Key) WithInstance(id uint32) Key {
	binary.BigEndian.PutUint32(k[12:], id)
	return k
}

// Mask keeps the top prefixLen bits (32, 64, 96 or 128) and zeroes the rest.
func (k Key) Mask(prefixLen int) Key {
	var m Key
	n := prefixLen / 8
	if n > 16 {
		n = 16
	}
	if n > 0 {
		copy(m[:n], k[:n])
	}
	return m
}

// PrefixLen is the length implied by the last non-zero segment: 32, 64, 96
// or 128, and 0 for the zero key.
func (k Key) PrefixLen() int {
	for i := 3; i >= 0; i-- {
		if k.Segment(i) != 0 {
			return 32 * (i + 1)
		}
	}
	return 0
}

// IsZero reports whether every bit is 0.
func (k Key) IsZero() bool { return k == Key{} }

// String formats the key as four hex segments: "0a1b2c3d:11223344:00000000:00000007".
func (k Key) String() string {
	var b [35]byte
	j := 0
	for i := 0; i < 4; i++ {
		if i > 0 {
			b[j] = ':'
			j++
		}
		hex.Encode(b[j:j+8], k[4*i:4*i+4])
		j += 8
	}
	return string(b[:])
}

// ParseKey reads the String form (hex digits, either case).
func ParseKey(s string) (Key, error) {
	var k Key
	segs := strings.Split(s, ":")
	if len(segs) != 4 {
		return k, fmt.Errorf("wire: key %q: want four 8-digit hex segments separated by ':'", s)
	}
	for i, seg := range segs {
		if len(seg) != 8 {
			return k, fmt.Errorf("wire: key %q: segment %d %q is not 8 hex digits", s, i+1, seg)
		}
		if _, err := hex.Decode(k[4*i:4*i+4], []byte(seg)); err != nil {
			return k, fmt.Errorf("wire: key %q: segment %d %q is not hex", s, i+1, seg)
		}
	}
	return k, nil
}
