package fib_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	p4v1 "github.com/p4lang/p4runtime/go/p4/v1"

	"github.com/dmsc-mesh/dmsc/controller/fib"
	"github.com/dmsc-mesh/dmsc/internal/switchtest"
	"github.com/dmsc-mesh/dmsc/p4"
	"github.com/dmsc-mesh/dmsc/p4rt"
	"github.com/dmsc-mesh/dmsc/spf"
	"github.com/dmsc-mesh/dmsc/wire"
)

// apply writes a plan's phases in order and commits it.
func apply(t *testing.T, c *p4rt.Client, p *fib.Programmer, routes fib.Routes) {
	t.Helper()
	plan, err := p.Plan(routes)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for i, ph := range plan.Phases {
		if err := c.WriteAtomic(ctx, p4rt.ContinueOnError, ph...); err != nil {
			t.Fatalf("phase %d: %v", i, err)
		}
	}
	p.Commit(plan)
}

// countEntities reads back what the switch holds, by kind.
func countEntities(t *testing.T, c *p4rt.Client) (routes, groupEntries, groups, members int) {
	t.Helper()
	s := c.Schema()
	ents, err := c.Read(context.Background(), p4rt.AllTableEntries(), p4rt.Members(0), p4rt.Groups(0))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		switch {
		case e.GetActionProfileMember() != nil:
			members++
		case e.GetActionProfileGroup() != nil:
			groups++
		case e.GetTableEntry() != nil:
			tbl, _ := s.TableByID(e.GetTableEntry().TableId)
			switch tbl.Preamble.Name {
			case p4.TableNexthop, p4.TableLocalInstance:
				groupEntries++
			case p4.TableFIB128, p4.TableFIB96, p4.TableFIB64, p4.TableFIB32:
				routes++
			}
		}
	}
	return
}

// spread sends frames with different flow labels into port 1 and counts
// where they come out.
func spread(t *testing.T, ts *switchtest.Switch, dst wire.Key, n int) map[uint16]int {
	t.Helper()
	for i := range n {
		f := wire.AppendFrame(nil, wire.Ethernet{}, wire.Header{
			Type: wire.TypeData, HopLimit: 8, FlowLabel: uint32(i * 7919), Dst: dst,
			Src: wire.KeyOf(wire.MustParseName("/web")).WithInstance(1),
		}, nil, []byte("x"))
		if err := ts.Links[1].Send(f); err != nil {
			t.Fatal(err)
		}
	}
	got := map[uint16]int{}
	deadline := time.Now().Add(2 * time.Second)
	for total := 0; total < n && time.Now().Before(deadline); {
		for port, l := range ts.Links {
			if _, err := l.Recv(5 * time.Millisecond); err == nil {
				got[port]++
				total++
			}
		}
	}
	return got
}

func TestProgrammerDrivesTheSwitch(t *testing.T) {
	ts := switchtest.Start(t, 3)
	c := switchtest.Primary(t, ts)
	s := c.Schema()
	switchtest.FabricPorts(t, c, 1, 2, 3)

	cart := wire.KeyOf(wire.MustParseName("/shop/cart"))
	pfx := spf.Prefix{Key: cart, Len: 64}
	p := fib.New(s)
	two := fib.Routes{pfx: {Kind: fib.Forward, Hops: []fib.Hop{{Port: 2, DMAC: 2}, {Port: 3, DMAC: 3}}}}
	apply(t, c, p, two)
	if r, ge, g, m := countEntities(t, c); r != 1 || ge != 1 || g != 1 || m != 2 {
		t.Fatalf("switch holds %d routes, %d group entries, %d groups, %d members; want 1, 1, 1, 2", r, ge, g, m)
	}
	got := spread(t, ts, cart, 64)
	if got[2] == 0 || got[3] == 0 || got[2]+got[3] != 64 {
		t.Fatalf("ECMP over ports 2 and 3: %v", got)
	}

	// The link on port 2 is cut: the route moves to port 3 alone.
	apply(t, c, p, fib.Routes{pfx: {Kind: fib.Forward, Hops: []fib.Hop{{Port: 3, DMAC: 3}}}})
	if r, ge, g, m := countEntities(t, c); r != 1 || ge != 1 || g != 1 || m != 1 {
		t.Fatalf("after the cut: %d routes, %d group entries, %d groups, %d members; want 1, 1, 1, 1", r, ge, g, m)
	}
	if got := spread(t, ts, cart.WithInstance(9), 32); got[3] != 32 {
		t.Fatalf("after the cut: %v, want all 32 on port 3", got)
	}

	// Withdrawn: nothing of the route is left on the switch.
	apply(t, c, p, fib.Routes{})
	if r, ge, g, m := countEntities(t, c); r+ge+g+m != 0 {
		t.Fatalf("after withdrawal: %d routes, %d group entries, %d groups, %d members", r, ge, g, m)
	}
	if got := spread(t, ts, cart, 4); len(got) != 0 {
		t.Fatalf("withdrawn route still forwards: %v", got)
	}
}

