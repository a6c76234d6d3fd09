package fib

import (
	"fmt"
	"strings"

	p4v1 "github.com/p4lang/p4runtime/go/p4/v1"

	"github.com/dmsc-mesh/dmsc/p4"
	"github.com/dmsc-mesh/dmsc/p4rt/p4info"
	"github.com/dmsc-mesh/dmsc/spf"
)

// Recover rebuilds a programmer from what a switch holds (a Read of every
// table entry, member and group), for a warm restart: the agent reconciles
// instead of wiping the FIB, so traffic keeps flowing while it relearns the
// network. Whatever is inconsistent (a member no group uses, a group without
// its group-table entry, a route to a missing group) is kept so that the next
// Plan repairs or removes it. Entries of other tables (port_role, src_guard)
// are ignored.
func Recover(s *p4info.Schema, entities []*p4v1.Entity) (*Programmer, error) {
	p := New(s)
	nexthopProfile, err := s.ActionProfile(p4.ProfileNexthop)
	if err != nil {
		return nil, err
	}
	instanceProfile, err := s.ActionProfile(p4.ProfileInstance)
	if err != nil {
		return nil, err
	}
	memberByID := map[[2]uint32]*member{} // (profile, id)
	groupByID := map[[2]uint32]*group{}
	var groupEntries, routes []*p4v1.TableEntry
	var groups []*p4v1.ActionProfileGroup
	var maxGroup, maxMember uint32

	for _, e := range entities {
		switch {
		case e.GetActionProfileMember() != nil:
			m := e.GetActionProfileMember()
			local := m.ActionProfileId == instanceProfile.Preamble.Id
			if !local && m.ActionProfileId != nexthopProfile.Preamble.Id {
				continue
			}
			if _, seen := memberByID[[2]uint32{m.ActionProfileId, m.MemberId}]; seen {
				// PI (BMv2) lists a member once per unit of its
				// largest weight: the same member, not another.
				continue
			}
			hop, err := hopOf(s, m.GetAction())
			if err != nil {
				return nil, fmt.Errorf("fib: recover member %d: %w", m.MemberId, err)
			}
			mem := &member{id: m.MemberId, local: local, hop: hop, key: memberKey(local, hop)}
			if _, dup := p.members[mem.key]; dup {
				// Two members for one hop: keep the first; the other is
				// unused and the next plan deletes it.
				mem.key = fmt.Sprintf("%s#%d", mem.key, mem.id)
			}
			p.members[mem.key] = mem
			memberByID[[2]uint32{m.ActionProfileId, m.MemberId}] = mem
			maxMember = max(maxMember, m.MemberId)
		case e.GetActionProfileGroup() != nil:
			groups = append(groups, e.GetActionProfileGroup())
		case e.GetTableEntry() != nil:
			te := e.GetTableEntry()
			t, ok := s.TableByID(te.TableId)
			if !ok {
				continue
			}
			switch t.Preamble.Name {
			case p4.TableNexthop, p4.TableLocalInstance:
				groupEntries = append(groupEntries, te)
			case p4.TableFIB128, p4.TableFIB96, p4.TableFIB64, p4.TableFIB32:
				routes = append(routes, te)
			}
		}
	}
	hasEntry := map[[2]uint32]bool{}
	for _, te := range groupEntries {
		t, _ := s.TableByID(te.TableId)
		gid := te.GetAction().GetActionProfileGroupId()
		if gid == 0 || len(te.Match) != 1 || valueOf(te.Match[0].GetExact().GetValue()) != uint64(gid) {
			return nil, fmt.Errorf("fib: recover: %s entry does not point group_id N at group N", t.Preamble.Name)
		}
		hasEntry[[2]uint32{t.Profile.Preamble.Id, gid}] = true
	}
	for _, ag := range groups {
		local := ag.ActionProfileId == instanceProfile.Preamble.Id
		if !local && ag.ActionProfileId != nexthopProfile.Preamble.Id {
			continue
		}
		g := &group{id: ag.GroupId, local: local, noEntry: !hasEntry[[2]uint32{ag.ActionProfileId, ag.GroupId}]}
		var hops []Hop
		for _, gm := range ag.Members {
			m, ok := memberByID[[2]uint32{ag.ActionProfileId, gm.MemberId}]
			if !ok {
				return nil, fmt.Errorf("fib: recover: group %d has unknown member %d", ag.GroupId, gm.MemberId)
			}
			m.refs++
			g.members = append(g.members, m)
			g.weights = append(g.weights, max(gm.Weight, 1))
			h := m.hop
			h.Weight = max(gm.Weight, 1)
			hops = append(hops, h)
		}
		kind := Forward
		if local {
			kind = Local
		}
		g.key = groupKey(kind, hops)
		if _, dup := p.groups[g.key]; dup || g.noEntry || len(hops) == 0 {
			g.key = fmt.Sprintf("%s#%d", g.key, g.id) // unusable: the next plan deletes it
		}
		p.groups[g.key] = g
		groupByID[[2]uint32{ag.ActionProfileId, ag.GroupId}] = g
		maxGroup = max(maxGroup, ag.GroupId)
	}
	for _, te := range routes {
		t, _ := s.TableByID(te.TableId)
		pfx, err := prefixOf(t, te)
		if err != nil {
			return nil, err
		}
		a := te.GetAction().GetAction()
		act, ok := s.ActionByID(a.GetActionId())
		if !ok {
			return nil, fmt.Errorf("fib: recover route %v: unknown action", pfx)
		}
		r := installed{}
		switch act.Preamble.Name {
		case p4.ActionSetNexthopGroup, p4.ActionDeliverLocal:
			r.kind = Forward
			profile := nexthopProfile.Preamble.Id
			if act.Preamble.Name == p4.ActionDeliverLocal {
				r.kind, profile = Local, instanceProfile.Preamble.Id
			}
			var gid uint64
			if len(a.Params) == 1 {
				gid = valueOf(a.Params[0].Value)
			}
			if g, ok := groupByID[[2]uint32{profile, uint32(gid)}]; ok && !isOrphan(g) {
				r.group = g
				g.refs++
			}
			// Without a usable group the route keeps group nil, and the next
			// plan rewrites it.
		case p4.ActionToCPU:
			r.kind = ToCPU
		case p4.ActionDrop:
			r.kind = Drop
		default:
			return nil, fmt.Errorf("fib: recover route %v: unexpected action %s", pfx, act.Preamble.Name)
		}
		p.routes[pfx] = r
	}
	p.nextGroup, p.nextMember = maxGroup+1, maxMember+1
	return p, nil
}

