package pod

import (
	"encoding/binary"
	"errors"
	"hash/fnv"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/dmsc-mesh/dmsc/softswitch"
	"github.com/dmsc-mesh/dmsc/wire"
)

// testFabric stands in for the DMSC fabric between pods: one goroutine per
// attached pod reads the pod's link and forwards its DATA frames by dst key
// the way SGs and SRs do. A service key (instance segment 0) reaches one
// live instance of the service, chosen by a hash of the flow label and
// source (as the egress SG's selector) or round robin, and the instance
// segment is rewritten to it; an instance key reaches that instance. The
// source must be the sender's own instance key (src_guard).
type testFabric struct {
	t     testing.TB
	delay time.Duration

	mu         sync.Mutex
	roundRobin bool
	rr         int
	instances  map[wire.Key]*fabricPort   // by instance key
	services   map[wire.Key][]*fabricPort // by service key, in attach order
	frames     []seenFrame                // every DATA frame forwarded, if recording
	record     bool
	control    func(from wire.Key, f wire.Frame)
	dropped    int

	delayed chan delayedFrame
	done    chan struct{}
	wg      sync.WaitGroup
}

type fabricPort struct {
	key    wire.Key
	end    *softswitch.MemPort // the fabric's end; the pod has its peer
	killed bool
}

// seenFrame is a DATA frame as the fabric forwarded it.
type seenFrame struct {
	From, To  wire.Key // sender, and the instance it was delivered to
	Dst       wire.Key // dst_key as the sender wrote it
	Flow      uint32
	PayloadLn int
}

type delayedFrame struct {
	at    time.Time
	to    *softswitch.MemPort
	frame []byte
}

func newTestFabric(t testing.TB, delay time.Duration) *testFabric {
	f := &testFabric{
		t:         t,
		delay:     delay,
		instances: map[wire.Key]*fabricPort{},
		services:  map[wire.Key][]*fabricPort{},
		delayed:   make(chan delayedFrame, 1<<16),
		done:      make(chan struct{}),
	}
	if delay > 0 {
		f.wg.Add(1)
		go f.delayLine()
	}
	t.Cleanup(f.close)
	return f
}

// attach connects a new pod of service name with instance id and returns the
// pod's end of the link and its instance key.
func (f *testFabric) attach(name string, instance uint32) (*softswitch.MemPort, wire.Key) {
	n := wire.MustParseName(name)
	svc := wire.KeyOf(n)
	key := svc.WithInstance(instance)
	podEnd, fabEnd := softswitch.NewMemPair()
	p := &fabricPort{key: key, end: fabEnd}
	f.mu.Lock()
	f.instances[key] = p
	f.services[svc] = append(f.services[svc], p)
	f.mu.Unlock()
	f.wg.Add(1)
	go f.readPort(p)
	return podEnd, key
}

// kill cuts an instance off: frames to and from it are dropped and service
// keys no longer choose it.
func (f *testFabric) kill(key wire.Key) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if p := f.instances[key]; p != nil {
		p.killed = true
	}
}

func (f *testFabric) setRoundRobin(on bool) {
	f.mu.Lock()
	f.roundRobin = on
	f.mu.Unlock()
}

func (f *testFabric) startRecording() {
	f.mu.Lock()
	f.record, f.frames = true, nil
	f.mu.Unlock()
}

func (f *testFabric) seen() []seenFrame {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]seenFrame(nil), f.frames...)
}

func (f *testFabric) setControlHandler(h func(from wire.Key, fr wire.Frame)) {
	f.mu.Lock()
	f.control = h
	f.mu.Unlock()
}

// inject writes raw bytes to the pod behind key, as if the fabric sent them.
func (f *testFabric) inject(key wire.Key, frame []byte) error {
	f.mu.Lock()
	p := f.instances[key]
	f.mu.Unlock()
	if p == nil {
		return errors.New("no such instance")
	}
	return p.end.Send(frame)
}

func (f *testFabric) close() {
	select {
	case <-f.done:
		return
	default:
	}
	close(f.done)
	f.mu.Lock()
	for _, p := range f.instances {
		p.end.Close()
	}
	f.mu.Unlock()
	f.wg.Wait()
}

func (f *testFabric) readPort(p *fabricPort) {
	defer f.wg.Done()
	ms := make([]softswitch.Message, 32)
	for i := range ms {
		ms[i].Buf = make([]byte, maxFrameLen)
	}
	for {
		n, err := p.end.ReadBatch(ms)
		for i := 0; i < n; i++ {
			f.forward(p, ms[i].Buf[:ms[i].N])
		}
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				f.t.Errorf("fabric read: %v", err)
			}
			return
		}
	}
}

// dstOffset is where dst_key starts in a frame.
const dstOffset = wire.EthernetHeaderLen + 12

func (f *testFabric) forward(from *fabricPort, b []byte) {
	var fr wire.Frame
	if wire.ParseFrame(b, &fr) != wire.DropNone {
		f.countDrop()
		return
	}
	if fr.Hdr.Type == wire.TypeControl {
		f.mu.Lock()
		h := f.control
		f.mu.Unlock()
		if h != nil {
			fr.Payload = append([]byte(nil), fr.Payload...)
			h(from.key, fr)
		}
		return
	}
	if fr.Hdr.Type != wire.TypeData || fr.Hdr.Src != from.key {
		f.countDrop()
		return
	}
	f.mu.Lock()
	if from.killed {
		f.dropped++
		f.mu.Unlock()
		return
	}
	var to *fabricPort
	dst := fr.Hdr.Dst
	if dst.Instance() != 0 {
		to = f.instances[dst]
	} else {
		var live []*fabricPort
		for _, p := range f.services[dst] {
			if !p.killed {
				live = append(live, p)
			}
		}
		if len(live) > 0 {
			if f.roundRobin {
				to = live[f.rr%len(live)]
				f.rr++
			} else {
				h := fnv.New32a()
				var x [20]byte
				binary.BigEndian.PutUint32(x[:4], fr.Hdr.FlowLabel)
				copy(x[4:], fr.Hdr.Src[:])
				h.Write(x[:])
				to = live[h.Sum32()%uint32(len(live))]
			}
		}
	}
	if to == nil || to.killed {
		f.dropped++
		f.mu.Unlock()
		return
	}
	if f.record {
		f.frames = append(f.frames, seenFrame{From: from.key, To: to.key, Dst: dst, Flow: fr.Hdr.FlowLabel, PayloadLn: len(fr.Payload)})
	}
	f.mu.Unlock()
	out := append([]byte(nil), b...)
	// The egress SG writes the chosen instance into the key.
	copy(out[dstOffset+12:dstOffset+16], to.key[12:16])
	if f.delay > 0 {
		select {
		case f.delayed <- delayedFrame{at: time.Now().Add(f.delay), to: to.end, frame: out}:
		default:
			f.countDrop()
		}
		return
	}
	_ = to.end.Send(out) // a full queue drops, as a link would
}

func (f *testFabric) countDrop() {
	f.mu.Lock()
	f.dropped++
	f.mu.Unlock()
}

// delayLine delivers delayed frames in order; the delay is the same for
// all, so first in is first due.
func (f *testFabric) delayLine() {
	defer f.wg.Done()
	for {
		select {
		case <-f.done:
			return
		case d := <-f.delayed:
			if w := time.Until(d.at); w > 0 {
				select {
				case <-f.done:
					return
				case <-time.After(w):
				}
			}
			_ = d.to.Send(d.frame)
		}
	}
}
