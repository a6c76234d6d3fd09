package scsc_test

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/dmsc-mesh/dmsc/scsc"
	"github.com/dmsc-mesh/dmsc/scsc/scsctest"
)

const cart = "/shop/cart"

// fig2Spec is the fabric of the integration tests: sg1 reaches sg3 over
// sr1-sr2 (SPF) or sr1-sr3; sg2 hangs off sr2.
func fig2Spec() scsctest.Spec {
	ms := time.Millisecond
	return scsctest.Spec{
		Nodes: []scsctest.NodeSpec{
			{Name: "sg1", SG: true}, {Name: "sg2", SG: true}, {Name: "sg3", SG: true},
			{Name: "sr1"}, {Name: "sr2"}, {Name: "sr3"},
		},
		Links: []scsctest.LinkSpec{
			{A: "sg1", B: "sr1", Metric: 10, Delay: ms, CapacityBps: 1e9},
			{A: "sr1", B: "sr2", Metric: 10, Delay: ms, CapacityBps: 1e9},
			{A: "sr2", B: "sg3", Metric: 10, Delay: ms, CapacityBps: 1e9},
			{A: "sr1", B: "sr3", Metric: 10, Delay: ms, CapacityBps: 1e9},
			{A: "sr3", B: "sg3", Metric: 20, Delay: ms, CapacityBps: 1e9},
			{A: "sg2", B: "sr2", Metric: 10, Delay: ms, CapacityBps: 1e9},
		},
		Services: []scsctest.ServiceSpec{{Name: cart, Hosts: map[string][]uint32{"sg3": {7, 9}}}},
	}
}

var altPath = []string{"sg1", "sr1", "sr3", "sg3"}

const (
	testTTL        = 1500 * time.Millisecond
	testClearAfter = time.Second
)

func testLogger(t *testing.T) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("test", t.Name())
	}
	return slog.New(slog.DiscardHandler)
}

