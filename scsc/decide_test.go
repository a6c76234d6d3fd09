package scsc

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dmsc-mesh/dmsc/gnmi"
)

// testNet is a hand-made fabric for decision tests: links with telemetry,
// services hosted at SGs, and the probes SGs report.
type testNet struct {
	links  []*testLink
	hosts  map[string]map[string][]uint32 // service → node → instances
	extra  []string                       // nodes without links
	probes map[string]map[ProbeID]*Probe  // node → probes
	down   map[string]bool                // agents whose telemetry is unknown
}

type testLink struct {
	a, b         string
	pa, pb       uint32
	metric       uint32
	delay        time.Duration
	jitter       time.Duration
	capacity     uint64
	util         uint64 // both directions
	up           bool   // in the LSDB and UP
	inLSDBOnlyAt string // "": both ends list it
}

func newTestNet() *testNet {
	return &testNet{hosts: map[string]map[string][]uint32{}, probes: map[string]map[ProbeID]*Probe{}, down: map[string]bool{}}
}

func (n *testNet) link(a, b string, metric uint32, delay time.Duration) *testLink {
	ports := func(node string) uint32 {
		var p uint32
		for _, l := range n.links {
			if l.a == node {
				p = max(p, l.pa)
			}
			if l.b == node {
				p = max(p, l.pb)
			}
		}
		return p + 1
	}
	l := &testLink{a: a, b: b, pa: ports(a), pb: ports(b), metric: metric, delay: delay, up: true}
	n.links = append(n.links, l)
	return l
}

func (n *testNet) find(a, b string) *testLink {
	for _, l := range n.links {
		if (l.a == a && l.b == b) || (l.a == b && l.b == a) {
			return l
		}
	}
	panic("no link " + a + "-" + b)
}

func (n *testNet) host(service, node string, instances ...uint32) {
	if n.hosts[service] == nil {
		n.hosts[service] = map[string][]uint32{}
	}
	n.hosts[service][node] = instances
}

// probe records one new sample of node's probe of a service instance.
func (n *testNet) probe(node, service string, instance uint32, delay time.Duration) {
	if n.probes[node] == nil {
		n.probes[node] = map[ProbeID]*Probe{}
	}
	id := ProbeID{service, instance}
	p := n.probes[node][id]
	if p == nil {
		p = &Probe{}
		n.probes[node][id] = p
	}
	p.Delay, p.HasDelay = delay, true
	p.Samples++
}

