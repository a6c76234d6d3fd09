// Package converge measures how fast an in-process fabric of agents and
// software switches converges after a link cut (issue 3): the time until
// both ends declare the adjacency down (detection, bounded by the dead
// interval), and the time until every FIB entry the cut changes is
// rewritten on every switch, against routes computed independently with
// package spf from the topology itself. Run it with
//
//	go test -run '^$' -bench . ./bench/converge
//
// Each benchmark run starts its own fabric and performs -converge.cuts cuts
// (default 20) whatever b.N is: one cut costs a dead interval, a
// reconvergence after the restore and a quiet second for the SPF back-off,
// so a b.N loop would never reach 20 samples in any sensible -benchtime.
package converge

import (
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/dmsc-mesh/dmsc/bench/internal/harness"
	"github.com/dmsc-mesh/dmsc/controller"
	"github.com/dmsc-mesh/dmsc/topo"
)

// Config is one measurement.
type Config struct {
	Topo   *topo.Topology
	Timers controller.Timers
	// Probe is the agents' probing; the zero value is the default (every
	// node probes its neighbours every 100 ms).
	Probe controller.ProbeConfig
	// Cuts is the number of link cuts measured.
	Cuts int
	// Silent fails links without a carrier loss (topo.Fabric.Silence: every
	// frame lost, ports up), so only the HELLO dead interval detects them;
	// by default a cut is a pulled cable, which the switches report.
	Silent bool
	// Quiet is how long the fabric stays untouched after reconverging from a
	// restore, before the next cut: long enough for every agent's SPF
	// back-off (RFC 8405 HOLDDOWN, 1 s by default) to return to QUIET, so
	// that each cut is measured as a single failure.
	Quiet time.Duration
	// Seed picks the links.
	Seed uint64
	// Timeout bounds each convergence.
	Timeout time.Duration
	// Verify reads every switch back over P4Runtime after each cut has
	// converged and compares it with SPF's routes (not timed).
	Verify bool
	// PollInterval is the least time from one sweep over the switches
	// still converging to the next [50 ms]: each look is a Snapshot on the
	// agent's loop, so polling faster slows down what is measured. The
	// times do not depend on it: they come from the agents' own records
	// (Snapshot.FIBWrittenAt, NeighborInfo.Changed).
	PollInterval time.Duration
	// Gradual starts the fabric with every link cut and restores them one
	// by one (harness.StartGradually). A 100-switch fabric started all at
	// once on two cores drowns in its own bring-up flooding and never
	// converges; the cuts measure the steady state, not the bring-up.
	Gradual bool
	// Logf, if set, reports progress.
	Logf func(format string, args ...any)
}

// Cut is one measured link cut.
type Cut struct {
	Link string
	// Entries is the number of FIB entries (over all switches) the cut
	// changes, Switches the number of switches that hold one.
	Entries, Switches int
	// DetectFirst and Detect: until the first and until both ends showed the
	// adjacency down.
	DetectFirst, Detect time.Duration
	// Converged: until the last switch held SPF's routes for the cut
	// topology (its agent's last write, once nothing was left to write).
	// It may come before Detect: an end reroutes on the other end's LSP
	// before its own dead interval runs out.
	Converged time.Duration
	// Restore: from the restore until every switch held the original
	// routes again.
	Restore time.Duration
	// Sweep is the mean time of one polling sweep (the polling's own load).
	Sweep time.Duration
	// CPU is the window from the cut to convergence.
	CPU harness.CPUWindow
}

// Result is a whole run.
type Result struct {
	Nodes, Links int
	// Startup: from starting the agents until the fabric first converged
	// (with Gradual, the link-by-link bring-up included).
	Startup time.Duration
	Cuts    []Cut
	// Idle sums the quiet windows: only HELLOs, probes and the benchmark's
	// own few snapshots run.
	Idle harness.CPUWindow
	// QuietOriginations counts LSPs the agents originated during the quiet
	// windows. Nothing changes then, so any is an adjacency that flapped
	// (a lost HELLO deadline) or a refresh.
	QuietOriginations uint64
}

// Detect, Converged, AfterDetect and Restore are the samples of every cut.
func (r *Result) Detect() harness.Durations {
	return r.samples(func(c Cut) time.Duration { return c.Detect })
}
func (r *Result) Converged() harness.Durations {
	return r.samples(func(c Cut) time.Duration { return c.Converged })
}

// AfterDetect is from the first end's detection to convergence: flooding,
// SPF and FIB writes, what a cut the agent learned at once would cost.
func (r *Result) AfterDetect() harness.Durations {
	return r.samples(func(c Cut) time.Duration { return c.Converged - c.DetectFirst })
}
func (r *Result) Restore() harness.Durations {
	return r.samples(func(c Cut) time.Duration { return c.Restore })
}

