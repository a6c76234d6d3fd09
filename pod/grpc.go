package pod

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/quic-go/quic-go"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"

	"github.com/dmsc-mesh/dmsc/ca"
	"github.com/dmsc-mesh/dmsc/wire"
)

// SecurityProtocol is what this package's gRPC credentials report.
const SecurityProtocol = "dmsc-quic"

// AuthInfo is the gRPC AuthInfo of a call over DMSC QUIC: the peer's
// identity from its verified certificate and the connection's TLS state.
type AuthInfo struct {
	credentials.CommonAuthInfo
	Identity ca.Identity
	State    tls.ConnectionState
}

// AuthType implements credentials.AuthInfo.
func (AuthInfo) AuthType() string { return SecurityProtocol }

// PeerIdentity is the identity of the pod that made the gRPC call of ctx,
// on the server (or of the server, on the client). It reads the AuthInfo
// when the server was made with grpc.Creds(TransportCredentials()), and the
// peer address otherwise, so a plain grpc.NewServer works too.
func PeerIdentity(ctx context.Context) (ca.Identity, bool) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return ca.Identity{}, false
	}
	if ai, ok := p.AuthInfo.(AuthInfo); ok {
		return ai.Identity, true
	}
	if pa, ok := p.Addr.(*PeerAddr); ok {
		return pa.Identity, true
	}
	return ca.Identity{}, false
}

// TransportCredentials are gRPC credentials for connections made by
// DialGRPC and ListenGRPC: the handshake has been done by QUIC's TLS 1.3,
// so they do none and report the peer's identity as AuthInfo (security level
// PrivacyAndIntegrity, so per-RPC credentials that require a secure
// transport work). A connection of another kind is refused.
func TransportCredentials() credentials.TransportCredentials { return quicCreds{} }

type quicCreds struct{}

func (quicCreds) handshake(c net.Conn) (net.Conn, credentials.AuthInfo, error) {
	sc, ok := c.(*streamConn)
	if !ok {
		return nil, nil, fmt.Errorf("pod: gRPC credentials: %T is not a DMSC QUIC stream", c)
	}
	return c, AuthInfo{
		CommonAuthInfo: credentials.CommonAuthInfo{SecurityLevel: credentials.PrivacyAndIntegrity},
		Identity:       sc.conn.Peer(),
		State:          sc.conn.ConnectionState().TLS,
	}, nil
}

func (q quicCreds) ClientHandshake(_ context.Context, _ string, c net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return q.handshake(c)
}

func (q quicCreds) ServerHandshake(c net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return q.handshake(c)
}

func (quicCreds) Info() credentials.ProtocolInfo {
	return credentials.ProtocolInfo{SecurityProtocol: SecurityProtocol}
}

func (quicCreds) Clone() credentials.TransportCredentials { return quicCreds{} }

// OverrideServerName implements credentials.TransportCredentials; the
// server is chosen by service name, not host name, so it has no effect.
func (quicCreds) OverrideServerName(string) error { return nil }

// streamConn is one QUIC stream as a net.Conn: a gRPC transport.
type streamConn struct {
	*quic.Stream
	conn          *Conn
	local, remote net.Addr
	once          sync.Once
	onClose       func()
}

func newStreamConn(st *quic.Stream, c *Conn, onClose func()) *streamConn {
	pa := &PeerAddr{Identity: c.Peer()}
	if a, ok := c.RemoteAddr().(*Addr); ok && a != nil {
		pa.Addr = *a
	}
	return &streamConn{Stream: st, conn: c, local: c.LocalAddr(), remote: pa, onClose: onClose}
}

// Close ends both directions: a net.Conn that is closed is not read either
// (the peer learns it by STOP_SENDING).
func (s *streamConn) Close() error {
	var err error
	s.once.Do(func() {
		s.Stream.CancelRead(0)
		err = s.Stream.Close()
		if s.onClose != nil {
			s.onClose()
		}
	})
	return err
}

func (s *streamConn) LocalAddr() net.Addr  { return s.local }
func (s *streamConn) RemoteAddr() net.Addr { return s.remote }

// grpcDialer gives a gRPC ClientConn its transports: streams of one QUIC
// connection to the target, dialed when there is none or it died (a fresh
// dial pins afresh, so a dead instance is replaced by another).
type grpcDialer struct {
	ep   *Endpoint
	name string

	dialMu sync.Mutex // one dial at a time, so that transports share a connection

	mu      sync.Mutex
	conn    *Conn
	streams int // streams of conn open or being opened
}

// live returns the current connection if it is alive, else clears it. d.mu
// is held.
func (d *grpcDialer) live() *Conn {
	if d.conn != nil && d.conn.Context().Err() == nil {
		return d.conn
	}
	d.conn, d.streams = nil, 0
	return nil
}