func (n *testNet) nodes() []string {
	seen := map[string]bool{}
	var out []string
	add := func(s string) {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	for _, l := range n.links {
		add(l.a)
		add(l.b)
	}
	for _, s := range n.extra {
		add(s)
	}
	return out
}

// snapshot builds what SCSC would have read from the agents.
func (n *testNet) snapshot() *Snapshot {
	lsdb := map[FragmentID]*LSP{}
	agents := map[string]*AgentTelemetry{}
	for _, node := range n.nodes() {
		lsp := &LSP{Origin: node, Seq: 1}
		lsdb[FragmentID{node, 0}] = lsp
		tel := NewAgentTelemetry()
		for _, l := range n.links {
			var port uint32
			var other string
			switch node {
			case l.a:
				port, other = l.pa, l.b
			case l.b:
				port, other = l.pb, l.a
			default:
				continue
			}
			if l.up && (l.inLSDBOnlyAt == "" || l.inLSDBOnlyAt == node) {
				lsp.Adjacencies = append(lsp.Adjacencies, LSPAdjacency{Neighbor: other, Metric: l.metric, Link: port})
			}
			state := "UP"
			if !l.up {
				state = "DOWN"
			}
			tel.Links[port] = &Link{Neighbor: other, State: state, Metric: uint64(l.metric), CapacityBps: l.capacity,
				Delay: l.delay, Jitter: l.jitter, HasDelay: true, UtilizationBps: l.util, HasUtilization: true}
		}
		for svc, hs := range n.hosts {
			ids, ok := hs[node]
			if !ok {
				continue
			}
			s, _ := NewService(svc, Thresholds{})
			lsp.Prefixes = append(lsp.Prefixes, LSPPrefix{Prefix: gnmi.RouteKey(s.Key, s.PrefixLen)})
			for _, id := range ids {
				lsp.Prefixes = append(lsp.Prefixes, LSPPrefix{Prefix: gnmi.RouteKey(s.Key.WithInstance(id), 128)})
			}
		}
		for id, p := range n.probes[node] {
			cp := *p
			tel.Probes[id] = &cp
		}
		if !n.down[node] {
			agents[node] = tel
		}
	}
	return &Snapshot{Topology: BuildTopology(lsdb), Agents: agents}
}

// fig2 is a small fabric: sg1 reaches sg3 over sr1-sr2 (SPF, metric 30) or
// sr1-sr3 (metric 40); sg2 hangs off sr2.
//
//	sg1 - sr1 - sr2 - sg3
//	        \         /
//	         sr3 ----
func fig2() *testNet {
	n := newTestNet()
	n.link("sg1", "sr1", 10, time.Millisecond)
	n.link("sr1", "sr2", 10, time.Millisecond)
	n.link("sr2", "sg3", 10, time.Millisecond)
	n.link("sr1", "sr3", 10, time.Millisecond)
	n.link("sr3", "sg3", 20, time.Millisecond)
	n.link("sg2", "sr2", 10, time.Millisecond)
	n.host("/shop/cart", "sg3", 7, 9)
	return n
}

const cart = "/shop/cart"

func testServices(t *testing.T, th Thresholds) []ServiceConfig {
	t.Helper()
	s, err := NewService(cart, th)
	if err != nil {
		t.Fatal(err)
	}
	return []ServiceConfig{s}
}

var testHyst = Hysteresis{TriggerAfter: 3, ClearAfter: 5 * time.Second, Improvement: 0.2}

// stepper drives a Decider with one sample per step, 100 ms apart.
type stepper struct {
	t    *testing.T
	d    *Decider
	n    *testNet
	now  time.Time
	all  []Decision
	last Result
}

func newStepper(t *testing.T, n *testNet, th Thresholds) *stepper {
	return &stepper{t: t, d: NewDecider(testServices(t, th), testHyst), n: n, now: time.Unix(1000, 0)}
}

// step advances 100 ms, lets probe add the samples, and decides.
func (s *stepper) step(probe func()) Result {
	s.now = s.now.Add(100 * time.Millisecond)
	if probe != nil {
		probe()
	}
	s.last = s.d.Decide(s.n.snapshot(), s.now)
	s.all = append(s.all, s.last.Decisions...)
	checkPolicies(s.t, s.n, s.last.Policies)
	return s.last
}

// checkPolicies asserts what every decision must satisfy: paths are simple,
// every hop an up two-way adjacency, the last node a host of the service;
// and the paths of one service agree at every shared node.
func checkPolicies(t *testing.T, n *testNet, ps []Policy) {
	t.Helper()
	succ := map[string]map[string]string{}
	for _, p := range ps {
		if len(p.Path) == 0 {
			continue
		}
		seen := map[string]bool{}
		for i, node := range p.Path {
			if seen[node] {
				t.Fatalf("%s: path %v is not simple", p.ID, p.Path)
			}
			seen[node] = true
			next := ""
			if i+1 < len(p.Path) {
				next = p.Path[i+1]
				if l := n.find(node, next); !l.up {
					t.Fatalf("%s: path %v uses %s-%s, which is down", p.ID, p.Path, node, next)
				}
			}
			m := succ[p.Service]
			if m == nil {
				m = map[string]string{}
				succ[p.Service] = m
			}
			if prev, ok := m[node]; ok && prev != next {
				t.Fatalf("policies of %s disagree at %s: %q vs %q (%v)", p.Service, node, prev, next, ps)
			}
			m[node] = next
		}
		if _, ok := n.hosts[p.Service][p.Path[len(p.Path)-1]]; !ok {
			t.Fatalf("%s: path %v ends at no host of %s", p.ID, p.Path, p.Service)
		}
	}
}

func pathPolicy(r Result, ingress string) *Policy {
	for i := range r.Policies {
		if r.Policies[i].ID == PathPolicyID(ingress, cart) {
			return &r.Policies[i]
		}
	}
	return nil
}

func actions(ds []Decision) []string {
	var out []string
	for _, d := range ds {
		out = append(out, d.Action)
	}
	return out
}

func TestDecideAlternateOnDelay(t *testing.T) {
	n := fig2()
	n.find("sr1", "sr2").delay = 20 * time.Millisecond
	s := newStepper(t, n, Thresholds{MaxDelay: 10 * time.Millisecond})
	bad := func() { n.probe("sg1", cart, 0, 22*time.Millisecond) }
	for i := range 2 {
		if r := s.step(bad); len(r.Policies) != 0 {
			t.Fatalf("sample %d: policies %v before trigger_after samples", i+1, r.Policies)
		}
	}
	r := s.step(bad)
	p := pathPolicy(r, "sg1")
	if p == nil {
		t.Fatalf("no policy after 3 bad samples: %+v", r)
	}
	if want := []string{"sg1", "sr1", "sr3", "sg3"}; !slices.Equal(p.Path, want) {
		t.Errorf("path %v, want %v", p.Path, want)
	}
	if want := []string{"sg3", "sr3", "sr1", "sg1"}; !slices.Equal(p.Nodes(), want) {
		t.Errorf("set order %v, want %v (last to first)", p.Nodes(), want)
	}
	if !strings.Contains(p.Reason, "delay 22ms ≥ 10ms from sg1") {
		t.Errorf("reason %q does not say why", p.Reason)
	}
	if got := actions(r.Decisions); !slices.Equal(got, []string{ActionInstall}) {
		t.Errorf("decisions %v, want one install", got)
	}
	// It stays while the SPF path is still bad, and is not decided twice.
	for range 20 {
		r = s.step(func() { n.probe("sg1", cart, 0, 3*time.Millisecond) })
		if pathPolicy(r, "sg1") == nil || len(r.Decisions) != 0 {
			t.Fatalf("policy changed while the SPF path stays bad: %+v", r)
		}
	}
}

func TestDecideNoBetterAlternate(t *testing.T) {
	tests := []struct {
		name  string
		setup func(n *testNet)
	}{
		{"shared first hop is slow", func(n *testNet) { n.find("sg1", "sr1").delay = 20 * time.Millisecond }},
		{"alternate as slow", func(n *testNet) {
			n.find("sr1", "sr2").delay = 20 * time.Millisecond
			n.find("sr1", "sr3").delay = 20 * time.Millisecond
		}},
		{"alternate better but not by the margin", func(n *testNet) {
			n.find("sr1", "sr2").delay = 10 * time.Millisecond
			n.find("sr1", "sr3").delay = 8 * time.Millisecond
		}},
		{"link telemetry sees nothing wrong", func(n *testNet) {}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := fig2()
			tt.setup(n)
			s := newStepper(t, n, Thresholds{MaxDelay: 10 * time.Millisecond})
			for range 10 {
				if r := s.step(func() { n.probe("sg1", cart, 0, 25*time.Millisecond) }); len(r.Policies) != 0 {
					t.Fatalf("policies %v without a better alternate", r.Policies)
				}
			}
			if got := actions(s.all); !slices.Equal(got, []string{ActionNoAlternate}) {
				t.Errorf("decisions %v, want one no-alternate (said once per episode)", got)
			}
		})
	}
}

