package fib_test

import (
	"context"
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
	var roles []*p4v1.Update
	for port := uint64(1); port <= 3; port++ {
		e, err := p4rt.NewTableEntry(s, p4.TablePortRole).ExactUint(p4.FieldPort, port).
			Action(p4.ActionSetPortRole, p4rt.Param(p4.ParamRole, p4.RoleFabric)).Build()
		if err != nil {
			t.Fatal(err)
		}
		roles = append(roles, p4rt.Insert(e))
	}
	if err := c.Write(context.Background(), roles...); err != nil {
		t.Fatal(err)
	}

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
