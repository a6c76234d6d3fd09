package wire

import (
	"strings"
	"testing"
)

func TestParseName(t *testing.T) {
	tests := []struct {
		in      string
		wantErr string // substring; empty means valid
		len     int
	}{
		{"/shop", "", 1},
		{"/shop/cart", "", 2},
		{"/shop/cart/v2", "", 3},
		{"/a", "", 1},
		{"/0-9", "", 1},
		{"/" + strings.Repeat("a", 63), "", 1},
		{"", "is empty", 0},
		{"shop", `must start with "/"`, 0},
		{"/", "component 1 is empty", 0},
		{"/shop/", "component 2 is empty", 0},
		{"/shop//cart", "component 2 is empty", 0},
		{"/shop/cart/v2/x", "more than 3 components", 0},
		{"/Shop", "component 1 \"Shop\": uppercase", 0},
		{"/shop/Cart", "component 2 \"Cart\": uppercase", 0},
		{"/-shop", "must not start or end with '-'", 0},
		{"/shop-", "must not start or end with '-'", 0},
		{"/sh_op", "character '_' is not allowed", 0},
		{"/_node/sg1", "character '_' is not allowed", 0},
		{"/shop.cart", "character '.' is not allowed", 0},
		{"/" + strings.Repeat("a", 64), "64 characters long", 0},
		{"/caf\xc3\xa9", "is not allowed", 0},
	}
	for _, tt := range tests {
		n, err := ParseName(tt.in)
		if tt.wantErr == "" {
			if err != nil {
				t.Errorf("ParseName(%q): %v", tt.in, err)
				continue
			}
			if n.String() != tt.in || n.Len() != tt.len || n.PrefixLen() != 32*tt.len {
				t.Errorf("ParseName(%q) = %q len %d", tt.in, n, n.Len())
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("ParseName(%q) error %v, want it to contain %q", tt.in, err, tt.wantErr)
		}
	}
}

func TestNodeName(t *testing.T) {
	n, err := NodeName("sg1")
	if err != nil {
		t.Fatal(err)
	}
	if n.String() != "/_node/sg1" || !n.IsNode() || n.Len() != 2 {
		t.Errorf("NodeName(sg1) = %q", n)
	}
	if MustParseName("/shop").IsNode() {
		t.Error("/shop is a node name")
	}
	if _, err := NodeName("SG1"); err == nil || !strings.Contains(err.Error(), `router id "SG1"`) {
		t.Errorf("NodeName(SG1): %v", err)
	}
}

func TestNameRelations(t *testing.T) {
	cart := MustParseName("/shop/cart")
	shop := MustParseName("/shop")
	p, ok := cart.Parent()
	if !ok || p != shop {
		t.Errorf("Parent(/shop/cart) = %q, %v", p, ok)
	}
	if _, ok := shop.Parent(); ok {
		t.Error("/shop has a parent")
	}
	if !cart.HasPrefix(shop) || !cart.HasPrefix(cart) || shop.HasPrefix(cart) || cart.HasPrefix(MustParseName("/shopx")) {
		t.Error("HasPrefix")
	}
	if got := cart.Components(); len(got) != 2 || got[0] != "shop" || got[1] != "cart" {
		t.Errorf("Components = %v", got)
	}
	if !(Name{}).IsZero() || cart.IsZero() {
		t.Error("IsZero")
	}
}

func FuzzParseName(f *testing.F) {
	for _, s := range []string{"/shop", "/shop/cart/v2", "/a-b/c", "", "/", "//", "/A", "/_node/x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := ParseName(s)
		if err != nil {
			return
		}
		if n.String() != s {
			t.Fatalf("ParseName(%q).String() = %q", s, n.String())
		}
		again, err := ParseName(n.String())
		if err != nil || again != n {
			t.Fatalf("round trip of %q: %v", s, err)
		}
		if k := KeyOf(n); k.PrefixLen() != n.PrefixLen() || k.Instance() != 0 {
			t.Fatalf("KeyOf(%q) = %v", s, k)
		}
	})
}
