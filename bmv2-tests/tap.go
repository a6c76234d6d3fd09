package bmv2tests

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dmsc-mesh/dmsc/softswitch"
	"github.com/dmsc-mesh/dmsc/wire"
)

// EtherTypeTest marks frames the tests send that are not DMSC frames
// (wrong EtherType); it is kept by a Tap, so that a switch forwarding one
// by mistake is seen.
const EtherTypeTest = 0x88B6

// Tap is the test's end of a link (a root-side veth through AF_PACKET, or
// the far end of a software switch's memory port): it sends frames and
// records the DMSC frames (and EtherTypeTest frames) that arrive. Anything
// else the kernel may emit on a link is counted and ignored.
type Tap struct {
	Name string
	port softswitch.Port

	mu     sync.Mutex
	frames [][]byte
	last   time.Time // when the last frame arrived
	noise  atomic.Uint64

	stop chan struct{}
	done chan struct{}
}

// OpenTap opens the root-namespace interface iface with an AF_PACKET
// socket; the test's cleanup closes it.
func OpenTap(t testing.TB, iface string) *Tap {
	t.Helper()
	p, err := softswitch.NewPacketPort(iface)
	if err != nil {
		t.Fatal(err)
	}
	return NewTap(t, iface, p)
}

// NewTap records what arrives on p; the test's cleanup stops it and closes p.
func NewTap(t testing.TB, name string, p softswitch.Port) *Tap {
	tp := &Tap{Name: name, port: p, stop: make(chan struct{}), done: make(chan struct{})}
	go tp.read()
	t.Cleanup(tp.Close)
	return tp
}

func (tp *Tap) read() {
	defer close(tp.done)
	ms := make([]softswitch.Message, 32)
	for i := range ms {
		ms[i].Buf = make([]byte, 2048)
	}
	for {
		n, err := tp.port.ReadBatch(ms)
		select {
		case <-tp.stop:
			return
		default:
		}
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			if !errors.Is(err, os.ErrDeadlineExceeded) {
				time.Sleep(5 * time.Millisecond)
			}
			continue
		}
		now := time.Now()
		tp.mu.Lock()
		for _, m := range ms[:n] {
			f := m.Buf[:m.N]
			if len(f) >= wire.EthernetHeaderLen {
				if et := binary.BigEndian.Uint16(f[12:]); et == wire.EtherType || et == EtherTypeTest {
					tp.frames = append(tp.frames, slices.Clone(f))
					tp.last = now
					continue
				}
			}
			tp.noise.Add(1)
		}
		tp.mu.Unlock()
	}
}

// Close stops the reader and closes the port.
func (tp *Tap) Close() {
	select {
	case <-tp.stop:
		return
	default:
	}
	close(tp.stop)
	_ = tp.port.SetReadDeadline(time.Unix(1, 0))
	<-tp.done
	_ = tp.port.Close()
}

// Send writes frames, one at a time, in order.
func (tp *Tap) Send(frames ...[]byte) error {
	for i, f := range frames {
		n, err := tp.port.WriteBatch([]softswitch.Message{{Buf: f, N: len(f)}})
		if err != nil {
			return fmt.Errorf("%s: frame %d (%d bytes): %w", tp.Name, i, len(f), err)
		}
		if n != 1 {
			return fmt.Errorf("%s: frame %d (%d bytes) not sent", tp.Name, i, len(f))
		}
	}
	return nil
}

// Take returns the frames recorded so far and forgets them.
func (tp *Tap) Take() [][]byte {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	f := tp.frames
	tp.frames = nil
	return f
}

// Len is how many frames wait to be taken.
func (tp *Tap) Len() int {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	return len(tp.frames)
}

// LastArrival is when the newest recorded frame arrived.
func (tp *Tap) LastArrival() time.Time {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	return tp.last
}

// Noise is how many frames were ignored (not DMSC, not EtherTypeTest).
func (tp *Tap) Noise() uint64 { return tp.noise.Load() }

// WaitFor waits until cond holds on the recorded frames (under the tap's
// lock) or timeout passes, and reports whether it held.
func (tp *Tap) WaitFor(timeout time.Duration, cond func(frames [][]byte) bool) bool {
	deadline := time.Now().Add(timeout)
	for {
		tp.mu.Lock()
		ok := cond(tp.frames)
		tp.mu.Unlock()
		if ok {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
}
