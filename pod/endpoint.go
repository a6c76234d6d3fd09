package pod

import (
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dmsc-mesh/dmsc/softswitch"
	"github.com/dmsc-mesh/dmsc/wire"
)

// Defaults of Config.
const (
	DefaultHandshakeTimeout   = 3 * time.Second
	DefaultIdleTimeout        = 15 * time.Second
	DefaultKeepAlivePeriod    = 5 * time.Second
	DefaultMaxIncomingStreams = 1000
	DefaultQueueLen           = 1024
	DefaultReadBatch          = 64
	// DefaultALPN is the TLS application protocol of pod-to-pod QUIC.
	DefaultALPN = "dmsc-grpc"
)

// maxFrameLen is the read buffer per frame: the longest well-formed frame is
// 14 + 44 + 32 + 1456 bytes; a larger buffer lets a port hand over somewhat
// longer (malformed) frames, which are then counted as bad_length instead of
// vanishing inside the port.
const maxFrameLen = 2048

// Errors.
var (
	// ErrNoLocalKey: the pod has no instance key yet (SetLocalKey, after
	// registration), so it cannot send DATA frames.
	ErrNoLocalKey = errors.New("pod: no instance key yet (the pod is not registered with its SG)")
	// ErrNoRoute: the fabric has no route to the dialed service. FailDials
	// fails pending dials with it.
	ErrNoRoute = errors.New("pod: no route to the service")
	// ErrHandshakeTimeout: nobody completed the handshake in time (the name
	// may be served by no one).
	ErrHandshakeTimeout = errors.New("pod: no handshake within the timeout")
	// ErrNoCertificate: Dial and Listen need Config.CA and Config.Certificate.
	ErrNoCertificate = errors.New("pod: the endpoint has no certificate (set Config.CA and Config.Certificate)")
)

// Config configures an Endpoint. Only Port is required.
type Config struct {
	// Port is the link to the pod's port on its SG. The Endpoint owns it
	// and closes it on Close.
	Port softswitch.Port
	// CA is the domain CA's certificate and Certificate the pod's own
	// (ca.Issued.TLSCertificate), for Dial and Listen. An Endpoint without
	// them carries PacketConns and control frames only.
	CA          *x509.Certificate
	Certificate tls.Certificate
	// LocalMAC is the Ethernet source of sent frames (default: a random
	// locally administered address); GatewayMAC their destination (default:
	// broadcast, which a switch port accepts).
	LocalMAC, GatewayMAC net.HardwareAddr
	// HandshakeTimeout bounds a dial: the QUIC and TLS handshake and the
	// server's confirmation (default 3 s).
	HandshakeTimeout time.Duration
	// IdleTimeout closes a QUIC connection that heard nothing from its
	// peer for this long: how fast a dead instance is noticed (default
	// 15 s).
	IdleTimeout time.Duration
	// KeepAlivePeriod is how often an otherwise idle connection sends a
	// PING (default 5 s; negative: never).
	KeepAlivePeriod time.Duration
	// MaxIncomingStreams per QUIC connection (default 1000).
	MaxIncomingStreams int64
	// ALPN is the TLS application protocol (default "dmsc-grpc").
	ALPN string
	// QueueLen is each PacketConn's receive queue in datagrams (default
	// 1024); beyond it datagrams are dropped and counted, as a socket
	// buffer would.
	QueueLen int
	// ReadBatch is how many frames one read from the port takes (default
	// 64).
	ReadBatch int
	// ResolveTimeout bounds Resolve: how long the SG has to answer a
	// RESOLVE (default 500 ms).
	ResolveTimeout time.Duration
	// NoResolve stops Dial from asking the SG for a route first. Dial asks
	// only while the Endpoint holds a registration made by Announce (an SG
	// that speaks signal 1 is there); NoResolve is for SGs that do not
	// answer RESOLVE, so that each dial does not wait out ResolveTimeout.
	NoResolve bool
	// Logger (default slog.Default()).
	Logger *slog.Logger
}

