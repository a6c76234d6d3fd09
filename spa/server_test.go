package spa

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	spapb "github.com/dmsc-mesh/dmsc/api/spa"
	"github.com/dmsc-mesh/dmsc/ca"
	"github.com/dmsc-mesh/dmsc/wire"
)

// mustAllow(t)(client.Authorize(...)) fails the test unless ALLOWED.
func mustAllow(t testing.TB) func(*spapb.AuthorizeResponse, error) *spapb.AuthorizeResponse {
	return func(resp *spapb.AuthorizeResponse, err error) *spapb.AuthorizeResponse {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		if resp.GetDecision() != spapb.Decision_ALLOWED {
			t.Fatalf("refused: %s: %s", resp.GetReason(), resp.GetReasonText())
		}
		return resp
	}
}

func TestAuthorizeAllowed(t *testing.T) {
	p := newPKI(t)
	h := startServer(t, p, harnessOpt{})
	sg1 := h.conn(p.sg1)
	cart := p.pod(t, "/shop/cart")
	ctx := context.Background()

	r := mustAllow(t)(sg1.Authorize(ctx, h.announce(cart, "/shop/cart", "sg1", 3)))
	if r.GetInstanceId() != 1 || r.GetLease().AsDuration() != h.cfg.Lease || r.GetIdentity() != "dmsc://example.org/shop/cart" {
		t.Errorf("response %v", r)
	}
	if want := wire.KeyOf(wire.MustParseName("/shop/cart")); string(r.GetServiceKey()) != string(want[:]) {
		t.Errorf("service key %x, want %x", r.GetServiceKey(), want)
	}
	// A second pod of the same service on another port gets the next id; the
	// first pod announcing again on its port keeps its id.
	cart2 := p.pod(t, "/shop/cart")
	if r := mustAllow(t)(sg1.Authorize(ctx, h.announce(cart2, "/shop/cart", "sg1", 4))); r.GetInstanceId() != 2 {
		t.Errorf("second instance id %d", r.GetInstanceId())
	}
	if r := mustAllow(t)(sg1.Authorize(ctx, h.announce(cart, "/shop/cart", "sg1", 3))); r.GetInstanceId() != 1 {
		t.Errorf("re-announcement got id %d, want 1", r.GetInstanceId())
	}
	// Ids are per service.
	if r := mustAllow(t)(h.conn(p.sg2).Authorize(ctx, h.announce(p.pod(t, "/pay"), "/pay", "sg2", 1))); r.GetInstanceId() != 1 {
		t.Errorf("first instance of /pay: %d", r.GetInstanceId())
	}
	// A subtree owner announces below its prefix where the policy says so.
	shop := p.pod(t, "/shop")
	mustAllow(t)(sg1.Authorize(ctx, h.announce(shop, "/shop/cart/v2", "sg1", 9)))

	// An SG-restricted rule: /pinned/x only on sg2.
	mustAllow(t)(h.conn(p.sg2).Authorize(ctx, h.announce(p.pod(t, "/pinned"), "/pinned/x", "sg2", 1)))

	// Operators see it; any node may look.
	lr, err := h.conn(p.sr1).Lookup(ctx, &spapb.LookupRequest{What: &spapb.LookupRequest_Name{Name: "/shop/cart"}})
	if err != nil {
		t.Fatal(err)
	}
	if !lr.GetFound() || len(lr.GetService().GetInstances()) != 2 || lr.GetService().GetInstances()[0].GetSg() != "sg1" {
		t.Errorf("lookup %v", lr)
	}
	k := wire.KeyOf(wire.MustParseName("/shop")).WithInstance(7)
	lr, err = h.conn(p.sr1).Lookup(ctx, &spapb.LookupRequest{What: &spapb.LookupRequest_Key{Key: k[:]}})
	if err != nil || !lr.GetFound() || lr.GetService().GetName() != "/shop" {
		t.Errorf("lookup by key of an ancestor: %v %v", lr, err)
	}
	list, err := sg1.List(ctx, &spapb.ListRequest{PageSize: 2})
	if err != nil || len(list.GetServices()) != 2 || list.GetNextPageToken() == "" {
		t.Fatalf("list page 1: %v %v", list, err)
	}
	list2, err := sg1.List(ctx, &spapb.ListRequest{PageSize: 2, PageToken: list.GetNextPageToken()})
	if err != nil || len(list2.GetServices()) != 2 || list2.GetNextPageToken() != "" {
		t.Fatalf("list page 2: %v %v", list2, err)
	}

	// Every decision is one audit line naming who, what and the outcome.
	var allowed int
	for _, l := range h.audit.lines(t) {
		if l["rpc"] == "Authorize" && l["decision"] == "ALLOWED" {
			allowed++
			for _, f := range []string{"sg", "sg_port", "prefix", "identity", "serial", "instance", "lease", "key"} {
				if _, ok := l[f]; !ok {
					t.Errorf("audit line %v lacks %q", l, f)
				}
			}
		}
	}
	if allowed != 6 {
		t.Errorf("%d ALLOWED audit lines, want 6", allowed)
	}
}

