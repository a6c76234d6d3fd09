package server

import (
	"log/slog"

	p4cfg "github.com/p4lang/p4runtime/go/p4/config/v1"
	p4v1 "github.com/p4lang/p4runtime/go/p4/v1"

	"github.com/dmsc-mesh/dmsc/p4rt/p4info"
)

// pipeline is one forwarding-pipeline config with the control-plane state
// written against it.
type pipeline struct {
	schema *p4info.Schema
	config *p4v1.ForwardingPipelineConfig // as the controller sent it
	state  *state
}

func newPipeline(schema *p4info.Schema, config *p4v1.ForwardingPipelineConfig) *pipeline {
	return &pipeline{schema: schema, config: config, state: newState(schema)}
}

// state is what the server answers Reads from and checks Writes against.
// Stored entities are never modified once stored (a MODIFY stores a new
// one), so Read can stream them after releasing the lock and the Target can
// keep the ones it was given.
type state struct {
	tables   map[uint32]*tableState
	profiles map[uint32]*profileState
	order    []*tableState // P4Info order, for reads of all tables
	porder   []*profileState
}

type tableState struct {
	info    *p4info.Table
	profile *profileState // the table's action profile, nil for a direct table
	// entries maps the compact match key (see matchKey) to the entry.
	entries map[string]*p4v1.Entity
	// defaultEntry is the controller's default entry, nil while the
	// program's default action is in force.
	defaultEntry *p4v1.Entity
	// numExact counts the EXACT fields, which may never be omitted.
	numExact int
	// needsPriority is set when a field is TERNARY, RANGE or OPTIONAL.
	needsPriority bool
	// directMeter is set when a direct meter is attached (unsupported).
	directMeter bool
}

type profileState struct {
	info    *p4info.ActionProfile
	members map[uint32]*member
	groups  map[uint32]*group
	// actions are the actions every table of the profile allows (outside
	// DEFAULT_ONLY), the ones its members may use.
	actions map[uint32]p4cfg.ActionRef_Scope
}

type member struct {
	ent       *p4v1.Entity
	groupRefs int // groups that list the member
	tableRefs int // table entries that point at the member
}

type group struct {
	ent       *p4v1.Entity
	tableRefs int // table entries that point at the group
}

func newState(schema *p4info.Schema) *state {
	st := &state{tables: map[uint32]*tableState{}, profiles: map[uint32]*profileState{}}
	for _, ap := range schema.ActionProfiles() {
		ps := &profileState{
			info:    ap,
			members: map[uint32]*member{},
			groups:  map[uint32]*group{},
			actions: map[uint32]p4cfg.ActionRef_Scope{},
		}
		// An action is usable by a member when every table the profile
		// implements allows it; P4 requires these lists to be identical,
		// but the intersection is what is safe if a P4Info says otherwise.
		for i, t := range ap.Tables {
			next := map[uint32]p4cfg.ActionRef_Scope{}
			for _, r := range t.ActionRefs {
				if _, ok := ps.actions[r.Id]; ok || i == 0 {
					next[r.Id] = r.Scope
				}
			}
			ps.actions = next
		}
		st.profiles[ap.Preamble.Id] = ps
		st.porder = append(st.porder, ps)
	}
	directMeters := map[uint32]bool{}
	for _, m := range schema.P4Info().GetDirectMeters() {
		directMeters[m.GetPreamble().GetId()] = true
	}
	for _, t := range schema.Tables() {
		ts := &tableState{info: t, entries: map[string]*p4v1.Entity{}}
		if t.Profile != nil {
			ts.profile = st.profiles[t.Profile.Preamble.Id]
		}
		for _, f := range t.MatchFields {
			switch f.GetMatchType() {
			case p4cfg.MatchField_EXACT:
				ts.numExact++
			case p4cfg.MatchField_TERNARY, p4cfg.MatchField_RANGE, p4cfg.MatchField_OPTIONAL:
				ts.needsPriority = true
			}
		}
		for _, id := range t.DirectResourceIds {
			if directMeters[id] {
				ts.directMeter = true
			}
		}
		st.tables[t.Preamble.Id] = ts
		st.order = append(st.order, ts)
	}
	return st
}

// The put functions are the only mutations of the state. Each takes the new
// value (nil to remove) and keeps the reference counts right for whatever it
// replaces, so undoing a change is putting the old value back.

