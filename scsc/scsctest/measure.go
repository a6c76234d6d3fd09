package scsctest

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"runtime"
	"time"

	"github.com/dmsc-mesh/dmsc/scsc"
)

// GenerateSpec makes a connected fabric of nodes switches, the first sgs of
// them SGs (sg0, sg1, ...) and the rest SRs (sr<n>): a ring of the SRs with
// random chords up to about degree links per SR, each SG attached to two
// SRs. Each of services services (/svc<n>/api) is hosted at two SGs with one
// instance each; each SG probes probesPerSG services. Links have 1 ms, 1
// Gbit/s and metric 10. Only the first lsdbAgents nodes publish the LSDB.
func GenerateSpec(nodes, sgs, services, probesPerSG, degree, lsdbAgents int, seed uint64) Spec {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	srs := nodes - sgs
	name := func(i int) string {
		if i < sgs {
			return fmt.Sprintf("sg%d", i)
		}
		return fmt.Sprintf("sr%d", i-sgs)
	}
	var spec Spec
	for i := range nodes {
		spec.Nodes = append(spec.Nodes, NodeSpec{Name: name(i), SG: i < sgs, NoLSDB: i >= lsdbAgents})
	}
	link := func(a, b int) LinkSpec {
		return LinkSpec{A: name(a), B: name(b), Metric: 10, Delay: time.Millisecond, CapacityBps: 1e9}
	}
	has := map[[2]int]bool{}
	add := func(a, b int) {
		if a == b || has[[2]int{a, b}] || has[[2]int{b, a}] {
			return
		}
		has[[2]int{a, b}] = true
		spec.Links = append(spec.Links, link(a, b))
	}
	for i := range srs {
		add(sgs+i, sgs+(i+1)%srs)
	}
	for range srs * max(degree-2, 0) / 2 {
		add(sgs+rng.IntN(srs), sgs+rng.IntN(srs))
	}
	for i := range sgs {
		add(i, sgs+rng.IntN(srs))
		add(i, sgs+rng.IntN(srs))
	}
	for s := range services {
		a, b := rng.IntN(sgs), rng.IntN(sgs)
		hosts := map[string][]uint32{name(a): {1}}
		if b != a {
			hosts[name(b)] = []uint32{2}
		}
		spec.Services = append(spec.Services, ServiceSpec{Name: fmt.Sprintf("/svc%d/api", s), Hosts: hosts})
	}
	for i := range sgs {
		for range probesPerSG {
			s := spec.Services[rng.IntN(services)].Name
			spec.Nodes[i].Probes = append(spec.Nodes[i].Probes, s)
		}
	}
	return spec
}

// MeasureOptions size a measurement.
type MeasureOptions struct {
	Nodes, SGs, Services, ProbesPerSG int
	SampleInterval                    time.Duration // SCSC's and the agents' publishing interval
	Warmup, Duration                  time.Duration
}

// Measurement is what Measure found.
type Measurement struct {
	Agents, Connected int
	// CPU is the process's CPU time (user+system) over Duration, fake agents
	// included; AgentsCPU is the same fabric's over an equal time without
	// SCSC, so CPU-AgentsCPU is SCSC's share (and the targets' work of
	// serving it).
	CPU, AgentsCPU time.Duration
	Duration       time.Duration
	// Ingested is the readings SCSC applied over Duration.
	Ingested uint64
	// HeapInuse is after a GC at the end, with SCSC and the fabric live;
	// AgentsHeap the same before SCSC started.
	HeapInuse, AgentsHeap uint64
}

func (m Measurement) String() string {
	scscCPU := m.CPU - m.AgentsCPU
	return fmt.Sprintf("%d agents (%d connected): SCSC %.3f CPU-s/s (process %.3f, agents alone %.3f), %.0f readings/s ingested, heap %.1f MiB (agents alone %.1f MiB)",
		m.Agents, m.Connected, scscCPU.Seconds()/m.Duration.Seconds(), m.CPU.Seconds()/m.Duration.Seconds(),
		m.AgentsCPU.Seconds()/m.Duration.Seconds(), float64(m.Ingested)/m.Duration.Seconds(),
		float64(m.HeapInuse)/(1<<20), float64(m.AgentsHeap)/(1<<20))
}

// Measure runs SCSC against an in-process fabric of fake agents streaming
// telemetry and reports its CPU time and heap: first the fabric alone for
// Duration, then with SCSC for Warmup (connection, initial sync) and
// Duration. It is the standalone measurement the bench runner calls.
func Measure(ctx context.Context, o MeasureOptions) (Measurement, error) {
	if o.SampleInterval == 0 {
		o.SampleInterval = time.Second
	}
	spec := GenerateSpec(o.Nodes, o.SGs, o.Services, o.ProbesPerSG, 4, 2, 1)
	fab, err := New(spec, Options{Interval: o.SampleInterval, Quiet: true, StaticProbes: true})
	if err != nil {
		return Measurement{}, err
	}
	defer fab.Close()
	m := Measurement{Agents: o.Nodes, Duration: o.Duration}

	time.Sleep(o.SampleInterval)
	m.AgentsHeap = heapInuse()
	c0 := cpuTime()
	if !sleepCtx(ctx, o.Duration) {
		return m, ctx.Err()
	}
	m.AgentsCPU = cpuTime() - c0

	cfg := scsc.DefaultConfig()
	cfg.ID = "scsc1"
	cfg.Agents = fab.Agents()
	cfg.SampleInterval = o.SampleInterval
	for _, s := range spec.Services {
		sc, err := scsc.NewService(s.Name, scsc.Thresholds{MaxDelay: 10 * time.Millisecond, MaxJitter: 5 * time.Millisecond})
		if err != nil {
			return m, err
		}
		cfg.Services = append(cfg.Services, sc)
	}
	center, err := scsc.New(&cfg, scsc.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		return m, err
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- center.Run(rctx) }()
	defer func() {
		cancel()
		<-done
	}()
	if !sleepCtx(ctx, o.Warmup) {
		return m, ctx.Err()
	}
	in0 := center.Status().Ingested
	c0 = cpuTime()
	if !sleepCtx(ctx, o.Duration) {
		return m, ctx.Err()
	}
	m.CPU = cpuTime() - c0
	st := center.Status()
	m.Ingested = st.Ingested - in0
	for _, a := range st.Agents {
		if a.Connected {
			m.Connected++
		}
	}
	m.HeapInuse = heapInuse()
	return m, nil
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

func heapInuse() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}
