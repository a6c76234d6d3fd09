package nodeconf

import (
	"bytes"
	"crypto/ed25519"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"google.golang.org/protobuf/encoding/prototext"

	"github.com/dmsc-mesh/dmsc/ca"
	"github.com/dmsc-mesh/dmsc/controller"
	"github.com/dmsc-mesh/dmsc/p4"
	"github.com/dmsc-mesh/dmsc/p4rt/p4info"
	"github.com/dmsc-mesh/dmsc/spf"
)

// load reads the files the configuration names, once it is valid: the CA,
// the node's certificate and key, the trusted node certificates and the
// pipeline. Errors go to p.errs at the field that named the file.
func (p *parser) load() {
	f := p.f
	id := f.Identity
	f.trusted = map[spf.NodeID]ed25519.PublicKey{}
	f.trustedFrom = map[spf.NodeID]string{}

	caCert, domain, err := ca.LoadCert(id.CA)
	if err != nil {
		p.fileErr("identity.ca", id.CA, err)
		caCert = nil
	}
	f.domain = domain
	var roots *x509.CertPool
	if caCert != nil {
		roots = x509.NewCertPool()
		roots.AddCert(caCert)
	}

	nodePub := p.loadCert(roots, domain)
	p.loadKey(nodePub)
	if nodePub != nil {
		f.trusted[f.Node] = nodePub
		f.trustedFrom[f.Node] = id.Cert
	}
	if id.TrustedNodes != "" && roots != nil && nodePub != nil {
		p.loadTrusted(roots, domain, nodePub)
	}
	p.loadPipeline()
}

// loadCert checks the node certificate and returns its public key (nil on
// error).
func (p *parser) loadCert(roots *x509.CertPool, domain string) ed25519.PublicKey {
	f := p.f
	const field = "identity.cert"
	path := f.Identity.Cert
	chain, err := ca.ReadCertChain(path)
	if err != nil {
		p.fileErr(field, path, err)
		return nil
	}
	leaf := chain[0]
	bad := func(format string, args ...any) ed25519.PublicKey {
		p.errf(p.at(field), field, "%s: %s", path, fmt.Sprintf(format, args...))
		return nil
	}
	ident, err := ca.IdentityOf(leaf)
	if err != nil {
		return bad("%v", strings.TrimPrefix(err.Error(), "ca: "))
	}
	if ident.Kind != ca.KindNode {
		return bad("%s is a %s certificate, not a node certificate (dmsc ca issue node --id %s --role %s)", ident, ident.Kind, f.Node, f.Role)
	}
	if roots != nil {
		if err := verify(chain, roots); err != nil {
			return bad("does not chain to the CA in identity.ca: %v", err)
		}
		if ident.Domain != domain {
			return bad("names domain %q, the CA's is %q", ident.Domain, domain)
		}
	}
	if ident.NodeID != string(f.Node) {
		return bad("is the certificate of node %q, not of %q (node)", ident.NodeID, f.Node)
	}
	if string(ident.Role) != string(f.Role) {
		return bad("is a certificate of role %s, not %s (role)", ident.Role, f.Role)
	}
	pub, ok := leaf.PublicKey.(ed25519.PublicKey)
	if !ok {
		return bad("has a %s key; LSPs are signed with Ed25519", leaf.PublicKeyAlgorithm)
	}
	return pub
}