// Every bad announcement gets its own reason and leaves the registry as it
// was.
func TestAuthorizeRefusals(t *testing.T) {
	p := newPKI(t)
	seed := func(t *testing.T) Store {
		st, err := OpenBoltStore(t.TempDir() + "/seeded.db")
		if err != nil {
			t.Fatal(err)
		}
		// A fake entry that holds /shop/cart2's key under another name, and
		// one holding /billing's (an ancestor of /billing/eu).
		err = st.Update(context.Background(), func(tx Tx) error {
			if err := tx.BindName(wire.KeyOf(wire.MustParseName("/shop/cart2")), "/zz/forged"); err != nil {
				return err
			}
			return tx.BindName(wire.KeyOf(wire.MustParseName("/billing")), "/yy/forged")
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		return st
	}
	h := startServer(t, p, harnessOpt{store: seed(t), mutate: func(c *Config) {
		c.ChallengeWindow = time.Minute
		c.ClockSkew = 5 * time.Second
	}})
	sg1 := h.conn(p.sg1)
	ctx := context.Background()
	now := h.clock.now()

	cart := p.pod(t, "/shop/cart")
	// Warm the registry so "no change" is about a non-empty state.
	mustAllow(t)(sg1.Authorize(ctx, h.announce(cart, "/shop/cart", "sg1", 1)))

	expired := p.pod(t, "/shop/cart", ca.WithNotBefore(now.Add(-48*time.Hour)), ca.WithValidity(time.Hour))
	future := p.pod(t, "/shop/cart", ca.WithNotBefore(now.Add(24*time.Hour)))
	foreign, err := p.other.IssuePod("/shop/cart")
	if err != nil {
		t.Fatal(err)
	}
	foreignExpired, err := p.other.IssuePod("/shop/cart", ca.WithNotBefore(now.Add(-48*time.Hour)), ca.WithValidity(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	billing := p.pod(t, "/billing")
	admin := p.pod(t, "/shop/admin")
	shop := p.pod(t, "/shop")
	pinned := p.pod(t, "/pinned")
	cart2 := p.pod(t, "/shop/cart2")
	billingEU := p.pod(t, "/billing/eu")

	withChallenge := func(pod *ca.Issued, at time.Time) *spapb.AuthorizeRequest {
		ch, err := ca.NewChallenge(at)
		if err != nil {
			t.Fatal(err)
		}
		return signed(t, pod, ch, "/shop/cart", "sg1", 1)
	}
	edit := func(r *spapb.AuthorizeRequest, f func(*spapb.AuthorizeRequest)) *spapb.AuthorizeRequest {
		f(r)
		return r
	}
	for _, tc := range []struct {
		name   string
		req    *spapb.AuthorizeRequest
		reason spapb.Reason
		text   string
	}{
		{"expired certificate", h.announce(expired, "/shop/cart", "sg1", 1), spapb.Reason_CERT_EXPIRED, "expired at"},
		{"not yet valid certificate", h.announce(future, "/shop/cart", "sg1", 1), spapb.Reason_CERT_NOT_YET_VALID, "is valid from"},
		{"wrong CA", h.announce(foreign, "/shop/cart", "sg1", 1), spapb.Reason_CERT_UNTRUSTED, "not issued by the CA of domain example.org"},
		{"wrong CA and expired", h.announce(foreignExpired, "/shop/cart", "sg1", 1), spapb.Reason_CERT_UNTRUSTED, "not issued by the CA"},
		{"node certificate as pod", h.announce(p.sg2, "/shop/cart", "sg1", 1), spapb.Reason_CERT_NOT_POD, "not a pod"},
		{"prefix not allowed by policy", h.announce(billing, "/billing/x", "sg1", 1), spapb.Reason_POLICY_NOT_ALLOWED, "no allow rule"},
		{"policy: wrong SG", h.announce(pinned, "/pinned/x", "sg1", 1), spapb.Reason_POLICY_NOT_ALLOWED, "on sg1"},
		{"deny rule", h.announce(admin, "/shop/admin", "sg1", 1), spapb.Reason_POLICY_DENIED, "rules[0]"},
		{"deny rule beats a subtree allow", h.announce(shop, "/shop/admin/x", "sg1", 1), spapb.Reason_POLICY_DENIED, "deny rule"},
		{"prefix outside the certificate", h.announce(cart, "/shop", "sg1", 1), spapb.Reason_PREFIX_OUTSIDE_CERT, "not /shop"},
		{"sibling outside the certificate", h.announce(cart, "/shop/cart2", "sg1", 1), spapb.Reason_PREFIX_OUTSIDE_CERT, "may announce /shop/cart"},
		{"key collision", h.announce(cart2, "/shop/cart2", "sg1", 1), spapb.Reason_KEY_COLLISION, "already held by /zz/forged"},
		{"ancestor key collision", h.announce(billingEU, "/billing/eu", "sg1", 1), spapb.Reason_KEY_COLLISION, "ancestor /billing"},
		{"proof for another SG", signed(t, cart, mustChallenge(t, now), "/shop/cart", "sg2", 1), spapb.Reason_BAD_PROOF, "another SG, port"},
		{"proof for another port", edit(h.announce(cart, "/shop/cart", "sg1", 4), func(r *spapb.AuthorizeRequest) { r.SgPort = 1 }), spapb.Reason_BAD_PROOF, "port 1"},
		{"proof by another key", edit(h.announce(cart2, "/shop/cart2", "sg1", 1), func(r *spapb.AuthorizeRequest) { r.CertChain = [][]byte{cart.Cert.Raw}; r.Prefix = "/shop/cart" }), spapb.Reason_BAD_PROOF, ""},
		{"stale challenge", withChallenge(cart, now.Add(-2*time.Minute)), spapb.Reason_STALE_CHALLENGE, "older than the 1m0s window"},
		{"challenge from the future", withChallenge(cart, now.Add(time.Minute)), spapb.Reason_STALE_CHALLENGE, "ahead of SPA time"},
		{"challenge from before SPA started", withChallenge(cart, now.Add(-30*time.Second)), spapb.Reason_STALE_CHALLENGE, "before this SPA started"},
		{"reserved /_node prefix", h.announce(cart, "/_node/sg1", "sg1", 1), spapb.Reason_RESERVED_PREFIX, "belong to switches"},
		{"bad prefix", edit(h.announce(cart, "/shop/cart", "sg1", 1), func(r *spapb.AuthorizeRequest) { r.Prefix = "/Shop" }), spapb.Reason_BAD_PREFIX, "uppercase"},
		{"malformed: no prefix", edit(h.announce(cart, "/shop/cart", "sg1", 1), func(r *spapb.AuthorizeRequest) { r.Prefix = "" }), spapb.Reason_MALFORMED_REQUEST, "prefix is missing"},
		{"malformed: no chain", edit(h.announce(cart, "/shop/cart", "sg1", 1), func(r *spapb.AuthorizeRequest) { r.CertChain = nil }), spapb.Reason_MALFORMED_REQUEST, "cert_chain is empty"},
		{"malformed: long chain", edit(h.announce(cart, "/shop/cart", "sg1", 1), func(r *spapb.AuthorizeRequest) {
			r.CertChain = [][]byte{cart.Cert.Raw, cart.Cert.Raw, cart.Cert.Raw, cart.Cert.Raw, cart.Cert.Raw}
		}), spapb.Reason_MALFORMED_REQUEST, "5 certificates"},
		{"malformed: short challenge", edit(h.announce(cart, "/shop/cart", "sg1", 1), func(r *spapb.AuthorizeRequest) { r.Challenge = r.Challenge[:16] }), spapb.Reason_MALFORMED_REQUEST, "challenge is 16 bytes"},
		{"malformed: no signature", edit(h.announce(cart, "/shop/cart", "sg1", 1), func(r *spapb.AuthorizeRequest) { r.Signature = nil }), spapb.Reason_MALFORMED_REQUEST, "signature is 0 bytes"},
		{"malformed: garbage certificate", edit(h.announce(cart, "/shop/cart", "sg1", 1), func(r *spapb.AuthorizeRequest) { r.CertChain = [][]byte{[]byte("not DER")} }), spapb.Reason_CERT_MALFORMED, "cert_chain[0] does not parse"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := h.snapshot()
			resp, err := sg1.Authorize(ctx, tc.req)
			if err != nil {
				t.Fatal(err)
			}
			if resp.GetDecision() != spapb.Decision_REFUSED || resp.GetReason() != tc.reason {
				t.Fatalf("got %s %s (%s), want REFUSED %s", resp.GetDecision(), resp.GetReason(), resp.GetReasonText(), tc.reason)
			}
			if !strings.Contains(resp.GetReasonText(), tc.text) {
				t.Errorf("reason text %q lacks %q", resp.GetReasonText(), tc.text)
			}
			if resp.GetInstanceId() != 0 || len(resp.GetServiceKey()) != 0 {
				t.Errorf("refusal carries an instance: %v", resp)
			}
			if after := h.snapshot(); after != before {
				t.Errorf("registry changed:\n%s\n→\n%s", before, after)
			}
		})
	}
	// Each refusal was audited with its reason.
	reasons := map[string]bool{}
	for _, l := range h.audit.lines(t) {
		if l["decision"] == "REFUSED" {
			reasons[fmt.Sprint(l["reason"])] = true
		}
	}
	for _, r := range []string{"CERT_EXPIRED", "CERT_UNTRUSTED", "POLICY_DENIED", "KEY_COLLISION", "BAD_PROOF", "MALFORMED_REQUEST"} {
		if !reasons[r] {
			t.Errorf("no audit line for %s", r)
		}
	}
}

func mustChallenge(t testing.TB, at time.Time) []byte {
	ch, err := ca.NewChallenge(at)
	if err != nil {
		t.Fatal(err)
	}
	return ch
}

func TestReplayRefused(t *testing.T) {
	p := newPKI(t)
	h := startServer(t, p, harnessOpt{})
	sg1 := h.conn(p.sg1)
	cart := p.pod(t, "/shop/cart")
	req := h.announce(cart, "/shop/cart", "sg1", 1)
	mustAllow(t)(sg1.Authorize(context.Background(), req))
	before := h.snapshot()
	for _, tc := range []struct {
		name string
		req  *spapb.AuthorizeRequest
	}{
		{"same request again", req},
		// The same challenge answered by another pod on another port (an SG
		// reusing nonces) is refused as well.
		{"same challenge, other pod", signed(t, p.pod(t, "/shop/cart"), req.GetChallenge(), "/shop/cart", "sg1", 2)},
	} {
		resp, err := sg1.Authorize(context.Background(), tc.req)
		if err != nil {
			t.Fatal(err)
		}
		if resp.GetReason() != spapb.Reason_REPLAY || !strings.Contains(resp.GetReasonText(), "already used") {
			t.Errorf("%s: %s %s", tc.name, resp.GetReason(), resp.GetReasonText())
		}
	}
	if h.snapshot() != before {
		t.Error("a replay changed the registry")
	}
}

func TestCallerMustBeSG(t *testing.T) {
	p := newPKI(t)
	h := startServer(t, p, harnessOpt{})
	ctx := context.Background()
	cart := p.pod(t, "/shop/cart")
	podTLS, err := ca.ClientTLS(p.ca.Cert, cart.TLSCertificate(), ca.RoleSPA)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		client spapb.SPAClient
		want   string
	}{
		{"SR node", h.conn(p.sr1), "for SG nodes (role sg)"},
		{"SPA node", h.conn(p.spa), "the caller is dmsc://example.org/_node/spa1 (role spa)"},
		{"pod", h.connTLS(podTLS), "the caller is pod dmsc://example.org/shop/cart"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.client.Authorize(ctx, h.announce(cart, "/shop/cart", "sg1", 1))
			if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Authorize: %v, want PERMISSION_DENIED with %q", err, tc.want)
			}
			_, err = tc.client.Renew(ctx, &spapb.RenewRequest{})
			if status.Code(err) != codes.PermissionDenied {
				t.Errorf("Renew: %v", err)
			}
			_, err = tc.client.Release(ctx, &spapb.ReleaseRequest{})
			if status.Code(err) != codes.PermissionDenied {
				t.Errorf("Release: %v", err)
			}
		})
	}
	// A pod may not even look; a node of any role may.
	if _, err := h.connTLS(podTLS).List(ctx, &spapb.ListRequest{}); status.Code(err) != codes.PermissionDenied {
		t.Errorf("pod List: %v", err)
	}
	if _, err := h.conn(p.sr1).List(ctx, &spapb.ListRequest{}); err != nil {
		t.Errorf("SR List: %v", err)
	}
	// A client of another CA does not get through the handshake.
	foreign, err := p.other.IssueNode("sg1", ca.RoleSG)
	if err != nil {
		t.Fatal(err)
	}
	ftc, _ := ca.ClientTLS(p.ca.Cert, foreign.TLSCertificate(), ca.RoleSPA)
	if _, err := h.connTLS(ftc).Authorize(ctx, h.announce(cart, "/shop/cart", "sg1", 1)); status.Code(err) != codes.Unavailable {
		t.Errorf("foreign SG: %v", err)
	}
	if h.snapshot() != "" {
		t.Errorf("registry changed: %q", h.snapshot())
	}
	var denied int
	for _, l := range h.audit.lines(t) {
		if l["reason"] == "PERMISSION_DENIED" {
			denied++
		}
	}
	if denied < 9 {
		t.Errorf("%d PERMISSION_DENIED audit lines, want at least 9", denied)
	}
}

