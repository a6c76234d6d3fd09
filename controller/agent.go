// Package controller is the per-switch DMSC agent (DESIGN §6): it connects to
// its switch over P4Runtime, finds neighbours with in-band HELLOs, originates
// and floods signed LSPs, runs SPF with back-off and programs the FIB as a
// make-before-break diff. One event loop owns all protocol state; the pure
// parts (adjacencies, SPF delay, LSDB, route computation, FIB planning) live
// in their own types and packages and are tested alone.
package controller

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	p4v1 "github.com/p4lang/p4runtime/go/p4/v1"

	"github.com/dmsc-mesh/dmsc/controller/lsmsg"
	"github.com/dmsc-mesh/dmsc/gnmi"
	"github.com/dmsc-mesh/dmsc/p4"
	"github.com/dmsc-mesh/dmsc/p4rt"
	"github.com/dmsc-mesh/dmsc/p4rt/p4info"
	"github.com/dmsc-mesh/dmsc/p4rt/portstatus"
	"github.com/dmsc-mesh/dmsc/spf"
	"github.com/dmsc-mesh/dmsc/wire"
)

// Agent is one switch's controller. Create it with New and run it with Run;
// the inspection methods (Snapshot, ...) are safe to call from any goroutine
// while it runs.
type Agent struct {
	cfg    Config
	log    *slog.Logger
	t      Timers
	signer lsmsg.Signer

	nodeKey    wire.Key
	nodePrefix spf.Prefix
	schema     *p4info.Schema

	// calls carries functions to run on the loop (inspection); events
	// carries the results of the loop's workers (SPA calls) back to it.
	calls   chan func()
	events  chan func()
	workers sync.WaitGroup
	// running is closed when Run starts its loop; stopped when it ends.
	running, stopped chan struct{}

	// Loop state: touched only by the goroutine running Run.
	loop *loopState
	// gnmiAddr is set before running is closed.
	gnmiAddr string
}

// loopState is everything the event loop owns.
type loopState struct {
	start  time.Time
	client *p4rt.Client
	w      *writer

	ports  map[uint16]*portState
	fabric []uint16 // fabric ports, sorted
	adj    *Adjacencies
	db     *spf.LSDB
	rib    *spf.RIB
	spf    SPFDelay
	// prcPending: prefixes changed without the topology (lsdbChanged).
	prcPending bool
	nbrs       map[uint16]*neighbor
	own        *ownFragments
	routesGen  uint64

	// warm: a warm restart left the switch's FIB in place; FIB writes wait
	// until warmUntil or until every fabric port is up and synced.
	warm      bool
	warmUntil time.Duration

	// local holds what this node itself announces besides its node key
	// (SG: service and instance prefixes), and how to deliver it.
	local map[spf.Prefix]localRoute

	counters Counters
	logged   map[string]bool
	sg       *sgState
	policy   *policyTable
	probes   map[uint32]*probeWait
	probeSeq uint32

	// Telemetry (telemetry.go, probing.go).
	gnmi          *gnmi.Target
	nextPublish   time.Duration
	publishedLSPs map[spf.FragmentID]bool
	txBps         map[uint16]uint64
	nextProbe     time.Duration
	linkProbes    map[uint16]*probeStats
	targets       map[spf.Prefix]*probeTarget
	services      map[spf.Prefix]bool
	instances     map[spf.Prefix]map[spf.Prefix]bool
}

// portState is a configured port with its MAC and HELLO schedule.
type portState struct {
	Port
	mac       [6]byte
	nextHello time.Duration
	// adjChanged: when the adjacency last went up or down (Snapshot).
	adjChanged time.Time
}

// localRoute is a prefix this node announces and delivers itself.
type localRoute struct {
	metric uint32
	hops   []localHop // deliver_local members; empty: ToCPU
}

type localHop struct {
	port     uint16
	instance uint32
	mac      uint64
	weight   int32
}

// Counters are what the agent dropped or did, by reason; Snapshot reports
// them.
type Counters struct {
	HellosSent, HellosReceived uint64
	// CarrierLosses counts fabric ports the switch reported down.
	CarrierLosses          uint64
	LSPsSent, LSPsReceived uint64
	LSPsOriginated         uint64
	AcksSent, AcksReceived uint64
	SummariesSent          uint64
	RequestsSent           uint64
	SPFRuns, PartialRuns   uint64
	ProbesAnswered         uint64
	FIBWrites              uint64
	// Dropped counts control frames dropped, by reason.
	Dropped map[string]uint64
}

