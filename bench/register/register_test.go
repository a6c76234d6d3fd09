package register

import (
	"context"
	"flag"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/dmsc-mesh/dmsc/bench/internal/harness"
	"github.com/dmsc-mesh/dmsc/controller"
	"github.com/dmsc-mesh/dmsc/topo"
)

var (
	pods    = flag.Int("register.pods", 10_000, "pods in the burst over three SGs")
	ports   = flag.Int("register.ports", 10, "pod ports per SG in the bursts")
	regs    = flag.Int("register.regs", 20, "registrations measured in the 100-switch fabric")
	nodes   = flag.Int("register.nodes", 100, "switches in the reach fabric")
	sgCount = flag.Int("register.sgs", 10, "SGs in the reach fabric")
	seed    = flag.Uint64("register.seed", 1, "seed of the reach fabric")
	hello   = flag.Duration("register.hello", 250*time.Millisecond, "HELLO interval in the reach fabric (dead: 4×); the default 25 ms needs about 2.9 cores for 100 switches' HELLOs alone (BenchmarkHelloCost)")
	verbose = flag.Bool("register.v", false, "print progress to stderr as it happens (b.Logf shows it only at the end)")
	probes  = flag.Bool("register.probes", false, "agents probe in the reach fabric (the default of the agent; off here to fit 2 cores)")
)

// reachFabric is a random fabric (degree 4) with sgs SGs spread over it,
// one pod port each.
func reachFabric(n, sgs int, seed uint64) *topo.Topology {
	t := topo.Random(n, 4, seed)
	names := t.NodeNames()
	var pick []string
	for i := range min(sgs, len(names)) {
		pick = append(pick, names[i*len(names)/sgs])
	}
	return topo.WithSGs(t, 1, pick...)
}

func looseTimers() controller.Timers {
	t := controller.DefaultTimers()
	t.Hello, t.Dead = 30*time.Millisecond, 300*time.Millisecond
	return t
}

