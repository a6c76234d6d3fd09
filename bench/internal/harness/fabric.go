package harness

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/dmsc-mesh/dmsc/controller"
	"github.com/dmsc-mesh/dmsc/controller/fib"
	"github.com/dmsc-mesh/dmsc/p4"
	"github.com/dmsc-mesh/dmsc/p4rt"
	"github.com/dmsc-mesh/dmsc/topo"
)

// Fabric is an in-process fabric with its agents running, owned by the
// benchmark that started it.
type Fabric struct {
	*topo.Fabric
	cancel context.CancelFunc
}

// Start runs t on software switches and starts an agent per node.
func Start(ctx context.Context, t *topo.Topology, opts topo.AgentOptions) (*Fabric, error) {
	ctx, cancel := context.WithCancel(ctx)
	tf, err := topo.Start(ctx, t, topo.Options{})
	if err != nil {
		cancel()
		return nil, err
	}
	if err := tf.StartAgents(ctx, opts); err != nil {
		tf.Close()
		cancel()
		return nil, err
	}
	return &Fabric{Fabric: tf, cancel: cancel}, nil
}

// Close stops the agents, the switches and their servers.
func (f *Fabric) Close() error {
	err := f.Fabric.Close()
	f.cancel()
	return err
}

// Snapshot is node's agent's state.
func (f *Fabric) Snapshot(ctx context.Context, node string) (controller.Snapshot, error) {
	a, ok := f.Agent(node)
	if !ok {
		return controller.Snapshot{}, fmt.Errorf("harness: no agent %s", node)
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	s, err := a.Snapshot(ctx)
	if err != nil {
		return s, fmt.Errorf("harness: %s: %w", node, err)
	}
	return s, nil
}

// Snapshots takes every agent's snapshot, in node order.
func (f *Fabric) Snapshots(ctx context.Context) (map[string]controller.Snapshot, error) {
	out := map[string]controller.Snapshot{}
	for _, n := range f.Topo.NodeNames() {
		s, err := f.Snapshot(ctx, n)
		if err != nil {
			return nil, err
		}
		out[n] = s
	}
	return out, nil
}

// ReadFIB reads node's FIB from its switch over P4Runtime, as a backup
// controller would, and decodes it: what the switch really holds.
func (f *Fabric) ReadFIB(ctx context.Context, node string) (fib.Routes, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	c, err := p4rt.Dial(ctx, f.Switches[node].Addr, p4rt.Options{DeviceID: 1})
	if err != nil {
		return nil, fmt.Errorf("harness: %s: %w", node, err)
	}
	defer c.Close()
	s, err := p4.Schema()
	if err != nil {
		return nil, err
	}
	es, err := c.Read(ctx, p4rt.AllTableEntries(), p4rt.Members(0), p4rt.Groups(0))
	if err != nil {
		return nil, fmt.Errorf("harness: %s: read: %w", node, err)
	}
	prog, err := fib.Recover(s, es)
	if err != nil {
		return nil, fmt.Errorf("harness: %s: %w", node, err)
	}
	return prog.Routes(), nil
}

// Matches reports why s is not the converged state want (nil if it is):
// the switch holds the agent's newest routes and they are want.
func Matches(s controller.Snapshot, want FIB) error {
	if !s.Converged() {
		return fmt.Errorf("%s: FIB generation %d, applied %d (%v)", s.Node, s.FIBGeneration, s.FIBApplied, s.FIBError)
	}
	if got := Reduce(s.FIB); !want.Equal(got) {
		return fmt.Errorf("%s: FIB differs from SPF's: %s", s.Node, want.Diff(got, 5))
	}
	return nil
}

// WaitFIBs waits until every agent's switch holds want[node] and every
// agent holds the same LSDB; it returns the snapshots that showed it.
func (f *Fabric) WaitFIBs(ctx context.Context, want map[string]FIB, timeout time.Duration) (map[string]controller.Snapshot, error) {
	deadline := time.Now().Add(timeout)
	var last error
	var snaps map[string]controller.Snapshot
	for time.Now().Before(deadline) {
		var err error
		if snaps, err = f.Snapshots(ctx); err != nil {
			return nil, err
		}
		last = nil
		for _, n := range f.Topo.NodeNames() {
			if last = Matches(snaps[n], want[n]); last != nil {
				break
			}
		}
		if last == nil {
			last = controller.LSDBsAgree(snaps)
		}
		if last == nil {
			return snaps, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	return nil, fmt.Errorf("harness: not converged after %v: %w (%s)", timeout, last, Health(snaps))
}

// VerifySwitches reads every switch back over P4Runtime and compares it
// with want.
func (f *Fabric) VerifySwitches(ctx context.Context, want map[string]FIB) error {
	var errs []error
	for _, n := range f.Topo.NodeNames() {
		r, err := f.ReadFIB(ctx, n)
		if err != nil {
			return err
		}
		if got := Reduce(r); !want[n].Equal(got) {
			errs = append(errs, fmt.Errorf("%s: switch FIB differs from SPF's: %s", n, want[n].Diff(got, 5)))
		}
	}
	return errors.Join(errs...)
}

// StartGradually is Start for fabrics too large to come up at once on the
// machine: every link starts cut, and the links are restored one by one,
// each once both ends of the previous one hold the adjacency, so that
// flooding never runs more than a link's worth of LSPs at a time. It
// returns once the last link is restored; wait for convergence as after
// Start.
func StartGradually(ctx context.Context, t *topo.Topology, opts topo.AgentOptions, logf func(string, ...any)) (*Fabric, error) {
	ctx, cancel := context.WithCancel(ctx)
	tf, err := topo.Start(ctx, t, topo.Options{})
	if err != nil {
		cancel()
		return nil, err
	}
	f := &Fabric{Fabric: tf, cancel: cancel}
	for _, l := range t.Links {
		if err := tf.Cut(l); err != nil {
			f.Close()
			return nil, err
		}
	}
	if err := tf.StartAgents(ctx, opts); err != nil {
		f.Close()
		return nil, err
	}
	start := time.Now()
	for i, l := range t.Links {
		if err := tf.Restore(l); err != nil {
			f.Close()
			return nil, err
		}
		deadline := time.Now().Add(30 * time.Second)
		for _, end := range []Endpoint{{l.A.Node, l.A.Port}, {l.B.Node, l.B.Port}} {
			for {
				s, err := f.Snapshot(ctx, end.Node)
				if err != nil {
					f.Close()
					return nil, err
				}
				if adjUpOn(s, end.Port) {
					break
				}
				if time.Now().After(deadline) {
					f.Close()
					return nil, fmt.Errorf("harness: link %d (%s–%s) not up after 30 s", i, l.A, l.B)
				}
				time.Sleep(5 * time.Millisecond)
			}
		}
		if logf != nil && (i+1)%50 == 0 {
			logf("%d of %d links up after %v", i+1, len(t.Links), time.Since(start).Round(time.Millisecond))
		}
	}
	return f, nil
}

// Endpoint is a node's port.
type Endpoint struct {
	Node string
	Port uint16
}

func adjUpOn(s controller.Snapshot, port uint16) bool {
	for _, n := range s.Neighbors {
		if n.Port == port {
			return n.State == controller.AdjUp
		}
	}
	return false
}

// Health summarises a fabric's state for a failure message: adjacencies
// up, agents whose switch is behind, LSPs originated so far (they keep
// growing while adjacencies flap) and control frames dropped.
func Health(snaps map[string]controller.Snapshot) string {
	up, ports, behind := 0, 0, 0
	var orig, lag, hellos uint64
	drops := map[string]uint64{}
	for _, s := range snaps {
		for _, n := range s.Neighbors {
			ports++
			if n.State == controller.AdjUp {
				up++
			}
		}
		if !s.Converged() {
			behind++
		}
		lag += s.FIBGeneration - s.FIBApplied
		orig += s.Counters.LSPsOriginated
		hellos += s.Counters.HellosSent
		for k, v := range s.Counters.Dropped {
			drops[k] += v
		}
	}
	return fmt.Sprintf("%d of %d adjacencies up, %d of %d switches behind their agent (%d generations), %d LSPs originated, %d HELLOs sent, drops %v",
		up, ports, behind, len(snaps), lag, orig, hellos, drops)
}