func (st *state) putEntry(t *tableState, key string, e *p4v1.Entity) {
	old := t.entries[key]
	if t.profile != nil {
		t.profile.unrefAction(old)
		t.profile.refAction(e)
	}
	if e == nil {
		delete(t.entries, key)
	} else {
		t.entries[key] = e
	}
}

func (p *profileState) refAction(e *p4v1.Entity) { p.countAction(e, 1) }

func (p *profileState) unrefAction(e *p4v1.Entity) { p.countAction(e, -1) }

func (p *profileState) countAction(e *p4v1.Entity, d int) {
	if e == nil {
		return
	}
	switch a := e.GetTableEntry().GetAction().GetType().(type) {
	case *p4v1.TableAction_ActionProfileMemberId:
		if m := p.members[a.ActionProfileMemberId]; m != nil {
			m.tableRefs += d
		}
	case *p4v1.TableAction_ActionProfileGroupId:
		if g := p.groups[a.ActionProfileGroupId]; g != nil {
			g.tableRefs += d
		}
	}
}

func (p *profileState) putMember(id uint32, e *p4v1.Entity) {
	m := p.members[id]
	switch {
	case e == nil:
		delete(p.members, id)
	case m == nil:
		p.members[id] = &member{ent: e}
	default:
		m.ent = e
	}
}

func (p *profileState) putGroup(id uint32, e *p4v1.Entity) {
	g := p.groups[id]
	if g != nil {
		p.countMembers(g.ent, -1)
	}
	p.countMembers(e, 1)
	switch {
	case e == nil:
		delete(p.groups, id)
	case g == nil:
		p.groups[id] = &group{ent: e}
	default:
		g.ent = e
	}
}

func (p *profileState) countMembers(e *p4v1.Entity, d int) {
	for _, gm := range e.GetActionProfileGroup().GetMembers() {
		if m := p.members[gm.GetMemberId()]; m != nil {
			m.groupRefs += d
		}
	}
}

// undo records what one applied update replaced.
type undo struct {
	kind  undoKind
	table *tableState
	key   string
	prof  *profileState
	id    uint32
	old   *p4v1.Entity // nil: there was nothing
}

type undoKind uint8

const (
	undoEntry undoKind = iota + 1
	undoDefault
	undoMember
	undoGroup
)

// revert puts u.old back. A member or group that something still refers to
// is kept: that can only happen when a non-atomic target refused an insert
// but accepted a later update of the same batch that uses it, and the
// dangling reference would be worse than the stale entry.
func (st *state) revert(u *undo, log *slog.Logger) {
	switch u.kind {
	case undoEntry:
		st.putEntry(u.table, u.key, u.old)
	case undoDefault:
		u.table.defaultEntry = u.old
	case undoMember:
		if m := u.prof.members[u.id]; u.old == nil && m != nil && (m.groupRefs > 0 || m.tableRefs > 0) {
			log.Warn("kept a member the target refused: a later update uses it",
				"action_profile", u.prof.info.Preamble.Name, "member_id", u.id)
			return
		}
		u.prof.putMember(u.id, u.old)
	case undoGroup:
		if g := u.prof.groups[u.id]; u.old == nil && g != nil && g.tableRefs > 0 {
			log.Warn("kept a group the target refused: a later update uses it",
				"action_profile", u.prof.info.Preamble.Name, "group_id", u.id)
			return
		}
		u.prof.putGroup(u.id, u.old)
	}
}

// replay lists the state as the updates that rebuild it, dependencies
// first: members, groups, table entries, then modified default entries.
func (st *state) replay() []*p4v1.Update {
	var ups []*p4v1.Update
	for _, p := range st.porder {
		for _, m := range p.members {
			ups = append(ups, &p4v1.Update{Type: p4v1.Update_INSERT, Entity: m.ent})
		}
	}
	for _, p := range st.porder {
		for _, g := range p.groups {
			ups = append(ups, &p4v1.Update{Type: p4v1.Update_INSERT, Entity: g.ent})
		}
	}
	for _, t := range st.order {
		for _, e := range t.entries {
			ups = append(ups, &p4v1.Update{Type: p4v1.Update_INSERT, Entity: e})
		}
	}
	for _, t := range st.order {
		if t.defaultEntry != nil {
			ups = append(ups, &p4v1.Update{Type: p4v1.Update_MODIFY, Entity: t.defaultEntry})
		}
	}
	return ups
}

// changes converts replay updates to target changes.
func changesOf(ups []*p4v1.Update) []Change {
	out := make([]Change, len(ups))
	for i, u := range ups {
		out[i] = Change{Type: u.Type, Entity: u.Entity}
	}
	return out
}
