package scsc

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/dmsc-mesh/dmsc/gnmi"
)

// maxDecisions is how many recent decisions Status keeps.
const maxDecisions = 200

// maxPushes bounds the Set jobs in flight, so that a burst of decisions
// does not open thousands of RPCs at once.
const maxPushes = 32

// agentRuntime is the loop's state of one agent.
type agentRuntime struct {
	conn      *agentConn
	client    *gnmi.Client // nil while disconnected
	up        bool
	since     time.Time
	lastErr   string
	lastHeard time.Time
	fresh     bool // its telemetry is in the snapshot
	tel       *AgentTelemetry
	lsdb      *lsdbCopy // nil unless it is an LSDB source
	lsdbWant  bool
}

// installed is a policy the agents hold, as far as SCSC knows.
type installed struct {
	policy  Policy
	nodes   []string // where it is set, in setting order
	setAt   time.Time
	renewAt time.Time
}

// retryState is the backoff of a policy whose push failed.
type retryState struct {
	attempts int
	at       time.Time
	lastErr  string
}

// pushJob is one policy to set, renew or delete.
type pushJob struct {
	id      string
	policy  *Policy  // nil: delete
	prev    []string // nodes that may hold an older version, in setting order
	clients map[string]*gnmi.Client
	doc     []byte
	started time.Time
}

// pushResult is what a push job did.
type pushResult struct {
	job        *pushJob
	ok         bool
	err        error
	failedAt   string   // the node whose Set failed
	rolledBack []string // nodes the policy was deleted from after the failure
	setOrder   []string // nodes set, in order
	finished   time.Time
}

// loop is Run's state, owned by its goroutine.
type loop struct {
	c       *Center
	cfg     *Config
	log     *slog.Logger
	agents  []*agentRuntime
	snap    Snapshot
	decider *Decider

	topoSource string
	topoGen    uint64

	leader    bool
	installed map[string]*installed
	inflight  map[string]bool
	retry     map[string]*retryState
	pushes    sync.WaitGroup
	pushSem   chan struct{}
	pushCtx   context.Context
	events    chan<- event

	decisions []Decision
	lastTick  time.Time
	ingested  uint64 // readings applied, for Status
}

func newLoop(c *Center) *loop {
	l := &loop{
		c: c, cfg: c.cfg, log: c.log,
		snap:      Snapshot{Agents: map[string]*AgentTelemetry{}},
		decider:   NewDecider(c.cfg.Services, c.cfg.Hysteresis),
		installed: map[string]*installed{},
		inflight:  map[string]bool{},
		retry:     map[string]*retryState{},
		pushSem:   make(chan struct{}, maxPushes),
	}
	for i, a := range c.cfg.Agents {
		l.agents = append(l.agents, &agentRuntime{
			conn: &agentConn{idx: i, cfg: a, lsdb: make(chan bool, 1)},
			tel:  NewAgentTelemetry(),
		})
	}
	return l
}

func (l *loop) run(ctx context.Context, events chan event, leads <-chan bool) error {
	l.pushCtx, l.events = ctx, events
	every := max(l.cfg.SampleInterval/2, 10*time.Millisecond)
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev := <-events:
			l.handle(ev, time.Now())
			// Drain what else is queued before deciding again, so that a
			// burst of notifications costs one decision.
			for n := 0; n < 256; n++ {
				select {
				case ev := <-events:
					l.handle(ev, time.Now())
					continue
				default:
				}
				break
			}
		case lead := <-leads:
			l.setLeader(lead)
		case now := <-tick.C:
			l.tick(now)
		}
	}
}

