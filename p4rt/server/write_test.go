package server

import (
	"context"
	"slices"
	"testing"

	p4cfg "github.com/p4lang/p4runtime/go/p4/config/v1"
	p4v1 "github.com/p4lang/p4runtime/go/p4/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/dmsc-mesh/dmsc/p4"
	"github.com/dmsc-mesh/dmsc/p4rt/p4info"
)

// seed installs members 1 and 2, group 1 {1}, a nexthop entry for group 1,
// and fib_64 entry 100.
func (h *harness) seed(c *ctrl) {
	h.t.Helper()
	err := h.write(c, 0,
		ins(h.member(1, 1)),
		ins(h.member(2, 2)),
		ins(h.group(1, 1)),
		ins(h.nexthopEntry(1, groupRef(1))),
		ins(h.fib64(100, 1)),
	)
	if err != nil {
		h.t.Fatal(err)
	}
	h.target.reset()
}

func TestWriteErrors(t *testing.T) {
	const (
		OK    = codes.OK
		inval = codes.InvalidArgument
		nf    = codes.NotFound
		perm  = codes.PermissionDenied
		exist = codes.AlreadyExists
		pre   = codes.FailedPrecondition
		unimp = codes.Unimplemented
	)
	type ups = []*p4v1.Update
	tests := []struct {
		name    string
		updates func(h *harness) ups
		want    []codes.Code
	}{
		// Table entries: ids and keys.
		{"unknown table", func(h *harness) ups {
			e := h.fib64(1, 1)
			e.TableId = 12345
			return ups{ins(e)}
		}, []codes.Code{nf}},
		{"table id 0", func(h *harness) ups {
			e := h.fib64(1, 1)
			e.TableId = 0
			return ups{ins(e)}
		}, []codes.Code{inval}},
		{"missing match field", func(h *harness) ups {
			e := h.fib64(1, 1)
			e.Match = nil
			return ups{ins(e)}
		}, []codes.Code{inval}},
		{"extra match field", func(h *harness) ups {
			e := h.fib64(1, 1)
			e.Match = append(e.Match, exact(2, []byte{1}))
			return ups{ins(e)}
		}, []codes.Code{inval}},
		{"duplicate match field", func(h *harness) ups {
			e := h.fib64(1, 1)
			e.Match = append(e.Match, exact(1, []byte{2}))
			return ups{ins(e)}
		}, []codes.Code{inval}},
		{"wrong match kind", func(h *harness) ups {
			e := h.fib64(1, 1)
			e.Match[0] = &p4v1.FieldMatch{FieldId: 1, FieldMatchType: &p4v1.FieldMatch_Lpm{Lpm: &p4v1.FieldMatch_LPM{Value: []byte{1}, PrefixLen: 8}}}
			return ups{ins(e)}
		}, []codes.Code{inval}},
		{"match value too wide", func(h *harness) ups {
			e := h.fib64(1, 1)
			e.Match[0] = exact(1, []byte{1, 0, 0, 0, 0, 0, 0, 0, 0}) // 65 bits
			return ups{ins(e)}
		}, []codes.Code{inval}},
		{"empty match value", func(h *harness) ups {
			e := h.fib64(1, 1)
			e.Match[0] = exact(1, nil)
			return ups{ins(e)}
		}, []codes.Code{inval}},
		{"match field without kind", func(h *harness) ups {
			e := h.fib64(1, 1)
			e.Match[0] = &p4v1.FieldMatch{FieldId: 1}
			return ups{ins(e)}
		}, []codes.Code{inval}},
		{"priority on an exact table", func(h *harness) ups {
			e := h.fib64(1, 1)
			e.Priority = 10
			return ups{ins(e)}
		}, []codes.Code{inval}},
		{"is_const in a write", func(h *harness) ups {
			e := h.fib64(1, 1)
			e.IsConst = true
			return ups{ins(e)}
		}, []codes.Code{inval}},
		{"idle timeout on a table without", func(h *harness) ups {
			e := h.fib64(1, 1)
			e.IdleTimeoutNs = 1000
			return ups{ins(e)}
		}, []codes.Code{inval}},
		{"meter config on a table without meter", func(h *harness) ups {
			e := h.fib64(1, 1)
			e.MeterConfig = &p4v1.MeterConfig{Cir: 1}
			return ups{ins(e)}
		}, []codes.Code{inval}},
		{"counter data on a table without counter", func(h *harness) ups {
			e := &p4v1.TableEntry{TableId: h.tableID(p4.TablePortRole), Match: []*p4v1.FieldMatch{exact(1, []byte{1})},
				Action: direct(h.action(p4.ActionSetPortRole, []byte{1})), CounterData: &p4v1.CounterData{}}
			return ups{ins(e)}
		}, []codes.Code{inval}},
		{"zero counter data on insert is accepted", func(h *harness) ups {
			e := h.fib64(1, 1)
			e.CounterData = &p4v1.CounterData{}
			return ups{ins(e)}
		}, nil},
		{"counter values cannot be written", func(h *harness) ups {
			e := h.fib64(1, 1)
			e.CounterData = &p4v1.CounterData{PacketCount: 5}
			return ups{ins(e)}
		}, []codes.Code{unimp}},
		// Actions.
		{"no action on insert", func(h *harness) ups {
			e := h.fib64(1, 1)
			e.Action = nil
			return ups{ins(e)}
		}, []codes.Code{inval}},
		{"empty table action", func(h *harness) ups {
			e := h.fib64(1, 1)
			e.Action = &p4v1.TableAction{}
			return ups{ins(e)}
		}, []codes.Code{inval}},
		{"unknown action", func(h *harness) ups {
			e := h.fib64(1, 1)
			e.Action.GetAction().ActionId = 999
			return ups{ins(e)}
		}, []codes.Code{nf}},
		{"action not in table", func(h *harness) ups {
			e := h.fib64(1, 1)
			e.Action = direct(h.action(p4.ActionSetPortRole, []byte{1}))
			return ups{ins(e)}
		}, []codes.Code{inval}},
		{"default-only action in an entry", func(h *harness) ups {
			e := h.fib64(1, 1)
			e.Action = direct(h.action(p4.ActionNoAction))
			return ups{ins(e)}
		}, []codes.Code{perm}},
		{"missing param", func(h *harness) ups {
			e := h.fib64(1, 1)
			e.Action = direct(h.action(p4.ActionSetNexthopGroup))
			return ups{ins(e)}
		}, []codes.Code{inval}},
		{"unknown param", func(h *harness) ups {
			e := h.fib64(1, 1)
			e.Action.GetAction().Params[0].ParamId = 9
			return ups{ins(e)}
		}, []codes.Code{inval}},
		{"duplicate param", func(h *harness) ups {
			e := h.fib64(1, 1)
			a := e.Action.GetAction()
			a.Params = append(a.Params, &p4v1.Action_Param{ParamId: 1, Value: []byte{3}})
			return ups{ins(e)}
		}, []codes.Code{inval}},
		{"param too wide", func(h *harness) ups {
			return ups{ins(h.fib64(1, 1<<16))}
		}, []codes.Code{inval}},
		{"member id on a direct table", func(h *harness) ups {
			e := h.fib64(1, 1)
			e.Action = memberRef(1)
			return ups{ins(e)}
		}, []codes.Code{inval}},
		{"group id on a direct table", func(h *harness) ups {
			e := h.fib64(1, 1)
			e.Action = groupRef(1)
			return ups{ins(e)}
		}, []codes.Code{inval}},
		{"direct action on an indirect table", func(h *harness) ups {
			return ups{ins(h.nexthopEntry(2, direct(h.action(p4.ActionSetNexthop, []byte{1}, []byte{2}))))}
		}, []codes.Code{inval}},
		{"missing member", func(h *harness) ups {
			return ups{ins(h.nexthopEntry(2, memberRef(77)))}
		}, []codes.Code{nf}},
		{"missing group", func(h *harness) ups {
			return ups{ins(h.nexthopEntry(2, groupRef(77)))}
		}, []codes.Code{nf}},
		{"one-shot", func(h *harness) ups {
			e := h.nexthopEntry(2, &p4v1.TableAction{Type: &p4v1.TableAction_ActionProfileActionSet{ActionProfileActionSet: &p4v1.ActionProfileActionSet{}}})
			return ups{ins(e)}
		}, []codes.Code{unimp}},
		// Existence.
		{"insert existing", func(h *harness) ups { return ups{ins(h.fib64(100, 2))} }, []codes.Code{exist}},
		{"modify missing", func(h *harness) ups { return ups{mod(h.fib64(101, 2))} }, []codes.Code{nf}},
		{"delete missing", func(h *harness) ups { return ups{del(h.fib64(101, 2))} }, []codes.Code{nf}},
		{"delete ignores the action", func(h *harness) ups {
			e := h.fib64(100, 1)
			e.Action = direct(&p4v1.Action{ActionId: 12345})
			return ups{del(e)}
		}, nil},
		{"modify keeps the action when unset", func(h *harness) ups {
			e := h.fib64(100, 1)
			e.Action = nil
			e.Metadata = []byte("cookie")
			return ups{mod(e)}
		}, nil},
		// Default entries.
		{"insert a default entry", func(h *harness) ups {
			return ups{ins(&p4v1.TableEntry{TableId: h.tableID(p4.TableFIB64), IsDefaultAction: true, Action: direct(h.action(p4.ActionDrop))})}
		}, []codes.Code{inval}},
		{"const default action", func(h *harness) ups {
			return ups{mod(&p4v1.TableEntry{TableId: h.tableID(p4.TableFIB64), IsDefaultAction: true, Action: direct(h.action(p4.ActionDrop))})}
		}, []codes.Code{perm}},
		{"default entry with a match", func(h *harness) ups {
			e := h.fib64(5, 1)
			e.IsDefaultAction = true
			return ups{mod(e)}
		}, []codes.Code{inval}},
		// Members.
		{"member: unknown profile", func(h *harness) ups {
			m := h.member(5, 1)
			m.ActionProfileId = 4242
			return ups{ins(m)}
		}, []codes.Code{nf}},
		{"member: id 0", func(h *harness) ups { return ups{ins(h.member(0, 1))} }, []codes.Code{inval}},
		{"member: no action", func(h *harness) ups {
			m := h.member(5, 1)
			m.Action = nil
			return ups{ins(m)}
		}, []codes.Code{inval}},
		{"member: action not of its tables", func(h *harness) ups {
			m := h.member(5, 1)
			m.Action = h.action(p4.ActionDeliverInstance, []byte{1}, []byte{1}, []byte{1})
			return ups{ins(m)}
		}, []codes.Code{inval}},
		{"member: default-only action", func(h *harness) ups {
			m := h.member(5, 1)
			m.Action = h.action(p4.ActionNoAction)
			return ups{ins(m)}
		}, []codes.Code{perm}},
		{"member: port too wide", func(h *harness) ups { return ups{ins(h.member(5, 512))} }, []codes.Code{inval}},
		{"member: insert existing", func(h *harness) ups { return ups{ins(h.member(1, 3))} }, []codes.Code{exist}},
		{"member: modify missing", func(h *harness) ups { return ups{mod(h.member(9, 3))} }, []codes.Code{nf}},
		{"member: delete missing", func(h *harness) ups { return ups{del(h.member(9, 3))} }, []codes.Code{nf}},
		{"member: delete while in a group", func(h *harness) ups { return ups{del(h.member(1, 1))} }, []codes.Code{pre}},
		{"member: delete while used by an entry", func(h *harness) ups {
			return ups{ins(h.nexthopEntry(9, memberRef(2))), del(h.member(2, 2))}
		}, []codes.Code{OK, pre}},
		// Groups.
		{"group: missing member", func(h *harness) ups { return ups{ins(h.group(2, 1, 77))} }, []codes.Code{nf}},
		{"group: weight 0", func(h *harness) ups {
			g := h.group(2, 1)
			g.Members[0].Weight = 0
			return ups{ins(g)}
		}, []codes.Code{inval}},
		{"group: duplicate member", func(h *harness) ups { return ups{ins(h.group(2, 1, 1))} }, []codes.Code{inval}},
		{"group: watch port", func(h *harness) ups {
			g := h.group(2, 1)
			g.Members[0].WatchKind = &p4v1.ActionProfileGroup_Member_WatchPort{WatchPort: []byte{1}}
			return ups{ins(g)}
		}, []codes.Code{unimp}},
		{"group: insert existing", func(h *harness) ups { return ups{ins(h.group(1, 2))} }, []codes.Code{exist}},
		{"group: modify missing", func(h *harness) ups { return ups{mod(h.group(2, 2))} }, []codes.Code{nf}},
		{"group: max_size cannot change", func(h *harness) ups {
			g := h.group(1, 1, 2)
			g.MaxSize = 8
			return ups{mod(g)}
		}, []codes.Code{inval}},
		{"group: over its max_size", func(h *harness) ups {
			g := h.group(2, 1, 2)
			g.MaxSize = 1
			return ups{ins(g)}
		}, []codes.Code{inval}},
		{"group: delete while used", func(h *harness) ups { return ups{del(h.group(1))} }, []codes.Code{pre}},
		{"group: delete missing", func(h *harness) ups { return ups{del(h.group(5))} }, []codes.Code{nf}},
		{"group: modify then delete the member it dropped", func(h *harness) ups {
			return ups{ins(h.group(3, 1)), mod(h.group(3, 2)), del(h.group(3)), del(h.member(2, 0))}
		}, nil},
		// Counters and other entities.
		{"counter insert", func(h *harness) ups {
			return ups{ins(&p4v1.CounterEntry{CounterId: h.counterID(p4.CounterPortRx), Index: &p4v1.Index{Index: 1}})}
		}, []codes.Code{inval}},
		{"counter write", func(h *harness) ups {
			return ups{mod(&p4v1.CounterEntry{CounterId: h.counterID(p4.CounterPortRx), Index: &p4v1.Index{Index: 1}, Data: &p4v1.CounterData{}})}
		}, []codes.Code{unimp}},
		{"counter index out of range", func(h *harness) ups {
			return ups{mod(&p4v1.CounterEntry{CounterId: h.counterID(p4.CounterPortRx), Index: &p4v1.Index{Index: 512}, Data: &p4v1.CounterData{}})}
		}, []codes.Code{codes.OutOfRange}},
		{"counter negative index", func(h *harness) ups {
			return ups{mod(&p4v1.CounterEntry{CounterId: h.counterID(p4.CounterPortRx), Index: &p4v1.Index{Index: -1}})}
		}, []codes.Code{inval}},
		{"unknown counter", func(h *harness) ups {
			return ups{mod(&p4v1.CounterEntry{CounterId: 5, Data: &p4v1.CounterData{}})}
		}, []codes.Code{nf}},
		{"direct counter write", func(h *harness) ups {
			return ups{mod(&p4v1.DirectCounterEntry{TableEntry: h.fib64(100, 0), Data: &p4v1.CounterData{}})}
		}, []codes.Code{unimp}},
		{"direct counter of a missing entry", func(h *harness) ups {
			return ups{mod(&p4v1.DirectCounterEntry{TableEntry: h.fib64(101, 0), Data: &p4v1.CounterData{}})}
		}, []codes.Code{nf}},
		{"meter", func(h *harness) ups { return ups{mod(&p4v1.MeterEntry{MeterId: 1})} }, []codes.Code{unimp}},
		{"update type unspecified", func(h *harness) ups {
			return ups{upd(p4v1.Update_UNSPECIFIED, h.fib64(1, 1))}
		}, []codes.Code{inval}},
		{"update without entity", func(h *harness) ups {
			return ups{{Type: p4v1.Update_INSERT}, {Type: p4v1.Update_INSERT, Entity: &p4v1.Entity{}}}
		}, []codes.Code{inval, inval}},
		// Per-update codes in one batch, in order.
		{"mixed batch", func(h *harness) ups {
			return ups{ins(h.fib64(1, 1)), ins(h.fib64(100, 1)), ins(h.fib64(2, 1)), del(h.fib64(3, 1))}
		}, []codes.Code{OK, exist, OK, nf}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, Options{})
			c := h.primary()
			h.seed(c)
			ups := tt.updates(h)
			err := h.write(c, p4v1.WriteRequest_CONTINUE_ON_ERROR, ups...)
			got := codesOf(t, err, len(ups))
			if !slices.Equal(got, tt.want) {
				t.Errorf("codes %v, want %v (%v)", got, tt.want, err)
			}
			h.srv.mu.RLock()
			checkState(t, h.srv.running.state)
			h.srv.mu.RUnlock()
		})
	}
}

