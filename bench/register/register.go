// Package register measures pod registration (issue 4) on in-process
// fabrics with a real CA, SPA server and SG agents, the pods speaking pod
// signalling frame by frame (harness.PodPort):
//
//   - Burst: thousands of pods with distinct prefixes register at once
//     through one SG (at most 16,384: the switch's instance_selector holds
//     one member per local instance) or several: the time to the last
//     ACCEPT, the SPA decisions per second the SGs obtained, and, beside it
//     in the same run, the decisions per second SPA gives the same SG
//     identity called directly (the ceiling).
//   - Reach: pods register one at a time at the SGs of a 100-switch fabric:
//     the time from ANNOUNCE (and from ACCEPT) until every SG's switch holds
//     the new service prefix.
//
// Run it with
//
//	go test -run '^$' -bench . -benchtime 1x ./bench/register
package register

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	spapb "github.com/dmsc-mesh/dmsc/api/spa"
	"github.com/dmsc-mesh/dmsc/bench/internal/harness"
	"github.com/dmsc-mesh/dmsc/ca"
	"github.com/dmsc-mesh/dmsc/controller"
	"github.com/dmsc-mesh/dmsc/topo"
)

// timedSPA is the SG's SPA client with every Authorize timed: how many
// decisions the SG obtained, how long each took, over which window.
type timedSPA struct {
	controller.SPA
	mu          sync.Mutex
	lat         harness.Durations
	first, last time.Time
	inFlight    int
	maxInFlight int
}

func (s *timedSPA) Authorize(ctx context.Context, req *spapb.AuthorizeRequest) (*spapb.AuthorizeResponse, error) {
	start := time.Now()
	s.mu.Lock()
	if s.first.IsZero() {
		s.first = start
	}
	s.inFlight++
	s.maxInFlight = max(s.maxInFlight, s.inFlight)
	s.mu.Unlock()
	resp, err := s.SPA.Authorize(ctx, req)
	end := time.Now()
	s.mu.Lock()
	s.inFlight--
	s.lat = append(s.lat, end.Sub(start))
	s.last = end
	s.mu.Unlock()
	return resp, err
}

// spaStats merges the SGs' figures.
func spaStats(spas []*timedSPA) (n int, lat harness.Durations, window time.Duration, maxInFlight int) {
	var first, last time.Time
	for _, s := range spas {
		s.mu.Lock()
		lat = append(lat, s.lat...)
		if !s.first.IsZero() && (first.IsZero() || s.first.Before(first)) {
			first = s.first
		}
		last = later(last, s.last)
		maxInFlight += s.maxInFlight
		s.mu.Unlock()
	}
	return len(lat), lat, last.Sub(first), maxInFlight
}

// sgOptions are the SG settings of the benchmarks: the SPA client of the
// domain, timed; keepalives slow enough that pods need not send any while
// they are measured (each registration is timed, not the pods' upkeep);
// and, for the burst, no per-port limits.
type sgOptions struct {
	unlimited bool
}

func sgConfig(d *topo.Domain, node string, o sgOptions) (*controller.SGConfig, *timedSPA, error) {
	c, err := d.SGConfig(node)
	if err != nil {
		return nil, nil, err
	}
	t := &timedSPA{SPA: c.SPA}
	c.SPA = t
	c.Keepalive, c.Hold = time.Minute, 3*time.Minute
	if o.unlimited {
		c.MaxInstancesPerPort = 1 << 20
		c.AnnounceRate, c.AnnounceBurst = 1e9, 1<<20
	}
	return c, t, nil
}

// issue makes a pod certificate for each prefix.
func issue(d *topo.Domain, prefixes []string) ([]*ca.Issued, error) {
	out := make([]*ca.Issued, len(prefixes))
	for i, p := range prefixes {
		is, err := d.IssuePod(p)
		if err != nil {
			return nil, err
		}
		out[i] = is
	}
	return out, nil
}

