package ca

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/dmsc-mesh/dmsc/wire"
)

// Scheme is the URI scheme of DMSC identities: dmsc://<domain>/<path>, in the
// manner of SPIFFE IDs (DESIGN §7).
const Scheme = "dmsc"

// Reserved first path components of identity URIs. "_node" is wire's
// reserved namespace; "_role" exists only in certificates.
const (
	nodeNamespace = wire.NodeNamespace
	roleNamespace = "_role"
)

// Role is what a node certificate is for. A node certificate carries its role
// as a second URI SAN, dmsc://<domain>/_role/<role>, beside its node URI
// dmsc://<domain>/_node/<id>: a URI keeps every DMSC identity fact in one
// namespace that one parser reads, where an OU would be a second, free-text
// channel that tools print but rarely check.
type Role string

// The node roles (DESIGN §1).
const (
	RoleSG   Role = "sg"   // service gateway agent
	RoleSR   Role = "sr"   // service router agent
	RoleSPA  Role = "spa"  // the SPA server
	RoleSCSC Role = "scsc" // the scheduling center
)

// Roles lists the valid roles in a stable order (for help texts).
func Roles() []Role { return []Role{RoleSG, RoleSR, RoleSPA, RoleSCSC} }

// ParseRole accepts one of sg, sr, spa, scsc.
func ParseRole(s string) (Role, error) {
	for _, r := range Roles() {
		if s == string(r) {
			return r, nil
		}
	}
	return "", fmt.Errorf("ca: role %q: want one of sg, sr, spa, scsc", s)
}

// Kind tells pod, node and CA identities apart.
type Kind uint8

// Identity kinds.
const (
	KindNone Kind = iota
	KindPod       // a pod: owns a service prefix
	KindNode      // an SG, SR, SPA or SCSC node
	KindCA        // the domain CA itself (dmsc://<domain>)
)

func (k Kind) String() string {
	switch k {
	case KindPod:
		return "pod"
	case KindNode:
		return "node"
	case KindCA:
		return "ca"
	}
	return "none"
}

// Identity is the DMSC identity a certificate names.
type Identity struct {
	Domain string
	Kind   Kind
	Prefix wire.Name // KindPod: the service prefix
	NodeID string    // KindNode: the router id, as in /_node/<id>
	Role   Role      // KindNode
}

// PodIdentity is the identity of a pod owning prefix in domain.
func PodIdentity(domain string, prefix wire.Name) Identity {
	return Identity{Domain: domain, Kind: KindPod, Prefix: prefix}
}

// NodeIdentity is the identity of node id with role in domain.
func NodeIdentity(domain, id string, role Role) Identity {
	return Identity{Domain: domain, Kind: KindNode, NodeID: id, Role: role}
}

// String is the identity's main URI: dmsc://d/shop/cart, dmsc://d/_node/sg1
// (role "sg"), dmsc://d.
func (id Identity) String() string {
	switch id.Kind {
	case KindPod:
		return Scheme + "://" + id.Domain + id.Prefix.String()
	case KindNode:
		return Scheme + "://" + id.Domain + "/" + nodeNamespace + "/" + id.NodeID + " (role " + string(id.Role) + ")"
	case KindCA:
		return Scheme + "://" + id.Domain
	}
	return "(no identity)"
}

// URIs are the URI SANs a certificate of this identity carries.
func (id Identity) URIs() []*url.URL {
	mk := func(path string) *url.URL { return &url.URL{Scheme: Scheme, Host: id.Domain, Path: path} }
	switch id.Kind {
	case KindPod:
		return []*url.URL{mk(id.Prefix.String())}
	case KindNode:
		return []*url.URL{mk("/" + nodeNamespace + "/" + id.NodeID), mk("/" + roleNamespace + "/" + string(id.Role))}
	case KindCA:
		return []*url.URL{mk("")}
	}
	return nil
}

// Errors of the identity parser, for errors.Is.
var (
	ErrNoIdentity  = errors.New("ca: certificate carries no dmsc:// URI SAN")
	ErrBadIdentity = errors.New("ca: certificate's DMSC identity is malformed")
)

// IdentityOf reads the DMSC identity out of a certificate's URI SANs. It does
// not verify the certificate: call it on a verified chain's leaf (tls gives
// one; spa verifies pod chains first). URIs of other schemes are ignored, so
// a certificate may also carry, say, a SPIFFE ID. Rules:
//   - a pod certificate has exactly one dmsc URI, a service prefix;
//   - a node certificate has exactly two, /_node/<id> and /_role/<role>;
//   - a CA certificate has exactly one, with an empty path;
//   - all of them name the same domain, and leaves are not CA certificates.
func IdentityOf(cert *x509.Certificate) (Identity, error) {
	if cert == nil {
		return Identity{}, fmt.Errorf("%w: no certificate", ErrNoIdentity)
	}
	var uris []string
	for _, u := range cert.URIs {
		if u != nil && u.Scheme == Scheme {
			uris = append(uris, u.String())
		}
	}
	id, err := ParseIdentityURIs(uris)
	if err != nil {
		return Identity{}, err
	}
	switch {
	case id.Kind == KindCA && !cert.IsCA:
		return Identity{}, fmt.Errorf("%w: %s is a CA identity on a certificate that is not a CA", ErrBadIdentity, id)
	case id.Kind != KindCA && cert.IsCA:
		return Identity{}, fmt.Errorf("%w: %s is a %s identity on a CA certificate", ErrBadIdentity, id, id.Kind)
	}
	return id, nil
}