func TestDecideHysteresis(t *testing.T) {
	th := Thresholds{MaxDelay: 10 * time.Millisecond}
	badSPF := func(n *testNet) { n.find("sr1", "sr2").delay = 20 * time.Millisecond }

	t.Run("single bad sample", func(t *testing.T) {
		n := fig2()
		badSPF(n)
		s := newStepper(t, n, th)
		seq := []time.Duration{22, 2, 22, 22, 2, 22, 2, 2, 22, 22}
		for i, d := range seq {
			if r := s.step(func() { n.probe("sg1", cart, 0, d*time.Millisecond) }); len(r.Policies) != 0 {
				t.Fatalf("sample %d: policy with at most 2 bad samples in a row", i)
			}
		}
	})

	t.Run("decisions without new samples do not count", func(t *testing.T) {
		n := fig2()
		badSPF(n)
		s := newStepper(t, n, th)
		s.step(func() { n.probe("sg1", cart, 0, 22*time.Millisecond) })
		for range 10 {
			if r := s.step(nil); len(r.Policies) != 0 {
				t.Fatal("one sample read ten times triggered a policy")
			}
		}
	})

	t.Run("clear but not for clear_after keeps the policy", func(t *testing.T) {
		n := fig2()
		badSPF(n)
		s := newStepper(t, n, th)
		for range 3 {
			s.step(func() { n.probe("sg1", cart, 0, 22*time.Millisecond) })
		}
		if pathPolicy(s.last, "sg1") == nil {
			t.Fatal("no policy to start with")
		}
		n.find("sr1", "sr2").delay = time.Millisecond // restored
		steps := 0
		for pathPolicy(s.last, "sg1") != nil {
			s.step(func() { n.probe("sg1", cart, 0, 3*time.Millisecond) })
			steps++
			if steps > 100 {
				t.Fatal("policy never withdrawn")
			}
		}
		// Clear from the first step on; withdrawn once 5 s have passed.
		if elapsed := time.Duration(steps-1) * 100 * time.Millisecond; elapsed < testHyst.ClearAfter || elapsed > testHyst.ClearAfter+200*time.Millisecond {
			t.Errorf("withdrawn after %v clear, want %v", elapsed, testHyst.ClearAfter)
		}
		last := s.all[len(s.all)-1]
		if last.Action != ActionWithdraw || !strings.Contains(last.Reason, "clear for 5s") {
			t.Errorf("last decision %+v, want a withdraw saying it was clear for 5s", last)
		}
	})

	t.Run("an interrupted clear period starts again", func(t *testing.T) {
		n := fig2()
		badSPF(n)
		s := newStepper(t, n, th)
		for range 3 {
			s.step(func() { n.probe("sg1", cart, 0, 22*time.Millisecond) })
		}
		l := n.find("sr1", "sr2")
		for i := range 90 { // 9 s: clear 4 s, bad 0.5 s, clear 4.5 s
			l.delay = time.Millisecond
			if i >= 40 && i < 45 {
				l.delay = 20 * time.Millisecond
			}
			if r := s.step(func() { n.probe("sg1", cart, 0, 3*time.Millisecond) }); pathPolicy(r, "sg1") == nil {
				t.Fatalf("withdrawn at step %d though never clear for 5 s in a row", i)
			}
		}
	})

	t.Run("flapping input", func(t *testing.T) {
		n := fig2()
		s := newStepper(t, n, th)
		l := n.find("sr1", "sr2")
		// The SPF link flaps every 400 ms between 20 ms and 1 ms for 30 s.
		for i := range 300 {
			if (i/4)%2 == 0 {
				l.delay = 20 * time.Millisecond
			} else {
				l.delay = time.Millisecond
			}
			d := l.delay + 2*time.Millisecond
			if p := pathPolicy(s.last, "sg1"); p != nil {
				d = 3 * time.Millisecond // the probe follows the policy
			}
			s.step(func() { n.probe("sg1", cart, 0, d) })
		}
		var changes []time.Time
		for _, d := range s.all {
			if d.Action == ActionInstall || d.Action == ActionSwitch || d.Action == ActionWithdraw {
				changes = append(changes, d.Time)
			}
		}
		if len(changes) == 0 {
			t.Fatal("no policy at all under a link that is bad half the time")
		}
		for i := 1; i < len(changes); i++ {
			if gap := changes[i].Sub(changes[i-1]); gap < testHyst.ClearAfter {
				t.Errorf("changes %d and %d only %v apart (want ≥ clear_after %v): %v", i-1, i, gap, testHyst.ClearAfter, actions(s.all))
			}
		}
	})
}