// TestRecoverFromSwitch is the warm restart: a new programmer read back
// from the switch plans nothing for the same routes, and repairs what is
// inconsistent.
func TestRecoverFromSwitch(t *testing.T) {
	ts := switchtest.Start(t, 4)
	c := switchtest.Primary(t, ts)
	s := c.Schema()
	switchtest.FabricPorts(t, c, 1, 2, 3, 4)
	ctx := context.Background()
	p := fib.New(s)
	a, b := fib.Hop{Port: 1, DMAC: 0xa}, fib.Hop{Port: 2, DMAC: 0xb, Weight: 3}
	routes := fib.Routes{
		spf.Prefix{Key: wire.KeyOf(wire.MustParseName("/shop")), Len: 32}:      {Kind: fib.Forward, Hops: []fib.Hop{a, b}},
		spf.Prefix{Key: wire.KeyOf(wire.MustParseName("/shop/cart")), Len: 64}: {Kind: fib.Forward, Hops: []fib.Hop{b}},
		spf.Prefix{Key: wire.KeyOf(wire.MustParseName("/shop/cart")).WithInstance(4), Len: 128}: {
			Kind: fib.Local, Hops: []fib.Hop{{Port: 3, Instance: 4}}},
		spf.Prefix{Key: wire.KeyOf(wire.MustParseName("/x")), Len: 32}: {Kind: fib.ToCPU},
	}
	apply(t, c, p, routes)

	// Debris a crashed agent could leave: a member and a group nobody uses.
	m, err := p4rt.NewMember(s, p4.ProfileNexthop, 900, p4.ActionSetNexthop, p4rt.Param(p4.ParamPort, 4), p4rt.Param(p4.ParamDmac, 4))
	if err != nil {
		t.Fatal(err)
	}
	g, err := p4rt.NewGroup(s, p4.ProfileNexthop, 900, 0).Add(900, 1).Build()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Write(ctx, p4rt.Insert(m), p4rt.Insert(g)); err != nil {
		t.Fatal(err)
	}

	read, err := c.Read(ctx, p4rt.AllTableEntries(), p4rt.Members(0), p4rt.Groups(0))
	if err != nil {
		t.Fatal(err)
	}
	q, err := fib.Recover(s, read)
	if err != nil {
		t.Fatal(err)
	}
	if got := q.Routes(); len(got) != len(routes) {
		t.Fatalf("recovered %d routes, want %d", len(got), len(routes))
	}
	plan, err := q.Plan(routes)
	if err != nil {
		t.Fatal(err)
	}
	// Only the debris goes: the group, then its member.
	if plan.Len() != 2 {
		t.Fatalf("plan after recovery has %d updates, want 2 (the debris): %v", plan.Len(), plan.Phases)
	}
	apply(t, c, q, routes)
	if r, ge, gr, mem := countEntities(t, c); r != 4 || ge != 3 || gr != 3 || mem != 3 {
		t.Fatalf("after repair: %d routes, %d group entries, %d groups, %d members", r, ge, gr, mem)
	}
	// The recovered programmer goes on working: a new next-hop set.
	routes[spf.Prefix{Key: wire.KeyOf(wire.MustParseName("/shop/cart")), Len: 64}] = fib.Route{Kind: fib.Forward, Hops: []fib.Hop{a}}
	apply(t, c, q, routes)
	if got := spread(t, ts, wire.KeyOf(wire.MustParseName("/shop/cart")), 8); got[1] != 8 {
		t.Fatalf("after the change: %v, want all on port 1", got)
	}
}

