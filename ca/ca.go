// Package ca is the DMSC domain certificate authority (DESIGN §7): it makes
// the domain CA, issues pod and node certificates whose URI SANs name DMSC
// identities, reads those identities back out of verified certificates, and
// defines the pod's proof of possession that SPA checks.
//
// Keys are Ed25519. The signature is 64 bytes and a whole certificate stays
// near 400 bytes, so a pod's chain fits one 1,448-byte CONTROL message body
// (wire.MaxControlBody) where an RSA or even a P-256 chain with its ASN.1
// overhead leaves far less room; signing and verifying are fast and
// deterministic (no per-signature randomness to get wrong); and Go's
// crypto/tls, hence quic-go, accepts Ed25519 certificates in TLS 1.3, which
// pods speak to each other. Verification (VerifyProof) also accepts ECDSA
// P-256 keys, so certificates from another issuer with that key type work.
package ca

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/dmsc-mesh/dmsc/wire"
)

// File names of the CA inside its directory.
const (
	CertFile = "ca.crt"
	KeyFile  = "ca.key"
)

// Default validity periods. A CA outlives many leaf generations; pods rotate
// often; nodes are longer-lived infrastructure.
const (
	DefaultCAValidity   = 10 * 365 * 24 * time.Hour
	DefaultPodValidity  = 90 * 24 * time.Hour
	DefaultNodeValidity = 365 * 24 * time.Hour
)

// backdate is how far before "now" a new certificate starts, so that a peer
// whose clock runs a little behind does not see it as not yet valid.
const backdate = 5 * time.Minute

// ErrExists is returned when Init or an issue would overwrite a file without
// WithForce.
var ErrExists = errors.New("already exists (pass force to replace it)")

// CA is a loaded domain CA.
type CA struct {
	Domain  string
	Cert    *x509.Certificate
	CertPEM []byte
	key     crypto.Signer
}

// Option adjusts Init and the Issue functions.
type Option func(*options)

type options struct {
	validity  time.Duration
	notBefore time.Time
	now       func() time.Time
	force     bool
	certPath  string
	keyPath   string
	hosts     []string
}

// WithValidity sets how long the certificate is valid.
func WithValidity(d time.Duration) Option { return func(o *options) { o.validity = d } }

// WithNotBefore sets the start of validity (default: now less 5 minutes).
// Tests use it to make not-yet-valid and expired certificates.
func WithNotBefore(t time.Time) Option { return func(o *options) { o.notBefore = t } }

// WithClock replaces time.Now.
func WithClock(now func() time.Time) Option { return func(o *options) { o.now = now } }

// WithForce lets Init replace an existing CA, and the package-level Issue
// functions replace existing certificate files. Replacing a CA makes every
// certificate it issued untrusted.
func WithForce() Option { return func(o *options) { o.force = true } }

// WithOutput sets where the package-level Issue functions write the
// certificate and key (default: the CA directory, pod.<a>.<b>.crt/.key or
// node.<id>.crt/.key).
func WithOutput(certPath, keyPath string) Option {
	return func(o *options) { o.certPath, o.keyPath = certPath, keyPath }
}

// WithHosts adds DNS names and IP addresses to a node certificate, for peers
// that verify the server by host name as well as by DMSC identity.
func WithHosts(hosts ...string) Option {
	return func(o *options) { o.hosts = append(o.hosts, hosts...) }
}

func collect(opts []Option, validity time.Duration) options {
	o := options{validity: validity, now: time.Now}
	for _, f := range opts {
		f(&o)
	}
	return o
}

func (o options) window() (time.Time, time.Time, error) {
	if o.validity <= 0 {
		return time.Time{}, time.Time{}, fmt.Errorf("validity %v must be positive", o.validity)
	}
	nb := o.notBefore
	if nb.IsZero() {
		nb = o.now().Add(-backdate)
	}
	nb = nb.UTC().Truncate(time.Second)
	return nb, nb.Add(o.validity), nil
}

