package spa

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	spapb "github.com/dmsc-mesh/dmsc/api/spa"
	"github.com/dmsc-mesh/dmsc/ca"
)

func (h *harness) client(node *ca.Issued, opts ...ClientOption) *Client {
	h.t.Helper()
	return dialAs(h.t, h.pki, h.addr, node, opts...)
}

func dialAs(t testing.TB, p *testPKI, addr string, node *ca.Issued, opts ...ClientOption) *Client {
	t.Helper()
	tc, err := ca.ClientTLS(p.ca.Cert, node.TLSCertificate(), ca.RoleSPA)
	if err != nil {
		t.Fatal(err)
	}
	c, err := Dial(context.Background(), addr, tc, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// freeAddr is a loopback address nothing listens on.
func freeAddr(t testing.TB) string {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()
	return addr
}

func TestClientUnavailable(t *testing.T) {
	p := newPKI(t)
	c := dialAs(t, p, freeAddr(t), p.sg1, WithRetry(20*time.Millisecond, 100*time.Millisecond, 600*time.Millisecond))
	pod := p.pod(t, "/shop/cart")
	start := time.Now()
	_, err := c.Authorize(context.Background(), signed(t, pod, mustChallenge(t, time.Now()), "/shop/cart", "sg1", 1))
	elapsed := time.Since(start)
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("error %v is not ErrUnavailable", err)
	}
	var ue *UnavailableError
	if !errors.As(err, &ue) || ue.Attempts < 3 {
		t.Fatalf("error %#v: want several attempts", err)
	}
	if elapsed < 500*time.Millisecond || elapsed > 3*time.Second {
		t.Errorf("gave up after %v, want about the 600ms budget", elapsed)
	}
	if status.Code(ue.Last) != codes.Unavailable {
		t.Errorf("last error %v", ue.Last)
	}
	// The caller's own deadline wins over the budget, and is reported as
	// the caller's.
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err = c.Renew(ctx, &spapb.LeaseRef{Prefix: "/shop/cart", InstanceId: 1})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("with a short context: %v", err)
	}
}

// The client keeps retrying while SPA restarts, and gets through once it is
// back.
func TestClientRetriesUntilServerUp(t *testing.T) {
	p := newPKI(t)
	h := startServer(t, p, harnessOpt{})
	ctx := context.Background()
	c := h.client(p.sg1, WithRetry(20*time.Millisecond, 200*time.Millisecond, 10*time.Second))
	r := mustAllow(t)(c.Authorize(ctx, h.announce(p.pod(t, "/shop/cart"), "/shop/cart", "sg1", 1)))
	h.stop()

	type result struct {
		resp *spapb.RenewResponse
		err  error
	}
	done := make(chan result, 1)
	start := time.Now()
	go func() {
		resp, err := c.Renew(ctx, &spapb.LeaseRef{Prefix: "/shop/cart", InstanceId: r.GetInstanceId()})
		done <- result{resp, err}
	}()
	time.Sleep(400 * time.Millisecond)
	select {
	case res := <-done:
		t.Fatalf("Renew returned while SPA was down: %v %v", res.resp, res.err)
	default:
	}
	h.start(nil, h.addr)
	res := <-done
	if res.err != nil || res.resp.GetResults()[0].GetDecision() != spapb.Decision_ALLOWED {
		t.Fatalf("Renew after restart: %v %v", res.resp, res.err)
	}
	if time.Since(start) < 400*time.Millisecond {
		t.Error("Renew did not wait for the server")
	}
}

func TestClientDoesNotRetryRefusals(t *testing.T) {
	p := newPKI(t)
	h := startServer(t, p, harnessOpt{})
	c := h.client(p.sr1, WithRetry(time.Second, time.Second, 10*time.Second))
	start := time.Now()
	_, err := c.Authorize(context.Background(), h.announce(p.pod(t, "/shop/cart"), "/shop/cart", "sg1", 1))
	if status.Code(err) != codes.PermissionDenied || errors.Is(err, ErrUnavailable) {
		t.Fatalf("%v", err)
	}
	if time.Since(start) > 500*time.Millisecond {
		t.Error("a permission error was retried")
	}
}

