// Package qos measures the Scheduling Center's reaction (issue 6): on the
// draft's Figure 2, with real agents and a real SCSC over gNMI and TLS, the
// time from a link's impairment to the traffic it carried being steered off
// it (sr1's FIB, read back over P4Runtime, sends the service another way),
// and from the repair to the traffic being back.
package qos

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"time"

	"github.com/dmsc-mesh/dmsc/controller"
	"github.com/dmsc-mesh/dmsc/controller/fib"
	"github.com/dmsc-mesh/dmsc/examples"
	"github.com/dmsc-mesh/dmsc/p4"
	"github.com/dmsc-mesh/dmsc/p4rt"
	"github.com/dmsc-mesh/dmsc/scsc"
	"github.com/dmsc-mesh/dmsc/softswitch"
	"github.com/dmsc-mesh/dmsc/spf"
	"github.com/dmsc-mesh/dmsc/topo"
	"github.com/dmsc-mesh/dmsc/wire"
)

// Options tune a run.
type Options struct {
	// Cycles of impairment and repair (default 10).
	Cycles int
	// Delay added to sr1–sr3 each way (default 30 ms); MaxDelay SCSC's
	// threshold (default 10 ms).
	Delay, MaxDelay time.Duration
	// SampleInterval of SCSC's subscriptions (default 200 ms) and the
	// agents' probe interval (default 50 ms).
	SampleInterval, ProbeInterval time.Duration
	// Settle is how long the fabric stays unimpaired after the traffic is
	// back, before the next cycle. SCSC changes a flow's policy at most
	// once per clear period (hysteresis ClearAfter, 2 s here): a cycle
	// that starts sooner measures that hold-down, not the reaction.
	Settle time.Duration
	Log    *slog.Logger
}

// Result holds the times of every cycle.
type Result struct {
	Moved, Back []time.Duration
	Options     Options
}

const service = "/echo"

