package grpcbench

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	echopb "github.com/dmsc-mesh/dmsc/api/echo"
)

// DefaultPayload is the size of each call's payload in bytes.
const DefaultPayload = 64

// Caller makes the benchmark's call: one unary Echo with a fixed payload,
// whose reply must carry the payload back.
type Caller struct {
	echo echopb.EchoClient
	req  *echopb.EchoRequest
}

// NewCaller calls echo with payload bytes.
func NewCaller(echo echopb.EchoClient, payload int) *Caller {
	p := make([]byte, payload)
	for i := range p {
		p[i] = byte(i)
	}
	return &Caller{echo: echo, req: &echopb.EchoRequest{Payload: p}}
}

// Call makes one call.
func (c *Caller) Call(ctx context.Context) error {
	r, err := c.echo.Echo(ctx, c.req)
	if err != nil {
		return err
	}
	if !bytes.Equal(r.GetPayload(), c.req.Payload) {
		return fmt.Errorf("grpcbench: echo returned %d bytes, not the %d sent", len(r.GetPayload()), len(c.req.Payload))
	}
	return nil
}

// Timed makes one call and returns how long it took.
func (c *Caller) Timed(ctx context.Context) (time.Duration, error) {
	t0 := time.Now()
	err := c.Call(ctx)
	return time.Since(t0), err
}

// Sequential makes n calls one after the other and returns their
// latencies.
func (c *Caller) Sequential(ctx context.Context, n int) (Durations, error) {
	d := make(Durations, 0, n)
	for range n {
		t, err := c.Timed(ctx)
		if err != nil {
			return d, err
		}
		d = append(d, t)
	}
	return d, nil
}

// LoadResult is a concurrent run.
type LoadResult struct {
	Callers int
	Calls   int
	Elapsed time.Duration
	// Latency of every call.
	Latency Durations
}

// PerSecond is the calls completed per second.
func (r LoadResult) PerSecond() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Calls) / r.Elapsed.Seconds()
}

// Load runs callers goroutines calling back to back for d, all on c's one
// ClientConn. The first error stops the run and is returned.
func (c *Caller) Load(ctx context.Context, callers int, d time.Duration) (LoadResult, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		mu       sync.Mutex
		all      Durations
		firstErr error
		wg       sync.WaitGroup
	)
	t0 := time.Now()
	end := t0.Add(d)
	for range callers {
		wg.Go(func() {
			var mine Durations
			var err error
			for time.Now().Before(end) {
				var t time.Duration
				if t, err = c.Timed(ctx); err != nil {
					cancel()
					break
				}
				mine = append(mine, t)
			}
			mu.Lock()
			defer mu.Unlock()
			all = append(all, mine...)
			if err != nil && firstErr == nil {
				firstErr = err
			}
		})
	}
	wg.Wait()
	return LoadResult{Callers: callers, Calls: len(all), Elapsed: time.Since(t0), Latency: all}, firstErr
}

// Durations are latency samples.
type Durations []time.Duration

// Summary is what the benchmarks report of samples.
type Summary struct {
	N                   int
	P50, P99, Mean, Max time.Duration
}

// Summarize sorts a copy of d and reads its quantiles by the nearest-rank
// method (with 100 samples, p99 is the 99th smallest).
func (d Durations) Summarize() Summary {
	if len(d) == 0 {
		return Summary{}
	}
	s := slices.Clone(d)
	slices.Sort(s)
	var sum time.Duration
	for _, x := range s {
		sum += x
	}
	return Summary{N: len(s), P50: rank(s, 0.50), P99: rank(s, 0.99), Mean: sum / time.Duration(len(s)), Max: s[len(s)-1]}
}

// rank is the q-quantile of sorted samples: the smallest sample with at
// least q of all samples at or below it.
func rank(sorted []time.Duration, q float64) time.Duration {
	i := int(q*float64(len(sorted))+0.999999) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

func (s Summary) String() string {
	return fmt.Sprintf("n=%d p50=%v p99=%v mean=%v max=%v", s.N, s.P50, s.P99, s.Mean, s.Max)
}

// Micros is d in microseconds, for b.ReportMetric.
func Micros(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }
