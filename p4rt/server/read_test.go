package server

import (
	"slices"
	"sync"
	"testing"

	p4v1 "github.com/p4lang/p4runtime/go/p4/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/dmsc-mesh/dmsc/p4"
	"github.com/dmsc-mesh/dmsc/p4rt/p4info"
)

func TestReadWildcards(t *testing.T) {
	h := newHarness(t, Options{})
	c := h.primary()
	h.seed(c) // members 1, 2; group 1; nexthop entry; fib_64 entry 100
	if err := h.write(c, 0, ins(h.fib64(101, 2)), ins(&p4v1.TableEntry{
		TableId: h.tableID(p4.TablePortRole), Match: []*p4v1.FieldMatch{exact(1, []byte{3})},
		Action: direct(h.action(p4.ActionSetPortRole, []byte{p4.RolePod})), Metadata: []byte("pod"),
	})); err != nil {
		t.Fatal(err)
	}
	fib64 := h.tableID(p4.TableFIB64)
	nh := h.profileID(p4.ProfileNexthop)
	tests := []struct {
		name   string
		filter *p4v1.Entity
		want   int
	}{
		{"all tables", ent(&p4v1.TableEntry{}), 4},
		{"one table", ent(&p4v1.TableEntry{TableId: fib64}), 2},
		{"by match", ent(&p4v1.TableEntry{TableId: fib64, Match: []*p4v1.FieldMatch{exact(1, []byte{0, 101})}}), 1},
		{"by missing match", ent(&p4v1.TableEntry{TableId: fib64, Match: []*p4v1.FieldMatch{exact(1, []byte{102})}}), 0},
		{"by action", ent(&p4v1.TableEntry{TableId: fib64, Action: direct(&p4v1.Action{ActionId: h.actionID(p4.ActionSetNexthopGroup)})}), 2},
		{"by other action", ent(&p4v1.TableEntry{TableId: fib64, Action: direct(&p4v1.Action{ActionId: h.actionID(p4.ActionDrop)})}), 0},
		{"by metadata", ent(&p4v1.TableEntry{Metadata: []byte("pod")}), 1},
		{"default entries", ent(&p4v1.TableEntry{IsDefaultAction: true}), 8},
		{"all members", ent(&p4v1.ActionProfileMember{}), 2},
		{"members of a profile", ent(&p4v1.ActionProfileMember{ActionProfileId: nh}), 2},
		{"members of the other profile", ent(&p4v1.ActionProfileMember{ActionProfileId: h.profileID(p4.ProfileInstance)}), 0},
		{"one member", ent(&p4v1.ActionProfileMember{ActionProfileId: nh, MemberId: 2}), 1},
		{"all groups", ent(&p4v1.ActionProfileGroup{}), 1},
		{"one group", ent(&p4v1.ActionProfileGroup{ActionProfileId: nh, GroupId: 1}), 1},
		{"missing group", ent(&p4v1.ActionProfileGroup{ActionProfileId: nh, GroupId: 2}), 0},
		{"meters (none declared)", ent(&p4v1.MeterEntry{}), 0},
		{"replication engine", &p4v1.Entity{Entity: &p4v1.Entity_PacketReplicationEngineEntry{}}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, _, err := h.read(tt.filter)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != tt.want {
				t.Errorf("%d entities, want %d: %v", len(got), tt.want, got)
			}
		})
	}
	// Several requests in one Read; a bad one does not spoil the others.
	got, _, err := h.read(
		ent(&p4v1.ActionProfileGroup{}),
		ent(&p4v1.TableEntry{TableId: 4242}),
		ent(&p4v1.ActionProfileMember{MemberId: 1}),
		ent(&p4v1.TableEntry{TableId: fib64, Match: []*p4v1.FieldMatch{exact(2, []byte{1})}}),
		&p4v1.Entity{},
		ent(&p4v1.MeterEntry{MeterId: 3}),
		ent(&p4v1.TableEntry{TableId: fib64, Priority: 3}), // filters to nothing
		ent(&p4v1.ActionProfileMember{ActionProfileId: 99}),
	)
	want := []codes.Code{codes.OK, codes.NotFound, codes.InvalidArgument, codes.InvalidArgument, codes.InvalidArgument, codes.NotFound, codes.OK, codes.NotFound}
	if gotCodes := codesOf(t, err, len(want)); !slices.Equal(gotCodes, want) {
		t.Errorf("codes %v, want %v", gotCodes, want)
	}
	if len(got) != 1 || got[0].GetActionProfileGroup() == nil {
		t.Errorf("entities of the good requests: %v", got)
	}
	if _, _, err := h.read(); err != nil {
		t.Errorf("empty read: %v", err)
	}
}

