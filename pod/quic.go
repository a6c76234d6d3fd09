package pod

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"

	"github.com/quic-go/quic-go"

	"github.com/dmsc-mesh/dmsc/ca"
	"github.com/dmsc-mesh/dmsc/wire"
)

// quicPacketSize is the size of every QUIC packet: what a DMSC frame
// carries, but no more than quic-go's own buffers hold (1452 bytes, its
// protocol.MaxPacketBufferSize, which it also announces as
// max_udp_payload_size). quic-go sizes packets by InitialPacketSize and
// grows them only by path MTU discovery, which is off.
const quicPacketSize = min(wire.MaxPayload, 1452)

// QUIC requires at least 1200 bytes for Initial packets (RFC 9000 §14.1).
var _ = [1]struct{}{}[quicPacketSize/1200-1]

// sniSuffix ends the TLS server name that carries the dialed service name:
// "/shop/cart" travels as "cart.shop.dmsc". Name components are DNS labels
// already, so the encoding is exact.
const sniSuffix = ".dmsc"

func serverNameOf(n wire.Name) string {
	c := n.Components()
	slices.Reverse(c)
	return strings.Join(c, ".") + sniSuffix
}

func nameOfServerName(s string) (wire.Name, error) {
	rest, ok := strings.CutSuffix(s, sniSuffix)
	if !ok || rest == "" {
		return wire.Name{}, fmt.Errorf("TLS server name %q does not name a DMSC service (want <component>...%s)", s, sniSuffix)
	}
	c := strings.Split(rest, ".")
	slices.Reverse(c)
	return wire.ParseName("/" + strings.Join(c, "/"))
}

// tlsMaterial is the pod's TLS identity and trust.
type tlsMaterial struct {
	cert   tls.Certificate
	id     ca.Identity
	pool   *x509.CertPool
	domain string
}

func newTLSMaterial(caCert *x509.Certificate, cert tls.Certificate) (*tlsMaterial, error) {
	if caCert == nil || len(cert.Certificate) == 0 {
		return nil, errors.New("pod: Config.CA and Config.Certificate go together: set both or neither")
	}
	domain, err := ca.DomainOf(caCert)
	if err != nil {
		return nil, fmt.Errorf("pod: Config.CA: %w", err)
	}
	leaf := cert.Leaf
	if leaf == nil {
		if leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return nil, fmt.Errorf("pod: Config.Certificate: %w", err)
		}
		cert.Leaf = leaf
	}
	pool := x509.NewCertPool()
	pool.AddCert(caCert)
	// Checked now so that a wrong certificate is a start-up error, not a
	// failed handshake on every call later.
	id, err := verifyChain(cert.Leaf, cert.Certificate[1:], pool, x509.ExtKeyUsageAny, domain)
	if err != nil {
		return nil, fmt.Errorf("pod: Config.Certificate: %w", err)
	}
	if id.Kind != ca.KindPod {
		return nil, fmt.Errorf("pod: Config.Certificate names %s, not a pod", id)
	}
	return &tlsMaterial{cert: cert, id: id, pool: pool, domain: domain}, nil
}

// verifyChain verifies a leaf (with intermediates as raw DER) against the
// domain CA for usage and returns the DMSC identity it names.
func verifyChain(leaf *x509.Certificate, inter [][]byte, roots *x509.CertPool, usage x509.ExtKeyUsage, domain string) (ca.Identity, error) {
	ip := x509.NewCertPool()
	for _, der := range inter {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return ca.Identity{}, fmt.Errorf("intermediate certificate: %w", err)
		}
		ip.AddCert(c)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: ip, KeyUsages: []x509.ExtKeyUsage{usage}}); err != nil {
		return ca.Identity{}, err
	}
	id, err := ca.IdentityOf(leaf)
	if err != nil {
		return ca.Identity{}, err
	}
	if id.Domain != domain {
		return ca.Identity{}, fmt.Errorf("%s is of domain %q, not %q", id, id.Domain, domain)
	}
	return id, nil
}

func peerChain(cs tls.ConnectionState) (*x509.Certificate, [][]byte, error) {
	if len(cs.PeerCertificates) == 0 {
		return nil, nil, errors.New("no certificate presented")
	}
	var inter [][]byte
	for _, c := range cs.PeerCertificates[1:] {
		inter = append(inter, c.Raw)
	}
	return cs.PeerCertificates[0], inter, nil
}

