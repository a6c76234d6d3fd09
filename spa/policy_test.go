package spa

import (
	"strings"
	"testing"

	"github.com/dmsc-mesh/dmsc/wire"
)

func TestPolicyCheck(t *testing.T) {
	pol, err := ParsePolicy("p.yaml", []byte(`version: 1
rules:
  - deny: [/shop/admin/**, /secret]
  - deny: /**
    identity: /banned/**
  - allow: self
  - allow: self/**
    identity: [/shop, /ops/**]
  - allow: /shared/**
    sgs: [sg1]
    note: shared services, only on sg1
`))
	if err != nil {
		t.Fatal(err)
	}
	n := wire.MustParseName
	for _, tc := range []struct {
		id, prefix, sg string
		allowed        bool
		denied         bool
		rule           string
	}{
		{"/shop/cart", "/shop/cart", "sg1", true, false, "p.yaml:6 rules[2]"},
		{"/shop/cart", "/shop/cart/v2", "sg1", false, false, ""},
		{"/shop", "/shop/cart/v2", "sg9", true, false, "p.yaml:7 rules[3]"},
		{"/shop", "/shop", "sg9", true, false, "p.yaml:6 rules[2]"},
		{"/ops/a", "/ops/a/b", "sg9", true, false, "p.yaml:7 rules[3]"},
		{"/ops", "/ops/x", "sg9", true, false, "p.yaml:7 rules[3]"}, // the identity pattern /ops/** includes /ops
		{"/shop", "/shop/admin/x", "sg1", false, true, "p.yaml:3 rules[0]"},
		{"/shop", "/shop/admin", "sg1", false, true, "p.yaml:3 rules[0]"},
		{"/secret", "/secret", "sg1", false, true, "p.yaml:3 rules[0]"},
		{"/banned/x", "/banned/x", "sg1", false, true, "p.yaml:4 rules[1]"},
		{"/x", "/shared/y", "sg1", true, false, "p.yaml:9 rules[4]"},
		{"/x", "/shared/y", "sg2", false, false, ""},
	} {
		got := pol.Check(n(tc.id), n(tc.prefix), tc.sg)
		want := PolicyResult{Allowed: tc.allowed, Denied: tc.denied, Rule: tc.rule}
		if got != want {
			t.Errorf("%s announcing %s on %s: %+v, want %+v", tc.id, tc.prefix, tc.sg, got, want)
		}
	}
	if pol.Len() != 5 {
		t.Errorf("Len %d", pol.Len())
	}
}

