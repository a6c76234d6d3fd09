// Package fib turns routes into P4Runtime updates for the DMSC pipeline. It
// keeps what it has installed on one switch (routes, next-hop groups and
// their members) and, given the routes the switch should have, plans the
// updates that get it there as a diff, ordered make-before-break: members and
// groups that new routes need go in before the routes, routes come out before
// the groups they used. It is pure: the agent sends each plan's phases in
// order and calls Commit when the switch took them.
package fib

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	p4v1 "github.com/p4lang/p4runtime/go/p4/v1"

	"github.com/dmsc-mesh/dmsc/p4"
	"github.com/dmsc-mesh/dmsc/p4rt/p4info"
	"github.com/dmsc-mesh/dmsc/spf"
)

// Kind is what a route does with a frame.
type Kind uint8

// Route kinds, the actions of the fib_* tables.
const (
	Forward Kind = iota + 1 // set_nexthop_group: to fabric neighbours
	Local                   // deliver_local: to one of this SG's instances
	ToCPU                   // to_cpu: the node's own key
	Drop                    // drop
)

func (k Kind) String() string {
	switch k {
	case Forward:
		return "forward"
	case Local:
		return "local"
	case ToCPU:
		return "to_cpu"
	case Drop:
		return "drop"
	}
	return "kind(" + strconv.Itoa(int(k)) + ")"
}

// Hop is a next hop (Forward) or a local instance (Local): the port, the
// Ethernet address to write, the instance id (Local only) and a weight (≥ 1).
type Hop struct {
	Port     uint16
	DMAC     uint64
	Instance uint32
	Weight   int32
}

// Route is what one prefix should do.
type Route struct {
	Kind Kind
	Hops []Hop // Forward and Local; order does not matter
}

// Routes is the FIB a switch should have.
type Routes map[spf.Prefix]Route

// MaxGroups bounds group ids: the pipeline's group_id is 16 bits and 0 is
// not used.
const MaxGroups = 1<<16 - 1

// Programmer remembers what it installed on one switch.
type Programmer struct {
	s *p4info.Schema

	routes  map[spf.Prefix]installed
	groups  map[string]*group // by content key
	members map[string]*member

	freeGroups  []uint32
	nextGroup   uint32
	nextMember  uint32
	freeMembers []uint32
}

type installed struct {
	kind  Kind
	group *group // Forward, Local
}

type group struct {
	id      uint32
	local   bool
	key     string
	members []*member
	weights []int32
	refs    int // routes using it
	// noEntry marks a group Recover found without its group-table entry:
	// deleting it deletes the group alone.
	noEntry bool
}

type member struct {
	id    uint32
	local bool
	hop   Hop // weight ignored
	key   string
	refs  int // groups using it
}

// New starts a programmer for a switch whose FIB is empty.
func New(s *p4info.Schema) *Programmer {
	return &Programmer{
		s:          s,
		routes:     map[spf.Prefix]installed{},
		groups:     map[string]*group{},
		members:    map[string]*member{},
		nextGroup:  1,
		nextMember: 1,
	}
}

// Plan is the updates that move the switch from what is installed to the
// desired routes, in phases that must be written in order; each phase may be
// one batched Write.
type Plan struct {
	Phases [][]*p4v1.Update
	next   *Programmer // the state after the plan, installed by Commit
}

// Len is the number of updates in the plan.
func (p *Plan) Len() int {
	n := 0
	for _, ph := range p.Phases {
		n += len(ph)
	}
	return n
}

// Commit records that the switch took every phase of plan (a Plan's; a
// PlanChanges plan is recorded already).
func (p *Programmer) Commit(plan *Plan) {
	if plan.next != nil {
		*p = *plan.next
	}
}

// Routes returns what the programmer believes is installed.
func (p *Programmer) Routes() Routes {
	out := make(Routes, len(p.routes))
	for pfx, r := range p.routes {
		rt := Route{Kind: r.kind}
		if r.group != nil {
			for i, m := range r.group.members {
				h := m.hop
				h.Weight = r.group.weights[i]
				rt.Hops = append(rt.Hops, h)
			}
		}
		out[pfx] = rt
	}
	return out
}