func TestDecideBandwidthExclusion(t *testing.T) {
	n := fig2()
	n.find("sr1", "sr2").delay = 20 * time.Millisecond
	// A third way, longer but with room: sr1 - sr4 - sg3.
	n.link("sr1", "sr4", 10, 3*time.Millisecond)
	n.link("sr4", "sg3", 10, 3*time.Millisecond)
	for _, l := range n.links {
		l.capacity = 1e9
	}
	// sr3-sg3 has 50 Mbit/s left, below the 100 Mbit/s the service needs.
	n.find("sr3", "sg3").util = 950e6
	s := newStepper(t, n, Thresholds{MaxDelay: 10 * time.Millisecond, MinBandwidth: 100e6})
	for range 3 {
		s.step(func() { n.probe("sg1", cart, 0, 22*time.Millisecond) })
	}
	p := pathPolicy(s.last, "sg1")
	if p == nil {
		t.Fatalf("no policy: %+v", s.all)
	}
	if want := []string{"sg1", "sr1", "sr4", "sg3"}; !slices.Equal(p.Path, want) {
		t.Errorf("path %v, want %v: sr3-sg3 lacks the bandwidth", p.Path, want)
	}
	// The policy path losing its bandwidth breaks it: replaced at once.
	n.find("sr4", "sg3").util = 990e6
	n.find("sr3", "sg3").util = 0
	r := s.step(func() { n.probe("sg1", cart, 0, 8*time.Millisecond) })
	p = pathPolicy(r, "sg1")
	if p == nil || !slices.Equal(p.Path, []string{"sg1", "sr1", "sr3", "sg3"}) {
		t.Fatalf("after sr4-sg3 filled up: %+v", r)
	}
	if len(r.Decisions) != 1 || r.Decisions[0].Action != ActionSwitch || !strings.Contains(r.Decisions[0].Reason, "below 100mbit") {
		t.Errorf("decisions %+v, want a switch naming the bandwidth", r.Decisions)
	}
}

