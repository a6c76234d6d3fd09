package spa

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	spapb "github.com/dmsc-mesh/dmsc/api/spa"
	"github.com/dmsc-mesh/dmsc/ca"
)

// testPKI is a domain CA with the certificates the tests use, all real and
// written under a temporary directory.
type testPKI struct {
	dir   string
	ca    *ca.CA
	other *ca.CA // a second, untrusted CA of the same domain name
	spa   *ca.Issued
	sg1   *ca.Issued
	sg2   *ca.Issued
	sr1   *ca.Issued
}

func newPKI(t testing.TB) *testPKI {
	t.Helper()
	dir := t.TempDir()
	c, err := ca.Init(filepath.Join(dir, "ca"), "example.org")
	if err != nil {
		t.Fatal(err)
	}
	other, err := ca.Init(filepath.Join(dir, "other"), "example.org")
	if err != nil {
		t.Fatal(err)
	}
	p := &testPKI{dir: dir, ca: c, other: other}
	if p.spa, err = ca.IssueNode(filepath.Join(dir, "ca"), "spa1", ca.RoleSPA); err != nil {
		t.Fatal(err)
	}
	p.sg1 = p.node(t, "sg1", ca.RoleSG)
	p.sg2 = p.node(t, "sg2", ca.RoleSG)
	p.sr1 = p.node(t, "sr1", ca.RoleSR)
	return p
}

func (p *testPKI) node(t testing.TB, id string, role ca.Role) *ca.Issued {
	t.Helper()
	is, err := p.ca.IssueNode(id, role)
	if err != nil {
		t.Fatal(err)
	}
	return is
}

func (p *testPKI) pod(t testing.TB, prefix string, opts ...ca.Option) *ca.Issued {
	t.Helper()
	is, err := p.ca.IssuePod(prefix, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return is
}

// clock is real time plus an offset that tests move forward.
type clock struct{ off atomic.Int64 }

func (c *clock) now() time.Time          { return time.Now().Add(time.Duration(c.off.Load())) }
func (c *clock) advance(d time.Duration) { c.off.Add(int64(d)) }

// syncBuffer is an audit sink safe for the server's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// lines decodes the JSON audit lines.
func (s *syncBuffer) lines(t testing.TB) []map[string]any {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(s.b.String()), "\n") {
		if l == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("audit line %q: %v", l, err)
		}
		out = append(out, m)
	}
	return out
}

const testPolicy = `version: 1
rules:
  - deny: /shop/admin/**
  - allow: self
  - allow: self/**
    identity: /shop
  - allow: /pinned/**
    identity: /pinned
    sgs: [sg2]
`

type harness struct {
	t     testing.TB
	pki   *testPKI
	cfg   *Config
	clock *clock
	audit *syncBuffer
	srv   *Server
	addr  string
	stop  func()
}

type harnessOpt struct {
	mutate func(*Config)
	store  Store
	addr   string // listen here instead of a fresh port
	clock  *clock
}

