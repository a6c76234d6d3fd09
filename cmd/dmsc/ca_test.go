package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dmsc-mesh/dmsc/ca"
	"github.com/dmsc-mesh/dmsc/wire"
)

// runSplit runs dmsc in-process with standard output and standard error
// kept apart, so tests read the summary a verb prints without its log.
func runSplit(ctx context.Context, stdout, stderr io.Writer, args ...string) error {
	cmd := newRootCommand()
	cmd.SetOut(stdout)
	cmd.SetErr(stderr)
	cmd.SetArgs(args)
	return cmd.ExecuteContext(ctx)
}

// runCA runs a dmsc command line in which every "DIR" is replaced by dir.
func runCA(dir string, args ...string) (string, error) {
	var out bytes.Buffer
	expanded := make([]string, len(args))
	for i, a := range args {
		expanded[i] = strings.ReplaceAll(a, "DIR", dir)
	}
	err := runSplit(context.Background(), &out, io.Discard, expanded...)
	return out.String(), err
}

// snapshot is every file under dir with its content, to prove that a failed
// command wrote nothing.
func snapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	files := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if d.IsDir() {
			files[rel+"/"] = ""
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		files[rel] = string(b)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

func sameFiles(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// leaf reads the first certificate of a PEM file.
func leaf(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	certs, err := ca.ReadCertChain(path)
	if err != nil {
		t.Fatal(err)
	}
	return certs[0]
}

// checkIssued checks a certificate file the way a peer would: it chains to
// the CA in caDir, its key file fits it, it names want, and it is valid for
// the given duration. It returns the certificate.
func checkIssued(t *testing.T, caDir, certPath, keyPath string, want ca.Identity, validity time.Duration) *x509.Certificate {
	t.Helper()
	c := leaf(t, certPath)
	id, err := ca.IdentityOf(c)
	if err != nil {
		t.Fatalf("%s: %v", certPath, err)
	}
	if id.String() != want.String() || id.Kind != want.Kind {
		t.Errorf("%s names %s (%s), want %s", certPath, id, id.Kind, want)
	}
	caCert, _, err := ca.LoadCert(filepath.Join(caDir, ca.CertFile))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(caCert)
	if _, err := c.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		t.Errorf("%s does not chain to %s: %v", certPath, caDir, err)
	}
	key, err := ca.ReadKey(keyPath)
	if err != nil {
		t.Fatal(err)
	}
	if pub, ok := c.PublicKey.(ed25519.PublicKey); !ok || !pub.Equal(key.Public()) {
		t.Errorf("%s does not belong to %s", keyPath, certPath)
	}
	if fi, err := os.Stat(keyPath); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("%s: mode %v, %v; want 0600", keyPath, fi.Mode().Perm(), err)
	}
	if got := c.NotAfter.Sub(c.NotBefore); got != validity {
		t.Errorf("%s valid for %v, want %v", certPath, got, validity)
	}
	return c
}

