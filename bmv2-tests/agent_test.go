package bmv2tests

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"testing"
	"time"

	p4v1 "github.com/p4lang/p4runtime/go/p4/v1"

	"github.com/dmsc-mesh/dmsc/controller"
	"github.com/dmsc-mesh/dmsc/controller/fib"
	"github.com/dmsc-mesh/dmsc/controller/lsmsg"
	"github.com/dmsc-mesh/dmsc/p4"
	"github.com/dmsc-mesh/dmsc/p4rt/p4info"
	"github.com/dmsc-mesh/dmsc/spf"
	"github.com/dmsc-mesh/dmsc/topo"
	"github.com/dmsc-mesh/dmsc/wire"
)

// bmv2Timers are the agents' timers on BMv2: every HELLO crosses gRPC
// twice, and a race-enabled run on two busy cores is slow; a dead neighbour
// is still noticed within half a second.
func bmv2Timers() controller.Timers {
	t := controller.DefaultTimers()
	t.Hello = 50 * time.Millisecond
	t.Dead = 500 * time.Millisecond
	return t
}

// runAgent runs an agent until the test ends.
func runAgent(t testing.TB, cfg controller.Config) *controller.Agent {
	t.Helper()
	a, err := controller.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("agent %s: %v", cfg.NodeID, err)
			}
		case <-time.After(15 * time.Second):
			t.Errorf("agent %s did not stop", cfg.NodeID)
		}
	})
	return a
}

