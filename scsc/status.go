package scsc

import (
	"slices"
	"time"
)

// Status is the Center's state for `dmsc show policies`, GET /status and
// tests: the policies it wants and what the agents hold, its recent
// decisions with their reasons, and every agent's connection.
type Status struct {
	ID     string    `json:"id"`
	Leader bool      `json:"leader"`
	Time   time.Time `json:"time"` // of the last tick
	// Topology is the live topology's size and the agent whose LSDB it is.
	Topology  TopologyStatus `json:"topology"`
	Agents    []AgentStatus  `json:"agents"`
	Policies  []PolicyStatus `json:"policies"`
	Decisions []Decision     `json:"decisions"` // the most recent last
	// Ingested counts the telemetry readings applied since Run started.
	Ingested uint64 `json:"ingested"`
}

// TopologyStatus summarises the topology.
type TopologyStatus struct {
	Source string `json:"source,omitempty"`
	Nodes  int    `json:"nodes"`
	Edges  int    `json:"edges"` // two-way adjacencies, counted once per direction
}

// AgentStatus is one agent's connection.
type AgentStatus struct {
	Name      string    `json:"name"`
	Addr      string    `json:"addr"`
	Connected bool      `json:"connected"`
	Since     time.Time `json:"since"` // of the last change of Connected
	LastError string    `json:"last_error,omitempty"`
	LastHeard time.Time `json:"last_heard"`
	// Fresh says whether its telemetry counts (heard within stale_after).
	Fresh      bool `json:"fresh"`
	LSDBSource bool `json:"lsdb_source"`
	Probes     int  `json:"probes"`
	Links      int  `json:"links"`
}

// PolicyStatus is one policy SCSC wants, and where it stands.
type PolicyStatus struct {
	Policy
	// State is "installed" (set on every node), "pending" (being set, or
	// wanted while this replica is not the leader) or "failed" (rolled back;
	// retried at RetryAt).
	State     string    `json:"state"`
	Nodes     []string  `json:"nodes,omitempty"` // where it is set, in setting order
	LastSet   time.Time `json:"last_set,omitzero"`
	Expires   time.Time `json:"expires,omitzero"` // unless renewed
	LastError string    `json:"last_error,omitempty"`
	RetryAt   time.Time `json:"retry_at,omitzero"`
}

// Policy states.
const (
	PolicyInstalled = "installed"
	PolicyPending   = "pending"
	PolicyFailed    = "failed"
)

// String is a one-line form of an agent's state for logs and tests.
func (a AgentStatus) String() string {
	s := a.Name + " " + a.Addr
	if a.Connected {
		s += " connected"
	} else {
		s += " down"
	}
	if a.LastError != "" {
		s += " (" + a.LastError + ")"
	}
	return s
}

// Policy returns the status of a policy by id.
func (s Status) Policy(id string) (PolicyStatus, bool) {
	i := slices.IndexFunc(s.Policies, func(p PolicyStatus) bool { return p.ID == id })
	if i < 0 {
		return PolicyStatus{}, false
	}
	return s.Policies[i], true
}

func (l *loop) publishStatus(want []Policy, now time.Time) {
	s := Status{ID: l.cfg.ID, Leader: l.leader, Time: now, Topology: TopologyStatus{Source: l.topoSource}, Ingested: l.ingested}
	if t := l.snap.Topology; t != nil {
		s.Topology.Nodes = len(t.nodes)
		for _, es := range t.out {
			s.Topology.Edges += len(es)
		}
	}
	for _, a := range l.agents {
		st := AgentStatus{Name: a.conn.cfg.Name, Addr: a.conn.cfg.Addr, Connected: a.up, Since: a.since,
			LastError: a.lastErr, LastHeard: a.lastHeard, Fresh: a.fresh, LSDBSource: a.lsdbWant}
		if a.fresh {
			st.Probes, st.Links = len(a.tel.Probes), len(a.tel.Links)
		}
		s.Agents = append(s.Agents, st)
	}
	for _, p := range want {
		ps := PolicyStatus{Policy: p, State: PolicyPending}
		if inst := l.installed[p.ID]; inst != nil && inst.policy.Same(&p) {
			ps.State, ps.Nodes, ps.LastSet, ps.Expires = PolicyInstalled, inst.nodes, inst.setAt, inst.setAt.Add(l.cfg.PolicyTTL)
		}
		if r := l.retry[p.ID]; r != nil && !l.inflight[p.ID] && ps.State != PolicyInstalled {
			ps.State, ps.LastError, ps.RetryAt = PolicyFailed, r.lastErr, r.at
		}
		s.Policies = append(s.Policies, ps)
	}
	s.Decisions = slices.Clone(l.decisions)
	l.c.setStatus(s)
}