// ParseIdentityURIs reads an identity from the dmsc:// URIs of one
// certificate (see IdentityOf for the rules). Each URI must be in canonical
// form: lowercase domain, no port, user, query, fragment or escapes.
func ParseIdentityURIs(uris []string) (Identity, error) {
	if len(uris) == 0 {
		return Identity{}, ErrNoIdentity
	}
	var (
		id                         Identity
		nPrefix, nNode, nRole, nCA int
		prefix                     wire.Name
		nodeID                     string
		role                       Role
		firstDomain, firstURI      string
		domainSet                  bool
	)
	for _, s := range uris {
		domainOf, path, err := splitURI(s)
		if err != nil {
			return Identity{}, err
		}
		if !domainSet {
			firstDomain, firstURI, domainSet = domainOf, s, true
		} else if domainOf != firstDomain {
			return Identity{}, fmt.Errorf("%w: URIs name two domains (%q in %q, %q in %q)", ErrBadIdentity, firstDomain, firstURI, domainOf, s)
		}
		switch first, rest, _ := strings.Cut(strings.TrimPrefix(path, "/"), "/"); {
		case path == "":
			nCA++
		case first == nodeNamespace:
			if _, err := wire.NodeName(rest); err != nil {
				return Identity{}, fmt.Errorf("%w: %q: node id: %v", ErrBadIdentity, s, err)
			}
			nodeID = rest
			nNode++
		case first == roleNamespace:
			r, err := ParseRole(rest)
			if err != nil {
				return Identity{}, fmt.Errorf("%w: %q: %v", ErrBadIdentity, s, err)
			}
			role = r
			nRole++
		default:
			n, err := wire.ParseName(path)
			if err != nil {
				return Identity{}, fmt.Errorf("%w: %q: %v", ErrBadIdentity, s, err)
			}
			prefix = n
			nPrefix++
		}
	}
	id.Domain = firstDomain
	switch {
	case nCA == 1 && nPrefix+nNode+nRole == 0:
		id.Kind = KindCA
	case nPrefix == 1 && nNode+nRole+nCA == 0:
		id.Kind, id.Prefix = KindPod, prefix
	case nNode == 1 && nRole == 1 && nPrefix+nCA == 0:
		id.Kind, id.NodeID, id.Role = KindNode, nodeID, role
	case nNode == 1 && nRole == 0 && nPrefix+nCA == 0:
		return Identity{}, fmt.Errorf("%w: node URI without a %s://%s/%s/<role> URI", ErrBadIdentity, Scheme, firstDomain, roleNamespace)
	case nRole == 1 && nNode == 0 && nPrefix+nCA == 0:
		return Identity{}, fmt.Errorf("%w: role URI without a %s://%s/%s/<id> URI", ErrBadIdentity, Scheme, firstDomain, nodeNamespace)
	case nPrefix > 0 && nNode+nRole > 0:
		return Identity{}, fmt.Errorf("%w: both a service prefix and a node identity", ErrBadIdentity)
	default:
		return Identity{}, fmt.Errorf("%w: %d prefix, %d node, %d role and %d CA URIs (want one prefix; or one node and one role; or one CA)",
			ErrBadIdentity, nPrefix, nNode, nRole, nCA)
	}
	return id, nil
}

// splitURI checks that s is a canonical dmsc URI and returns its domain and
// path. Canonical means url.Parse and String give s back and nothing but a
// scheme, a host and a path is present, so two spellings of one identity
// cannot pass policy and registry checks as two identities.
func splitURI(s string) (domain, path string, err error) {
	u, err := url.Parse(s)
	if err != nil {
		return "", "", fmt.Errorf("%w: %q does not parse as a URI: %v", ErrBadIdentity, s, err)
	}
	switch {
	case u.Scheme != Scheme:
		return "", "", fmt.Errorf("%w: %q: scheme is not %q", ErrBadIdentity, s, Scheme)
	case u.Opaque != "" || u.User != nil || u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || u.RawFragment != "" || u.RawPath != "":
		return "", "", fmt.Errorf("%w: %q: only dmsc://<domain>/<path> is allowed (no user, query, fragment or escapes)", ErrBadIdentity, s)
	case u.Port() != "" || strings.HasSuffix(u.Host, ":"):
		return "", "", fmt.Errorf("%w: %q: a port is not allowed", ErrBadIdentity, s)
	}
	if err := CheckDomain(u.Host); err != nil {
		return "", "", fmt.Errorf("%w: %q: %v", ErrBadIdentity, s, err)
	}
	if u.String() != s {
		return "", "", fmt.Errorf("%w: %q is not in canonical form (%q)", ErrBadIdentity, s, u.String())
	}
	return u.Host, u.Path, nil
}

// CheckDomain validates a DMSC domain: a lowercase DNS name of 1 to 253
// characters, labels of [a-z0-9-] not starting or ending with '-'.
func CheckDomain(d string) error {
	if d == "" {
		return errors.New("domain is empty")
	}
	if len(d) > 253 {
		return fmt.Errorf("domain is %d characters long (at most 253)", len(d))
	}
	for i, label := range strings.Split(d, ".") {
		if label == "" {
			return fmt.Errorf("domain %q: label %d is empty", d, i+1)
		}
		if len(label) > 63 {
			return fmt.Errorf("domain %q: label %d is longer than 63 characters", d, i+1)
		}
		if label[0] == '-' || label[len(label)-1] == '-' {
			return fmt.Errorf("domain %q: label %q starts or ends with '-'", d, label)
		}
		for j := 0; j < len(label); j++ {
			c := label[j]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return fmt.Errorf("domain %q: character %q is not allowed (lowercase a-z, 0-9, '-' and '.')", d, rune(c))
			}
		}
	}
	return nil
}