func roles(t *topo.Topology) map[string]topo.Role {
	r := map[string]topo.Role{}
	for n, node := range t.Nodes {
		r[n] = node.Role
	}
	return r
}

// BurstConfig is one burst.
type BurstConfig struct {
	// Pods is the number of pods, each with its own prefix; SGs the SGs
	// (default 1) and Ports the pod ports of each SG they spread over. One
	// SG's switch holds at most 16,384 local instances (its
	// instance_selector action profile).
	Pods, SGs, Ports int
	// Window bounds the registrations under way at once (0: all at once).
	Window int
	// Probe is the agents' probing. An SG probes every service in the LSDB
	// and each of its instances every 100 ms by default, which at
	// thousands of local services is what its loop does most.
	Probe controller.ProbeConfig
	// DirectInFlight is the concurrency of the direct SPA peer [64].
	DirectInFlight int
	// Logger, if set, gets the agents' logs.
	Logger *slog.Logger
	// Dir is an empty directory for the CA and SPA's store.
	Dir  string
	Logf func(string, ...any)
}

// BurstResult is what a burst measured.
type BurstResult struct {
	Pods int
	// Issue is how long the certificates took (outside the measurement).
	Issue time.Duration
	// Elapsed is from the first ANNOUNCE to the last ACCEPT; Latency each
	// pod's ANNOUNCE → ACCEPT.
	Elapsed time.Duration
	Latency harness.Durations
	// Announces and Proofs sent in all, rejects by reason, frames the pod
	// links refused (queue full).
	Announces, Proofs int
	Rejects           map[string]int
	LinkFull          int
	// SPACalls, SPALatency, SPAWindow: the SG's Authorize calls, each
	// one's time, and from the first call to the last answer;
	// SPAMaxInFlight the most at once.
	SPACalls       int
	SPALatency     harness.Durations
	SPAWindow      time.Duration
	SPAMaxInFlight int
	// Spread: from the first ANNOUNCE until the SR beyond the SGs held
	// every service and instance prefix on its switch.
	Spread time.Duration
	// Direct is SPA called directly by the same SG identity (another
	// client), DirectInFlight calls at once, for the same pods on other
	// ports: decisions per second and latencies.
	DirectRate    float64
	DirectLatency harness.Durations
}

// Rate is the SPA decisions per second the SG obtained during the burst.
func (r *BurstResult) Rate() float64 {
	if r.SPAWindow <= 0 {
		return 0
	}
	return float64(r.SPACalls) / r.SPAWindow.Seconds()
}

