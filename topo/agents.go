package topo

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/dmsc-mesh/dmsc/controller"
	"github.com/dmsc-mesh/dmsc/spf"
)

// AgentOptions tune the agents StartAgents runs.
type AgentOptions struct {
	Timers controller.Timers
	Logger *slog.Logger
	// SG returns the SG configuration of an SG node (nil: none).
	SG func(node string) *controller.SGConfig
	// Configure, if set, may adjust each node's configuration last.
	Configure func(node string, cfg *controller.Config)
}

// runningAgent is one agent of a fabric and what stops it.
type runningAgent struct {
	agent  *controller.Agent
	cancel context.CancelFunc
	done   chan error
}

// agentSet is the fabric's agents; its own mutex, since tests restart
// agents while others read the fabric.
type agentSet struct {
	mu     sync.Mutex
	opts   AgentOptions
	keys   map[spf.NodeID]ed25519.PublicKey
	agents map[string]*runningAgent
}

// NodeKey is the deterministic Ed25519 key of a node in an in-process
// fabric (derived from the node name, so restarts keep it).
func NodeKey(node string) ed25519.PrivateKey {
	seed := sha256.Sum256([]byte("dmsc-topo-node-key/" + node))
	return ed25519.NewKeyFromSeed(seed[:])
}

// StartAgents starts one agent per node, each programming its node's
// switch over P4Runtime on loopback.
func (f *Fabric) StartAgents(ctx context.Context, opts AgentOptions) error {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	as := &agentSet{opts: opts, keys: map[spf.NodeID]ed25519.PublicKey{}, agents: map[string]*runningAgent{}}
	for name := range f.Switches {
		as.keys[spf.NodeID(name)] = NodeKey(name).Public().(ed25519.PublicKey)
	}
	f.agents = as
	for _, name := range f.Topo.NodeNames() {
		if err := f.StartAgent(ctx, name); err != nil {
			f.StopAgents()
			return err
		}
	}
	return nil
}

// AgentConfig is the configuration StartAgent gives node's agent.
func (f *Fabric) AgentConfig(node string) (controller.Config, error) {
	s, ok := f.Switches[node]
	if !ok || f.agents == nil {
		return controller.Config{}, fmt.Errorf("topo: no node %q with agents", node)
	}
	as := f.agents
	cfg := controller.Config{
		NodeID:      spf.NodeID(node),
		Role:        controller.Role(s.Node.Role),
		Switch:      s.Addr,
		DeviceID:    f.deviceID,
		Key:         NodeKey(node),
		TrustedKeys: func(id spf.NodeID) (ed25519.PublicKey, bool) { k, ok := as.keys[id]; return k, ok },
		Timers:      as.opts.Timers,
		Logger:      as.opts.Logger.With("node", node, "component", "agent"),
	}
	for _, l := range f.Topo.Links {
		for _, ep := range []Endpoint{l.A, l.B} {
			if ep.Node == node {
				cfg.Ports = append(cfg.Ports, controller.Port{Num: ep.Port, Kind: controller.PortFabric, Metric: l.Metric, Capacity: l.Capacity})
			}
		}
	}
	for _, p := range s.Node.PodPorts {
		cfg.Ports = append(cfg.Ports, controller.Port{Num: p, Kind: controller.PortPod})
	}
	if s.Node.Role == RoleSG && as.opts.SG != nil {
		cfg.SG = as.opts.SG(node)
	}
	if as.opts.Configure != nil {
		as.opts.Configure(node, &cfg)
	}
	return cfg, nil
}

// StartAgent starts (or restarts, after StopAgent) node's agent.
func (f *Fabric) StartAgent(ctx context.Context, node string) error {
	cfg, err := f.AgentConfig(node)
	if err != nil {
		return err
	}
	a, err := controller.New(cfg)
	if err != nil {
		return err
	}
	as := f.agents
	as.mu.Lock()
	defer as.mu.Unlock()
	if _, running := as.agents[node]; running {
		return fmt.Errorf("topo: agent %s is running", node)
	}
	actx, cancel := context.WithCancel(ctx)
	ra := &runningAgent{agent: a, cancel: cancel, done: make(chan error, 1)}
	go func() { ra.done <- a.Run(actx) }()
	as.agents[node] = ra
	return nil
}

// StopAgent stops node's agent (as a crash would: the switch keeps its
// state) and returns what its Run returned.
func (f *Fabric) StopAgent(node string) error {
	as := f.agents
	if as == nil {
		return errors.New("topo: no agents")
	}
	as.mu.Lock()
	ra, ok := as.agents[node]
	delete(as.agents, node)
	as.mu.Unlock()
	if !ok {
		return fmt.Errorf("topo: agent %s is not running", node)
	}
	ra.cancel()
	select {
	case err := <-ra.done:
		return err
	case <-time.After(10 * time.Second):
		return fmt.Errorf("topo: agent %s did not stop within 10 s", node)
	}
}

// StopAgents stops every agent.
func (f *Fabric) StopAgents() error {
	as := f.agents
	if as == nil {
		return nil
	}
	as.mu.Lock()
	names := make([]string, 0, len(as.agents))
	for n := range as.agents {
		names = append(names, n)
	}
	as.mu.Unlock()
	var errs []error
	for _, n := range names {
		if err := f.StopAgent(n); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Agent returns node's running agent.
func (f *Fabric) Agent(node string) (*controller.Agent, bool) {
	as := f.agents
	if as == nil {
		return nil, false
	}
	as.mu.Lock()
	defer as.mu.Unlock()
	ra, ok := as.agents[node]
	if !ok {
		return nil, false
	}
	return ra.agent, true
}
