package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	spapb "github.com/dmsc-mesh/dmsc/api/spa"
	"github.com/dmsc-mesh/dmsc/ca"
	"github.com/dmsc-mesh/dmsc/spa"
)

// spaFixture is a domain PKI and an SPA configuration in a temporary
// directory: the CA and SPA's certificate made by the ca verbs, an SG node
// certificate and a pod certificate made by the ca package.
type spaFixture struct {
	dir    string
	caDir  string
	config string // spa.yaml
	store  string
	audit  string
	sgCert string
	sgKey  string
	pod    *ca.Issued // /shop/cart, in memory
}

const fixtureConfig = `listen: 127.0.0.1:0
tls:
  ca: ca/ca.crt
  cert: ca/node.spa1.crt
  key: ca/node.spa1.key
store: spa.db
policy: policy.yaml
revocation: revoked.txt
audit_log: audit.jsonl
lease: 30s
rate_limit:
  per_second: 0
`

const fixturePolicy = `version: 1
rules:
  - deny: /shop/admin/**
  - allow: self
`

func newSPAFixture(t *testing.T) *spaFixture {
	t.Helper()
	dir := t.TempDir()
	fx := &spaFixture{
		dir: dir, caDir: filepath.Join(dir, "ca"), config: filepath.Join(dir, "spa.yaml"),
		store: filepath.Join(dir, "spa.db"), audit: filepath.Join(dir, "audit.jsonl"),
	}
	for _, args := range [][]string{
		{"ca", "init", "--domain", "example.org", "--dir", "DIR/ca"},
		{"ca", "issue", "node", "--id", "spa1", "--role", "spa", "--dir", "DIR/ca"},
	} {
		if out, err := runCA(dir, args...); err != nil {
			t.Fatalf("dmsc %v: %v\n%s", args, err, out)
		}
	}
	sg, err := ca.IssueNode(fx.caDir, "sg1", ca.RoleSG)
	if err != nil {
		t.Fatal(err)
	}
	fx.sgCert, fx.sgKey = sg.CertPath, sg.KeyPath
	authority, err := ca.Load(fx.caDir)
	if err != nil {
		t.Fatal(err)
	}
	if fx.pod, err = authority.IssuePod("/shop/cart"); err != nil {
		t.Fatal(err)
	}
	writeFile(t, fx.config, fixtureConfig)
	writeFile(t, filepath.Join(dir, "policy.yaml"), fixturePolicy)
	writeFile(t, filepath.Join(dir, "revoked.txt"), "# nothing revoked\n")
	return fx
}

// edit replaces old with new in spa.yaml (old must be there).
func (fx *spaFixture) edit(t *testing.T, old, new string) {
	t.Helper()
	b, err := os.ReadFile(fx.config)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(b, []byte(old)) {
		t.Fatalf("spa.yaml has no %q", old)
	}
	writeFile(t, fx.config, strings.Replace(string(b), old, new, 1))
}

