package register

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/dmsc-mesh/dmsc/bench/internal/harness"
	"github.com/dmsc-mesh/dmsc/ca"
	"github.com/dmsc-mesh/dmsc/controller"
	"github.com/dmsc-mesh/dmsc/controller/fib"
	"github.com/dmsc-mesh/dmsc/spf"
	"github.com/dmsc-mesh/dmsc/topo"
)

// ReachConfig is one series of registrations on a fabric.
type ReachConfig struct {
	// Topo is the fabric; every SG has at least one pod port, and pods
	// register at the SGs in turn.
	Topo          *topo.Topology
	Registrations int
	// Spacing is the pause between one registration being everywhere and
	// the next ANNOUNCE. More than the SPF back-off's HOLDDOWN (1 s)
	// measures each registration alone; 0 measures them back to back,
	// where every agent's SPF back-off is out of QUIET.
	Spacing time.Duration
	Timers  controller.Timers
	Probe   controller.ProbeConfig
	// Gradual brings the fabric up link by link (harness.StartGradually).
	Gradual bool
	// Verify reads every SG's switch back over P4Runtime after each
	// registration (not timed).
	Verify bool
	// Dir is an empty directory for the CA and SPA's store.
	Dir  string
	Logf func(string, ...any)
}

// Reach is one registration.
type Reach struct {
	Prefix, SG string
	// Challenge: ANNOUNCE → CHALLENGE; Decide: PROOF → ACCEPT (SPA's
	// decision and the SG's work); Accept: ANNOUNCE → ACCEPT; SPA: the SG's
	// Authorize call alone.
	Challenge, Decide, Accept, SPA time.Duration
	// FromAccept and FromAnnounce: until the last SG's switch was seen
	// holding the service prefix (the agent's FIB applied).
	FromAccept, FromAnnounce time.Duration
	// Sweep is the mean time of one polling sweep over the SGs: the
	// resolution.
	Sweep time.Duration
}

// ReachResult is a whole series.
type ReachResult struct {
	SGs     int
	Startup time.Duration
	Regs    []Reach
}

func (r *ReachResult) samples(f func(Reach) time.Duration) harness.Durations {
	out := make(harness.Durations, len(r.Regs))
	for i, x := range r.Regs {
		out[i] = f(x)
	}
	return out
}