// predial dials the first connection before gRPC asks for a transport.
func (d *grpcDialer) predial(ctx context.Context) error {
	d.dialMu.Lock()
	defer d.dialMu.Unlock()
	c, err := d.ep.Dial(ctx, d.name)
	if err != nil {
		return err
	}
	d.mu.Lock()
	d.conn, d.streams = c, 0
	d.mu.Unlock()
	// Should the ClientConn be closed before it takes the connection, no
	// stream would ever release it.
	time.AfterFunc(predialGrace, func() {
		d.mu.Lock()
		unused := d.conn == c && d.streams == 0
		if unused {
			d.conn = nil
		}
		d.mu.Unlock()
		if unused {
			_ = c.CloseWithError(0, "gRPC client never used the connection")
		}
	})
	return nil
}

// predialGrace is how long DialGRPC's first connection waits for gRPC to
// open a transport on it (it does so at once, from Connect).
const predialGrace = 10 * time.Second

// acquire returns a live connection with one stream reserved on it,
// dialing if there is none.
func (d *grpcDialer) acquire(ctx context.Context) (*Conn, error) {
	d.mu.Lock()
	if c := d.live(); c != nil {
		d.streams++
		d.mu.Unlock()
		return c, nil
	}
	d.mu.Unlock()
	// Dialing takes up to the handshake timeout; d.mu stays free for
	// release meanwhile. dialMu keeps a second dial from starting.
	c, err := d.ep.Dial(ctx, d.name)
	if err != nil {
		return nil, err
	}
	d.mu.Lock()
	d.conn, d.streams = c, 1
	d.mu.Unlock()
	return c, nil
}

func (d *grpcDialer) dialContext(ctx context.Context, _ string) (net.Conn, error) {
	d.dialMu.Lock()
	defer d.dialMu.Unlock()
	for attempt := 0; ; attempt++ {
		c, err := d.acquire(ctx)
		if err != nil {
			return nil, err
		}
		st, err := c.OpenStreamSync(ctx)
		if err != nil {
			d.release(c)
			if c.Context().Err() != nil && attempt == 0 {
				continue // it died just now: one fresh dial
			}
			return nil, fmt.Errorf("pod: gRPC to %s: open stream: %w", d.name, err)
		}
		return newStreamConn(st, c, func() { d.release(c) }), nil
	}
}

// release gives back a stream of c; the connection goes with its last one,
// so that the next transport dials afresh.
func (d *grpcDialer) release(c *Conn) {
	d.mu.Lock()
	if d.conn != c {
		d.mu.Unlock()
		return
	}
	d.streams--
	last := d.streams <= 0
	if last {
		d.conn, d.streams = nil, 0
	}
	d.mu.Unlock()
	if last {
		_ = c.CloseWithError(0, "no gRPC transport left")
	}
}

// GRPCDialOptions are the options that carry a gRPC ClientConn over DMSC
// QUIC to the service name: the context dialer, the credentials and the
// authority. DialGRPC uses them; they are for grpc.NewClient with other
// targets or further options. Each call makes a dialer with its own QUIC
// connection, so separate ClientConns to one service spread over its
// instances.
func GRPCDialOptions(ep *Endpoint, name string) ([]grpc.DialOption, error) {
	_, opts, err := grpcOptions(ep, name)
	return opts, err
}

func grpcOptions(ep *Endpoint, name string) (*grpcDialer, []grpc.DialOption, error) {
	n, err := wire.ParseName(name)
	if err != nil {
		return nil, nil, fmt.Errorf("pod: gRPC: %w", err)
	}
	if ep.tls == nil {
		return nil, nil, fmt.Errorf("pod: gRPC to %s: %w", n, ErrNoCertificate)
	}
	d := &grpcDialer{ep: ep, name: n.String()}
	return d, []grpc.DialOption{
		grpc.WithContextDialer(d.dialContext),
		grpc.WithTransportCredentials(TransportCredentials()),
		grpc.WithAuthority(authorityOf(n)),
	}, nil
}

// authorityOf is the HTTP/2 :authority of calls to n, a host name as
// servers expect there: the TLS server name ("cart.shop.dmsc").
func authorityOf(n wire.Name) string { return serverNameOf(n) }

