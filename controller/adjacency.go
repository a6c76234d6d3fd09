package controller

import (
	"slices"
	"time"

	"github.com/dmsc-mesh/dmsc/spf"
)

// AdjState is the state of the adjacency on one fabric port.
type AdjState uint8

// Adjacency states: Down (nothing heard within the dead interval), Init (a
// neighbour is heard but does not list us yet), Up (two-way: each side lists
// the other, so the link carries traffic both ways).
const (
	AdjDown AdjState = iota
	AdjInit
	AdjUp
)

func (s AdjState) String() string {
	switch s {
	case AdjInit:
		return "init"
	case AdjUp:
		return "up"
	}
	return "down"
}

// HelloInfo is what a HELLO says: who sends it, on which of its ports, and
// whom the sender hears on that port (empty if nobody yet).
type HelloInfo struct {
	Router       spf.NodeID
	Port         uint32
	HeardRouter  spf.NodeID
	HeardPort    uint32
	HoldTime     time.Duration // how long the receiver may trust it; 0: the receiver's dead interval
	NeighborDMAC uint64        // the sender's MAC on that port, for the receiver's set_nexthop
}

// Adjacency is one fabric port's neighbour.
type Adjacency struct {
	Port         uint16
	State        AdjState
	Neighbor     spf.NodeID
	NeighborPort uint32
	NeighborDMAC uint64
	// NoCarrier: the switch reported the port's link down; HELLOs that
	// were still in flight are ignored until it reports it up again.
	NoCarrier bool
	lastHeard time.Duration
	hold      time.Duration
}

// AdjacencyChange reports a port whose adjacency changed state.
type AdjacencyChange struct {
	Port     uint16
	From, To AdjState
	Neighbor spf.NodeID
}

// Adjacencies tracks the neighbours of one node on its fabric ports. It is
// pure: the agent feeds it received HELLOs and the time, and sends the
// HELLOs it asks for.
type Adjacencies struct {
	self  spf.NodeID
	dead  time.Duration
	ports map[uint16]*Adjacency
}

// NewAdjacencies tracks self's adjacencies; a neighbour not heard for dead
// is declared down (unless its HELLO carried its own hold time).
func NewAdjacencies(self spf.NodeID, dead time.Duration) *Adjacencies {
	return &Adjacencies{self: self, dead: dead, ports: map[uint16]*Adjacency{}}
}

// AddPort starts tracking a fabric port (Down until a HELLO arrives).
func (a *Adjacencies) AddPort(port uint16) {
	if _, ok := a.ports[port]; !ok {
		a.ports[port] = &Adjacency{Port: port}
	}
}

// RemovePort stops tracking a port; an Up adjacency on it goes down.
func (a *Adjacencies) RemovePort(port uint16) []AdjacencyChange {
	adj, ok := a.ports[port]
	if !ok {
		return nil
	}
	delete(a.ports, port)
	if adj.State == AdjDown {
		return nil
	}
	return []AdjacencyChange{{Port: port, From: adj.State, To: AdjDown, Neighbor: adj.Neighbor}}
}

// Hello is what to send on port now.
func (a *Adjacencies) Hello(port uint16) HelloInfo {
	h := HelloInfo{Router: a.self, Port: uint32(port), HoldTime: a.dead}
	if adj, ok := a.ports[port]; ok && adj.State != AdjDown {
		h.HeardRouter, h.HeardPort = adj.Neighbor, adj.NeighborPort
	}
	return h
}

// Receive handles a HELLO that arrived on port at now. A HELLO from
// ourselves (a looped cable) or on an untracked port is ignored.
func (a *Adjacencies) Receive(port uint16, h HelloInfo, now time.Duration) []AdjacencyChange {
	adj, ok := a.ports[port]
	if !ok || adj.NoCarrier || h.Router == a.self || h.Router == "" {
		return nil
	}
	from := adj.State
	var changes []AdjacencyChange
	if adj.State != AdjDown && (adj.Neighbor != h.Router || adj.NeighborPort != h.Port) {
		// Another node (or another of its ports) is now on this link: the old
		// adjacency is gone before the new one starts.
		changes = append(changes, AdjacencyChange{Port: port, From: adj.State, To: AdjDown, Neighbor: adj.Neighbor})
		from = AdjDown
	}
	adj.Neighbor, adj.NeighborPort, adj.NeighborDMAC = h.Router, h.Port, h.NeighborDMAC
	adj.lastHeard = now
	adj.hold = h.HoldTime
	to := AdjInit
	if h.HeardRouter == a.self && h.HeardPort == uint32(port) {
		to = AdjUp
	}
	adj.State = to
	if from != to {
		changes = append(changes, AdjacencyChange{Port: port, From: from, To: to, Neighbor: h.Router})
	}
	return changes
}

// SetCarrier records what the switch says of port's link. Losing the
// carrier takes the adjacency down at once, as a router takes an interface
// down, instead of after the dead interval; regaining it changes nothing
// until the neighbour's HELLOs arrive.
func (a *Adjacencies) SetCarrier(port uint16, up bool) []AdjacencyChange {
	adj, ok := a.ports[port]
	if !ok {
		return nil
	}
	if up {
		adj.NoCarrier = false
		return nil
	}
	from, nbr := adj.State, adj.Neighbor
	*adj = Adjacency{Port: port, NoCarrier: true}
	if from == AdjDown {
		return nil
	}
	return []AdjacencyChange{{Port: port, From: from, To: AdjDown, Neighbor: nbr}}
}

// Expire declares down every adjacency not heard within its hold time.
func (a *Adjacencies) Expire(now time.Duration) []AdjacencyChange {
	var changes []AdjacencyChange
	for _, port := range a.sortedPorts() {
		adj := a.ports[port]
		if adj.State == AdjDown || now-adj.lastHeard < a.holdOf(adj) {
			continue
		}
		changes = append(changes, AdjacencyChange{Port: port, From: adj.State, To: AdjDown, Neighbor: adj.Neighbor})
		*adj = Adjacency{Port: port, NoCarrier: adj.NoCarrier}
	}
	return changes
}

// NextExpiry is when the next adjacency would expire, if any is not Down.
func (a *Adjacencies) NextExpiry() (time.Duration, bool) {
	var next time.Duration
	found := false
	for _, adj := range a.ports {
		if adj.State == AdjDown {
			continue
		}
		at := adj.lastHeard + a.holdOf(adj)
		if !found || at < next {
			next, found = at, true
		}
	}
	return next, found
}

func (a *Adjacencies) holdOf(adj *Adjacency) time.Duration {
	if adj.hold > 0 {
		return adj.hold
	}
	return a.dead
}

// Get returns the adjacency on port.
func (a *Adjacencies) Get(port uint16) (Adjacency, bool) {
	adj, ok := a.ports[port]
	if !ok {
		return Adjacency{}, false
	}
	return *adj, true
}

// Up lists the two-way adjacencies as the LSP carries them (LinkID = our
// port), in port order.
func (a *Adjacencies) Up(metric func(port uint16) uint32) []spf.Adjacency {
	var out []spf.Adjacency
	for _, port := range a.sortedPorts() {
		adj := a.ports[port]
		if adj.State == AdjUp {
			out = append(out, spf.Adjacency{Neighbor: adj.Neighbor, Metric: metric(port), LinkID: uint32(port)})
		}
	}
	return out
}

func (a *Adjacencies) sortedPorts() []uint16 {
	ports := make([]uint16, 0, len(a.ports))
	for p := range a.ports {
		ports = append(ports, p)
	}
	slices.Sort(ports)
	return ports
}