// isOrphan reports a group Recover found unusable (its key is marked).
func isOrphan(g *group) bool { return strings.Contains(g.key, "#") }

func hopOf(s *p4info.Schema, a *p4v1.Action) (Hop, error) {
	act, ok := s.ActionByID(a.GetActionId())
	if !ok {
		return Hop{}, fmt.Errorf("unknown action id %d", a.GetActionId())
	}
	var h Hop
	for _, prm := range a.GetParams() {
		p, ok := act.ParamByID(prm.ParamId)
		if !ok {
			return Hop{}, fmt.Errorf("action %s: unknown parameter id %d", act.Preamble.Name, prm.ParamId)
		}
		v := valueOf(prm.Value)
		switch p.Name {
		case p4.ParamPort:
			h.Port = uint16(v)
		case p4.ParamDmac:
			h.DMAC = v
		case p4.ParamInstance:
			h.Instance = uint32(v)
		}
	}
	return h, nil
}

func prefixOf(t *p4info.Table, te *p4v1.TableEntry) (spf.Prefix, error) {
	if len(te.Match) != 1 || te.Match[0].GetExact() == nil {
		return spf.Prefix{}, fmt.Errorf("fib: recover: %s entry without its dst_key match", t.Preamble.Name)
	}
	f, _ := t.FieldByID(te.Match[0].FieldId)
	v := p4info.Padded(te.Match[0].GetExact().Value, f.Bitwidth)
	var pfx spf.Prefix
	copy(pfx.Key[:], v)
	pfx.Len = uint8(f.Bitwidth)
	return pfx, pfx.Valid()
}

func valueOf(b []byte) uint64 {
	v, _ := p4info.ToUint(b)
	return v
}
