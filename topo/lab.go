package topo

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"time"

	"github.com/dmsc-mesh/dmsc/ca"
	"github.com/dmsc-mesh/dmsc/controller"
	"github.com/dmsc-mesh/dmsc/pod"
)

// Lab is a whole DMSC domain in this process: a CA and SPA (Domain), a
// fabric of software switches with an agent each (Fabric), and the pods
// started on it. Tests, the demo and benchmarks use it.
type Lab struct {
	Fabric *Fabric
	Domain *Domain

	log      *slog.Logger
	dir      string
	ownDir   bool
	mu       sync.Mutex
	pods     []*pod.Endpoint
	nextPort map[string]uint16
}

// LabOptions tune StartLab.
type LabOptions struct {
	Logger *slog.Logger
	// Dir holds the domain's CA and SPA store; empty: a temporary directory
	// removed by Close.
	Dir string
	// Domain is the identity domain (default "dmsc.example").
	Domain string
	// Agents tune the agents; their SG configurations come from the domain.
	Agents AgentOptions
	// GNMI gives every agent a gNMI target on 127.0.0.1 (with TLS from its
	// node certificate unless Insecure), publishing every Interval.
	GNMI         bool
	GNMIInsecure bool
	GNMIInterval time.Duration
	// Probe is every SG's probing.
	Probe controller.ProbeConfig
	// SPALease is SPA's lease (default 30 s).
	SPALease time.Duration
}

// StartLab starts a domain and the topology with an agent per node.
func StartLab(ctx context.Context, t *Topology, opts LabOptions) (*Lab, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Domain == "" {
		opts.Domain = "dmsc.example"
	}
	l := &Lab{log: opts.Logger, dir: opts.Dir, nextPort: map[string]uint16{}}
	if l.dir == "" {
		d, err := os.MkdirTemp("", "dmsc-lab-")
		if err != nil {
			return nil, err
		}
		l.dir, l.ownDir = d, true
	}
	roles := map[string]Role{}
	for n, node := range t.Nodes {
		roles[n] = node.Role
	}
	d, err := StartDomain(ctx, l.dir, opts.Domain, roles, DomainOptions{Logger: opts.Logger, Lease: opts.SPALease})
	if err != nil {
		l.removeDir()
		return nil, err
	}
	l.Domain = d
	f, err := Start(ctx, t, Options{Logger: opts.Logger})
	if err != nil {
		l.Close()
		return nil, err
	}
	l.Fabric = f
	ao := opts.Agents
	ao.Logger = opts.Logger
	ao.SG = d.SGs
	user := ao.Configure
	ao.Configure = func(node string, cfg *controller.Config) {
		if opts.GNMI {
			g := &controller.GNMIConfig{Listen: "127.0.0.1:0", Interval: opts.GNMIInterval, Domain: d.Name}
			if !opts.GNMIInsecure {
				if is, ok := d.Node(node); ok {
					g.TLS = ca.ServerTLS(d.CA.Cert, is.TLSCertificate())
				}
			}
			cfg.GNMI = g
		}
		cfg.Probe = opts.Probe
		if user != nil {
			user(node, cfg)
		}
	}
	if err := f.StartAgents(ctx, ao); err != nil {
		l.Close()
		return nil, err
	}
	return l, nil
}

// PodOptions tune StartPod.
type PodOptions struct {
	// Port is the SG port (default: the node's next unused pod port).
	Port uint16
	// Endpoint is the pod's endpoint configuration (Port, CA and
	// Certificate are filled in).
	Endpoint pod.Config
	// Announce is its announcement's configuration.
	Announce pod.AnnounceConfig
}

// Pod is a pod StartPod started.
type Pod struct {
	Endpoint     *pod.Endpoint
	Registration *pod.Registration
	Node         string
	Port         uint16
}

// StartPod attaches a pod to node with a certificate for prefix and
// registers it. Close closes the pods StartPod made.
func (l *Lab) StartPod(ctx context.Context, node, prefix string, opts PodOptions) (*Pod, error) {
	s, ok := l.Fabric.Switches[node]
	if !ok {
		return nil, fmt.Errorf("topo: no node %q", node)
	}
	port := opts.Port
	if port == 0 {
		l.mu.Lock()
		for _, p := range s.Node.PodPorts {
			if p > l.nextPort[node] {
				port = p
				l.nextPort[node] = p
				break
			}
		}
		l.mu.Unlock()
		if port == 0 {
			return nil, fmt.Errorf("topo: %s has no free pod port (pod_ports %v)", node, s.Node.PodPorts)
		}
	}
	is, err := l.Domain.IssuePod(prefix)
	if err != nil {
		return nil, err
	}
	link, err := l.Fabric.AttachPod(node, port)
	if err != nil {
		return nil, err
	}
	cfg := opts.Endpoint
	cfg.Port = link
	cfg.CA = l.Domain.CA.Cert
	cfg.Certificate = is.TLSCertificate()
	if cfg.Logger == nil {
		cfg.Logger = l.log.With("pod", prefix, "sg", node, "port", port)
	}
	ep, err := pod.NewEndpoint(cfg)
	if err != nil {
		link.Close()
		return nil, err
	}
	reg, err := ep.Announce(ctx, opts.Announce)
	if err != nil {
		ep.Close()
		return nil, fmt.Errorf("topo: pod %s at %s:%d: %w", prefix, node, port, err)
	}
	l.mu.Lock()
	l.pods = append(l.pods, ep)
	l.mu.Unlock()
	return &Pod{Endpoint: ep, Registration: reg, Node: node, Port: port}, nil
}

// SCSCTLS is a client TLS configuration for an SCSC node of the domain,
// for SCSC's gNMI connections to the agents.
func (l *Lab) SCSCTLS(id string) (*tls.Config, error) {
	is, err := l.Domain.CA.IssueNode(id, ca.RoleSCSC)
	if err != nil {
		return nil, err
	}
	return ca.ClientTLS(l.Domain.CA.Cert, is.TLSCertificate(), ca.RoleSG, ca.RoleSR)
}

// GNMIAddrs maps every node to its agent's gNMI address.
func (l *Lab) GNMIAddrs() map[string]string {
	out := map[string]string{}
	for _, n := range l.Fabric.Topo.NodeNames() {
		if a, ok := l.Fabric.Agent(n); ok {
			out[n] = a.GNMIAddr()
		}
	}
	return out
}

// Close stops the pods, the fabric and the domain, and removes a temporary
// directory.
func (l *Lab) Close() error {
	var errs []error
	l.mu.Lock()
	pods := l.pods
	l.pods = nil
	l.mu.Unlock()
	for _, ep := range pods {
		if err := ep.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			errs = append(errs, err)
		}
	}
	if l.Fabric != nil {
		if err := l.Fabric.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	if l.Domain != nil {
		if err := l.Domain.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	l.removeDir()
	return errors.Join(errs...)
}

func (l *Lab) removeDir() {
	if l.ownDir {
		os.RemoveAll(l.dir)
	}
}