// DialGRPC returns a gRPC ClientConn to the service name (as "/shop/cart")
// over DMSC QUIC. It dials the first QUIC connection at once, under ctx, so
// that an unknown service (ErrNoRoute, ErrHandshakeTimeout) or a server
// certificate that does not own the name fails here; later transports are
// dialed by gRPC as it reconnects. opts are added after the package's own.
func DialGRPC(ctx context.Context, ep *Endpoint, name string, opts ...grpc.DialOption) (*grpc.ClientConn, error) {
	d, base, err := grpcOptions(ep, name)
	if err != nil {
		return nil, err
	}
	if err := d.predial(ctx); err != nil {
		return nil, err
	}
	target := "passthrough:///" + strings.TrimPrefix(d.name, "/")
	cc, err := grpc.NewClient(target, append(base, opts...)...)
	if err != nil {
		d.mu.Lock()
		c := d.conn
		d.conn = nil
		d.mu.Unlock()
		if c != nil {
			_ = c.CloseWithError(0, "gRPC client not made")
		}
		return nil, fmt.Errorf("pod: gRPC to %s: %w", d.name, err)
	}
	cc.Connect()
	return cc, nil
}

// grpcListener turns the streams of accepted QUIC connections into
// net.Conns for grpc.Server.Serve.
type grpcListener struct {
	ln     *Listener
	ctx    context.Context
	cancel context.CancelFunc
	conns  chan net.Conn
	wg     sync.WaitGroup

	mu     sync.Mutex
	closed bool
	served map[*Conn]*servedConn
}

// servedConn is the state of one accepted connection.
type servedConn struct {
	streams   int  // open stream conns
	accepting bool // its stream acceptor runs
}

// ListenGRPC listens for gRPC over DMSC QUIC: each stream a client opens is
// one net.Conn from Accept, so grpc.NewServer().Serve(lis) works unchanged.
// The handler finds the caller with PeerIdentity(ctx). Close stops
// accepting but lets connections with open streams finish (so that
// grpc.Server.GracefulStop drains); each closes with its last stream.
func ListenGRPC(ep *Endpoint) (net.Listener, error) {
	ln, err := ep.Listen()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	g := &grpcListener{ln: ln, ctx: ctx, cancel: cancel, conns: make(chan net.Conn), served: map[*Conn]*servedConn{}}
	g.wg.Add(1)
	go g.acceptConns()
	return g, nil
}

func (g *grpcListener) acceptConns() {
	defer g.wg.Done()
	for {
		c, err := g.ln.Accept(g.ctx)
		if err != nil {
			return
		}
		g.mu.Lock()
		if g.closed {
			g.mu.Unlock()
			_ = c.CloseWithError(0, "listener closed")
			return
		}
		g.served[c] = &servedConn{accepting: true}
		g.wg.Add(1)
		g.mu.Unlock()
		go g.acceptStreams(c)
	}
}

func (g *grpcListener) acceptStreams(c *Conn) {
	defer g.wg.Done()
	defer g.update(c, func(s *servedConn) { s.accepting = false })
	for {
		st, err := c.AcceptStream(g.ctx)
		if err != nil {
			return
		}
		g.update(c, func(s *servedConn) { s.streams++ })
		sc := newStreamConn(st, c, func() { g.update(c, func(s *servedConn) { s.streams-- }) })
		select {
		case g.conns <- sc:
		case <-g.ctx.Done():
			sc.Close()
			return
		}
	}
}

// update changes c's state and ends what is finished: a connection with
// neither streams nor acceptor is forgotten (and closed, after the
// listener's Close), and the QUIC listener goes with the last of them.
func (g *grpcListener) update(c *Conn, f func(*servedConn)) {
	g.mu.Lock()
	s := g.served[c]
	if s == nil {
		g.mu.Unlock()
		return
	}
	f(s)
	var closeConn, closeListener bool
	if s.streams == 0 && !s.accepting {
		delete(g.served, c)
		closeConn = g.closed
		closeListener = g.closed && len(g.served) == 0
	}
	g.mu.Unlock()
	if closeConn {
		_ = c.CloseWithError(0, "listener closed")
	}
	if closeListener {
		_ = g.ln.Close()
	}
}

// Accept implements net.Listener.
func (g *grpcListener) Accept() (net.Conn, error) {
	select {
	case c := <-g.conns:
		return c, nil
	case <-g.ctx.Done():
		return nil, &net.OpError{Op: "accept", Net: Network, Addr: g.Addr(), Err: net.ErrClosed}
	}
}

// Addr implements net.Listener: the pod's instance key.
func (g *grpcListener) Addr() net.Addr { return g.ln.Addr() }

// Close implements net.Listener.
func (g *grpcListener) Close() error {
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		return nil
	}
	g.closed = true
	g.mu.Unlock()
	g.ln.stopAccepting()
	g.cancel()
	g.wg.Wait()
	g.mu.Lock()
	var idle []*Conn
	for c, s := range g.served {
		if s.streams == 0 {
			idle = append(idle, c)
			delete(g.served, c)
		}
	}
	last := len(g.served) == 0
	g.mu.Unlock()
	for _, c := range idle {
		_ = c.CloseWithError(0, "listener closed")
	}
	if last {
		_ = g.ln.Close()
	}
	return nil
}