// Plan computes the updates for desired. It does not change p: Commit the
// plan once the switch has taken it, or drop it if a write failed (and plan
// again, after reading the switch back if need be). Its cost is linear in
// the routes installed and desired; PlanChanges costs what changed.
func (p *Programmer) Plan(desired Routes) (*Plan, error) {
	next := p.clone()
	changes := make(map[spf.Prefix]*Route, len(desired)+len(next.routes))
	for pfx := range next.routes {
		if _, ok := desired[pfx]; !ok {
			changes[pfx] = nil
		}
	}
	for pfx, r := range desired {
		changes[pfx] = &r
	}
	plan, err := next.plan(changes, true)
	if err != nil {
		return nil, err
	}
	plan.next = next
	return plan, nil
}

// PlanChanges plans the updates for changed routes only (nil: remove the
// route) and records them in p at once, without the copy Plan makes: its
// cost is that of the changes, not of the whole FIB. If the switch refuses
// the plan, or PlanChanges fails, p no longer describes the switch: rebuild
// it with Recover from a read-back. Commit of its plan does nothing.
func (p *Programmer) PlanChanges(changes map[spf.Prefix]*Route) (*Plan, error) {
	for pfx, r := range changes {
		if r != nil {
			if err := validate(pfx, *r); err != nil {
				return nil, err
			}
		}
	}
	return p.plan(changes, false)
}

// plan applies changes to p (the copy, for Plan) and returns the updates
// that make the switch follow, make-before-break. sweep looks for unused
// groups and members everywhere (what Recover found unused too), not only
// among those the changes let go.
func (p *Programmer) plan(changes map[spf.Prefix]*Route, sweep bool) (*Plan, error) {
	var (
		newMembers, newGroups, groupEntries []*p4v1.Update
		routeAdds, routeDels                []*p4v1.Update
		oldGroupEntries, oldGroups, oldMems []*p4v1.Update
	)
	// Deterministic order: tests and logs read better, and BMv2 sees the same
	// batches for the same input.
	prefixes := make([]spf.Prefix, 0, len(changes))
	for pfx := range changes {
		prefixes = append(prefixes, pfx)
	}
	slices.SortFunc(prefixes, spf.Prefix.Compare)

	released := map[*group]bool{} // groups that lost a route
	for _, pfx := range prefixes {
		want := changes[pfx]
		have, exists := p.routes[pfx]
		if want == nil {
			if !exists {
				continue
			}
			u, err := p.routeUpdate(p4v1.Update_DELETE, pfx, have.kind, have.group)
			if err != nil {
				return nil, err
			}
			routeDels = append(routeDels, u)
			if have.group != nil {
				have.group.refs--
				released[have.group] = true
			}
			delete(p.routes, pfx)
			continue
		}
		if err := validate(pfx, *want); err != nil {
			return nil, err
		}
		var g *group
		if want.Kind == Forward || want.Kind == Local {
			var created []*member
			var isNew bool
			var err error
			g, created, isNew, err = p.groupFor(*want)
			if err != nil {
				return nil, err
			}
			for _, m := range created {
				u, err := p.memberUpdate(p4v1.Update_INSERT, m)
				if err != nil {
					return nil, err
				}
				newMembers = append(newMembers, u)
			}
			if isNew {
				grp, entry, err := p.groupUpdates(p4v1.Update_INSERT, g)
				if err != nil {
					return nil, err
				}
				newGroups = append(newGroups, grp)
				groupEntries = append(groupEntries, entry)
			}
		}
		if exists && have.kind == want.Kind && have.group == g {
			continue // unchanged
		}
		typ := p4v1.Update_INSERT
		if exists {
			typ = p4v1.Update_MODIFY
			if have.group != nil {
				have.group.refs--
				released[have.group] = true
			}
		}
		if g != nil {
			g.refs++
		}
		p.routes[pfx] = installed{kind: want.Kind, group: g}
		u, err := p.routeUpdate(typ, pfx, want.Kind, g)
		if err != nil {
			return nil, err
		}
		routeAdds = append(routeAdds, u)
	}
	// Groups and members nobody uses any more. A group or member made by
	// this plan is always in use, so these were all installed before.
	var groups []*group
	if sweep {
		for _, g := range p.groups {
			if g.refs == 0 {
				groups = append(groups, g)
			}
		}
	} else {
		for g := range released {
			if g.refs == 0 && p.groups[g.key] == g {
				groups = append(groups, g)
			}
		}
	}
	slices.SortFunc(groups, func(a, b *group) int { return cmp.Compare(a.id, b.id) })
	freed := map[*member]bool{}
	for _, g := range groups {
		grp, entry, err := p.groupUpdates(p4v1.Update_DELETE, g)
		if err != nil {
			return nil, err
		}
		if !g.noEntry {
			oldGroupEntries = append(oldGroupEntries, entry)
		}
		oldGroups = append(oldGroups, grp)
		for _, m := range g.members {
			freed[m] = true
		}
		p.releaseGroup(g)
	}
	var mems []*member
	if sweep {
		for _, m := range p.members {
			if m.refs == 0 {
				mems = append(mems, m)
			}
		}
	} else {
		for m := range freed {
			if m.refs == 0 && p.members[m.key] == m {
				mems = append(mems, m)
			}
		}
	}
	slices.SortFunc(mems, func(a, b *member) int { return cmp.Compare(a.id, b.id) })
	for _, m := range mems {
		u, err := p.memberUpdate(p4v1.Update_DELETE, m)
		if err != nil {
			return nil, err
		}
		oldMems = append(oldMems, u)
		p.releaseMember(m)
	}

	plan := &Plan{}
	for _, ph := range [][]*p4v1.Update{
		newMembers, newGroups, groupEntries, // make: what new routes point at
		routeAdds,                           // before: routes switch over
		routeDels,                           // break: old routes go
		oldGroupEntries, oldGroups, oldMems, // then what only they used
	} {
		if len(ph) > 0 {
			plan.Phases = append(plan.Phases, ph)
		}
	}
	return plan, nil
}