func (c *Config) setDefaults() error {
	if c.Port == nil {
		return errors.New("pod: Config.Port is nil")
	}
	if c.HandshakeTimeout == 0 {
		c.HandshakeTimeout = DefaultHandshakeTimeout
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = DefaultIdleTimeout
	}
	if c.KeepAlivePeriod == 0 {
		c.KeepAlivePeriod = DefaultKeepAlivePeriod
	}
	if c.MaxIncomingStreams == 0 {
		c.MaxIncomingStreams = DefaultMaxIncomingStreams
	}
	if c.ALPN == "" {
		c.ALPN = DefaultALPN
	}
	if c.QueueLen == 0 {
		c.QueueLen = DefaultQueueLen
	}
	if c.ReadBatch == 0 {
		c.ReadBatch = DefaultReadBatch
	}
	if c.ResolveTimeout == 0 {
		c.ResolveTimeout = DefaultResolveTimeout
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	switch {
	case c.ResolveTimeout < 0:
		return fmt.Errorf("pod: ResolveTimeout %v is negative", c.ResolveTimeout)
	case c.HandshakeTimeout < 0:
		return fmt.Errorf("pod: HandshakeTimeout %v is negative", c.HandshakeTimeout)
	case c.IdleTimeout < 0:
		return fmt.Errorf("pod: IdleTimeout %v is negative", c.IdleTimeout)
	case c.QueueLen < 0:
		return fmt.Errorf("pod: QueueLen %d is negative", c.QueueLen)
	case c.ReadBatch < 0:
		return fmt.Errorf("pod: ReadBatch %d is negative", c.ReadBatch)
	}
	for _, m := range []struct {
		name string
		mac  net.HardwareAddr
	}{{"LocalMAC", c.LocalMAC}, {"GatewayMAC", c.GatewayMAC}} {
		if m.mac != nil && len(m.mac) != 6 {
			return fmt.Errorf("pod: %s %s is not a 6-byte Ethernet address", m.name, m.mac)
		}
	}
	return nil
}

// Endpoint is a pod's attachment to its SG port: the link, its reader, and
// the demultiplexing of frames to PacketConns and the control handler.
type Endpoint struct {
	cfg  Config
	port softswitch.Port
	log  *slog.Logger
	eth  wire.Ethernet
	tls  *tlsMaterial // nil without certificates

	local   atomic.Pointer[wire.Key]
	control atomic.Pointer[func(wire.Frame)]
	sig     signalling // the announcement protocol and RESOLVE (announce.go)

	mu       sync.RWMutex
	closed   bool
	dials    map[uint32]*DialConn // by flow label
	listen   *ListenConn
	listener *Listener
	pending  map[*pendingDial]struct{}
	conns    map[*Conn]struct{} // established dials

	stats    counters
	payloads sync.Pool // *[]byte of wire.MaxPayload
	frames   sync.Pool // *[]byte for outgoing frames

	done chan struct{}
	wg   sync.WaitGroup // the reader and the per-connection cleanups
}

// NewEndpoint attaches to cfg.Port and starts reading it.
func NewEndpoint(cfg Config) (*Endpoint, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	e := &Endpoint{
		cfg:     cfg,
		port:    cfg.Port,
		log:     cfg.Logger.With("component", "pod"),
		dials:   map[uint32]*DialConn{},
		pending: map[*pendingDial]struct{}{},
		conns:   map[*Conn]struct{}{},
		done:    make(chan struct{}),
	}
	e.payloads.New = func() any { b := make([]byte, wire.MaxPayload); return &b }
	e.frames.New = func() any { b := make([]byte, 0, wire.EthernetHeaderLen+wire.HeaderLen+wire.MaxPayload); return &b }
	if cfg.LocalMAC != nil {
		copy(e.eth.Src[:], cfg.LocalMAC)
	} else {
		if _, err := rand.Read(e.eth.Src[:]); err != nil {
			return nil, fmt.Errorf("pod: random MAC: %w", err)
		}
		e.eth.Src[0] = e.eth.Src[0]&^0x01 | 0x02 // unicast, locally administered
	}
	if cfg.GatewayMAC != nil {
		copy(e.eth.Dst[:], cfg.GatewayMAC)
	} else {
		e.eth.Dst = [6]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
	}
	if cfg.CA != nil || len(cfg.Certificate.Certificate) > 0 {
		tm, err := newTLSMaterial(cfg.CA, cfg.Certificate)
		if err != nil {
			return nil, err
		}
		e.tls = tm
	}
	e.wg.Add(1)
	go e.readLoop()
	return e, nil
}

// SetLocalKey sets the pod's instance key, which SPA allocated at
// registration: the source of every DATA frame and the only destination
// the pod accepts. It must be an instance key (instance segment not 0).
func (e *Endpoint) SetLocalKey(k wire.Key) error {
	if k.Instance() == 0 {
		return fmt.Errorf("pod: local key %s is a service key (instance segment 0), not an instance key", k)
	}
	e.local.Store(&k)
	return nil
}

// LocalKey returns the instance key, and false before SetLocalKey.
func (e *Endpoint) LocalKey() (wire.Key, bool) {
	if k := e.local.Load(); k != nil {
		return *k, true
	}
	return wire.Key{}, false
}

// SetControlHandler sets the function CONTROL frames (type 3, next_proto 2)
// are handed to; nil drops them (counted as no_control_handler). It runs on
// the Endpoint's reader goroutine and must not block: every frame waits
// behind it. The frame's Payload is the handler's own copy.
func (e *Endpoint) SetControlHandler(h func(wire.Frame)) {
	if h == nil {
		e.control.Store(nil)
		return
	}
	e.control.Store(&h)
}

// SendControl sends a control message (wire.AppendControl's envelope) to
// the SG in a CONTROL frame: dst_key zero (link-local, the SG agent takes
// every CONTROL frame from its port), src_key the instance key once there
// is one, else zero.
func (e *Endpoint) SendControl(signal, msgType uint8, body []byte) error {
	payload, err := wire.AppendControl(nil, signal, msgType, body)
	if err != nil {
		return fmt.Errorf("pod: send control: %w", err)
	}
	var src wire.Key
	if k := e.local.Load(); k != nil {
		src = *k
	}
	return e.SendFrame(wire.Header{
		Type:      wire.TypeControl,
		HopLimit:  1, // link-local: the first switch punts it to its agent
		NextProto: wire.ProtoControl,
		Src:       src,
	}, payload)
}

// SendFrame sends one frame as given (the Endpoint sets only version and
// payload_len): for the announcement protocol and tests. A full link drops
// the frame and counts it (link_full) without an error, as for datagrams.
func (e *Endpoint) SendFrame(h wire.Header, payload []byte) error {
	if len(payload) > wire.MaxPayload {
		return fmt.Errorf("pod: payload of %d bytes exceeds the %d a frame carries", len(payload), wire.MaxPayload)
	}
	if h.Type == wire.TypeControl {
		e.stats.add(cntControlOut, 1)
	}
	return e.writeFrame(h, payload)
}

// Stats returns a snapshot of the counters.
func (e *Endpoint) Stats() Stats {
	st := e.stats.snapshot()
	e.mu.RLock()
	st.PendingDials = len(e.pending)
	e.mu.RUnlock()
	return st
}

// DialPacket opens a PacketConn to the service name (as "/shop/cart") with
// a fresh random flow label. Dial runs QUIC over one; use this for other
// datagram protocols.
func (e *Endpoint) DialPacket(name string) (*DialConn, error) {
	n, err := wire.ParseName(name)
	if err != nil {
		return nil, fmt.Errorf("pod: dial: %w", err)
	}
	return e.dialPacket(n)
}

func (e *Endpoint) dialPacket(n wire.Name) (*DialConn, error) {
	local, ok := e.LocalKey()
	if !ok {
		return nil, fmt.Errorf("pod: dial %s: %w", n, ErrNoLocalKey)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return nil, fmt.Errorf("pod: dial %s: %w", n, net.ErrClosed)
	}
	var flow uint32
	for {
		var b [4]byte
		if _, err := rand.Read(b[:]); err != nil {
			return nil, fmt.Errorf("pod: dial %s: flow label: %w", n, err)
		}
		// 0 is left out so that a flow label always marks a flow; an
		// unused label, so one reply goes to exactly one dial.
		if flow = binary.BigEndian.Uint32(b[:]); flow != 0 && e.dials[flow] == nil {
			break
		}
	}
	d := &DialConn{
		remote:    &Addr{Key: wire.KeyOf(n), Flow: flow, Name: n.String()},
		confirmed: make(chan struct{}),
	}
	d.init(e, &Addr{Key: local, Flow: flow}, func() {
		e.mu.Lock()
		if e.dials[flow] == d {
			delete(e.dials, flow)
		}
		e.mu.Unlock()
	})
	e.dials[flow] = d
	return d, nil
}

// ListenPacket opens the PacketConn that receives every QUIC datagram not
// belonging to a dial. There is one per Endpoint at a time.
func (e *Endpoint) ListenPacket() (*ListenConn, error) {
	local, ok := e.LocalKey()
	if !ok {
		return nil, fmt.Errorf("pod: listen: %w", ErrNoLocalKey)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return nil, fmt.Errorf("pod: listen: %w", net.ErrClosed)
	}
	if e.listen != nil {
		return nil, errors.New("pod: listen: the endpoint is already listening")
	}
	l := &ListenConn{}
	l.init(e, &Addr{Key: local}, func() {
		e.mu.Lock()
		if e.listen == l {
			e.listen = nil
		}
		e.mu.Unlock()
	})
	e.listen = l
	return l, nil
}

// FailDials fails every dial still handshaking with the service key
// serviceKey, with err (ErrNoRoute if err is nil): for the SG's "no route"
// signal, so that a dial to an unknown service ends at once instead of at
// its timeout. It returns how many dials it failed.
func (e *Endpoint) FailDials(serviceKey wire.Key, err error) int {
	if err == nil {
		err = ErrNoRoute
	}
	e.mu.RLock()
	var hit []*pendingDial
	for p := range e.pending {
		if p.key == serviceKey {
			hit = append(hit, p)
		}
	}
	e.mu.RUnlock()
	for _, p := range hit {
		p.cancel(err)
	}
	return len(hit)
}

// Close stops the Endpoint: pending dials fail, QUIC connections are closed
// (CONNECTION_CLOSE to their peers), PacketConns return net.ErrClosed, the
// registration, if any, is withdrawn (waiting up to
// AnnounceConfig.WithdrawTimeout for the SG's confirmation), the port is
// closed and the reader is waited for.
func (e *Endpoint) Close() error {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return nil
	}
	e.closed = true
	pending := make([]*pendingDial, 0, len(e.pending))
	for p := range e.pending {
		pending = append(pending, p)
	}
	conns := make([]*Conn, 0, len(e.conns))
	for c := range e.conns {
		conns = append(conns, c)
	}
	ln := e.listener
	e.mu.Unlock()

	for _, p := range pending {
		p.cancel(net.ErrClosed)
	}
	for _, c := range conns {
		_ = c.CloseWithError(0, "pod endpoint closed")
	}
	if ln != nil {
		_ = ln.Close()
	}
	e.mu.Lock()
	pcs := make([]interface{ Close() error }, 0, len(e.dials)+1)
	for _, d := range e.dials {
		pcs = append(pcs, d)
	}
	if e.listen != nil {
		pcs = append(pcs, e.listen)
	}
	e.mu.Unlock()
	for _, c := range pcs {
		_ = c.Close()
	}
	// After the connections (their CONNECTION_CLOSEs still go out from the
	// instance key), before the link: the WITHDRAW needs both directions.
	e.sig.shutdown()
	close(e.done)
	err := e.port.Close()
	e.wg.Wait()
	return err
}

