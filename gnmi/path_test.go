package gnmi

import (
	"strings"
	"testing"

	gpb "github.com/openconfig/gnmi/proto/gnmi"
	"google.golang.org/protobuf/proto"
)

func pe(name string, kv ...string) *gpb.PathElem { return elem(name, kv...) }

func TestParsePath(t *testing.T) {
	tests := []struct {
		in   string
		want *gpb.Path
		str  string // PathString of the result, if not in
	}{
		{in: "/", want: path()},
		{in: "", want: path(), str: "/"},
		{in: "/a", want: path(pe("a"))},
		{in: "a/b", want: path(pe("a"), pe("b")), str: "/a/b"},
		{in: "/interfaces/interface[name=1]/state/counters/in-pkts",
			want: path(pe("interfaces"), pe("interface", "name", "1"), pe("state"), pe("counters"), pe("in-pkts"))},
		{in: "/dmsc/probes/probe[target=/shop/cart][instance=0]/state",
			want: path(pe("dmsc"), pe("probes"), pe("probe", "target", "/shop/cart", "instance", "0"), pe("state")),
			str:  "/dmsc/probes/probe[instance=0][target=/shop/cart]/state"},
		{in: `/foo[name=\]]`, want: path(pe("foo", "name", "]"))},
		{in: `/foo[name=[]`, want: path(pe("foo", "name", "["))},
		{in: `/foo[name=[\\\]]`, want: path(pe("foo", "name", `[\]`))},
		{in: `/foo[name=a=b]`, want: path(pe("foo", "name", "a=b"))},
		{in: `/foo[name=a\=b]`, want: path(pe("foo", "name", "a=b")), str: `/foo[name=a=b]`},
		{in: `/foo[name=]`, want: path(pe("foo", "name", ""))},
		{in: `/a\/b/c`, want: path(pe("a/b"), pe("c"))},
		{in: `/a\[x\]`, want: path(pe("a[x]"))},
		{in: `/x[k\=1=v]`, want: path(pe("x", "k=1", "v"))},
		{in: "/dmsc/fib/route[prefix=8d9001d3:1c42ddc0:00000000:00000000/64]/state/kind",
			want: path(pe("dmsc"), pe("fib"), pe("route", "prefix", "8d9001d3:1c42ddc0:00000000:00000000/64"), pe("state"), pe("kind"))},
		{in: "/interfaces/interface[name=*]/...", want: path(pe("interfaces"), pe("interface", "name", "*"), pe("..."))},
		{in: "/*/*/state", want: path(pe("*"), pe("*"), pe("state"))},
		{in: "/ü/ключ[k=значение]", want: path(pe("ü"), pe("ключ", "k", "значение"))},
	}
	for _, tc := range tests {
		got, err := ParsePath(tc.in)
		if err != nil {
			t.Errorf("ParsePath(%q): %v", tc.in, err)
			continue
		}
		if !proto.Equal(got, tc.want) {
			t.Errorf("ParsePath(%q) = %v, want %v", tc.in, got, tc.want)
		}
		str := tc.str
		if str == "" {
			str = tc.in
		}
		if s := PathString(got); s != str {
			t.Errorf("PathString(ParsePath(%q)) = %q, want %q", tc.in, s, str)
		}
	}
}