func TestSPACheck(t *testing.T) {
	tests := []struct {
		name    string
		pre     func(t *testing.T, fx *spaFixture)
		args    []string // default: --config DIR/spa.yaml
		wantErr string
	}{
		{name: "good"},
		{name: "good while an SPA holds the store", pre: func(t *testing.T, fx *spaFixture) {
			st, err := spa.OpenBoltStore(fx.store)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { st.Close() })
		}},
		{name: "good without revocation or audit log", pre: func(t *testing.T, fx *spaFixture) {
			fx.edit(t, "revocation: revoked.txt\n", "")
			fx.edit(t, "audit_log: audit.jsonl\n", "")
		}},
		{name: "no such config", args: []string{"spa", "--check", "--config", "DIR/none.yaml"}, wantErr: "--config DIR/none.yaml: spa config: open DIR/none.yaml: no such file"},
		{name: "bad duration", pre: func(t *testing.T, fx *spaFixture) { fx.edit(t, "lease: 30s", "lease: 3") },
			wantErr: `spa.yaml:10: lease: want a duration such as 30s or 2m, got "3"`},
		{name: "unknown field", pre: func(t *testing.T, fx *spaFixture) { fx.edit(t, "lease: 30s", "leases: 30s") },
			wantErr: "spa.yaml:10: leases: unknown field"},
		{name: "bad listen", pre: func(t *testing.T, fx *spaFixture) { fx.edit(t, "listen: 127.0.0.1:0", "listen: localhost") },
			wantErr: "spa.yaml:1: listen"},
		{name: "bad policy", pre: func(t *testing.T, fx *spaFixture) {
			writeFile(t, filepath.Join(fx.dir, "policy.yaml"), "version: 1\nrules:\n  - allow: /Shop\n")
		}, wantErr: `policy.yaml:3: rules[0].allow: wire: service name "/Shop"`},
		{name: "no policy file", pre: func(t *testing.T, fx *spaFixture) { os.Remove(filepath.Join(fx.dir, "policy.yaml")) },
			wantErr: "policy: stat DIR/policy.yaml: no such file"},
		{name: "bad revocation list", pre: func(t *testing.T, fx *spaFixture) {
			writeFile(t, filepath.Join(fx.dir, "revoked.txt"), "3a:f2\nnot-hex\n")
		}, wantErr: "revoked.txt:2"},
		{name: "not an spa certificate", pre: func(t *testing.T, fx *spaFixture) {
			fx.edit(t, "cert: ca/node.spa1.crt", "cert: ca/node.sg1.crt")
			fx.edit(t, "key: ca/node.spa1.key", "key: ca/node.sg1.key")
		}, wantErr: "want a node certificate of role spa"},
		{name: "key of another certificate", pre: func(t *testing.T, fx *spaFixture) {
			fx.edit(t, "key: ca/node.spa1.key", "key: ca/node.sg1.key")
		}, wantErr: "node.sg1.key does not belong to DIR/ca/node.spa1.crt"},
		{name: "certificate of another CA", pre: func(t *testing.T, fx *spaFixture) {
			if _, err := ca.Init(filepath.Join(fx.dir, "other"), "example.org"); err != nil {
				t.Fatal(err)
			}
			fx.edit(t, "ca: ca/ca.crt", "ca: other/ca.crt")
		}, wantErr: "node.spa1.crt: x509: certificate signed by unknown authority"},
		{name: "no CA file", pre: func(t *testing.T, fx *spaFixture) { fx.edit(t, "ca: ca/ca.crt", "ca: nope/ca.crt") },
			wantErr: "nope/ca.crt: no such file"},
		{name: "store directory missing", pre: func(t *testing.T, fx *spaFixture) { fx.edit(t, "store: spa.db", "store: gone/spa.db") },
			wantErr: "store: DIR/gone/spa.db cannot be created"},
		{name: "store is a directory", pre: func(t *testing.T, fx *spaFixture) { mkdir(t, fx.store) },
			wantErr: "store: DIR/spa.db is not a regular file"},
		{name: "audit log directory missing", pre: func(t *testing.T, fx *spaFixture) {
			fx.edit(t, "audit_log: audit.jsonl", "audit_log: gone/audit.jsonl")
		}, wantErr: "audit_log: DIR/gone/audit.jsonl cannot be created"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fx := newSPAFixture(t)
			if tt.pre != nil {
				tt.pre(t, fx)
			}
			args := tt.args
			if args == nil {
				args = []string{"spa", "--check", "--config", "DIR/spa.yaml"}
			}
			before := snapshot(t, fx.dir)
			start := time.Now()
			out, err := runCA(fx.dir, args...)
			if took := time.Since(start); took > 900*time.Millisecond {
				// bbolt waits a second for a held lock; the check must not
				// touch the store at all.
				t.Errorf("--check took %v", took)
			}
			if after := snapshot(t, fx.dir); !sameFiles(before, after) {
				t.Errorf("--check changed the files: before %v, after %v", keys(before), keys(after))
			}
			if tt.wantErr != "" {
				want := strings.ReplaceAll(tt.wantErr, "DIR", fx.dir)
				if err == nil || !strings.Contains(err.Error(), want) {
					t.Fatalf("error %v, want one containing %q", err, want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if want := fx.config + ": ok: domain example.org"; !strings.Contains(out, want) {
				t.Errorf("output %q lacks %q", out, want)
			}
		})
	}
}

// syncBuffer collects a command's log while its goroutines write it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// records decodes the JSON log lines with message msg.
func (s *syncBuffer) records(t *testing.T, msg string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, l := range strings.Split(s.String(), "\n") {
		var m map[string]any
		if l == "" || json.Unmarshal([]byte(l), &m) != nil {
			continue
		}
		if m["msg"] == msg {
			out = append(out, m)
		}
	}
	return out
}

// startSPA runs `dmsc spa` on fx until the returned stop is called; it
// returns the address the server listens on.
func startSPA(t *testing.T, fx *spaFixture) (addr string, stop func() error, log *syncBuffer) {
	t.Helper()
	log = &syncBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- runSplit(ctx, io.Discard, log, "--log-format", "json", "spa", "--config", fx.config)
	}()
	var once sync.Once
	var stopErr error
	stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case stopErr = <-done:
			case <-time.After(10 * time.Second):
				stopErr = errors.New("dmsc spa did not stop within 10 s of its context ending")
			}
		})
		return stopErr
	}
	t.Cleanup(func() { _ = stop() })
	deadline := time.After(5 * time.Second)
	for {
		if recs := log.records(t, "spa listening"); len(recs) > 0 {
			addr, _ = recs[0]["addr"].(string)
			if addr == "" || strings.HasSuffix(addr, ":0") {
				t.Fatalf("listening record without a port: %v", recs[0])
			}
			return addr, stop, log
		}
		select {
		case err := <-done:
			t.Fatalf("dmsc spa exited before listening: %v\n%s", err, log.String())
		case <-deadline:
			t.Fatalf("dmsc spa did not listen within 5 s:\n%s", log.String())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// announce is the request sg1 sends to SPA for fx's pod announcing prefix
// on port, signed by the pod over a fresh challenge.
func (fx *spaFixture) announce(t *testing.T, prefix string, port uint32) *spapb.AuthorizeRequest {
	t.Helper()
	ch, err := ca.NewChallenge(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	sig, err := ca.SignProof(fx.pod.Key, ch, "sg1", port, prefix)
	if err != nil {
		t.Fatal(err)
	}
	return &spapb.AuthorizeRequest{Prefix: prefix, CertChain: [][]byte{fx.pod.Cert.Raw}, Challenge: ch, Signature: sig, SgPort: port}
}

// TestSPAServes runs the verb on a port-0 configuration, announces a pod
// through the SPA client as SG sg1, stops the verb by its context and checks
// that the decision was kept in the store, which the verb closed.
func TestSPAServes(t *testing.T) {
	fx := newSPAFixture(t)
	addr, stop, log := startSPA(t, fx)

	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Second)
	defer cancel()
	tc, self, err := ca.LoadClientTLS(filepath.Join(fx.caDir, ca.CertFile), fx.sgCert, fx.sgKey, ca.RoleSPA)
	if err != nil {
		t.Fatal(err)
	}
	if self.NodeID != "sg1" || self.Role != ca.RoleSG {
		t.Fatalf("client identity %s", self)
	}
	c, err := spa.Dial(ctx, addr, tc)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	resp, err := c.Authorize(ctx, fx.announce(t, "/shop/cart", 3))
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetDecision() != spapb.Decision_ALLOWED || resp.GetInstanceId() != 1 || resp.GetIdentity() != "dmsc://example.org/shop/cart" ||
		resp.GetLease().AsDuration() != 30*time.Second {
		t.Fatalf("Authorize /shop/cart: %v", resp)
	}
	// The policy and the certificate are in force: a sibling is refused.
	resp, err = c.Authorize(ctx, fx.announce(t, "/pay", 3))
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetDecision() != spapb.Decision_REFUSED || resp.GetReason() != spapb.Reason_PREFIX_OUTSIDE_CERT {
		t.Fatalf("Authorize /pay with a /shop/cart certificate: %v", resp)
	}

	if err := stop(); err != nil {
		t.Fatalf("dmsc spa: %v\n%s", err, log.String())
	}
	if len(log.records(t, "spa stopped")) != 1 {
		t.Errorf("no \"spa stopped\" record:\n%s", log.String())
	}
	// The verb closed the store: it opens at once (bbolt would wait a
	// second for a held lock and fail) and holds the instance.
	st, err := spa.OpenBoltStore(fx.store)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var got []spa.Instance
	err = st.View(context.Background(), func(tx spa.Tx) error {
		return tx.Instances("", func(in spa.Instance) bool { got = append(got, in); return true })
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Name != "/shop/cart" || got[0].SG != "sg1" || got[0].Port != 3 || got[0].ID != 1 ||
		got[0].Serial != ca.SerialString(fx.pod.Cert.SerialNumber) {
		t.Errorf("store holds %+v", got)
	}
	// Both decisions went to the configured audit log.
	audit, err := os.ReadFile(fx.audit)
	if err != nil {
		t.Fatal(err)
	}
	var decisions []string
	for _, l := range strings.Split(strings.TrimSpace(string(audit)), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("audit line %q: %v", l, err)
		}
		if m["rpc"] == "Authorize" {
			decisions = append(decisions, m["prefix"].(string)+" "+m["decision"].(string))
		}
	}
	if strings.Join(decisions, ", ") != "/shop/cart ALLOWED, /pay REFUSED" {
		t.Errorf("audit decisions %v", decisions)
	}
}

func TestSPAStartFailures(t *testing.T) {
	t.Run("address in use", func(t *testing.T) {
		fx := newSPAFixture(t)
		busy, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer busy.Close()
		fx.edit(t, "listen: 127.0.0.1:0", "listen: "+busy.Addr().String())
		_, err = runCA(fx.dir, "spa", "--config", "DIR/spa.yaml")
		if want := "listen " + busy.Addr().String(); err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("error %v, want one containing %q", err, want)
		}
		// The store was opened, then closed again on the way out.
		st, err := spa.OpenBoltStore(fx.store)
		if err != nil {
			t.Fatalf("store left locked: %v", err)
		}
		st.Close()
	})
	t.Run("bad config", func(t *testing.T) {
		fx := newSPAFixture(t)
		fx.edit(t, "lease: 30s", "lease: -1s")
		_, err := runCA(fx.dir, "spa", "--config", "DIR/spa.yaml")
		if err == nil || !strings.Contains(err.Error(), "spa.yaml:10: lease") {
			t.Fatalf("error %v", err)
		}
		if _, err := os.Stat(fx.store); err == nil {
			t.Error("a failed start created the store")
		}
	})
	t.Run("bad log format", func(t *testing.T) {
		fx := newSPAFixture(t)
		_, err := runCA(fx.dir, "--log-format", "xml", "spa", "--config", "DIR/spa.yaml")
		if err == nil || !strings.Contains(err.Error(), "--log-format") {
			t.Fatalf("error %v", err)
		}
	})
}

// fakeReloader answers Reload with the errors it is given, in order.
type fakeReloader struct {
	errs  chan error
	calls chan struct{}
}

func (f *fakeReloader) Reload() error {
	err := <-f.errs
	f.calls <- struct{}{}
	return err
}

// TestReloadOnSignal checks the SIGHUP loop without sending the process a
// signal: each signal on the channel is one Reload, its outcome logged.
func TestReloadOnSignal(t *testing.T) {
	f := &fakeReloader{errs: make(chan error, 2), calls: make(chan struct{}, 2)}
	f.errs <- nil
	f.errs <- errors.New("policy: policy.yaml:3: broken")
	var buf syncBuffer
	log := slog.New(slog.NewJSONHandler(&buf, nil))
	sigs := make(chan os.Signal)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { reloadOnSignal(ctx, sigs, f, log); close(done) }()
	for range 2 {
		sigs <- syscall.SIGHUP
		<-f.calls
	}
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("reloadOnSignal did not return after its context ended")
	}
	ok := buf.records(t, "spa reload checked the policy and revocation files")
	failed := buf.records(t, "spa reload failed; the previous policy and revocation list stay in force")
	if len(ok) != 1 || len(failed) != 1 || failed[0]["err"] != "policy: policy.yaml:3: broken" || ok[0]["signal"] != "hangup" {
		t.Errorf("log:\n%s", buf.String())
	}
}