func (e *Endpoint) isClosed() bool {
	select {
	case <-e.done:
		return true
	default:
		return false
	}
}

func (e *Endpoint) getPayload() *[]byte  { return e.payloads.Get().(*[]byte) }
func (e *Endpoint) putPayload(b *[]byte) { e.payloads.Put(b) }

// readLoop is the Endpoint's one reader: batches from the port, each frame
// handled in place.
func (e *Endpoint) readLoop() {
	defer e.wg.Done()
	ms := make([]softswitch.Message, max(e.cfg.ReadBatch, 1))
	for i := range ms {
		ms[i].Buf = make([]byte, maxFrameLen)
	}
	backoff := time.Millisecond
	for {
		n, err := e.port.ReadBatch(ms)
		for i := 0; i < n; i++ {
			e.handleFrame(ms[i].Buf[:ms[i].N])
		}
		if err == nil {
			backoff = time.Millisecond
			continue
		}
		if e.isClosed() || errors.Is(err, net.ErrClosed) {
			if !e.isClosed() {
				e.log.Warn("pod link closed under the endpoint", "err", err)
			}
			return
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			continue
		}
		// Some other error of the link (an interface going down): keep
		// trying, slower, until it recovers or Close.
		e.stats.add(cntReadErrors, 1)
		e.log.Warn("pod link read", "err", err)
		select {
		case <-e.done:
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, time.Second)
	}
}

