package bmv2tests

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"testing"
	"time"

	"google.golang.org/grpc"

	echopb "github.com/dmsc-mesh/dmsc/api/echo"
	"github.com/dmsc-mesh/dmsc/controller"
	"github.com/dmsc-mesh/dmsc/controller/fib"
	"github.com/dmsc-mesh/dmsc/examples"
	"github.com/dmsc-mesh/dmsc/examples/echo"
	"github.com/dmsc-mesh/dmsc/p4"
	"github.com/dmsc-mesh/dmsc/p4rt/p4info"
	"github.com/dmsc-mesh/dmsc/pod"
	"github.com/dmsc-mesh/dmsc/softswitch"
	"github.com/dmsc-mesh/dmsc/spf"
	"github.com/dmsc-mesh/dmsc/topo"
	"github.com/dmsc-mesh/dmsc/wire"
)

// fig2 is the draft's Figure 2 on BMv2: a switch per node, each in its own
// network namespace, the fabric's links as veth pairs between namespaces
// (fig2.yaml's delay and capacities do not apply: these are plain veths),
// an agent per switch in the test process, and SPA on loopback.
type fig2 struct {
	t       *testing.T
	topo    *topo.Topology
	net     *Net
	ns      map[string]string
	bmv2    map[string]*BMv2
	agents  map[string]*controller.Agent
	readers map[string]*reader
	domain  *topo.Domain
	// podIfs maps "node:port" to the root-side interface of a pod port.
	podIfs map[string]string
}

// fig2Pods are the pod ports the test attaches: a client at sg1, the echo
// service at sg4.
var fig2Pods = []topo.Endpoint{{Node: "sg1", Port: 10}, {Node: "sg4", Port: 10}}

func startFig2(t *testing.T, tools Tools) *fig2 {
	t.Helper()
	tp, err := topo.Parse(examples.Fig2)
	if err != nil {
		t.Fatal(err)
	}
	f := &fig2{t: t, topo: tp, net: NewNet(t), ns: map[string]string{}, bmv2: map[string]*BMv2{},
		agents: map[string]*controller.Agent{}, readers: map[string]*reader{}, podIfs: map[string]string{}}
	nodes := tp.NodeNames()
	bind := map[string]map[uint16]string{}
	for _, name := range nodes {
		f.ns[name] = f.net.Namespace()
		bind[name] = map[uint16]string{}
	}
	iface := func(port uint16) string { return "p" + strconv.Itoa(int(port)) }
	for _, l := range tp.Links {
		f.net.VethBetween(f.ns[l.A.Node], iface(l.A.Port), f.ns[l.B.Node], iface(l.B.Port))
		bind[l.A.Node][l.A.Port] = iface(l.A.Port)
		bind[l.B.Node][l.B.Port] = iface(l.B.Port)
	}
	for _, ep := range fig2Pods {
		f.podIfs[ep.String()] = f.net.VethToRoot(f.ns[ep.Node], iface(ep.Port))
		bind[ep.Node][ep.Port] = iface(ep.Port)
	}
	for _, name := range nodes {
		f.bmv2[name] = LaunchBMv2(t, tools.Switch, name, f.ns[name], bind[name])
	}
	for _, name := range nodes {
		f.bmv2[name].WaitReady(t)
		f.readers[name] = newReader(t, name, f.bmv2[name].Addr)
	}

	ctx := context.Background()
	roles := map[string]topo.Role{}
	for n, node := range tp.Nodes {
		roles[n] = node.Role
	}
	if f.domain, err = topo.StartDomain(ctx, t.TempDir(), "dmsc.example", roles, topo.DomainOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := f.domain.Close(); err != nil {
			t.Errorf("domain: %v", err)
		}
	})
	keys := map[spf.NodeID]ed25519.PublicKey{}
	for _, n := range nodes {
		keys[spf.NodeID(n)] = topo.NodeKey(n).Public().(ed25519.PublicKey)
	}
	json := BMv2JSON(t)
	for _, name := range nodes {
		node := tp.Nodes[name]
		cfg := controller.Config{
			NodeID: spf.NodeID(name), Role: controller.Role(node.Role),
			Switch: f.bmv2[name].Addr, DeviceID: DeviceID,
			Pipeline:    controller.Pipeline{DeviceConfig: json},
			Key:         topo.NodeKey(name),
			TrustedKeys: func(id spf.NodeID) (ed25519.PublicKey, bool) { k, ok := keys[id]; return k, ok },
			Timers:      bmv2Timers(),
			Probe:       controller.ProbeConfig{Interval: -1},
		}
		for _, l := range tp.Links {
			for _, ep := range []topo.Endpoint{l.A, l.B} {
				if ep.Node == name {
					cfg.Ports = append(cfg.Ports, controller.Port{Num: ep.Port, Kind: controller.PortFabric, Metric: l.Metric, Capacity: l.Capacity})
				}
			}
		}
		for _, p := range node.PodPorts {
			cfg.Ports = append(cfg.Ports, controller.Port{Num: p, Kind: controller.PortPod})
		}
		if node.Role == topo.RoleSG {
			if cfg.SG, err = f.domain.SGConfig(name); err != nil {
				t.Fatal(err)
			}
		}
		f.agents[name] = runAgent(t, cfg)
	}
	return f
}

