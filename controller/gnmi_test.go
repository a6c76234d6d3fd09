package controller_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/dmsc-mesh/dmsc/controller"
	"github.com/dmsc-mesh/dmsc/gnmi"
	"github.com/dmsc-mesh/dmsc/internal/gnmicli"
	"github.com/dmsc-mesh/dmsc/softswitch"
	"github.com/dmsc-mesh/dmsc/topo"
	"github.com/dmsc-mesh/dmsc/wire"
)

// withGNMI gives every agent an insecure gNMI target on loopback,
// publishing every 200 ms, and SGs the listed probe targets.
func withGNMI(targets ...string) topo.AgentOptions {
	return topo.AgentOptions{Configure: func(node string, cfg *controller.Config) {
		cfg.GNMI = &controller.GNMIConfig{Listen: "127.0.0.1:0", Interval: 200 * time.Millisecond}
		cfg.Probe = controller.ProbeConfig{Targets: targets, Interval: 100 * time.Millisecond, Window: time.Second}
	}}
}

func gnmiClient(t *testing.T, f *topo.Fabric, node string) *gnmi.Client {
	t.Helper()
	a, _ := f.Agent(node)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := gnmi.Dial(ctx, a.GNMIAddr(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func get(t *testing.T, c *gnmi.Client, path string) map[string]any {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	rs, err := c.Get(ctx, path)
	if err != nil {
		t.Fatalf("get %s: %v", path, err)
	}
	out := map[string]any{}
	for _, r := range rs {
		out[gnmi.PathString(r.Path)] = r.Value
	}
	return out
}

// tryGet is get that reports errors (NOT_FOUND while an agent has not
// published a path yet) instead of failing the test.
func tryGet(c *gnmi.Client, path string) (map[string]any, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	rs, err := c.Get(ctx, path)
	if err != nil {
		return nil, err
	}
	out := map[string]any{}
	for _, r := range rs {
		out[gnmi.PathString(r.Path)] = r.Value
	}
	return out, nil
}

func setPolicy(c *gnmi.Client, id string, spec controller.PolicySpec) error {
	b, _ := json.Marshal(spec)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := c.Set(ctx, gnmi.ReplaceOp(gnmi.PolicyConfigPath(id), gnmi.JSON(b)))
	return err
}

// TestTelemetryOverGNMI reads an agent's neighbours, LSDB, FIB and counters
// with the gNMI client, and sees a link's emulated delay in its neighbour
// figures and in an SG's probes of a service behind it.
func TestTelemetryOverGNMI(t *testing.T) {
	opts := withGNMI("/shop/cart")
	f, d := startDomainFabric(t, opts, topo.DomainOptions{})
	waitConverged(t, f, 10*time.Second, reachesAll(f))
	cart := attachPod(t, f, "sg4", 10)
	if _, err := cart.register("/shop/cart", issuePod(t, d, "/shop/cart"), nil); err != nil {
		t.Fatal(err)
	}
	cart.keepAlive()
	sr1 := gnmiClient(t, f, "sr1")
	eventually(t, 5*time.Second, func() error {
		v, _ := tryGet(sr1, "/dmsc/lsdb/state/nodes")
		if v["/dmsc/lsdb/state/nodes"] != uint64(7) {
			return fmt.Errorf("lsdb nodes %v", v)
		}
		n, _ := tryGet(sr1, "/dmsc/neighbors/neighbor[port=4]/state")
		if n["/dmsc/neighbors/neighbor[port=4]/state/neighbor"] != "sr3" || n["/dmsc/neighbors/neighbor[port=4]/state/state"] != "UP" {
			return fmt.Errorf("sr1 port 4: %v", n)
		}
		if _, ok := n["/dmsc/neighbors/neighbor[port=4]/state/delay-ns"]; !ok {
			return fmt.Errorf("no link delay yet: %v", n)
		}
		c, _ := tryGet(sr1, "/interfaces/interface[name=4]/state/counters/out-pkts")
		if v, _ := c["/interfaces/interface[name=4]/state/counters/out-pkts"].(uint64); v == 0 {
			return fmt.Errorf("out-pkts %v", c)
		}
		return nil
	})
	eventually(t, 5*time.Second, func() error {
		routes, err := tryGet(sr1, "/dmsc/fib/route[prefix=*]/state/kind")
		if err != nil || len(routes) < 9 { // 7 node keys, /shop/cart and its instance
			return fmt.Errorf("sr1 publishes %d routes (%v): %v", len(routes), err, routes)
		}
		return nil
	})

	// 20 ms more on the sr1–sr3 link (sr1's end): sr1's link delay and
	// sg1's probes of /shop/cart (sg1 sr1 sr3 sg4) rise by about 10 ms
	// one-way.
	sg1 := gnmiClient(t, f, "sg1")
	probeDelay := func() time.Duration {
		v, _ := tryGet(sg1, "/dmsc/probes/probe[instance=0][target=/shop/cart]/state/delay-ns")
		d, _ := v["/dmsc/probes/probe[instance=0][target=/shop/cart]/state/delay-ns"].(uint64)
		return time.Duration(d)
	}
	eventually(t, 5*time.Second, func() error {
		if probeDelay() == 0 {
			return fmt.Errorf("no probe results from sg1")
		}
		return nil
	})
	if err := f.Switches["sr1"].SW.SetImpairment(4, softswitch.Impairment{Delay: 20 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, func() error {
		if d := probeDelay(); d < 9*time.Millisecond {
			return fmt.Errorf("probe delay %v", d)
		}
		n, _ := tryGet(sr1, "/dmsc/neighbors/neighbor[port=4]/state/delay-ns")
		if d, _ := n["/dmsc/neighbors/neighbor[port=4]/state/delay-ns"].(uint64); time.Duration(d) < 8*time.Millisecond {
			return fmt.Errorf("sr1 link delay %v", time.Duration(d))
		}
		return nil
	})
}

// TestPolicies sets a path policy for /shop/cart along sg1 sr1 sr2 sr3 sg4
// (SPF goes sr1 sr3): traffic follows it, bad policies are refused whole,
// and when the policy expires SPF routing returns.
func TestPolicies(t *testing.T) {
	f, d := startDomainFabric(t, withGNMI(), topo.DomainOptions{})
	waitConverged(t, f, 10*time.Second, reachesAll(f))
	cart := attachPod(t, f, "sg4", 10)
	if _, err := cart.register("/shop/cart", issuePod(t, d, "/shop/cart"), nil); err != nil {
		t.Fatal(err)
	}
	front := attachPod(t, f, "sg1", 10)
	if _, err := front.register("/shop/frontend", issuePod(t, d, "/shop/frontend"), nil); err != nil {
		t.Fatal(err)
	}
	cart.keepAlive()
	front.keepAlive()
	svc := servicePrefix("/shop/cart")
	everyFIB(t, f, svc, true, "sg4")

	path := []string{"sg1", "sr1", "sr2", "sr3", "sg4"}
	spec := controller.PolicySpec{Service: "/shop/cart", Path: path, TTLms: 2000, Reason: "test", Owner: "test"}
	for _, bad := range []struct {
		name string
		node string
		spec controller.PolicySpec
		code codes.Code
	}{
		{"unknown node", "sr1", controller.PolicySpec{Service: "/shop/cart", Path: []string{"sg1", "sr1", "sr9", "sg4"}, TTLms: 2000}, codes.InvalidArgument},
		{"not simple", "sr1", controller.PolicySpec{Service: "/shop/cart", Path: []string{"sg1", "sr1", "sr2", "sr1", "sr3", "sg4"}, TTLms: 2000}, codes.InvalidArgument},
		{"not on the path", "sr2", controller.PolicySpec{Service: "/shop/cart", Path: []string{"sg1", "sr1", "sr3", "sg4"}, TTLms: 2000}, codes.FailedPrecondition},
		{"successor not adjacent", "sg1", controller.PolicySpec{Service: "/shop/cart", Path: []string{"sg1", "sr2", "sr3", "sg4"}, TTLms: 2000}, codes.FailedPrecondition},
		{"egress does not host it", "sr1", controller.PolicySpec{Service: "/shop/cart", Path: []string{"sg1", "sr1", "sr3", "sg3"}, TTLms: 2000}, codes.InvalidArgument},
		{"ttl", "sr1", controller.PolicySpec{Service: "/shop/cart", Path: path, TTLms: 5}, codes.InvalidArgument},
		{"bad service", "sr1", controller.PolicySpec{Service: "/Shop", Path: path, TTLms: 2000}, codes.InvalidArgument},
	} {
		if err := setPolicy(gnmiClient(t, f, bad.node), "bad", bad.spec); status.Code(err) != bad.code {
			t.Errorf("%s: %v, want %v", bad.name, err, bad.code)
		}
	}
	// Last to first, as SCSC does.
	set := time.Now()
	for i := len(path) - 1; i >= 0; i-- {
		if err := setPolicy(gnmiClient(t, f, path[i]), "p1", spec); err != nil {
			t.Fatalf("%s: %v", path[i], err)
		}
	}
	st := get(t, gnmiClient(t, f, "sr1"), "/dmsc/policies/policy[id=p1]/state/applied")
	if st["/dmsc/policies/policy[id=p1]/state/applied"] != true {
		t.Errorf("policy state at sr1: %v", st)
	}
	eventually(t, 2*time.Second, func() error {
		// On the switch, read back, not only in the agent's mind.
		r := readFIB(t, f, "sr1")[svc]
		if len(r.Hops) != 1 || r.Hops[0].Port != 3 {
			return fmt.Errorf("sr1 → /shop/cart %v, want port 3 (sr2)", r)
		}
		return nil
	})
	// Frames follow it: sr1's port to sr2 carries them.
	around := txFrames(t, f, "sr1", 3)
	for range 10 {
		front.sendData(svc.Key, nil, "steered")
	}
	got := 0
	for range 10 {
		if _, ok := cart.recv(wire.TypeData, time.Second); ok {
			got++
		}
	}
	if got < 10 {
		t.Errorf("%d of 10 frames arrived along the policy path", got)
	}
	if d := txFrames(t, f, "sr1", 3) - around; d < 10 {
		t.Errorf("only %d frames on sr1 → sr2", d)
	}
	// A second policy steering /shop/cart elsewhere at sr1 conflicts.
	other := controller.PolicySpec{Service: "/shop/cart", Path: []string{"sr1", "sr3", "sg4"}, TTLms: 2000}
	if err := setPolicy(gnmiClient(t, f, "sr1"), "p2", other); status.Code(err) != codes.FailedPrecondition {
		t.Errorf("conflicting policy: %v", err)
	}
	// Not renewed, it expires and SPF's route is back.
	eventually(t, 5*time.Second, func() error {
		r := snapshot(t, f, "sr1").FIB[svc]
		if len(r.Hops) != 1 || r.Hops[0].Port != 4 {
			return fmt.Errorf("sr1 → /shop/cart %v, want SPF's port 4", r)
		}
		return nil
	})
	if took := time.Since(set); took < 1900*time.Millisecond {
		t.Errorf("policy gone after %v; its ttl was 2 s", took)
	}
}

// TestGNMICLIAgainstAgent uses the reference client on an agent: a Get and
// a subscription.
func TestGNMICLIAgainstAgent(t *testing.T) {
	cli := gnmicli.Build(t)
	f := startTopology(t, topo.Line(2), withGNMI())
	waitConverged(t, f, 10*time.Second, reachesAll(f))
	a, _ := f.Agent("r1")
	run := func(args ...string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, cli, append([]string{"-a", a.GNMIAddr(), "-insecure", "-timeout", "5s"}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("gnmi_cli %q: %v\n%s", args, err, out)
		}
		return string(out)
	}
	// The agent publishes every 200 ms: wait until what gnmi_cli reads is
	// the converged state.
	c := gnmiClient(t, f, "r1")
	eventually(t, 5*time.Second, func() error {
		if v, _ := tryGet(c, "/dmsc/lsdb/state/nodes"); v["/dmsc/lsdb/state/nodes"] != uint64(2) {
			return fmt.Errorf("nodes %v", v)
		}
		return nil
	})
	out := run("-get", "-proto", `path: <elem: <name: "dmsc"> elem: <name: "neighbors"> elem: <name: "neighbor" key: <key: "port" value: "1">> elem: <name: "state"> elem: <name: "neighbor">>`)
	if !strings.Contains(out, `r2`) {
		t.Errorf("gnmi_cli get:\n%s", out)
	}
	out = run("-qt", "once", "-q", "/dmsc/neighbors/neighbor[port=1]/state/state")
	if !strings.Contains(out, `"state"`) || !strings.Contains(out, "UP") {
		t.Errorf("gnmi_cli subscribe once:\n%s", out)
	}
}