func (r *Result) samples(f func(Cut) time.Duration) harness.Durations {
	out := make(harness.Durations, len(r.Cuts))
	for i, c := range r.Cuts {
		out[i] = f(c)
	}
	return out
}

// CutCPU is the CPU use over every cut's convergence window together.
func (r *Result) CutCPU() harness.CPUWindow {
	var w harness.CPUWindow
	var busy float64
	for _, c := range r.Cuts {
		w.Wall += c.CPU.Wall
		w.Cores += c.CPU.Cores * float64(c.CPU.Wall)
		busy += c.CPU.MachineBusy * float64(c.CPU.Wall)
	}
	if w.Wall > 0 {
		w.Cores /= float64(w.Wall)
		w.MachineBusy = busy / float64(w.Wall)
	}
	return w
}

type candidate struct {
	link     *topo.Link
	want     map[string]harness.FIB
	changed  []string // switches whose FIB changes
	entries  int
	portA    uint16
	portB    uint16
	nameA    string
	nameB    string
	describe string
}

// Run starts the fabric, waits for it to converge, and measures cfg.Cuts
// cuts.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	if cfg.Cuts <= 0 {
		cfg.Cuts = 20
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 30 * time.Second
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = 50 * time.Millisecond
	}
	logf := cfg.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	base, err := harness.Model{Topo: cfg.Topo}.FIBs()
	if err != nil {
		return nil, err
	}
	if !harness.Connected(base) {
		return nil, fmt.Errorf("converge: topology %s is not connected", cfg.Topo.Name)
	}
	cands, err := candidates(cfg.Topo, base)
	if err != nil {
		return nil, err
	}
	if len(cands) == 0 {
		return nil, fmt.Errorf("converge: topology %s has no link whose cut keeps it connected", cfg.Topo.Name)
	}
	rng := rand.New(rand.NewPCG(cfg.Seed, 0xc07))
	rng.Shuffle(len(cands), func(i, j int) { cands[i], cands[j] = cands[j], cands[i] })

	start := time.Now()
	opts := topo.AgentOptions{
		Timers: cfg.Timers,
		Configure: func(node string, c *controller.Config) {
			c.Probe = cfg.Probe
		},
	}
	var f *harness.Fabric
	if cfg.Gradual {
		f, err = harness.StartGradually(ctx, cfg.Topo, opts, logf)
	} else {
		f, err = harness.Start(ctx, cfg.Topo, opts)
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	res := &Result{Nodes: len(cfg.Topo.Nodes), Links: len(cfg.Topo.Links)}
	snaps, err := f.WaitFIBs(ctx, base, 2*cfg.Timeout)
	if err != nil {
		return nil, fmt.Errorf("converge: first convergence: %w", err)
	}
	res.Startup = time.Since(start)
	logf("%s: %d nodes, %d links converged in %v", cfg.Topo.Name, res.Nodes, res.Links, res.Startup.Round(time.Millisecond))

	var idleBusy float64
	for i := range cfg.Cuts {
		// Quiet: the SPF back-off of every agent returns to QUIET.
		before := originated(snaps)
		s := harness.SampleCPU()
		if err := sleep(ctx, cfg.Quiet); err != nil {
			return nil, err
		}
		w := s.Since()
		if snaps, err = f.Snapshots(ctx); err != nil {
			return nil, err
		}
		res.QuietOriginations += originated(snaps) - before
		res.Idle.Wall += w.Wall
		res.Idle.Cores += w.Cores * float64(w.Wall)
		idleBusy += w.MachineBusy * float64(w.Wall)

		c := cands[i%len(cands)]
		cut, err := measureCut(ctx, f, cfg, base, c)
		if err != nil {
			return nil, fmt.Errorf("converge: cut %d (%s): %w", i+1, c.describe, err)
		}
		if snaps, err = f.WaitFIBs(ctx, base, cfg.Timeout); err != nil {
			return nil, fmt.Errorf("converge: after restoring %s: %w", c.describe, err)
		}
		cut.Restore = time.Since(cut.restoreAt)
		res.Cuts = append(res.Cuts, cut.Cut)
		logf("cut %2d %-14s entries %4d on %3d switches: detect %6.1f ms (first %5.1f), converged %6.1f ms, restore %6.1f ms, %.2f cores, sweep %.1f ms",
			i+1, c.describe, c.entries, len(c.changed), harness.Ms(cut.Detect), harness.Ms(cut.DetectFirst),
			harness.Ms(cut.Converged), harness.Ms(cut.Restore), cut.CPU.Cores, harness.Ms(cut.Sweep))
	}
	if res.Idle.Wall > 0 {
		res.Idle.Cores /= float64(res.Idle.Wall)
		res.Idle.MachineBusy = idleBusy / float64(res.Idle.Wall)
	}
	return res, nil
}