// startServer runs an SPA on loopback with real mTLS; it stops at cleanup.
func startServer(t testing.TB, p *testPKI, o harnessOpt) *harness {
	t.Helper()
	dir := t.TempDir()
	policy := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(policy, []byte(testPolicy), 0o600); err != nil {
		t.Fatal(err)
	}
	revoked := filepath.Join(dir, "revoked.txt")
	if err := os.WriteFile(revoked, []byte("# none yet\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.Listen = "127.0.0.1:0"
	cfg.CA = filepath.Join(p.dir, "ca", ca.CertFile)
	cfg.Cert, cfg.Key = p.spa.CertPath, p.spa.KeyPath
	cfg.Store = filepath.Join(dir, "spa.db")
	cfg.Policy = policy
	cfg.Revocation = revoked
	cfg.ReloadInterval = 20 * time.Millisecond
	cfg.RatePerSecond = 0
	if o.mutate != nil {
		o.mutate(&cfg)
	}
	h := &harness{t: t, pki: p, cfg: &cfg, clock: o.clock, audit: &syncBuffer{}}
	if h.clock == nil {
		h.clock = &clock{}
	}
	h.start(o.store, o.addr)
	return h
}

func (h *harness) start(store Store, addr string) {
	t := h.t
	t.Helper()
	opts := []ServerOption{
		WithClock(h.clock.now),
		WithAuditLogger(slog.New(slog.NewJSONHandler(h.audit, nil))),
		WithLogger(slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))),
	}
	if store != nil {
		opts = append(opts, WithStore(store))
	}
	srv, err := NewServer(h.cfg, opts...)
	if err != nil {
		t.Fatal(err)
	}
	if addr == "" {
		addr = h.cfg.Listen
	}
	var lis net.Listener
	for i := 0; ; i++ {
		lis, err = net.Listen("tcp", addr)
		if err == nil || i == 50 {
			break
		}
		time.Sleep(20 * time.Millisecond) // the previous server's port may linger
	}
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, lis) }()
	h.srv, h.addr = srv, lis.Addr().String()
	var once sync.Once
	h.stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Serve: %v", err)
			}
			if err := srv.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
		})
	}
	t.Cleanup(h.stop)
}

// restart stops the server and starts a new one on the same store file and
// address, as an SPA restart does.
func (h *harness) restart() {
	h.t.Helper()
	h.stop()
	h.start(nil, h.addr)
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// conn is a raw gRPC client authenticated as node.
func (h *harness) conn(node *ca.Issued) spapb.SPAClient {
	h.t.Helper()
	tc, err := ca.ClientTLS(h.pki.ca.Cert, node.TLSCertificate(), ca.RoleSPA)
	if err != nil {
		h.t.Fatal(err)
	}
	return h.connTLS(tc)
}

func (h *harness) connTLS(tc *tls.Config) spapb.SPAClient {
	h.t.Helper()
	cc, err := grpc.NewClient("passthrough:///"+h.addr, grpc.WithTransportCredentials(credentials.NewTLS(tc)))
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() { cc.Close() })
	return spapb.NewSPAClient(cc)
}

// announce builds the request an SG sends for pod announcing prefix on port,
// the proof signed for sg.
func (h *harness) announce(pod *ca.Issued, prefix, sg string, port uint32) *spapb.AuthorizeRequest {
	h.t.Helper()
	ch, err := ca.NewChallenge(h.clock.now())
	if err != nil {
		h.t.Fatal(err)
	}
	return signed(h.t, pod, ch, prefix, sg, port)
}

func signed(t testing.TB, pod *ca.Issued, ch []byte, prefix, sg string, port uint32) *spapb.AuthorizeRequest {
	t.Helper()
	sig, err := ca.SignProof(pod.Key, ch, sg, port, prefix)
	if err != nil {
		t.Fatal(err)
	}
	return &spapb.AuthorizeRequest{Prefix: prefix, CertChain: [][]byte{pod.Cert.Raw}, Challenge: ch, Signature: sig, SgPort: port}
}

// snapshot is the whole registry, for "changed no state" checks.
func (h *harness) snapshot() string {
	h.t.Helper()
	var b strings.Builder
	err := h.srv.store.View(context.Background(), func(tx Tx) error {
		if err := tx.Services("", func(s Service) bool {
			j, _ := json.Marshal(s)
			b.Write(j)
			b.WriteByte('\n')
			return true
		}); err != nil {
			return err
		}
		return tx.Instances("", func(in Instance) bool {
			j, _ := json.Marshal(in)
			b.Write(j)
			b.WriteByte('\n')
			return true
		})
	})
	if err != nil {
		h.t.Fatal(err)
	}
	bs := h.srv.store.(*BoltStore)
	_ = bs.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketNames).ForEach(func(k, v []byte) error {
			b.WriteString(string(v))
			b.WriteByte('\n')
			return nil
		})
	})
	return b.String()
}
