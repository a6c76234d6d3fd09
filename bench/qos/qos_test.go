package qos

import (
	"context"
	"testing"
	"time"
)

// race_test.go / norace_test.go set raceEnabled.

// TestOneCycle: one impairment is steered around and the repair brings the
// traffic back (the benchmark's machinery works).
func TestOneCycle(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("a timing measurement: not under -short or -race")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	r, err := Run(ctx, Options{Cycles: 1})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Moved) != 1 || len(r.Back) != 1 {
		t.Fatalf("result %+v", r)
	}
	t.Logf("moved after %v, back after %v", r.Moved[0], r.Back[0])
}

// BenchmarkQoSReaction measures impairment → traffic moved and repair →
// traffic back over repeated cycles; the figures are p50/p99 over them.
// settled: each cycle starts 2.5 s after the previous repair took effect,
// past SCSC's hold-down of one policy change per clear period (2 s), so it
// measures the reaction of a steady fabric; back-to-back: the next
// impairment follows the repair at once, and the hold-down shows.
func BenchmarkQoSReaction(b *testing.B) {
	for _, v := range []struct {
		name   string
		cycles int
		settle time.Duration
	}{{"settled", 20, 2500 * time.Millisecond}, {"back-to-back", 10, 0}} {
		b.Run(v.name, func(b *testing.B) {
			for range b.N {
				r, err := Run(context.Background(), Options{Cycles: v.cycles, Settle: v.settle})
				if err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(float64(Percentile(r.Moved, 0.5).Milliseconds()), "moved-p50-ms")
				b.ReportMetric(float64(Percentile(r.Moved, 0.99).Milliseconds()), "moved-p99-ms")
				b.ReportMetric(float64(Percentile(r.Back, 0.5).Milliseconds()), "back-p50-ms")
				b.ReportMetric(float64(Percentile(r.Back, 0.99).Milliseconds()), "back-p99-ms")
			}
		})
	}
}