func TestClientDecisionCache(t *testing.T) {
	p := newPKI(t)
	cl := &clock{}
	h := startServer(t, p, harnessOpt{clock: cl, mutate: func(c *Config) { c.Lease = 10 * time.Second }})
	ctx := context.Background()
	c := h.client(p.sg1, WithRetry(10*time.Millisecond, 20*time.Millisecond, 150*time.Millisecond), WithClientClock(cl.now))
	cart := p.pod(t, "/shop/cart")
	billing := p.pod(t, "/billing")

	first := mustAllow(t)(c.Authorize(ctx, h.announce(cart, "/shop/cart", "sg1", 1)))
	refused, err := c.Authorize(ctx, h.announce(billing, "/billing/x", "sg1", 1))
	if err != nil || refused.GetReason() != spapb.Reason_POLICY_NOT_ALLOWED {
		t.Fatalf("%v %v", refused, err)
	}
	// Per-request refusals are not cached.
	bad := h.announce(cart, "/shop/cart", "sg2", 2)
	bad.SgPort = 2
	if r, err := c.Authorize(ctx, bad); err != nil || r.GetReason() != spapb.Reason_BAD_PROOF {
		t.Fatalf("%v %v", r, err)
	}
	if n := c.cacheLen(); n != 2 {
		t.Errorf("cache holds %d entries, want 2", n)
	}
	h.stop()

	// With SPA down, a fresh proof of the same pod on the same port is
	// answered from the cache ...
	r, err := c.Authorize(ctx, h.announce(cart, "/shop/cart", "sg1", 1))
	if err != nil || r.GetInstanceId() != first.GetInstanceId() {
		t.Fatalf("cached positive: %v %v", r, err)
	}
	if d := r.GetLease().AsDuration(); d > 10*time.Second || d < 9*time.Second {
		t.Errorf("cached lease %v, want what is left of 10s", d)
	}
	// ... but a proof that does not verify is not.
	if _, err := c.Authorize(ctx, h.announce(cart, "/shop/cart", "sg2", 1)); !errors.Is(err, ErrUnavailable) {
		t.Errorf("bad proof with SPA down: %v", err)
	}
	// The refusal is remembered for its TTL.
	if r, err := c.Authorize(ctx, h.announce(billing, "/billing/x", "sg1", 1)); err != nil || r.GetReason() != spapb.Reason_POLICY_NOT_ALLOWED {
		t.Errorf("cached refusal: %v %v", r, err)
	}
	cl.advance(6 * time.Second)
	if _, err := c.Authorize(ctx, h.announce(billing, "/billing/x", "sg1", 1)); !errors.Is(err, ErrUnavailable) {
		t.Errorf("refusal after its TTL: %v", err)
	}
	// Positive entries last until 80% of the lease.
	cl.advance(3 * time.Second)
	if _, err := c.Authorize(ctx, h.announce(cart, "/shop/cart", "sg1", 1)); !errors.Is(err, ErrUnavailable) {
		t.Errorf("positive entry after 90%% of its lease: %v", err)
	}
}

func TestClientCacheFollowsRenewAndRelease(t *testing.T) {
	p := newPKI(t)
	cl := &clock{}
	h := startServer(t, p, harnessOpt{clock: cl, mutate: func(c *Config) { c.Lease = 10 * time.Second }})
	ctx := context.Background()
	c := h.client(p.sg1, WithRetry(10*time.Millisecond, 20*time.Millisecond, 150*time.Millisecond), WithClientClock(cl.now))
	cart := p.pod(t, "/shop/cart")
	r := mustAllow(t)(c.Authorize(ctx, h.announce(cart, "/shop/cart", "sg1", 1)))
	ref := &spapb.LeaseRef{Prefix: "/shop/cart", InstanceId: r.GetInstanceId()}

	cl.advance(7 * time.Second)
	if _, err := c.Renew(ctx, ref); err != nil {
		t.Fatal(err)
	}
	h.stop()
	cl.advance(5 * time.Second) // 12 s after the first decision, 5 s after the renewal
	if _, err := c.Authorize(ctx, h.announce(cart, "/shop/cart", "sg1", 1)); err != nil {
		t.Fatalf("entry not extended by Renew: %v", err)
	}
	h.start(nil, h.addr)
	if _, err := c.Release(ctx, "/shop/cart", r.GetInstanceId()); err != nil {
		t.Fatal(err)
	}
	if n := c.cacheLen(); n != 0 {
		t.Errorf("%d entries after Release", n)
	}
}