// handleFrame checks one frame from the link and delivers it. It never
// panics and never keeps b.
func (e *Endpoint) handleFrame(b []byte) {
	var f wire.Frame
	if r := wire.ParseFrame(b, &f); r != wire.DropNone {
		e.stats.dropWire(r)
		return
	}
	e.stats.add(cntFramesIn, 1)
	e.stats.add(cntBytesIn, uint64(len(b)))
	switch f.Hdr.Type {
	case wire.TypeControl:
		if f.Hdr.NextProto != wire.ProtoControl {
			e.stats.drop(idxNotControl)
			return
		}
		h := e.control.Load()
		if h == nil {
			e.stats.drop(idxNoHandler)
			return
		}
		f.Payload = append([]byte(nil), f.Payload...)
		e.stats.add(cntControlIn, 1)
		(*h)(f)
	case wire.TypeData:
		if f.Hdr.NextProto != wire.ProtoDatagram {
			e.stats.drop(idxNotDatagram)
			return
		}
		local := e.local.Load()
		if local == nil {
			e.stats.drop(idxNoLocalKey)
			return
		}
		if f.Hdr.Dst != *local {
			e.stats.drop(idxWrongDst)
			return
		}
		dest := anyConn
		if f.Hdr.Src == *local {
			// Our own instance key as the source: one of our dials
			// reached our own instance through the fabric. A reply from
			// our listener to our own dial never takes the link (see
			// sendDatagram), so this is a request.
			dest = toListener
		}
		e.route(f.Hdr.Src, f.Hdr.FlowLabel, f.Payload, dest)
	default:
		e.stats.drop(idxUnexpectedType)
	}
}