func (l *loop) handle(ev event, now time.Time) {
	if ev.kind == evPushed {
		l.pushed(ev.push)
		return
	}
	a := l.agents[ev.agent]
	name := a.conn.cfg.Name
	switch ev.kind {
	case evTelemetry:
		l.ingested += uint64(len(ev.readings))
		applyTelemetry(a.tel, ev.readings)
		a.lastHeard = now
		if !a.fresh {
			a.fresh = true
			l.snap.Agents[name] = a.tel
		}
	case evLSDB:
		if a.lsdb != nil {
			applyLSDB(a.lsdb, ev.readings)
		}
		a.lastHeard = now
	case evLSDBSync:
		if a.lsdb != nil {
			a.lsdb.synced = true
			a.lsdb.gen++
		}
	case evLSDBReset:
		if a.lsdbWant {
			a.lsdb = newLSDBCopy()
		}
	case evUp:
		a.up, a.client, a.since, a.lastErr = true, ev.client, now, ""
		l.log.Info("scsc: agent connected", "agent", name, "addr", a.conn.cfg.Addr)
		l.chooseLSDBSources()
	case evDown:
		wasUp := a.up
		msg := ev.err.Error()
		if wasUp || a.lastErr != msg {
			l.log.Warn("scsc: agent unreachable", "agent", name, "addr", a.conn.cfg.Addr, "err", msg)
		}
		if wasUp || a.since.IsZero() {
			a.since = now
		}
		a.up, a.client, a.lastErr = false, nil, msg
		if a.lsdb != nil {
			a.lsdb.synced = false
		}
		l.chooseLSDBSources()
	}
}

// chooseLSDBSources follows the LSDB of the first lsdb_sources agents (in
// config order) that are connected: any agent's LSDB is the domain's, and
// following a few rather than all keeps SCSC's load independent of the
// number of agents.
func (l *loop) chooseLSDBSources() {
	n := 0
	for _, a := range l.agents {
		want := a.up && n < l.cfg.LSDBSources
		if want {
			n++
		}
		if want != a.lsdbWant {
			a.lsdbWant = want
			if !want {
				a.lsdb = nil
			}
			a.conn.setLSDB(want)
		}
	}
}

func (l *loop) tick(now time.Time) {
	l.lastTick = now
	stale := l.cfg.staleAfter()
	for _, a := range l.agents {
		if a.fresh && now.Sub(a.lastHeard) > stale {
			a.fresh = false
			delete(l.snap.Agents, a.conn.cfg.Name)
			// Start afresh when it is back: old values must not count as
			// new samples.
			a.tel = NewAgentTelemetry()
			l.log.Warn("scsc: agent's telemetry aged out", "agent", a.conn.cfg.Name, "silent", now.Sub(a.lastHeard).Round(time.Millisecond))
		}
	}
	l.updateTopology()
	res := l.decider.Decide(&l.snap, now)
	for _, d := range res.Decisions {
		l.logDecision(d)
	}
	if len(res.Decisions) > 0 {
		l.decisions = append(l.decisions, res.Decisions...)
		if over := len(l.decisions) - maxDecisions; over > 0 {
			l.decisions = slices.Delete(l.decisions, 0, over)
		}
	}
	if l.leader {
		l.reconcile(res.Policies, now)
	}
	l.publishStatus(res.Policies, now)
}

// updateTopology rebuilds the topology when the LSDB it comes from changed,
// or another source has to be used.
func (l *loop) updateTopology() {
	for _, a := range l.agents {
		if a.lsdb == nil || !a.lsdb.synced || !a.up {
			continue
		}
		name := a.conn.cfg.Name
		if name != l.topoSource || a.lsdb.gen != l.topoGen || l.snap.Topology == nil {
			l.snap.Topology = BuildTopology(a.lsdb.frags)
			if name != l.topoSource {
				l.log.Info("scsc: topology from the LSDB of", "agent", name, "nodes", len(l.snap.Topology.nodes))
			}
			l.topoSource, l.topoGen = name, a.lsdb.gen
		}
		return
	}
	// No source: the last topology stands until one is back.
}

func (l *loop) logDecision(d Decision) {
	attrs := []any{"action", d.Action, "service", d.Service, "reason", d.Reason}
	if d.PolicyID != "" {
		attrs = append(attrs, "policy", d.PolicyID)
	}
	if d.Ingress != "" {
		attrs = append(attrs, "ingress", d.Ingress)
	}
	if d.Instance != 0 {
		attrs = append(attrs, "instance", d.Instance)
	}
	if len(d.Path) > 0 {
		attrs = append(attrs, "path", strings.Join(d.Path, ","))
	}
	l.log.Info("scsc: decision", attrs...)
}

func (l *loop) setLeader(lead bool) {
	if lead == l.leader {
		return
	}
	l.leader = lead
	if lead {
		l.log.Info("scsc: leading: pushing policies", "id", l.cfg.ID)
		return
	}
	// The new leader sets the same ids; what this replica set expires or is
	// taken over, so nothing is deleted here.
	l.log.Warn("scsc: no longer the leader: pushing stops", "id", l.cfg.ID)
	l.installed = map[string]*installed{}
	l.retry = map[string]*retryState{}
}

