package bmv2

import (
	"encoding/binary"
	"errors"
	"math"
	"net"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dmsc-mesh/dmsc/softswitch"
	"github.com/dmsc-mesh/dmsc/wire"
)

const (
	// batch is how many frames a sender hands the kernel per sendmmsg.
	batch = 32
	// quiet is how long a trial waits for the next frame before it counts
	// the missing ones as lost. BMv2 keeps forwarding what its ingress ring
	// holds for a while after an overload; this outlasts that.
	quiet = 200 * time.Millisecond
	// stampMagic opens every benchmark payload ("BENC"), so that nothing
	// else the kernel might emit on a link is counted.
	stampMagic = 0x42454e43
	stampLen   = 16 // magic, epoch, send time
	payloadOff = wire.EthernetHeaderLen + wire.HeaderLen
)

// Addresses. The sender writes frames to srcMAC→inMAC; the route's next
// hop rewrites the destination to routeMAC, which is how the receiver tells
// a forwarded frame.
var (
	inMAC    = [6]byte{2, 0, 0, 0, 0, 1}
	srcMAC   = [6]byte{2, 0, 0, 0, 0, 0xfe}
	routeMAC = [6]byte{2, 0, 0, 0, 0, 2}
	// routeKey is the destination: its first 64 bits are the fib_64 route.
	routeKey = wire.Key{0, 0, 0, 1, 0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0, 9}
	srcKey   = wire.Key{0, 0, 0, 2}
)

// clockBase is the origin of mono; sender and receiver live in this
// process and read the same monotonic clock.
var clockBase = time.Now()

// mono is nanoseconds on the monotonic clock.
func mono() int64 { return int64(time.Since(clockBase)) }

// newFrame builds a DMSC DATA frame with payload bytes of payload, the
// first stampLen of which stamp writes per send.
func newFrame(payload int, flow uint32) []byte {
	h := wire.Header{Type: wire.TypeData, HopLimit: wire.DefaultHopLimit, FlowLabel: flow, Dst: routeKey, Src: srcKey}
	return wire.AppendFrame(nil, wire.Ethernet{Dst: inMAC, Src: srcMAC, EtherType: wire.EtherType}, h, nil, make([]byte, payload))
}

// stamp writes the benchmark header into a frame's payload.
func stamp(f []byte, epoch uint32, sent int64) {
	p := f[payloadOff:]
	binary.BigEndian.PutUint32(p[0:], stampMagic)
	binary.BigEndian.PutUint32(p[4:], epoch)
	binary.BigEndian.PutUint64(p[8:], uint64(sent))
}

// classify reads a received frame: it counts if it has the expected
// length, is a DMSC frame addressed to dmac and carries a benchmark stamp;
// then it returns the stamp's epoch and send time.
func classify(f []byte, size int, dmac [6]byte) (epoch uint32, sent int64, ok bool) {
	if len(f) != size || len(f) < payloadOff+stampLen {
		return 0, 0, false
	}
	if [6]byte(f[0:6]) != dmac || binary.BigEndian.Uint16(f[12:]) != wire.EtherType {
		return 0, 0, false
	}
	p := f[payloadOff:]
	if binary.BigEndian.Uint32(p[0:]) != stampMagic {
		return 0, 0, false
	}
	return binary.BigEndian.Uint32(p[4:]), int64(binary.BigEndian.Uint64(p[8:])), true
}

// trial is one measurement: the frames of one epoch.
type trial struct {
	epoch   uint32
	size    int  // frame length
	latency bool // keep one-way latencies

	count atomic.Uint64
	last  atomic.Int64 // mono time of the last counted arrival

	mu      sync.Mutex
	samples []int64 // one-way latencies, ns
}

// receiver counts, on its own socket, the frames of the current trial.
type receiver struct {
	port  *softswitch.PacketPort
	dmac  [6]byte
	cur   atomic.Pointer[trial]
	other atomic.Uint64 // frames of no current trial: late, or not ours
	stop  chan struct{}
	done  chan struct{}
}

func startReceiver(port *softswitch.PacketPort, dmac [6]byte) *receiver {
	r := &receiver{port: port, dmac: dmac, stop: make(chan struct{}), done: make(chan struct{})}
	go r.run()
	return r
}