func TestCAInit(t *testing.T) {
	type tc struct {
		name    string
		pre     func(t *testing.T, dir string)
		args    []string
		wantErr string
		check   func(t *testing.T, dir, out string)
	}
	makeCA := func(t *testing.T, dir string) {
		if _, err := ca.Init(filepath.Join(dir, "ca"), "example.org"); err != nil {
			t.Fatal(err)
		}
	}
	checkCA := func(domain string, validity time.Duration) func(t *testing.T, dir, out string) {
		return func(t *testing.T, dir, out string) {
			caDir := filepath.Join(dir, "ca")
			c := checkIssued(t, caDir, filepath.Join(caDir, ca.CertFile), filepath.Join(caDir, ca.KeyFile), ca.Identity{Domain: domain, Kind: ca.KindCA}, validity)
			if _, err := ca.Load(caDir); err != nil {
				t.Errorf("ca.Load of what init wrote: %v", err)
			}
			for _, want := range []string{"dmsc://" + domain, filepath.Join(caDir, ca.CertFile), filepath.Join(caDir, ca.KeyFile), ca.SerialString(c.SerialNumber)} {
				if !strings.Contains(out, want) {
					t.Errorf("output lacks %q:\n%s", want, out)
				}
			}
		}
	}
	tests := []tc{
		{name: "new CA", args: []string{"ca", "init", "--domain", "example.org", "--dir", "DIR/ca", "--validity", "48h"},
			check: checkCA("example.org", 48*time.Hour)},
		{name: "default validity", args: []string{"ca", "init", "--domain", "mesh.internal", "--dir", "DIR/ca"},
			check: checkCA("mesh.internal", ca.DefaultCAValidity)},
		{name: "force replaces", pre: makeCA, args: []string{"ca", "init", "--domain", "other.org", "--dir", "DIR/ca", "--force"},
			check: checkCA("other.org", ca.DefaultCAValidity)},
		{name: "uppercase domain", args: []string{"ca", "init", "--domain", "Example.org", "--dir", "DIR/ca"}, wantErr: `--domain "Example.org"`},
		{name: "empty label", args: []string{"ca", "init", "--domain", "a..b", "--dir", "DIR/ca"}, wantErr: "--domain"},
		{name: "empty domain", args: []string{"ca", "init", "--domain", "", "--dir", "DIR/ca"}, wantErr: "domain is empty"},
		{name: "no domain", args: []string{"ca", "init", "--dir", "DIR/ca"}, wantErr: `"domain" not set`},
		{name: "zero validity", args: []string{"ca", "init", "--domain", "example.org", "--dir", "DIR/ca", "--validity", "0s"}, wantErr: "--validity 0s"},
		{name: "negative validity", args: []string{"ca", "init", "--domain", "example.org", "--dir", "DIR/ca", "--validity", "-1h"}, wantErr: "--validity"},
		{name: "bad validity", args: []string{"ca", "init", "--domain", "example.org", "--dir", "DIR/ca", "--validity", "ten years"}, wantErr: `"--validity"`},
		{name: "exists", pre: makeCA, args: []string{"ca", "init", "--domain", "example.org", "--dir", "DIR/ca"}, wantErr: "ca.crt already exists"},
		{name: "dir is a file", pre: func(t *testing.T, dir string) {
			if err := os.WriteFile(filepath.Join(dir, "ca"), []byte("x"), 0o600); err != nil {
				t.Fatal(err)
			}
		}, args: []string{"ca", "init", "--domain", "example.org", "--dir", "DIR/ca"}, wantErr: "not a directory"},
		{name: "bad log level", args: []string{"--log-level", "loud", "ca", "init", "--domain", "example.org", "--dir", "DIR/ca"}, wantErr: "--log-level"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if tt.pre != nil {
				tt.pre(t, dir)
			}
			before := snapshot(t, dir)
			out, err := runCA(dir, tt.args...)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
				}
				if after := snapshot(t, dir); !sameFiles(before, after) {
					t.Errorf("a failed init changed the files: before %v, after %v", keys(before), keys(after))
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, dir, out)
		})
	}
}

func keys(m map[string]string) []string {
	var k []string
	for n := range m {
		k = append(k, n)
	}
	slices.Sort(k)
	return k
}