// TestWriteBatchOrder: a member, a group using it and an entry using the
// group, in one batch, apply in order with one Apply call.
func TestWriteBatchOrder(t *testing.T) {
	h := newHarness(t, Options{})
	c := h.primary()
	h.target.reset()
	ups := []*p4v1.Update{
		ins(h.member(1, 1)),
		ins(h.member(2, 2)),
		ins(h.group(10, 1, 2)),
		ins(h.nexthopEntry(10, groupRef(10))),
		ins(h.fib64(0xabcd, 10)),
	}
	if err := h.write(c, 0, ups...); err != nil {
		t.Fatal(err)
	}
	if calls := h.target.applyCalls(); len(calls) != 1 || calls[0] {
		t.Errorf("Apply calls (atomic flags) %v, want one non-atomic", calls)
	}
	got := h.target.recorded()
	if len(got) != len(ups) {
		t.Fatalf("target got %d changes", len(got))
	}
	for i, c := range got {
		if c.Type != p4v1.Update_INSERT || !proto.Equal(c.Entity, ups[i].Entity) {
			t.Errorf("change %d: %v %v", i, c.Type, c.Entity)
		}
	}
	// Teardown in reverse order works in one batch too.
	if err := h.write(c, 0, del(ups[4].Entity.GetTableEntry()), del(ups[3].Entity.GetTableEntry()),
		del(h.group(10)), del(h.member(1, 0)), del(h.member(2, 0))); err != nil {
		t.Fatal(err)
	}
	all, _, err := h.read(ent(&p4v1.TableEntry{}), ent(&p4v1.ActionProfileMember{}), ent(&p4v1.ActionProfileGroup{}))
	if err != nil || len(all) != 0 {
		t.Errorf("after teardown: %v %v", all, err)
	}
}

