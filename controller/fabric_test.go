package controller_test

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dmsc-mesh/dmsc/controller"
	"github.com/dmsc-mesh/dmsc/controller/fib"
	"github.com/dmsc-mesh/dmsc/p4"
	"github.com/dmsc-mesh/dmsc/p4rt"
	"github.com/dmsc-mesh/dmsc/spf"
	"github.com/dmsc-mesh/dmsc/topo"
	"github.com/dmsc-mesh/dmsc/wire"
)

// testTimers are the defaults, but with HELLO and dead intervals loose
// enough for a race-enabled test on two busy cores.
func testTimers() controller.Timers {
	t := controller.DefaultTimers()
	t.Hello = 30 * time.Millisecond
	t.Dead = 300 * time.Millisecond
	t.Retransmit = 100 * time.Millisecond
	t.WarmHold = 2 * time.Second
	return t
}

func startFabric(t *testing.T, file string, opts topo.AgentOptions) *topo.Fabric {
	t.Helper()
	tp, err := topo.Load(file)
	if err != nil {
		t.Fatal(err)
	}
	return startTopology(t, tp, opts)
}

func startTopology(t *testing.T, tp *topo.Topology, opts topo.AgentOptions) *topo.Fabric {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	f, err := topo.Start(ctx, tp, topo.Options{})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := f.Close(); err != nil {
			t.Error(err)
		}
		cancel()
	})
	if opts.Timers == (controller.Timers{}) {
		opts.Timers = testTimers()
	}
	if opts.Logger == nil && os.Getenv("DMSC_TEST_LOG") != "" {
		// DMSC_TEST_LOG=debug (or info) shows the agents' logs.
		var level slog.Level
		level.UnmarshalText([]byte(os.Getenv("DMSC_TEST_LOG")))
		opts.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	}
	if err := f.StartAgents(ctx, opts); err != nil {
		t.Fatal(err)
	}
	return f
}

func fig2(t *testing.T) string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "examples", "fig2.yaml")
}