// TestRecoverRepeatedMembers: PI (BMv2's P4Runtime server) lists a member
// once per unit of its largest weight in a wildcard read. The repeats are
// the same member, not debris: a recovered programmer plans nothing.
func TestRecoverRepeatedMembers(t *testing.T) {
	ts := switchtest.Start(t, 2)
	c := switchtest.Primary(t, ts)
	s := c.Schema()
	switchtest.FabricPorts(t, c, 1, 2)
	p := fib.New(s)
	routes := fib.Routes{
		spf.Prefix{Key: wire.KeyOf(wire.MustParseName("/shop")), Len: 32}: {Kind: fib.Forward,
			Hops: []fib.Hop{{Port: 1, DMAC: 0xa, Weight: 1}, {Port: 2, DMAC: 0xb, Weight: 3}}},
	}
	apply(t, c, p, routes)
	read, err := c.Read(context.Background(), p4rt.AllTableEntries(), p4rt.Members(0), p4rt.Groups(0))
	if err != nil {
		t.Fatal(err)
	}
	// Read back as PI would: every member three times.
	var asPI []*p4v1.Entity
	for _, e := range read {
		asPI = append(asPI, e)
		if e.GetActionProfileMember() != nil {
			asPI = append(asPI, e, e)
		}
	}
	q, err := fib.Recover(s, asPI)
	if err != nil {
		t.Fatal(err)
	}
	plan, err := q.Plan(routes)
	if err != nil {
		t.Fatal(err)
	}
	if plan.Len() != 0 {
		t.Fatalf("plan after recovering repeated members: %v", plan.Phases)
	}
}

// TestPlanChangesMatchesPlan drives a switch with PlanChanges through random
// route changes and checks, after each, that the switch holds exactly the
// routes wanted (read back), and that nothing is left behind: as many
// groups and members as the routes need.
func TestPlanChangesMatchesPlan(t *testing.T) {
	ts := switchtest.Start(t, 4)
	c := switchtest.Primary(t, ts)
	s := c.Schema()
	switchtest.FabricPorts(t, c, 1, 2, 3, 4)
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(7, 11))
	p := fib.New(s)
	want := fib.Routes{}
	hopSets := [][]fib.Hop{
		{{Port: 1, DMAC: 1}}, {{Port: 2, DMAC: 2}}, {{Port: 1, DMAC: 1}, {Port: 2, DMAC: 2}},
		{{Port: 3, DMAC: 3, Weight: 2}, {Port: 4, DMAC: 4}},
	}
	for step := range 60 {
		changes := map[spf.Prefix]*fib.Route{}
		for range 1 + rng.IntN(5) {
			pfx := spf.Prefix{Key: wire.KeyOf(wire.MustParseName(fmt.Sprintf("/s%d", rng.IntN(12)))), Len: 32}
			if rng.IntN(4) == 0 {
				changes[pfx] = nil
				delete(want, pfx)
				continue
			}
			r := fib.Route{Kind: fib.Forward, Hops: hopSets[rng.IntN(len(hopSets))]}
			if rng.IntN(6) == 0 {
				r = fib.Route{Kind: fib.ToCPU}
			}
			changes[pfx] = &r
			want[pfx] = r
		}
		plan, err := p.PlanChanges(changes)
		if err != nil {
			t.Fatal(err)
		}
		for i, ph := range plan.Phases {
			if err := c.WriteAtomic(ctx, p4rt.ContinueOnError, ph...); err != nil {
				t.Fatalf("step %d phase %d: %v", step, i, err)
			}
		}
		p.Commit(plan)
		read, err := c.Read(ctx, p4rt.AllTableEntries(), p4rt.Members(0), p4rt.Groups(0))
		if err != nil {
			t.Fatal(err)
		}
		q, err := fib.Recover(s, read)
		if err != nil {
			t.Fatal(err)
		}
		if got := q.Routes(); len(got) != len(want) {
			t.Fatalf("step %d: the switch holds %d routes, want %d", step, len(got), len(want))
		}
		// A full plan from the read-back finds nothing to do: no route
		// differs and no group or member is left over.
		full, err := q.Plan(want)
		if err != nil {
			t.Fatal(err)
		}
		if full.Len() != 0 {
			t.Fatalf("step %d: the switch differs from the routes wanted: %v", step, full.Phases)
		}
	}
}
