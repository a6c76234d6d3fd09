package p4rt_test

// Conformance of the client, the P4Runtime server and the software switch
// together, over real gRPC on loopback: what the controller agent relies on.

import (
	"bytes"
	"context"
	"testing"
	"time"

	p4v1 "github.com/p4lang/p4runtime/go/p4/v1"
	"google.golang.org/grpc/codes"

	"github.com/dmsc-mesh/dmsc/internal/switchtest"
	"github.com/dmsc-mesh/dmsc/p4"
	"github.com/dmsc-mesh/dmsc/p4rt"
	"github.com/dmsc-mesh/dmsc/p4rt/p4info"
	"github.com/dmsc-mesh/dmsc/wire"
)

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func schema(t *testing.T) *p4info.Schema {
	s, err := p4.Schema()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func waitRole(t *testing.T, c *p4rt.Client, want p4rt.RoleState) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for c.Role() != want {
		if time.Now().After(deadline) {
			t.Fatalf("role is %v, want %v", c.Role(), want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// must returns v, failing the test that calls the result if err is set:
// must(f())(t).
func must[T any](v T, err error) func(*testing.T) T {
	return func(t *testing.T) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

func TestArbitration(t *testing.T) {
	ts := switchtest.Start(t, 1)
	ctx := ctxT(t)
	low := switchtest.Dial(t, ts.Addr, 10)
	if err := low.WaitPrimary(ctx); err != nil {
		t.Fatal(err)
	}
	if err := low.SetPipeline(ctx, schema(t).P4Info(), nil, 1); err != nil {
		t.Fatal(err)
	}
	high := switchtest.Dial(t, ts.Addr, 20)
	if err := high.WaitPrimary(ctx); err != nil {
		t.Fatal(err)
	}
	waitRole(t, low, p4rt.Backup)

	// The backup may read but not write.
	entry := must(p4rt.NewTableEntry(schema(t), p4.TablePortRole).ExactUint(p4.FieldPort, 1).
		Action(p4.ActionSetPortRole, p4rt.Param(p4.ParamRole, p4.RoleFabric)).Build())(t)
	if err := low.Write(ctx, p4rt.Insert(entry)); !p4rt.IsCode(err, codes.PermissionDenied) {
		t.Fatalf("backup write: %v, want PERMISSION_DENIED", err)
	}
	if err := high.Write(ctx, p4rt.Insert(entry)); err != nil {
		t.Fatalf("primary write: %v", err)
	}
	if got := must(low.Read(ctx, p4rt.AllTableEntries()))(t); len(got) != 1 {
		t.Fatalf("backup read %d entries, want 1", len(got))
	}

	// The primary leaves: per P4Runtime 1.1+, nobody is primary until a
	// controller claims an election id at least as high as any seen.
	high.Close()
	time.Sleep(50 * time.Millisecond)
	if low.Role() == p4rt.Primary {
		t.Fatal("backup became primary without a higher election id")
	}
	again := switchtest.Dial(t, ts.Addr, 30)
	if err := again.WaitPrimary(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestWriteErrorsPerUpdate(t *testing.T) {
	ts := switchtest.Start(t, 2)
	c := switchtest.Primary(t, ts)
	ctx := ctxT(t)
	s := schema(t)
	cart := wire.KeyOf(wire.MustParseName("/shop/cart"))

	member := must(p4rt.NewMember(s, p4.ProfileNexthop, 1, p4.ActionSetNexthop, p4rt.Param(p4.ParamPort, 2), p4rt.Param(p4.ParamDmac, 0x020000000002)))(t)
	group := must(p4rt.NewGroup(s, p4.ProfileNexthop, 1, 0).Add(1, 1).Build())(t)
	nh := must(p4rt.NewTableEntry(s, p4.TableNexthop).ExactUint(p4.FieldGroupID, 1).Group(1).Build())(t)
	route := must(p4rt.NewTableEntry(s, p4.TableFIB64).Exact(p4.FieldDstKey, cart[:8]).
		Action(p4.ActionSetNexthopGroup, p4rt.Param(p4.ParamGroupID, 1)).Build())(t)
	// Members, groups, group entries and routes in one batch, in order.
	if err := c.Write(ctx, p4rt.Insert(member), p4rt.Insert(group), p4rt.Insert(nh), p4rt.Insert(route)); err != nil {
		t.Fatal(err)
	}

	other := wire.KeyOf(wire.MustParseName("/shop/other"))
	route2 := must(p4rt.NewTableEntry(s, p4.TableFIB64).Exact(p4.FieldDstKey, other[:8]).Action(p4.ActionDrop).Build())(t)
	missing := must(p4rt.NewTableEntry(s, p4.TableFIB32).Exact(p4.FieldDstKey, other[:4]).Action(p4.ActionDrop).Build())(t)
	bad := &p4v1.TableEntry{TableId: route.TableId} // no match field
	err := c.Write(ctx, p4rt.Insert(route), p4rt.Insert(route2), p4rt.Delete(missing), p4rt.Insert(bad), p4rt.Delete(member))
	var we *p4rt.WriteError
	if !asWriteError(err, &we) {
		t.Fatalf("want a WriteError, got %v", err)
	}
	for i, want := range []codes.Code{codes.AlreadyExists, codes.OK, codes.NotFound, codes.InvalidArgument, codes.FailedPrecondition} {
		if got := we.Code(i); got != want {
			t.Errorf("update %d: %v, want %v (%v)", i, got, want, err)
		}
	}
	// The update that succeeded in the failed batch is installed.
	if got := must(c.Read(ctx, p4rt.TableEntries(route.TableId)))(t); len(got) != 2 {
		t.Errorf("fib_64 has %d entries, want 2", len(got))
	}
	// Rollback: nothing of a failing batch applies.
	route3 := must(p4rt.NewTableEntry(s, p4.TableFIB96).Exact(p4.FieldDstKey, other[:12]).Action(p4.ActionDrop).Build())(t)
	if err := c.WriteAtomic(ctx, p4rt.RollbackOnError, p4rt.Insert(route3), p4rt.Insert(route)); err == nil {
		t.Fatal("rollback batch with a duplicate succeeded")
	}
	if got := must(c.Read(ctx, p4rt.TableEntries(route3.TableId)))(t); len(got) != 0 {
		t.Errorf("rolled-back entry is installed")
	}
}

func asWriteError(err error, we **p4rt.WriteError) bool {
	e, ok := err.(*p4rt.WriteError)
	*we = e
	return ok
}

func TestBuilderErrorsNameTheCulprit(t *testing.T) {
	s := schema(t)
	tests := []struct {
		name string
		b    func() error
		want string
	}{
		{"unknown table", func() error { _, err := p4rt.NewTableEntry(s, "fib_7").Build(); return err }, `"fib_7"`},
		{"unknown field", func() error {
			_, err := p4rt.NewTableEntry(s, p4.TableFIB64).ExactUint("dst", 1).Build()
			return err
		}, `"dst"`},
		{"too wide", func() error {
			_, err := p4rt.NewTableEntry(s, p4.TablePortRole).ExactUint(p4.FieldPort, 512).Build()
			return err
		}, "does not fit in 9 bits"},
		{"action not in table", func() error {
			_, err := p4rt.NewTableEntry(s, p4.TablePortRole).ExactUint(p4.FieldPort, 1).Action(p4.ActionDrop).Build()
			return err
		}, "has no action"},
		{"missing param", func() error {
			_, err := p4rt.NewTableEntry(s, p4.TableFIB32).ExactUint(p4.FieldDstKey, 1).Action(p4.ActionSetNexthopGroup).Build()
			return err
		}, "parameter group_id missing"},
		{"direct action on selector table", func() error {
			_, err := p4rt.NewTableEntry(s, p4.TableNexthop).ExactUint(p4.FieldGroupID, 1).Action(p4.ActionSetNexthop, p4rt.Param("port", 1), p4rt.Param("dmac", 1)).Build()
			return err
		}, "use Member or Group"},
		{"member with a foreign action", func() error {
			_, err := p4rt.NewMember(s, p4.ProfileNexthop, 1, p4.ActionDeliverInstance, p4rt.Param("port", 1), p4rt.Param("instance", 1), p4rt.Param("dmac", 1))
			return err
		}, "has no action"},
		{"zero weight", func() error { _, err := p4rt.NewGroup(s, p4.ProfileNexthop, 1, 0).Add(1, 0).Build(); return err }, "weight 0"},
	}
	for _, tt := range tests {
		err := tt.b()
		if err == nil || !bytes.Contains([]byte(err.Error()), []byte(tt.want)) {
			t.Errorf("%s: %v, want an error containing %s", tt.name, err, tt.want)
		}
	}
}

// programRoute installs: port 1 fabric, port 2 fabric, /shop/cart via port 2.
func programRoute(t *testing.T, c *p4rt.Client, key wire.Key) *p4v1.TableEntry {
	t.Helper()
	s := schema(t)
	var ups []*p4v1.Update
	for _, port := range []uint64{1, 2} {
		e := must(p4rt.NewTableEntry(s, p4.TablePortRole).ExactUint(p4.FieldPort, port).
			Action(p4.ActionSetPortRole, p4rt.Param(p4.ParamRole, p4.RoleFabric)).Build())(t)
		ups = append(ups, p4rt.Insert(e))
	}
	member := must(p4rt.NewMember(s, p4.ProfileNexthop, 7, p4.ActionSetNexthop, p4rt.Param(p4.ParamPort, 2), p4rt.Param(p4.ParamDmac, 0x02aabbccddee)))(t)
	group := must(p4rt.NewGroup(s, p4.ProfileNexthop, 7, 0).Add(7, 1).Build())(t)
	nh := must(p4rt.NewTableEntry(s, p4.TableNexthop).ExactUint(p4.FieldGroupID, 7).Group(7).Build())(t)
	route := must(p4rt.NewTableEntry(s, p4.TableFIB64).Exact(p4.FieldDstKey, key[:8]).
		Action(p4.ActionSetNexthopGroup, p4rt.Param(p4.ParamGroupID, 7)).Build())(t)
	ups = append(ups, p4rt.Insert(member), p4rt.Insert(group), p4rt.Insert(nh), p4rt.Insert(route))
	if err := c.Write(ctxT(t), ups...); err != nil {
		t.Fatal(err)
	}
	return route
}

func dataFrame(dst wire.Key, hop uint8, payload []byte) []byte {
	return wire.AppendFrame(nil, wire.Ethernet{Dst: [6]byte{2}, Src: [6]byte{2, 0, 0, 0, 0, 9}},
		wire.Header{Type: wire.TypeData, HopLimit: hop, FlowLabel: 42, Dst: dst, Src: wire.KeyOf(wire.MustParseName("/shop/web")).WithInstance(1)}, nil, payload)
}

func TestForwardingAndCounters(t *testing.T) {
	ts := switchtest.Start(t, 2)
	c := switchtest.Primary(t, ts)
	ctx := ctxT(t)
	cart := wire.KeyOf(wire.MustParseName("/shop/cart")).WithInstance(3)
	route := programRoute(t, c, cart)

	in := dataFrame(cart, 5, []byte("to the cart"))
	if err := ts.Links[1].Send(in); err != nil {
		t.Fatal(err)
	}
	out, err := ts.Links[2].Recv(2 * time.Second)
	if err != nil {
		t.Fatalf("nothing on port 2: %v", err)
	}
	var f wire.Frame
	if r := wire.ParseFrame(out, &f); r != wire.DropNone {
		t.Fatalf("output frame: %v", r)
	}
	if f.Hdr.HopLimit != 4 || f.Eth.Dst != [6]byte{2, 0xaa, 0xbb, 0xcc, 0xdd, 0xee} || string(f.Payload) != "to the cart" || f.Hdr.Dst != cart {
		t.Errorf("forwarded frame %+v", f)
	}
	// A frame with no route is dropped and counted.
	ts.Links[1].Send(dataFrame(wire.KeyOf(wire.MustParseName("/nowhere")), 5, nil))
	// A frame whose hop limit is spent is dropped and counted.
	ts.Links[1].Send(dataFrame(cart, 0, nil))
	if f, err := ts.Links[2].Recv(100 * time.Millisecond); err == nil {
		t.Fatalf("unexpected frame on port 2: %x", f)
	}

	dc, err := c.ReadDirectCounter(ctx, route)
	if err != nil || dc.Packets != 1 || dc.Bytes != int64(len(in)) {
		t.Errorf("route counter %+v, %v; want 1 packet of %d bytes", dc, err, len(in))
	}
	drops := must(c.ReadCounter(ctx, p4.CounterDrop, -1))(t)
	if drops[int64(wire.DropNoRoute)].Packets != 1 || drops[int64(wire.DropHopLimit)].Packets != 1 {
		t.Errorf("drop counters %v", drops)
	}
	rx := must(c.ReadCounter(ctx, p4.CounterPortRx, 1))(t)
	tx := must(c.ReadCounter(ctx, p4.CounterPortTx, 2))(t)
	if rx[1].Packets != 3 || tx[2].Packets != 1 {
		t.Errorf("port counters rx %v tx %v", rx, tx)
	}
	cells := must(c.ReadCounterCells(ctx, p4.CounterPortRx, 1, 2, 7))(t)
	if len(cells) != 3 || cells[1].Packets != 3 || cells[2].Packets != 0 || cells[7].Packets != 0 {
		t.Errorf("port_rx cells 1, 2, 7: %v", cells)
	}
}

func TestPacketInAndOut(t *testing.T) {
	ts := switchtest.Start(t, 2)
	c := switchtest.Primary(t, ts)
	ctx := ctxT(t)

	body, _ := wire.AppendControl(nil, wire.SignalLinkState, wire.LSHello, []byte("hello"))
	hello := wire.AppendFrame(nil, wire.Ethernet{}, wire.Header{Type: wire.TypeControl, NextProto: wire.ProtoControl, HopLimit: 1}, nil, body)
	ts.Links[2].Send(hello)
	select {
	case pin := <-c.PacketIns():
		if pin.Meta[p4.MetaIngress] != 2 || pin.Meta[p4.MetaReason] != uint64(wire.PuntControl) || !bytes.Equal(pin.Payload, hello) {
			t.Errorf("packet-in %+v", pin)
		}
	case <-ctx.Done():
		t.Fatal("no packet-in")
	}

	if err := c.PacketOut(ctx, hello, map[string]uint64{p4.MetaEgressPort: 1, p4.MetaMode: p4.OutDirect}); err != nil {
		t.Fatal(err)
	}
	out, err := ts.Links[1].Recv(2 * time.Second)
	if err != nil || !bytes.Equal(out, hello) {
		t.Fatalf("packet-out on port 1: %x, %v", out, err)
	}
	if err := c.PacketOut(ctx, hello, map[string]uint64{"egress": 1}); err == nil {
		t.Error("packet-out with an unknown metadata name accepted")
	}
}

func TestReadBackAndPipelineReplacement(t *testing.T) {
	ts := switchtest.Start(t, 2)
	c := switchtest.Primary(t, ts)
	ctx := ctxT(t)
	route := programRoute(t, c, wire.KeyOf(wire.MustParseName("/shop/cart")))

	all := must(c.Read(ctx, p4rt.AllTableEntries()))(t)
	if len(all) != 4 { // two port roles, one nexthop entry, one route
		t.Fatalf("read %d entries, want 4", len(all))
	}
	fib := must(c.Read(ctx, p4rt.TableEntries(route.TableId)))(t)
	if len(fib) != 1 || !bytes.Equal(fib[0].GetTableEntry().Match[0].GetExact().Value, route.Match[0].GetExact().Value) {
		t.Fatalf("fib_64 read back %v", fib)
	}
	if got := must(c.Read(ctx, p4rt.Members(0), p4rt.Groups(0)))(t); len(got) != 2 {
		t.Errorf("members and groups: %d, want 2", len(got))
	}

	// Same pipeline and cookie: VerifyOrPush keeps the state (warm restart).
	kept, err := c.VerifyOrPush(ctx, schema(t).P4Info(), nil, 1)
	if err != nil || !kept {
		t.Fatalf("VerifyOrPush same cookie: kept=%v err=%v", kept, err)
	}
	if got := must(c.Read(ctx, p4rt.AllTableEntries()))(t); len(got) != 4 {
		t.Errorf("state lost on verify: %d entries", len(got))
	}
	// A new cookie replaces the pipeline and clears the tables.
	kept, err = c.VerifyOrPush(ctx, schema(t).P4Info(), nil, 2)
	if err != nil || kept {
		t.Fatalf("VerifyOrPush new cookie: kept=%v err=%v", kept, err)
	}
	if got := must(c.Read(ctx, p4rt.AllTableEntries()))(t); len(got) != 0 {
		t.Errorf("%d entries survive a pipeline replacement", len(got))
	}
}

func TestReconnectAfterServerRestart(t *testing.T) {
	ts := switchtest.Start(t, 1)
	c := switchtest.Primary(t, ts)
	changes := c.RoleChanges()
	ts.Stop()
	waitRole(t, c, p4rt.Disconnected)
	select {
	case r := <-changes:
		if r == p4rt.Primary {
			// the initial Primary may still be queued; the next must not be
			r = <-changes
		}
		if r != p4rt.Disconnected {
			t.Errorf("role change %v, want disconnected", r)
		}
	case <-time.After(2 * time.Second):
		t.Error("no role change reported")
	}
	if !ts.Restart() {
		t.Skipf("address %s not reusable", ts.Addr)
	}
	if err := c.WaitPrimary(ctxT(t)); err != nil {
		t.Fatal(err)
	}
}