func TestReadCounters(t *testing.T) {
	h := newHarness(t, Options{})
	c := h.primary()
	if err := h.write(c, 0, ins(h.fib64(5, 1)), ins(h.fib64(6, 1))); err != nil {
		t.Fatal(err)
	}
	fib64 := h.tableID(p4.TableFIB64)
	// A table entry read with counter_data set carries the direct counter.
	got, _, err := h.read(ent(&p4v1.TableEntry{TableId: fib64, CounterData: &p4v1.CounterData{}}))
	if err != nil || len(got) != 2 {
		t.Fatalf("%v %v", got, err)
	}
	for _, e := range got {
		te := e.GetTableEntry()
		k, _ := p4info.ToUint(te.Match[0].GetExact().Value)
		if te.CounterData.GetPacketCount() != int64(k) || te.CounterData.GetByteCount() != 100*int64(k) {
			t.Errorf("entry %d counter %v", k, te.CounterData)
		}
	}
	// Without counter_data in the request, none in the answer; tables
	// without a direct counter never carry one.
	got, _, _ = h.read(ent(&p4v1.TableEntry{}))
	for _, e := range got {
		if e.GetTableEntry().CounterData != nil {
			t.Errorf("unrequested counter data: %v", e)
		}
	}
	// DirectCounterEntry: one, a table, all.
	got, _, err = h.read(ent(&p4v1.DirectCounterEntry{TableEntry: &p4v1.TableEntry{TableId: fib64, Match: []*p4v1.FieldMatch{exact(1, []byte{6})}}}))
	if err != nil || len(got) != 1 || got[0].GetDirectCounterEntry().GetData().GetPacketCount() != 6 {
		t.Errorf("one direct counter: %v %v", got, err)
	}
	got, _, err = h.read(ent(&p4v1.DirectCounterEntry{TableEntry: &p4v1.TableEntry{TableId: fib64}}), ent(&p4v1.DirectCounterEntry{}))
	if err != nil || len(got) != 4 {
		t.Errorf("direct counters: %d %v", len(got), err)
	}
	_, _, err = h.read(
		ent(&p4v1.DirectCounterEntry{TableEntry: &p4v1.TableEntry{TableId: fib64, Match: []*p4v1.FieldMatch{exact(1, []byte{7})}}}),
		ent(&p4v1.DirectCounterEntry{TableEntry: &p4v1.TableEntry{TableId: h.tableID(p4.TablePortRole)}}),
	)
	if got := codesOf(t, err, 2); !slices.Equal(got, []codes.Code{codes.NotFound, codes.InvalidArgument}) {
		t.Errorf("direct counter errors %v", got)
	}
	// Indexed counters: a cell, a counter, all counters.
	rx := h.counterID(p4.CounterPortRx)
	got, _, err = h.read(ent(&p4v1.CounterEntry{CounterId: rx, Index: &p4v1.Index{Index: 9}}))
	if err != nil || len(got) != 1 || got[0].GetCounterEntry().GetData().GetPacketCount() != 9 || got[0].GetCounterEntry().GetIndex().GetIndex() != 9 {
		t.Errorf("one cell: %v %v", got, err)
	}
	got, _, err = h.read(ent(&p4v1.CounterEntry{CounterId: h.counterID(p4.CounterDrop)}))
	if err != nil || len(got) != 16 {
		t.Errorf("drop counter: %d cells, %v", len(got), err)
	}
	got, chunks, err := h.read(ent(&p4v1.CounterEntry{}))
	if err != nil || len(got) != 512+16+512 || chunks != 2 {
		t.Errorf("all counters: %d cells in %d chunks, %v", len(got), chunks, err)
	}
	_, _, err = h.read(
		ent(&p4v1.CounterEntry{CounterId: rx, Index: &p4v1.Index{Index: 512}}),
		ent(&p4v1.CounterEntry{CounterId: rx, Index: &p4v1.Index{Index: -1}}),
		ent(&p4v1.CounterEntry{CounterId: 1}),
	)
	if got := codesOf(t, err, 3); !slices.Equal(got, []codes.Code{codes.OutOfRange, codes.InvalidArgument, codes.NotFound}) {
		t.Errorf("counter errors %v", got)
	}
	// A target error is reported for its request.
	h.target.set(func(f *fakeTarget) { f.counterE = status.Error(codes.Unavailable, "busy") })
	_, _, err = h.read(ent(&p4v1.TableEntry{TableId: fib64, CounterData: &p4v1.CounterData{}}))
	if got := codesOf(t, err, 1); got[0] != codes.Unavailable {
		t.Errorf("target counter error %v", got)
	}
}