// converged waits until every agent routes to every node, its FIB is on
// its switch, and what each switch holds, read back over P4Runtime, is the
// FIB its agent wants; cond, if set, must hold of the FIBs as well.
func (f *fig2) converged(timeout time.Duration, what string, cond func(fibs map[string]fib.Routes) error) {
	f.t.Helper()
	ctx := context.Background()
	defer func() {
		if f.t.Failed() {
			f.dump()
		}
	}()
	eventually(f.t, timeout, what, func() error {
		fibs := map[string]fib.Routes{}
		for _, n := range f.topo.NodeNames() {
			if !f.bmv2[n].Running() {
				f.bmv2[n].CheckAlive(f.t)
			}
			s, err := f.agents[n].Snapshot(ctx)
			if err != nil {
				return err
			}
			if len(s.Routes) < len(f.topo.Nodes) || !s.Converged() {
				return fmt.Errorf("%s: %d routes, converged %v (%v)", n, len(s.Routes), s.Converged(), s.FIBError)
			}
			got, err := f.readers[n].fib(ctx)
			if err != nil {
				return err
			}
			if d := diffRoutesText(s.FIB, got); len(d) > 0 {
				return fmt.Errorf("%s: FIB read back differs from the agent's: %v", n, d)
			}
			fibs[n] = got
		}
		if cond != nil {
			return cond(fibs)
		}
		return nil
	})
}

// dump logs every agent's neighbours and routes, for a failure.
func (f *fig2) dump() {
	for _, n := range f.topo.NodeNames() {
		s, err := f.agents[n].Snapshot(context.Background())
		if err != nil {
			f.t.Logf("%s: %v", n, err)
			continue
		}
		var nb []string
		for _, x := range s.Neighbors {
			nb = append(nb, fmt.Sprintf("%d:%v/%s", x.Port, x.State, x.Neighbor))
		}
		f.t.Logf("%s: neighbours %v; %d routes, %d LSDB fragments; hellos sent %d received %d; dropped %v",
			n, nb, len(s.Routes), len(s.LSDB), s.Counters.HellosSent, s.Counters.HellosReceived, s.Counters.Dropped)
	}
}

