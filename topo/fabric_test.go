package topo_test

import (
	"context"
	"testing"
	"time"

	"github.com/dmsc-mesh/dmsc/controller/fib"
	"github.com/dmsc-mesh/dmsc/internal/switchtest"
	"github.com/dmsc-mesh/dmsc/spf"
	"github.com/dmsc-mesh/dmsc/topo"
	"github.com/dmsc-mesh/dmsc/wire"
)

// program makes node forward prefix out of port, with every port in ports
// a fabric port.
func program(t *testing.T, ctx context.Context, f *topo.Fabric, node string, ports []uint16, pfx spf.Prefix, out uint16) {
	t.Helper()
	c := switchtest.PrimaryAt(t, f.Switches[node].Addr)
	s := c.Schema()
	switchtest.FabricPorts(t, c, ports...)
	prog := fib.New(s)
	plan, err := prog.Plan(fib.Routes{pfx: {Kind: fib.Forward, Hops: []fib.Hop{{Port: out}}}})
	if err != nil {
		t.Fatal(err)
	}
	for _, ph := range plan.Phases {
		if err := c.Write(ctx, ph...); err != nil {
			t.Fatal(err)
		}
	}
}

// TestFigure2StaticPath runs the Figure 2 fabric, programs a path
// sg1 → sr1 → sr2 → sg3 by hand, sends a frame along it, then cuts sr1–sr2.
func TestFigure2StaticPath(t *testing.T) {
	top, err := topo.Load("../examples/fig2.yaml")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	f, err := topo.Start(ctx, top, topo.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	src, err := f.AttachPod("sg1", 10)
	if err != nil {
		t.Fatal(err)
	}
	dst, err := f.AttachPod("sg3", 10)
	if err != nil {
		t.Fatal(err)
	}
	cart := wire.KeyOf(wire.MustParseName("/shop/cart"))
	pfx := spf.Prefix{Key: cart, Len: 64}
	program(t, ctx, f, "sg1", []uint16{1, 10}, pfx, 1)
	program(t, ctx, f, "sr1", []uint16{1, 2, 3, 4}, pfx, 3)
	program(t, ctx, f, "sr2", []uint16{1, 2, 3, 4}, pfx, 2)
	program(t, ctx, f, "sg3", []uint16{1, 2}, pfx, 10)

	frame := wire.AppendFrame(nil, wire.Ethernet{}, wire.Header{Type: wire.TypeData, HopLimit: 8, Dst: cart,
		Src: wire.KeyOf(wire.MustParseName("/shop/web")).WithInstance(1)}, nil, []byte("order 42"))
	if err := src.Send(frame); err != nil {
		t.Fatal(err)
	}
	got, err := dst.Recv(2 * time.Second)
	if err != nil {
		t.Fatalf("frame did not cross sg1→sr1→sr2→sg3: %v", err)
	}
	var fr wire.Frame
	if r := wire.ParseFrame(got, &fr); r != wire.DropNone || string(fr.Payload) != "order 42" || fr.Hdr.HopLimit != 4 {
		t.Fatalf("received %v %+v", r, fr.Hdr)
	}

	link, ok := f.Link("sr1", "sr2")
	if !ok {
		t.Fatal("no sr1–sr2 link")
	}
	if err := f.Cut(link); err != nil {
		t.Fatal(err)
	}
	src.Send(frame)
	if got, err := dst.Recv(200 * time.Millisecond); err == nil {
		t.Fatalf("frame crossed a cut link: %x", got)
	}
	if n, _ := f.Switches["sr1"].SW.DropCount(wire.DropPortDown); n != 1 {
		t.Errorf("sr1 counted %d port_down drops, want 1", n)
	}
	if err := f.Restore(link); err != nil {
		t.Fatal(err)
	}
	src.Send(frame)
	if _, err := dst.Recv(2 * time.Second); err != nil {
		t.Fatalf("no frame after the link came back: %v", err)
	}
}