func validate(pfx spf.Prefix, r Route) error {
	if err := pfx.Valid(); err != nil {
		return fmt.Errorf("fib: route %v: %w", pfx, err)
	}
	switch r.Kind {
	case Forward, Local:
		if len(r.Hops) == 0 {
			return fmt.Errorf("fib: route %v: %s without next hops", pfx, r.Kind)
		}
		for _, h := range r.Hops {
			if h.Port == 0 || h.Port >= p4.MaxPorts || h.Port == p4.CPUPort {
				return fmt.Errorf("fib: route %v: port %d is not a front-panel port", pfx, h.Port)
			}
			if h.DMAC >= 1<<48 {
				return fmt.Errorf("fib: route %v: MAC %#x is wider than 48 bits", pfx, h.DMAC)
			}
			if r.Kind == Local && h.Instance == 0 {
				return fmt.Errorf("fib: route %v: local instance id 0", pfx)
			}
		}
	case ToCPU, Drop:
		if len(r.Hops) > 0 {
			return fmt.Errorf("fib: route %v: %s takes no next hops", pfx, r.Kind)
		}
	default:
		return fmt.Errorf("fib: route %v: unknown kind %d", pfx, r.Kind)
	}
	return nil
}

// clone copies the bookkeeping deeply enough that planning never touches p.
func (p *Programmer) clone() *Programmer {
	n := &Programmer{
		s:           p.s,
		routes:      make(map[spf.Prefix]installed, len(p.routes)),
		groups:      make(map[string]*group, len(p.groups)),
		members:     make(map[string]*member, len(p.members)),
		freeGroups:  slices.Clone(p.freeGroups),
		nextGroup:   p.nextGroup,
		nextMember:  p.nextMember,
		freeMembers: slices.Clone(p.freeMembers),
	}
	ms := map[*member]*member{}
	for k, m := range p.members {
		c := *m
		ms[m] = &c
		n.members[k] = &c
	}
	gs := map[*group]*group{}
	for k, g := range p.groups {
		c := *g
		c.members = make([]*member, len(g.members))
		for i, m := range g.members {
			c.members[i] = ms[m]
		}
		c.weights = slices.Clone(g.weights)
		gs[g] = &c
		n.groups[k] = &c
	}
	for pfx, r := range p.routes {
		n.routes[pfx] = installed{kind: r.kind, group: gs[r.group]}
	}
	return n
}