// RunReach starts the fabric and the domain and measures the
// registrations.
func RunReach(ctx context.Context, cfg ReachConfig) (*ReachResult, error) {
	logf := cfg.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	t := cfg.Topo
	var sgs []string
	for _, n := range t.NodeNames() {
		if t.Nodes[n].Role == topo.RoleSG && len(t.Nodes[n].PodPorts) > 0 {
			sgs = append(sgs, n)
		}
	}
	if len(sgs) == 0 {
		return nil, fmt.Errorf("register: %s has no SG with a pod port", t.Name)
	}
	d, err := topo.StartDomain(ctx, cfg.Dir, "example.org", roles(t), topo.DomainOptions{Lease: time.Hour})
	if err != nil {
		return nil, err
	}
	defer d.Close()
	sgCfg := map[string]*controller.SGConfig{}
	spas := map[string]*timedSPA{}
	for _, n := range sgs {
		if sgCfg[n], spas[n], err = sgConfig(d, n, sgOptions{}); err != nil {
			return nil, err
		}
	}
	prefixes := make([]string, cfg.Registrations)
	for i := range prefixes {
		prefixes[i] = fmt.Sprintf("/reach/s%04d", i)
	}
	certs, err := issue(d, prefixes)
	if err != nil {
		return nil, err
	}

	start := time.Now()
	opts := topo.AgentOptions{
		Timers:    cfg.Timers,
		SG:        func(node string) *controller.SGConfig { return sgCfg[node] },
		Configure: func(node string, c *controller.Config) { c.Probe = cfg.Probe },
	}
	var f *harness.Fabric
	if cfg.Gradual {
		f, err = harness.StartGradually(ctx, t, opts, logf)
	} else {
		f, err = harness.Start(ctx, t, opts)
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	base, err := harness.Model{Topo: t}.FIBs()
	if err != nil {
		return nil, err
	}
	if _, err := f.WaitFIBs(ctx, base, 2*time.Minute); err != nil {
		return nil, err
	}
	res := &ReachResult{SGs: len(sgs), Startup: time.Since(start)}
	logf("%s converged in %v; %d SGs", t.Name, res.Startup.Round(time.Millisecond), len(sgs))

	ports := map[string]*harness.PodPort{}
	for _, n := range sgs {
		p := t.Nodes[n].PodPorts[0]
		link, err := f.AttachPod(n, p)
		if err != nil {
			return nil, err
		}
		pp := harness.NewPodPort(link, p, harness.PodTimers{})
		defer pp.Close()
		ports[n] = pp
	}
	// The bring-up left every SPF back-off out of QUIET: wait as between
	// two registrations.
	if err := pause(ctx, cfg.Spacing); err != nil {
		return nil, err
	}
	for i := range cfg.Registrations {
		home := sgs[i%len(sgs)]
		svc, err := harness.ServicePrefix(prefixes[i])
		if err != nil {
			return nil, err
		}
		x, err := reachOne(ctx, f, ports[home], home, sgs, prefixes[i], svc, certs[i])
		if err != nil {
			return nil, fmt.Errorf("register: registration %d (%s at %s): %w", i+1, prefixes[i], home, err)
		}
		if cfg.Verify {
			if err := verifySGs(ctx, f, sgs, home, svc); err != nil {
				return nil, fmt.Errorf("register: registration %d (%s at %s): %w", i+1, prefixes[i], home, err)
			}
		}
		spa := spas[home]
		spa.mu.Lock()
		if len(spa.lat) > 0 {
			x.SPA = spa.lat[len(spa.lat)-1]
		}
		spa.mu.Unlock()
		res.Regs = append(res.Regs, *x)
		logf("reg %2d %s at %-4s: challenge %5.1f ms, decide %5.1f ms (SPA %5.1f ms), accept %5.1f ms; everywhere %5.1f ms after ACCEPT, %5.1f ms after ANNOUNCE (sweep %.1f ms)",
			i+1, x.Prefix, home, harness.Ms(x.Challenge), harness.Ms(x.Decide), harness.Ms(x.SPA), harness.Ms(x.Accept),
			harness.Ms(x.FromAccept), harness.Ms(x.FromAnnounce), harness.Ms(x.Sweep))
		if err := pause(ctx, cfg.Spacing); err != nil {
			return nil, err
		}
	}
	return res, nil
}

func pause(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

// holds reports whether s's switch holds svc as it should at node (local
// delivery at the home SG, forwarding elsewhere).
func holds(s controller.Snapshot, svc spf.Prefix, local bool) bool {
	if !s.Converged() {
		return false
	}
	r, ok := s.FIB[svc]
	if !ok {
		return false
	}
	if local {
		return r.Kind == fib.Local
	}
	return r.Kind == fib.Forward
}

func reachOne(ctx context.Context, f *harness.Fabric, pp *harness.PodPort, home string, sgs []string, prefix string, svc spf.Prefix, cert *ca.Issued) (*Reach, error) {
	pending := slices.Clone(sgs)
	seen := map[string]time.Time{}
	r := pp.Register(prefix, cert)
	sweeps, sweepTime := 0, time.Duration(0)
	deadline := r.Announced.Add(20 * time.Second)
	for len(pending) > 0 {
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("not at %v after 20 s (accepted: %v)", pending, !r.Accepted.IsZero())
		}
		t0 := time.Now()
		var still []string
		for _, n := range pending {
			s, err := f.Snapshot(ctx, n)
			if err != nil {
				return nil, err
			}
			if holds(s, svc, n == home) {
				// When the agent wrote it, by its own record: the
				// polling's pace does not enter the figure.
				seen[n] = time.Now()
				if s.FIBWrittenAt.After(r.Announced) {
					seen[n] = s.FIBWrittenAt
				}
			} else {
				still = append(still, n)
			}
		}
		pending = still
		sweeps++
		sweepTime += time.Since(t0)
		if len(pending) > 0 {
			time.Sleep(10 * time.Millisecond)
		}
	}
	select {
	case <-r.Done():
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if r.Err != nil {
		return nil, r.Err
	}
	var last time.Time
	for _, t := range seen {
		last = later(last, t)
	}
	return &Reach{
		Prefix: prefix, SG: home,
		Challenge:    r.Challenged.Sub(r.Announced),
		Decide:       r.Accepted.Sub(r.Proved),
		Accept:       r.Accepted.Sub(r.Announced),
		FromAccept:   last.Sub(r.Accepted),
		FromAnnounce: last.Sub(r.Announced),
		Sweep:        sweepTime / time.Duration(max(sweeps, 1)),
	}, nil
}

// verifySGs reads every SG's switch back: the service prefix is there,
// local at its home.
func verifySGs(ctx context.Context, f *harness.Fabric, sgs []string, home string, svc spf.Prefix) error {
	for _, n := range sgs {
		routes, err := f.ReadFIB(ctx, n)
		if err != nil {
			return err
		}
		r, ok := routes[svc]
		want := fib.Forward
		if n == home {
			want = fib.Local
		}
		if !ok || r.Kind != want {
			return fmt.Errorf("%s's switch: route for %v is %v (present %v), want %s", n, svc, r.Kind, ok, want)
		}
	}
	return nil
}
