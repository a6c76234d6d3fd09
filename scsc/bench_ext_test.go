package scsc_test

import (
	"context"
	"testing"
	"time"

	"github.com/dmsc-mesh/dmsc/scsc/scsctest"
)

// BenchmarkCenter1000Agents runs SCSC against 1,000 in-process fake agents
// (200 SGs probing 10 services each, with their instances; 1,000 services)
// streaming telemetry every second, and reports SCSC's CPU share and the
// heap (scsctest.Measure). One run takes about 20 s; run it with
// -benchtime 1x.
func BenchmarkCenter1000Agents(b *testing.B) {
	for b.Loop() {
		m, err := scsctest.Measure(context.Background(), scsctest.MeasureOptions{
			Nodes: 1000, SGs: 200, Services: 1000, ProbesPerSG: 10,
			SampleInterval: time.Second, Warmup: 8 * time.Second, Duration: 5 * time.Second,
		})
		if err != nil {
			b.Fatal(err)
		}
		if m.Connected != m.Agents {
			b.Fatalf("only %d of %d agents connected: %v", m.Connected, m.Agents, m)
		}
		b.Log(m)
		b.ReportMetric((m.CPU-m.AgentsCPU).Seconds()/m.Duration.Seconds(), "scsc-cpu-s/s")
		b.ReportMetric(float64(m.Ingested)/m.Duration.Seconds(), "readings/s")
		b.ReportMetric(float64(m.HeapInuse-min(m.HeapInuse, m.AgentsHeap))/(1<<20), "scsc-heap-MiB")
	}
}