// destination restricts route.
type destination int

const (
	anyConn    destination = iota // a dial if it is a reply, else the listener
	toListener                    // a request
	toDial                        // a reply
)

// route delivers a datagram from src with flow label flow.
func (e *Endpoint) route(src wire.Key, flow uint32, payload []byte, dest destination) {
	e.mu.RLock()
	d := e.dials[flow]
	l := e.listen
	e.mu.RUnlock()
	if dest != toListener && d != nil {
		switch d.classify(src) {
		case matchReply:
			d.deliver(payload)
			return
		case matchStray:
			e.stats.drop(idxStrayReply)
			return
		}
	}
	if dest == toDial || l == nil {
		e.stats.drop(idxNoListener)
		return
	}
	l.push(payload, &Addr{Key: src, Flow: flow})
}

// sendDatagram sends a QUIC datagram from this pod's instance key. One sent
// to the pod's own instance key is delivered here, to local (the listener
// for a dial's datagram, a dial for the listener's), without the link.
func (e *Endpoint) sendDatagram(dst wire.Key, flow uint32, payload []byte, local destination) error {
	src := e.local.Load()
	if src == nil {
		return ErrNoLocalKey
	}
	if len(payload) > wire.MaxPayload {
		return fmt.Errorf("pod: datagram of %d bytes exceeds the %d a frame carries", len(payload), wire.MaxPayload)
	}
	if dst == *src {
		e.stats.add(cntLoopback, 1)
		e.route(*src, flow, payload, local)
		return nil
	}
	return e.writeFrame(wire.Header{
		Type:      wire.TypeData,
		HopLimit:  wire.DefaultHopLimit,
		FlowLabel: flow,
		NextProto: wire.ProtoDatagram,
		Dst:       dst,
		Src:       *src,
	}, payload)
}

// writeFrame puts one frame on the link.
func (e *Endpoint) writeFrame(h wire.Header, payload []byte) error {
	bp := e.frames.Get().(*[]byte)
	frame := wire.AppendFrame((*bp)[:0], e.eth, h, nil, payload)
	ms := [1]softswitch.Message{{Buf: frame, N: len(frame)}}
	n, err := e.port.WriteBatch(ms[:])
	*bp = frame[:0]
	e.frames.Put(bp)
	if err != nil {
		return fmt.Errorf("pod: link: %w", err)
	}
	if n == 0 {
		e.stats.drop(idxLinkFull)
		return nil
	}
	e.stats.add(cntFramesOut, 1)
	e.stats.add(cntBytesOut, uint64(len(frame)))
	return nil
}