func TestRateLimitPerSG(t *testing.T) {
	p := newPKI(t)
	h := startServer(t, p, harnessOpt{mutate: func(c *Config) { c.RatePerSecond, c.RateBurst = 0.5, 2 }})
	ctx := context.Background()
	sg1 := h.conn(p.sg1)
	for i := 0; i < 2; i++ {
		if _, err := sg1.List(ctx, &spapb.ListRequest{}); err != nil {
			t.Fatal(err)
		}
	}
	_, err := sg1.Authorize(ctx, h.announce(p.pod(t, "/shop/cart"), "/shop/cart", "sg1", 1))
	st := status.Convert(err)
	if st.Code() != codes.ResourceExhausted || !strings.Contains(st.Message(), "rate limit of dmsc://example.org/_node/sg1") {
		t.Fatalf("third call: %v", err)
	}
	var ri *errdetails.RetryInfo
	for _, d := range st.Details() {
		if r, ok := d.(*errdetails.RetryInfo); ok {
			ri = r
		}
	}
	if ri == nil || ri.GetRetryDelay().AsDuration() <= 0 || ri.GetRetryDelay().AsDuration() > 2*time.Second {
		t.Errorf("RetryInfo %v", ri)
	}
	// The bucket is per SG: sg2 is not held back by sg1's calls.
	if _, err := h.conn(p.sg2).List(ctx, &spapb.ListRequest{}); err != nil {
		t.Errorf("sg2: %v", err)
	}
}