func TestWriteAtomicity(t *testing.T) {
	resourceExhausted := func(h *harness) func(Change) error {
		return func(c Change) error {
			if v, _ := p4info.ToUint(c.Entity.GetTableEntry().GetMatch()[0].GetExact().GetValue()); v == 2 {
				return status.Error(codes.ResourceExhausted, "table full")
			}
			return nil
		}
	}
	tests := []struct {
		name      string
		atomicity p4v1.WriteRequest_Atomicity
		// invalid: the second update fails validation; otherwise the target
		// refuses it.
		invalid   bool
		want      []codes.Code
		installed []uint64
		applies   []bool
	}{
		{"continue, invalid", p4v1.WriteRequest_CONTINUE_ON_ERROR, true, []codes.Code{codes.OK, codes.AlreadyExists, codes.OK}, []uint64{1, 3, 100}, []bool{false}},
		{"rollback, invalid", p4v1.WriteRequest_ROLLBACK_ON_ERROR, true, []codes.Code{codes.Aborted, codes.AlreadyExists, codes.Aborted}, []uint64{100}, nil},
		{"dataplane atomic, invalid", p4v1.WriteRequest_DATAPLANE_ATOMIC, true, []codes.Code{codes.Aborted, codes.AlreadyExists, codes.Aborted}, []uint64{100}, nil},
		{"continue, target refuses", p4v1.WriteRequest_CONTINUE_ON_ERROR, false, []codes.Code{codes.OK, codes.ResourceExhausted, codes.OK}, []uint64{1, 3, 100}, []bool{false}},
		{"rollback, target refuses", p4v1.WriteRequest_ROLLBACK_ON_ERROR, false, []codes.Code{codes.Aborted, codes.ResourceExhausted, codes.Aborted}, []uint64{100}, []bool{true}},
		{"dataplane atomic, target refuses", p4v1.WriteRequest_DATAPLANE_ATOMIC, false, []codes.Code{codes.Aborted, codes.ResourceExhausted, codes.Aborted}, []uint64{100}, []bool{true}},
		{"dataplane atomic, success", p4v1.WriteRequest_DATAPLANE_ATOMIC, false, nil, []uint64{1, 2, 3, 100}, []bool{true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, Options{})
			c := h.primary()
			h.seed(c)
			second := h.fib64(2, 1)
			if tt.invalid {
				second = h.fib64(100, 1)
			} else if tt.want != nil {
				h.target.set(func(f *fakeTarget) { f.fail = resourceExhausted(h) })
			}
			ups := []*p4v1.Update{ins(h.fib64(1, 1)), ins(second), ins(h.fib64(3, 1))}
			err := h.write(c, tt.atomicity, ups...)
			if got := codesOf(t, err, 3); !slices.Equal(got, tt.want) {
				t.Errorf("codes %v, want %v", got, tt.want)
			}
			if got := h.target.applyCalls(); !slices.Equal(got, tt.applies) {
				t.Errorf("Apply calls %v, want %v", got, tt.applies)
			}
			es, _, err := h.read(ent(&p4v1.TableEntry{TableId: h.tableID(p4.TableFIB64)}))
			if err != nil {
				t.Fatal(err)
			}
			var keys []uint64
			for _, e := range es {
				v, _ := p4info.ToUint(e.GetTableEntry().Match[0].GetExact().Value)
				keys = append(keys, v)
			}
			slices.Sort(keys)
			if !slices.Equal(keys, tt.installed) {
				t.Errorf("installed %v, want %v", keys, tt.installed)
			}
			h.srv.mu.RLock()
			checkState(t, h.srv.running.state)
			h.srv.mu.RUnlock()
			st := h.srv.Stats()
			if tt.want != nil && st.UpdateErrors == 0 {
				t.Errorf("stats: %+v", st)
			}
		})
	}
}