// Init makes a new CA for domain in dir (created 0700 if missing): an Ed25519
// key in ca.key (PKCS#8 PEM, 0600) and a self-signed certificate in ca.crt.
// An existing ca.crt or ca.key is never replaced without WithForce.
func Init(dir, domain string, opts ...Option) (*CA, error) {
	if err := CheckDomain(domain); err != nil {
		return nil, fmt.Errorf("ca init: %w", err)
	}
	o := collect(opts, DefaultCAValidity)
	certPath, keyPath := filepath.Join(dir, CertFile), filepath.Join(dir, KeyFile)
	if !o.force {
		for _, p := range []string{certPath, keyPath} {
			if _, err := os.Lstat(p); err == nil {
				return nil, fmt.Errorf("ca init: %s %w", p, ErrExists)
			} else if !errors.Is(err, fs.ErrNotExist) {
				return nil, fmt.Errorf("ca init: %w", err)
			}
		}
	}
	nb, na, err := o.window()
	if err != nil {
		return nil, fmt.Errorf("ca init: %w", err)
	}
	pub, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("ca init: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, fmt.Errorf("ca init: %w", err)
	}
	id := Identity{Domain: domain, Kind: KindCA}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "DMSC CA " + domain, Organization: []string{"DMSC"}},
		NotBefore:             nb,
		NotAfter:              na,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		// Leaves only: no intermediate CA can be made under this one.
		MaxPathLenZero: true,
		URIs:           id.URIs(),
		// Name constraints make the domain part of the CA's signature: a
		// certificate it signs that names another domain fails verification
		// everywhere, not only where our identity checks run.
		PermittedURIDomains: []string{domain},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, key)
	if err != nil {
		return nil, fmt.Errorf("ca init: %w", err)
	}
	keyPEM, err := marshalKey(key)
	if err != nil {
		return nil, fmt.Errorf("ca init: %w", err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("ca init: %w", err)
	}
	if err := writePair(certPath, certPEM, keyPath, keyPEM, o.force); err != nil {
		return nil, fmt.Errorf("ca init: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("ca init: %w", err)
	}
	return &CA{Domain: domain, Cert: cert, CertPEM: certPEM, key: key}, nil
}

// Load reads the CA from dir (ca.crt and ca.key) and checks that they belong
// together and name a domain.
func Load(dir string) (*CA, error) {
	cert, certPEM, err := readCert(filepath.Join(dir, CertFile))
	if err != nil {
		return nil, fmt.Errorf("ca load: %w", err)
	}
	dom, err := domainOf(cert)
	if err != nil {
		return nil, fmt.Errorf("ca load: %s: %w", filepath.Join(dir, CertFile), err)
	}
	key, err := ReadKey(filepath.Join(dir, KeyFile))
	if err != nil {
		return nil, fmt.Errorf("ca load: %w", err)
	}
	if !publicKeysEqual(cert.PublicKey, key.Public()) {
		return nil, fmt.Errorf("ca load: %s does not belong to %s", filepath.Join(dir, KeyFile), filepath.Join(dir, CertFile))
	}
	return &CA{Domain: dom, Cert: cert, CertPEM: certPEM, key: key}, nil
}

// LoadCert reads a CA certificate (no key): what SPA and agents need to
// verify peers. It returns the certificate and its domain.
func LoadCert(path string) (*x509.Certificate, string, error) {
	cert, _, err := readCert(path)
	if err != nil {
		return nil, "", err
	}
	dom, err := domainOf(cert)
	if err != nil {
		return nil, "", fmt.Errorf("%s: %w", path, err)
	}
	return cert, dom, nil
}

// DomainOf is the domain of a CA certificate (its dmsc://<domain> URI).
func DomainOf(caCert *x509.Certificate) (string, error) { return domainOf(caCert) }

func domainOf(cert *x509.Certificate) (string, error) {
	id, err := IdentityOf(cert)
	if err != nil {
		return "", err
	}
	if id.Kind != KindCA {
		return "", fmt.Errorf("not a DMSC CA certificate (it names %s)", id)
	}
	return id.Domain, nil
}

// Pool is a certificate pool holding only this CA.
func (c *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(c.Cert)
	return p
}

// Issued is a freshly issued certificate and its key.
type Issued struct {
	Identity Identity
	Cert     *x509.Certificate
	Key      crypto.Signer
	CertPEM  []byte // the leaf
	KeyPEM   []byte // PKCS#8
	// Set by the package-level Issue functions: where the files went.
	CertPath, KeyPath string
}

// TLSCertificate is the certificate and key for tls.Config.Certificates.
func (i *Issued) TLSCertificate() tls.Certificate {
	return tls.Certificate{Certificate: [][]byte{i.Cert.Raw}, PrivateKey: i.Key, Leaf: i.Cert}
}

// IssuePod issues a pod certificate for prefix: URI SAN dmsc://<domain><prefix>,
// usable for TLS client and server auth (pods are QUIC clients and servers).
// The prefix must be a valid service name outside /_node.
func (c *CA) IssuePod(prefix string, opts ...Option) (*Issued, error) {
	n, err := wire.ParseName(prefix)
	if err != nil {
		if strings.HasPrefix(prefix, "/"+nodeNamespace+"/") || prefix == "/"+nodeNamespace {
			return nil, fmt.Errorf("ca issue pod: %q: /%s names are reserved for switches", prefix, nodeNamespace)
		}
		return nil, fmt.Errorf("ca issue pod: %w", err)
	}
	return c.issue(PodIdentity(c.Domain, n), collect(opts, DefaultPodValidity))
}

// IssueNode issues a node certificate for router id with role: URI SANs
// dmsc://<domain>/_node/<id> and dmsc://<domain>/_role/<role>, for mTLS as
// client and server.
func (c *CA) IssueNode(id string, role Role, opts ...Option) (*Issued, error) {
	if _, err := wire.NodeName(id); err != nil {
		return nil, fmt.Errorf("ca issue node: %w", err)
	}
	if _, err := ParseRole(string(role)); err != nil {
		return nil, fmt.Errorf("ca issue node: %w", err)
	}
	return c.issue(NodeIdentity(c.Domain, id, role), collect(opts, DefaultNodeValidity))
}

func (c *CA) issue(id Identity, o options) (*Issued, error) {
	nb, na, err := o.window()
	if err != nil {
		return nil, fmt.Errorf("ca issue %s: %w", id.Kind, err)
	}
	if na.After(c.Cert.NotAfter) {
		// A leaf outliving its CA would fail verification for its last part;
		// say so now rather than at some later handshake.
		return nil, fmt.Errorf("ca issue %s: validity ends %s, after the CA's own (%s)", id.Kind, na.Format(time.RFC3339), c.Cert.NotAfter.Format(time.RFC3339))
	}
	pub, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		NotBefore:    nb,
		NotAfter:     na,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth},
		URIs:         id.URIs(),
	}
	// The CN is for people reading the certificate; nothing trusts it.
	switch id.Kind {
	case KindPod:
		tmpl.Subject = pkix.Name{CommonName: id.Prefix.String(), Organization: []string{"DMSC pod"}}
	case KindNode:
		tmpl.Subject = pkix.Name{CommonName: id.NodeID, OrganizationalUnit: []string{string(id.Role)}, Organization: []string{"DMSC node"}}
		for _, h := range o.hosts {
			if ip := parseIP(h); ip != nil {
				tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
			} else {
				tmpl.DNSNames = append(tmpl.DNSNames, h)
			}
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.Cert, pub, c.key)
	if err != nil {
		return nil, fmt.Errorf("ca issue %s: %w", id.Kind, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	keyPEM, err := marshalKey(key)
	if err != nil {
		return nil, err
	}
	return &Issued{
		Identity: id,
		Cert:     cert,
		Key:      key,
		CertPEM:  pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		KeyPEM:   keyPEM,
	}, nil
}

// IssuePod loads the CA in dir, issues a pod certificate for prefix and
// writes it (default dir/pod.<components joined by '.'>.crt and .key, 0600
// for the key). Existing files are not replaced without WithForce.
func IssuePod(dir, prefix string, opts ...Option) (*Issued, error) {
	c, err := Load(dir)
	if err != nil {
		return nil, err
	}
	is, err := c.IssuePod(prefix, opts...)
	if err != nil {
		return nil, err
	}
	base := "pod." + strings.Join(is.Identity.Prefix.Components(), ".")
	return is, is.write(dir, base, collect(opts, 0))
}

// IssueNode loads the CA in dir, issues a node certificate and writes it
// (default dir/node.<id>.crt and .key).
func IssueNode(dir, id string, role Role, opts ...Option) (*Issued, error) {
	c, err := Load(dir)
	if err != nil {
		return nil, err
	}
	is, err := c.IssueNode(id, role, opts...)
	if err != nil {
		return nil, err
	}
	return is, is.write(dir, "node."+id, collect(opts, 0))
}

func (i *Issued) write(dir, base string, o options) error {
	i.CertPath, i.KeyPath = o.certPath, o.keyPath
	if i.CertPath == "" {
		i.CertPath = filepath.Join(dir, base+".crt")
	}
	if i.KeyPath == "" {
		i.KeyPath = filepath.Join(dir, base+".key")
	}
	if err := writePair(i.CertPath, i.CertPEM, i.KeyPath, i.KeyPEM, o.force); err != nil {
		return fmt.Errorf("ca issue %s: %w", i.Identity.Kind, err)
	}
	return nil
}

// newSerial is a random positive 127-bit serial: unique without a counter to
// keep, and within RFC 5280's 20 octets.
func newSerial() (*big.Int, error) {
	limit := new(big.Int).Lsh(big.NewInt(1), 127)
	s, err := rand.Int(rand.Reader, limit)
	if err != nil {
		return nil, err
	}
	return s.Add(s, big.NewInt(1)), nil
}

// SerialString is the canonical text of a serial in DMSC logs, revocation
// lists and the registry: lowercase hex without separators.
func SerialString(s *big.Int) string {
	if s == nil {
		return ""
	}
	return s.Text(16)
}