// TestSmokeBurst: 60 pods over two SGs' three ports each all register,
// each once SPA said yes, and the SR beyond learns every prefix.
func TestSmokeBurst(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	r, err := Burst(ctx, BurstConfig{Pods: 60, SGs: 2, Ports: 3, Window: 16, Dir: t.TempDir(), Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Latency) != 60 || r.SPACalls < 60 || r.Proofs < 60 || r.Spread < r.Elapsed {
		t.Errorf("%d accepted, %d SPA calls, %d proofs, spread %v before the last accept %v", len(r.Latency), r.SPACalls, r.Proofs, r.Spread, r.Elapsed)
	}
	if r.DirectRate <= 0 || len(r.DirectLatency) != 60 {
		t.Errorf("direct SPA: %.0f/s over %d calls", r.DirectRate, len(r.DirectLatency))
	}
}

// TestSmokeReach: registrations at three SGs of ten switches reach every
// SG's switch, read back.
func TestSmokeReach(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	r, err := RunReach(ctx, ReachConfig{Topo: reachFabric(10, 3, 1), Registrations: 4, Timers: looseTimers(),
		Verify: true, Dir: t.TempDir(), Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Regs) != 4 || r.SGs != 3 {
		t.Fatalf("%d registrations at %d SGs", len(r.Regs), r.SGs)
	}
	for _, x := range r.Regs {
		if x.Accept <= 0 || x.Challenge > x.Accept || x.FromAnnounce < x.FromAccept {
			t.Errorf("%s: challenge %v, accept %v, everywhere %v after ANNOUNCE and %v after ACCEPT: out of order",
				x.Prefix, x.Challenge, x.Accept, x.FromAnnounce, x.FromAccept)
		}
	}
}

// BenchmarkBurst: pods with distinct prefixes register through SGs with
// 10 pod ports each (per-port limits lifted), beside SPA called directly
// with 64 requests in flight. Variants: 10,000 pods at one SG (the issue's
// burst; one SG's switch holds at most 16,384 local instances), 64
// registrations under way at a time, probing off; the same over 3 SGs;
// and 2,000 pods at one SG all at once with the default probing (an SG
// probes every service and instance every 100 ms), where SPA's queue
// outgrows the client's 3 s retry budget and pods retry.
func BenchmarkBurst(b *testing.B) {
	noProbes := controller.ProbeConfig{Interval: -1}
	for _, v := range []struct {
		pods, sgs, window int
		probe             controller.ProbeConfig
		name              string
	}{
		{*pods, 1, 64, noProbes, "noprobes"},
		{*pods, 3, 64, noProbes, "noprobes"},
		{2000, 1, 0, controller.ProbeConfig{}, "probes"},
	} {
		window := fmt.Sprint(v.window)
		if v.window == 0 {
			window = "all"
		}
		b.Run(fmt.Sprintf("pods=%d/sgs=%d/window=%s/%s", v.pods, v.sgs, window, v.name), func(b *testing.B) {
			burst(b, BurstConfig{Pods: v.pods, SGs: v.sgs, Ports: *ports, Window: v.window, Probe: v.probe})
		})
	}
}

// logger is b.Logf, or with -register.v an immediate print to stderr.
func logger(b *testing.B) func(string, ...any) {
	if !*verbose {
		return b.Logf
	}
	start := time.Now()
	return func(format string, args ...any) {
		fmt.Fprintf(os.Stderr, "%7.1fs %s: %s\n", time.Since(start).Seconds(), b.Name(), fmt.Sprintf(format, args...))
	}
}

func burst(b *testing.B, cfg BurstConfig) {
	{
		cfg.Dir, cfg.Logf = b.TempDir(), logger(b)
		r, err := Burst(context.Background(), cfg)
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(r.Elapsed.Seconds(), "to-last-accept-s")
		b.ReportMetric(float64(r.Pods)/r.Elapsed.Seconds(), "accepts/s")
		b.ReportMetric(harness.Ms(r.Latency.Quantile(0.5)), "reg-p50-ms")
		b.ReportMetric(harness.Ms(r.Latency.Quantile(0.99)), "reg-p99-ms")
		b.ReportMetric(r.Rate(), "spa-decisions/s")
		b.ReportMetric(harness.Ms(r.SPALatency.Quantile(0.5)), "spa-p50-ms")
		b.ReportMetric(harness.Ms(r.SPALatency.Quantile(0.99)), "spa-p99-ms")
		b.ReportMetric(float64(r.SPAMaxInFlight), "spa-in-flight")
		b.ReportMetric(r.DirectRate, "direct-spa-decisions/s")
		b.ReportMetric(harness.Ms(r.DirectLatency.Quantile(0.5)), "direct-spa-p50-ms")
		b.ReportMetric(float64(r.Announces-r.Pods), "announce-retries")
		b.ReportMetric(float64(r.LinkFull), "link-full")
		b.ReportMetric(r.Spread.Seconds(), "spread-s")
		b.ReportMetric(r.Issue.Seconds(), "issue-s")
		b.Logf("rejects %v", r.Rejects)
	}
}

// BenchmarkReach: registrations at the 10 SGs of a 100-switch fabric in
// turn, each until every SG's switch holds the service prefix; isolated
// (1.2 s apart: every SPF back-off back to QUIET) and back to back. The
// fabric comes up link by link, with HELLOs every 250 ms and probing off
// (-register.hello, -register.probes): at the defaults the 100 switches'
// control traffic alone needs more than the 2 cores of the machine the
// figures come from.
func BenchmarkReach(b *testing.B) {
	t := reachFabric(*nodes, *sgCount, *seed)
	tm := controller.DefaultTimers()
	tm.Hello, tm.Dead = *hello, 4**hello
	var probe controller.ProbeConfig
	if !*probes {
		probe.Interval = -1
	}
	for _, v := range []struct {
		name    string
		spacing time.Duration
	}{{"isolated", 1200 * time.Millisecond}, {"back-to-back", 0}} {
		b.Run(fmt.Sprintf("%s/hello%d/%s", t.Name, tm.Hello.Milliseconds(), v.name), func(b *testing.B) {
			r, err := RunReach(context.Background(), ReachConfig{Topo: t, Registrations: *regs, Spacing: v.spacing,
				Timers: tm, Probe: probe, Gradual: true, Verify: true, Dir: b.TempDir(), Logf: logger(b)})
			if err != nil {
				b.Fatal(err)
			}
			accept := r.samples(func(x Reach) time.Duration { return x.Accept })
			fromAcc := r.samples(func(x Reach) time.Duration { return x.FromAccept })
			fromAnn := r.samples(func(x Reach) time.Duration { return x.FromAnnounce })
			decide := r.samples(func(x Reach) time.Duration { return x.Decide })
			spa := r.samples(func(x Reach) time.Duration { return x.SPA })
			var sweep float64
			for _, x := range r.Regs {
				sweep += harness.Ms(x.Sweep)
			}
			b.ReportMetric(float64(len(r.Regs)), "regs")
			b.ReportMetric(harness.Ms(accept.Quantile(0.5)), "accept-p50-ms")
			b.ReportMetric(harness.Ms(accept.Quantile(0.99)), "accept-p99-ms")
			b.ReportMetric(harness.Ms(decide.Quantile(0.5)), "decide-p50-ms")
			b.ReportMetric(harness.Ms(spa.Quantile(0.5)), "spa-p50-ms")
			b.ReportMetric(harness.Ms(fromAcc.Quantile(0.5)), "from-accept-p50-ms")
			b.ReportMetric(harness.Ms(fromAcc.Quantile(0.99)), "from-accept-p99-ms")
			b.ReportMetric(harness.Ms(fromAnn.Quantile(0.5)), "from-announce-p50-ms")
			b.ReportMetric(harness.Ms(fromAnn.Quantile(0.99)), "from-announce-p99-ms")
			b.ReportMetric(sweep/float64(max(len(r.Regs), 1)), "sweep-ms")
			b.Logf("accept %v; after accept %v; after announce %v", accept, fromAcc, fromAnn)
		})
	}
}