// Run runs the cycles.
func Run(ctx context.Context, o Options) (*Result, error) {
	if o.Cycles <= 0 {
		o.Cycles = 10
	}
	if o.Delay <= 0 {
		o.Delay = 30 * time.Millisecond
	}
	if o.MaxDelay <= 0 {
		o.MaxDelay = 10 * time.Millisecond
	}
	if o.SampleInterval <= 0 {
		o.SampleInterval = 200 * time.Millisecond
	}
	if o.ProbeInterval <= 0 {
		o.ProbeInterval = 50 * time.Millisecond
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	tp, err := topo.Parse(examples.Fig2)
	if err != nil {
		return nil, err
	}
	lab, err := topo.StartLab(ctx, tp, topo.LabOptions{
		Logger: o.Log, GNMI: true, GNMIInterval: o.SampleInterval,
		Probe: controller.ProbeConfig{Targets: []string{service}, Interval: o.ProbeInterval, Window: time.Second},
	})
	if err != nil {
		return nil, err
	}
	defer lab.Close()
	// The service's pod at sg4; its traffic from sg1 goes sg1 sr1 sr3 sg4.
	pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if _, err := lab.StartPod(pctx, "sg4", service, topo.PodOptions{}); err != nil {
		return nil, err
	}
	k := wire.KeyOf(wire.MustParseName(service))
	svc := spf.Prefix{Key: k, Len: uint8(k.PrefixLen())}
	s, err := p4.Schema()
	if err != nil {
		return nil, err
	}
	sr1, err := p4rt.Dial(ctx, lab.Fabric.Switches["sr1"].Addr, p4rt.Options{DeviceID: 1, Logger: o.Log})
	if err != nil {
		return nil, err
	}
	defer sr1.Close()
	sr1.UseSchema(s)
	// port is sr1's egress port for the service, as the switch holds it.
	port := func() (uint16, error) {
		es, err := sr1.Read(ctx, p4rt.AllTableEntries(), p4rt.Members(0), p4rt.Groups(0))
		if err != nil {
			return 0, err
		}
		prog, err := fib.Recover(s, es)
		if err != nil {
			return 0, err
		}
		r, ok := prog.Routes()[svc]
		if !ok || len(r.Hops) == 0 {
			return 0, errors.New("sr1 has no route to " + service)
		}
		return r.Hops[0].Port, nil
	}
	until := func(timeout time.Duration, cond func(uint16) bool) (time.Duration, error) {
		t0 := time.Now()
		for time.Since(t0) < timeout {
			if p, err := port(); err == nil && cond(p) {
				return time.Since(t0), nil
			}
			select {
			case <-ctx.Done():
				return 0, ctx.Err()
			case <-time.After(5 * time.Millisecond):
			}
		}
		return 0, fmt.Errorf("not within %v", timeout)
	}
	const direct = 4 // sr1's port to sr3 in fig2.yaml
	if _, err := until(10*time.Second, func(p uint16) bool { return p == direct }); err != nil {
		return nil, fmt.Errorf("before the first cycle: %w", err)
	}

	tls, err := lab.SCSCTLS("scsc1")
	if err != nil {
		return nil, err
	}
	cfg := scsc.DefaultConfig()
	cfg.ID = "scsc1"
	for n, addr := range lab.GNMIAddrs() {
		cfg.Agents = append(cfg.Agents, scsc.AgentConfig{Name: n, Addr: addr})
	}
	sort.Slice(cfg.Agents, func(i, j int) bool { return cfg.Agents[i].Name < cfg.Agents[j].Name })
	cfg.SampleInterval = o.SampleInterval
	cfg.PolicyTTL = 5 * time.Second
	cfg.Hysteresis = scsc.Hysteresis{TriggerAfter: 2, ClearAfter: 2 * time.Second, Improvement: 0.2}
	sc, err := scsc.NewService(service, scsc.Thresholds{MaxDelay: o.MaxDelay})
	if err != nil {
		return nil, err
	}
	cfg.Services = []scsc.ServiceConfig{sc}
	center, err := scsc.New(&cfg, scsc.WithTLS(tls), scsc.WithLogger(o.Log))
	if err != nil {
		return nil, err
	}
	sctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- center.Run(sctx) }()
	defer func() { stop(); <-done }()

	link, _ := lab.Fabric.Link("sr1", "sr3")
	impair := func(d time.Duration) error {
		for _, ep := range []topo.Endpoint{link.A, link.B} {
			im := softswitch.Impairment{Delay: link.Delay, Rate: link.Capacity}
			if d > 0 {
				im = softswitch.Impairment{Delay: d}
			}
			if err := lab.Fabric.Switches[ep.Node].SW.SetImpairment(ep.Port, im); err != nil {
				return err
			}
		}
		return nil
	}
	res := &Result{Options: o}
	// Let SCSC learn the fabric before the first cycle.
	time.Sleep(3 * o.SampleInterval)
	for i := 0; i < o.Cycles; i++ {
		if err := impair(o.Delay); err != nil {
			return res, err
		}
		moved, err := until(30*time.Second, func(p uint16) bool { return p != direct })
		if err != nil {
			return res, fmt.Errorf("cycle %d: traffic not moved: %w", i, err)
		}
		res.Moved = append(res.Moved, moved)
		if err := impair(0); err != nil {
			return res, err
		}
		back, err := until(60*time.Second, func(p uint16) bool { return p == direct })
		if err != nil {
			return res, fmt.Errorf("cycle %d: traffic not back: %w", i, err)
		}
		res.Back = append(res.Back, back)
		if i+1 < o.Cycles {
			select {
			case <-ctx.Done():
				return res, ctx.Err()
			case <-time.After(o.Settle):
			}
		}
	}
	return res, nil
}

// Percentile is the p-th fraction of ds (nearest rank).
func Percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(p*float64(len(s))+0.5) - 1
	return s[min(max(i, 0), len(s)-1)]
}
