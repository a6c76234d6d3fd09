package e2e

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"sync/atomic"
	"testing"
	"time"

	echopb "github.com/dmsc-mesh/dmsc/api/echo"
	"github.com/dmsc-mesh/dmsc/controller"
	"github.com/dmsc-mesh/dmsc/scsc"
	"github.com/dmsc-mesh/dmsc/softswitch"
	"github.com/dmsc-mesh/dmsc/topo"
)

// TestQoSRerouteBySCSC: real agents, real SCSC over gNMI with TLS. A delay
// on sr1–sr3 (on the path sg1 → /echo at sg4) makes SCSC steer the traffic
// via sr2 within a bound, as sr1's port counters show; when the delay is
// gone the policy is withdrawn once, without flapping; and when SCSC stops,
// the policies it left expire and SPF routing carries on.
func TestQoSRerouteBySCSC(t *testing.T) {
	if raceEnabled {
		// The race detector slows every agent's packet handling so much that
		// the probes measure it instead of the links, and SCSC acts on that.
		t.Skip("QoS timing is checked without the race detector (scripts/test.sh runs it so)")
	}
	l, err := topo.StartLab(context.Background(), fig2(t), topo.LabOptions{
		Agents:       topo.AgentOptions{Timers: timers()},
		GNMI:         true,
		GNMIInterval: 200 * time.Millisecond,
		Probe:        controller.ProbeConfig{Targets: []string{"/echo", "/shop/frontend"}, Interval: 50 * time.Millisecond, Window: time.Second},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	waitRoutes(t, l)
	serveEcho(t, l, "sg4", "/echo", 0)
	c := dialEcho(t, client(t, l, "sg1", "/shop/frontend"), "/echo")

	tls, err := l.SCSCTLS("scsc1")
	if err != nil {
		t.Fatal(err)
	}
	cfg := scsc.DefaultConfig()
	cfg.ID = "scsc1"
	for n, addr := range l.GNMIAddrs() {
		cfg.Agents = append(cfg.Agents, scsc.AgentConfig{Name: n, Addr: addr})
	}
	sort.Slice(cfg.Agents, func(i, j int) bool { return cfg.Agents[i].Name < cfg.Agents[j].Name })
	cfg.SampleInterval = 200 * time.Millisecond
	cfg.PolicyTTL = 3 * time.Second
	cfg.Hysteresis = scsc.Hysteresis{TriggerAfter: 2, ClearAfter: 2 * time.Second, Improvement: 0.2}
	for _, name := range []string{"/echo", "/shop/frontend"} {
		s, err := scsc.NewService(name, scsc.Thresholds{MaxDelay: 10 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		cfg.Services = append(cfg.Services, s)
	}
	center, err := scsc.New(&cfg, scsc.WithTLS(tls), scsc.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	sctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- center.Run(sctx) }()
	stopped := false
	stopSCSC := func() {
		if !stopped {
			stopped = true
			stop()
			<-done
		}
	}
	t.Cleanup(stopSCSC)

	// Calls run all along; their frames are what the counters count.
	callCtx, stopCalls := context.WithCancel(context.Background())
	callsDone := make(chan struct{})
	var answered atomic.Int64
	go func() {
		defer close(callsDone)
		for callCtx.Err() == nil {
			ctx, cancel := context.WithTimeout(callCtx, 2*time.Second)
			if _, err := c.Echo(ctx, &echopb.EchoRequest{Message: "qos", Payload: make([]byte, 8192)}); err == nil {
				answered.Add(1)
			}
			cancel()
			time.Sleep(5 * time.Millisecond)
		}
	}()
	t.Cleanup(func() { stopCalls(); <-callsDone })

	sr1 := l.Fabric.Switches["sr1"].SW
	txBytes := func(port uint16) uint64 {
		st, err := sr1.PortStats(port)
		if err != nil {
			t.Fatal(err)
		}
		return st.TxBytes
	}
	// rate is what sr1 sends on port over 500 ms, in bytes.
	rate := func(port uint16) uint64 {
		b0 := txBytes(port)
		time.Sleep(500 * time.Millisecond)
		return txBytes(port) - b0
	}
	// flows: calls were answered during the last rates, so the bytes
	// counted are the calls' and not only control traffic.
	lastAnswered := int64(0)
	flows := func() error {
		n := answered.Load()
		defer func() { lastAnswered = n }()
		if n-lastAnswered < 2 {
			return fmt.Errorf("only %d calls answered meanwhile", n-lastAnswered)
		}
		return nil
	}
	// Before: sr1 → sr3 (port 4) carries the calls, sr1 → sr2 (port 3) only
	// control traffic.
	flows()
	direct, around := rate(4), rate(3)
	if err := flows(); err != nil {
		t.Fatal(err)
	}
	if direct < 4*around {
		t.Fatalf("before the impairment sr1 sends %d B/500ms to sr3 and %d to sr2: the calls should go direct", direct, around)
	}
	link, _ := l.Fabric.Link("sr1", "sr3")
	impair := func(d time.Duration) {
		for _, ep := range []topo.Endpoint{link.A, link.B} {
			im := softswitch.Impairment{Delay: link.Delay}
			if d > 0 {
				im.Delay = d
			}
			if err := l.Fabric.Switches[ep.Node].SW.SetImpairment(ep.Port, im); err != nil {
				t.Fatal(err)
			}
		}
	}
	impaired := time.Now()
	impair(30 * time.Millisecond)
	const bound = 5 * time.Second
	eventually(t, bound, func() error {
		if st := center.Status(); true {
			if _, ok := st.Policy(scsc.PathPolicyID("sg1", "/echo")); !ok {
				return fmt.Errorf("no policy for sg1 → /echo yet; SCSC's last decisions: %v; agents %v", lastDecisions(st.Decisions, 6), st.Agents)
			}
		}
		flows()
		d, a := rate(4), rate(3)
		if err := flows(); err != nil {
			return err
		}
		if a < 4*d {
			return fmt.Errorf("sr1 sends %d B/500ms to sr3 and %d to sr2", d, a)
		}
		return nil
	})
	moved := time.Since(impaired)
	t.Logf("traffic moved off the impaired link %v after the impairment (bound %v)", moved.Round(10*time.Millisecond), bound)
	if p, ok := center.Status().Policy(scsc.PathPolicyID("sg1", "/echo")); !ok || p.State != scsc.PolicyInstalled {
		t.Fatalf("SCSC's policy for sg1 → /echo: %+v (ok %v)", p, ok)
	}

	// Restored: the policy goes once the SPF path has been clear for
	// ClearAfter, and the traffic comes back.
	impair(0)
	restored := time.Now()
	eventually(t, 15*time.Second, func() error {
		if _, ok := center.Status().Policy(scsc.PathPolicyID("sg1", "/echo")); ok {
			return fmt.Errorf("policy still wanted")
		}
		flows()
		d, a := rate(4), rate(3)
		if err := flows(); err != nil {
			return err
		}
		if d < 4*a {
			return fmt.Errorf("sr1 sends %d B/500ms to sr3 and %d to sr2", d, a)
		}
		return nil
	})
	t.Logf("traffic back on the SPF path %v after the restore", time.Since(restored).Round(10*time.Millisecond))
	// No flapping: one install and one withdraw for this flow.
	installs, withdraws := 0, 0
	for _, d := range center.Status().Decisions {
		if d.Ingress == "sg1" && d.Service == "/echo" {
			switch d.Action {
			case scsc.ActionInstall, scsc.ActionSwitch:
				installs++
			case scsc.ActionWithdraw:
				withdraws++
			}
		}
	}
	if installs != 1 || withdraws != 1 {
		t.Errorf("decisions for sg1 → /echo: %d installs or switches, %d withdraws; want 1 and 1", installs, withdraws)
	}

	// SCSC gone while its policy stands: the policy expires at the agents.
	impair(30 * time.Millisecond)
	eventually(t, bound, func() error {
		st := center.Status()
		if _, ok := st.Policy(scsc.PathPolicyID("sg1", "/echo")); !ok {
			return fmt.Errorf("no policy yet; SCSC's last decisions: %v", lastDecisions(st.Decisions, 4))
		}
		return nil
	})
	stopSCSC()
	gone := time.Now()
	eventually(t, 2*cfg.PolicyTTL, func() error {
		for _, n := range l.Fabric.Topo.NodeNames() {
			a, _ := l.Fabric.Agent(n)
			s, err := a.Snapshot(context.Background())
			if err != nil {
				return err
			}
			if len(s.Policies) > 0 {
				return fmt.Errorf("%s still holds %d policies", n, len(s.Policies))
			}
		}
		return nil
	})
	t.Logf("policies expired %v after SCSC stopped (ttl %v)", time.Since(gone).Round(10*time.Millisecond), cfg.PolicyTTL)
	eventually(t, 5*time.Second, func() error {
		flows()
		d, a := rate(4), rate(3)
		if err := flows(); err != nil {
			return err
		}
		if d < 4*a {
			return fmt.Errorf("after expiry sr1 sends %d B/500ms to sr3 and %d to sr2: SPF's path should carry the calls again", d, a)
		}
		return nil
	})
}

func lastDecisions(ds []scsc.Decision, n int) []string {
	var out []string
	for _, d := range ds[max(0, len(ds)-n):] {
		out = append(out, fmt.Sprintf("%s %s %s→%s: %s", d.Time.Format("15:04:05.000"), d.Action, d.Ingress, d.Service, d.Reason))
	}
	return out
}
