package spa

import (
	"context"
	"testing"
	"time"

	spapb "github.com/dmsc-mesh/dmsc/api/spa"
)

// BenchmarkAuthorize measures SPA decisions per second over real mTLS gRPC
// on loopback, one SG calling in sequence: chain verification, proof check,
// policy, and a bbolt commit (fsync) per ALLOWED decision. The requests are
// signed before the timer starts (that is the pod's work, not SPA's); they
// spread over 64 ports, so each decision refreshes one of 64 instances.
func BenchmarkAuthorize(b *testing.B) {
	p := newPKI(b)
	h := startServer(b, p, harnessOpt{mutate: func(c *Config) { c.Lease = time.Hour; c.ReplayMemory = 1 << 22 }})
	sg1 := h.conn(p.sg1)
	pod := p.pod(b, "/shop/cart")
	ctx := context.Background()
	reqs := make([]*spapb.AuthorizeRequest, b.N)
	for i := range reqs {
		reqs[i] = h.announce(pod, "/shop/cart", "sg1", uint32(i%64))
	}
	b.ResetTimer()
	for _, r := range reqs {
		resp, err := sg1.Authorize(ctx, r)
		if err != nil || resp.GetDecision() != spapb.Decision_ALLOWED {
			b.Fatalf("%v %v", resp, err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "decisions/s")
}

// BenchmarkAuthorizeParallel: several SGs' worth of concurrent callers (one
// connection, many streams); bbolt serializes the commits.
func BenchmarkAuthorizeParallel(b *testing.B) {
	p := newPKI(b)
	h := startServer(b, p, harnessOpt{mutate: func(c *Config) { c.Lease = time.Hour; c.ReplayMemory = 1 << 22 }})
	sg1 := h.conn(p.sg1)
	pod := p.pod(b, "/shop/cart")
	ctx := context.Background()
	b.SetParallelism(4)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		port := uint32(0)
		for pb.Next() {
			port = (port + 1) % 64
			resp, err := sg1.Authorize(ctx, h.announce(pod, "/shop/cart", "sg1", port))
			if err != nil || resp.GetDecision() != spapb.Decision_ALLOWED {
				b.Errorf("%v %v", resp, err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "decisions/s")
}
