package fib

import (
	"strings"
	"testing"

	p4v1 "github.com/p4lang/p4runtime/go/p4/v1"

	"github.com/dmsc-mesh/dmsc/p4"
	"github.com/dmsc-mesh/dmsc/p4rt/p4info"
	"github.com/dmsc-mesh/dmsc/spf"
	"github.com/dmsc-mesh/dmsc/wire"
)

func schema(t testing.TB) *p4info.Schema {
	s, err := p4.Schema()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func prefix(name string) spf.Prefix {
	n := wire.MustParseName(name)
	return spf.Prefix{Key: wire.KeyOf(n), Len: uint8(n.PrefixLen())}
}

func instance(name string, id uint32) spf.Prefix {
	return spf.Prefix{Key: wire.KeyOf(wire.MustParseName(name)).WithInstance(id), Len: 128}
}

// describe renders a plan as one line per phase: "INSERT member, INSERT group, ...".
func describe(t *testing.T, s *p4info.Schema, plan *Plan) []string {
	var out []string
	for _, ph := range plan.Phases {
		var parts []string
		for _, u := range ph {
			parts = append(parts, u.Type.String()+" "+what(s, u.Entity))
		}
		out = append(out, strings.Join(parts, ", "))
	}
	return out
}

func what(s *p4info.Schema, e *p4v1.Entity) string {
	switch {
	case e.GetActionProfileMember() != nil:
		return "member"
	case e.GetActionProfileGroup() != nil:
		return "group"
	case e.GetTableEntry() != nil:
		t, _ := s.TableByID(e.GetTableEntry().TableId)
		return t.Preamble.Alias
	}
	return "?"
}

func TestPlanOrderIsMakeBeforeBreak(t *testing.T) {
	s := schema(t)
	p := New(s)
	a := Hop{Port: 1, DMAC: 0xa}
	b := Hop{Port: 2, DMAC: 0xb}
	cart, shop := prefix("/shop/cart"), prefix("/shop")

	steps := []struct {
		name   string
		routes Routes
		want   []string
	}{
		{"first routes share one group", Routes{
			cart: {Kind: Forward, Hops: []Hop{a, b}},
			shop: {Kind: Forward, Hops: []Hop{b, a}},
		}, []string{
			"INSERT member, INSERT member",
			"INSERT group",
			"INSERT nexthop",
			"INSERT fib_32, INSERT fib_64", // prefixes in key order
		}},
		{"nothing changes", Routes{
			cart: {Kind: Forward, Hops: []Hop{a, b}},
			shop: {Kind: Forward, Hops: []Hop{a, b}},
		}, nil},
		{"link to a cut: new group before the routes move, old one after", Routes{
			cart: {Kind: Forward, Hops: []Hop{b}},
			shop: {Kind: Forward, Hops: []Hop{b}},
		}, []string{
			"INSERT group",
			"INSERT nexthop",
			"MODIFY fib_32, MODIFY fib_64",
			"DELETE nexthop",
			"DELETE group",
			"DELETE member",
		}},
		{"a route goes, a drop route comes", Routes{
			cart: {Kind: Drop},
		}, []string{
			"MODIFY fib_64",
			"DELETE fib_32",
			"DELETE nexthop",
			"DELETE group",
			"DELETE member",
		}},
	}
	for _, st := range steps {
		plan, err := p.Plan(st.routes)
		if err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		got := describe(t, s, plan)
		if strings.Join(got, "\n") != strings.Join(st.want, "\n") {
			t.Errorf("%s:\n got  %q\n want %q", st.name, got, st.want)
		}
		p.Commit(plan)
	}
	if len(p.groups) != 0 || len(p.members) != 0 || len(p.routes) != 1 {
		t.Errorf("left over: %d groups, %d members, %d routes", len(p.groups), len(p.members), len(p.routes))
	}
}

func TestPlanDoesNotChangeProgrammer(t *testing.T) {
	p := New(schema(t))
	routes := Routes{prefix("/shop"): {Kind: Forward, Hops: []Hop{{Port: 1, DMAC: 1}}}}
	if _, err := p.Plan(routes); err != nil {
		t.Fatal(err)
	}
	if len(p.Routes()) != 0 {
		t.Fatal("Plan changed the programmer before Commit")
	}
	plan, _ := p.Plan(routes)
	p.Commit(plan)
	got := p.Routes()[prefix("/shop")]
	if got.Kind != Forward || len(got.Hops) != 1 || got.Hops[0].Weight != 1 {
		t.Errorf("Routes() = %+v", got)
	}
}

func TestLocalRoutesUseInstanceGroups(t *testing.T) {
	s := schema(t)
	p := New(s)
	cart := prefix("/shop/cart")
	plan, err := p.Plan(Routes{
		cart:                      {Kind: Local, Hops: []Hop{{Port: 5, Instance: 1, Weight: 3}, {Port: 6, Instance: 2}}},
		instance("/shop/cart", 1): {Kind: Local, Hops: []Hop{{Port: 5, Instance: 1}}},
		prefix("/x"):              {Kind: ToCPU},
	})
	if err != nil {
		t.Fatal(err)
	}
	got := describe(t, s, plan)
	want := []string{
		"INSERT member, INSERT member", // instance 1 on port 5 is shared by both groups
		"INSERT group, INSERT group",
		"INSERT local_instance, INSERT local_instance",
	}
	if len(got) != 4 || strings.Join(got[:3], "\n") != strings.Join(want, "\n") || strings.Count(got[3], "INSERT fib_") != 3 {
		t.Errorf("plan:\n%q\nwant\n%q\nthen three fib inserts", got, want)
	}
	p.Commit(plan)
	for _, g := range p.groups {
		if !g.local {
			t.Errorf("group %d is not a local group", g.id)
		}
	}
}

func TestPlanRejectsBadRoutes(t *testing.T) {
	p := New(schema(t))
	tests := []struct {
		name  string
		pfx   spf.Prefix
		route Route
		want  string
	}{
		{"no hops", prefix("/a"), Route{Kind: Forward}, "without next hops"},
		{"CPU port", prefix("/a"), Route{Kind: Forward, Hops: []Hop{{Port: p4.CPUPort}}}, "not a front-panel port"},
		{"port 0", prefix("/a"), Route{Kind: Forward, Hops: []Hop{{Port: 0}}}, "not a front-panel port"},
		{"wide MAC", prefix("/a"), Route{Kind: Forward, Hops: []Hop{{Port: 1, DMAC: 1 << 48}}}, "wider than 48 bits"},
		{"instance 0", prefix("/a"), Route{Kind: Local, Hops: []Hop{{Port: 1}}}, "instance id 0"},
		{"hops on a drop", prefix("/a"), Route{Kind: Drop, Hops: []Hop{{Port: 1}}}, "takes no next hops"},
		{"bad length", spf.Prefix{Len: 48}, Route{Kind: Drop}, "48"},
		{"unknown kind", prefix("/a"), Route{Kind: 9}, "unknown kind"},
	}
	for _, tt := range tests {
		_, err := p.Plan(Routes{tt.pfx: tt.route})
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %v, want an error containing %q", tt.name, err, tt.want)
		}
	}
}

func TestGroupIDsAreReused(t *testing.T) {
	p := New(schema(t))
	for i := range 5 {
		plan, err := p.Plan(Routes{prefix("/a"): {Kind: Forward, Hops: []Hop{{Port: uint16(i + 1)}}}})
		if err != nil {
			t.Fatal(err)
		}
		p.Commit(plan)
	}
	if p.nextGroup > 3 || p.nextMember > 3 {
		t.Errorf("ids not reused: next group %d, next member %d", p.nextGroup, p.nextMember)
	}
}
