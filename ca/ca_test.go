package ca

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dmsc-mesh/dmsc/wire"
)

func newCA(t testing.TB) (*CA, string) {
	t.Helper()
	dir := t.TempDir()
	c, err := Init(dir, "example.org")
	if err != nil {
		t.Fatal(err)
	}
	return c, dir
}

func TestInitWritesFilesAndLoads(t *testing.T) {
	c, dir := newCA(t)
	fi, err := os.Stat(filepath.Join(dir, KeyFile))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("ca.key mode %v, want 0600", fi.Mode().Perm())
	}
	l, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if l.Domain != "example.org" || !l.Cert.Equal(c.Cert) {
		t.Errorf("Load: domain %q, same cert %v", l.Domain, l.Cert.Equal(c.Cert))
	}
	if !c.Cert.IsCA || !c.Cert.MaxPathLenZero || !slices.Equal(c.Cert.PermittedURIDomains, []string{"example.org"}) {
		t.Errorf("CA template: IsCA %v MaxPathLenZero %v constraints %v", c.Cert.IsCA, c.Cert.MaxPathLenZero, c.Cert.PermittedURIDomains)
	}
	cert, dom, err := LoadCert(filepath.Join(dir, CertFile))
	if err != nil || dom != "example.org" || !cert.Equal(c.Cert) {
		t.Errorf("LoadCert: %v %q", err, dom)
	}
}

func TestInitNeverOverwritesWithoutForce(t *testing.T) {
	c, dir := newCA(t)
	if _, err := Init(dir, "example.org"); !errors.Is(err, ErrExists) {
		t.Fatalf("second Init: %v, want ErrExists", err)
	}
	// Either file alone blocks too.
	if err := os.Remove(filepath.Join(dir, CertFile)); err != nil {
		t.Fatal(err)
	}
	if _, err := Init(dir, "example.org"); !errors.Is(err, ErrExists) || !strings.Contains(err.Error(), KeyFile) {
		t.Fatalf("Init over a lone ca.key: %v, want ErrExists naming ca.key", err)
	}
	c2, err := Init(dir, "example.org", WithForce())
	if err != nil {
		t.Fatal(err)
	}
	if c2.Cert.Equal(c.Cert) {
		t.Error("forced Init kept the old certificate")
	}
	l, err := Load(dir)
	if err != nil || !l.Cert.Equal(c2.Cert) {
		t.Fatalf("Load after force: %v", err)
	}
}

func TestInitBadDomain(t *testing.T) {
	for _, d := range []string{"", "Example.org", "a..b", "-a.org", "a-.org", "a_b.org", strings.Repeat("a", 64) + ".org", "a.org:80", "a/b"} {
		if _, err := Init(t.TempDir(), d); err == nil {
			t.Errorf("Init(%q) succeeded", d)
		}
	}
}