func (r *receiver) run() {
	defer close(r.done)
	ms := make([]softswitch.Message, 64)
	for i := range ms {
		ms[i].Buf = make([]byte, 2048)
	}
	var lat []int64
	for {
		n, err := r.port.ReadBatch(ms)
		now := mono()
		if err != nil {
			select {
			case <-r.stop:
				return
			default:
			}
			if errors.Is(err, net.ErrClosed) {
				return
			}
			if !errors.Is(err, os.ErrDeadlineExceeded) {
				time.Sleep(time.Millisecond) // do not spin on a persistent error
			}
			continue
		}
		tr := r.cur.Load()
		counted := 0
		lat = lat[:0]
		for _, m := range ms[:n] {
			if tr == nil {
				break
			}
			epoch, sent, ok := classify(m.Buf[:m.N], tr.size, r.dmac)
			if !ok || epoch != tr.epoch {
				continue
			}
			counted++
			if tr.latency {
				lat = append(lat, now-sent)
			}
		}
		if n > counted {
			r.other.Add(uint64(n - counted))
		}
		if counted == 0 {
			continue
		}
		if len(lat) > 0 {
			tr.mu.Lock()
			tr.samples = append(tr.samples, lat...)
			tr.mu.Unlock()
		}
		tr.last.Store(now)
		tr.count.Add(uint64(counted))
	}
}

func (r *receiver) close() {
	close(r.stop)
	_ = r.port.SetReadDeadline(time.Unix(1, 0))
	<-r.done
	_ = r.port.Close()
}

// sender writes frames into a link from its own socket.
type sender struct {
	port   *softswitch.PacketPort
	ms     []softswitch.Message
	frames map[int][][]byte // per payload size, one batch of frames
}

func newSender(port *softswitch.PacketPort) *sender {
	return &sender{port: port, ms: make([]softswitch.Message, batch), frames: map[int][][]byte{}}
}

func (s *sender) batchOf(payload int) [][]byte {
	fs, ok := s.frames[payload]
	if !ok {
		for i := range batch {
			fs = append(fs, newFrame(payload, uint32(i)))
		}
		s.frames[payload] = fs
	}
	return fs
}

// send offers n frames of tr's payload at rate frames/s (0: as fast as the
// kernel takes them), for at most d if d > 0, and returns how many the
// kernel took. Go's timers wake about once a millisecond here, so a paced
// sender sends what is due in bursts of about rate/1000 frames.
func (s *sender) send(tr *trial, payload, n int, rate float64, d time.Duration) (int, error) {
	fs := s.batchOf(payload)
	start := time.Now()
	sent := 0
	for sent < n {
		if d > 0 && time.Since(start) >= d {
			break
		}
		k := min(batch, n-sent)
		if rate > 0 {
			due := int(time.Since(start).Seconds()*rate) - sent
			if due <= 0 {
				next := start.Add(time.Duration(float64(sent+1) / rate * float64(time.Second)))
				time.Sleep(time.Until(next))
				continue
			}
			k = min(k, due)
		}
		now := mono()
		for i := range k {
			stamp(fs[i], tr.epoch, now)
			s.ms[i] = softswitch.Message{Buf: fs[i], N: len(fs[i])}
		}
		w, err := s.port.WriteBatch(s.ms[:k])
		sent += w
		if err != nil {
			return sent, err
		}
	}
	return sent, nil
}

// stream sends one frame at a time at rate frames/s for d, each stamped
// with its send time, for latency.
func (s *sender) stream(tr *trial, payload int, rate float64, d time.Duration) (int, error) {
	f := s.batchOf(payload)[0]
	interval := time.Duration(float64(time.Second) / rate)
	start := time.Now()
	sent := 0
	for i := 0; ; i++ {
		due := start.Add(time.Duration(i) * interval)
		if due.Sub(start) >= d {
			return sent, nil
		}
		if w := time.Until(due); w > 0 {
			time.Sleep(w)
		}
		stamp(f, tr.epoch, mono())
		w, err := s.port.WriteBatch([]softswitch.Message{{Buf: f, N: len(f)}})
		sent += w
		if err != nil {
			return sent, err
		}
	}
}

// percentile is the nearest-rank p-th percentile (0 < p ≤ 100) of sorted.
func percentile(sorted []int64, p float64) int64 {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(float64(len(sorted))*p/100)) - 1
	return sorted[min(max(rank, 0), len(sorted)-1)]
}

// latencies returns tr's samples sorted.
func (tr *trial) latencies() []int64 {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	out := slices.Clone(tr.samples)
	slices.Sort(out)
	return out
}