// Burst registers cfg.Pods pods at once at the SGs r1..rN of the line
// r1 – … – rN – rN+1 (rN+1 an SR).
func Burst(ctx context.Context, cfg BurstConfig) (*BurstResult, error) {
	logf := cfg.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	cfg.SGs = max(cfg.SGs, 1)
	t := topo.Line(cfg.SGs + 1)
	var sgNames []string
	for i := range cfg.SGs {
		sgNames = append(sgNames, fmt.Sprintf("r%d", i+1))
	}
	sr := fmt.Sprintf("r%d", cfg.SGs+1)
	t = topo.WithSGs(t, cfg.Ports, sgNames...)
	d, err := topo.StartDomain(ctx, cfg.Dir, "example.org", roles(t), topo.DomainOptions{Lease: time.Hour})
	if err != nil {
		return nil, err
	}
	defer d.Close()
	sgCfg := map[string]*controller.SGConfig{}
	var spas []*timedSPA
	for _, n := range sgNames {
		c, spa, err := sgConfig(d, n, sgOptions{unlimited: true})
		if err != nil {
			return nil, err
		}
		sgCfg[n] = c
		spas = append(spas, spa)
	}
	res := &BurstResult{Pods: cfg.Pods, Rejects: map[string]int{}}
	prefixes := make([]string, cfg.Pods)
	for i := range prefixes {
		prefixes[i] = fmt.Sprintf("/bench/s%05d", i)
	}
	start := time.Now()
	certs, err := issue(d, prefixes)
	if err != nil {
		return nil, err
	}
	res.Issue = time.Since(start)
	logf("issued %d pod certificates in %v", len(certs), res.Issue.Round(time.Millisecond))

	f, err := harness.Start(ctx, t, topo.AgentOptions{
		SG:        func(node string) *controller.SGConfig { return sgCfg[node] },
		Configure: func(node string, c *controller.Config) { c.Probe = cfg.Probe },
		Logger:    cfg.Logger,
	})
	if err != nil {
		return nil, err
	}
	defer f.Close()
	base, err := harness.Model{Topo: t}.FIBs()
	if err != nil {
		return nil, err
	}
	if _, err := f.WaitFIBs(ctx, base, 30*time.Second); err != nil {
		return nil, err
	}
	// ports alternate between the SGs: pod i goes to SG i mod SGs.
	var ports []*harness.PodPort
	portSG := map[*harness.PodPort]string{}
	for j := range cfg.Ports {
		for _, n := range sgNames {
			p := t.Nodes[n].PodPorts[j]
			link, err := f.AttachPod(n, p)
			if err != nil {
				return nil, err
			}
			pp := harness.NewPodPort(link, p, harness.PodTimers{})
			defer pp.Close()
			ports = append(ports, pp)
			portSG[pp] = n
		}
	}

	regs := make([]*harness.Registration, 0, cfg.Pods)
	var regsMu sync.Mutex
	first := time.Now()
	stopProgress := progress(5*time.Second, func() {
		regsMu.Lock()
		rs := slices.Clone(regs)
		regsMu.Unlock()
		n, lat, _, inFlight := spaStats(spas)
		recent := lat[max(0, len(lat)-64):]
		got := map[uint8]int{}
		unmatched := 0
		for _, pp := range ports {
			byType, u := pp.Received()
			for k, v := range byType {
				got[k] += v
			}
			unmatched += u
		}
		var fibErr error
		var writes uint64
		for _, n := range sgNames {
			if s, err := f.Snapshot(ctx, n); err == nil {
				writes += s.FIBWrites
				if s.FIBError != nil {
					fibErr = fmt.Errorf("%s: %w", n, s.FIBError)
				}
			}
		}
		logf("%v: %d of %d pods accepted; SPA %d calls (%d in flight at most), the last 64 took %v; pod messages by type %v (%d for no waiting pod); SG FIB writes %d, last error %v",
			time.Since(first).Round(time.Second), accepted(rs), cfg.Pods, n, inFlight, recent, got, unmatched, writes, fibErr)
	})
	defer stopProgress()
	window := cfg.Window
	if window <= 0 {
		window = cfg.Pods
	}
	sem := make(chan struct{}, window)
	for i := range cfg.Pods {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		r := ports[i%len(ports)].Register(prefixes[i], certs[i])
		regsMu.Lock()
		regs = append(regs, r)
		regsMu.Unlock()
		go func() { <-r.Done(); <-sem }()
	}
	if err := harness.Wait(ctx, regs); err != nil {
		return nil, err
	}
	stopProgress()
	var lastAccept time.Time
	for _, r := range regs {
		lastAccept = later(lastAccept, r.Accepted)
		res.Latency = append(res.Latency, r.Accepted.Sub(r.Announced))
		res.Announces += r.Announces
		res.Proofs += r.Proofs
		for reason, n := range r.Rejects {
			res.Rejects[reason.String()] += n
		}
	}
	for _, pp := range ports {
		res.LinkFull += pp.SendErrors()
	}
	res.Elapsed = lastAccept.Sub(first)
	res.SPACalls, res.SPALatency, res.SPAWindow, res.SPAMaxInFlight = spaStats(spas)
	logf("%d pods accepted in %v (%.0f/s); latency %v; %d announces, %d proofs, rejects %v; SPA %d calls, %.0f/s, latency %v, %d in flight at most",
		cfg.Pods, res.Elapsed.Round(time.Millisecond), float64(cfg.Pods)/res.Elapsed.Seconds(), res.Latency,
		res.Announces, res.Proofs, res.Rejects, res.SPACalls, res.Rate(), res.SPALatency, res.SPAMaxInFlight)

	// The SR beyond the SGs learns every service and instance prefix.
	want := 2*cfg.Pods + len(t.Nodes)
	for {
		s, err := f.Snapshot(ctx, sr)
		if err != nil {
			return nil, err
		}
		if s.Converged() && len(s.FIB) == want {
			res.Spread = time.Since(first)
			break
		}
		if time.Since(first) > 5*time.Minute {
			return nil, fmt.Errorf("register: %s holds %d of %d routes after 5 min", sr, len(s.FIB), want)
		}
		time.Sleep(100 * time.Millisecond)
	}
	logf("%s's switch holds all %d prefixes %v after the first ANNOUNCE", sr, 2*cfg.Pods, res.Spread.Round(time.Millisecond))

	inFlight := cfg.DirectInFlight
	if inFlight <= 0 {
		inFlight = 64
	}
	res.DirectRate, res.DirectLatency, err = direct(ctx, d, sgNames[0], certs, prefixes, inFlight)
	if err != nil {
		return nil, err
	}
	logf("SPA called directly, %d in flight: %.0f decisions/s, latency %v", inFlight, res.DirectRate, res.DirectLatency)
	return res, nil
}