// pod attaches a pod for prefix on the root-side end of node:port, with a
// certificate from the domain, and announces it.
func (f *fig2) pod(ep topo.Endpoint, prefix string) (*pod.Endpoint, *pod.Registration) {
	f.t.Helper()
	is, err := f.domain.IssuePod(prefix)
	if err != nil {
		f.t.Fatal(err)
	}
	port, err := softswitch.NewPacketPort(f.podIfs[ep.String()])
	if err != nil {
		f.t.Fatal(err)
	}
	e, err := pod.NewEndpoint(pod.Config{Port: port, CA: f.domain.CA.Cert, Certificate: is.TLSCertificate(),
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		port.Close()
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() { e.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	reg, err := e.Announce(ctx, pod.AnnounceConfig{})
	if err != nil {
		f.t.Fatalf("pod %s at %s: %v", prefix, ep, err)
	}
	return e, reg
}

// portCounters reads port_rx and port_tx of one port of node's switch.
func (f *fig2) portCounters(node string, port uint16) (rx, tx int64) {
	f.t.Helper()
	ctx := context.Background()
	r, err := f.readers[node].counter(ctx, p4.CounterPortRx, int64(port))
	if err != nil {
		f.t.Fatal(err)
	}
	x, err := f.readers[node].counter(ctx, p4.CounterPortTx, int64(port))
	if err != nil {
		f.t.Fatal(err)
	}
	return r[int64(port)], x[int64(port)]
}

// TestFig2OnBMv2 runs the draft's Figure 2 on seven BMv2 switches driven by
// seven agents: the fabric converges (every switch's FIB read back equals
// its agent's), an echo pod registers at sg4 (its src_guard and delivery
// entries and every switch's route to /echo read back), a pod at sg1 calls
// /echo by name over gRPC on QUIC through sg1–sr1–sr3–sg4 (the switches'
// port counters show the path), and after sr1–sr3 is cut the fabric
// reroutes through sr2 and the calls go on there.
func TestFig2OnBMv2(t *testing.T) {
	tools := Require(t, Needs{Switch: true})
	start := time.Now()
	f := startFig2(t, tools)
	f.converged(30*time.Second, "Figure 2 converged on BMv2", nil)
	t.Logf("7 BMv2 switches started and converged in %v", time.Since(start).Round(time.Millisecond))

	// Registration: the echo pod at sg4 port 10.
	srv, reg := f.pod(topo.Endpoint{Node: "sg4", Port: 10}, "/echo")
	inst, ok := srv.LocalKey()
	if !ok || inst.Instance() == 0 || reg == nil {
		t.Fatalf("the echo pod has no instance key (%v, %v)", inst, ok)
	}
	lis, err := pod.ListenGRPC(srv)
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	echopb.RegisterEchoServer(gs, &echo.Server{
		ServedBy: func() string { return inst.String() },
		Caller: func(ctx context.Context) string {
			id, _ := pod.PeerIdentity(ctx)
			return id.String()
		},
	})
	go gs.Serve(lis)
	t.Cleanup(gs.Stop)

	service := prefixOf(nameKey("/echo"), 32)
	instance := prefixOf(inst, 128)
	f.converged(15*time.Second, "/echo in every FIB", func(fibs map[string]fib.Routes) error {
		for n, rs := range fibs {
			r, ok := rs[service]
			if !ok {
				return fmt.Errorf("%s has no route for /echo", n)
			}
			if n == "sg4" {
				ri, ok := rs[instance]
				if r.Kind != fib.Local || !ok || ri.Kind != fib.Local || len(ri.Hops) != 1 || ri.Hops[0].Port != 10 || ri.Hops[0].Instance != inst.Instance() {
					return fmt.Errorf("sg4 delivers /echo by %v and its instance by %v", r, ri)
				}
			} else if r.Kind != fib.Forward {
				return fmt.Errorf("%s routes /echo by %v", n, r)
			}
		}
		return nil
	})
	guards, err := f.readers["sg4"].entries(context.Background(), p4.TableSrcGuard)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, g := range guards {
		port, _ := p4info.ToUint(g.Match[0].GetExact().Value)
		var key wire.Key
		v := g.Match[1].GetExact().Value
		copy(key[16-len(v):], v)
		found = found || (port == 10 && key == inst)
	}
	if !found {
		t.Errorf("sg4's src_guard does not hold (10, %v): %d entries", inst, len(guards))
	}

	// A call by name from sg1.
	cl, _ := f.pod(topo.Endpoint{Node: "sg1", Port: 10}, "/shop/frontend")
	var cc *grpc.ClientConn
	eventually(t, 15*time.Second, "dialing /echo from sg1", func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		var err error
		cc, err = pod.DialGRPC(ctx, cl, "/echo")
		return err
	})
	t.Cleanup(func() { cc.Close() })
	c := echopb.NewEchoClient(cc)
	// sr2 → sr3 carries HELLOs, LSPs and the SGs' probes all the time: its
	// rate while nothing else runs is the background the calls are
	// compared with.
	_, bg0 := f.portCounters("sr2", 4)
	bgStart := time.Now()
	time.Sleep(time.Second)
	_, bg1 := f.portCounters("sr2", 4)
	background := float64(bg1-bg0) / time.Since(bgStart).Seconds()
	_, sr1To3Before := f.portCounters("sr1", 4)
	_, sr2To3Before := f.portCounters("sr2", 4)
	callsStart := time.Now()
	const calls = 20
	call := func(phase string) {
		t.Helper()
		for i := range calls {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			msg := fmt.Sprintf("%s %d", phase, i)
			r, err := c.Echo(ctx, &echopb.EchoRequest{Message: msg})
			cancel()
			if err != nil {
				t.Fatalf("%s: call %d: %v", phase, i, err)
			}
			if r.GetMessage() != msg || r.GetServedBy() != inst.String() || r.GetCaller() != "dmsc://dmsc.example/shop/frontend" {
				t.Fatalf("%s: call %d answered %+v", phase, i, r)
			}
		}
	}
	call("before the cut")
	_, sr1To3 := f.portCounters("sr1", 4)
	_, sr2To3 := f.portCounters("sr2", 4)
	if sr1To3-sr1To3Before < calls {
		t.Errorf("sr1 → sr3 carried %d frames for %d calls: the calls did not take sg1–sr1–sr3–sg4", sr1To3-sr1To3Before, calls)
	}
	expected := background * time.Since(callsStart).Seconds()
	if extra := float64(sr2To3-sr2To3Before) - 1.5*expected; extra > calls/2 {
		t.Errorf("sr2 → sr3 carried %d frames during the calls while sr1–sr3 was up (%.0f expected from its background of %.0f frames/s)",
			sr2To3-sr2To3Before, expected, background)
	}

	// The cut: sr1–sr3 stops carrying frames both ways, its carrier up
	// (README.md, "An interface going down stops BMv2"). BMv2 does not
	// notice; the agents do, by HELLO.
	cut := time.Now()
	f.net.Blackhole(f.ns["sr1"], "p4", true)
	f.net.Blackhole(f.ns["sr3"], "p4", true)
	f.converged(15*time.Second, "rerouting around sr1–sr3", func(fibs map[string]fib.Routes) error {
		r := fibs["sr1"][service]
		if len(r.Hops) != 1 || r.Hops[0].Port != 3 {
			return fmt.Errorf("sr1 routes /echo by %v, want port 3 (to sr2) only", r)
		}
		for _, n := range []string{"sr1", "sr3"} {
			s, err := f.agents[n].Snapshot(context.Background())
			if err != nil {
				return err
			}
			if up := s.UpNeighbors(); slices.Contains(up, spf.NodeID(map[string]string{"sr1": "sr3", "sr3": "sr1"}[n])) {
				return fmt.Errorf("%s still has neighbours %v", n, up)
			}
		}
		return nil
	})
	t.Logf("sr1–sr3 cut: rerouted on every switch in %v", time.Since(cut).Round(time.Millisecond))
	_, sr2To3Before = f.portCounters("sr2", 4)
	call("after the cut")
	_, sr2To3 = f.portCounters("sr2", 4)
	if sr2To3-sr2To3Before < calls {
		t.Errorf("sr2 → sr3 carried %d frames for %d calls after the cut: the calls did not go around", sr2To3-sr2To3Before, calls)
	}
	for n, b := range f.bmv2 {
		if !b.Running() {
			t.Errorf("BMv2 %s died", n)
		}
	}
}
