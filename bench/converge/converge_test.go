package converge

import (
	"context"
	"flag"
	"fmt"
	"testing"
	"time"

	"github.com/dmsc-mesh/dmsc/bench/internal/harness"
	"github.com/dmsc-mesh/dmsc/controller"
	"github.com/dmsc-mesh/dmsc/topo"
)

var (
	cuts  = flag.Int("converge.cuts", 20, "link cuts per benchmark")
	nodes = flag.Int("converge.nodes", 100, "switches in the fabric")
	seed  = flag.Uint64("converge.seed", 1, "seed of the topology and of the links cut")
	shape = flag.String("converge.topo", "random", "random (degree 4) or grid (square)")
	sgs   = flag.Int("converge.sgs", 5, "SGs among the nodes")
	quiet = flag.Duration("converge.quiet", 1200*time.Millisecond, "quiet time before each cut (SPF back-off HOLDDOWN is 1 s)")
	hello = flag.Duration("converge.hello", 250*time.Millisecond, "HELLO interval (dead: 4×); the default 25 ms needs about 3 cores for 100 switches' HELLOs alone (BenchmarkHelloCost)")
)

// fabric is the benchmarked topology: a random fabric of average degree 4
// (or a square grid) with a few SGs spread over it.
func fabric(n int, seed uint64, shape string, sgs int) *topo.Topology {
	var t *topo.Topology
	var names []string
	switch shape {
	case "grid":
		w := 1
		for w*w < n {
			w++
		}
		t = topo.Grid(w, w)
	default:
		t = topo.Random(n, 4, seed)
	}
	names = t.NodeNames()
	var pick []string
	for i := range min(sgs, len(names)) {
		pick = append(pick, names[i*len(names)/max(sgs, 1)])
	}
	return topo.WithSGs(t, 0, pick...)
}

// TestSmoke runs three cuts on ten switches, as pulled cables and as
// silent failures, with timers loose enough for a race-enabled run on two
// busy cores (an adjacency that flapped would make the read-back differ
// from SPF's routes): the measurement works and converges to SPF's routes,
// read back from every switch; a cable is detected by its carrier, well
// inside the dead interval, a silent failure only after it. It asserts
// behaviour, not speed.
func TestSmoke(t *testing.T) {
	timers := controller.DefaultTimers()
	timers.Hello, timers.Dead = 50*time.Millisecond, 600*time.Millisecond
	for _, silent := range []bool{false, true} {
		t.Run(fmt.Sprintf("silent=%v", silent), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			res, err := Run(ctx, Config{
				Topo: fabric(10, 3, "random", 2), Timers: timers, Cuts: 3, Seed: 1, Verify: true, Silent: silent,
				Timeout: 20 * time.Second, Logf: t.Logf,
			})
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Cuts) != 3 || res.Nodes != 10 {
				t.Fatalf("%d cuts on %d nodes", len(res.Cuts), res.Nodes)
			}
			seen := map[string]bool{}
			for _, c := range res.Cuts {
				seen[c.Link] = true
				if c.Entries == 0 || c.Switches == 0 {
					t.Errorf("%s: the cut changed no FIB entry", c.Link)
				}
				if c.DetectFirst <= 0 || c.Detect < c.DetectFirst || c.Converged < c.DetectFirst {
					t.Errorf("%s: detect first %v, both %v, converged %v: out of order", c.Link, c.DetectFirst, c.Detect, c.Converged)
				}
				if early := c.DetectFirst < timers.Dead/2; early == silent {
					t.Errorf("%s: detected after %v with a dead interval of %v", c.Link, c.DetectFirst, timers.Dead)
				}
			}
			if len(seen) != 3 {
				t.Errorf("cut links %v: want three different ones", seen)
			}
		})
	}
}

func timers(hello, dead time.Duration) controller.Timers {
	t := controller.DefaultTimers()
	t.Hello, t.Dead = hello, dead
	return t
}