// groupFor finds or creates the group for a route's hops, creating members
// as needed (returned, to be inserted); isNew says the group was created.
func (p *Programmer) groupFor(r Route) (g *group, created []*member, isNew bool, err error) {
	local := r.Kind == Local
	hops := sortedHops(r.Hops)
	key := groupKey(r.Kind, hops)
	if g, ok := p.groups[key]; ok {
		return g, nil, false, nil
	}
	id, err := p.allocGroup()
	if err != nil {
		return nil, nil, false, err
	}
	g = &group{id: id, local: local, key: key}
	for _, h := range hops {
		mk := memberKey(local, h)
		m, ok := p.members[mk]
		if !ok {
			m = &member{id: p.allocMember(), local: local, hop: Hop{Port: h.Port, DMAC: h.DMAC, Instance: h.Instance}, key: mk}
			p.members[mk] = m
			created = append(created, m)
		}
		m.refs++
		g.members = append(g.members, m)
		g.weights = append(g.weights, max(h.Weight, 1))
	}
	p.groups[key] = g
	return g, created, true, nil
}

// groupKey identifies a group by its content: the kind and the sorted hops
// with their weights.
func groupKey(kind Kind, hops []Hop) string {
	hops = sortedHops(hops)
	var b strings.Builder
	if kind == Local {
		b.WriteString("L")
	} else {
		b.WriteString("F")
	}
	for _, h := range hops {
		fmt.Fprintf(&b, "|%d,%x,%d,%d", h.Port, h.DMAC, h.Instance, max(h.Weight, 1))
	}
	return b.String()
}

// sortedHops returns a sorted copy: a group's members are in hop order, so
// the same set of hops always makes the same group.
func sortedHops(hops []Hop) []Hop {
	hops = slices.Clone(hops)
	slices.SortFunc(hops, func(a, b Hop) int {
		return cmp.Or(cmp.Compare(a.Port, b.Port), cmp.Compare(a.DMAC, b.DMAC), cmp.Compare(a.Instance, b.Instance))
	})
	return hops
}

func memberKey(local bool, h Hop) string {
	if local {
		return fmt.Sprintf("L|%d,%x,%d", h.Port, h.DMAC, h.Instance)
	}
	return fmt.Sprintf("F|%d,%x", h.Port, h.DMAC)
}

func (p *Programmer) allocGroup() (uint32, error) {
	if n := len(p.freeGroups); n > 0 {
		id := p.freeGroups[n-1]
		p.freeGroups = p.freeGroups[:n-1]
		return id, nil
	}
	if p.nextGroup > MaxGroups {
		return 0, errors.New("fib: out of next-hop group ids (65,535 distinct next-hop sets)")
	}
	id := p.nextGroup
	p.nextGroup++
	return id, nil
}

func (p *Programmer) allocMember() uint32 {
	if n := len(p.freeMembers); n > 0 {
		id := p.freeMembers[n-1]
		p.freeMembers = p.freeMembers[:n-1]
		return id
	}
	id := p.nextMember
	p.nextMember++
	return id
}

// releaseGroup forgets an unused group. Its id is reused only by a later
// plan (never within this one), so a plan never deletes and inserts the same
// id.
func (p *Programmer) releaseGroup(g *group) {
	for _, m := range g.members {
		m.refs--
	}
	delete(p.groups, g.key)
	p.freeGroups = append(p.freeGroups, g.id)
}

func (p *Programmer) releaseMember(m *member) {
	delete(p.members, m.key)
	p.freeMembers = append(p.freeMembers, m.id)
}
