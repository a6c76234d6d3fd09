package wire

import (
	"strings"
	"testing"
)

func TestKeyOf(t *testing.T) {
	shop := KeyOf(MustParseName("/shop"))
	// The first segment is the first 4 bytes of SHA-256("shop"), spelled out
	// so the first step can be checked by hand (printf shop | sha256sum).
	if got := shop.Segment(0); got != 0x8d9001d3 {
		t.Errorf("/shop segment 0 = %08x", got)
	}
	if got := shop.String(); !strings.HasSuffix(got, ":00000000:00000000:00000000") {
		t.Errorf("/shop key %s uses more than one segment", got)
	}
	cart := KeyOf(MustParseName("/shop/cart"))
	if cart.Segment(0) != shop.Segment(0) {
		t.Error("the first segment depends only on the first component")
	}
	if cart.Mask(32) != shop {
		t.Error("/shop/cart masked to 32 bits is /shop")
	}
	if cart.PrefixLen() != 64 || shop.PrefixLen() != 32 || KeyOf(MustParseName("/shop/cart/v2")).PrefixLen() != 96 {
		t.Error("PrefixLen")
	}
	inst := cart.WithInstance(7)
	if inst.Instance() != 7 || inst.PrefixLen() != 128 || inst.Mask(64) != cart || inst.Mask(96) != cart {
		t.Errorf("instance key %v", inst)
	}
	if (Key{}).PrefixLen() != 0 || !(Key{}).IsZero() {
		t.Error("zero key")
	}
	if inst.Mask(128) != inst || inst.Mask(0) != (Key{}) {
		t.Error("Mask edges")
	}
}

func TestKeyStringRoundTrip(t *testing.T) {
	k := KeyOf(MustParseName("/shop/cart/v2")).WithInstance(0xdeadbeef)
	s := k.String()
	if len(s) != 35 {
		t.Fatalf("String() = %q", s)
	}
	back, err := ParseKey(s)
	if err != nil || back != k {
		t.Fatalf("ParseKey(%q) = %v, %v", s, back, err)
	}
	if up, err := ParseKey(strings.ToUpper(s)); err != nil || up != k {
		t.Errorf("upper-case hex: %v", err)
	}
	for _, bad := range []string{"", "00", "0:0:0:0", "0000000g:00000000:00000000:00000000", "00000000:00000000:00000000:00000000:00000000"} {
		if _, err := ParseKey(bad); err == nil {
			t.Errorf("ParseKey(%q) accepted", bad)
		}
	}
}

func FuzzParseKey(f *testing.F) {
	f.Add("0a1b2c3d:11223344:00000000:00000007")
	f.Add("zz")
	f.Fuzz(func(t *testing.T, s string) {
		k, err := ParseKey(s)
		if err != nil {
			return
		}
		if back, err := ParseKey(k.String()); err != nil || back != k {
			t.Fatalf("round trip of %q", s)
		}
	})
}

func BenchmarkKeyOf(b *testing.B) {
	n := MustParseName("/shop/cart/v2")
	for b.Loop() {
		_ = KeyOf(n)
	}
}
