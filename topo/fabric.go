package topo

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"

	"google.golang.org/grpc"

	"github.com/dmsc-mesh/dmsc/p4rt/server"
	"github.com/dmsc-mesh/dmsc/softswitch"
)

// Options tune a Fabric.
type Options struct {
	Logger *slog.Logger
	// DeviceID is every switch's P4Runtime device id (default 1).
	DeviceID uint64
}

// Fabric is a topology running in this process: a software switch per node,
// each behind its own P4Runtime server on 127.0.0.1, linked by in-memory
// ports with the links' delay and capacity.
type Fabric struct {
	Topo     *Topology
	Switches map[string]*Switch

	cancel   context.CancelFunc
	wg       sync.WaitGroup
	once     sync.Once
	deviceID uint64
	agents   *agentSet
}

// Switch is one node of a running fabric.
type Switch struct {
	Node *Node
	SW   *softswitch.Switch
	// Addr is the P4Runtime server's address.
	Addr string
	srv  *server.Server
	gs   *grpc.Server
}

// Start runs the topology until Close (or ctx ends).
func Start(ctx context.Context, t *Topology, opts Options) (*Fabric, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.DeviceID == 0 {
		opts.DeviceID = 1
	}
	ctx, cancel := context.WithCancel(ctx)
	f := &Fabric{Topo: t, Switches: map[string]*Switch{}, cancel: cancel, deviceID: opts.DeviceID}
	fail := func(err error) (*Fabric, error) {
		f.Close()
		return nil, err
	}
	for _, name := range t.NodeNames() {
		log := opts.Logger.With("node", name)
		sw := softswitch.New(softswitch.Config{Logger: log.With("component", "softswitch")})
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return fail(fmt.Errorf("topo: %s: %w", name, err))
		}
		srv := server.New(sw, server.Options{DeviceID: opts.DeviceID, Logger: log.With("component", "p4rt")})
		gs := grpc.NewServer()
		srv.Register(gs)
		s := &Switch{Node: t.Nodes[name], SW: sw, Addr: lis.Addr().String(), srv: srv, gs: gs}
		f.Switches[name] = s
		f.wg.Add(2)
		go func() { defer f.wg.Done(); gs.Serve(lis) }()
		go func() { defer f.wg.Done(); sw.Run(ctx) }()
	}
	for i, l := range t.Links {
		a, b := softswitch.NewMemPair()
		im := softswitch.Impairment{Delay: l.Delay, Rate: l.Capacity}
		for _, end := range []struct {
			ep   Endpoint
			port *softswitch.MemPort
		}{{l.A, a}, {l.B, b}} {
			sw := f.Switches[end.ep.Node].SW
			if err := sw.AddPort(end.ep.Port, end.port); err != nil {
				return fail(fmt.Errorf("topo: links[%d] %s: %w", i, end.ep, err))
			}
			if !im.IsZero() {
				if err := sw.SetImpairment(end.ep.Port, im); err != nil {
					return fail(fmt.Errorf("topo: links[%d] %s: %w", i, end.ep, err))
				}
			}
		}
	}
	return f, nil
}

// Close stops every switch and server and waits for them.
func (f *Fabric) Close() error {
	var errs []error
	f.once.Do(func() {
		if err := f.StopAgents(); err != nil {
			errs = append(errs, err)
		}
		for _, s := range f.Switches {
			s.srv.Close()
			s.gs.Stop()
		}
		f.cancel()
		f.wg.Wait()
		for _, s := range f.Switches {
			if err := s.SW.Close(); err != nil {
				errs = append(errs, err)
			}
		}
	})
	return errors.Join(errs...)
}

// Link finds the link between two nodes (the first, if there are several).
func (f *Fabric) Link(a, b string) (*Link, bool) {
	for _, l := range f.Topo.Links {
		if (l.A.Node == a && l.B.Node == b) || (l.A.Node == b && l.B.Node == a) {
			return l, true
		}
	}
	return nil, false
}

// Cut takes a link down at both ends, as a pulled cable would: the
// switches report the carrier loss to their agents.
func (f *Fabric) Cut(l *Link) error { return f.setLink(l, false) }

// Restore brings a cut link back up.
func (f *Fabric) Restore(l *Link) error { return f.setLink(l, true) }

// Silence makes a link lose every frame at both ends while its ports stay
// up: a failure no carrier shows (a hung line card, a broken middlebox),
// which only the HELLO dead interval detects. Unsilence ends it.
func (f *Fabric) Silence(l *Link) error {
	return f.impairLink(l, softswitch.Impairment{Loss: 1})
}

// Unsilence ends Silence (and any other impairment of the link's ports).
func (f *Fabric) Unsilence(l *Link) error { return f.impairLink(l, softswitch.Impairment{}) }

func (f *Fabric) impairLink(l *Link, im softswitch.Impairment) error {
	for _, ep := range []Endpoint{l.A, l.B} {
		s, ok := f.Switches[ep.Node]
		if !ok {
			return fmt.Errorf("topo: no node %q", ep.Node)
		}
		if err := s.SW.SetImpairment(ep.Port, im); err != nil {
			return fmt.Errorf("topo: %s: %w", ep, err)
		}
	}
	return nil
}

func (f *Fabric) setLink(l *Link, up bool) error {
	for _, ep := range []Endpoint{l.A, l.B} {
		s, ok := f.Switches[ep.Node]
		if !ok {
			return fmt.Errorf("topo: no node %q", ep.Node)
		}
		if err := s.SW.SetPortUp(ep.Port, up); err != nil {
			return fmt.Errorf("topo: %s: %w", ep, err)
		}
	}
	return nil
}

// AttachPod adds an in-memory port to a node for a pod and returns the
// pod's end of it.
func (f *Fabric) AttachPod(node string, port uint16) (*softswitch.MemPort, error) {
	s, ok := f.Switches[node]
	if !ok {
		return nil, fmt.Errorf("topo: no node %q", node)
	}
	a, b := softswitch.NewMemPair()
	if err := s.SW.AddPort(port, a); err != nil {
		return nil, fmt.Errorf("topo: %s:%d: %w", node, port, err)
	}
	return b, nil
}