func snapshot(t *testing.T, f *topo.Fabric, node string) controller.Snapshot {
	t.Helper()
	a, ok := f.Agent(node)
	if !ok {
		t.Fatalf("no agent %s", node)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := a.Snapshot(ctx)
	if err != nil {
		t.Fatalf("%s: %v", node, err)
	}
	return s
}

// readFIB reads a switch's FIB over P4Runtime, as a second (backup)
// controller would, and decodes it.
func readFIB(t *testing.T, f *topo.Fabric, node string) fib.Routes {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := p4rt.Dial(ctx, f.Switches[node].Addr, p4rt.Options{DeviceID: 1, ElectionID: p4rt.ElectionID{Low: 0}, Role: ""})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s, _ := p4.Schema()
	es, err := c.Read(ctx, p4rt.AllTableEntries(), p4rt.Members(0), p4rt.Groups(0))
	if err != nil {
		t.Fatalf("%s: read: %v", node, err)
	}
	prog, err := fib.Recover(s, es)
	if err != nil {
		t.Fatalf("%s: %v", node, err)
	}
	return prog.Routes()
}

func normalize(r fib.Routes) fib.Routes {
	out := fib.Routes{}
	for p, rt := range r {
		hops := slices.Clone(rt.Hops)
		for i := range hops {
			hops[i].Weight = max(hops[i].Weight, 1)
		}
		slices.SortFunc(hops, func(a, b fib.Hop) int {
			return cmp.Or(cmp.Compare(a.Port, b.Port), cmp.Compare(a.DMAC, b.DMAC), cmp.Compare(a.Instance, b.Instance))
		})
		out[p] = fib.Route{Kind: rt.Kind, Hops: hops}
	}
	return out
}

func routesEqual(a, b fib.Routes) bool {
	return maps.EqualFunc(normalize(a), normalize(b), func(x, y fib.Route) bool {
		return x.Kind == y.Kind && slices.Equal(x.Hops, y.Hops)
	})
}

func describe(r fib.Routes) string {
	var lines []string
	for p, rt := range normalize(r) {
		lines = append(lines, fmt.Sprintf("  %v %s %v", p, rt.Kind, rt.Hops))
	}
	slices.Sort(lines)
	return strings.Join(lines, "\n")
}

// waitSettled waits until every switch holds what its agent computed,
// whether or not the agents agree (a partitioned fabric).
func waitSettled(t *testing.T, f *topo.Fabric, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		var last error
		for _, n := range f.Topo.NodeNames() {
			s := snapshot(t, f, n)
			if !s.Converged() {
				last = fmt.Errorf("%s: FIB generation %d applied %d (%v)", n, s.FIBGeneration, s.FIBApplied, s.FIBError)
			} else if got := readFIB(t, f, n); !routesEqual(got, s.FIB) {
				last = fmt.Errorf("%s: switch FIB differs from the agent's", n)
			}
			if last != nil {
				break
			}
		}
		if last == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not settled after %v: %v", timeout, last)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitConverged waits until every agent sees every node in its routes, its
// switch holds the newest routes, and the FIB read back over P4Runtime is
// what the agent computed. cond, if set, must hold too.
func waitConverged(t *testing.T, f *topo.Fabric, timeout time.Duration, cond func(map[string]controller.Snapshot) error) map[string]controller.Snapshot {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		snaps := map[string]controller.Snapshot{}
		last = nil
		for _, n := range f.Topo.NodeNames() {
			s := snapshot(t, f, n)
			snaps[n] = s
			if !s.Converged() {
				last = fmt.Errorf("%s: FIB generation %d applied %d (%v)", n, s.FIBGeneration, s.FIBApplied, s.FIBError)
				break
			}
			if got := readFIB(t, f, n); !routesEqual(got, s.FIB) {
				last = fmt.Errorf("%s: switch FIB differs from the agent's:\nswitch:\n%s\nagent:\n%s", n, describe(got), describe(s.FIB))
				break
			}
		}
		if last == nil {
			last = controller.LSDBsAgree(snaps)
		}
		if last == nil && cond != nil {
			last = cond(snaps)
		}
		if last == nil {
			return snaps
		}
		time.Sleep(20 * time.Millisecond)
	}
	if os.Getenv("DMSC_TEST_DUMP") != "" {
		pprof.Lookup("goroutine").WriteTo(os.Stderr, 2)
	}
	t.Fatalf("not converged after %v: %v", timeout, last)
	return nil
}

func nodePrefix(node string) spf.Prefix {
	k := wire.KeyOf(must(wire.NodeName(node)))
	return spf.Prefix{Key: k, Len: uint8(k.PrefixLen())}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// reachesAll: every node has a route to every other node's key, through
// the expected kind.
func reachesAll(f *topo.Fabric) func(map[string]controller.Snapshot) error {
	return func(snaps map[string]controller.Snapshot) error {
		for n, s := range snaps {
			for _, m := range f.Topo.NodeNames() {
				r, ok := s.FIB[nodePrefix(m)]
				switch {
				case !ok:
					return fmt.Errorf("%s: no route to %s", n, m)
				case m == n && r.Kind != fib.ToCPU:
					return fmt.Errorf("%s: own key routed %s", n, r.Kind)
				case m != n && r.Kind != fib.Forward:
					return fmt.Errorf("%s: route to %s is %s", n, m, r.Kind)
				}
			}
		}
		return nil
	}
}

func TestFig2Converges(t *testing.T) {
	f := startFabric(t, fig2(t), topo.AgentOptions{})
	snaps := waitConverged(t, f, 10*time.Second, reachesAll(f))
	// Adjacencies are the topology's links.
	for _, n := range f.Topo.NodeNames() {
		var want []spf.NodeID
		for _, l := range f.Topo.Links {
			if l.A.Node == n {
				want = append(want, spf.NodeID(l.B.Node))
			}
			if l.B.Node == n {
				want = append(want, spf.NodeID(l.A.Node))
			}
		}
		slices.Sort(want)
		if got := snaps[n].UpNeighbors(); !slices.Equal(got, want) {
			t.Errorf("%s: neighbours %v, want %v", n, got, want)
		}
		if got := len(snaps[n].LSDB); got != len(f.Topo.Nodes) {
			t.Errorf("%s: LSDB holds %d fragments, want %d", n, got, len(f.Topo.Nodes))
		}
	}
	// sg1 reaches sg4 over sr1 and then sr3 (the direct sr1–sr3 link costs
	// the same as through sr2: ECMP inside the fabric, one exit from sg1).
	r := snaps["sg1"].Routes[nodePrefix("sg4")]
	if len(r.NextHops) != 1 || r.NextHops[0].Neighbor != "sr1" || r.Metric != 30 {
		t.Errorf("sg1 → sg4: %v", r)
	}
	r = snaps["sr1"].Routes[nodePrefix("sg4")]
	if r.Metric != 20 || len(r.NextHops) != 1 || r.NextHops[0].Neighbor != "sr3" {
		t.Errorf("sr1 → sg4: %v (want via sr3 at 20)", r)
	}
	r = snaps["sr1"].Routes[nodePrefix("sg3")]
	if r.Metric != 20 || len(r.NextHops) != 2 {
		t.Errorf("sr1 → sg3: %v (want ECMP via sr2 and sr3 at 20)", r)
	}
}

func probe(t *testing.T, f *topo.Fabric, from, to string) controller.ProbeResult {
	t.Helper()
	a, _ := f.Agent(from)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	r, err := a.Probe(ctx, nodePrefix(to).Key, 7)
	if err != nil {
		t.Fatalf("probe %s → %s: %v", from, to, err)
	}
	if r.Responder != nodePrefix(to).Key {
		t.Fatalf("probe %s → %s answered by %v", from, to, r.Responder)
	}
	return r
}

func txFrames(t *testing.T, f *topo.Fabric, node string, port uint16) uint64 {
	t.Helper()
	st, err := f.Switches[node].SW.PortStats(port)
	if err != nil {
		t.Fatal(err)
	}
	return st.TxFrames
}

// TestLinkCutReroutes cuts the sr1–sr3 link under sg1 → sg4 traffic: the
// adjacency goes down on both ends within the dead interval, every FIB is
// reprogrammed, and the traffic takes sr1 → sr2 → sr3.
func TestLinkCutReroutes(t *testing.T) {
	f := startFabric(t, fig2(t), topo.AgentOptions{})
	waitConverged(t, f, 10*time.Second, reachesAll(f))

	// sr1 port 4 is the sr1–sr3 link, port 3 sr1–sr2.
	direct0 := txFrames(t, f, "sr1", 4)
	const n = 20
	for range n {
		probe(t, f, "sg1", "sg4")
	}
	direct1 := txFrames(t, f, "sr1", 4)
	// HELLOs and LSPs leave on both ports too; the probes add n on the
	// direct link only.
	if direct1-direct0 < n {
		t.Errorf("before the cut: %d frames on sr1→sr3, want ≥ %d", direct1-direct0, n)
	}
	l, _ := f.Link("sr1", "sr3")
	cut := time.Now()
	if err := f.Cut(l); err != nil {
		t.Fatal(err)
	}
	snaps := waitConverged(t, f, 10*time.Second, func(s map[string]controller.Snapshot) error {
		r := s["sr1"].Routes[nodePrefix("sg4")]
		if len(r.NextHops) != 1 || r.NextHops[0].Neighbor != "sr2" {
			return fmt.Errorf("sr1 → sg4 still %v", r)
		}
		return reachesAll(f)(s)
	})
	t.Logf("rerouted in %v (dead interval %v)", time.Since(cut), testTimers().Dead)
	if got := snaps["sr1"].UpNeighbors(); slices.Contains(got, "sr3") {
		t.Errorf("sr1 still has sr3 as a neighbour: %v", got)
	}
	around1 := txFrames(t, f, "sr1", 3)
	for range n {
		probe(t, f, "sg1", "sg4")
	}
	around2 := txFrames(t, f, "sr1", 3)
	if around2-around1 < n {
		t.Errorf("after the cut: %d frames on sr1→sr2, want ≥ %d", around2-around1, n)
	}

	// Restored, the direct path comes back.
	if err := f.Restore(l); err != nil {
		t.Fatal(err)
	}
	waitConverged(t, f, 10*time.Second, func(s map[string]controller.Snapshot) error {
		if r := s["sr1"].Routes[nodePrefix("sg4")]; r.Metric != 20 {
			return fmt.Errorf("sr1 → sg4 still %v", r)
		}
		return nil
	})
}

// A cut cable is reported by the switch and rerouted long before the dead
// interval; a silent failure (frames lost, carrier up) still waits for it.
func TestCarrierLossBeatsDeadInterval(t *testing.T) {
	tm := testTimers()
	tm.Hello, tm.Dead = 100*time.Millisecond, 2*time.Second
	f := startFabric(t, fig2(t), topo.AgentOptions{Timers: tm})
	waitConverged(t, f, 15*time.Second, reachesAll(f))
	l, _ := f.Link("sr1", "sr3")
	around := func(s map[string]controller.Snapshot) error {
		r := s["sr1"].Routes[nodePrefix("sg4")]
		if len(r.NextHops) != 1 || r.NextHops[0].Neighbor != "sr2" {
			return fmt.Errorf("sr1 → sg4 still %v", r)
		}
		return nil
	}
	direct := func(s map[string]controller.Snapshot) error {
		if r := s["sr1"].Routes[nodePrefix("sg4")]; r.Metric != 20 {
			return fmt.Errorf("sr1 → sg4 still %v", r)
		}
		return nil
	}

	cut := time.Now()
	if err := f.Cut(l); err != nil {
		t.Fatal(err)
	}
	snaps := waitConverged(t, f, tm.Dead, around)
	took := time.Since(cut)
	t.Logf("cut cable rerouted in %v (dead interval %v)", took, tm.Dead)
	if took >= tm.Dead/2 {
		t.Errorf("rerouting a cut cable took %v: the carrier loss was not acted on", took)
	}
	if n := snaps["sr1"].Counters.CarrierLosses; n != 1 {
		t.Errorf("sr1 counted %d carrier losses, want 1", n)
	}
	if err := f.Restore(l); err != nil {
		t.Fatal(err)
	}
	waitConverged(t, f, 15*time.Second, direct)

	silenced := time.Now()
	if err := f.Silence(l); err != nil {
		t.Fatal(err)
	}
	// Still routed directly (and black-holed) until the dead interval runs
	// out: nothing told the agents.
	time.Sleep(tm.Dead / 2)
	if err := direct(map[string]controller.Snapshot{"sr1": snapshot(t, f, "sr1")}); err != nil {
		t.Errorf("a silent failure was noticed before the dead interval: %v", err)
	}
	waitConverged(t, f, 3*tm.Dead, around)
	t.Logf("silent failure rerouted in %v", time.Since(silenced))
	if err := f.Unsilence(l); err != nil {
		t.Fatal(err)
	}
	waitConverged(t, f, 15*time.Second, direct)
}