func TestRevocationReloadWithoutRestart(t *testing.T) {
	p := newPKI(t)
	h := startServer(t, p, harnessOpt{})
	ctx := context.Background()
	sg1 := h.conn(p.sg1)
	cart := p.pod(t, "/shop/cart")
	r := mustAllow(t)(sg1.Authorize(ctx, h.announce(cart, "/shop/cart", "sg1", 1)))

	// openssl's spelling: uppercase, colon-separated.
	hex := strings.ToUpper(ca.SerialString(cart.Cert.SerialNumber))
	var colon []string
	if len(hex)%2 == 1 {
		hex = "0" + hex
	}
	for i := 0; i < len(hex); i += 2 {
		colon = append(colon, hex[i:i+2])
	}
	if err := os.WriteFile(h.cfg.Revocation, []byte("# lost laptop\n"+strings.Join(colon, ":")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	var resp *spapb.AuthorizeResponse
	for {
		var err error
		resp, err = sg1.Authorize(ctx, h.announce(cart, "/shop/cart", "sg1", 1))
		if err != nil {
			t.Fatal(err)
		}
		if resp.GetDecision() == spapb.Decision_REFUSED || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if resp.GetReason() != spapb.Reason_CERT_REVOKED || !strings.Contains(resp.GetReasonText(), "is revoked") {
		t.Fatalf("after revocation: %s %s", resp.GetReason(), resp.GetReasonText())
	}
	// The held instance is freed at its next renewal.
	rr, err := sg1.Renew(ctx, &spapb.RenewRequest{Leases: []*spapb.LeaseRef{{Prefix: "/shop/cart", InstanceId: r.GetInstanceId()}}})
	if err != nil || rr.GetResults()[0].GetReason() != spapb.Reason_CERT_REVOKED {
		t.Fatalf("renew of a revoked pod: %v %v", rr, err)
	}
	lr, err := sg1.Lookup(ctx, &spapb.LookupRequest{What: &spapb.LookupRequest_Name{Name: "/shop/cart"}})
	if err != nil || len(lr.GetService().GetInstances()) != 0 {
		t.Errorf("instance of a revoked pod not freed: %v %v", lr, err)
	}
	// A broken list leaves the previous one in force.
	if err := os.WriteFile(h.cfg.Revocation, []byte("not-hex\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := h.srv.Reload(); err == nil || !strings.Contains(err.Error(), ":1: serial") {
		t.Errorf("Reload of a broken list: %v", err)
	}
	resp, _ = sg1.Authorize(ctx, h.announce(cart, "/shop/cart", "sg1", 1))
	if resp.GetReason() != spapb.Reason_CERT_REVOKED {
		t.Errorf("after a broken reload: %s", resp.GetReason())
	}
}

func TestPolicyReload(t *testing.T) {
	p := newPKI(t)
	h := startServer(t, p, harnessOpt{})
	ctx := context.Background()
	sg1 := h.conn(p.sg1)
	cart := p.pod(t, "/shop/cart")
	r := mustAllow(t)(sg1.Authorize(ctx, h.announce(cart, "/shop/cart", "sg1", 1)))
	if err := os.WriteFile(h.cfg.Policy, []byte("version: 1\nrules:\n  - deny: /shop/**\n  - allow: self\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := h.srv.Reload(); err != nil {
		t.Fatal(err)
	}
	rr, err := sg1.Renew(ctx, &spapb.RenewRequest{Leases: []*spapb.LeaseRef{{Prefix: "/shop/cart", InstanceId: r.GetInstanceId()}}})
	if err != nil || rr.GetResults()[0].GetReason() != spapb.Reason_POLICY_DENIED {
		t.Fatalf("renew under the new policy: %v %v", rr, err)
	}
	if err := os.WriteFile(h.cfg.Policy, []byte("version: 2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := h.srv.Reload(); err == nil || !strings.Contains(err.Error(), ":1: version") {
		t.Errorf("broken policy: %v", err)
	}
}

func TestLeases(t *testing.T) {
	p := newPKI(t)
	h := startServer(t, p, harnessOpt{mutate: func(c *Config) { c.Lease = 10 * time.Second; c.MaxInstances = 2 }})
	ctx := context.Background()
	sg1, sg2 := h.conn(p.sg1), h.conn(p.sg2)
	cart := p.pod(t, "/shop/cart")
	a := mustAllow(t)(sg1.Authorize(ctx, h.announce(cart, "/shop/cart", "sg1", 1))).GetInstanceId()
	b := mustAllow(t)(sg1.Authorize(ctx, h.announce(cart, "/shop/cart", "sg1", 2))).GetInstanceId()
	resp, err := sg1.Authorize(ctx, h.announce(cart, "/shop/cart", "sg1", 3))
	if err != nil || resp.GetReason() != spapb.Reason_INSTANCES_EXHAUSTED {
		t.Fatalf("third instance with max_instances 2: %v %v", resp, err)
	}
	ref := func(id uint32) *spapb.LeaseRef { return &spapb.LeaseRef{Prefix: "/shop/cart", InstanceId: id} }

	rr, err := sg2.Renew(ctx, &spapb.RenewRequest{Leases: []*spapb.LeaseRef{ref(a), ref(99), {Prefix: "/Bad", InstanceId: 1}}})
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []spapb.Reason{spapb.Reason_NOT_LEASE_HOLDER, spapb.Reason_LEASE_UNKNOWN, spapb.Reason_BAD_PREFIX} {
		if got := rr.GetResults()[i].GetReason(); got != want {
			t.Errorf("renew result %d: %s, want %s", i, got, want)
		}
	}
	if rel, err := sg2.Release(ctx, &spapb.ReleaseRequest{Lease: ref(a)}); err != nil || rel.GetReason() != spapb.Reason_NOT_LEASE_HOLDER {
		t.Errorf("release by another SG: %v %v", rel, err)
	}

	h.clock.advance(6 * time.Second)
	rr, err = sg1.Renew(ctx, &spapb.RenewRequest{Leases: []*spapb.LeaseRef{ref(a)}})
	if err != nil || rr.GetResults()[0].GetDecision() != spapb.Decision_ALLOWED || rr.GetResults()[0].GetLeaseDuration().AsDuration() != 10*time.Second {
		t.Fatalf("renew: %v %v", rr, err)
	}
	// b was not renewed: 6 s + 6 s > 10 s, so the sweeper frees it.
	h.clock.advance(6 * time.Second)
	waitFor(t, func() bool {
		lr, _ := sg1.Lookup(ctx, &spapb.LookupRequest{What: &spapb.LookupRequest_Name{Name: "/shop/cart"}})
		return len(lr.GetService().GetInstances()) == 1
	})
	rr, _ = sg1.Renew(ctx, &spapb.RenewRequest{Leases: []*spapb.LeaseRef{ref(b)}})
	if rr.GetResults()[0].GetReason() != spapb.Reason_LEASE_UNKNOWN {
		t.Errorf("renew of an expired lease: %v", rr)
	}
	if rel, err := sg1.Release(ctx, &spapb.ReleaseRequest{Lease: ref(a)}); err != nil || rel.GetDecision() != spapb.Decision_ALLOWED {
		t.Fatalf("release: %v %v", rel, err)
	}
	if rel, _ := sg1.Release(ctx, &spapb.ReleaseRequest{Lease: ref(a)}); rel.GetReason() != spapb.Reason_LEASE_UNKNOWN {
		t.Errorf("second release: %v", rel)
	}
	// Freed ids are not reused at once.
	if id := mustAllow(t)(sg1.Authorize(ctx, h.announce(cart, "/shop/cart", "sg1", 5))).GetInstanceId(); id != 3 {
		t.Errorf("next id %d, want 3", id)
	}
	// No lease outlives the pod certificate.
	short := p.pod(t, "/pay", ca.WithNotBefore(h.clock.now().Add(-time.Minute)), ca.WithValidity(time.Minute+4*time.Second))
	r := mustAllow(t)(sg1.Authorize(ctx, h.announce(short, "/pay", "sg1", 1)))
	if d := r.GetLease().AsDuration(); d > 4*time.Second {
		t.Errorf("lease %v outlives the certificate", d)
	}
}

func waitFor(t testing.TB, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// An SPA restart (store closed and reopened) keeps names, instances and
// leases; leases that expired meanwhile are freed.
func TestRestartKeepsRegistry(t *testing.T) {
	p := newPKI(t)
	h := startServer(t, p, harnessOpt{mutate: func(c *Config) { c.Lease = time.Minute }})
	ctx := context.Background()
	cart, pay := p.pod(t, "/shop/cart"), p.pod(t, "/pay")
	mustAllow(t)(h.conn(p.sg1).Authorize(ctx, h.announce(cart, "/shop/cart", "sg1", 1)))
	mustAllow(t)(h.conn(p.sg1).Authorize(ctx, h.announce(cart, "/shop/cart", "sg1", 2)))
	mustAllow(t)(h.conn(p.sg1).Authorize(ctx, h.announce(pay, "/pay", "sg1", 3)))
	before := h.snapshot()

	h.restart()
	if after := h.snapshot(); after != before {
		t.Fatalf("registry after restart:\n%s\nwant\n%s", after, before)
	}
	sg1 := h.conn(p.sg1)
	if id := mustAllow(t)(sg1.Authorize(ctx, h.announce(cart, "/shop/cart", "sg1", 2))).GetInstanceId(); id != 2 {
		t.Errorf("re-announcement after restart: id %d, want 2", id)
	}
	if id := mustAllow(t)(sg1.Authorize(ctx, h.announce(cart, "/shop/cart", "sg1", 7))).GetInstanceId(); id != 3 {
		t.Errorf("new instance after restart: id %d, want 3", id)
	}
	rr, err := sg1.Renew(ctx, &spapb.RenewRequest{Leases: []*spapb.LeaseRef{{Prefix: "/pay", InstanceId: 1}}})
	if err != nil || rr.GetResults()[0].GetDecision() != spapb.Decision_ALLOWED {
		t.Fatalf("renew after restart: %v %v", rr, err)
	}

	// Down for longer than a lease: everything is freed at start, names stay.
	h.stop()
	h.clock.advance(2 * time.Minute)
	h.start(nil, h.addr)
	lr, err := h.conn(p.sr1).Lookup(ctx, &spapb.LookupRequest{What: &spapb.LookupRequest_Name{Name: "/shop/cart"}})
	if err != nil || !lr.GetFound() || len(lr.GetService().GetInstances()) != 0 {
		t.Fatalf("after a long outage: %v %v", lr, err)
	}
	expired := 0
	for _, l := range h.audit.lines(t) {
		if l["reason"] == "LEASE_EXPIRED" {
			expired++
		}
	}
	if expired != 4 {
		t.Errorf("%d LEASE_EXPIRED audit lines, want 4", expired)
	}
}

func TestNewServerErrors(t *testing.T) {
	p := newPKI(t)
	base := func(t *testing.T) *Config {
		h := startServer(t, p, harnessOpt{})
		h.stop()
		c := *h.cfg
		return &c
	}
	for _, tc := range []struct {
		name   string
		mutate func(*Config)
		want   string
	}{
		{"SG cert as SPA", func(c *Config) { c.Cert, c.Key = writeIssued(t, p.sg1) }, "want a node certificate of role spa"},
		{"missing policy", func(c *Config) { c.Policy = c.Policy + ".nope" }, "policy"},
		{"broken policy", func(c *Config) { os.WriteFile(c.Policy, []byte("rules: 3\n"), 0o600) }, "rules: want a list"},
		{"missing revocation list", func(c *Config) { c.Revocation += ".nope" }, "revocation"},
		{"no store", func(c *Config) { c.Store = "" }, "store: missing"},
		{"bad CA file", func(c *Config) { c.CA = c.Policy }, "CERTIFICATE"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := base(t)
			tc.mutate(c)
			_, err := NewServer(c)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("NewServer: %v, want %q", err, tc.want)
			}
		})
	}
}

func writeIssued(t *testing.T, is *ca.Issued) (string, string) {
	dir := t.TempDir()
	c, k := dir+"/n.crt", dir+"/n.key"
	if err := os.WriteFile(c, is.CertPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(k, is.KeyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	return c, k
}

// The client's TLS configuration refuses a server that is not an SPA node.
func TestClientRefusesNonSPAServer(t *testing.T) {
	p := newPKI(t)
	h := startServer(t, p, harnessOpt{})
	tc, err := ca.ClientTLS(p.ca.Cert, p.sg1.TLSCertificate(), ca.RoleSCSC)
	if err != nil {
		t.Fatal(err)
	}
	_, err = h.connTLS(tc).List(context.Background(), &spapb.ListRequest{})
	if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "want role") {
		t.Fatalf("%v", err)
	}
	var _ *tls.Config = tc
	if errors.Is(err, ErrUnavailable) {
		t.Error("a raw gRPC error is not the client's unavailable class")
	}
}

// The path the CLI takes: spa.yaml → LoadConfig → NewServer → Serve, an SG
// client through Dial, the audit log in its own file.
func TestServeFromConfigFile(t *testing.T) {
	p := newPKI(t)
	dir := t.TempDir()
	write := func(name, s string) {
		if err := os.WriteFile(dir+"/"+name, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("policy.yaml", testPolicy)
	write("spa.yaml", fmt.Sprintf(`listen: 127.0.0.1:0
tls:
  ca: %s/ca/ca.crt
  cert: %s
  key: %s
store: spa.db
policy: policy.yaml
audit_log: audit.jsonl
`, p.dir, p.spa.CertPath, p.spa.KeyPath))
	cfg, err := LoadConfig(dir + "/spa.yaml")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, lis) }()

	sgCert, sgKey := writeIssued(t, p.sg1)
	tc, id, err := ca.LoadClientTLS(cfg.CA, sgCert, sgKey, ca.RoleSPA)
	if err != nil || id.NodeID != "sg1" {
		t.Fatal(err)
	}
	c, err := Dial(ctx, lis.Addr().String(), tc)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	pod := p.pod(t, "/shop/cart")
	req := signed(t, pod, mustChallenge(t, time.Now()), "/shop/cart", "sg1", 1)
	mustAllow(t)(c.Authorize(ctx, req))
	// Only now is the goroutine's Serve known to be the one serving.
	if err := srv.Serve(ctx, lis); err == nil || !strings.Contains(err.Error(), "twice") {
		t.Errorf("second Serve: %v", err)
	}

	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Serve: %v", err)
	}
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(dir + "/audit.jsonl")
	if err != nil || !strings.Contains(string(b), `"decision":"ALLOWED"`) || !strings.Contains(string(b), `"prefix":"/shop/cart"`) {
		t.Errorf("audit file: %s %v", b, err)
	}
}
