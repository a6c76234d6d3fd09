// Package demo is `dmsc demo`: the draft's Figure 2 fabric on the embedded
// software switch, in one process and without setup — a domain CA and SPA,
// seven switches with their agents, the example shop's pods calling each
// other by service name, a link cut the calls survive, and a QoS event that
// the Scheduling Center (SCSC) reroutes. It prints what happens for people.
package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"
	"sort"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"google.golang.org/grpc"

	shoppb "github.com/dmsc-mesh/dmsc/api/shop"
	"github.com/dmsc-mesh/dmsc/controller"
	"github.com/dmsc-mesh/dmsc/controller/fib"
	"github.com/dmsc-mesh/dmsc/examples"
	"github.com/dmsc-mesh/dmsc/examples/shop"
	"github.com/dmsc-mesh/dmsc/gnmi"
	"github.com/dmsc-mesh/dmsc/pod"
	"github.com/dmsc-mesh/dmsc/scsc"
	"github.com/dmsc-mesh/dmsc/softswitch"
	"github.com/dmsc-mesh/dmsc/spf"
	"github.com/dmsc-mesh/dmsc/topo"
	"github.com/dmsc-mesh/dmsc/wire"
)

// Options tune the demo.
type Options struct {
	Out io.Writer
	// Log receives the components' logs (default: discarded).
	Log *slog.Logger
	// Topology file (default examples/fig2.yaml beside the source, or the
	// embedded copy).
	Topology *topo.Topology
	// Calls per measurement (default 50).
	Calls int
	// QoSDelay is the delay the QoS event adds (default 30 ms) and
	// MaxDelay the threshold SCSC holds the frontend to (default 10 ms).
	QoSDelay, MaxDelay time.Duration
}

// Summary is what the demo found, for the closing lines and for tests.
type Summary struct {
	Converged, Registered             time.Duration
	CallP50, CallP99                  time.Duration
	CutCalls, CutFailed               int
	CutSlowest, Reroute               time.Duration
	PathBefore, PathCut, PathQoS      []string
	QoSDetected, QoSRerouted          time.Duration
	ImpairedP50, SteeredP50, ClearP50 time.Duration
	PolicyID                          string
}

// The pods of the demo: where each service runs. The user at sg1 reaches
// the frontend across the SRs (sg1 sr1 sr3 sg4); the frontend's cart is one
// SR away (sg4 sr3 sg3) and the cart's catalog is local to it, with a
// second catalog instance at sg4.
var pods = []struct {
	service, node string
}{
	{shop.CatalogService, "sg3"},
	{shop.CatalogService, "sg4"},
	{shop.CartService, "sg3"},
	{shop.FrontendService, "sg4"},
}

const userService = "/demo/user"

type demo struct {
	opts Options
	out  io.Writer
	lab  *topo.Lab
	sum  Summary
	user *pod.Endpoint
	fe   shoppb.FrontendClient
	mu   sync.Mutex
	// names maps service keys to names, for the tables.
	names map[spf.Prefix]string
	start time.Time
	// upAt is when the fabric converged: its last topology change.
	upAt time.Time
	step int
	// lastErr is the last failed call's error.
	lastErr error
}