func TestPolicyErrors(t *testing.T) {
	for _, tc := range []struct {
		name, yaml, want string
	}{
		{"empty", "", "policy is empty"},
		{"not a mapping", "- a\n", ":1: (top level): want a mapping"},
		{"no version", "rules: []\n", ":1: version: missing"},
		{"wrong version", "version: 2\nrules: []\n", ":1: version: want 1"},
		{"no rules", "version: 1\n", ":1: rules: missing"},
		{"unknown top field", "version: 1\nrule: []\n", ":2: rule: unknown field"},
		{"rules not a list", "version: 1\nrules: {a: b}\n", ":2: rules: want a list"},
		{"rule not a mapping", "version: 1\nrules:\n  - allow\n", ":3: rules[0]: want a mapping"},
		{"no action", "version: 1\nrules:\n  - identity: /a\n", ":3: rules[0]: a rule needs allow or deny"},
		{"both actions", "version: 1\nrules:\n  - allow: /a\n    deny: /b\n", ":4: rules[0].deny: a rule has exactly one"},
		{"bad prefix", "version: 1\nrules:\n  - allow: /Shop\n", ":3: rules[0].allow: wire: service name \"/Shop\""},
		{"bad prefix in list", "version: 1\nrules:\n  - allow: [/a, /b/]\n", ":3: rules[0].allow[1]:"},
		{"star in the middle", "version: 1\nrules:\n  - allow: /a/*/b\n", "only as a whole trailing"},
		{"star as prefix", "version: 1\nrules:\n  - allow: '*'\n", `write "/**"`},
		{"self as identity", "version: 1\nrules:\n  - allow: /a\n    identity: self\n", ":4: rules[0].identity: \"self\" is for allow"},
		{"node namespace", "version: 1\nrules:\n  - allow: /_node/**\n", "reserved for switches"},
		{"bad sg", "version: 1\nrules:\n  - allow: /a\n    sgs: [SG1]\n", ":4: rules[0].sgs[0]: SG node id \"SG1\""},
		{"unknown rule field", "version: 1\nrules:\n  - allow: /a\n    prefix: /b\n", ":4: rules[0].prefix: unknown field"},
		{"duplicate field", "version: 1\nrules:\n  - allow: /a\n    identity: /a\n    identity: /b\n", ":5: rules[0].identity: given twice"},
		{"empty list", "version: 1\nrules:\n  - allow: []\n", "rules[0].allow: is an empty list"},
		{"null item", "version: 1\nrules:\n  - allow: [~]\n", "rules[0].allow[0]: want a non-empty string"},
		{"alias", "version: 1\nx: &a /a\nrules:\n  - allow: *a\n", ":2: x: unknown field"},
		{"alias in rule", "version: 1\nrules:\n  - allow: &a /a\n  - allow: *a\n", ":4: rules[1].allow: YAML aliases"},
		{"note not text", "version: 1\nrules:\n  - allow: /a\n    note: [x]\n", ":4: rules[0].note: want text"},
		{"yaml syntax", "version: 1\nrules: [\n", "p.yaml: yaml:"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParsePolicy("p.yaml", []byte(tc.yaml))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
			if !strings.HasPrefix(err.Error(), "p.yaml") {
				t.Errorf("error %q does not name the file", err)
			}
		})
	}
	// "rules:" with nothing is a valid deny-everything policy.
	pol, err := ParsePolicy("p.yaml", []byte("version: 1\nrules:\n"))
	if err != nil || pol.Check(wire.MustParseName("/a"), wire.MustParseName("/a"), "sg1").Allowed {
		t.Errorf("empty rules: %v", err)
	}
}

// FuzzParsePolicy: the parser never panics, and a policy it accepts answers
// every question deterministically and within the certificate's subtree
// semantics.
func FuzzParsePolicy(f *testing.F) {
	f.Add([]byte(testPolicy))
	f.Add([]byte("version: 1\nrules:\n  - deny: /**\n    identity: '*'\n  - allow: [self, self/**, /a/b/c]\n    sgs: [sg1]\n    note: x\n"))
	f.Add([]byte("version: 1\nrules:\n  - allow: &a /a\n  - allow: *a\n"))
	f.Add([]byte("version: 1\nrules: [{allow: /a, identity: [/b/**, '*']}]\n"))
	f.Add([]byte("{version: 1, rules: ~}"))
	names := []wire.Name{wire.MustParseName("/a"), wire.MustParseName("/a/b"), wire.MustParseName("/shop/cart"), wire.MustParseName("/shop/admin/x")}
	f.Fuzz(func(t *testing.T, data []byte) {
		pol, err := ParsePolicy("fuzz.yaml", data)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "fuzz.yaml") {
				t.Fatalf("error %q does not name the file", err)
			}
			return
		}
		for _, id := range names {
			for _, pf := range names {
				r1 := pol.Check(id, pf, "sg1")
				if r2 := pol.Check(id, pf, "sg1"); r1 != r2 {
					t.Fatalf("nondeterministic: %+v %+v", r1, r2)
				}
				if r1.Allowed && r1.Denied {
					t.Fatalf("allowed and denied: %+v", r1)
				}
				if (r1.Allowed || r1.Denied) && r1.Rule == "" {
					t.Fatalf("decision without a rule: %+v", r1)
				}
			}
		}
	})
}
