package grpcbench

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	echopb "github.com/dmsc-mesh/dmsc/api/echo"
	"github.com/dmsc-mesh/dmsc/examples/echo"
)

// Path names, as the benchmarks report them.
const (
	Direct     = "direct"
	DirectTLS  = "direct-tls"
	Nginx2     = "nginx2"
	Nginx2MTLS = "nginx2-mtls"
	DMSC       = "dmsc"
	DMSCUDP    = "dmsc-udp"
)

// Path is one way from a client to an Echo server, ready to call.
type Path struct {
	Name string
	Conn *grpc.ClientConn
	Echo echopb.EchoClient
	// Proxies are the nginx processes of the nginx paths, client side
	// first.
	Proxies []*Nginx
	// Fabric is the in-process DMSC domain of the dmsc path.
	Fabric *Fabric

	mu    sync.Mutex
	stops []func() error // run in reverse order by Close
}

func (p *Path) onClose(f func() error) {
	p.mu.Lock()
	p.stops = append(p.stops, f)
	p.mu.Unlock()
}

// Close closes the client and stops what the path started, last started
// first.
func (p *Path) Close() error {
	p.mu.Lock()
	stops := p.stops
	p.stops = nil
	p.mu.Unlock()
	var errs []error
	for _, f := range slices.Backward(stops) {
		if err := f(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// echoServer is the server every path calls: no per-call extras (no
// ServedBy, no Caller), so that each path's server does the same work.
func echoServer(opts ...grpc.ServerOption) *grpc.Server {
	gs := grpc.NewServer(opts...)
	echopb.RegisterEchoServer(gs, &echo.Server{})
	return gs
}

// serve runs gs on lis until the returned stop is called; stop waits for
// Serve to return.
func serve(gs *grpc.Server, lis net.Listener) (stop func() error) {
	done := make(chan error, 1)
	go func() { done <- gs.Serve(lis) }()
	return func() error {
		gs.Stop()
		if err := <-done; err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			return err
		}
		return nil
	}
}

// tcpEcho is an Echo server on 127.0.0.1 (TLS when creds is not nil).
func tcpEcho(creds credentials.TransportCredentials) (addr string, stop func() error, err error) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	var opts []grpc.ServerOption
	if creds != nil {
		opts = append(opts, grpc.Creds(creds))
	}
	return lis.Addr().String(), serve(echoServer(opts...), lis), nil
}

// connect makes p's ClientConn to target and waits until it is ready, so
// that no measured call pays for the connection.
func connect(ctx context.Context, p *Path, target string, opts ...grpc.DialOption) error {
	cc, err := grpc.NewClient(target, opts...)
	if err != nil {
		return fmt.Errorf("grpcbench: %s: client for %s: %w", p.Name, target, err)
	}
	return adopt(ctx, p, cc, target)
}

// adopt makes cc p's ClientConn and calls once through it: the first call
// connects (and, through proxies, opens every hop's upstream connection);
// WaitForReady rides out a proxy still binding.
func adopt(ctx context.Context, p *Path, cc *grpc.ClientConn, target string) error {
	p.onClose(cc.Close)
	p.Conn, p.Echo = cc, echopb.NewEchoClient(cc)
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := p.Echo.Echo(ctx, &echopb.EchoRequest{Message: "warm-up"}, grpc.WaitForReady(true)); err != nil {
		return fmt.Errorf("grpcbench: %s: first call to %s: %w", p.Name, target, err)
	}
	return nil
}

// StartDirect starts the direct path: HTTP/2 over plain TCP on loopback.
func StartDirect(ctx context.Context) (*Path, error) {
	p := &Path{Name: Direct}
	addr, stop, err := tcpEcho(nil)
	if err != nil {
		return nil, err
	}
	p.onClose(stop)
	if err := connect(ctx, p, addr, grpc.WithTransportCredentials(insecure.NewCredentials())); err != nil {
		p.Close()
		return nil, err
	}
	return p, nil
}

// StartDirectTLS starts the direct path with TLS 1.3 (the cipher suite Go
// picks, AES-128-GCM on a CPU with AES instructions).
func StartDirectTLS(ctx context.Context) (*Path, error) {
	p := &Path{Name: DirectTLS}
	c, err := newCert()
	if err != nil {
		return nil, err
	}
	srv := &tls.Config{Certificates: []tls.Certificate{c.tls}, MinVersion: tls.VersionTLS13}
	addr, stop, err := tcpEcho(credentials.NewTLS(srv))
	if err != nil {
		return nil, err
	}
	p.onClose(stop)
	cli := &tls.Config{RootCAs: c.pool(), ServerName: certName, MinVersion: tls.VersionTLS13}
	if err := connect(ctx, p, addr, grpc.WithTransportCredentials(credentials.NewTLS(cli))); err != nil {
		p.Close()
		return nil, err
	}
	return p, nil
}

// certName is the DNS name of the benchmark's self-signed certificate.
const certName = "grpcbench.test"

// cert is a self-signed ECDSA P-256 certificate for certName and
// 127.0.0.1, good for both ends of a mutual TLS connection.
type cert struct {
	x509 *x509.Certificate
	tls  tls.Certificate
	// certPEM, keyPEM are the same in PEM, for nginx.
	certPEM, keyPEM []byte
}

func newCert() (*cert, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: certName},
		DNSNames:              []string{certName},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	parsed, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	return &cert{
		x509:    parsed,
		tls:     tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: parsed},
		certPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		keyPEM:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
	}, nil
}

func (c *cert) pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(c.x509)
	return p
}

// writeFiles writes the certificate and key into dir for nginx and returns
// their paths.
func (c *cert) writeFiles(dir string) (certFile, keyFile string, err error) {
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, c.certPEM, 0o644); err != nil {
		return "", "", err
	}
	if err := os.WriteFile(keyFile, c.keyPEM, 0o600); err != nil {
		return "", "", err
	}
	return certFile, keyFile, nil
}
