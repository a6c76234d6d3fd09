package harness

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/dmsc-mesh/dmsc/controller/lsmsg"
	"github.com/dmsc-mesh/dmsc/softswitch"
	"github.com/dmsc-mesh/dmsc/spf"
	"github.com/dmsc-mesh/dmsc/wire"
)

// Neighbor plays a fabric neighbour of one agent on a port of its switch
// (an in-memory link): it keeps a two-way adjacency up with HELLOs,
// answers database summaries with an empty one, and floods the agent LSPs
// it is given until each is acknowledged. It stands for a whole emulated
// network behind that port, as many origins as the LSPs name.
type Neighbor struct {
	id       spf.NodeID
	port     uint32
	peer     spf.NodeID
	peerPort uint32
	link     *softswitch.MemPort
	hello    time.Duration

	mu    sync.Mutex
	heard bool
	acked map[spf.FragmentID]uint32 // highest Seq acknowledged
	wake  chan struct{}             // an ACK arrived

	stop chan struct{}
	done chan struct{}
}

// NewNeighbor starts the neighbour id on link, facing the agent peer's port
// peerPort, sending a HELLO every hello. Close stops it.
func NewNeighbor(link *softswitch.MemPort, id spf.NodeID, peer spf.NodeID, peerPort uint32, hello time.Duration) *Neighbor {
	n := &Neighbor{id: id, port: 1, peer: peer, peerPort: peerPort, link: link, hello: hello,
		acked: map[spf.FragmentID]uint32{}, wake: make(chan struct{}, 1),
		stop: make(chan struct{}), done: make(chan struct{})}
	go n.run()
	return n
}

// Close stops the neighbour and waits for it.
func (n *Neighbor) Close() {
	close(n.stop)
	<-n.done
}

func (n *Neighbor) send(msgType uint8, body []byte) error {
	env, err := wire.AppendControl(nil, wire.SignalLinkState, msgType, body)
	if err != nil {
		return err
	}
	frame := wire.AppendFrame(nil, wire.Ethernet{Dst: [6]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, Src: [6]byte{2, 0xee, 0, 0, 0, 1}},
		wire.Header{Type: wire.TypeControl, HopLimit: 1, NextProto: wire.ProtoControl}, nil, env)
	return n.link.Send(frame)
}

func (n *Neighbor) sendHello() {
	n.mu.Lock()
	heard := n.heard
	n.mu.Unlock()
	// A long hold time: the agent keeps the adjacency through a stall of
	// this goroutine on a loaded machine.
	h := lsmsg.Hello{Router: n.id, Port: n.port, HoldTime: max(4*n.hello, time.Second), MAC: [6]byte{2, 0xee, 0, 0, 0, 1}}
	if heard {
		h.HeardRouter, h.HeardPort = n.peer, n.peerPort
	}
	if body, err := lsmsg.AppendHello(nil, h); err == nil {
		n.send(wire.LSHello, body)
	}
}

func (n *Neighbor) run() {
	defer close(n.done)
	next := time.Now()
	for {
		select {
		case <-n.stop:
			return
		default:
		}
		if !time.Now().Before(next) {
			n.sendHello()
			next = time.Now().Add(n.hello)
		}
		b, err := n.link.Recv(min(time.Until(next), n.hello))
		if err != nil {
			continue
		}
		var f wire.Frame
		if wire.ParseFrame(b, &f) != wire.DropNone {
			continue
		}
		c, err := wire.DecodeControl(f.Payload)
		if err != nil || c.Signal != wire.SignalLinkState {
			continue
		}
		switch c.MsgType {
		case wire.LSHello:
			if h, err := lsmsg.DecodeHello(c.Body); err == nil && h.Router == n.peer {
				n.mu.Lock()
				first := !n.heard
				n.heard = true
				n.mu.Unlock()
				if first {
					n.sendHello() // two-way at once
				}
			}
		case wire.LSAck:
			a, err := lsmsg.DecodeAck(c.Body)
			if err != nil {
				continue
			}
			n.mu.Lock()
			for _, e := range a.Entries {
				if e.Seq > n.acked[e.ID()] {
					n.acked[e.ID()] = e.Seq
				}
			}
			n.mu.Unlock()
			select {
			case n.wake <- struct{}{}:
			default:
			}
		case wire.LSDBSummary:
			// An empty database: the agent floods us what it has, and takes
			// what we flood.
			if body, err := lsmsg.AppendDBSummary(nil, lsmsg.DBSummary{First: true, Last: true}); err == nil {
				n.send(wire.LSDBSummary, body)
			}
		}
	}
}

// Flood sends every LSP (sealed by its origin) to the agent, at most window
// unacknowledged at a time, resending those not acknowledged within
// retransmit, until all are acknowledged. It returns how many LSP frames it
// sent in all.
func (n *Neighbor) Flood(ctx context.Context, lsps []spf.LSP, window int, retransmit time.Duration) (int, error) {
	bodies := make([][]byte, len(lsps))
	for i := range lsps {
		b, err := lsmsg.AppendLSP(nil, &lsps[i])
		if err != nil {
			return 0, fmt.Errorf("harness: LSP %v: %w", lsps[i].ID(), err)
		}
		bodies[i] = b
	}
	sentAt := make([]time.Time, len(lsps))
	sent := 0
	for {
		n.mu.Lock()
		outstanding, remaining := 0, 0
		now := time.Now()
		var due []int
		for i, l := range lsps {
			if n.acked[l.ID()] >= l.Seq {
				continue
			}
			remaining++
			switch {
			case sentAt[i].IsZero():
				due = append(due, i)
			case now.Sub(sentAt[i]) > retransmit:
				due = append(due, i)
				outstanding++
			default:
				outstanding++
			}
		}
		n.mu.Unlock()
		if remaining == 0 {
			return sent, nil
		}
		for _, i := range due {
			first := sentAt[i].IsZero()
			if first && outstanding >= window {
				continue // retransmissions still go
			}
			if n.send(wire.LSLSP, bodies[i]) != nil {
				break // the link's queue is full: wait for the switch
			}
			if first {
				outstanding++
			}
			sentAt[i] = now
			sent++
		}
		select {
		case <-ctx.Done():
			return sent, ctx.Err()
		case <-n.wake:
		case <-time.After(5 * time.Millisecond):
		}
	}
}
