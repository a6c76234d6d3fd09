package grpcbench

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"

	"github.com/dmsc-mesh/dmsc/controller"
	"github.com/dmsc-mesh/dmsc/pod"
	"github.com/dmsc-mesh/dmsc/softswitch"
	"github.com/dmsc-mesh/dmsc/topo"
	"github.com/dmsc-mesh/dmsc/wire"
)

// Topology is the benchmark's fabric: sg1 – sr1 – sr2 – sg2, so that a call
// from a pod on sg1 to one on sg2 crosses SG, SR, SR, SG. The links have no
// delay and no rate limit (loopback has neither); each SG has podPorts pod
// ports, numbered from 10.
func Topology(podPorts int) (*topo.Topology, error) {
	ports := make([]string, podPorts)
	for i := range ports {
		ports[i] = fmt.Sprint(10 + i)
	}
	pp := "[" + strings.Join(ports, ", ") + "]"
	return topo.Parse([]byte(`name: grpc-bench
nodes:
  sg1: {role: sg, pod_ports: ` + pp + `}
  sr1: {role: sr}
  sr2: {role: sr}
  sg2: {role: sg, pod_ports: ` + pp + `}
links:
  - endpoints: ["sg1:1", "sr1:1"]
  - endpoints: ["sr1:2", "sr2:1"]
  - endpoints: ["sr2:2", "sg2:1"]
`))
}

// Timers are the agents' timers: the defaults with the HELLO and dead
// intervals of the end-to-end tests, loose enough that two cores saturated
// by callers do not take adjacencies down mid-run.
func Timers() controller.Timers {
	t := controller.DefaultTimers()
	t.Hello = 30 * time.Millisecond
	t.Dead = 300 * time.Millisecond
	return t
}

// FabricOptions tune StartFabric.
type FabricOptions struct {
	// PodPorts is each SG's number of pod ports.
	PodPorts int
	// UDPPods attaches every pod to its SG over a UDP tunnel on loopback
	// (the SG's port a softswitch.UDPPort, the pod's another) instead of an
	// in-memory link, so that each frame between a pod and its SG crosses
	// the kernel as it does over a pod's veth or NIC. The links between
	// switches stay in memory.
	UDPPods bool
	Logger  *slog.Logger
}

// Fabric is a running in-process DMSC domain on Topology, with its agents
// converged.
type Fabric struct {
	Lab     *topo.Lab
	udpPods bool
	log     *slog.Logger

	mu   sync.Mutex
	next map[string]int  // node → index of its next free pod port
	pods []*pod.Endpoint // every pod started here
	eps  []*pod.Endpoint // those attached over UDP, which the lab does not know
}

// StartFabric starts the lab (probing off, so that no probe traffic shares
// the links with the calls) and waits until every agent routes to every
// node.
func StartFabric(ctx context.Context, opts FabricOptions) (*Fabric, error) {
	t, err := Topology(opts.PodPorts)
	if err != nil {
		return nil, err
	}
	l, err := topo.StartLab(ctx, t, topo.LabOptions{
		Logger: opts.Logger,
		Agents: topo.AgentOptions{Timers: Timers()},
		Probe:  controller.ProbeConfig{Interval: -1},
	})
	if err != nil {
		return nil, fmt.Errorf("grpcbench: lab: %w", err)
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	f := &Fabric{Lab: l, udpPods: opts.UDPPods, log: opts.Logger, next: map[string]int{}}
	if err := f.waitConverged(ctx, 20*time.Second); err != nil {
		l.Close()
		return nil, err
	}
	return f, nil
}

// Close stops the pods, the fabric and the domain.
func (f *Fabric) Close() error {
	f.mu.Lock()
	eps := f.eps
	f.eps = nil
	f.mu.Unlock()
	var errs []error
	for _, ep := range eps {
		if err := ep.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			errs = append(errs, err)
		}
	}
	return errors.Join(append(errs, f.Lab.Close())...)
}

// StartPod attaches a pod for prefix to node's next free pod port and
// registers it.
func (f *Fabric) StartPod(ctx context.Context, node, prefix string) (*pod.Endpoint, error) {
	s, ok := f.Lab.Fabric.Switches[node]
	if !ok {
		return nil, fmt.Errorf("grpcbench: no node %q", node)
	}
	f.mu.Lock()
	i := f.next[node]
	f.next[node]++
	f.mu.Unlock()
	if i >= len(s.Node.PodPorts) {
		return nil, fmt.Errorf("grpcbench: %s has no free pod port (%d in all)", node, len(s.Node.PodPorts))
	}
	port := s.Node.PodPorts[i]
	if !f.udpPods {
		p, err := f.Lab.StartPod(ctx, node, prefix, topo.PodOptions{Port: port})
		if err != nil {
			return nil, err
		}
		f.mu.Lock()
		f.pods = append(f.pods, p.Endpoint)
		f.mu.Unlock()
		return p.Endpoint, nil
	}
	is, err := f.Lab.Domain.IssuePod(prefix)
	if err != nil {
		return nil, err
	}
	sgAddr, podAddr, err := udpPair()
	if err != nil {
		return nil, err
	}
	sgEnd, err := softswitch.NewUDPPort(sgAddr, podAddr)
	if err != nil {
		return nil, err
	}
	if err := s.SW.AddPort(port, sgEnd); err != nil {
		sgEnd.Close()
		return nil, fmt.Errorf("grpcbench: %s:%d: %w", node, port, err)
	}
	podEnd, err := softswitch.NewUDPPort(podAddr, sgAddr)
	if err != nil {
		return nil, err
	}
	ep, err := pod.NewEndpoint(pod.Config{Port: podEnd, CA: f.Lab.Domain.CA.Cert, Certificate: is.TLSCertificate(),
		Logger: f.log.With("pod", prefix, "sg", node, "port", port, "link", "udp")})
	if err != nil {
		podEnd.Close()
		return nil, err
	}
	if _, err := ep.Announce(ctx, pod.AnnounceConfig{}); err != nil {
		ep.Close()
		return nil, fmt.Errorf("grpcbench: pod %s at %s:%d over UDP: %w", prefix, node, port, err)
	}
	f.mu.Lock()
	f.eps = append(f.eps, ep)
	f.pods = append(f.pods, ep)
	f.mu.Unlock()
	return ep, nil
}