// TestWriteCanonical: values in any width that fits are stored, handed to
// the target and read back in canonical form.
func TestWriteCanonical(t *testing.T) {
	h := newHarness(t, Options{})
	c := h.primary()
	h.target.reset()
	e := &p4v1.TableEntry{
		TableId: h.tableID(p4.TableSrcGuard),
		// Out of order, padded.
		Match: []*p4v1.FieldMatch{
			exact(2, append(make([]byte, 20), 0x01, 0x02)), // 176 bits of padding + value: fits 128
			exact(1, []byte{0, 0, 0, 5}),
		},
		Action: direct(h.action(p4.ActionAllow)),
	}
	m := &p4v1.ActionProfileMember{
		ActionProfileId: h.profileID(p4.ProfileNexthop), MemberId: 3,
		Action: &p4v1.Action{ActionId: h.actionID(p4.ActionSetNexthop), Params: []*p4v1.Action_Param{
			{ParamId: 2, Value: []byte{0, 0, 0, 0, 0, 0, 0, 0, 0xaa}},
			{ParamId: 1, Value: []byte{0, 0}},
		}},
	}
	if err := h.write(c, 0, ins(e), ins(m)); err != nil {
		t.Fatal(err)
	}
	wantE := &p4v1.TableEntry{
		TableId: h.tableID(p4.TableSrcGuard),
		Match:   []*p4v1.FieldMatch{exact(1, []byte{5}), exact(2, []byte{1, 2})},
		Action:  direct(h.action(p4.ActionAllow)),
	}
	wantM := &p4v1.ActionProfileMember{
		ActionProfileId: h.profileID(p4.ProfileNexthop), MemberId: 3,
		Action: &p4v1.Action{ActionId: h.actionID(p4.ActionSetNexthop), Params: []*p4v1.Action_Param{
			{ParamId: 1, Value: []byte{0}},
			{ParamId: 2, Value: []byte{0xaa}},
		}},
	}
	got, _, err := h.read(ent(&p4v1.TableEntry{TableId: wantE.TableId}), ent(&p4v1.ActionProfileMember{}))
	if err != nil {
		t.Fatal(err)
	}
	want := []*p4v1.Entity{ent(wantE), ent(wantM)}
	sameEntities(t, got, want)
	changes := h.target.recorded()
	if len(changes) != 2 || !proto.Equal(changes[0].Entity, ent(wantE)) || !proto.Equal(changes[1].Entity, ent(wantM)) {
		t.Errorf("target got %v", changes)
	}
	// The canonical and the padded forms name the same entry.
	dup := proto.Clone(wantE).(*p4v1.TableEntry)
	dup.Match[0] = exact(1, []byte{0, 5})
	if err := h.write(c, 0, ins(dup)); codesOf(t, err, 1)[0] != codes.AlreadyExists {
		t.Errorf("padded duplicate: %v", err)
	}
}