func TestDecideUtilizationRaisesCost(t *testing.T) {
	n := fig2()
	n.find("sr1", "sr2").delay = 20 * time.Millisecond
	n.link("sr1", "sr4", 10, time.Millisecond)
	n.link("sr4", "sg3", 20, time.Millisecond)
	for _, l := range n.links {
		l.capacity = 1e9
	}
	// Both alternates have the same delay; sr3's is 90 % loaded.
	n.find("sr3", "sg3").util = 900e6
	s := newStepper(t, n, Thresholds{MaxDelay: 10 * time.Millisecond})
	for range 3 {
		s.step(func() { n.probe("sg1", cart, 0, 22*time.Millisecond) })
	}
	if p := pathPolicy(s.last, "sg1"); p == nil || !slices.Equal(p.Path, []string{"sg1", "sr1", "sr4", "sg3"}) {
		t.Fatalf("policy %+v, want the unloaded path via sr4", p)
	}
}

func TestDecideBrokenPath(t *testing.T) {
	n := fig2()
	n.find("sr1", "sr2").delay = 20 * time.Millisecond
	s := newStepper(t, n, Thresholds{MaxDelay: 10 * time.Millisecond})
	for range 3 {
		s.step(func() { n.probe("sg1", cart, 0, 22*time.Millisecond) })
	}
	if pathPolicy(s.last, "sg1") == nil {
		t.Fatal("no policy to start with")
	}
	n.find("sr3", "sg3").up = false
	r := s.step(func() { n.probe("sg1", cart, 0, 22*time.Millisecond) })
	if pathPolicy(r, "sg1") != nil {
		t.Fatalf("policy kept on a path with a link down: %+v", r.Policies)
	}
	if len(r.Decisions) != 1 || r.Decisions[0].Action != ActionWithdraw || !strings.Contains(r.Decisions[0].Reason, "path broken") {
		t.Errorf("decisions %+v, want a withdraw for the broken path", r.Decisions)
	}
}

func TestDecideOneWayAdjacencyIsNotUsed(t *testing.T) {
	n := fig2()
	n.find("sr1", "sr2").delay = 20 * time.Millisecond
	n.find("sr3", "sg3").inLSDBOnlyAt = "sr3" // sg3 does not list sr3 yet
	s := newStepper(t, n, Thresholds{MaxDelay: 10 * time.Millisecond})
	for range 5 {
		if r := s.step(func() { n.probe("sg1", cart, 0, 22*time.Millisecond) }); len(r.Policies) != 0 {
			t.Fatalf("policy %v over a one-way adjacency", r.Policies)
		}
	}
}