// candidates are the links whose cut leaves the fabric connected, with the
// FIBs SPF gives after the cut.
func candidates(t *topo.Topology, base map[string]harness.FIB) ([]*candidate, error) {
	var out []*candidate
	for _, l := range t.Links {
		want, err := harness.Model{Topo: t, Down: map[*topo.Link]bool{l: true}}.FIBs()
		if err != nil {
			return nil, err
		}
		if !harness.Connected(want) {
			continue // a bridge: the cut partitions the fabric
		}
		c := &candidate{link: l, want: want, portA: l.A.Port, portB: l.B.Port, nameA: l.A.Node, nameB: l.B.Node,
			describe: l.A.Node + "–" + l.B.Node}
		for _, n := range t.NodeNames() {
			if d := changedEntries(base[n], want[n]); d > 0 {
				c.changed = append(c.changed, n)
				c.entries += d
			}
		}
		out = append(out, c)
	}
	return out, nil
}

func changedEntries(a, b harness.FIB) int {
	n := 0
	for p, e := range a {
		if g, ok := b[p]; !ok || g.Kind != e.Kind || !slices.Equal(g.Ports, e.Ports) {
			n++
		}
	}
	for p := range b {
		if _, ok := a[p]; !ok {
			n++
		}
	}
	return n
}

type measured struct {
	Cut
	cutAt     time.Time
	restoreAt time.Time
}

// measureCut cuts c's link, polls the switches whose FIB must change (and
// the link's two ends for detection) until each holds SPF's routes, checks
// that the whole fabric is then stable, and restores the link.
func measureCut(ctx context.Context, f *harness.Fabric, cfg Config, base map[string]harness.FIB, c *candidate) (*measured, error) {
	m := &measured{Cut: Cut{Link: c.describe, Entries: c.entries, Switches: len(c.changed)}}
	pending := map[string]bool{c.nameA: true, c.nameB: true}
	for _, n := range c.changed {
		pending[n] = true
	}
	detected := map[string]time.Duration{}
	done := map[string]time.Duration{}
	endPort := map[string]uint16{c.nameA: c.portA, c.nameB: c.portB}

	cpu := harness.SampleCPU()
	m.cutAt = time.Now()
	cut, restore := f.Cut, f.Restore
	if cfg.Silent {
		cut, restore = f.Silence, f.Unsilence
	}
	if err := cut(c.link); err != nil {
		return nil, err
	}
	// pending: switches whose FIB has not been seen right yet; detecting:
	// ends whose adjacency has not been seen down yet (an end may reroute
	// before its own dead interval runs out, on the other end's LSP).
	detecting := map[string]bool{c.nameA: true, c.nameB: true}
	sweeps, sweepTime := 0, time.Duration(0)
	var last error
	for {
		for len(pending)+len(detecting) > 0 {
			if time.Since(m.cutAt) > cfg.Timeout {
				health := ""
				if snaps, err := f.Snapshots(ctx); err == nil {
					health = harness.Health(snaps)
				}
				return nil, fmt.Errorf("not converged after %v (%d switches pending, detection %v): %v (%s)",
					cfg.Timeout, len(pending), detected, last, health)
			}
			sweepStart := time.Now()
			poll := maps.Clone(pending)
			maps.Copy(poll, detecting)
			for _, n := range sortedKeys(poll) {
				s, err := f.Snapshot(ctx, n)
				if err != nil {
					return nil, err
				}
				at := time.Since(m.cutAt)
				if detecting[n] && !adjUp(s, endPort[n]) {
					detected[n] = since(m.cutAt, adjChanged(s, endPort[n]), at)
					delete(detecting, n)
				}
				if !pending[n] {
					continue
				}
				if last = harness.Matches(s, c.want[n]); last == nil {
					done[n] = since(m.cutAt, s.FIBWrittenAt, at)
					delete(pending, n)
				}
			}
			sweeps++
			took := time.Since(sweepStart)
			sweepTime += took
			if took < cfg.PollInterval {
				time.Sleep(cfg.PollInterval - took)
			}
		}
		// Stable: every switch, changed or not, holds SPF's routes now. A
		// switch that moved on after it was seen converged goes back to
		// polling, and its time with it. (The LSDBs may still differ for a
		// moment, by a fragment that changes no route; the wait after the
		// restore checks them.)
		snaps, err := f.Snapshots(ctx)
		if err != nil {
			return nil, err
		}
		for n, s := range snaps {
			if err := harness.Matches(s, c.want[n]); err != nil {
				pending[n] = true
				last = err
			}
		}
		if len(pending) == 0 {
			break
		}
	}
	m.CPU = cpu.Since()
	for _, n := range []string{c.nameA, c.nameB} {
		m.Detect = max(m.Detect, detected[n])
	}
	m.DetectFirst = min(detected[c.nameA], detected[c.nameB])
	for _, d := range done {
		m.Converged = max(m.Converged, d)
	}
	if sweeps > 0 {
		m.Sweep = sweepTime / time.Duration(sweeps)
	}
	for _, end := range []string{c.nameA, c.nameB} {
		if c.want[end].UsesPort(endPort[end]) {
			return nil, fmt.Errorf("SPF's routes of %s still use the cut port %d", end, endPort[end])
		}
	}
	if cfg.Verify {
		if err := f.VerifySwitches(ctx, c.want); err != nil {
			return nil, err
		}
	}
	m.restoreAt = time.Now()
	if err := restore(c.link); err != nil {
		return nil, err
	}
	return m, nil
}