// verify checks chain (leaf first) against roots, now.
func verify(chain []*x509.Certificate, roots *x509.CertPool) error {
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	_, err := chain[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	return err
}

func (p *parser) loadKey(certPub ed25519.PublicKey) {
	f := p.f
	const field = "identity.key"
	path := f.Identity.Key
	k, err := ca.ReadKey(path)
	if err != nil {
		p.fileErr(field, path, err)
		return
	}
	key, ok := k.(ed25519.PrivateKey)
	if !ok {
		p.errf(p.at(field), field, "%s: %s key; LSPs are signed with Ed25519 (dmsc ca issue node makes Ed25519 keys)", path, keyKind(k))
		return
	}
	if certPub != nil && !certPub.Equal(key.Public()) {
		p.errf(p.at(field), field, "%s does not belong to the certificate %s (identity.cert)", path, f.Identity.Cert)
		return
	}
	f.nodeKey = key
}

func keyKind(k any) string {
	s := fmt.Sprintf("%T", k)
	switch {
	case strings.Contains(s, "ecdsa"):
		return "an ECDSA"
	case strings.Contains(s, "rsa"):
		return "an RSA"
	}
	return "a " + s
}

// loadTrusted reads the node certificates of identity.trusted_nodes.
//
// A certificate there that does not verify (another CA, expired, not yet
// valid) is ignored with a warning rather than failing the load: only the
// CA's signature makes a certificate trusted, so a stray or stale file
// never adds trust, and refusing to start because of one would let it take
// the node down. Two certificates naming one node with different keys are an
// error: which key signs that node's LSPs would be a guess.
func (p *parser) loadTrusted(roots *x509.CertPool, domain string, self ed25519.PublicKey) {
	f := p.f
	const field = "identity.trusted_nodes"
	dir := f.Identity.TrustedNodes
	entries, err := os.ReadDir(dir)
	if err != nil {
		p.fileErr(field, dir, err)
		return
	}
	warn := func(path, format string, args ...any) {
		f.Warnings = append(f.Warnings, fmt.Sprintf("%s: %s: %s: ignored", field, path, fmt.Sprintf(format, args...)))
	}
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".crt") {
			continue
		}
		path := filepath.Join(dir, e.Name())
		if st, err := os.Stat(path); err != nil || !st.Mode().IsRegular() {
			continue // a directory or a dangling link named *.crt
		}
		chain, err := ca.ReadCertChain(path)
		if err != nil {
			warn(path, "%v", strings.TrimPrefix(err.Error(), path+": "))
			continue
		}
		leaf := chain[0]
		ident, err := ca.IdentityOf(leaf)
		if err != nil {
			warn(path, "%v", strings.TrimPrefix(err.Error(), "ca: "))
			continue
		}
		// The CA's own certificate, pods and the other node roles sign no
		// LSPs: they are expected in a CA directory and skipped silently.
		if ident.Kind != ca.KindNode || (ident.Role != ca.RoleSG && ident.Role != ca.RoleSR) {
			continue
		}
		if err := verify(chain, roots); err != nil {
			warn(path, "%s does not chain to the CA in identity.ca: %v", ident, err)
			continue
		}
		if ident.Domain != domain {
			warn(path, "%s is of domain %q, not %q", ident, ident.Domain, domain)
			continue
		}
		pub, ok := leaf.PublicKey.(ed25519.PublicKey)
		if !ok {
			warn(path, "%s has a %s key; LSPs are signed with Ed25519", ident, leaf.PublicKeyAlgorithm)
			continue
		}
		nid := spf.NodeID(ident.NodeID)
		if have, ok := f.trusted[nid]; ok {
			if !have.Equal(pub) {
				if nid == f.Node {
					p.errf(p.at(field), field, "%s names this node %s with another key than identity.cert %s", path, nid, f.Identity.Cert)
				} else {
					p.errf(p.at(field), field, "%s and %s both name node %s, with different keys: remove the stale one", f.trustedFrom[nid], path, nid)
				}
			}
			continue
		}
		f.trusted[nid] = pub
		f.trustedFrom[nid] = path
	}
}

// dmscTables are the tables the controller programs; a P4Info without them
// is not the DMSC program.
var dmscTables = []string{p4.TablePortRole, p4.TableSrcGuard, p4.TableFIB128, p4.TableFIB96, p4.TableFIB64,
	p4.TableFIB32, p4.TableNexthop, p4.TableLocalInstance}

func (p *parser) loadPipeline() {
	f := p.f
	var pl controller.Pipeline
	if path := f.Switch.P4Info; path != "" {
		const field = "switch.pipeline.p4info"
		text, err := readP4Info(path)
		if err != nil {
			p.fileErr(field, path, err)
		} else {
			pl.P4InfoText = text
		}
	}
	if path := f.Switch.DeviceConfig; path != "" {
		const field = "switch.pipeline.device_config"
		b, err := os.ReadFile(path)
		switch {
		case err != nil:
			p.fileErr(field, path, err)
		case len(bytes.TrimSpace(b)) == 0:
			p.errf(p.at(field), field, "%s is empty", path)
		default:
			pl.DeviceConfig = b
		}
	}
	f.pipeline = pl
}

// readP4Info reads a P4Info (text or binary, by its name), checks that it is
// consistent and the DMSC program's, and returns it in text format, which
// is what controller.Pipeline carries.
func readP4Info(path string) ([]byte, error) {
	s, err := p4info.Load(path)
	if err != nil {
		return nil, err
	}
	for _, t := range dmscTables {
		if _, err := s.Table(t); err != nil {
			return nil, fmt.Errorf("%s has no table %s: not the DMSC program", path, t)
		}
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if _, err := p4info.ParseText(b); err == nil {
		return b, nil
	}
	return prototext.Marshal(s.P4Info())
}

// fileErr reports a file that could not be read or parsed, naming it.
func (p *parser) fileErr(field, path string, err error) {
	var msg string
	var pe *fs.PathError
	switch {
	case errors.Is(err, fs.ErrNotExist):
		msg = path + ": no such file"
	case errors.As(err, &pe):
		msg = path + ": " + pe.Err.Error()
	default:
		msg = err.Error()
		if !strings.Contains(msg, path) {
			msg = path + ": " + msg
		}
	}
	p.errf(p.at(field), field, "%s", msg)
}
