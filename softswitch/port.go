package softswitch

import (
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"time"
)

// Message is one frame of a batch. For ReadBatch, Buf is the buffer to fill
// and the port sets N to the frame's length; for WriteBatch, Buf[:N] is the
// frame to send.
type Message struct {
	Buf []byte
	N   int
}

// Port is one switch port: an Ethernet link underneath, read and written in
// batches.
//
// ReadBatch blocks until at least one frame is there, then returns as many as
// are ready, up to len(ms). It returns an error wrapping
// os.ErrDeadlineExceeded once the read deadline has passed and net.ErrClosed
// after Close. A frame longer than its buffer is not delivered (the port
// counts it as an error).
//
// WriteBatch sends the frames and returns how many it sent. It must be safe
// to call from several goroutines at once, and concurrently with ReadBatch:
// every receive loop of the switch may write to every port.
//
// SetReadDeadline interrupts a blocked ReadBatch; the switch uses it to stop
// its receive loops without closing the port.
type Port interface {
	ReadBatch(ms []Message) (int, error)
	WriteBatch(ms []Message) (int, error)
	SetReadDeadline(t time.Time) error
	Close() error
}

// isTimeout reports a read-deadline error.
func isTimeout(err error) bool {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// memQueueLen is how many frames a memory port holds for its reader before
// it drops, like a NIC ring.
const memQueueLen = 4096

// MemPort is one end of an in-memory link, for tests and for embedding the
// switch in a process that exchanges frames with it directly. Frames written
// to one end are read at the other. A full queue drops frames (WriteBatch
// returns fewer than asked) instead of blocking the writer.
type MemPort struct {
	name   string
	peer   *MemPort
	in     chan []byte
	closed chan struct{}
	once   sync.Once

	mu       sync.Mutex
	deadline time.Time
	wake     chan struct{} // closed and replaced when the deadline changes
}

// NewMemPair returns the two ends of an in-memory link.
func NewMemPair() (a, b *MemPort) {
	a = newMemEnd("mem-a")
	b = newMemEnd("mem-b")
	a.peer, b.peer = b, a
	return a, b
}

func newMemEnd(name string) *MemPort {
	return &MemPort{
		name:   name,
		in:     make(chan []byte, memQueueLen),
		closed: make(chan struct{}),
		wake:   make(chan struct{}),
	}
}

// Peer returns the other end of the link.
func (p *MemPort) Peer() *MemPort { return p.peer }

func (p *MemPort) String() string { return p.name }

// ReadBatch implements Port.
func (p *MemPort) ReadBatch(ms []Message) (int, error) {
	if len(ms) == 0 {
		return 0, nil
	}
	for {
		p.mu.Lock()
		dl, wake := p.deadline, p.wake
		p.mu.Unlock()
		var timer *time.Timer
		var timeout <-chan time.Time
		if !dl.IsZero() {
			d := time.Until(dl)
			if d <= 0 {
				return 0, fmt.Errorf("%s: read: %w", p.name, os.ErrDeadlineExceeded)
			}
			timer = time.NewTimer(d)
			timeout = timer.C
		}
		var f []byte
		var err error
		select {
		case f = <-p.in:
		case <-p.closed:
			err = fmt.Errorf("%s: read: %w", p.name, net.ErrClosed)
		case <-wake:
		case <-timeout:
		}
		if timer != nil {
			timer.Stop()
		}
		if err != nil {
			return 0, err
		}
		if f == nil {
			continue // deadline changed or passed: look again
		}
		if n := p.fill(ms, f); n > 0 {
			return n, nil
		}
	}
}

// fill copies f and whatever else is queued, up to len(ms), into ms. Frames
// longer than their buffer are dropped.
func (p *MemPort) fill(ms []Message, f []byte) int {
	n := 0
	for {
		if len(f) <= len(ms[n].Buf) {
			ms[n].N = copy(ms[n].Buf, f)
			n++
		}
		if n == len(ms) {
			return n
		}
		select {
		case f = <-p.in:
		default:
			return n
		}
	}
}

// WriteBatch implements Port.
func (p *MemPort) WriteBatch(ms []Message) (int, error) {
	select {
	case <-p.closed:
		return 0, fmt.Errorf("%s: write: %w", p.name, net.ErrClosed)
	default:
	}
	for i, m := range ms {
		f := make([]byte, m.N)
		copy(f, m.Buf[:m.N])
		select {
		case p.peer.in <- f:
		default:
			return i, nil
		}
	}
	return len(ms), nil
}

// SetReadDeadline implements Port.
func (p *MemPort) SetReadDeadline(t time.Time) error {
	p.mu.Lock()
	p.deadline = t
	close(p.wake)
	p.wake = make(chan struct{})
	p.mu.Unlock()
	return nil
}

// Close implements Port. The peer's frames in flight are lost.
func (p *MemPort) Close() error {
	p.once.Do(func() { close(p.closed) })
	return nil
}

// Send writes one frame; it reports an error when the link is full or closed.
func (p *MemPort) Send(frame []byte) error {
	n, err := p.WriteBatch([]Message{{Buf: frame, N: len(frame)}})
	if err != nil {
		return err
	}
	if n == 0 {
		return fmt.Errorf("%s: queue full", p.name)
	}
	return nil
}

// Recv reads one frame, waiting at most timeout.
func (p *MemPort) Recv(timeout time.Duration) ([]byte, error) {
	select {
	case f := <-p.in: // first, so that Recv(0) takes what is there
		return f, nil
	default:
	}
	select {
	case f := <-p.in:
		return f, nil
	case <-p.closed:
		return nil, fmt.Errorf("%s: read: %w", p.name, net.ErrClosed)
	case <-time.After(timeout):
		return nil, fmt.Errorf("%s: read: %w", p.name, os.ErrDeadlineExceeded)
	}
}

// Pending is the number of frames waiting to be read at this end.
func (p *MemPort) Pending() int { return len(p.in) }