// TestDefaultEntry uses a P4Info whose fib_64 default is not const, and
// whose set_nexthop_group is table-only there.
func TestDefaultEntry(t *testing.T) {
	h := newHarness(t, Options{})
	c, _ := h.connect("", eid(1))
	info := proto.Clone(h.info).(*p4cfg.P4Info)
	tid := h.tableID(p4.TableFIB64)
	for _, tb := range info.Tables {
		if tb.Preamble.Id == tid {
			tb.ConstDefaultActionId = 0
			for _, r := range tb.ActionRefs {
				if r.Id == h.actionID(p4.ActionSetNexthopGroup) {
					r.Scope = p4cfg.ActionRef_TABLE_ONLY
				}
			}
		}
	}
	if err := h.setPipeline(c, p4v1.SetForwardingPipelineConfigRequest_VERIFY_AND_COMMIT, info, 0); err != nil {
		t.Fatal(err)
	}
	def := func(a *p4v1.TableAction) *p4v1.TableEntry {
		return &p4v1.TableEntry{TableId: tid, IsDefaultAction: true, Action: a}
	}
	err := h.write(c, 0,
		mod(def(direct(h.action(p4.ActionSetNexthopGroup, []byte{1})))), // table-only
		mod(def(memberRef(1))),                     // not an action
		mod(def(direct(h.action(p4.ActionToCPU)))), // fine
		del(def(nil)),                              // never
		mod(def(direct(h.action(p4.ActionSetPortRole, []byte{1})))), // not in the table
	)
	want := []codes.Code{codes.PermissionDenied, codes.InvalidArgument, codes.OK, codes.InvalidArgument, codes.InvalidArgument}
	if got := codesOf(t, err, 5); !slices.Equal(got, want) {
		t.Errorf("codes %v, want %v", got, want)
	}
	got, _, err := h.read(ent(&p4v1.TableEntry{TableId: tid, IsDefaultAction: true}))
	if err != nil || len(got) != 1 || got[0].GetTableEntry().GetAction().GetAction().GetActionId() != h.actionID(p4.ActionToCPU) {
		t.Errorf("default entry read %v %v", got, err)
	}
	// An unset action resets it to the program's default.
	if err := h.write(c, 0, mod(def(nil))); err != nil {
		t.Fatal(err)
	}
	got, _, _ = h.read(ent(&p4v1.TableEntry{TableId: tid, IsDefaultAction: true}))
	if len(got) != 1 || got[0].GetTableEntry().Action != nil || !got[0].GetTableEntry().IsDefaultAction {
		t.Errorf("reset default entry read %v", got)
	}
	// A const default reads back as const.
	got, _, _ = h.read(ent(&p4v1.TableEntry{TableId: h.tableID(p4.TableFIB32), IsDefaultAction: true}))
	if len(got) != 1 || !got[0].GetTableEntry().IsConst || got[0].GetTableEntry().GetAction().GetAction().GetActionId() != h.actionID(p4.ActionNoAction) {
		t.Errorf("const default entry read %v", got)
	}
}