func TestDecideUnknownAgentsCountAsUnmeasured(t *testing.T) {
	n := fig2()
	n.find("sr1", "sr2").delay = 20 * time.Millisecond
	n.down["sr3"] = true // sr3's telemetry aged out: its links are assumed 1 ms
	s := newStepper(t, n, Thresholds{MaxDelay: 10 * time.Millisecond})
	for range 3 {
		s.step(func() { n.probe("sg1", cart, 0, 22*time.Millisecond) })
	}
	if p := pathPolicy(s.last, "sg1"); p == nil || !slices.Equal(p.Path, []string{"sg1", "sr1", "sr3", "sg3"}) {
		t.Fatalf("policy %+v, want the path via sr3 (unknown, assumed 1 ms per link, beats 20 ms)", p)
	}
}

func TestDecideConsistentAcrossIngresses(t *testing.T) {
	// Two ingresses whose best paths would share sr1 with different
	// successors unless both follow one tree.
	n := newTestNet()
	n.link("sg1", "sr1", 10, time.Millisecond)
	n.link("sg2", "sr1", 10, time.Millisecond)
	n.link("sr1", "sr2", 10, 20*time.Millisecond) // SPF, slow
	n.link("sr2", "sg3", 10, time.Millisecond)
	n.link("sr1", "sr3", 20, time.Millisecond)
	n.link("sr3", "sg3", 20, time.Millisecond)
	n.link("sr1", "sr4", 20, 2*time.Millisecond)
	n.link("sr4", "sg3", 20, 2*time.Millisecond)
	n.host(cart, "sg3", 7)
	s := newStepper(t, n, Thresholds{MaxDelay: 10 * time.Millisecond})
	for range 3 {
		s.step(func() {
			n.probe("sg1", cart, 0, 22*time.Millisecond)
			n.probe("sg2", cart, 0, 22*time.Millisecond)
		})
	}
	p1, p2 := pathPolicy(s.last, "sg1"), pathPolicy(s.last, "sg2")
	if p1 == nil || p2 == nil {
		t.Fatalf("want policies for both ingresses: %+v", s.last.Policies)
	}
	if p1.Path[1] != "sr1" || p2.Path[1] != "sr1" || p1.Path[2] != p2.Path[2] {
		t.Errorf("paths %v and %v disagree at sr1", p1.Path, p2.Path)
	}
	// Now sg2's view changes alone: sr3 gets slow; the tree moves both.
	n.find("sr1", "sr3").delay = 30 * time.Millisecond
	s.now = s.now.Add(testHyst.ClearAfter) // past the hold-down
	s.step(func() {
		n.probe("sg1", cart, 0, 3*time.Millisecond)
		n.probe("sg2", cart, 0, 3*time.Millisecond)
	})
	p1, p2 = pathPolicy(s.last, "sg1"), pathPolicy(s.last, "sg2")
	if p1 == nil || p2 == nil || p1.Path[2] != "sr4" || p2.Path[2] != "sr4" {
		t.Fatalf("after sr3 slowed down: %+v", s.last.Policies)
	}
}