// clientTLS verifies the server by identity, not host name: its chain to
// the domain CA, and that its pod prefix owns the dialed name.
func (e *Endpoint) clientTLS(n wire.Name) *tls.Config {
	t := e.tls
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{t.cert},
		NextProtos:   []string{e.cfg.ALPN},
		ServerName:   serverNameOf(n),
		// The standard verification would match a DNS SAN against
		// ServerName; VerifyConnection does the chain verification
		// instead, with the prefix check in place of the host-name check.
		InsecureSkipVerify: true, //nolint:gosec // verified in VerifyConnection
		VerifyConnection: func(cs tls.ConnectionState) error {
			leaf, inter, err := peerChain(cs)
			if err == nil {
				var id ca.Identity
				id, err = verifyChain(leaf, inter, t.pool, x509.ExtKeyUsageServerAuth, t.domain)
				if err == nil {
					switch {
					case id.Kind != ca.KindPod:
						err = fmt.Errorf("server is %s, not a pod", id)
					case !n.HasPrefix(id.Prefix):
						err = fmt.Errorf("server %s does not own the dialed prefix %s", id, n)
					}
				}
			}
			if err != nil {
				return fmt.Errorf("pod: dial %s: server certificate refused: %w", n, err)
			}
			return nil
		},
	}
}

// serverTLS verifies the client's chain and that the name it dialed (TLS
// server name) is one this pod's certificate owns.
func (e *Endpoint) serverTLS() *tls.Config {
	t := e.tls
	refuse := func(err error) error {
		e.stats.add(cntTLSRefused, 1)
		e.log.Info("pod refused a QUIC handshake", "err", err)
		return err
	}
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{t.cert},
		NextProtos:   []string{e.cfg.ALPN},
		// Requested rather than required, so that a missing certificate is
		// refused (and counted) in VerifyConnection like a bad one.
		ClientAuth: tls.RequestClientCert,
		// Resumption would skip the certificate exchange that carries the
		// identities; handshakes are cheap with Ed25519.
		SessionTicketsDisabled: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			want, err := nameOfServerName(cs.ServerName)
			if err != nil {
				return refuse(fmt.Errorf("pod: client dialed no service: %w", err))
			}
			if !want.HasPrefix(t.id.Prefix) {
				return refuse(fmt.Errorf("pod: client dialed %s, which this pod (%s) does not own", want, t.id))
			}
			leaf, inter, err := peerChain(cs)
			if err != nil {
				return refuse(fmt.Errorf("pod: client certificate refused: %w", err))
			}
			id, err := verifyChain(leaf, inter, t.pool, x509.ExtKeyUsageClientAuth, t.domain)
			if err != nil {
				return refuse(fmt.Errorf("pod: client certificate refused: %w", err))
			}
			if id.Kind != ca.KindPod && id.Kind != ca.KindNode {
				return refuse(fmt.Errorf("pod: client certificate refused: %s is neither a pod nor a node", id))
			}
			return nil
		},
	}
}

func (e *Endpoint) quicConfig() *quic.Config {
	keepAlive := e.cfg.KeepAlivePeriod
	if keepAlive < 0 {
		keepAlive = 0
	}
	return &quic.Config{
		HandshakeIdleTimeout: e.cfg.HandshakeTimeout,
		MaxIdleTimeout:       e.cfg.IdleTimeout,
		KeepAlivePeriod:      keepAlive,
		// Every packet fits one DMSC frame: fixed size, no path MTU
		// discovery (it would need the DF bit of a UDP socket anyway).
		InitialPacketSize:       quicPacketSize,
		DisablePathMTUDiscovery: true,
		MaxIncomingStreams:      e.cfg.MaxIncomingStreams,
		MaxIncomingUniStreams:   -1,
	}
}

// Conn is a QUIC connection to another pod, with the identity its verified
// certificate names.
type Conn struct {
	*quic.Conn
	peer     ca.Identity
	instance func() wire.Key
}

// Peer is the identity of the other pod (from its verified certificate).
func (c *Conn) Peer() ca.Identity { return c.peer }

// Instance is the other pod's instance key: for a dial, the instance it is
// pinned to; for an accepted connection, the client's.
func (c *Conn) Instance() wire.Key { return c.instance() }