func TestReadChunks(t *testing.T) {
	h := newHarness(t, Options{})
	c := h.primary()
	var ups []*p4v1.Update
	for i := range 2500 {
		ups = append(ups, ins(h.fib64(uint64(i), 1)))
	}
	if err := h.write(c, 0, ups...); err != nil {
		t.Fatal(err)
	}
	got, chunks, err := h.read(ent(&p4v1.TableEntry{TableId: h.tableID(p4.TableFIB64)}))
	if err != nil || len(got) != 2500 || chunks != 3 {
		t.Errorf("%d entities in %d chunks, %v", len(got), chunks, err)
	}
	seen := map[uint64]bool{}
	for _, e := range got {
		v := e.GetTableEntry().Match[0].GetExact().Value
		if len(v) != len(p4info.Canonical(v)) {
			t.Fatalf("non-canonical %x", v)
		}
		k, _ := p4info.ToUint(v)
		seen[k] = true
	}
	if len(seen) != 2500 {
		t.Errorf("%d distinct keys", len(seen))
	}
}

// TestConcurrent runs Writes, Reads, packet-ins and arbitration changes at
// once; under -race it checks the locking.
func TestConcurrent(t *testing.T) {
	h := newHarness(t, Options{PacketInQueue: 8})
	c := h.primary()
	sink := h.target.getSink()
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Add(3)
	go func() { // packet-ins
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
				sink(packetIn("x"))
			}
		}
	}()
	go func() { // readers
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
				if _, _, err := h.read(ent(&p4v1.TableEntry{CounterData: &p4v1.CounterData{}}), ent(&p4v1.ActionProfileMember{})); err != nil {
					t.Error(err)
					return
				}
			}
		}
	}()
	go func() { // backups coming and going
		defer wg.Done()
		for range 100 {
			select {
			case <-stop:
				return
			default:
				b := h.open(arbitration(testDevice, "", nil)) // unset: never primary, never a clash
				b.arb()
				b.close()
			}
		}
	}()
	for i := range 50 {
		var ups []*p4v1.Update
		for j := range 20 {
			ups = append(ups, ins(h.fib64(uint64(i*20+j), 1)))
		}
		ups = append(ups, ins(h.member(uint32(i+1), 1)))
		if err := h.write(c, p4v1.WriteRequest_Atomicity(i%3), ups...); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	wg.Wait()
	if n := h.count(ent(&p4v1.TableEntry{})); n != 1000 {
		t.Errorf("%d entries", n)
	}
}