func newFabric(t *testing.T, spec scsctest.Spec) *scsctest.Fabric {
	t.Helper()
	fab, err := scsctest.New(spec, scsctest.Options{Interval: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(fab.Close)
	return fab
}

func testConfig(t *testing.T, fab *scsctest.Fabric) *scsc.Config {
	t.Helper()
	cfg := scsc.DefaultConfig()
	cfg.ID = "scsc1"
	cfg.Agents = fab.Agents()
	cfg.SampleInterval = 100 * time.Millisecond
	cfg.PolicyTTL = testTTL
	cfg.Hysteresis = scsc.Hysteresis{TriggerAfter: 3, ClearAfter: testClearAfter, Improvement: 0.2}
	s, err := scsc.NewService(cart, scsc.Thresholds{MaxDelay: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	cfg.Services = []scsc.ServiceConfig{s}
	return &cfg
}

// running is a Center running in the background.
type running struct {
	c      *scsc.Center
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
}

func start(t *testing.T, cfg *scsc.Config) *running {
	t.Helper()
	c, err := scsc.New(cfg, scsc.WithLogger(testLogger(t)), scsc.WithBackoff(50*time.Millisecond, 500*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{c: c, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- c.Run(ctx) }()
	t.Cleanup(func() { r.stop(t) })
	return r
}

func (r *running) stop(t *testing.T) {
	t.Helper()
	r.once.Do(func() {
		r.cancel()
		select {
		case err := <-r.done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Error("Run did not return within 5 s of its context's end")
		}
	})
}

// waitFor polls cond every 10 ms for up to d and returns how long it took.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > d {
			t.Fatalf("%s: not within %v", what, d)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return time.Since(start)
}

// holdersOf lists the nodes holding policy id, in fabric order.
func holdersOf(fab *scsctest.Fabric, id string) []string {
	var out []string
	for node, ids := range fab.PolicyIDs() {
		if slices.Contains(ids, id) {
			out = append(out, node)
		}
	}
	slices.Sort(out)
	return out
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

func waitReady(t *testing.T, r *running, nodes int) {
	t.Helper()
	waitFor(t, 5*time.Second, "topology and agents", func() bool {
		s := r.c.Status()
		if s.Topology.Nodes != nodes || !s.Leader {
			return false
		}
		for _, a := range s.Agents {
			if !a.Connected || !a.Fresh {
				return false
			}
		}
		return true
	})
}

// setsOf returns the successful set (or delete) records of policy id, in
// time order.
func setsOf(fab *scsctest.Fabric, id string, deletes bool) []scsctest.SetRecord {
	var out []scsctest.SetRecord
	for _, r := range fab.Records() {
		if r.ID == id && r.Delete == deletes && r.Err == nil {
			out = append(out, r)
		}
	}
	return out
}

func nodesOf(rs []scsctest.SetRecord) []string {
	var out []string
	for _, r := range rs {
		out = append(out, r.Node)
	}
	return out
}

func TestCenterSteersRenewsAndRestores(t *testing.T) {
	t.Parallel()
	fab := newFabric(t, fig2Spec())
	r := start(t, testConfig(t, fab))
	waitReady(t, r, 6)
	id := scsc.PathPolicyID("sg1", cart)
	if got := fab.Forwarding("sg1", cart, 0); !slices.Equal(got, []string{"sg1", "sr1", "sr2", "sg3"}) {
		t.Fatalf("SPF forwarding %v before any policy", got)
	}

	// Impair the SPF path: SCSC must steer sg1 over sr3, on every node.
	fab.SetDelay("sr1", "sr2", 20*time.Millisecond)
	took := waitFor(t, 2*time.Second, "policy on every node of the alternate path", func() bool {
		return slices.Equal(holdersOf(fab, id), sorted(altPath))
	})
	t.Logf("policy on %v %v after the impairment (100 ms samples, trigger_after 3)", altPath, took.Round(time.Millisecond))
	sets := setsOf(fab, id, false)
	if got := nodesOf(sets[:4]); !slices.Equal(got, []string{"sg3", "sr3", "sr1", "sg1"}) {
		t.Errorf("first sets on %v, want last to first: sg3 sr3 sr1 sg1", got)
	}
	doc := sets[0].Doc
	if doc.Service != cart || !slices.Equal(doc.Path, altPath) || doc.TTLms != testTTL.Milliseconds() || doc.Owner != "scsc1" || doc.Reason == "" {
		t.Errorf("policy as set: %+v", doc)
	}
	if got := fab.Forwarding("sg1", cart, 0); !slices.Equal(got, altPath) {
		t.Errorf("forwarding %v under the policy, want %v", got, altPath)
	}
	waitFor(t, time.Second, "status says installed", func() bool {
		ps, ok := r.c.Status().Policy(id)
		return ok && ps.State == scsc.PolicyInstalled && slices.Equal(ps.Path, altPath) && slices.Equal(ps.Nodes, []string{"sg3", "sr3", "sr1", "sg1"})
	})
	st := r.c.Status()
	if i := slices.IndexFunc(st.Decisions, func(d scsc.Decision) bool { return d.Action == scsc.ActionInstall }); i < 0 {
		t.Errorf("no install decision in the status: %+v", st.Decisions)
	}

	// Renewed at a third of the TTL while the decision stands; never
	// deleted meanwhile.
	before := len(sets)
	time.Sleep(testTTL)
	if n := len(setsOf(fab, id, false)); n < before+2*len(altPath) {
		t.Errorf("%d sets after %v, want renewals (≥ %d)", n, testTTL, before+2*len(altPath))
	}
	if d := setsOf(fab, id, true); len(d) != 0 {
		t.Errorf("deleted while the SPF path is still slow: %v", nodesOf(d))
	}

	// Restore: withdrawn after clear_after, first node first.
	fab.SetDelay("sr1", "sr2", time.Millisecond)
	took = waitFor(t, testClearAfter+2*time.Second, "policy withdrawn", func() bool { return len(holdersOf(fab, id)) == 0 })
	if took < testClearAfter-100*time.Millisecond {
		t.Errorf("withdrawn %v after the restore, before clear_after %v", took, testClearAfter)
	}
	t.Logf("withdrawn %v after the restore (clear_after %v)", took.Round(time.Millisecond), testClearAfter)
	if got := nodesOf(setsOf(fab, id, true)); !slices.Equal(got, altPath) {
		t.Errorf("deletes on %v, want first to last %v", got, altPath)
	}
	// No flapping: nothing set again once withdrawn.
	n := len(setsOf(fab, id, false))
	time.Sleep(time.Second)
	if again := len(setsOf(fab, id, false)); again != n {
		t.Errorf("%d more sets after the withdrawal", again-n)
	}
	if got := fab.Forwarding("sg1", cart, 0); !slices.Equal(got, []string{"sg1", "sr1", "sr2", "sg3"}) {
		t.Errorf("forwarding %v after the withdrawal, want SPF's", got)
	}
}

func TestCenterPoliciesExpireWhenStopped(t *testing.T) {
	t.Parallel()
	fab := newFabric(t, fig2Spec())
	r := start(t, testConfig(t, fab))
	waitReady(t, r, 6)
	id := scsc.PathPolicyID("sg1", cart)
	fab.SetDelay("sr1", "sr2", 20*time.Millisecond)
	waitFor(t, 2*time.Second, "policy installed", func() bool { return slices.Equal(holdersOf(fab, id), sorted(altPath)) })
	r.stop(t)
	stopped := time.Now()
	if got := holdersOf(fab, id); !slices.Equal(got, sorted(altPath)) {
		t.Fatalf("held by %v right after SCSC stopped, want it to stay until its TTL", got)
	}
	took := waitFor(t, testTTL+time.Second, "policy expired", func() bool { return len(holdersOf(fab, id)) == 0 })
	if took > testTTL+200*time.Millisecond {
		t.Errorf("expired %v after SCSC stopped, want within its TTL %v", time.Since(stopped), testTTL)
	}
	if d := setsOf(fab, id, true); len(d) != 0 {
		t.Errorf("SCSC deleted the policy at %v on stopping; it should leave it to expire", nodesOf(d))
	}
	if got := fab.Forwarding("sg1", cart, 0); !slices.Equal(got, []string{"sg1", "sr1", "sr2", "sg3"}) {
		t.Errorf("forwarding %v after expiry, want SPF's", got)
	}
}

func TestCenterRollsBackARefusedSet(t *testing.T) {
	t.Parallel()
	fab := newFabric(t, fig2Spec())
	r := start(t, testConfig(t, fab))
	waitReady(t, r, 6)
	id := scsc.PathPolicyID("sg1", cart)
	fab.Refuse("sr1", scsctest.ErrRefused)
	fab.SetDelay("sr1", "sr2", 20*time.Millisecond)
	waitFor(t, 3*time.Second, "a refused set", func() bool {
		for _, rec := range fab.Records() {
			if rec.ID == id && rec.Node == "sr1" && rec.Err != nil {
				return true
			}
		}
		return false
	})
	waitFor(t, time.Second, "rollback on the nodes already set", func() bool {
		return len(holdersOf(fab, id)) == 0 && len(setsOf(fab, id, true)) >= 2
	})
	// sg3 and sr3 were set (last to first) and deleted again, sr3 first.
	if got := nodesOf(setsOf(fab, id, false))[:2]; !slices.Equal(got, []string{"sg3", "sr3"}) {
		t.Errorf("set before the refusal on %v, want sg3 sr3", got)
	}
	if got := nodesOf(setsOf(fab, id, true))[:2]; !slices.Equal(got, []string{"sr3", "sg3"}) {
		t.Errorf("rolled back on %v, want sr3 then sg3", got)
	}
	for _, rec := range fab.Records() {
		if rec.ID == id && rec.Node == "sg1" {
			t.Fatalf("sg1 was asked to steer into sr1, which refused: %+v", rec)
		}
	}
	waitFor(t, time.Second, "status says failed", func() bool {
		ps, ok := r.c.Status().Policy(id)
		return ok && ps.State == scsc.PolicyFailed && ps.LastError != ""
	})
	// Accepted again: the retry installs it.
	fab.Refuse("sr1", nil)
	waitFor(t, 4*time.Second, "policy installed on retry", func() bool { return slices.Equal(holdersOf(fab, id), sorted(altPath)) })
}

func TestCenterDrainsASlowInstance(t *testing.T) {
	t.Parallel()
	fab := newFabric(t, fig2Spec())
	r := start(t, testConfig(t, fab))
	waitReady(t, r, 6)
	id := scsc.WeightsPolicyID("sg3", cart)
	fab.SetInstanceDelay(cart, 9, 30*time.Millisecond)
	waitFor(t, 2*time.Second, "weights policy at sg3", func() bool {
		return slices.Equal(holdersOf(fab, id), []string{"sg3"})
	})
	doc := fab.Policies("sg3")[id]
	if w, ok := doc.InstanceWeights["9"]; !ok || w != 0 || len(doc.InstanceWeights) != 1 || len(doc.Path) != 0 {
		t.Errorf("weights policy %+v, want instance 9 at 0 only", doc)
	}
	// No path policy: the fabric is fine.
	for node, ids := range fab.PolicyIDs() {
		for _, pid := range ids {
			if pid != id {
				t.Errorf("%s holds %s", node, pid)
			}
		}
	}
	fab.SetInstanceDelay(cart, 9, 0)
	took := waitFor(t, testClearAfter+2*time.Second, "weights withdrawn", func() bool { return len(holdersOf(fab, id)) == 0 })
	if took < testClearAfter-100*time.Millisecond {
		t.Errorf("restored after %v, before clear_after", took)
	}
}

func TestCenterAgentGone(t *testing.T) {
	t.Parallel()
	fab := newFabric(t, fig2Spec())
	cfg := testConfig(t, fab)
	cfg.StaleAfter = 300 * time.Millisecond
	r := start(t, cfg)
	waitReady(t, r, 6)
	fab.StopAgent("sr3")
	waitFor(t, 3*time.Second, "sr3 shown down and aged out", func() bool {
		for _, a := range r.c.Status().Agents {
			if a.Name == "sr3" {
				return !a.Connected && !a.Fresh && a.LastError != ""
			}
		}
		return false
	})
	// SPF path impaired: the alternate needs sr3, whose agent is gone, so
	// the Set fails there first and nothing is left behind.
	id := scsc.PathPolicyID("sg1", cart)
	fab.SetDelay("sr1", "sr2", 20*time.Millisecond)
	waitFor(t, 3*time.Second, "status says failed", func() bool {
		ps, ok := r.c.Status().Policy(id)
		return ok && ps.State == scsc.PolicyFailed
	})
	if got := holdersOf(fab, id); len(got) != 0 {
		t.Errorf("held by %v after the failed push, want rolled back", got)
	}
}

func TestNewRefusesBadConfig(t *testing.T) {
	cfg := scsc.DefaultConfig()
	if _, err := scsc.New(&cfg); err == nil {
		t.Fatal("New accepted a config without agents")
	}
	cfg.Agents = []scsc.AgentConfig{{Name: "sg1", Addr: "127.0.0.1:1"}}
	cfg.Election = &scsc.ElectionConfig{Endpoints: []string{"127.0.0.1:2379"}, Prefix: "/x", TTL: time.Second}
	if _, err := scsc.New(&cfg); err == nil || !errors.Is(err, err) {
		t.Fatal("New accepted an election config without a Leader")
	}
}