func peerIdentity(qc *quic.Conn) (ca.Identity, error) {
	cs := qc.ConnectionState().TLS
	if len(cs.PeerCertificates) == 0 {
		return ca.Identity{}, errors.New("pod: peer presented no certificate")
	}
	return ca.IdentityOf(cs.PeerCertificates[0])
}

// pendingDial is a dial whose handshake runs; FailDials cancels it.
type pendingDial struct {
	key    wire.Key
	cancel context.CancelCauseFunc
}

// Dial opens a QUIC connection to the service name (as "/shop/cart"): one
// instance the fabric chooses, verified to own the name, to which the
// connection then stays pinned. It fails after Config.HandshakeTimeout
// (ErrHandshakeTimeout), at once on FailDials (ErrNoRoute), and with a
// message naming the prefix when the server's certificate does not own it.
// While the Endpoint is registered (Announce), it first asks the SG for a
// route (Resolve) and fails at once with a *NoRouteError (ErrNoRoute) when
// there is none; an SG that does not answer in Config.ResolveTimeout is
// dialed through anyway.
func (e *Endpoint) Dial(ctx context.Context, name string) (*Conn, error) {
	n, err := wire.ParseName(name)
	if err != nil {
		return nil, fmt.Errorf("pod: dial: %w", err)
	}
	if e.tls == nil {
		return nil, fmt.Errorf("pod: dial %s: %w", n, ErrNoCertificate)
	}
	e.stats.add(cntDials, 1)
	var c *Conn
	if err = e.checkRoute(ctx, n); err == nil {
		c, err = e.dial(ctx, n)
	}
	if err != nil {
		e.stats.add(cntDialErrors, 1)
		return nil, err
	}
	return c, nil
}

func (e *Endpoint) dial(ctx context.Context, n wire.Name) (*Conn, error) {
	pc, err := e.dialPacket(n)
	if err != nil {
		return nil, err
	}
	fail := func(err error) (*Conn, error) {
		pc.Close()
		return nil, fmt.Errorf("pod: dial %s: %w", n, err)
	}
	cctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	timeout := fmt.Errorf("%w (%v, no instance of %s answered)", ErrHandshakeTimeout, e.cfg.HandshakeTimeout, n)
	dctx, cancelT := context.WithTimeoutCause(cctx, e.cfg.HandshakeTimeout, timeout)
	defer cancelT()
	p := &pendingDial{key: pc.remote.Key, cancel: cancel}
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return fail(net.ErrClosed)
	}
	e.pending[p] = struct{}{}
	e.mu.Unlock()
	defer func() {
		e.mu.Lock()
		delete(e.pending, p)
		e.mu.Unlock()
	}()

	qc, err := quic.Dial(dctx, pc, pc.remote, e.clientTLS(n), e.quicConfig())
	if err != nil {
		return fail(dialError(dctx, err, timeout))
	}
	// quic-go reports the handshake complete when the client has sent its
	// Finished; the server may still refuse the client's certificate. Its
	// first 1-RTT packet (HANDSHAKE_DONE) says it did not: a quic-go
	// server sends none before it has processed the client's Finished.
	select {
	case <-pc.confirmed:
	case <-qc.Context().Done():
		return fail(fmt.Errorf("server closed the connection during the handshake: %w", context.Cause(qc.Context())))
	case <-dctx.Done():
		_ = qc.CloseWithError(0, "dial abandoned")
		return fail(dialError(dctx, context.Cause(dctx), timeout))
	}
	id, err := peerIdentity(qc)
	if err != nil {
		_ = qc.CloseWithError(0, "no identity")
		return fail(err)
	}
	c := &Conn{Conn: qc, peer: id, instance: func() wire.Key { k, _ := pc.Pinned(); return k }}
	if err := e.track(c, pc); err != nil {
		return fail(err)
	}
	return c, nil
}

// dialError names the reason of a failed dial: the cause of a cancelled
// context (FailDials, the timeout) before quic-go's own wording of it.
func dialError(ctx context.Context, err, timeout error) error {
	if cause := context.Cause(ctx); cause != nil && ctx.Err() != nil {
		return cause
	}
	var idle *quic.IdleTimeoutError
	var hs *quic.HandshakeTimeoutError
	if errors.As(err, &idle) || errors.As(err, &hs) {
		return fmt.Errorf("%w: %v", timeout, err)
	}
	return err
}