// TestMatchKinds covers the non-exact match kinds with a P4Info variant of
// src_guard whose src_key is ternary, and a variant of fib_32 that is LPM,
// and one of port_role that is range/optional.
func TestMatchKinds(t *testing.T) {
	h := newHarness(t, Options{})
	c, _ := h.connect("", eid(1))
	info := proto.Clone(h.info).(*p4cfg.P4Info)
	kinds := map[uint32][]p4cfg.MatchField_MatchType{
		h.tableID(p4.TableSrcGuard): {p4cfg.MatchField_OPTIONAL, p4cfg.MatchField_TERNARY},
		h.tableID(p4.TableFIB32):    {p4cfg.MatchField_LPM},
		h.tableID(p4.TablePortRole): {p4cfg.MatchField_RANGE},
	}
	for _, tb := range info.Tables {
		for i, k := range kinds[tb.Preamble.Id] {
			tb.MatchFields[i].Match = &p4cfg.MatchField_MatchType_{MatchType: k}
		}
	}
	if err := h.setPipeline(c, p4v1.SetForwardingPipelineConfigRequest_VERIFY_AND_COMMIT, info, 0); err != nil {
		t.Fatal(err)
	}
	ternary := func(v, m []byte) *p4v1.FieldMatch {
		return &p4v1.FieldMatch{FieldId: 2, FieldMatchType: &p4v1.FieldMatch_Ternary_{Ternary: &p4v1.FieldMatch_Ternary{Value: v, Mask: m}}}
	}
	optional := func(v []byte) *p4v1.FieldMatch {
		return &p4v1.FieldMatch{FieldId: 1, FieldMatchType: &p4v1.FieldMatch_Optional_{Optional: &p4v1.FieldMatch_Optional{Value: v}}}
	}
	lpm := func(v []byte, n int32) *p4v1.FieldMatch {
		return &p4v1.FieldMatch{FieldId: 1, FieldMatchType: &p4v1.FieldMatch_Lpm{Lpm: &p4v1.FieldMatch_LPM{Value: v, PrefixLen: n}}}
	}
	rng := func(lo, hi []byte) *p4v1.FieldMatch {
		return &p4v1.FieldMatch{FieldId: 1, FieldMatchType: &p4v1.FieldMatch_Range_{Range: &p4v1.FieldMatch_Range{Low: lo, High: hi}}}
	}
	guard := func(prio int32, ms ...*p4v1.FieldMatch) *p4v1.Update {
		return ins(&p4v1.TableEntry{TableId: h.tableID(p4.TableSrcGuard), Match: ms, Priority: prio, Action: direct(h.action(p4.ActionAllow))})
	}
	fib := func(ms ...*p4v1.FieldMatch) *p4v1.Update {
		return ins(&p4v1.TableEntry{TableId: h.tableID(p4.TableFIB32), Match: ms, Action: direct(h.action(p4.ActionDrop))})
	}
	role := func(prio int32, ms ...*p4v1.FieldMatch) *p4v1.Update {
		return ins(&p4v1.TableEntry{TableId: h.tableID(p4.TablePortRole), Match: ms, Priority: prio, Action: direct(h.action(p4.ActionSetPortRole, []byte{1}))})
	}
	tests := []struct {
		name string
		up   *p4v1.Update
		want codes.Code
	}{
		{"ternary", guard(1, ternary([]byte{0x10}, []byte{0xf0})), codes.OK},
		{"ternary, same key other priority", guard(2, ternary([]byte{0x10}, []byte{0xf0})), codes.OK},
		{"ternary, same key and priority", guard(2, ternary([]byte{0, 0x10}, []byte{0xf0})), codes.AlreadyExists},
		{"ternary and optional", guard(3, optional([]byte{4}), ternary([]byte{0x10}, []byte{0xf0})), codes.OK},
		{"all don't care", guard(4), codes.OK},
		{"no priority", guard(0, ternary([]byte{0x10}, []byte{0xf0})), codes.InvalidArgument},
		{"negative priority", guard(-1), codes.InvalidArgument},
		{"zero mask", guard(5, ternary([]byte{0}, []byte{0})), codes.InvalidArgument},
		{"value outside mask", guard(5, ternary([]byte{0x11}, []byte{0xf0})), codes.InvalidArgument},
		{"value longer than mask", guard(5, ternary([]byte{1, 0}, []byte{0xff})), codes.InvalidArgument},
		{"optional too wide", guard(5, optional([]byte{2, 0})), codes.InvalidArgument},
		{"lpm", fib(lpm([]byte{10, 0, 0, 0}, 8)), codes.OK},
		{"lpm, other length", fib(lpm([]byte{10, 0, 0, 0}, 16)), codes.OK},
		{"lpm, bits beyond prefix", fib(lpm([]byte{10, 0, 0, 1}, 24)), codes.InvalidArgument},
		{"lpm, prefix 0", fib(lpm([]byte{0}, 0)), codes.InvalidArgument},
		{"lpm, prefix too long", fib(lpm([]byte{1}, 33)), codes.InvalidArgument},
		{"lpm, don't care entry", fib(), codes.OK},
		{"range", role(1, rng([]byte{1}, []byte{9})), codes.OK},
		{"range, low above high", role(1, rng([]byte{9}, []byte{1})), codes.InvalidArgument},
		{"range, full", role(1, rng([]byte{0}, []byte{1, 0xff})), codes.InvalidArgument},
		{"range, high too wide", role(1, rng([]byte{0}, []byte{2, 0})), codes.InvalidArgument},
	}
	for _, tt := range tests {
		err := h.write(c, 0, tt.up)
		got := codes.OK
		if err != nil {
			got = codesOf(t, err, 1)[0]
		}
		if got != tt.want {
			t.Errorf("%s: %v, want %v (%v)", tt.name, got, tt.want, err)
		}
	}
	// A read with a match but no priority finds every priority.
	got, _, err := h.read(ent(&p4v1.TableEntry{TableId: h.tableID(p4.TableSrcGuard), Match: []*p4v1.FieldMatch{ternary([]byte{0x10}, []byte{0xf0})}}))
	if err != nil || len(got) != 2 {
		t.Errorf("read by match across priorities: %d entries, %v", len(got), err)
	}
	got, _, err = h.read(ent(&p4v1.TableEntry{TableId: h.tableID(p4.TableSrcGuard), Priority: 4}))
	if err != nil || len(got) != 1 || len(got[0].GetTableEntry().Match) != 0 {
		t.Errorf("read of the don't-care entry by priority: %v, %v", got, err)
	}
}

