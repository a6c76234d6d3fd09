package pod

import (
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"strconv"
	"strings"

	"github.com/dmsc-mesh/dmsc/ca"
	"github.com/dmsc-mesh/dmsc/softswitch"
)

// LinkSpec is the pod's link to its SG port, as written on a command line:
// softswitch.ParsePortSpec's syntax without the "N=" port number.
//
//	udp:127.0.0.1:7101,127.0.0.1:7001   UDP tunnel: local address, then the SG port's
//	iface:veth0                         Linux interface (AF_PACKET)
type LinkSpec struct {
	Kind  string // "udp" or "iface"
	Local string // udp
	Peer  string // udp
	Iface string // iface
}

func (l LinkSpec) String() string {
	if l.Kind == "iface" {
		return "iface:" + l.Iface
	}
	return "udp:" + l.Local + "," + l.Peer
}

// ParseLink reads a link spec; its errors name the part that is wrong.
func ParseLink(s string) (LinkSpec, error) {
	kind, arg, ok := strings.Cut(strings.TrimSpace(s), ":")
	if !ok {
		return LinkSpec{}, fmt.Errorf("link %q: want udp:LOCAL,PEER or iface:NAME", s)
	}
	l := LinkSpec{Kind: strings.ToLower(strings.TrimSpace(kind))}
	switch l.Kind {
	case "udp":
		local, peer, ok := strings.Cut(arg, ",")
		if !ok {
			return LinkSpec{}, fmt.Errorf("link %q: udp needs LOCAL,PEER addresses (host:port,host:port)", s)
		}
		l.Local, l.Peer = strings.TrimSpace(local), strings.TrimSpace(peer)
		for _, a := range []struct{ what, v string }{{"local", l.Local}, {"peer", l.Peer}} {
			host, port, err := net.SplitHostPort(a.v)
			if err != nil {
				return LinkSpec{}, fmt.Errorf("link %q: udp %s address %q: %v", s, a.what, a.v, err)
			}
			if _, err := strconv.ParseUint(port, 10, 16); err != nil {
				return LinkSpec{}, fmt.Errorf("link %q: udp %s address %q: port %q is not a number", s, a.what, a.v, port)
			}
			if a.what == "peer" && (host == "" || port == "0") {
				return LinkSpec{}, fmt.Errorf("link %q: udp peer address %q needs a host and a port", s, a.v)
			}
		}
	case "iface":
		l.Iface = strings.TrimSpace(arg)
		if l.Iface == "" || len(l.Iface) > 15 || strings.ContainsAny(l.Iface, " /") {
			return LinkSpec{}, fmt.Errorf("link %q: %q is not a Linux interface name", s, l.Iface)
		}
	default:
		return LinkSpec{}, fmt.Errorf("link %q: unknown link kind %q (want udp or iface)", s, kind)
	}
	return l, nil
}

// Open creates the port.
func (l LinkSpec) Open() (softswitch.Port, error) {
	return softswitch.PortSpec{Kind: l.Kind, Local: l.Local, Peer: l.Peer, Iface: l.Iface}.Open()
}

// LoadCertificate reads a pod's TLS material from files and cross-checks
// it: the key belongs to the certificate, which chains to the CA and names
// a pod of its domain. Errors are *AttachError naming the file at fault
// ("ca", "cert", "key").
func LoadCertificate(caFile, certFile, keyFile string) (*x509.Certificate, tls.Certificate, ca.Identity, error) {
	fail := func(field, value string, err error) (*x509.Certificate, tls.Certificate, ca.Identity, error) {
		return nil, tls.Certificate{}, ca.Identity{}, &AttachError{Field: field, Value: value, Err: err}
	}
	caCert, domain, err := ca.LoadCert(caFile)
	if err != nil {
		return fail("ca", caFile, err)
	}
	chain, err := ca.ReadCertChain(certFile)
	if err != nil {
		return fail("cert", certFile, err)
	}
	key, err := ca.ReadKey(keyFile)
	if err != nil {
		return fail("key", keyFile, err)
	}
	type equaler interface{ Equal(crypto.PublicKey) bool }
	if pk, ok := key.Public().(equaler); !ok || !pk.Equal(chain[0].PublicKey) {
		return fail("key", keyFile, fmt.Errorf("the key does not belong to the certificate %s", certFile))
	}
	var inter [][]byte
	for _, c := range chain[1:] {
		inter = append(inter, c.Raw)
	}
	pool := x509.NewCertPool()
	pool.AddCert(caCert)
	id, err := verifyChain(chain[0], inter, pool, x509.ExtKeyUsageAny, domain)
	if err != nil {
		return fail("cert", certFile, fmt.Errorf("does not verify against %s: %w", caFile, err))
	}
	if id.Kind != ca.KindPod {
		return fail("cert", certFile, fmt.Errorf("names %s, not a pod", id))
	}
	tc := tls.Certificate{PrivateKey: key, Leaf: chain[0]}
	for _, c := range chain {
		tc.Certificate = append(tc.Certificate, c.Raw)
	}
	return caCert, tc, id, nil
}

// AttachError is an error of Attach or LoadCertificate that one input
// caused: Field is "link", "ca", "cert", "key" or "prefix" (the names of
// AttachConfig's fields in lower case, and of dmsc pod's flags), Value the
// input.
type AttachError struct {
	Field, Value string
	Err          error
}

func (e *AttachError) Error() string { return fmt.Sprintf("pod: %s %s: %v", e.Field, e.Value, e.Err) }

func (e *AttachError) Unwrap() error { return e.Err }

// AttachConfig is what Attach needs: a link spec and the pod's certificate
// files.
type AttachConfig struct {
	Link          string // ParseLink's syntax
	CA, Cert, Key string // files: the domain CA's certificate, the pod's certificate (chain) and key
	// Prefix to announce (default: the certificate's).
	Prefix string
	// Endpoint holds further options; Attach sets its Port, CA and
	// Certificate.
	Endpoint Config
	// Announce holds the announcement's timers; Attach sets its Prefix.
	Announce AnnounceConfig
}

// Attach opens the link, builds an Endpoint with the pod's certificate and
// announces; it returns once the SG accepted the pod. On any failure
// nothing stays open. Errors of an input are *AttachError; a refusal is a
// *RejectError.
func Attach(ctx context.Context, ac AttachConfig) (*Endpoint, *Registration, error) {
	link, err := ParseLink(ac.Link)
	if err != nil {
		return nil, nil, &AttachError{Field: "link", Value: ac.Link, Err: err}
	}
	caCert, cert, id, err := LoadCertificate(ac.CA, ac.Cert, ac.Key)
	if err != nil {
		return nil, nil, err
	}
	if ac.Prefix != "" {
		if _, err := checkPrefix(ac.Prefix, id); err != nil {
			return nil, nil, &AttachError{Field: "prefix", Value: ac.Prefix, Err: err}
		}
	}
	port, err := link.Open()
	if err != nil {
		return nil, nil, &AttachError{Field: "link", Value: ac.Link, Err: err}
	}
	cfg := ac.Endpoint
	cfg.Port, cfg.CA, cfg.Certificate = port, caCert, cert
	ep, err := NewEndpoint(cfg)
	if err != nil {
		port.Close()
		return nil, nil, err
	}
	acfg := ac.Announce
	acfg.Prefix = ac.Prefix
	reg, err := ep.Announce(ctx, acfg)
	if err != nil {
		ep.Close()
		return nil, nil, err
	}
	return ep, reg, nil
}
