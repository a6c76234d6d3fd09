package grpcbench

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"

	echopb "github.com/dmsc-mesh/dmsc/api/echo"
	"github.com/dmsc-mesh/dmsc/topo"
)

var (
	payload  = flag.Int("grpc.payload", DefaultPayload, "payload bytes of each Echo call")
	callers  = flag.Int("grpc.callers", 64, "concurrent callers of the concurrent benchmarks")
	pods     = flag.Int("grpc.pods", 50, "pods BenchmarkPodMemory starts")
	cpuProf  = flag.String("grpc.cpuprofile", "", "profile each path's unary and concurrent loops (setup and warm-up left out) into PREFIX-<path>-<unary|concurrent>.pprof")
	heapProf = flag.String("grpc.heapprofile", "", "BenchmarkPodMemory writes the heap profile with the pods idle into PREFIX-<mem|udp>")
	verbose  = flag.Bool("grpc.log", false, "log the fabric's agents and pods to stderr")
)

func logger() *slog.Logger {
	if *verbose {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// starter starts one path; dir is a fresh directory for its files.
type starter struct {
	name  string
	start func(ctx context.Context, dir string) (*Path, error)
	// nginx paths are skipped when nginx is not usable.
	nginx bool
}

func starters() []starter {
	return []starter{
		{name: Direct, start: func(ctx context.Context, _ string) (*Path, error) { return StartDirect(ctx) }},
		{name: DirectTLS, start: func(ctx context.Context, _ string) (*Path, error) { return StartDirectTLS(ctx) }},
		{name: Nginx2, nginx: true, start: func(ctx context.Context, dir string) (*Path, error) { return StartNginx(ctx, dir, false) }},
		{name: Nginx2MTLS, nginx: true, start: func(ctx context.Context, dir string) (*Path, error) { return StartNginx(ctx, dir, true) }},
		{name: DMSC, start: func(ctx context.Context, _ string) (*Path, error) { return StartDMSC(ctx, false, logger()) }},
		{name: DMSCUDP, start: func(ctx context.Context, _ string) (*Path, error) { return StartDMSC(ctx, true, logger()) }},
	}
}

// TestPaths: every path answers calls with the payload intact, one after
// the other and concurrently, and the nginx processes report memory and
// stop when the path closes.
func TestPaths(t *testing.T) {
	for _, s := range starters() {
		t.Run(s.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			p, err := s.start(ctx, t.TempDir())
			if s.nginx && errors.Is(err, ErrNoNginx) {
				t.Skipf("skipping the %s peer: %v", s.name, err)
			}
			if err != nil {
				t.Fatal(err)
			}
			closed := false
			defer func() {
				if !closed {
					p.Close()
				}
			}()
			if p.Name != s.name {
				t.Errorf("path %q, want %q", p.Name, s.name)
			}
			c := NewCaller(p.Echo, 64)
			var before uint64
			if p.Fabric != nil {
				before = srFrames(t, p.Fabric)
			}
			d, err := c.Sequential(ctx, 20)
			if err != nil {
				t.Fatal(err)
			}
			if sum := d.Summarize(); sum.N != 20 || sum.P50 <= 0 || sum.Max < sum.P99 || sum.P99 < sum.P50 {
				t.Errorf("20 calls: %v", sum)
			}
			if p.Fabric != nil {
				// Each call is a request and a reply, at least one frame
				// each, through both SRs; the HELLOs of those ports in the
				// same milliseconds are a handful.
				n := srFrames(t, p.Fabric) - before
				t.Logf("20 calls: %d frames out of sr1 and sr2", n)
				if n < 2*2*20 {
					t.Errorf("20 calls: %d frames out of sr1 and sr2, want at least 80", n)
				}
			}
			r, err := c.Load(ctx, 4, 100*time.Millisecond)
			if err != nil {
				t.Fatal(err)
			}
			if r.Calls < 4 || len(r.Latency) != r.Calls || r.PerSecond() <= 0 {
				t.Errorf("4 callers for 100 ms: %d calls, %d samples, %.0f/s", r.Calls, len(r.Latency), r.PerSecond())
			}
			if s.nginx {
				if len(p.Proxies) != 2 {
					t.Fatalf("%d proxies, want 2", len(p.Proxies))
				}
				for _, n := range p.Proxies {
					if rss, pss, err := n.Memory(); err != nil || pss <= 0 || rss < pss {
						t.Errorf("nginx on %s: RSS %d, PSS %d, %v", n.Addr, rss, pss, err)
					}
				}
			}
			closed = true
			if err := p.Close(); err != nil {
				t.Error(err)
			}
			for _, n := range p.Proxies {
				select {
				case <-n.exited:
				default:
					t.Errorf("nginx %d on %s still runs after Close", n.cmd.Process.Pid, n.Addr)
				}
			}
		})
	}
}

// srFrames is the frames sent by every port of sr1 and sr2.
func srFrames(t *testing.T, f *Fabric) uint64 {
	t.Helper()
	var n uint64
	for _, sr := range []string{"sr1", "sr2"} {
		sw := f.Lab.Fabric.Switches[sr].SW
		for _, port := range sw.Ports() {
			ps, err := sw.PortStats(port)
			if err != nil {
				t.Fatal(err)
			}
			n += ps.TxFrames
		}
	}
	return n
}

// truncating answers with all but the last byte of the payload.
type truncating struct{ echopb.EchoClient }

func (truncating) Echo(_ context.Context, in *echopb.EchoRequest, _ ...grpc.CallOption) (*echopb.EchoReply, error) {
	return &echopb.EchoReply{Payload: in.GetPayload()[:len(in.GetPayload())-1]}, nil
}

// TestPayloadChecked: a reply that does not carry the payload back is an
// error, not a fast call.
func TestPayloadChecked(t *testing.T) {
	c := NewCaller(truncating{}, 8)
	if err := c.Call(context.Background()); err == nil {
		t.Fatal("a reply with 7 of the 8 bytes passed")
	}
	if _, err := c.Sequential(context.Background(), 3); err == nil {
		t.Fatal("Sequential: a reply with 7 of the 8 bytes passed")
	}
	if _, err := c.Load(context.Background(), 2, 50*time.Millisecond); err == nil {
		t.Fatal("Load: a reply with 7 of the 8 bytes passed")
	}
}

func TestSummarize(t *testing.T) {
	us := func(n ...int) Durations {
		d := make(Durations, len(n))
		for i, x := range n {
			d[i] = time.Duration(x) * time.Microsecond
		}
		return d
	}
	hundred := make([]int, 100)
	for i := range hundred {
		hundred[i] = 100 - i // descending: Summarize must sort
	}
	for _, tc := range []struct {
		name string
		in   Durations
		want Summary
	}{
		{"none", nil, Summary{}},
		{"one", us(7), Summary{N: 1, P50: 7 * time.Microsecond, P99: 7 * time.Microsecond, Mean: 7 * time.Microsecond, Max: 7 * time.Microsecond}},
		{"hundred", us(hundred...), Summary{N: 100, P50: 50 * time.Microsecond, P99: 99 * time.Microsecond, Mean: 50500 * time.Nanosecond, Max: 100 * time.Microsecond}},
		{"ten", us(10, 1, 2, 3, 4, 5, 6, 7, 8, 9), Summary{N: 10, P50: 5 * time.Microsecond, P99: 10 * time.Microsecond, Mean: 5500 * time.Nanosecond, Max: 10 * time.Microsecond}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.in.Summarize(); got != tc.want {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func TestTopology(t *testing.T) {
	tp, err := Topology(3)
	if err != nil {
		t.Fatal(err)
	}
	if len(tp.Nodes) != 4 || len(tp.Links) != 3 {
		t.Fatalf("%d nodes, %d links; want sg1 – sr1 – sr2 – sg2", len(tp.Nodes), len(tp.Links))
	}
	for _, l := range tp.Links {
		if l.Delay != 0 || l.Capacity != 0 {
			t.Errorf("link %s – %s: delay %v, capacity %d; want neither", l.A, l.B, l.Delay, l.Capacity)
		}
	}
	for _, sg := range []string{"sg1", "sg2"} {
		if n := tp.Nodes[sg]; n.Role != topo.RoleSG || !slices.Equal(n.PodPorts, []uint16{10, 11, 12}) {
			t.Errorf("%s: role %s, pod ports %v", sg, n.Role, n.PodPorts)
		}
	}
}

// TestPodMemory: pods started for the measurement are counted, their
// goroutines show up, and connecting to them costs more than leaving them
// idle.
func TestPodMemory(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	m, err := MeasurePodMemory(ctx, PodMemoryOptions{Pods: 4, Logger: logger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("idle %+v, connected %+v, start %v", m.Idle, m.Connected, m.Start)
	if m.Pods != 4 || m.Start <= 0 {
		t.Errorf("pods %d, start %v", m.Pods, m.Start)
	}
	if m.Idle.Goroutines < 4 || m.Connected.Goroutines <= m.Idle.Goroutines {
		t.Errorf("goroutines: idle +%d, connected +%d; want each pod's reader, then each connection's", m.Idle.Goroutines, m.Connected.Goroutines)
	}
	if m.Idle.Heap <= 0 || m.Connected.Heap <= m.Idle.Heap {
		t.Errorf("heap: idle %+d, connected %+d bytes", m.Idle.Heap, m.Connected.Heap)
	}
}

func TestMeasurePodMemoryRejectsNoPods(t *testing.T) {
	if _, err := MeasurePodMemory(context.Background(), PodMemoryOptions{Logger: logger()}); err == nil {
		t.Fatal("0 pods accepted")
	}
}

// BenchmarkGRPC measures each path in turn, each started just before it
// is measured and stopped after (so that no other path's goroutines or
// processes run meanwhile):
//
//   - <path>/unary: sequential calls, b.N of them; p50-µs, p99-µs and
//     mean-µs are their latencies.
//   - <path>/concurrent-64: -grpc.callers goroutines calling on one
//     ClientConn; calls/s and the latencies under that load. The nginx
//     paths add proxy-RSS-MB and proxy-PSS-MB, the resident memory of one
//     nginx (master and worker) after the load (Nginx.Memory).
//
// The dmsc paths add dropped, the frames the fabric lost meanwhile
// (Fabric.Dropped).
func BenchmarkGRPC(b *testing.B) {
	for _, s := range starters() {
		b.Run(s.name, func(b *testing.B) {
			ctx := context.Background()
			p, err := s.start(ctx, b.TempDir())
			if s.nginx && err != nil {
				// Without -v a skipped benchmark prints nothing; the
				// report must say the peer is missing and why.
				fmt.Fprintf(os.Stderr, "BenchmarkGRPC/%s: skipped: %v\n", s.name, err)
				b.Skipf("skipping the %s peer: %v", s.name, err)
			}
			if err != nil {
				b.Fatal(err)
			}
			defer func() {
				if err := p.Close(); err != nil {
					b.Error(err)
				}
			}()
			c := NewCaller(p.Echo, *payload)
			if _, err := c.Sequential(ctx, 2000); err != nil {
				b.Fatal(err)
			}
			if _, err := c.Load(ctx, *callers, 500*time.Millisecond); err != nil {
				b.Fatal(err)
			}
			// dropped reports the fabric's lost frames during a
			// sub-benchmark: each is a QUIC retransmission in the tail.
			dropped := func() func(b *testing.B) {
				if p.Fabric == nil {
					return func(*testing.B) {}
				}
				before := p.Fabric.Dropped()
				return func(b *testing.B) { b.ReportMetric(float64(p.Fabric.Dropped()-before), "dropped") }
			}
			b.Run("unary", func(b *testing.B) {
				defer dropped()(b)
				defer profile(b, s.name, "unary")()
				samples := make(Durations, 0, 1<<16)
				for b.Loop() {
					d, err := c.Timed(ctx)
					if err != nil {
						b.Fatal(err)
					}
					samples = append(samples, d)
				}
				report(b, samples.Summarize())
			})
			b.Run(fmt.Sprintf("concurrent-%d", *callers), func(b *testing.B) {
				defer dropped()(b)
				procs := runtime.GOMAXPROCS(0)
				b.SetParallelism((*callers + procs - 1) / procs)
				var (
					mu  sync.Mutex
					all Durations
				)
				stop := profile(b, s.name, "concurrent")
				b.ResetTimer()
				b.RunParallel(func(pb *testing.PB) {
					var mine Durations
					for pb.Next() {
						d, err := c.Timed(ctx)
						if err != nil {
							b.Error(err)
							return
						}
						mine = append(mine, d)
					}
					mu.Lock()
					all = append(all, mine...)
					mu.Unlock()
				})
				b.StopTimer()
				stop()
				b.ReportMetric(float64(len(all))/b.Elapsed().Seconds(), "calls/s")
				report(b, all.Summarize())
				if len(p.Proxies) > 0 {
					var rss, pss int64
					for _, n := range p.Proxies {
						r, p, err := n.Memory()
						if err != nil {
							b.Fatal(err)
						}
						rss, pss = rss+r, pss+p
					}
					n := float64(len(p.Proxies))
					b.ReportMetric(float64(rss)/n/1e6, "proxy-RSS-MB")
					b.ReportMetric(float64(pss)/n/1e6, "proxy-PSS-MB")
				}
			})
		})
	}
}

// profile starts a CPU profile of what follows when -grpc.cpuprofile is
// set and returns what stops it; the concurrent benchmark runs several
// times while the framework finds b.N, and the last run's profile stays.
func profile(b *testing.B, path, what string) (stop func()) {
	if *cpuProf == "" {
		return func() {}
	}
	f, err := os.Create(fmt.Sprintf("%s-%s-%s.pprof", *cpuProf, path, what))
	if err != nil {
		b.Fatal(err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		b.Fatal(err)
	}
	return func() {
		pprof.StopCPUProfile()
		if err := f.Close(); err != nil {
			b.Error(err)
		}
	}
}

func report(b *testing.B, s Summary) {
	b.ReportMetric(Micros(s.P50), "p50-µs")
	b.ReportMetric(Micros(s.P99), "p99-µs")
	b.ReportMetric(Micros(s.Mean), "mean-µs")
}

// BenchmarkPodMemory: -grpc.pods Echo pods, registered and serving, then
// each called once over its own connection; each iteration is a whole
// measurement on a fresh fabric, and the figures are means over them.
// mem attaches the pods over the lab's in-memory links, udp over UDP
// tunnels (whose queues are the kernel's, outside the process).
func BenchmarkPodMemory(b *testing.B) {
	for _, link := range []string{"mem", "udp"} {
		b.Run(link, func(b *testing.B) {
			var sum PodMemory
			runs := 0
			for b.Loop() {
				opts := PodMemoryOptions{Pods: *pods, UDPPods: link == "udp", Logger: logger()}
				if *heapProf != "" {
					opts.HeapProfile = *heapProf + "-" + link
				}
				m, err := MeasurePodMemory(context.Background(), opts)
				if err != nil {
					b.Fatal(err)
				}
				sum.Idle = add(sum.Idle, m.Idle)
				sum.Connected = add(sum.Connected, m.Connected)
				sum.Start += m.Start
				runs++
			}
			per := float64(runs * *pods)
			kb := func(x int64) float64 { return float64(x) / per / 1e3 }
			b.ReportMetric(float64(*pods), "pods")
			b.ReportMetric(kb(sum.Idle.Heap), "heap-kB/pod")
			b.ReportMetric(kb(sum.Idle.Stack), "stack-kB/pod")
			b.ReportMetric(kb(sum.Idle.RSS), "RSS-kB/pod")
			b.ReportMetric(float64(sum.Idle.Goroutines)/per, "goroutines/pod")
			b.ReportMetric(kb(sum.Connected.Heap), "conn-heap-kB/pod")
			b.ReportMetric(kb(sum.Connected.Stack), "conn-stack-kB/pod")
			b.ReportMetric(kb(sum.Connected.RSS), "conn-RSS-kB/pod")
			b.ReportMetric(float64(sum.Connected.Goroutines)/per, "conn-goroutines/pod")
			b.ReportMetric(float64(sum.Start)/float64(time.Millisecond)/per, "start-ms/pod")
		})
	}
}

func add(a, b Usage) Usage {
	return Usage{Heap: a.Heap + b.Heap, Stack: a.Stack + b.Stack, RSS: a.RSS + b.RSS, Goroutines: a.Goroutines + b.Goroutines}
}

func TestParseSmapsRollup(t *testing.T) {
	const good = `558ba5f5a000-7ffe2d681000 ---p 00000000 00:00 0                          [rollup]
Rss:                1708 kB
Pss:                 276 kB
Pss_Dirty:           112 kB
`
	m, err := parseSmapsRollup([]byte(good))
	if err != nil {
		t.Fatal(err)
	}
	if m["Rss"] != 1708<<10 || m["Pss"] != 276<<10 || m["Pss_Dirty"] != 112<<10 || len(m) != 3 {
		t.Errorf("got %v", m)
	}
	for _, bad := range []string{"", "Pss: 12 kB\n", "Rss: x kB\n", "Rss: -4 kB\n", "Rss: 99999999999999999999 kB\n"} {
		if m, err := parseSmapsRollup([]byte(bad)); err == nil {
			t.Errorf("%q: got %v, want an error", bad, m)
		}
	}
}

func FuzzParseSmapsRollup(f *testing.F) {
	f.Add([]byte("Rss: 1 kB\nPss: 1 kB\n"))
	f.Add([]byte("x\nRss:\t\t7 kB\nSwap: 0 kB\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := parseSmapsRollup(b)
		if err != nil {
			return
		}
		if _, ok := m["Rss"]; !ok {
			t.Fatalf("no error and no Rss: %v", m)
		}
		for k, v := range m {
			if v < 0 {
				t.Fatalf("%s: negative size %d", k, v)
			}
		}
	})
}
