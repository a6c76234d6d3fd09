package pod

import (
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dmsc-mesh/dmsc/wire"
)

// deadline is a settable point in time whose passing closes a channel, for
// select loops (the pattern of net.Pipe).
type deadline struct {
	mu     sync.Mutex
	timer  *time.Timer
	cancel chan struct{} // closed when the deadline has passed
}

func newDeadline() *deadline { return &deadline{cancel: make(chan struct{})} }

// set arms the deadline; the zero time disarms it.
func (d *deadline) set(t time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.timer != nil && !d.timer.Stop() {
		<-d.cancel // the timer fired: wait for it to close the channel
	}
	d.timer = nil
	closed := isClosedChan(d.cancel)
	if t.IsZero() {
		if closed {
			d.cancel = make(chan struct{})
		}
		return
	}
	if dur := time.Until(t); dur > 0 {
		if closed {
			d.cancel = make(chan struct{})
		}
		c := d.cancel
		d.timer = time.AfterFunc(dur, func() { close(c) })
		return
	}
	if !closed {
		close(d.cancel)
	}
}

// wait returns the channel that is closed once the deadline has passed.
func (d *deadline) wait() chan struct{} {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.cancel
}

// stop releases the timer.
func (d *deadline) stop() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.timer != nil {
		d.timer.Stop()
		d.timer = nil
	}
}