// direct is the ceiling: SPA's Authorize called by sg's identity through
// a client of its own, for the same pods announced on ports 1000..1015
// (new instances, so each decision writes SPA's store as in the burst),
// with inFlight calls at once. The requests are signed beforehand: that
// is the pods' work.
func direct(ctx context.Context, d *topo.Domain, sg string, certs []*ca.Issued, prefixes []string, inFlight int) (float64, harness.Durations, error) {
	c, err := d.SGConfig(sg)
	if err != nil {
		return 0, nil, err
	}
	reqs := make([]*spapb.AuthorizeRequest, len(certs))
	for i, is := range certs {
		ch, err := ca.NewChallenge(time.Now())
		if err != nil {
			return 0, nil, err
		}
		port := uint32(1000 + i%16)
		sig, err := ca.SignProof(is.Key, ch, sg, port, prefixes[i])
		if err != nil {
			return 0, nil, err
		}
		reqs[i] = &spapb.AuthorizeRequest{Prefix: prefixes[i], CertChain: [][]byte{is.Cert.Raw}, Challenge: ch, Signature: sig, SgPort: port}
	}
	lat := make(harness.Durations, len(reqs))
	errs := make(chan error, inFlight)
	var wg sync.WaitGroup
	next := make(chan int)
	start := time.Now()
	for range inFlight {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				t := time.Now()
				resp, err := c.SPA.Authorize(ctx, reqs[i])
				lat[i] = time.Since(t)
				if err == nil && resp.GetDecision() != spapb.Decision_ALLOWED {
					err = fmt.Errorf("%s: %s %s", prefixes[i], resp.GetReason(), resp.GetReasonText())
				}
				if err != nil {
					select {
					case errs <- err:
					default:
					}
					return
				}
			}
		}()
	}
	for i := range reqs {
		select {
		case next <- i:
		case err := <-errs:
			close(next)
			wg.Wait()
			return 0, nil, err
		}
	}
	close(next)
	wg.Wait()
	select {
	case err := <-errs:
		return 0, nil, err
	default:
	}
	return float64(len(reqs)) / time.Since(start).Seconds(), lat, nil
}

// progress calls report every interval until stopped (stop may be called
// more than once).
func progress(interval time.Duration, report func()) (stop func()) {
	done, finished := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				report()
			}
		}
	}()
	var once sync.Once
	return func() { once.Do(func() { close(done); <-finished }) }
}

func accepted(regs []*harness.Registration) int {
	n := 0
	for _, r := range regs {
		select {
		case <-r.Done():
			if r.Err == nil {
				n++
			}
		default:
		}
	}
	return n
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