// Dropped counts the frames lost so far anywhere on the fabric: dropped by
// a switch's pipeline (every wire.DropReason), refused by a full link, or
// dropped by a pod (malformed, no listener, its receive queue full, ...).
// QUIC recovers each loss by retransmission, which a call's latency shows.
func (f *Fabric) Dropped() uint64 {
	var n uint64
	for _, s := range f.Lab.Fabric.Switches {
		for r := wire.DropReason(1); r < wire.NumDropReasons; r++ {
			pk, _ := s.SW.DropCount(r)
			n += pk
		}
		for _, port := range s.SW.Ports() {
			if ps, err := s.SW.PortStats(port); err == nil {
				n += ps.TxErrors
			}
		}
	}
	f.mu.Lock()
	pods := f.pods
	f.mu.Unlock()
	for _, ep := range pods {
		n += ep.Stats().Dropped()
	}
	return n
}

// udpPair returns two loopback UDP addresses free a moment ago.
func udpPair() (a, b string, err error) {
	var addrs [2]string
	for i := range addrs {
		c, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			return "", "", err
		}
		addrs[i] = c.LocalAddr().String()
		defer c.Close()
	}
	return addrs[0], addrs[1], nil
}

func (f *Fabric) waitConverged(ctx context.Context, timeout time.Duration) error {
	nodes := f.Lab.Fabric.Topo.NodeNames()
	return poll(ctx, timeout, func() error {
		for _, n := range nodes {
			a, ok := f.Lab.Fabric.Agent(n)
			if !ok {
				return fmt.Errorf("no agent on %s", n)
			}
			s, err := a.Snapshot(ctx)
			if err != nil {
				return err
			}
			if len(s.Routes) < len(nodes) || !s.Converged() {
				return fmt.Errorf("%s: %d routes, converged %v", n, len(s.Routes), s.Converged())
			}
		}
		return nil
	})
}

// poll calls cond until it succeeds, ctx ends or timeout passes; the error
// is cond's last.
func poll(ctx context.Context, timeout time.Duration, cond func() error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		err := cond()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("grpcbench: after %v: %w", timeout, err)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// ServeEcho starts an Echo pod for prefix on node and returns it and the
// function that stops its gRPC server (the pod itself closes with the
// fabric).
func (f *Fabric) ServeEcho(ctx context.Context, node, prefix string) (*pod.Endpoint, func() error, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	ep, err := f.StartPod(ctx, node, prefix)
	if err != nil {
		return nil, nil, err
	}
	lis, err := pod.ListenGRPC(ep)
	if err != nil {
		return nil, nil, err
	}
	return ep, serve(echoServer(), lis), nil
}

// Client starts a pod on node that only calls.
func (f *Fabric) Client(ctx context.Context, node, prefix string) (*pod.Endpoint, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	return f.StartPod(ctx, node, prefix)
}

// Dial dials name from ep, retrying while the fabric learns a prefix just
// registered (its route reaches the other FIBs within milliseconds).
func Dial(ctx context.Context, ep *pod.Endpoint, name string) (*grpc.ClientConn, error) {
	var cc *grpc.ClientConn
	err := poll(ctx, 10*time.Second, func() error {
		dctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		defer cancel()
		var err error
		cc, err = pod.DialGRPC(dctx, ep, name)
		return err
	})
	return cc, err
}

// StartDMSC starts the dmsc path (dmsc-udp with udpPods): an Echo pod
// serving /echo on sg2, a client pod on sg1 and the client's ClientConn to
// /echo.
func StartDMSC(ctx context.Context, udpPods bool, log *slog.Logger) (*Path, error) {
	f, err := StartFabric(ctx, FabricOptions{PodPorts: 4, UDPPods: udpPods, Logger: log})
	if err != nil {
		return nil, err
	}
	name := DMSC
	if udpPods {
		name = DMSCUDP
	}
	p := &Path{Name: name, Fabric: f}
	p.onClose(f.Close)
	fail := func(err error) (*Path, error) {
		return nil, errors.Join(fmt.Errorf("grpcbench: dmsc: %w", err), p.Close())
	}
	_, stop, err := f.ServeEcho(ctx, "sg2", "/echo")
	if err != nil {
		return fail(err)
	}
	p.onClose(stop)
	ep, err := f.Client(ctx, "sg1", "/bench/client")
	if err != nil {
		return fail(err)
	}
	cc, err := Dial(ctx, ep, "/echo")
	if err != nil {
		return fail(err)
	}
	if err := adopt(ctx, p, cc, "/echo"); err != nil {
		return fail(err)
	}
	return p, nil
}