// BenchmarkLinkCut: 100 switches (random, degree 4, 5 SGs), brought up
// link by link, then 20 cuts of links picked at random among those whose
// cut leaves the fabric connected, each restored and followed by a quiet
// time. Two kinds of failure: a pulled cable, whose carrier loss the
// switches report at once (docs/linkstate.md, "Carrier"), and a silent one
// (frames lost, carrier up) that only the HELLO dead interval detects. The
// HELLO interval is -converge.hello (250 ms, dead 1 s) because the
// default 25 ms costs more CPU than a 2-core machine has for 100 switches
// in one process (BenchmarkHelloCost): what follows detection, flooding,
// SPF and FIB writes, is what the cable cut measures; the silent cut adds
// the dead interval to it.
func BenchmarkLinkCut(b *testing.B) {
	t := fabric(*nodes, *seed, *shape, *sgs)
	tm := timers(*hello, 4**hello)
	noProbes := controller.ProbeConfig{Interval: -1}
	for _, silent := range []bool{false, true} {
		kind := "cable"
		if silent {
			kind = "silent"
		}
		b.Run(fmt.Sprintf("%s/%s/hello%d-noprobes", t.Name, kind, tm.Hello.Milliseconds()), func(b *testing.B) {
			res, err := Run(context.Background(), Config{
				Topo: t, Timers: tm, Probe: noProbes, Cuts: *cuts, Seed: *seed, Quiet: *quiet,
				Silent: silent, Verify: true, Gradual: true, Logf: b.Logf,
			})
			if err != nil {
				b.Fatal(err)
			}
			report(b, res)
		})
	}
}

func report(b *testing.B, r *Result) {
	det, conv, after, rest := r.Detect(), r.Converged(), r.AfterDetect(), r.Restore()
	b.ReportMetric(float64(len(r.Cuts)), "cuts")
	b.ReportMetric(harness.Ms(det.Quantile(0.5)), "detect-p50-ms")
	b.ReportMetric(harness.Ms(det.Quantile(0.99)), "detect-p99-ms")
	b.ReportMetric(harness.Ms(conv.Quantile(0.5)), "conv-p50-ms")
	b.ReportMetric(harness.Ms(conv.Quantile(0.99)), "conv-p99-ms")
	b.ReportMetric(harness.Ms(after.Quantile(0.5)), "after-first-detect-p50-ms")
	b.ReportMetric(harness.Ms(after.Quantile(0.99)), "after-first-detect-p99-ms")
	b.ReportMetric(harness.Ms(rest.Quantile(0.5)), "restore-p50-ms")
	var entries, switches, sweep float64
	for _, c := range r.Cuts {
		entries += float64(c.Entries)
		switches += float64(c.Switches)
		sweep += harness.Ms(c.Sweep)
	}
	n := float64(max(len(r.Cuts), 1))
	b.ReportMetric(entries/n, "entries/cut")
	b.ReportMetric(switches/n, "switches/cut")
	b.ReportMetric(sweep/n, "sweep-ms")
	b.ReportMetric(r.CutCPU().Cores, "cut-cores")
	b.ReportMetric(r.Idle.Cores, "idle-cores")
	b.ReportMetric(100*r.Idle.MachineBusy, "machine-busy-%")
	b.ReportMetric(float64(r.QuietOriginations), "quiet-lsps")
	b.ReportMetric(r.Startup.Seconds(), "startup-s")
	b.Logf("detect %v; converged %v; after the first detection %v; restore %v", det, conv, after, rest)
}

// BenchmarkHelloCost: a ring of 20 switches left alone for 5 s at the
// default timers, probing off and on: the CPU time one HELLO costs the
// process (agent, two P4Runtime streams, two switches), and from it the
// cores the HELLOs of the 100-switch fabric (400 fabric ports, one HELLO
// each per 25 ms) need.
func BenchmarkHelloCost(b *testing.B) {
	for _, v := range []struct {
		name  string
		probe controller.ProbeConfig
	}{{"noprobes", controller.ProbeConfig{Interval: -1}}, {"probes", controller.ProbeConfig{}}} {
		b.Run("ring20/"+v.name, func(b *testing.B) {
			s, err := SteadyLoad(context.Background(), topo.Ring(20), controller.DefaultTimers(), v.probe, 5*time.Second)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(s.HellosPerSecond, "hellos/s")
			b.ReportMetric(s.ProbesPerSecond, "probes/s")
			b.ReportMetric(s.CPU.Cores, "cores")
			b.ReportMetric(float64(s.PerHello)/1e3, "cpu-µs/hello")
			b.ReportMetric(float64(s.Originated), "lsps-originated")
			b.ReportMetric(100*s.CPU.MachineBusy, "machine-busy-%")
			hellos100 := 400 / controller.DefaultTimers().Hello.Seconds()
			b.ReportMetric(hellos100*s.CPU.Cores/s.HellosPerSecond, "cores-at-400-ports")
		})
	}
}