// reconcile starts the push jobs that make the agents hold the policies
// wanted: new or changed ones set, ones due for renewal set again, ones no
// longer wanted deleted.
func (l *loop) reconcile(want []Policy, now time.Time) {
	wanted := make(map[string]bool, len(want))
	for i := range want {
		p := &want[i]
		wanted[p.ID] = true
		if l.inflight[p.ID] {
			continue
		}
		inst := l.installed[p.ID]
		if inst != nil && inst.policy.Same(p) && now.Before(inst.renewAt) {
			continue
		}
		if r := l.retry[p.ID]; r != nil && now.Before(r.at) {
			continue
		}
		var prev []string
		if inst != nil {
			prev = inst.nodes
		}
		l.start(&pushJob{id: p.ID, policy: p, prev: prev, started: now})
	}
	for id, inst := range l.installed {
		if !wanted[id] && !l.inflight[id] {
			l.start(&pushJob{id: id, prev: inst.nodes, started: now})
		}
	}
	for id := range l.retry {
		if !wanted[id] {
			delete(l.retry, id)
		}
	}
}

// start runs a push job in a goroutine the loop waits for at exit.
func (l *loop) start(j *pushJob) {
	j.clients = map[string]*gnmi.Client{}
	nodes := slices.Clone(j.prev)
	if j.policy != nil {
		nodes = append(nodes, j.policy.Nodes()...)
		doc, err := json.Marshal(j.policy.Doc(l.cfg.PolicyTTL, l.cfg.ID))
		if err != nil {
			l.log.Error("scsc: policy does not encode", "policy", j.id, "err", err)
			return
		}
		j.doc = doc
	}
	for _, n := range nodes {
		for _, a := range l.agents {
			if a.conn.cfg.Name == n && a.client != nil {
				j.clients[n] = a.client
			}
		}
	}
	l.inflight[j.id] = true
	l.pushes.Go(func() {
		select {
		case l.pushSem <- struct{}{}:
		case <-l.pushCtx.Done():
			return
		}
		res := l.c.runPush(l.pushCtx, j)
		<-l.pushSem
		// The loop may have ended; the result is then of no use.
		select {
		case l.events <- event{kind: evPushed, push: res}:
		case <-l.pushCtx.Done():
		}
	})
}

func (l *loop) pushed(r *pushResult) {
	j := r.job
	delete(l.inflight, j.id)
	if !l.leader {
		return
	}
	if j.policy == nil {
		delete(l.installed, j.id)
		if r.err != nil {
			l.log.Warn("scsc: policy delete incomplete; the rest expires at its ttl", "policy", j.id, "err", r.err)
		} else {
			l.log.Info("scsc: policy deleted", "policy", j.id, "nodes", strings.Join(r.setOrder, ","))
		}
		return
	}
	if !r.ok {
		delete(l.installed, j.id)
		rs := l.retry[j.id]
		if rs == nil {
			rs = &retryState{}
			l.retry[j.id] = rs
		}
		rs.attempts++
		wait := min(time.Second<<min(rs.attempts-1, 5), 30*time.Second)
		rs.at, rs.lastErr = r.finished.Add(wait), fmt.Sprintf("%s: %v", r.failedAt, r.err)
		l.log.Warn("scsc: policy set failed; rolled back", "policy", j.id, "node", r.failedAt, "err", r.err,
			"rolled_back", strings.Join(r.rolledBack, ","), "retry_in", wait)
		return
	}
	delete(l.retry, j.id)
	prev := l.installed[j.id]
	l.installed[j.id] = &installed{policy: *j.policy, nodes: j.policy.Nodes(), setAt: j.started,
		renewAt: j.started.Add(l.cfg.PolicyTTL / 3)}
	if prev == nil || !prev.policy.Same(j.policy) {
		l.log.Info("scsc: policy set", "policy", j.id, "order", strings.Join(r.setOrder, ","), "ttl", l.cfg.PolicyTTL)
	} else {
		l.log.Debug("scsc: policy renewed", "policy", j.id)
	}
}