func TestLoadMismatchedKey(t *testing.T) {
	_, dir1 := newCA(t)
	_, dir2 := newCA(t)
	b, _ := os.ReadFile(filepath.Join(dir2, KeyFile))
	if err := os.WriteFile(filepath.Join(dir1, KeyFile), b, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(dir1); err == nil || !strings.Contains(err.Error(), "does not belong") {
		t.Fatalf("Load with another CA's key: %v", err)
	}
}

func TestIssuePod(t *testing.T) {
	c, _ := newCA(t)
	is, err := c.IssuePod("/shop/cart")
	if err != nil {
		t.Fatal(err)
	}
	if got := is.Cert.URIs[0].String(); got != "dmsc://example.org/shop/cart" || len(is.Cert.URIs) != 1 {
		t.Errorf("URIs %v", is.Cert.URIs)
	}
	if !slices.Contains(is.Cert.ExtKeyUsage, x509.ExtKeyUsageClientAuth) || !slices.Contains(is.Cert.ExtKeyUsage, x509.ExtKeyUsageServerAuth) {
		t.Errorf("ExtKeyUsage %v", is.Cert.ExtKeyUsage)
	}
	if _, err := is.Cert.Verify(x509.VerifyOptions{Roots: c.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Fatal(err)
	}
	id, err := IdentityOf(is.Cert)
	if err != nil {
		t.Fatal(err)
	}
	if id.Kind != KindPod || id.Domain != "example.org" || id.Prefix != wire.MustParseName("/shop/cart") {
		t.Errorf("identity %+v", id)
	}
	if got := is.Cert.NotAfter.Sub(is.Cert.NotBefore); got != DefaultPodValidity {
		t.Errorf("validity %v", got)
	}
	// An Ed25519 pod chain is small enough for one CONTROL message body.
	if n := len(is.Cert.Raw); n > wire.MaxControlBody/2 {
		t.Errorf("pod certificate is %d bytes", n)
	}
}

func TestIssueBadInput(t *testing.T) {
	c, _ := newCA(t)
	for _, tc := range []struct{ prefix, want string }{
		{"", "empty"},
		{"shop", "start with"},
		{"/Shop", "uppercase"},
		{"/_node/sg1", "reserved"},
		{"/a/b/c/d", "more than 3"},
		{"/shop/", "empty"},
	} {
		if _, err := c.IssuePod(tc.prefix); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("IssuePod(%q): %v, want %q", tc.prefix, err, tc.want)
		}
	}
	for _, tc := range []struct {
		id   string
		role Role
		want string
	}{
		{"sg1", "router", "want one of"},
		{"", RoleSG, "empty"},
		{"SG1", RoleSG, "uppercase"},
		{"a/b", RoleSR, "not allowed"},
	} {
		if _, err := c.IssueNode(tc.id, tc.role); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("IssueNode(%q, %q): %v, want %q", tc.id, tc.role, err, tc.want)
		}
	}
	if _, err := c.IssuePod("/shop", WithValidity(20*365*24*time.Hour)); err == nil || !strings.Contains(err.Error(), "after the CA's") {
		t.Errorf("pod outliving the CA: %v", err)
	}
	if _, err := c.IssuePod("/shop", WithValidity(-time.Hour)); err == nil {
		t.Error("negative validity accepted")
	}
}

func TestIssueNode(t *testing.T) {
	c, _ := newCA(t)
	for _, r := range Roles() {
		is, err := c.IssueNode("n1", r, WithHosts("spa.example.org", "127.0.0.1"))
		if err != nil {
			t.Fatal(err)
		}
		id, err := IdentityOf(is.Cert)
		if err != nil {
			t.Fatal(err)
		}
		if id.Kind != KindNode || id.NodeID != "n1" || id.Role != r {
			t.Errorf("identity %+v", id)
		}
		if !slices.Equal(is.Cert.DNSNames, []string{"spa.example.org"}) || len(is.Cert.IPAddresses) != 1 {
			t.Errorf("hosts %v %v", is.Cert.DNSNames, is.Cert.IPAddresses)
		}
	}
}