func TestCAIssue(t *testing.T) {
	const domain = "example.org"
	pod := func(prefix string) ca.Identity {
		return ca.Identity{Domain: domain, Kind: ca.KindPod, Prefix: wire.MustParseName(prefix)}
	}
	node := func(id string, role ca.Role) ca.Identity { return ca.NodeIdentity(domain, id, role) }
	type tc struct {
		name    string
		pre     func(t *testing.T, dir string)
		args    []string
		wantErr string
		// On success: the files expected, what they must name and for how long.
		cert, key string
		want      ca.Identity
		validity  time.Duration
		check     func(t *testing.T, c *x509.Certificate, out string)
	}
	issueCart := func(t *testing.T, dir string) {
		if _, err := ca.IssuePod(filepath.Join(dir, "ca"), "/shop/cart"); err != nil {
			t.Fatal(err)
		}
	}
	tests := []tc{
		{name: "pod, default paths", args: []string{"ca", "issue", "pod", "--prefix", "/shop/cart", "--dir", "DIR/ca"},
			cert: "ca/pod.shop.cart.crt", key: "ca/pod.shop.cart.key", want: pod("/shop/cart"), validity: ca.DefaultPodValidity},
		{name: "pod, one component", args: []string{"ca", "issue", "pod", "--prefix", "/pay", "--dir", "DIR/ca"},
			cert: "ca/pod.pay.crt", key: "ca/pod.pay.key", want: pod("/pay"), validity: ca.DefaultPodValidity},
		{name: "pod, own paths and validity",
			pre:  func(t *testing.T, dir string) { mkdir(t, filepath.Join(dir, "out")) },
			args: []string{"ca", "issue", "pod", "--prefix", "/shop/cart/v2", "--dir", "DIR/ca", "--out-cert", "DIR/out/c.crt", "--out-key", "DIR/out/c.key", "--validity", "1h"},
			cert: "out/c.crt", key: "out/c.key", want: pod("/shop/cart/v2"), validity: time.Hour},
		{name: "pod, force replaces", pre: issueCart, args: []string{"ca", "issue", "pod", "--prefix", "/shop/cart", "--dir", "DIR/ca", "--force", "--validity", "2h"},
			cert: "ca/pod.shop.cart.crt", key: "ca/pod.shop.cart.key", want: pod("/shop/cart"), validity: 2 * time.Hour},
		{name: "pod, uppercase", args: []string{"ca", "issue", "pod", "--prefix", "/Shop", "--dir", "DIR/ca"}, wantErr: `--prefix: ca issue pod: wire: service name "/Shop"`},
		{name: "pod, no slash", args: []string{"ca", "issue", "pod", "--prefix", "shop", "--dir", "DIR/ca"}, wantErr: "--prefix"},
		{name: "pod, four components", args: []string{"ca", "issue", "pod", "--prefix", "/a/b/c/d", "--dir", "DIR/ca"}, wantErr: "more than 3 components"},
		{name: "pod, reserved", args: []string{"ca", "issue", "pod", "--prefix", "/_node/sg1", "--dir", "DIR/ca"}, wantErr: "reserved for switches"},
		{name: "pod, no prefix", args: []string{"ca", "issue", "pod", "--dir", "DIR/ca"}, wantErr: `"prefix" not set`},
		{name: "pod, no CA", args: []string{"ca", "issue", "pod", "--prefix", "/shop", "--dir", "DIR/none"}, wantErr: "--dir " + "DIR/none: no such CA directory (make one with dmsc ca init"},
		{name: "pod, dir without CA", pre: func(t *testing.T, dir string) { mkdir(t, filepath.Join(dir, "empty")) },
			args: []string{"ca", "issue", "pod", "--prefix", "/shop", "--dir", "DIR/empty"}, wantErr: "not a CA directory"},
		{name: "pod, exists", pre: issueCart, args: []string{"ca", "issue", "pod", "--prefix", "/shop/cart", "--dir", "DIR/ca"}, wantErr: "pod.shop.cart.crt already exists"},
		{name: "pod, cert without key", args: []string{"ca", "issue", "pod", "--prefix", "/shop", "--dir", "DIR/ca", "--out-cert", "DIR/c.crt"}, wantErr: "missing [out-key]"},
		{name: "pod, out dir missing", args: []string{"ca", "issue", "pod", "--prefix", "/shop", "--dir", "DIR/ca", "--out-cert", "DIR/no/c.crt", "--out-key", "DIR/no/c.key"}, wantErr: "no/c.key"},
		{name: "pod, over the CA key", args: []string{"ca", "issue", "pod", "--prefix", "/shop", "--dir", "DIR/ca", "--out-cert", "DIR/c.crt", "--out-key", "DIR/ca/../ca/ca.key", "--force"},
			wantErr: "--out-key DIR/ca/../ca/ca.key: that is the CA's own ca.key"},
		{name: "node, over the CA certificate by a link", pre: func(t *testing.T, dir string) {
			if err := os.Symlink(filepath.Join(dir, "ca", ca.CertFile), filepath.Join(dir, "link.crt")); err != nil {
				t.Skip("no symlinks here:", err)
			}
		}, args: []string{"ca", "issue", "node", "--id", "sg1", "--role", "sg", "--dir", "DIR/ca", "--out-cert", "DIR/link.crt", "--out-key", "DIR/k.key", "--force"},
			wantErr: "--out-cert DIR/link.crt: that is the CA's own ca.crt"},
		{name: "pod, outlives the CA", args: []string{"ca", "issue", "pod", "--prefix", "/shop", "--dir", "DIR/ca", "--validity", "200000h"}, wantErr: "--validity 200000h0m0s: ca issue pod: validity ends"},
		{name: "pod, zero validity", args: []string{"ca", "issue", "pod", "--prefix", "/shop", "--dir", "DIR/ca", "--validity", "0s"}, wantErr: "--validity 0s: must be positive"},

		{name: "node sg with hosts", args: []string{"ca", "issue", "node", "--id", "sg1", "--role", "sg", "--dir", "DIR/ca", "--host", "127.0.0.1", "--host", "sg1.example.org,::1"},
			cert: "ca/node.sg1.crt", key: "ca/node.sg1.key", want: node("sg1", ca.RoleSG), validity: ca.DefaultNodeValidity,
			check: func(t *testing.T, c *x509.Certificate, out string) {
				if len(c.IPAddresses) != 2 || !c.IPAddresses[0].Equal([]byte{127, 0, 0, 1}) || c.IPAddresses[1].String() != "::1" ||
					!slices.Equal(c.DNSNames, []string{"sg1.example.org"}) {
					t.Errorf("hosts: IPs %v, DNS %v", c.IPAddresses, c.DNSNames)
				}
				if !strings.Contains(out, "hosts     sg1.example.org, 127.0.0.1, ::1") {
					t.Errorf("output lacks the hosts:\n%s", out)
				}
			}},
		{name: "node sr", args: []string{"ca", "issue", "node", "--id", "sr1", "--role", "sr", "--dir", "DIR/ca"},
			cert: "ca/node.sr1.crt", key: "ca/node.sr1.key", want: node("sr1", ca.RoleSR), validity: ca.DefaultNodeValidity},
		{name: "node spa, own paths", args: []string{"ca", "issue", "node", "--id", "spa1", "--role", "spa", "--dir", "DIR/ca", "--out-cert", "DIR/spa.crt", "--out-key", "DIR/spa.key", "--validity", "720h"},
			cert: "spa.crt", key: "spa.key", want: node("spa1", ca.RoleSPA), validity: 720 * time.Hour},
		{name: "node scsc", args: []string{"ca", "issue", "node", "--id", "scsc-1", "--role", "scsc", "--dir", "DIR/ca"},
			cert: "ca/node.scsc-1.crt", key: "ca/node.scsc-1.key", want: node("scsc-1", ca.RoleSCSC), validity: ca.DefaultNodeValidity},
		{name: "node, unknown role", args: []string{"ca", "issue", "node", "--id", "gw1", "--role", "gw", "--dir", "DIR/ca"}, wantErr: `--role "gw": want one of sg, sr, spa, scsc`},
		{name: "node, uppercase id", args: []string{"ca", "issue", "node", "--id", "SG1", "--role", "sg", "--dir", "DIR/ca"}, wantErr: `--id: ca issue node: wire: router id "SG1"`},
		{name: "node, id with slash", args: []string{"ca", "issue", "node", "--id", "a/b", "--role", "sg", "--dir", "DIR/ca"}, wantErr: "--id"},
		{name: "node, no role", args: []string{"ca", "issue", "node", "--id", "sg1", "--dir", "DIR/ca"}, wantErr: `"role" not set`},
		{name: "node, no id", args: []string{"ca", "issue", "node", "--role", "sg", "--dir", "DIR/ca"}, wantErr: `"id" not set`},
		{name: "node, bad host", args: []string{"ca", "issue", "node", "--id", "sg1", "--role", "sg", "--dir", "DIR/ca", "--host", "a b"}, wantErr: `--host "a b"`},
		{name: "node, no CA", args: []string{"ca", "issue", "node", "--id", "sg1", "--role", "sg", "--dir", "DIR/none"}, wantErr: "--dir"},
		{name: "node, exists", pre: func(t *testing.T, dir string) {
			if _, err := ca.IssueNode(filepath.Join(dir, "ca"), "sg1", ca.RoleSG); err != nil {
				t.Fatal(err)
			}
		}, args: []string{"ca", "issue", "node", "--id", "sg1", "--role", "sg", "--dir", "DIR/ca"}, wantErr: "node.sg1.crt already exists"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if _, err := ca.Init(filepath.Join(dir, "ca"), domain); err != nil {
				t.Fatal(err)
			}
			if tt.pre != nil {
				tt.pre(t, dir)
			}
			before := snapshot(t, dir)
			out, err := runCA(dir, tt.args...)
			if tt.wantErr != "" {
				want := strings.ReplaceAll(tt.wantErr, "DIR", dir)
				if err == nil || !strings.Contains(err.Error(), want) {
					t.Fatalf("error %v, want one containing %q", err, want)
				}
				if after := snapshot(t, dir); !sameFiles(before, after) {
					t.Errorf("a failed issue changed the files: before %v, after %v", keys(before), keys(after))
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			certPath, keyPath := filepath.Join(dir, tt.cert), filepath.Join(dir, tt.key)
			c := checkIssued(t, filepath.Join(dir, "ca"), certPath, keyPath, tt.want, tt.validity)
			for _, want := range []string{tt.want.String(), certPath, keyPath, ca.SerialString(c.SerialNumber)} {
				if !strings.Contains(out, want) {
					t.Errorf("output lacks %q:\n%s", want, out)
				}
			}
			if tt.check != nil {
				tt.check(t, c, out)
			}
		})
	}
}

func TestCAShow(t *testing.T) {
	dir := t.TempDir()
	caDir := filepath.Join(dir, "ca")
	authority, err := ca.Init(caDir, "example.org")
	if err != nil {
		t.Fatal(err)
	}
	cart, err := ca.IssuePod(caDir, "/shop/cart")
	if err != nil {
		t.Fatal(err)
	}
	sg, err := ca.IssueNode(caDir, "sg1", ca.RoleSG, ca.WithHosts("10.0.0.1", "sg1.example.org"))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	expired, err := ca.IssuePod(caDir, "/old", ca.WithNotBefore(now.Add(-48*time.Hour)), ca.WithValidity(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	future, err := ca.IssuePod(caDir, "/soon", ca.WithNotBefore(now.Add(3*time.Hour)), ca.WithValidity(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	chain := filepath.Join(dir, "chain.pem")
	writeFile(t, chain, string(cart.CertPEM)+string(authority.CertPEM))
	foreign := filepath.Join(dir, "foreign.crt")
	foreignCert := selfSigned(t)
	writeFile(t, foreign, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: foreignCert.Raw})))

	serial := func(c *x509.Certificate) string { return "serial    " + ca.SerialString(c.SerialNumber) }
	tests := []struct {
		name    string
		args    []string
		want    []string
		wantErr string
	}{
		{name: "pod", args: []string{cart.CertPath}, want: []string{
			"identity  dmsc://example.org/shop/cart", "kind      pod", serial(cart.Cert),
			"issuer    CN=DMSC CA example.org,O=DMSC", cart.Cert.NotAfter.UTC().Format(time.RFC3339), "(valid now; expires in 89d)"}},
		{name: "node", args: []string{sg.CertPath}, want: []string{
			"identity  dmsc://example.org/_node/sg1 (role sg)", "kind      node", serial(sg.Cert), "hosts     sg1.example.org, 10.0.0.1"}},
		{name: "ca", args: []string{filepath.Join(caDir, ca.CertFile)}, want: []string{
			"identity  dmsc://example.org\n", "kind      ca", serial(authority.Cert)}},
		{name: "expired", args: []string{expired.CertPath}, want: []string{"identity  dmsc://example.org/old", "(EXPIRED 47h0m0s ago)"}},
		{name: "not yet valid", args: []string{future.CertPath}, want: []string{"(not yet valid: starts in 3h0m0s)"}},
		{name: "chain", args: []string{chain}, want: []string{
			"certificate 1 of 2 in " + chain, "identity  dmsc://example.org/shop/cart", "certificate 2 of 2", "kind      ca"}},
		{name: "not a DMSC certificate", args: []string{foreign}, want: []string{serial(foreignCert), "identity  (none: ca: certificate carries no dmsc:// URI SAN)"},
			wantErr: foreign + ": certificate 1: ca: certificate carries no dmsc:// URI SAN"},
		{name: "a key file", args: []string{cart.KeyPath}, wantErr: cart.KeyPath + ": no CERTIFICATE PEM block"},
		{name: "missing file", args: []string{filepath.Join(dir, "nope.crt")}, wantErr: "nope.crt: no such file"},
		{name: "no file", args: nil, wantErr: "accepts 1 arg(s)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			cmd := newCAShowCommand()
			cmd.SetArgs(tt.args)
			cmd.SetOut(&out)
			cmd.SetErr(io.Discard)
			// A file runs through runCAShow with the clock the certificates
			// were made by, so the relative times printed are known; the
			// argument check needs the cobra command.
			var err error
			if len(tt.args) == 1 {
				err = runCAShow(&out, tt.args[0], now)
			} else {
				err = cmd.Execute()
			}
			if tt.wantErr == "" && err != nil {
				t.Fatal(err)
			}
			if tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
			}
			for _, w := range tt.want {
				if !strings.Contains(out.String(), w) {
					t.Errorf("output lacks %q:\n%s", w, out.String())
				}
			}
		})
	}
	// Through the whole command line too.
	out, err := runCA(dir, "ca", "show", cart.CertPath)
	if err != nil || !strings.Contains(out, "dmsc://example.org/shop/cart") || !strings.Contains(out, ca.SerialString(cart.Cert.SerialNumber)) {
		t.Errorf("dmsc ca show: %v\n%s", err, out)
	}
}

// selfSigned is a certificate from outside DMSC: no dmsc:// URI.
func selfSigned(t *testing.T) *x509.Certificate {
	t.Helper()
	pub, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(0xbeef), Subject: pkix.Name{CommonName: "web"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), DNSNames: []string{"web.example.com"}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func mkdir(t *testing.T, dir string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}
