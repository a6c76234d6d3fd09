package memory

import (
	"context"
	"flag"
	"testing"
	"time"
)

var (
	origins   = flag.Int("memory.origins", 1000, "origins announcing prefixes")
	perOrigin = flag.Int("memory.per-origin", 100, "service prefixes per origin")
)

// TestSmoke: a small world reaches the agent's switch in full, and the
// measurements come out positive.
func TestSmoke(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	w := NewWorld("r1", 9, 20, 300, 1)
	if len(w.LSPs) <= 21 {
		t.Fatalf("%d LSPs for 21 origins with 300 prefixes each: nothing was fragmented", len(w.LSPs))
	}
	m, err := DataModel(w)
	if err != nil {
		t.Fatal(err)
	}
	if m.Routes != w.Routes() || m.LSDB <= 0 || m.RIB <= 0 || m.Programmer <= 0 {
		t.Errorf("data model: %+v, want %d routes and positive sizes", m, w.Routes())
	}
	a, err := AgentMemory(ctx, w, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	if a.Routes != w.Routes() || a.Agent <= 0 || a.Frames < a.LSPs {
		t.Errorf("agent: %+v, want %d routes", a, w.Routes())
	}
	if h, g, err := FixedOverhead(ctx, 2); err != nil || h <= 0 || g <= 0 {
		t.Errorf("fixed overhead: %d bytes, %d goroutines, %v", h, g, err)
	}
}

func mb(b int64) float64 { return float64(b) / 1e6 }

// BenchmarkAgentMemory: one agent fed 1,000 origins × 100 /64 prefixes
// (100k service prefixes) by an emulated neighbour.
func BenchmarkAgentMemory(b *testing.B) {
	w := NewWorld("r1", 9, *origins, *perOrigin, 1)
	a, err := AgentMemory(context.Background(), w, b.Logf)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(a.Routes), "routes")
	b.ReportMetric(mb(a.Agent), "agent-MB")
	b.ReportMetric(float64(a.Agent)/float64(a.Routes), "agent-B/route")
	b.ReportMetric(mb(a.Switch), "switch-MB")
	b.ReportMetric(float64(a.LSPs), "lsps")
	b.ReportMetric(float64(a.Frames), "lsp-frames")
	b.ReportMetric(a.Flood.Seconds(), "flood-s")
	b.ReportMetric(a.Learned.Seconds(), "learned-s")
	b.ReportMetric(float64(a.Snapshot)/1e6, "snapshot-ms")
	b.ReportMetric(float64(a.Goroutines), "agent-goroutines")
	b.ReportMetric(mb(a.Peak), "peak-MB")
	b.ReportMetric(float64(a.SPFRuns), "spf-runs")
	b.ReportMetric(float64(a.PartialRuns), "partial-runs")
	b.ReportMetric(float64(a.FIBWrites), "fib-writes")
}

// BenchmarkDataModel: the same world through the agent's data structures
// alone.
func BenchmarkDataModel(b *testing.B) {
	w := NewWorld("r1", 9, *origins, *perOrigin, 1)
	m, err := DataModel(w)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(m.Routes), "routes")
	b.ReportMetric(mb(m.LSDB), "lsdb-MB")
	b.ReportMetric(mb(m.RIB), "rib-MB")
	b.ReportMetric(mb(m.Desired), "desired-MB")
	b.ReportMetric(mb(m.Programmer), "programmer-MB")
	b.ReportMetric(mb(m.Plan), "first-plan-MB")
	b.ReportMetric(mb(m.Total()), "total-MB")
}

// BenchmarkFixedOverhead: one agent with nothing to route but the node keys
// of a 3-node line.
func BenchmarkFixedOverhead(b *testing.B) {
	h, g, err := FixedOverhead(context.Background(), 3)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(mb(h), "agent-MB")
	b.ReportMetric(float64(g), "goroutines/agent")
}
