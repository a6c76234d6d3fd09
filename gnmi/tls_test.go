package gnmi

import (
	"context"
	"crypto/tls"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dmsc-mesh/dmsc/ca"
	gpb "github.com/openconfig/gnmi/proto/gnmi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestTLSAndAuthorization serves a target with a node certificate of the
// domain CA and an Authorize hook like an agent's: SCSC may do everything,
// another agent may read but not Set, an SR is refused outright.
func TestTLSAndAuthorization(t *testing.T) {
	dir := t.TempDir()
	authority, err := ca.Init(dir, "mesh.test")
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(dir, ca.CertFile)
	issue := func(id string, role ca.Role) *ca.Issued {
		is, err := ca.IssueNode(dir, id, role)
		if err != nil {
			t.Fatal(err)
		}
		return is
	}
	agent, scsc, sg2, sr := issue("sg1", ca.RoleSG), issue("scsc1", ca.RoleSCSC), issue("sg2", ca.RoleSG), issue("sr1", ca.RoleSR)

	serverTLS, self, err := ca.LoadServerTLS(caFile, agent.CertPath, agent.KeyPath)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	seen := map[string]bool{} // identity and rpc, as Authorize saw them
	authorize := func(ctx context.Context, rpc string) error {
		cs, ok := PeerTLS(ctx)
		if !ok {
			return status.Error(codes.Unauthenticated, "no TLS")
		}
		id, err := ca.PeerIdentity(cs, authority.Domain)
		if err != nil {
			return status.Errorf(codes.Unauthenticated, "%v", err)
		}
		cert, err := PeerCertificate(ctx)
		if err != nil || cert.SerialNumber.Cmp(cs.VerifiedChains[0][0].SerialNumber) != 0 {
			return status.Errorf(codes.Internal, "PeerCertificate: %v", err)
		}
		mu.Lock()
		seen[id.NodeID+" "+rpc] = true
		mu.Unlock()
		switch {
		case id.Role == ca.RoleSR:
			return status.Errorf(codes.PermissionDenied, "role %s may not use gNMI here", id.Role)
		case rpc == RPCSet && id.Role != ca.RoleSCSC:
			return errors.New("only SCSC sets policies") // a plain error: PERMISSION_DENIED
		}
		return nil
	}
	setter := &recordingSetter{writable: PolicyConfigPattern(), config: map[string]any{}}
	tg, addr := serve(t, TargetOptions{Name: self.NodeID, TLS: serverTLS, Authorize: authorize, Setter: setter})
	setter.tg = tg
	fill(t, tg)

	dial := func(is *ca.Issued, roles ...ca.Role) (*Client, error) {
		conf, _, err := ca.LoadClientTLS(caFile, is.CertPath, is.KeyPath, roles...)
		if err != nil {
			t.Fatal(err)
		}
		return Dial(ctxTimeout(t, 5*time.Second), addr, conf)
	}

	// SCSC: reads, subscribes and sets.
	c, err := dial(scsc, ca.RoleSG, ca.RoleSR)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := ctxTimeout(t, 10*time.Second)
	if rs, err := c.Get(ctx, "/interfaces/interface[name=1]/state/oper-status"); err != nil || len(rs) != 1 {
		t.Fatalf("SCSC Get: %v, %v", rs, err)
	}
	if _, err := c.Set(ctx, ReplaceOp(PolicyConfigPath("p9"), JSON(`{"w":1}`))); err != nil {
		t.Fatalf("SCSC Set: %v", err)
	}
	s := subscribe(t, c, streamList(t, gpb.SubscriptionMode_ON_CHANGE, 0, 0, false, "/dmsc/policies/policy[id=p9]"))
	if got := s.untilSync(); len(got) != 1 || !strings.Contains(got[0], `{"w":1}`) {
		t.Fatalf("SCSC subscription: %q", got)
	}

	// Another agent: reads, but its Set is refused before the Setter.
	c2, err := dial(sg2)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if _, err := c2.Get(ctx, "/dmsc/policies"); err != nil {
		t.Fatalf("sg2 Get: %v", err)
	}
	calls := len(setter.calls)
	_, err = c2.Set(ctx, DeleteOp(PolicyConfigPath("p9")))
	wantCode(t, err, codes.PermissionDenied)
	if !strings.Contains(err.Error(), "only SCSC") || len(setter.calls) != calls {
		t.Fatalf("sg2 Set: %v (Setter calls %d → %d)", err, calls, len(setter.calls))
	}

	// An SR: refused at Dial (Capabilities), and on every RPC.
	if _, err := dial(sr); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("SR Dial: %v, want PERMISSION_DENIED", err)
	}

	mu.Lock()
	for _, want := range []string{"scsc1 Get", "scsc1 Set", "scsc1 Subscribe", "sg2 Get", "sg2 Set", "sr1 Capabilities"} {
		if !seen[want] {
			t.Errorf("Authorize never saw %q (saw %v)", want, seen)
		}
	}
	mu.Unlock()

	// No certificate, no TLS, or a server of the wrong role: no connection.
	pool := authority.Pool()
	if _, err := Dial(ctxTimeout(t, 5*time.Second), addr, &tls.Config{RootCAs: pool, ServerName: "sg1", InsecureSkipVerify: true}); err == nil { //nolint:gosec // a test of refusal
		t.Error("a client without a certificate connected")
	}
	if _, err := Dial(ctxTimeout(t, 5*time.Second), addr, nil); err == nil {
		t.Error("a client without TLS connected")
	}
	if _, err := dial(scsc, ca.RoleSPA); err == nil || !strings.Contains(err.Error(), "want role") {
		t.Errorf("a client expecting an SPA accepted an SG: %v", err)
	}
}

func TestPeerHelpersWithoutTLS(t *testing.T) {
	if _, ok := PeerTLS(context.Background()); ok {
		t.Error("PeerTLS found TLS on a bare context")
	}
	if _, err := PeerCertificate(context.Background()); err == nil {
		t.Error("PeerCertificate found a certificate on a bare context")
	}
	var seenErr error
	tg, c := serveAndDial(t, TargetOptions{Authorize: func(ctx context.Context, rpc string) error {
		_, seenErr = PeerCertificate(ctx)
		return nil
	}})
	_ = tg
	if _, err := c.Capabilities(ctxTimeout(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	if seenErr == nil {
		t.Error("PeerCertificate found a certificate on an insecure connection")
	}
}