// TestAgentDrivesBMv2: the project's agent, configured as for any switch
// but with BMv2's JSON as device config, pushes the pipeline to an
// unmodified simple_switch_grpc, programs it, and talks through it. The
// test checks the pipeline read back, the port roles and FIB read back over
// P4Runtime against the agent's own view, a HELLO leaving every fabric port
// as the agent built it, and a frame to the node's key punted to the agent,
// counted by the FIB entry's direct counter.
func TestAgentDrivesBMv2(t *testing.T) {
	tools := Require(t, Needs{Switch: true})
	n := NewNet(t)
	ns := n.Namespace()
	taps := map[uint16]*Tap{}
	bind := map[uint16]string{}
	for _, p := range []uint16{1, 2} {
		bind[p] = fmt.Sprintf("p%d", p)
		taps[p] = OpenTap(t, n.VethToRoot(ns, bind[p]))
	}
	b := StartBMv2(t, tools.Switch, "sr", ns, bind)
	key := topo.NodeKey("dut")
	a := runAgent(t, controller.Config{
		NodeID: "dut", Role: controller.RoleSR, Switch: b.Addr, DeviceID: DeviceID,
		Pipeline: controller.Pipeline{DeviceConfig: BMv2JSON(t)},
		Ports:    []controller.Port{{Num: 1, Kind: controller.PortFabric}, {Num: 2, Kind: controller.PortFabric}},
		Key:      key,
		TrustedKeys: func(id spf.NodeID) (ed25519.PublicKey, bool) {
			return key.Public().(ed25519.PublicKey), id == "dut"
		},
		Timers: bmv2Timers(),
		Probe:  controller.ProbeConfig{Interval: -1},
	})
	r := newReader(t, "sr", b.Addr)
	ctx := context.Background()

	// The FIB the agent wants is on the switch: the node key to the CPU.
	var snap controller.Snapshot
	eventually(t, 15*time.Second, "the agent's FIB on BMv2", func() error {
		var err error
		if snap, err = a.Snapshot(ctx); err != nil {
			return err
		}
		if !snap.Converged() || len(snap.FIB) == 0 {
			return fmt.Errorf("converged %v, %d routes", snap.Converged(), len(snap.FIB))
		}
		got, err := r.fib(ctx)
		if err != nil {
			return err
		}
		if d := diffRoutesText(snap.FIB, got); len(d) > 0 {
			return fmt.Errorf("FIB read back differs: %v", d)
		}
		return nil
	})
	nodePfx := prefixOf(a.NodeKey(), a.NodeKey().PrefixLen())
	if rt, ok := snap.FIB[nodePfx]; !ok || rt.Kind != fib.ToCPU {
		t.Errorf("the node key %v routes %v, want to_cpu", nodePfx, snap.FIB[nodePfx])
	}

	// The pipeline BMv2 runs is the committed P4Info, with the agent's cookie.
	cfg, err := r.rpc.GetForwardingPipelineConfig(ctx, &p4v1.GetForwardingPipelineConfigRequest{
		DeviceId: DeviceID, ResponseType: p4v1.GetForwardingPipelineConfigRequest_P4INFO_AND_COOKIE})
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.GetConfig().GetP4Info(); got == nil || len(got.GetTables()) != len(r.s.P4Info().GetTables()) || cfg.GetConfig().GetCookie().GetCookie() == 0 {
		t.Errorf("BMv2 runs P4Info with %d tables, cookie %d", len(got.GetTables()), cfg.GetConfig().GetCookie().GetCookie())
	}

	// Port roles, as configured.
	roles, err := r.entries(ctx, p4.TablePortRole)
	if err != nil {
		t.Fatal(err)
	}
	if len(roles) != 2 {
		t.Errorf("port_role holds %d entries, want 2", len(roles))
	}
	for _, e := range roles {
		port, _ := p4info.ToUint(e.Match[0].GetExact().Value)
		role, _ := p4info.ToUint(e.GetAction().GetAction().GetParams()[0].GetValue())
		if (port != 1 && port != 2) || role != p4.RoleFabric {
			t.Errorf("port_role: port %d role %d", port, role)
		}
	}

	// A HELLO leaves each fabric port, sent by packet-out through BMv2.
	for port, tap := range taps {
		var hello lsmsg.Hello
		ok := tap.WaitFor(5*time.Second, func(fs [][]byte) bool {
			for _, f := range fs {
				var fr wire.Frame
				if wire.ParseFrame(f, &fr) != wire.DropNone || fr.Hdr.Type != wire.TypeControl {
					continue
				}
				c, err := wire.DecodeControl(fr.Payload)
				if err != nil || c.Signal != wire.SignalLinkState || c.MsgType != wire.LSHello {
					continue
				}
				if h, err := lsmsg.DecodeHello(c.Body); err == nil {
					hello = h
					return fr.Hdr.Src == a.NodeKey() && fr.Eth.Src == h.MAC
				}
			}
			return false
		})
		if !ok {
			t.Fatalf("no HELLO of the agent left port %d", port)
		}
		if hello.Router != "dut" || hello.Port != uint32(port) || hello.HeardRouter != "" {
			t.Errorf("port %d: HELLO %+v", port, hello)
		}
	}

	// A DATA frame to the node key is punted to the agent (which has no use
	// for it and counts it), and the FIB entry's direct counter counts it.
	before := snap.Counters.Dropped["node_frame_unhandled"]
	const frames = 3
	for i := range frames {
		f := wire.AppendFrame(nil, wire.Ethernet{Dst: [6]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, Src: [6]byte{2, 0, 0, 0, 0, 9}},
			wire.Header{Type: wire.TypeData, HopLimit: 8, FlowLabel: uint32(i), Dst: a.NodeKey(), Src: nameKey("/test/sender").WithInstance(1)}, nil, []byte("to the agent"))
		if err := taps[1].Send(f); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, 5*time.Second, "the punted frames at the agent", func() error {
		s, err := a.Snapshot(ctx)
		if err != nil {
			return err
		}
		if got := s.Counters.Dropped["node_frame_unhandled"] - before; got != frames {
			return fmt.Errorf("%d of %d frames reached the agent", got, frames)
		}
		return nil
	})
	dc, err := r.directCounterOf(nodePfx)
	if err != nil {
		t.Fatal(err)
	}
	es, err := r.read(ctx, dc)
	if err != nil {
		t.Fatal(err)
	}
	if len(es) != 1 || es[0].GetDirectCounterEntry().GetData().GetPacketCount() != frames {
		t.Errorf("direct counter of the node route: %v, want %d packets", es, frames)
	}
	rx, err := r.counter(ctx, p4.CounterPortRx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if rx[1] < frames {
		t.Errorf("port_rx[1] = %d, want at least %d", rx[1], frames)
	}
}
