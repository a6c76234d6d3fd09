// Package switchtest starts software switches behind real P4Runtime servers
// on loopback, for tests of anything that programs a switch.
package switchtest

import (
	"context"
	"net"
	"testing"
	"time"

	p4v1 "github.com/p4lang/p4runtime/go/p4/v1"
	"google.golang.org/grpc"

	"github.com/dmsc-mesh/dmsc/p4"
	"github.com/dmsc-mesh/dmsc/p4rt"
	"github.com/dmsc-mesh/dmsc/p4rt/server"
	"github.com/dmsc-mesh/dmsc/softswitch"
)

// DeviceID is the P4Runtime device id of every test switch.
const DeviceID = 1

// Switch is a software switch with in-memory ports 1..n behind a P4Runtime
// server on 127.0.0.1.
type Switch struct {
	SW    *softswitch.Switch
	Addr  string
	Links map[uint16]*softswitch.MemPort // the far end of each port
	stop  func()
}

// Start starts a switch with ports in-memory ports; the test's cleanup stops it.
func Start(t testing.TB, ports int) *Switch {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ts := &Switch{SW: softswitch.New(softswitch.Config{}), Addr: lis.Addr().String(), Links: map[uint16]*softswitch.MemPort{}}
	for i := 1; i <= ports; i++ {
		a, b := softswitch.NewMemPair()
		if err := ts.SW.AddPort(uint16(i), a); err != nil {
			t.Fatal(err)
		}
		ts.Links[uint16(i)] = b
	}
	ts.stop = ts.serve(lis)
	t.Cleanup(func() { ts.Stop(); ts.SW.Close() })
	return ts
}

// Stop stops the P4Runtime server and the switch's forwarding (a crash, as
// the controller sees it).
func (ts *Switch) Stop() { ts.stop() }

// Restart serves again on the same address after Stop; it reports false if
// the address could not be reused.
func (ts *Switch) Restart() bool {
	lis, err := net.Listen("tcp", ts.Addr)
	if err != nil {
		return false
	}
	ts.stop = ts.serve(lis)
	return true
}

func (ts *Switch) serve(lis net.Listener) func() {
	ctx, cancel := context.WithCancel(context.Background())
	srv := server.New(ts.SW, server.Options{DeviceID: DeviceID})
	gs := grpc.NewServer()
	srv.Register(gs)
	runDone := make(chan struct{})
	go func() { ts.SW.Run(ctx); close(runDone) }()
	go gs.Serve(lis)
	stopped := false
	return func() {
		if stopped {
			return
		}
		stopped = true
		srv.Close()
		gs.Stop()
		cancel()
		<-runDone
	}
}

// Dial connects a client with an election id; the test's cleanup closes it.
func Dial(t testing.TB, addr string, election uint64) *p4rt.Client {
	t.Helper()
	c, err := p4rt.Dial(context.Background(), addr, p4rt.Options{
		DeviceID:   DeviceID,
		ElectionID: p4rt.ElectionID{Low: election},
		Backoff:    p4rt.Backoff{Initial: 20 * time.Millisecond, Max: 200 * time.Millisecond},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// Primary dials ts as primary and pushes the DMSC pipeline.
func Primary(t testing.TB, ts *Switch) *p4rt.Client {
	t.Helper()
	return PrimaryAt(t, ts.Addr)
}

// PrimaryAt dials the P4Runtime server at addr as primary and pushes the
// DMSC pipeline.
func PrimaryAt(t testing.TB, addr string) *p4rt.Client {
	t.Helper()
	c := Dial(t, addr, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.WaitPrimary(ctx); err != nil {
		t.Fatal(err)
	}
	s, err := p4.Schema()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.SetPipeline(ctx, s.P4Info(), nil, 1); err != nil {
		t.Fatal(err)
	}
	return c
}

// FabricPorts gives ports the FABRIC role on the switch c programs.
func FabricPorts(t testing.TB, c *p4rt.Client, ports ...uint16) {
	t.Helper()
	var ups []*p4v1.Update
	for _, port := range ports {
		e, err := p4rt.NewTableEntry(c.Schema(), p4.TablePortRole).ExactUint(p4.FieldPort, uint64(port)).
			Action(p4.ActionSetPortRole, p4rt.Param(p4.ParamRole, p4.RoleFabric)).Build()
		if err != nil {
			t.Fatal(err)
		}
		ups = append(ups, p4rt.Insert(e))
	}
	if err := c.Write(context.Background(), ups...); err != nil {
		t.Fatal(err)
	}
}