// New checks cfg and returns an agent ready to Run.
func New(cfg Config) (*Agent, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("controller: %s: %w", cfg.NodeID, err)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.DeviceID == 0 {
		cfg.DeviceID = 1
	}
	if cfg.ElectionID == (p4rt.ElectionID{}) {
		cfg.ElectionID = p4rt.ElectionID{Low: 1}
	}
	t := cfg.Timers
	t.fill()
	name, _ := wire.NodeName(string(cfg.NodeID))
	key := wire.KeyOf(name)
	a := &Agent{
		cfg:        cfg,
		log:        cfg.Logger.With("node", string(cfg.NodeID)),
		t:          t,
		signer:     lsmsg.Signer{ID: cfg.NodeID, Key: cfg.Key},
		nodeKey:    key,
		nodePrefix: spf.Prefix{Key: key, Len: uint8(key.PrefixLen())},
		calls:      make(chan func()),
		events:     make(chan func(), 1024),
		running:    make(chan struct{}),
		stopped:    make(chan struct{}),
	}
	var err error
	if a.schema, err = a.pipelineSchema(); err != nil {
		return nil, fmt.Errorf("controller: %s: pipeline: %w", cfg.NodeID, err)
	}
	if cfg.Role == RoleSG {
		if err := a.checkSG(); err != nil {
			return nil, fmt.Errorf("controller: %s: %w", cfg.NodeID, err)
		}
	}
	return a, nil
}

func (a *Agent) pipelineSchema() (*p4info.Schema, error) {
	if a.cfg.Pipeline.P4InfoText == nil {
		return p4.Schema()
	}
	info, err := p4info.ParseText(a.cfg.Pipeline.P4InfoText)
	if err != nil {
		return nil, err
	}
	return p4info.New(info)
}

func (a *Agent) cookie() uint64 {
	if a.cfg.Pipeline.Cookie != 0 {
		return a.cfg.Pipeline.Cookie
	}
	h := fnv.New64a()
	if a.cfg.Pipeline.P4InfoText != nil {
		h.Write(a.cfg.Pipeline.P4InfoText)
	} else {
		h.Write(p4.P4InfoText())
	}
	h.Write([]byte{0})
	h.Write(a.cfg.Pipeline.DeviceConfig)
	return h.Sum64() | 1
}

// NodeKey is the node's own key, /_node/<id>.
func (a *Agent) NodeKey() wire.Key { return a.nodeKey }

// ID is the node's router id.
func (a *Agent) ID() spf.NodeID { return a.cfg.NodeID }

// portMAC derives a stable, locally administered MAC for a port from the
// node id, so that neighbours' next hops survive an agent restart.
func portMAC(node spf.NodeID, port uint16) [6]byte {
	h := sha256.Sum256([]byte(node))
	return [6]byte{0x02, h[0], h[1], h[2], byte(port >> 8), byte(port)}
}

func macUint(m [6]byte) uint64 {
	var v uint64
	for _, b := range m {
		v = v<<8 | uint64(b)
	}
	return v
}