// Run runs the demo until it is done or ctx ends.
func Run(ctx context.Context, opts Options) (*Summary, error) {
	if opts.Out == nil {
		opts.Out = io.Discard
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.Calls <= 0 {
		opts.Calls = 50
	}
	if opts.QoSDelay <= 0 {
		opts.QoSDelay = 30 * time.Millisecond
	}
	if opts.MaxDelay <= 0 {
		opts.MaxDelay = 10 * time.Millisecond
	}
	if opts.Topology == nil {
		t, err := Fig2()
		if err != nil {
			return nil, err
		}
		opts.Topology = t
	}
	d := &demo{opts: opts, out: opts.Out, names: map[spf.Prefix]string{}, start: time.Now()}
	defer d.close()
	for _, step := range []struct {
		title string
		run   func(context.Context) error
	}{
		{"Starting the domain and the Figure 2 fabric", d.startFabric},
		{"Pods announce their services", d.registerPods},
		{"Calls by name", d.calls},
		{"A link cut under load", d.linkCut},
		{"A QoS event, rerouted by the Scheduling Center", d.qosEvent},
	} {
		d.heading(step.title)
		if err := step.run(ctx); err != nil {
			return &d.sum, fmt.Errorf("demo: %s: %w", strings.ToLower(step.title), err)
		}
	}
	d.summary()
	return &d.sum, nil
}

// Fig2 is the draft's Figure 2 (examples/fig2.yaml).
func Fig2() (*topo.Topology, error) { return topo.Parse(examples.Fig2) }

func (d *demo) heading(s string) {
	d.step++
	fmt.Fprintf(d.out, "\n[%d/5] %s\n", d.step, s)
}

func (d *demo) line(format string, args ...any) {
	fmt.Fprintf(d.out, "      "+format+"\n", args...)
}

func (d *demo) close() {
	if d.lab != nil {
		d.lab.Close()
	}
}

func (d *demo) startFabric(ctx context.Context) error {
	t0 := time.Now()
	// Every SG probes every service of the demo, the user's too, so that
	// both directions of a call are measured.
	targets := []string{userService}
	for _, p := range pods {
		if !slices.Contains(targets, p.service) {
			targets = append(targets, p.service)
		}
	}
	lab, err := topo.StartLab(ctx, d.opts.Topology, topo.LabOptions{
		Logger:       d.opts.Log,
		GNMI:         true,
		GNMIInterval: 200 * time.Millisecond,
		Probe:        controller.ProbeConfig{Targets: targets, Interval: 100 * time.Millisecond, Window: time.Second},
	})
	if err != nil {
		return err
	}
	d.lab = lab
	sgs, srs := 0, 0
	for _, n := range lab.Fabric.Topo.Nodes {
		if n.Role == topo.RoleSG {
			sgs++
		} else {
			srs++
		}
	}
	d.line("domain %s: a CA and SPA (Service Prefix Authentication) on %s", lab.Domain.Name, lab.Domain.SPAAddr)
	d.line("%d switches (%d SGs, %d SRs), %d links: each a Go software switch behind its own", sgs+srs, sgs, srs, len(lab.Fabric.Topo.Links))
	d.line("P4Runtime server, each programmed by its agent over P4Runtime")
	if err := d.waitConverged(ctx, 15*time.Second); err != nil {
		return err
	}
	d.sum.Converged = time.Since(t0)
	d.upAt = time.Now()
	d.line("converged in %v: every agent holds the same %d LSPs and every FIB is programmed", d.sum.Converged.Round(time.Millisecond), len(lab.Fabric.Topo.Nodes))
	return nil
}

func (d *demo) snapshot(ctx context.Context, node string) (controller.Snapshot, error) {
	a, ok := d.lab.Fabric.Agent(node)
	if !ok {
		return controller.Snapshot{}, fmt.Errorf("no agent %s", node)
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	return a.Snapshot(ctx)
}

// waitConverged waits until every agent has the same LSDB, routes to every
// node, and its switch holds its newest routes.
func (d *demo) waitConverged(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		last = d.converged(ctx)
		if last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	return fmt.Errorf("not converged after %v: %w", timeout, last)
}

func (d *demo) converged(ctx context.Context) error {
	var ref []spf.Summary
	for _, n := range d.lab.Fabric.Topo.NodeNames() {
		s, err := d.snapshot(ctx, n)
		if err != nil {
			return err
		}
		if !s.Converged() || len(s.Routes) < len(d.lab.Fabric.Topo.Nodes) {
			return fmt.Errorf("%s not converged", n)
		}
		cur := make([]spf.Summary, len(s.LSDB))
		for i, e := range s.LSDB {
			e.RemainingLifetime = min(e.RemainingLifetime, 1)
			cur[i] = e
		}
		if ref == nil {
			ref = cur
		} else if !slices.Equal(ref, cur) {
			return fmt.Errorf("LSDBs differ")
		}
	}
	return nil
}

func servicePrefix(name string) spf.Prefix {
	k := wire.KeyOf(wire.MustParseName(name))
	return spf.Prefix{Key: k, Len: uint8(k.PrefixLen())}
}

func (d *demo) registerPods(ctx context.Context) error {
	t0 := time.Now()
	tw := tabwriter.NewWriter(d.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "      SERVICE\tSG\tPORT\tINSTANCE KEY\tREGISTERED IN")
	for _, p := range pods {
		ep, err := d.startShopPod(ctx, p.service, p.node)
		if err != nil {
			return err
		}
		k, _ := ep.key()
		fmt.Fprintf(tw, "      %s\t%s\t%d\t%s\t%v\n", p.service, p.node, ep.port, k, ep.took.Round(100*time.Microsecond))
		d.names[servicePrefix(p.service)] = p.service
		d.names[spf.Prefix{Key: k, Len: 128}] = fmt.Sprintf("%s #%d", p.service, k.Instance())
	}
	user, err := d.startPod(ctx, userService, "sg1")
	if err != nil {
		return err
	}
	d.user = user.ep
	k, _ := user.key()
	fmt.Fprintf(tw, "      %s\t%s\t%d\t%s\t%v\n", userService, "sg1", user.port, k, user.took.Round(100*time.Microsecond))
	d.names[servicePrefix(userService)] = userService
	d.names[spf.Prefix{Key: k, Len: 128}] = fmt.Sprintf("%s #%d", userService, k.Instance())
	tw.Flush()
	d.line("each: ANNOUNCE with its certificate → CHALLENGE → PROOF → SPA decides → ACCEPT,")
	d.line("then the SG floods the service and instance prefixes in its LSP")
	// Every switch routes every service.
	deadline := time.Now().Add(10 * time.Second)
	for {
		missing := d.missingRoutes(ctx)
		if missing == "" {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("after 10 s: %s", missing)
		}
		time.Sleep(10 * time.Millisecond)
	}
	d.sum.Registered = time.Since(t0)
	d.line("all five registered, connected to what they call, and routed by every switch")
	d.line("within %v of the first ANNOUNCE", d.sum.Registered.Round(time.Millisecond))
	for _, n := range d.lab.Fabric.Topo.NodeNames() {
		d.names[nodePrefix(n)] = "/_node/" + n
	}
	return d.printFIB(ctx, "sr1")
}

func nodePrefix(node string) spf.Prefix {
	n, _ := wire.NodeName(node)
	k := wire.KeyOf(n)
	return spf.Prefix{Key: k, Len: uint8(k.PrefixLen())}
}

func (d *demo) missingRoutes(ctx context.Context) string {
	for _, n := range d.lab.Fabric.Topo.NodeNames() {
		s, err := d.snapshot(ctx, n)
		if err != nil {
			return err.Error()
		}
		if !s.Converged() {
			return n + " is programming its FIB"
		}
		for p, name := range d.names {
			if p.Len == 128 {
				continue
			}
			if _, ok := s.FIB[p]; !ok {
				return fmt.Sprintf("%s has no route to %s", n, name)
			}
		}
	}
	return ""
}

func (d *demo) printFIB(ctx context.Context, node string) error {
	s, err := d.snapshot(ctx, node)
	if err != nil {
		return err
	}
	neighbor := map[uint16]string{}
	for _, n := range s.Neighbors {
		neighbor[n.Port] = string(n.Neighbor)
	}
	type row struct{ name, kind, hops, key string }
	var rows []row
	for p, r := range s.FIB {
		name, ok := d.names[p]
		if !ok {
			continue
		}
		var hops []string
		for _, h := range r.Hops {
			switch r.Kind {
			case fib.Forward:
				hops = append(hops, fmt.Sprintf("%s (port %d)", neighbor[h.Port], h.Port))
			case fib.Local:
				hops = append(hops, fmt.Sprintf("instance %d on port %d", h.Instance, h.Port))
			}
		}
		if r.Kind == fib.ToCPU {
			hops = []string{"its own CPU port"}
		}
		rows = append(rows, row{name, r.Kind.String(), strings.Join(hops, ", "), fmt.Sprintf("%v", p)})
	}
	sort.Slice(rows, func(i, j int) bool { return rows[i].name < rows[j].name })
	d.line("%s's FIB, as its agent programmed it (key prefix → action):", node)
	tw := tabwriter.NewWriter(d.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "        NAME\tKEY PREFIX\tACTION\tNEXT HOPS")
	for _, r := range rows {
		fmt.Fprintf(tw, "        %s\t%s\t%s\t%s\n", r.name, r.key, r.kind, r.hops)
	}
	return tw.Flush()
}

// shopPod is a running pod of the demo.
type shopPod struct {
	ep   *pod.Endpoint
	port uint16
	took time.Duration
}

func (p *shopPod) key() (wire.Key, bool) { return p.ep.LocalKey() }

func (d *demo) startPod(ctx context.Context, service, node string) (*shopPod, error) {
	t0 := time.Now()
	actx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	p, err := d.lab.StartPod(actx, node, service, topo.PodOptions{})
	if err != nil {
		return nil, err
	}
	return &shopPod{ep: p.Endpoint, port: p.Port, took: time.Since(t0)}, nil
}

// startShopPod starts a pod serving one of the shop's services.
func (d *demo) startShopPod(ctx context.Context, service, node string) (*shopPod, error) {
	p, err := d.startPod(ctx, service, node)
	if err != nil {
		return nil, err
	}
	lis, err := pod.ListenGRPC(p.ep)
	if err != nil {
		return nil, err
	}
	servedBy := func() string {
		k, _ := p.ep.LocalKey()
		return fmt.Sprintf("%s#%d@%s", service, k.Instance(), node)
	}
	gs := grpc.NewServer()
	switch service {
	case shop.CatalogService:
		shoppb.RegisterCatalogServer(gs, shop.NewCatalog(shop.Items, servedBy))
	case shop.CartService:
		cc, err := d.dial(ctx, p.ep, shop.CatalogService)
		if err != nil {
			return nil, err
		}
		shoppb.RegisterCartServer(gs, shop.NewCart(shoppb.NewCatalogClient(cc), servedBy))
	case shop.FrontendService:
		cc, err := d.dial(ctx, p.ep, shop.CartService)
		if err != nil {
			return nil, err
		}
		shoppb.RegisterFrontendServer(gs, &shop.Frontend{Cart: shoppb.NewCartClient(cc), ServedBy: servedBy})
	}
	go gs.Serve(lis)
	return p, nil
}

// dial dials a service by name, waiting while the fabric learns it.
func (d *demo) dial(ctx context.Context, ep *pod.Endpoint, name string) (*grpc.ClientConn, error) {
	deadline := time.Now().Add(10 * time.Second)
	for {
		dctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		cc, err := pod.DialGRPC(dctx, ep, name)
		cancel()
		if err == nil {
			return cc, nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return nil, fmt.Errorf("dial %s: %w", name, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// measure makes n Buy calls and returns their latencies (failed calls
// count as errors; the last is kept in d.lastErr).
func (d *demo) measure(ctx context.Context, n int) ([]time.Duration, []string, int) {
	var lat []time.Duration
	served := map[string]bool{}
	failed := 0
	for i := 0; i < n; i++ {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		t0 := time.Now()
		r, err := d.fe.Buy(cctx, &shoppb.BuyRequest{User: "ada", Skus: []string{"book"}})
		cancel()
		if err != nil {
			failed++
			d.lastErr = err
			continue
		}
		lat = append(lat, time.Since(t0))
		served[r.GetServedBy()] = true
		served[r.GetCart().GetServedBy()] = true
		for _, l := range r.GetCart().GetLines() {
			served[l.GetItem().GetServedBy()] = true
		}
	}
	return lat, slices.Sorted(maps.Keys(served)), failed
}

func pctl(lat []time.Duration, p float64) time.Duration {
	if len(lat) == 0 {
		return 0
	}
	s := slices.Clone(lat)
	slices.Sort(s)
	return s[min(len(s)-1, int(p*float64(len(s))))]
}

func (d *demo) calls(ctx context.Context) error {
	cc, err := d.dial(ctx, d.user, shop.FrontendService)
	if err != nil {
		return err
	}
	d.fe = shoppb.NewFrontendClient(cc)
	d.line("%s at sg1 calls Frontend.Buy on %s; the frontend calls %s, which calls %s.", userService, shop.FrontendService, shop.CartService, shop.CatalogService)
	d.line("Each is an ordinary gRPC call, over QUIC, over frames addressed by service key.")
	lat, served, failed := d.measure(ctx, d.opts.Calls)
	if failed > 0 {
		return fmt.Errorf("%d of %d calls failed (%v)", failed, d.opts.Calls, d.lastErr)
	}
	d.sum.CallP50, d.sum.CallP99 = pctl(lat, 0.5), pctl(lat, 0.99)
	d.line("%d calls: p50 %v, p99 %v (each three calls deep; sr1–sr3 has 1 ms of delay each way)", len(lat),
		d.sum.CallP50.Round(10*time.Microsecond), d.sum.CallP99.Round(10*time.Microsecond))
	d.line("answered by: %s", strings.Join(served, ", "))
	path, err := d.path(ctx, "sg1", shop.FrontendService)
	if err != nil {
		return err
	}
	d.sum.PathBefore = path
	d.line("path of the calls to %s: %s", shop.FrontendService, strings.Join(path, " → "))
	return nil
}

// path follows the FIBs from node toward a service until it is delivered.
func (d *demo) path(ctx context.Context, node, service string) ([]string, error) {
	p := servicePrefix(service)
	path := []string{node}
	for len(path) < 16 {
		s, err := d.snapshot(ctx, node)
		if err != nil {
			return nil, err
		}
		r, ok := s.FIB[p]
		if !ok {
			return path, fmt.Errorf("%s has no route to %s", node, service)
		}
		if r.Kind != fib.Forward {
			return path, nil
		}
		next := ""
		for _, n := range s.Neighbors {
			if len(r.Hops) > 0 && n.Port == r.Hops[0].Port {
				next = string(n.Neighbor)
			}
		}
		if next == "" {
			return path, fmt.Errorf("%s: next hop port %v has no neighbour", node, r.Hops)
		}
		path = append(path, next)
		node = next
	}
	return path, errors.New("path longer than 16 hops")
}

// onPath finds a link of the path between two SRs (to cut or impair).
func onPath(path []string, f *topo.Fabric) (*topo.Link, bool) {
	for i := 0; i+1 < len(path); i++ {
		a, b := path[i], path[i+1]
		if f.Topo.Nodes[a].Role == topo.RoleSR && f.Topo.Nodes[b].Role == topo.RoleSR {
			return f.Link(a, b)
		}
	}
	return nil, false
}

// load makes calls back to back until stop is closed.
func (d *demo) load(ctx context.Context, stop <-chan struct{}) (calls, failed int, slowest time.Duration) {
	for {
		select {
		case <-stop:
			return
		case <-ctx.Done():
			return
		default:
		}
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		t0 := time.Now()
		_, err := d.fe.Buy(cctx, &shoppb.BuyRequest{User: "ada", Skus: []string{"mug"}})
		cancel()
		calls++
		if err != nil {
			failed++
		}
		slowest = max(slowest, time.Since(t0))
	}
}

func (d *demo) linkCut(ctx context.Context) error {
	link, ok := onPath(d.sum.PathBefore, d.lab.Fabric)
	if !ok {
		return fmt.Errorf("no SR–SR link on the path %v", d.sum.PathBefore)
	}
	name := link.A.Node + "–" + link.B.Node
	d.line("calls keep running while the %s link is cut (as a pulled cable: both ends go down)", name)
	stop := make(chan struct{})
	type result struct {
		calls, failed int
		slowest       time.Duration
	}
	res := make(chan result, 1)
	go func() {
		c, f, s := d.load(ctx, stop)
		res <- result{c, f, s}
	}()
	time.Sleep(200 * time.Millisecond)
	// A fabric that came up a moment ago is still in its SPF back-off's
	// hold-down (RFC 8405), which would delay the reroute by its long
	// wait: cut the link once the fabric has been stable that long, as a
	// cut in a running network finds it.
	time.Sleep(time.Until(d.upAt.Add(controller.DefaultSPFDelay().HoldDown)))
	cut := time.Now()
	if err := d.lab.Fabric.Cut(link); err != nil {
		close(stop)
		return err
	}
	var path []string
	deadline := time.Now().Add(10 * time.Second)
	for {
		p, err := d.path(ctx, "sg1", shop.FrontendService)
		if err == nil && !slices.Equal(p, d.sum.PathBefore) {
			path = p
			break
		}
		if time.Now().After(deadline) {
			close(stop)
			return fmt.Errorf("no reroute within 10 s of the cut")
		}
		time.Sleep(2 * time.Millisecond)
	}
	d.sum.Reroute = time.Since(cut)
	if err := d.waitConverged(ctx, 10*time.Second); err != nil {
		close(stop)
		return err
	}
	time.Sleep(500 * time.Millisecond)
	close(stop)
	r := <-res
	d.sum.CutCalls, d.sum.CutFailed, d.sum.CutSlowest = r.calls, r.failed, r.slowest
	d.sum.PathCut = path
	d.line("the switches at both ends reported the carrier loss, their agents took the adjacency")
	d.line("down at once (a silent failure would cost the %v dead interval), flooded new LSPs,", controller.DefaultTimers().Dead)
	d.line("and the FIBs along the path were rewritten %v after the cut", d.sum.Reroute.Round(time.Millisecond))
	d.line("new path: %s", strings.Join(path, " → "))
	d.line("%d calls during the cut: %d failed; the slowest took %v (QUIC resent what the cut lost)",
		r.calls, r.failed, r.slowest.Round(time.Millisecond))
	if err := d.lab.Fabric.Restore(link); err != nil {
		return err
	}
	if err := d.waitPath(ctx, d.sum.PathBefore, 10*time.Second); err != nil {
		return err
	}
	d.line("link restored: back on %s", strings.Join(d.sum.PathBefore, " → "))
	return nil
}

func (d *demo) waitPath(ctx context.Context, want []string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		p, err := d.path(ctx, "sg1", shop.FrontendService)
		if err == nil && slices.Equal(p, want) && d.converged(ctx) == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("path %v, want %v after %v", p, want, timeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (d *demo) qosEvent(ctx context.Context) error {
	tls, err := d.lab.SCSCTLS("scsc1")
	if err != nil {
		return err
	}
	cfg := scsc.DefaultConfig()
	cfg.ID = "scsc1"
	for n, addr := range d.lab.GNMIAddrs() {
		cfg.Agents = append(cfg.Agents, scsc.AgentConfig{Name: n, Addr: addr})
	}
	sort.Slice(cfg.Agents, func(i, j int) bool { return cfg.Agents[i].Name < cfg.Agents[j].Name })
	cfg.SampleInterval = 200 * time.Millisecond
	cfg.PolicyTTL = 5 * time.Second
	cfg.Hysteresis = scsc.Hysteresis{TriggerAfter: 2, ClearAfter: 2 * time.Second, Improvement: 0.2}
	for _, name := range []string{shop.FrontendService, shop.CartService, shop.CatalogService, userService} {
		s, err := scsc.NewService(name, scsc.Thresholds{MaxDelay: d.opts.MaxDelay})
		if err != nil {
			return err
		}
		cfg.Services = append(cfg.Services, s)
	}
	center, err := scsc.New(&cfg, scsc.WithTLS(tls), scsc.WithLogger(d.opts.Log.With("component", "scsc")))
	if err != nil {
		return err
	}
	sctx, stopSCSC := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- center.Run(sctx) }()
	defer func() { stopSCSC(); <-done }()
	d.line("SCSC (%s) subscribes by gNMI to the %d agents: probe results, link delay, utilisation, LSDB", cfg.ID, len(cfg.Agents))
	d.line("every SG probes every service (reflected by the egress SG in the data plane); SCSC's")
	d.line("condition for the shop's services: a one-way delay below %v from every SG", d.opts.MaxDelay)

	link, ok := onPath(d.sum.PathBefore, d.lab.Fabric)
	if !ok {
		return fmt.Errorf("no SR–SR link on the path %v", d.sum.PathBefore)
	}
	// Both directions, so that replies suffer too.
	im := softswitch.Impairment{Delay: d.opts.QoSDelay}
	set := func(on bool) error {
		for _, ep := range []topo.Endpoint{link.A, link.B} {
			v := softswitch.Impairment{Delay: link.Delay, Rate: link.Capacity}
			if on {
				v = im
			}
			if err := d.lab.Fabric.Switches[ep.Node].SW.SetImpairment(ep.Port, v); err != nil {
				return err
			}
		}
		return nil
	}
	t0 := time.Now()
	if err := set(true); err != nil {
		return err
	}
	d.line("now %s gets %v more delay in each direction (the software switch's port impairment)", link.A.Node+"–"+link.B.Node, d.opts.QoSDelay)
	lat, _, failed := d.measure(ctx, 10)
	if failed > 0 {
		return fmt.Errorf("%d of 10 calls failed on the impaired path (%v)", failed, d.lastErr)
	}
	d.sum.ImpairedP50 = pctl(lat, 0.5)
	d.line("calls slow down: p50 %v", d.sum.ImpairedP50.Round(100*time.Microsecond))
	// Wait for the policy.
	deadline := time.Now().Add(20 * time.Second)
	var path []string
	for {
		p, err := d.path(ctx, "sg1", shop.FrontendService)
		if err == nil && !slices.Equal(p, d.sum.PathBefore) {
			path = p
			break
		}
		if time.Now().After(deadline) {
			st := center.Status()
			return fmt.Errorf("SCSC did not reroute within 20 s (decisions: %v)", st.Decisions)
		}
		time.Sleep(20 * time.Millisecond)
	}
	d.sum.QoSRerouted = time.Since(t0)
	d.sum.PathQoS = path
	for _, dec := range center.Status().Decisions {
		d.line("SCSC %s %s: %s", dec.Action, dec.PolicyID, dec.Reason)
		if len(dec.Path) > 0 {
			d.line("      path %s, set on every node of it, last first", strings.Join(dec.Path, " → "))
		}
		if d.sum.PolicyID == "" {
			d.sum.PolicyID = dec.PolicyID
		}
	}
	d.line("%v after the impairment, sg1's traffic to %s takes %s", d.sum.QoSRerouted.Round(time.Millisecond), shop.FrontendService, strings.Join(path, " → "))
	if err := d.showPolicy(ctx, "sg1"); err != nil {
		return err
	}
	lat, _, failed = d.measure(ctx, d.opts.Calls)
	if failed > 0 {
		return fmt.Errorf("%d of %d calls failed on the steered path (%v)", failed, d.opts.Calls, d.lastErr)
	}
	d.sum.SteeredP50 = pctl(lat, 0.5)
	d.line("calls: p50 %v on the steered path (%v while impaired)", d.sum.SteeredP50.Round(100*time.Microsecond), d.sum.ImpairedP50.Round(100*time.Microsecond))

	if err := set(false); err != nil {
		return err
	}
	d.line("impairment removed: SCSC withdraws the policy once the SPF path has been good for %v", cfg.Hysteresis.ClearAfter)
	if err := d.waitPath(ctx, d.sum.PathBefore, 30*time.Second); err != nil {
		d.line("(the policy stays until it expires: %v)", err)
	} else {
		d.line("back on %s", strings.Join(d.sum.PathBefore, " → "))
	}
	lat, _, failed = d.measure(ctx, d.opts.Calls)
	if failed > 0 {
		return fmt.Errorf("%d of %d calls failed after the impairment (%v)", failed, d.opts.Calls, d.lastErr)
	}
	d.sum.ClearP50 = pctl(lat, 0.5)
	return nil
}

func (d *demo) showPolicy(ctx context.Context, node string) error {
	a, ok := d.lab.Fabric.Agent(node)
	if !ok {
		return nil
	}
	tls, err := d.lab.SCSCTLS("viewer")
	if err != nil {
		return err
	}
	gctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	c, err := gnmi.Dial(gctx, a.GNMIAddr(), tls)
	if err != nil {
		return err
	}
	defer c.Close()
	rs, err := c.Get(gctx, "/dmsc/policies/policy[id=*]/config")
	if err != nil {
		return nil // none yet
	}
	for _, r := range rs {
		if j, ok := r.Value.(gnmi.JSON); ok {
			d.line("%s holds (gNMI Get %s): %s", node, gnmi.PathString(r.Path), j)
		}
	}
	return nil
}

func (d *demo) summary() {
	s := d.sum
	fmt.Fprintf(d.out, "\nSummary\n")
	tw := tabwriter.NewWriter(d.out, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "  fabric converged\t%v\n", s.Converged.Round(time.Millisecond))
	fmt.Fprintf(tw, "  5 pods registered and routed everywhere\t%v\n", s.Registered.Round(time.Millisecond))
	fmt.Fprintf(tw, "  calls by name (frontend → cart → catalog)\tp50 %v, p99 %v\n", s.CallP50.Round(10*time.Microsecond), s.CallP99.Round(10*time.Microsecond))
	fmt.Fprintf(tw, "  link cut: rerouted in\t%v, %d of %d calls failed, slowest %v\n", s.Reroute.Round(time.Millisecond), s.CutFailed, s.CutCalls, s.CutSlowest.Round(time.Millisecond))
	fmt.Fprintf(tw, "  QoS event: SCSC rerouted in\t%v, p50 %v → %v\n", s.QoSRerouted.Round(time.Millisecond), s.ImpairedP50.Round(100*time.Microsecond), s.SteeredP50.Round(100*time.Microsecond))
	tw.Flush()
	fmt.Fprintf(d.out, "\nDone in %v. Run it again with --log-level debug to see every component's log.\n", time.Since(d.start).Round(100*time.Millisecond))
}