func TestParsePathErrors(t *testing.T) {
	tests := []struct{ in, want string }{
		{"//a", "empty element name"},
		{"/a//b", "empty element name"},
		{"/a/", `ends with "/"`},
		{"/a[", `no "="`},
		{"/a[k", `no "="`},
		{"/a[k=v", `no closing "]"`},
		{"/a[=v]", "empty key name"},
		{"/a[k=1][k=2]", "given twice"},
		{"/a[k=1]x", "after the keys"},
		{"/a]", `"]" outside a key`},
		{`/a\`, `lone "\"`},
		{"/a[k[=v]", `no "="`},
		{"/\xff", "not valid UTF-8"},
		{"/a[k=\xff]", "not valid UTF-8"},
		{"/...[k=v]", "takes no keys"},
		{"/" + strings.Repeat("a/", 32) + "a", "at most 32"},
		{"/.../a/.../b/.../c/.../d/...", "more than 4"},
		{"/[k=v]", "empty element name"},
	}
	for _, tc := range tests {
		p, err := ParsePath(tc.in)
		if err == nil {
			t.Errorf("ParsePath(%q) = %v, want an error", tc.in, p)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "gnmi: path") {
			t.Errorf("ParsePath(%q) error %q, want it to contain %q", tc.in, err, tc.want)
		}
	}
}

func TestPathStringEscapes(t *testing.T) {
	p := path(pe(`a/b[c]\`, `k=[x]`, `v]\`))
	s := PathString(p)
	if want := `/a\/b\[c\]\\[k\=\[x\]=v\]\\]`; s != want {
		t.Fatalf("PathString = %q, want %q", s, want)
	}
	back, err := ParsePath(s)
	if err != nil || !proto.Equal(back, p) {
		t.Fatalf("ParsePath(%q) = %v, %v; want %v", s, back, err, p)
	}
	if PathString(nil) != "/" {
		t.Errorf("PathString(nil) = %q", PathString(nil))
	}
}

func TestValidatePathDeprecatedElement(t *testing.T) {
	if err := ValidatePath(&gpb.Path{Element: []string{"a"}}); err == nil {
		t.Fatal("a path with the deprecated element field was accepted")
	}
	if err := ValidatePath(path(pe("a", "", "v"))); err == nil {
		t.Fatal("an empty key name was accepted")
	}
}

func TestMatch(t *testing.T) {
	leaf := "/interfaces/interface[name=1]/state/counters/in-pkts"
	probe := "/dmsc/probes/probe[instance=0][target=/shop/cart]/state/delay-ns"
	tests := []struct {
		pattern, path string
		want          bool
	}{
		{"/", leaf, true},
		{leaf, leaf, true},
		{"/interfaces", leaf, true},
		{"/interfaces/interface[name=1]", leaf, true},
		{"/interfaces/interface[name=2]", leaf, false},
		{"/interfaces/interface[name=*]/state", leaf, true},
		{"/interfaces/interface/state", leaf, true}, // keys left out match all
		{"/interfaces/interface[other=1]", leaf, false},
		{"/interfaces/*/state/counters", leaf, true},
		{"/*/*/*/*/in-pkts", leaf, true},
		{"/*/*/*/*/*/*", leaf, false}, // deeper than the leaf
		{"/.../in-pkts", leaf, true},
		{"/.../counters", leaf, true},
		{"/...", leaf, true},
		{"/interfaces/.../state/counters/in-pkts", leaf, true},
		{"/interfaces/interface[name=1]/.../in-pkts", leaf, true},
		{"/.../out-pkts", leaf, false},
		{"/.../.../in-pkts", leaf, true},
		{"/interfaces/.../interface/...", leaf, true},
		{"/interfaces/interface[name=1]/state/counters/in-pkts/more", leaf, false},
		{"/dmsc/probes/probe[target=/shop/cart]", probe, true},
		{"/dmsc/probes/probe[target=/shop/cart][instance=0]", probe, true},
		{"/dmsc/probes/probe[target=/shop/cart][instance=1]", probe, false},
		{"/dmsc/probes/probe[target=*][instance=0]/state/delay-ns", probe, true},
		{"/dmsc/probes/probe[target=/shop]", probe, false},
	}
	for _, tc := range tests {
		if got := Match(mustPath(t, tc.pattern), mustPath(t, tc.path)); got != tc.want {
			t.Errorf("Match(%s, %s) = %v, want %v", tc.pattern, tc.path, got, tc.want)
		}
	}
}

func TestHasWildcards(t *testing.T) {
	for s, want := range map[string]bool{
		"/a/b[k=v]": false, "/a/*": true, "/a/.../b": true, "/a[k=*]": true, "/a[k=x*]": false,
	} {
		if got := HasWildcards(mustPath(t, s)); got != want {
			t.Errorf("HasWildcards(%s) = %v, want %v", s, got, want)
		}
	}
}

func mustPath(t testing.TB, s string) *gpb.Path {
	t.Helper()
	p, err := ParsePath(s)
	if err != nil {
		t.Fatal(err)
	}
	return p
}