// Run connects to the switch and runs the agent until ctx ends. It returns
// nil when ctx ended and an error when the switch could not be set up.
// Run runs once.
func (a *Agent) Run(ctx context.Context) error {
	select {
	case <-a.running:
		return errors.New("controller: Run called twice")
	default:
	}
	defer close(a.stopped)
	l, err := a.connect(ctx)
	if err != nil {
		close(a.running)
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	a.loop = l
	defer l.client.Close()
	wctx, stopWriter := context.WithCancel(ctx)
	writerDone := make(chan struct{})
	go func() { defer close(writerDone); l.w.run(wctx) }()
	defer func() { stopWriter(); <-writerDone }()
	if a.cfg.GNMI != nil {
		stop, err := a.startGNMI(ctx)
		if err != nil {
			close(a.running)
			return fmt.Errorf("controller: %s: %w", a.cfg.NodeID, err)
		}
		defer stop()
	}
	close(a.running)
	a.loopRun(ctx)
	return nil
}

// connect dials the switch, becomes primary, pushes or verifies the
// pipeline and reads back what the switch holds.
func (a *Agent) connect(ctx context.Context) (*loopState, error) {
	c, err := p4rt.Dial(ctx, a.cfg.Switch, p4rt.Options{
		DeviceID:    a.cfg.DeviceID,
		ElectionID:  a.cfg.ElectionID,
		Logger:      a.log.With("component", "p4rt"),
		DialOptions: a.cfg.DialOptions,
		Backoff:     p4rt.Backoff{Initial: 50 * time.Millisecond, Max: 2 * time.Second},
	})
	if err != nil {
		return nil, fmt.Errorf("controller: %s: switch %s: %w", a.cfg.NodeID, a.cfg.Switch, err)
	}
	fail := func(err error) (*loopState, error) {
		c.Close()
		return nil, err
	}
	if err := c.WaitPrimary(ctx); err != nil {
		return fail(fmt.Errorf("controller: %s: waiting to be primary on %s: %w", a.cfg.NodeID, a.cfg.Switch, err))
	}
	kept, err := c.VerifyOrPush(ctx, a.schema.P4Info(), a.cfg.Pipeline.DeviceConfig, a.cookie())
	if err != nil {
		return fail(fmt.Errorf("controller: %s: pipeline on %s: %w", a.cfg.NodeID, a.cfg.Switch, err))
	}
	var found []*p4v1.Entity
	if kept {
		found, err = c.Read(ctx, p4rt.AllTableEntries(), p4rt.Members(0), p4rt.Groups(0))
		if err != nil {
			return fail(fmt.Errorf("controller: %s: reading the switch back: %w", a.cfg.NodeID, err))
		}
	}
	w, err := newWriter(c, a.schema, found, a.log.With("component", "fib"))
	if err != nil {
		return fail(fmt.Errorf("controller: %s: %w", a.cfg.NodeID, err))
	}
	l := &loopState{
		start:  time.Now(),
		client: c,
		w:      w,
		ports:  map[uint16]*portState{},
		adj:    NewAdjacencies(a.cfg.NodeID, a.t.Dead),
		nbrs:   map[uint16]*neighbor{},
		spf:    a.t.SPF,
		local:  map[spf.Prefix]localRoute{},
		logged: map[string]bool{},
		counters: Counters{
			Dropped: map[string]uint64{},
		},
	}
	l.db = spf.New(spf.Options{
		Self:            a.cfg.NodeID,
		LSPLifetime:     a.t.LSPLifetime,
		RefreshInterval: a.t.Refresh,
		ZeroAgeLifetime: a.t.PurgeHold,
		Seal:            a.signer.Seal,
	})
	l.rib = spf.NewRIB(a.cfg.NodeID)
	l.own = newOwnFragments(a.cfg.NodeID)
	roles := map[uint16]int{}
	for _, p := range a.cfg.Ports {
		ps := &portState{Port: p, mac: portMAC(a.cfg.NodeID, p.Num)}
		if ps.Metric == 0 {
			ps.Metric = 10
		}
		l.ports[p.Num] = ps
		switch p.Kind {
		case PortFabric:
			l.fabric = append(l.fabric, p.Num)
			l.adj.AddPort(p.Num)
			roles[p.Num] = p4.RoleFabric
		case PortPod:
			roles[p.Num] = p4.RolePod
		}
	}
	slices.Sort(l.fabric)
	// HELLOs start spread over one interval, so that ports do not fire
	// together.
	for i, port := range l.fabric {
		l.ports[port].nextHello = time.Duration(i) * a.t.Hello / time.Duration(len(l.fabric)+1)
	}
	if kept {
		l.warm = true
		l.warmUntil = a.t.WarmHold
		a.log.Info("warm restart: the switch kept its pipeline; its FIB stays until the agent has relearned the network",
			"entries", len(found), "hold", a.t.WarmHold)
	} else {
		a.log.Info("pipeline pushed", "switch", a.cfg.Switch)
	}
	w.setPortRoles(roles)
	// The loop learns when the switch took a generation: SG answers wait
	// for their src_guard and delivery entries to be on the switch.
	w.onApplied = func(uint64) {
		select {
		case a.events <- func() {}:
		default: // the loop is busy anyway; its next step sees it
		}
	}
	if a.cfg.Role == RoleSG {
		l.sg = a.newSGState()
	}
	// The node's own key goes to its CPU port.
	l.local[a.nodePrefix] = localRoute{}
	l.own.setPrefix(spf.PrefixReach{Prefix: a.nodePrefix})
	return l, nil
}

func (a *Agent) now() time.Duration { return time.Since(a.loop.start) }

// loopRun is the event loop.
func (a *Agent) loopRun(ctx context.Context) {
	l := a.loop
	timer := time.NewTimer(0)
	defer timer.Stop()
	pins := l.client.PacketIns()
	roles := l.client.RoleChanges()
	carrier := l.client.PortStatus()
	for {
		select {
		case <-ctx.Done():
			a.shutdown()
			return
		case pi, ok := <-pins:
			if !ok {
				pins = nil
				continue
			}
			a.packetIn(pi)
			// Drain what else is waiting before acting on it all at once.
			for drained := 0; drained < 256; drained++ {
				select {
				case pi, ok := <-pins:
					if !ok {
						pins = nil
						drained = 256
						continue
					}
					a.packetIn(pi)
					continue
				default:
				}
				break
			}
		case ps := <-carrier:
			a.carrierChanged(ps)
		case rs := <-roles:
			a.roleChanged(rs)
		case fn := <-a.calls:
			fn()
		case fn := <-a.events:
			fn()
		case <-timer.C:
		}
		next := a.step()
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		timer.Reset(max(next-a.now(), 0))
	}
}

// carrierChanged handles the switch's word that a port's link went down
// or came back (package p4rt/portstatus).
func (a *Agent) carrierChanged(ps portstatus.Status) {
	l := a.loop
	if ps.Port > math.MaxUint16 {
		return
	}
	port := uint16(ps.Port)
	if _, fabric := l.adj.Get(port); !fabric {
		return // a pod port: keepalives decide about pods
	}
	now := a.now()
	if ps.Up {
		a.log.Info("carrier up", "port", port)
	} else {
		l.counters.CarrierLosses++
		a.log.Info("carrier lost", "port", port)
	}
	for _, ch := range l.adj.SetCarrier(port, ps.Up) {
		a.adjacencyChanged(ch, now)
	}
	if ps.Up {
		// Say hello at once: the neighbour's side comes up a HELLO
		// interval sooner.
		if ps, ok := l.ports[port]; ok {
			ps.nextHello = now
		}
	}
}

func (a *Agent) roleChanged(rs p4rt.RoleState) {
	switch rs {
	case p4rt.Primary:
		a.log.Info("primary on the switch again")
		a.loop.w.kick()
	default:
		a.log.Warn("not primary on the switch: FIB writes wait", "role", rs.String())
	}
}

// step does everything that is due and returns when to come back.
func (a *Agent) step() time.Duration {
	l := a.loop
	now := a.now()
	// Adjacencies first: a dead neighbour changes what is flooded where.
	for _, ch := range l.adj.Expire(now) {
		a.adjacencyChanged(ch, now)
	}
	a.sendHellos(now)
	if res := l.db.Expire(now); len(res.Purged)+len(res.Refreshed)+len(res.Removed) > 0 || res.Err != nil {
		a.expired(res, now)
	}
	if l.sg != nil {
		a.sgStep(now)
	}
	a.expirePolicies(now)
	a.originate(now)
	a.flood(now)
	a.runSPF(now)
	a.probing(now)
	if l.gnmi != nil && now >= l.nextPublish {
		l.nextPublish = now + a.publishInterval()
		a.publishState(now)
	}
	return a.nextDeadline(now)
}

// nextDeadline is the earliest time anything is due.
func (a *Agent) nextDeadline(now time.Duration) time.Duration {
	l := a.loop
	next := now + time.Second
	consider := func(t time.Duration, ok bool) {
		if ok && t < next {
			next = t
		}
	}
	for _, port := range l.fabric {
		consider(l.ports[port].nextHello, true)
	}
	consider(l.adj.NextExpiry())
	consider(l.db.NextDeadline())
	consider(l.spf.Next())
	// A partial calculation is due at once, unless a topology change
	// waits for the back-off: then it runs with the full one.
	consider(now, l.prcPending && !l.db.PendingTopology())
	consider(l.own.nextDue(a.t.LSPMinInterval))
	for _, n := range l.nbrs {
		consider(n.nextDue())
	}
	if l.warm {
		consider(l.warmUntil, true)
	}
	if l.sg != nil {
		consider(a.sgNextDeadline())
	}
	consider(a.nextPolicyExpiry())
	if a.probeInterval() > 0 {
		consider(l.nextProbe, true)
	}
	if l.gnmi != nil {
		consider(l.nextPublish, true)
	}
	return max(next, now)
}

func (a *Agent) publishInterval() time.Duration {
	if a.cfg.GNMI == nil || a.cfg.GNMI.Interval <= 0 {
		return time.Second
	}
	return a.cfg.GNMI.Interval
}

func (a *Agent) shutdown() {
	a.log.Info("agent stopping")
	a.sgShutdown()
	a.workers.Wait()
}

// do runs fn on the loop and waits for it; it fails when the agent is not
// running.
func (a *Agent) do(ctx context.Context, fn func()) error {
	select {
	case <-a.running:
	case <-ctx.Done():
		return ctx.Err()
	}
	if a.loop == nil {
		return errors.New("controller: agent did not start")
	}
	done := make(chan struct{})
	wrapped := func() { fn(); close(done) }
	select {
	case a.calls <- wrapped:
	case <-a.stopped:
		return errors.New("controller: agent stopped")
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// logOnce logs a problem the first time it happens for key (an origin and a
// reason), so that a flood of bad LSPs does not flood the log.
func (a *Agent) logOnce(key, msg string, args ...any) {
	if a.loop.logged[key] {
		return
	}
	if len(a.loop.logged) > 10000 {
		clear(a.loop.logged)
	}
	a.loop.logged[key] = true
	a.log.Warn(msg, args...)
}

func (a *Agent) drop(reason string) { a.loop.counters.Dropped[reason]++ }

// jitter spreads d by ±10%, so that timers of neighbours do not lock step.
func jitter(d time.Duration) time.Duration {
	return d - d/10 + time.Duration(rand.Int64N(int64(d/5)+1))
}
