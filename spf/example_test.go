package spf_test

import (
	"fmt"
	"time"

	"github.com/dmsc-mesh/dmsc/spf"
)

// The agent's use of the package: one LSDB and one RIB, fed from its event
// loop with the time as a value; what to flood and what to program into the
// FIB comes back in the results.
func Example() {
	cart := spf.Prefix{Key: [16]byte{0x8d, 0x90, 0x01, 0xd3, 0x1c, 0x42, 0xdd, 0xc0}, Len: 64}
	db := spf.New(spf.Options{Self: "sg1"})
	rib := spf.NewRIB("sg1")
	now := time.Duration(0)

	// Our own LSP: one adjacency, found by hellos on port 1.
	own, _ := db.Originate(0, []spf.Adjacency{{Neighbor: "sr1", Metric: 10, LinkID: 1}}, nil, now)
	fmt.Println("flood", own.ID(), "seq", own.Seq)

	// LSPs from the network.
	for _, l := range []spf.LSP{
		{Origin: "sr1", Seq: 4, RemainingLifetime: 1200, Adjacencies: []spf.Adjacency{
			{Neighbor: "sg1", Metric: 10, LinkID: 3}, {Neighbor: "sg2", Metric: 10, LinkID: 4}}},
		{Origin: "sg2", Seq: 9, RemainingLifetime: 1200, Adjacencies: []spf.Adjacency{
			{Neighbor: "sr1", Metric: 10, LinkID: 1}}, Prefixes: []spf.PrefixReach{{Prefix: cart}}},
	} {
		res := db.Receive(l, now)
		fmt.Println(l.ID(), res.Verdict) // Newer: flood on, except back to the sender
	}

	// When the SPF timer fires: compute and program the diff.
	c := rib.Update(db, db.TakeChanges())
	fmt.Println(c.Kind)
	for _, u := range c.Diff.Added {
		fmt.Println("add", u.Prefix, u.New)
	}

	// Later, sg2 announces the service at a higher metric: prefixes only.
	db.Receive(spf.LSP{Origin: "sg2", Seq: 10, RemainingLifetime: 1200, Adjacencies: []spf.Adjacency{
		{Neighbor: "sr1", Metric: 10, LinkID: 1}}, Prefixes: []spf.PrefixReach{{Prefix: cart, Metric: 5}}}, now)
	c = rib.Update(db, db.TakeChanges())
	fmt.Println(c.Kind)
	for _, u := range c.Diff.Changed {
		fmt.Println("change", u.Prefix, u.New)
	}
	// Output:
	// flood sg1/0 seq 1
	// sr1/0 newer
	// sg2/0 newer
	// full
	// add 8d9001d3.1c42ddc0/64 metric=20 via sr1/1 from sg2
	// incremental
	// change 8d9001d3.1c42ddc0/64 metric=25 via sr1/1 from sg2
}
