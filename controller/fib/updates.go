package fib

import (
	p4v1 "github.com/p4lang/p4runtime/go/p4/v1"

	"github.com/dmsc-mesh/dmsc/p4"
	"github.com/dmsc-mesh/dmsc/p4rt"
	"github.com/dmsc-mesh/dmsc/spf"
)

func update(typ p4v1.Update_Type, e any) *p4v1.Update {
	switch typ {
	case p4v1.Update_INSERT:
		return p4rt.Insert(e)
	case p4v1.Update_MODIFY:
		return p4rt.Modify(e)
	}
	return p4rt.Delete(e)
}

func profileOf(local bool) (profile, table string) {
	if local {
		return p4.ProfileInstance, p4.TableLocalInstance
	}
	return p4.ProfileNexthop, p4.TableNexthop
}

func (p *Programmer) memberUpdate(typ p4v1.Update_Type, m *member) (*p4v1.Update, error) {
	profile, _ := profileOf(m.local)
	var (
		am  *p4v1.ActionProfileMember
		err error
	)
	if m.local {
		am, err = p4rt.NewMember(p.s, profile, m.id, p4.ActionDeliverInstance,
			p4rt.Param(p4.ParamPort, uint64(m.hop.Port)), p4rt.Param(p4.ParamInstance, uint64(m.hop.Instance)), p4rt.Param(p4.ParamDmac, m.hop.DMAC))
	} else {
		am, err = p4rt.NewMember(p.s, profile, m.id, p4.ActionSetNexthop,
			p4rt.Param(p4.ParamPort, uint64(m.hop.Port)), p4rt.Param(p4.ParamDmac, m.hop.DMAC))
	}
	if err != nil {
		return nil, err
	}
	if typ == p4v1.Update_DELETE {
		am.Action = nil // a delete names the member only
	}
	return update(typ, am), nil
}

// groupUpdates returns the selector group and the group table entry that
// points at it (group_id → group).
func (p *Programmer) groupUpdates(typ p4v1.Update_Type, g *group) (grp, entry *p4v1.Update, err error) {
	profile, table := profileOf(g.local)
	gb := p4rt.NewGroup(p.s, profile, g.id, 0)
	if typ != p4v1.Update_DELETE {
		for i, m := range g.members {
			gb.Add(m.id, g.weights[i])
		}
	}
	ag, err := gb.Build()
	if err != nil {
		return nil, nil, err
	}
	te, err := p4rt.NewTableEntry(p.s, table).ExactUint(p4.FieldGroupID, uint64(g.id)).Group(g.id).Build()
	if err != nil {
		return nil, nil, err
	}
	if typ == p4v1.Update_DELETE {
		te.Action = nil
	}
	return update(typ, ag), update(typ, te), nil
}

func (p *Programmer) routeUpdate(typ p4v1.Update_Type, pfx spf.Prefix, kind Kind, g *group) (*p4v1.Update, error) {
	table := fibTable(pfx.Len)
	b := p4rt.NewTableEntry(p.s, table).Exact(p4.FieldDstKey, pfx.Key[:pfx.Len/8])
	if typ != p4v1.Update_DELETE {
		switch kind {
		case Forward:
			b.Action(p4.ActionSetNexthopGroup, p4rt.Param(p4.ParamGroupID, uint64(g.id)))
		case Local:
			b.Action(p4.ActionDeliverLocal, p4rt.Param(p4.ParamGroupID, uint64(g.id)))
		case ToCPU:
			b.Action(p4.ActionToCPU)
		case Drop:
			b.Action(p4.ActionDrop)
		}
	}
	te, err := b.Build()
	if err != nil {
		return nil, err
	}
	return update(typ, te), nil
}

// fibTable is the table of a prefix length (validated: 32, 64, 96 or 128).
func fibTable(prefixLen uint8) string {
	for _, t := range p4.FIBTables {
		if t.PrefixLen == int(prefixLen) {
			return t.Name
		}
	}
	return ""
}