func isClosedChan(c chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// packet is one received datagram waiting in a PacketConn's queue.
type packet struct {
	buf  *[]byte // from the Endpoint's payload pool; buf[:n] is the datagram
	n    int
	from net.Addr
}

// pconn is what DialConn and ListenConn share: a receive queue fed by the
// Endpoint, deadlines, and Close.
type pconn struct {
	ep    *Endpoint
	local *Addr
	queue chan packet
	rd    *deadline
	wd    *deadline

	closeOnce sync.Once
	done      chan struct{}
	onClose   func() // unregisters from the Endpoint
}

func (c *pconn) init(ep *Endpoint, local *Addr, onClose func()) {
	c.ep = ep
	c.local = local
	c.queue = make(chan packet, ep.cfg.QueueLen)
	c.rd = newDeadline()
	c.wd = newDeadline()
	c.done = make(chan struct{})
	c.onClose = onClose
}

// push queues a copy of payload; it never blocks (a full queue drops, as a
// socket buffer would).
func (c *pconn) push(payload []byte, from net.Addr) {
	if isClosedChan(c.done) {
		c.ep.stats.drop(idxConnClosed)
		return
	}
	buf := c.ep.getPayload()
	n := copy(*buf, payload)
	select {
	case c.queue <- packet{buf: buf, n: n, from: from}:
	default:
		c.ep.putPayload(buf)
		c.ep.stats.drop(idxQueueFull)
	}
}

func (c *pconn) opError(op string, err error) error {
	return &net.OpError{Op: op, Net: Network, Addr: c.local, Err: err}
}

// ReadFrom implements net.PacketConn. A datagram longer than p is
// truncated, as with UDP.
func (c *pconn) ReadFrom(p []byte) (int, net.Addr, error) {
	if isClosedChan(c.done) {
		return 0, nil, c.opError("read", net.ErrClosed)
	}
	if isClosedChan(c.rd.wait()) {
		return 0, nil, c.opError("read", os.ErrDeadlineExceeded)
	}
	select {
	case pk := <-c.queue:
		n := copy(p, (*pk.buf)[:pk.n])
		c.ep.putPayload(pk.buf)
		return n, pk.from, nil
	case <-c.done:
		return 0, nil, c.opError("read", net.ErrClosed)
	case <-c.rd.wait():
		return 0, nil, c.opError("read", os.ErrDeadlineExceeded)
	}
}

// checkWrite reports why a write cannot happen now.
func (c *pconn) checkWrite() error {
	if isClosedChan(c.done) {
		return c.opError("write", net.ErrClosed)
	}
	if isClosedChan(c.wd.wait()) {
		return c.opError("write", os.ErrDeadlineExceeded)
	}
	return nil
}

// Close implements net.PacketConn: blocked reads return net.ErrClosed and
// the Endpoint stops delivering to it.
func (c *pconn) Close() error {
	c.closeOnce.Do(func() {
		close(c.done)
		if c.onClose != nil {
			c.onClose()
		}
		c.rd.stop()
		c.wd.stop()
		for {
			select {
			case pk := <-c.queue:
				c.ep.putPayload(pk.buf)
			default:
				return
			}
		}
	})
	return nil
}

// LocalAddr implements net.PacketConn: this pod's instance key and the
// flow label (0 for a ListenConn, which answers on its peers' labels).
func (c *pconn) LocalAddr() net.Addr { return c.local }

// SetDeadline implements net.PacketConn.
func (c *pconn) SetDeadline(t time.Time) error {
	c.rd.set(t)
	c.wd.set(t)
	return nil
}

// SetReadDeadline implements net.PacketConn.
func (c *pconn) SetReadDeadline(t time.Time) error { c.rd.set(t); return nil }

// SetWriteDeadline implements net.PacketConn. Writes never block (a full
// link drops), so only a deadline already passed has an effect.
func (c *pconn) SetWriteDeadline(t time.Time) error { c.wd.set(t); return nil }

// SetReadBuffer and SetWriteBuffer accept and ignore a size. quic-go asks
// every PacketConn for bigger socket buffers and logs a warning through the
// standard logger when it cannot; the queue length is Config.QueueLen.
func (c *pconn) SetReadBuffer(int) error  { return nil }
func (c *pconn) SetWriteBuffer(int) error { return nil }

// DialConn is the PacketConn of one dial: every datagram it sends carries
// its own flow label, to the dialed service key until the first reply and to
// the instance key that answered from then on (pinning). To QUIC it always
// reports the dialed address as the peer, so quic-go sees one unchanging
// path whichever instance answers.
type DialConn struct {
	pconn
	remote *Addr // the dialed service, with this dial's flow label
	pinned atomic.Pointer[wire.Key]
	// confirmed is closed when the first short-header (1-RTT) QUIC packet
	// arrives: the server has verified the client's Finished, certificate
	// included (see Endpoint.Dial).
	confirmed     chan struct{}
	confirmedOnce sync.Once
}

var _ net.PacketConn = (*DialConn)(nil)

// RemoteAddr is the dialed address: the service key and this dial's flow
// label.
func (d *DialConn) RemoteAddr() net.Addr { return d.remote }

// Flow is this dial's flow label.
func (d *DialConn) Flow() uint32 { return d.remote.Flow }

// Pinned returns the instance key the dial is pinned to, and false before
// the first reply.
func (d *DialConn) Pinned() (wire.Key, bool) {
	if k := d.pinned.Load(); k != nil {
		return *k, true
	}
	return wire.Key{}, false
}

// target is where the next datagram goes.
func (d *DialConn) target() wire.Key {
	if k := d.pinned.Load(); k != nil {
		return *k
	}
	return d.remote.Key
}

// WriteTo implements net.PacketConn. The address is ignored: a dial talks
// to one peer, the one it dialed.
func (d *DialConn) WriteTo(p []byte, _ net.Addr) (int, error) {
	if err := d.checkWrite(); err != nil {
		return 0, err
	}
	if err := d.ep.sendDatagram(d.target(), d.remote.Flow, p, toListener); err != nil {
		return 0, d.opError("write", err)
	}
	return len(p), nil
}

// match is how an incoming datagram with this dial's flow label relates to
// the dial.
type match int

const (
	matchNone  match = iota // not ours: someone else's flow that happens to carry our label
	matchReply              // a reply: deliver
	matchStray              // an instance of the dialed service, but not the pinned one
)

// classify decides about a datagram from src, pinning the dial on its first
// reply.
func (d *DialConn) classify(src wire.Key) match {
	if !serves(src, d.remote.Key) {
		return matchNone
	}
	for {
		if p := d.pinned.Load(); p != nil {
			if *p == src {
				return matchReply
			}
			return matchStray
		}
		k := src
		if d.pinned.CompareAndSwap(nil, &k) {
			return matchReply
		}
	}
}

// deliver queues a reply and notes the first 1-RTT packet.
func (d *DialConn) deliver(payload []byte) {
	if len(payload) > 0 && payload[0]&0x80 == 0 { // QUIC short header: 1-RTT
		d.confirmedOnce.Do(func() { close(d.confirmed) })
	}
	d.push(payload, d.remote)
}

// serves reports whether src is an instance of the service whose key is
// dialed, or of an ancestor prefix (a pod whose instance key is under /shop
// may answer for /shop/cart: the fabric's longest match delivers there).
func serves(src, dialed wire.Key) bool {
	if src.Instance() == 0 {
		return false
	}
	svc := src.WithInstance(0)
	n := svc.PrefixLen()
	return n > 0 && dialed.Mask(n) == svc
}

// ListenConn is the PacketConn of the listening side: it receives every
// QUIC datagram that belongs to no dial, reports its sender as (instance
// key, flow label) and sends replies to that address with that flow label.
type ListenConn struct {
	pconn
}

var _ net.PacketConn = (*ListenConn)(nil)

// WriteTo implements net.PacketConn. addr must be an *Addr received from
// ReadFrom (or one made like it: an instance key and a flow label).
func (l *ListenConn) WriteTo(p []byte, addr net.Addr) (int, error) {
	if err := l.checkWrite(); err != nil {
		return 0, err
	}
	a, ok := addr.(*Addr)
	if !ok || a == nil {
		return 0, l.opError("write", &net.AddrError{Err: "not a DMSC address", Addr: addrString(addr)})
	}
	if err := l.ep.sendDatagram(a.Key, a.Flow, p, toDial); err != nil {
		return 0, l.opError("write", err)
	}
	return len(p), nil
}

func addrString(a net.Addr) string {
	if a == nil {
		return "<nil>"
	}
	return a.Network() + ":" + a.String()
}
