package harness

import (
	"fmt"
	"slices"
	"time"
)

// Durations are samples of one measurement.
type Durations []time.Duration

// Quantile is the q-quantile (0..1) by the nearest-rank method: with 20
// samples, p99 is the largest. 0 for no samples.
func (d Durations) Quantile(q float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	i := int(q*float64(len(s))+0.999999) - 1
	return s[max(0, min(i, len(s)-1))]
}

// Mean is the arithmetic mean.
func (d Durations) Mean() time.Duration {
	if len(d) == 0 {
		return 0
	}
	var sum time.Duration
	for _, x := range d {
		sum += x
	}
	return sum / time.Duration(len(d))
}

// Max is the largest sample.
func (d Durations) Max() time.Duration {
	if len(d) == 0 {
		return 0
	}
	return slices.Max(d)
}

func (d Durations) String() string {
	return fmt.Sprintf("n=%d p50=%v p99=%v max=%v", len(d), d.Quantile(0.5).Round(time.Microsecond*100),
		d.Quantile(0.99).Round(time.Microsecond*100), d.Max().Round(time.Microsecond*100))
}

// Ms is d in milliseconds, for b.ReportMetric.
func Ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