func TestWriteBeforePipeline(t *testing.T) {
	h := newHarness(t, Options{})
	c, _ := h.connect("", eid(1))
	if err := h.write(c, 0, ins(h.fib64(1, 1))); status.Code(err) != codes.FailedPrecondition {
		t.Errorf("write before pipeline: %v", err)
	}
	if _, _, err := h.read(ent(&p4v1.TableEntry{})); status.Code(err) != codes.FailedPrecondition {
		t.Errorf("read before pipeline: %v", err)
	}
	if err := h.write(c, 7); status.Code(err) != codes.InvalidArgument {
		t.Errorf("unknown atomicity: %v", err)
	}
	if h.srv.Stats().RPCErrors != 3 {
		t.Errorf("stats %+v", h.srv.Stats())
	}
}

func TestWriteStats(t *testing.T) {
	h := newHarness(t, Options{})
	c := h.primary()
	_ = h.write(c, 0, ins(h.fib64(1, 1)), ins(h.fib64(1, 1)))
	st := h.srv.Stats()
	if st.Writes != 1 || st.Updates != 1 || st.UpdateErrors != 1 {
		t.Errorf("stats %+v", st)
	}
	_, _ = h.client.Write(context.Background(), &p4v1.WriteRequest{DeviceId: testDevice, ElectionId: c.eid})
	if st := h.srv.Stats(); st.Writes != 2 {
		t.Errorf("empty write not counted: %+v", st)
	}
}