// since is when an agent says something happened (its own clock, the
// snapshot's timestamps), as time after start; polled, when it was seen,
// is the fallback for a timestamp from before start.
func since(start, stamp time.Time, polled time.Duration) time.Duration {
	if stamp.After(start) {
		return stamp.Sub(start)
	}
	return polled
}

// adjChanged is when s's adjacency on port last changed state.
func adjChanged(s controller.Snapshot, port uint16) time.Time {
	for _, n := range s.Neighbors {
		if n.Port == port {
			return n.Changed
		}
	}
	return time.Time{}
}

// adjUp reports whether s shows its adjacency on port up.
func adjUp(s controller.Snapshot, port uint16) bool {
	for _, n := range s.Neighbors {
		if n.Port == port {
			return n.State == controller.AdjUp
		}
	}
	return false
}

func originated(snaps map[string]controller.Snapshot) uint64 {
	var n uint64
	for _, s := range snaps {
		n += s.Counters.LSPsOriginated
	}
	return n
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// Steady is a fabric left alone at steady state.
type Steady struct {
	Ports int
	// HellosPerSecond and ProbesPerSecond are what the agents sent and
	// answered.
	HellosPerSecond, ProbesPerSecond float64
	CPU                              harness.CPUWindow
	// PerHello is the process's CPU time per HELLO sent (each one crosses
	// two P4Runtime streams and two switches and is received by an agent):
	// with probing off, what one HELLO costs.
	PerHello time.Duration
	// Originated counts LSPs originated in the window: any means an
	// adjacency flapped.
	Originated uint64
}

// SteadyLoad starts t, waits for it to converge, and measures the control
// plane's CPU use over window with nothing changing.
func SteadyLoad(ctx context.Context, t *topo.Topology, timers controller.Timers, probe controller.ProbeConfig, window time.Duration) (*Steady, error) {
	base, err := harness.Model{Topo: t}.FIBs()
	if err != nil {
		return nil, err
	}
	f, err := harness.Start(ctx, t, topo.AgentOptions{Timers: timers,
		Configure: func(node string, c *controller.Config) { c.Probe = probe }})
	if err != nil {
		return nil, err
	}
	defer f.Close()
	before, err := f.WaitFIBs(ctx, base, time.Minute)
	if err != nil {
		return nil, err
	}
	s := harness.SampleCPU()
	if err := sleep(ctx, window); err != nil {
		return nil, err
	}
	w := s.Since()
	after, err := f.Snapshots(ctx)
	if err != nil {
		return nil, err
	}
	r := &Steady{CPU: w}
	var hellos, probes uint64
	for n, a := range after {
		b := before[n]
		r.Ports += len(a.Neighbors)
		hellos += a.Counters.HellosSent - b.Counters.HellosSent
		probes += a.Counters.ProbesAnswered - b.Counters.ProbesAnswered
		r.Originated += a.Counters.LSPsOriginated - b.Counters.LSPsOriginated
	}
	r.HellosPerSecond = float64(hellos) / w.Wall.Seconds()
	r.ProbesPerSecond = float64(probes) / w.Wall.Seconds()
	if hellos > 0 {
		r.PerHello = time.Duration(w.Cores * float64(w.Wall) / float64(hellos))
	}
	return r, nil
}
