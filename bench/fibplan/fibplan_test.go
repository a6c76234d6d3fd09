// Package fibplan measures what one FIB write costs the agent's writer as
// the FIB grows. fib.Programmer.Plan takes the whole desired FIB, so a
// change of one route costs a pass over every route (a clone of the
// installed state, a sort of every prefix, a lookup per route): with 100k
// prefixes that pass would be in front of every write, a link cut's or a
// registration's alike. The writer therefore plans only the changed routes
// with PlanChanges after its first, full reconciliation; Plan is measured
// beside it as the peer. Run it with
//
//	go test -run '^$' -bench . ./bench/fibplan
package fibplan

import (
	"encoding/binary"
	"fmt"
	"testing"

	"github.com/dmsc-mesh/dmsc/controller/fib"
	"github.com/dmsc-mesh/dmsc/p4"
	"github.com/dmsc-mesh/dmsc/spf"
)

// installed returns a programmer holding n /64 routes spread over four
// next-hop sets, and the desired FIB that matches it.
func installed(tb testing.TB, n int) (*fib.Programmer, fib.Routes) {
	tb.Helper()
	s, err := p4.Schema()
	if err != nil {
		tb.Fatal(err)
	}
	hops := [][]fib.Hop{
		{{Port: 1, DMAC: 0x020000000001, Weight: 1}},
		{{Port: 2, DMAC: 0x020000000002, Weight: 1}},
		{{Port: 1, DMAC: 0x020000000001, Weight: 1}, {Port: 2, DMAC: 0x020000000002, Weight: 1}},
		{{Port: 3, DMAC: 0x020000000003, Weight: 1}},
	}
	desired := make(fib.Routes, n)
	for i := range n {
		p := spf.Prefix{Len: 64}
		binary.BigEndian.PutUint64(p.Key[:8], uint64(i+1)<<8|1)
		desired[p] = fib.Route{Kind: fib.Forward, Hops: hops[i%len(hops)]}
	}
	prog := fib.New(s)
	plan, err := prog.Plan(desired)
	if err != nil {
		tb.Fatal(err)
	}
	prog.Commit(plan)
	return prog, desired
}

// TestOneChangeIsOneUpdate: moving one route to another next-hop set plans
// one route update and nothing else, whatever the FIB holds.
func TestOneChangeIsOneUpdate(t *testing.T) {
	prog, desired := installed(t, 1000)
	var p spf.Prefix
	for p = range desired {
		break
	}
	r := desired[p]
	r.Hops = []fib.Hop{{Port: 4, DMAC: 0x020000000004, Weight: 1}}
	desired[p] = r
	plan, err := prog.Plan(desired)
	if err != nil {
		t.Fatal(err)
	}
	// A new next-hop set: its member, its group and the group's entry,
	// then the route.
	if plan.Len() != 4 {
		t.Errorf("plan of %d updates for one changed route on a new next hop, want 4", plan.Len())
	}
}

// flip is a FIB of n routes and one of its routes in two versions, on two
// existing next-hop sets.
func flip(b *testing.B, n int) (*fib.Programmer, fib.Routes, spf.Prefix, [2]fib.Route) {
	prog, desired := installed(b, n)
	var p spf.Prefix
	for p = range desired {
		break
	}
	a, c := desired[p], desired[p]
	c.Hops = []fib.Hop{{Port: 3, DMAC: 0x020000000003, Weight: 1}}
	if len(a.Hops) == 1 && a.Hops[0].Port == 3 {
		c.Hops = []fib.Hop{{Port: 1, DMAC: 0x020000000001, Weight: 1}}
	}
	return prog, desired, p, [2]fib.Route{c, a}
}

var sizes = []int{1_000, 10_000, 100_000}

// BenchmarkPlanOneRoute: one route moves between two existing next-hop
// sets and back (Plan, then Commit), on FIBs of 1k, 10k and 100k routes.
// The 1k case is the peer: what the same change costs on a small FIB.
func BenchmarkPlanOneRoute(b *testing.B) {
	for _, n := range sizes {
		b.Run(fmt.Sprintf("routes=%d", n), func(b *testing.B) {
			prog, desired, p, versions := flip(b, n)
			i := 0
			for b.Loop() {
				desired[p] = versions[i%2]
				i++
				plan, err := prog.Plan(desired)
				if err != nil {
					b.Fatal(err)
				}
				if plan.Len() != 1 {
					b.Fatalf("plan of %d updates for one route", plan.Len())
				}
				prog.Commit(plan)
			}
		})
	}
}

// BenchmarkPlanChangesOneRoute: the same change planned as the agent's
// writer plans it, from the changed route alone (PlanChanges).
func BenchmarkPlanChangesOneRoute(b *testing.B) {
	for _, n := range sizes {
		b.Run(fmt.Sprintf("routes=%d", n), func(b *testing.B) {
			prog, _, p, versions := flip(b, n)
			i := 0
			for b.Loop() {
				r := versions[i%2]
				i++
				plan, err := prog.PlanChanges(map[spf.Prefix]*fib.Route{p: &r})
				if err != nil {
					b.Fatal(err)
				}
				if plan.Len() != 1 {
					b.Fatalf("plan of %d updates for one route", plan.Len())
				}
			}
		})
	}
}