// track registers an established dial so that Close closes it, and closes
// its PacketConn when the connection ends.
func (e *Endpoint) track(c *Conn, pc *DialConn) error {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		_ = c.CloseWithError(0, "pod endpoint closed")
		return net.ErrClosed
	}
	e.conns[c] = struct{}{}
	e.wg.Add(1)
	e.mu.Unlock()
	context.AfterFunc(c.Context(), func() {
		defer e.wg.Done()
		pc.Close()
		e.mu.Lock()
		delete(e.conns, c)
		e.mu.Unlock()
	})
	return nil
}

// Listener accepts QUIC connections from other pods.
type Listener struct {
	ep *Endpoint
	tr *quic.Transport
	ln *quic.Listener
	pc *ListenConn

	mu       sync.Mutex
	closed   bool
	accepted map[*Conn]struct{}
	wg       sync.WaitGroup // the cleanups of accepted connections
}

// Listen starts accepting QUIC connections for the pod's service. There is
// one listener per Endpoint at a time.
func (e *Endpoint) Listen() (*Listener, error) {
	if e.tls == nil {
		return nil, fmt.Errorf("pod: listen: %w", ErrNoCertificate)
	}
	pc, err := e.ListenPacket()
	if err != nil {
		return nil, err
	}
	tr := &quic.Transport{Conn: pc}
	ln, err := tr.Listen(e.serverTLS(), e.quicConfig())
	if err != nil {
		_ = tr.Close()
		pc.Close()
		return nil, fmt.Errorf("pod: listen: %w", err)
	}
	l := &Listener{ep: e, tr: tr, ln: ln, pc: pc, accepted: map[*Conn]struct{}{}}
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		l.Close()
		return nil, fmt.Errorf("pod: listen: %w", net.ErrClosed)
	}
	e.listener = l
	e.mu.Unlock()
	return l, nil
}

// Accept waits for the next connection whose handshake completed: the
// client's certificate verified, its identity in Conn.Peer.
func (l *Listener) Accept(ctx context.Context) (*Conn, error) {
	for {
		qc, err := l.ln.Accept(ctx)
		if err != nil {
			return nil, fmt.Errorf("pod: accept: %w", err)
		}
		id, err := peerIdentity(qc)
		if err != nil { // VerifyConnection let it through, so this does not happen
			_ = qc.CloseWithError(0, "no identity")
			continue
		}
		src, _ := qc.RemoteAddr().(*Addr)
		var key wire.Key
		if src != nil {
			key = src.Key
		}
		c := &Conn{Conn: qc, peer: id, instance: func() wire.Key { return key }}
		l.mu.Lock()
		if l.closed {
			l.mu.Unlock()
			_ = qc.CloseWithError(0, "listener closed")
			return nil, fmt.Errorf("pod: accept: %w", net.ErrClosed)
		}
		l.accepted[c] = struct{}{}
		l.wg.Add(1)
		l.mu.Unlock()
		context.AfterFunc(qc.Context(), func() {
			defer l.wg.Done()
			l.mu.Lock()
			delete(l.accepted, c)
			l.mu.Unlock()
		})
		l.ep.stats.add(cntAccepted, 1)
		return c, nil
	}
}

// Addr is the pod's instance key.
func (l *Listener) Addr() net.Addr { return l.pc.LocalAddr() }

// stopAccepting refuses new handshakes and leaves accepted connections be.
func (l *Listener) stopAccepting() { _ = l.ln.Close() }

// Close stops accepting, closes every accepted connection (CONNECTION_CLOSE)
// and frees the Endpoint to Listen again.
func (l *Listener) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	conns := make([]*Conn, 0, len(l.accepted))
	for c := range l.accepted {
		conns = append(conns, c)
	}
	l.mu.Unlock()
	_ = l.ln.Close()
	for _, c := range conns {
		_ = c.CloseWithError(0, "listener closed")
	}
	// The Transport closes handshakes in flight and stops its reader,
	// which the PacketConn's Close then releases.
	_ = l.pc.Close()
	_ = l.tr.Close()
	l.wg.Wait()
	l.ep.mu.Lock()
	if l.ep.listener == l {
		l.ep.listener = nil
	}
	l.ep.mu.Unlock()
	return nil
}