func TestValidityOptions(t *testing.T) {
	c, _ := newCA(t)
	nb := time.Now().Add(48 * time.Hour).Truncate(time.Second)
	is, err := c.IssuePod("/shop", WithNotBefore(nb), WithValidity(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if !is.Cert.NotBefore.Equal(nb) || !is.Cert.NotAfter.Equal(nb.Add(time.Hour)) {
		t.Errorf("window %v–%v", is.Cert.NotBefore, is.Cert.NotAfter)
	}
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	is, err = c.IssueNode("sg1", RoleSG, WithClock(func() time.Time { return now.Add(-24 * time.Hour) }))
	if err != nil {
		t.Fatal(err)
	}
	if want := now.Add(-24*time.Hour - backdate); !is.Cert.NotBefore.Equal(want) {
		t.Errorf("NotBefore %v, want %v", is.Cert.NotBefore, want)
	}
}

func TestPackageIssueWritesFiles(t *testing.T) {
	_, dir := newCA(t)
	is, err := IssuePod(dir, "/shop/cart")
	if err != nil {
		t.Fatal(err)
	}
	if is.CertPath != filepath.Join(dir, "pod.shop.cart.crt") || is.KeyPath != filepath.Join(dir, "pod.shop.cart.key") {
		t.Errorf("paths %s %s", is.CertPath, is.KeyPath)
	}
	if fi, err := os.Stat(is.KeyPath); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("key file: %v %v", err, fi)
	}
	if _, err := IssuePod(dir, "/shop/cart"); !errors.Is(err, ErrExists) {
		t.Errorf("second IssuePod: %v", err)
	}
	if _, err := IssuePod(dir, "/shop/cart", WithForce()); err != nil {
		t.Errorf("forced IssuePod: %v", err)
	}
	out := t.TempDir()
	nd, err := IssueNode(dir, "sg1", RoleSG, WithOutput(filepath.Join(out, "sg.crt"), filepath.Join(out, "sg.key")))
	if err != nil {
		t.Fatal(err)
	}
	tc, id, err := LoadClientTLS(filepath.Join(dir, CertFile), nd.CertPath, nd.KeyPath)
	if err != nil || tc == nil || id.NodeID != "sg1" || id.Role != RoleSG {
		t.Fatalf("LoadClientTLS: %v %+v", err, id)
	}
	if _, _, err := LoadServerTLS(filepath.Join(dir, CertFile), is.CertPath, is.KeyPath); err == nil || !strings.Contains(err.Error(), "not a node") {
		t.Errorf("LoadServerTLS with a pod certificate: %v", err)
	}
	if _, _, err := LoadServerTLS(filepath.Join(dir, CertFile), nd.CertPath, is.KeyPath); err == nil || !strings.Contains(err.Error(), "does not belong") {
		t.Errorf("LoadServerTLS with another key: %v", err)
	}
	if _, err := IssueNode(t.TempDir(), "sg1", RoleSG); err == nil {
		t.Error("IssueNode without a CA succeeded")
	}
}

// The CA's name constraint rejects a certificate naming another domain even
// where DMSC's own identity checks do not run.
func TestNameConstraint(t *testing.T) {
	c, _ := newCA(t)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: mustSerial(t), Subject: pkix.Name{CommonName: "evil"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		URIs:        []*url.URL{{Scheme: Scheme, Host: "other.org", Path: "/shop"}},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.Cert, &key.PublicKey, c.key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	if _, err := cert.Verify(x509.VerifyOptions{Roots: c.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err == nil {
		t.Fatal("a certificate for other.org verified under the example.org CA")
	}
}

func mustSerial(t testing.TB) *big.Int {
	s, err := newSerial()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestParseIdentityURIs(t *testing.T) {
	d := "dmsc://example.org"
	for _, tc := range []struct {
		name string
		uris []string
		want Identity
		err  string
	}{
		{"pod", []string{d + "/shop/cart"}, PodIdentity("example.org", wire.MustParseName("/shop/cart")), ""},
		{"node", []string{d + "/_node/sg1", d + "/_role/sg"}, NodeIdentity("example.org", "sg1", RoleSG), ""},
		{"node, role first", []string{d + "/_role/spa", d + "/_node/spa1"}, NodeIdentity("example.org", "spa1", RoleSPA), ""},
		{"ca", []string{d}, Identity{Domain: "example.org", Kind: KindCA}, ""},
		{"none", nil, Identity{}, "no dmsc"},
		{"two prefixes", []string{d + "/a", d + "/b"}, Identity{}, "2 prefix"},
		{"node without role", []string{d + "/_node/sg1"}, Identity{}, "without a"},
		{"role without node", []string{d + "/_role/sg"}, Identity{}, "without a"},
		{"prefix and node", []string{d + "/a", d + "/_node/sg1", d + "/_role/sg"}, Identity{}, "both"},
		{"two domains", []string{d + "/_node/sg1", "dmsc://other.org/_role/sg"}, Identity{}, "two domains"},
		{"uppercase domain", []string{"dmsc://Example.org/a"}, Identity{}, "not allowed"},
		{"port", []string{"dmsc://example.org:80/a"}, Identity{}, "port"},
		{"empty port", []string{"dmsc://example.org:/a"}, Identity{}, "port"},
		{"query", []string{d + "/a?x=1"}, Identity{}, "no user, query"},
		{"fragment", []string{d + "/a#x"}, Identity{}, "no user, query"},
		{"user", []string{"dmsc://u@example.org/a"}, Identity{}, "no user, query"},
		{"escape", []string{d + "/a%2Fb"}, Identity{}, ""},
		{"trailing slash", []string{d + "/a/"}, Identity{}, "empty"},
		{"bad role", []string{d + "/_node/sg1", d + "/_role/router"}, Identity{}, "want one of"},
		{"bad node id", []string{d + "/_node/SG1", d + "/_role/sg"}, Identity{}, "uppercase"},
		{"node id with slash", []string{d + "/_node/a/b", d + "/_role/sg"}, Identity{}, "not allowed"},
		{"other namespace", []string{d + "/_x/a"}, Identity{}, "not allowed"},
		{"wrong scheme", []string{"spiffe://example.org/a"}, Identity{}, "scheme"},
		{"opaque", []string{"dmsc:example.org/a"}, Identity{}, ""},
		{"no host", []string{"dmsc:///a"}, Identity{}, "empty"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseIdentityURIs(tc.uris)
			if tc.err == "" && tc.want.Kind == KindNone {
				if err == nil {
					t.Fatalf("accepted: %+v", got)
				}
				return
			}
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want %q", err, tc.err)
				}
				if !errors.Is(err, ErrBadIdentity) && !errors.Is(err, ErrNoIdentity) {
					t.Errorf("error %v is neither ErrBadIdentity nor ErrNoIdentity", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestIdentityOfCertificates(t *testing.T) {
	c, _ := newCA(t)
	id, err := IdentityOf(c.Cert)
	if err != nil || id.Kind != KindCA {
		t.Fatalf("CA identity: %+v %v", id, err)
	}
	// A pod URI on a CA certificate, and a CA URI on a leaf, are refused.
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	for _, tc := range []struct {
		isCA bool
		uri  string
		want string
	}{
		{true, "dmsc://example.org/shop", "on a CA certificate"},
		{false, "dmsc://example.org", "not a CA"},
	} {
		tmpl := &x509.Certificate{SerialNumber: mustSerial(t), NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour),
			IsCA: tc.isCA, BasicConstraintsValid: true, URIs: []*url.URL{mustURL(t, tc.uri)}}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
		if err != nil {
			t.Fatal(err)
		}
		cert, _ := x509.ParseCertificate(der)
		if _, err := IdentityOf(cert); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s (CA %v): %v, want %q", tc.uri, tc.isCA, err, tc.want)
		}
	}
	if _, err := IdentityOf(nil); !errors.Is(err, ErrNoIdentity) {
		t.Errorf("nil: %v", err)
	}
}

func mustURL(t testing.TB, s string) *url.URL {
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func TestIdentityRoundTrip(t *testing.T) {
	for _, id := range []Identity{
		PodIdentity("d", wire.MustParseName("/a/b/c")),
		NodeIdentity("x.y", "sr-7", RoleSR),
		{Domain: "d", Kind: KindCA},
	} {
		var s []string
		for _, u := range id.URIs() {
			s = append(s, u.String())
		}
		got, err := ParseIdentityURIs(s)
		if err != nil || got != id {
			t.Errorf("%v: %+v %v", id, got, err)
		}
	}
}

// A real handshake: ClientTLS accepts the SPA node and refuses a server of
// another role or of another CA; the server sees the client's identity.
func TestTLSHandshake(t *testing.T) {
	c, _ := newCA(t)
	other, _ := newCA(t)
	spaCert, _ := c.IssueNode("spa1", RoleSPA)
	scsc, _ := c.IssueNode("scsc1", RoleSCSC)
	foreign, _ := other.IssueNode("spa1", RoleSPA)
	sg, _ := c.IssueNode("sg1", RoleSG)
	for _, tc := range []struct {
		name   string
		server *Issued
		want   string
	}{
		{"spa", spaCert, ""},
		{"wrong role", scsc, "want role"},
		{"other CA", foreign, "unknown authority"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cc, err := ClientTLS(c.Cert, sg.TLSCertificate(), RoleSPA)
			if err != nil {
				t.Fatal(err)
			}
			sc := ServerTLS(c.Cert, tc.server.TLSCertificate())
			if tc.server == foreign {
				sc = ServerTLS(other.Cert, tc.server.TLSCertificate())
			}
			a, b := net.Pipe()
			defer a.Close()
			defer b.Close()
			srv := tls.Server(a, sc)
			done := make(chan error, 1)
			go func() { done <- srv.Handshake() }()
			cerr := tls.Client(b, cc).Handshake()
			b.Close()
			serr := <-done
			if tc.want == "" {
				if cerr != nil || serr != nil {
					t.Fatalf("client %v, server %v", cerr, serr)
				}
				id, err := PeerIdentity(srv.ConnectionState(), "example.org")
				if err != nil || id.NodeID != "sg1" || id.Role != RoleSG {
					t.Fatalf("PeerIdentity %+v %v", id, err)
				}
				if _, err := PeerIdentity(srv.ConnectionState(), "other.org"); err == nil {
					t.Error("PeerIdentity accepted another domain")
				}
				return
			}
			if cerr == nil || !strings.Contains(cerr.Error(), tc.want) {
				t.Fatalf("client error %v, want %q", cerr, tc.want)
			}
		})
	}
}