func TestDecideInstanceWeights(t *testing.T) {
	th := Thresholds{MaxDelay: 10 * time.Millisecond}
	t.Run("one slow instance is drained, then restored", func(t *testing.T) {
		n := fig2()
		n.host(cart, "sg3", 7)
		n.host(cart, "sg2", 9)
		s := newStepper(t, n, th)
		probes := func(d9 time.Duration) func() {
			return func() {
				n.probe("sg1", cart, 0, 3*time.Millisecond)
				n.probe("sg1", cart, 7, 3*time.Millisecond)
				n.probe("sg1", cart, 9, d9)
			}
		}
		for i := range 2 {
			if r := s.step(probes(30 * time.Millisecond)); len(r.Policies) != 0 {
				t.Fatalf("sample %d: %v before trigger_after", i, r.Policies)
			}
		}
		r := s.step(probes(30 * time.Millisecond))
		if len(r.Policies) != 1 {
			t.Fatalf("policies %+v, want one weights policy", r.Policies)
		}
		p := r.Policies[0]
		if p.ID != WeightsPolicyID("sg2", cart) || p.Egress != "sg2" || len(p.Path) != 0 || len(p.InstanceWeights) != 1 || p.InstanceWeights[9] != 0 {
			t.Fatalf("policy %+v, want instance 9 at weight 0 at sg2", p)
		}
		if !slices.Equal(p.Nodes(), []string{"sg2"}) {
			t.Errorf("set at %v, want the egress sg2 only", p.Nodes())
		}
		if !strings.Contains(p.Reason, "instance 9: delay 30ms ≥ 10ms from sg1") {
			t.Errorf("reason %q", p.Reason)
		}
		// Recovered: restored after clear_after.
		steps := 0
		for len(s.last.Policies) > 0 {
			s.step(probes(3 * time.Millisecond))
			if steps++; steps > 100 {
				t.Fatal("never restored")
			}
		}
		if steps < 50 {
			t.Errorf("restored after %d steps, before clear_after", steps)
		}
		if got := actions(s.all); !slices.Equal(got, []string{ActionDrain, ActionRestore}) {
			t.Errorf("decisions %v", got)
		}
	})
	t.Run("all instances slow: none drained", func(t *testing.T) {
		n := fig2()
		s := newStepper(t, n, th)
		for range 10 {
			r := s.step(func() {
				n.probe("sg1", cart, 7, 30*time.Millisecond)
				n.probe("sg1", cart, 9, 30*time.Millisecond)
			})
			if len(r.Policies) != 0 {
				t.Fatalf("drained %v though no instance is within", r.Policies)
			}
		}
	})
	t.Run("two ingresses each see another slow instance: not all drained", func(t *testing.T) {
		n := fig2()
		s := newStepper(t, n, th)
		for range 10 {
			r := s.step(func() {
				n.probe("sg1", cart, 7, 30*time.Millisecond)
				n.probe("sg1", cart, 9, 3*time.Millisecond)
				n.probe("sg2", cart, 7, 3*time.Millisecond)
				n.probe("sg2", cart, 9, 30*time.Millisecond)
			})
			for _, p := range r.Policies {
				if len(p.InstanceWeights) >= 2 {
					t.Fatalf("every instance drained: %+v", p)
				}
			}
		}
	})
}

// TestDecideLoopFreeRandom checks, on random fabrics with random delays and
// loads, that every policy decided is a simple path over up two-way
// adjacencies ending at a host, and that the policies of one service agree
// at every node they share.
func TestDecideLoopFreeRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for trial := range 60 {
		n := newTestNet()
		nodes := 6 + rng.IntN(10)
		name := func(i int) string {
			if i < 3 {
				return fmt.Sprintf("sg%d", i)
			}
			return fmt.Sprintf("sr%d", i)
		}
		for i := 1; i < nodes; i++ {
			n.link(name(rng.IntN(i)), name(i), uint32(1+rng.IntN(30)), time.Duration(rng.IntN(20))*time.Millisecond)
		}
		for range nodes {
			a, b := rng.IntN(nodes), rng.IntN(nodes)
			if a == b {
				continue
			}
			dup := false
			for _, l := range n.links {
				if (l.a == name(a) && l.b == name(b)) || (l.a == name(b) && l.b == name(a)) {
					dup = true
				}
			}
			if !dup {
				n.link(name(a), name(b), uint32(1+rng.IntN(30)), time.Duration(rng.IntN(20))*time.Millisecond)
			}
		}
		for _, l := range n.links {
			l.capacity, l.util = 1e9, uint64(rng.IntN(900))*1e6
		}
		n.host(cart, name(0), 1)
		s := newStepper(t, n, Thresholds{MaxDelay: 5 * time.Millisecond})
		for range 8 {
			for _, l := range n.links {
				if rng.IntN(4) == 0 {
					l.delay = time.Duration(rng.IntN(20)) * time.Millisecond
				}
			}
			s.step(func() {
				for i := 1; i < 3; i++ {
					n.probe(name(i), cart, 0, time.Duration(rng.IntN(20))*time.Millisecond)
				}
			})
			s.now = s.now.Add(testHyst.ClearAfter)
			for _, p := range s.last.Policies {
				if !slices.Equal(p.Path[:1], []string{p.Ingress}) {
					t.Fatalf("trial %d: %s path %v does not start at its ingress", trial, p.ID, p.Path)
				}
			}
		}
	}
}
