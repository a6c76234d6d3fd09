package p4rt

import (
	"errors"
	"fmt"
	"sort"

	p4cfg "github.com/p4lang/p4runtime/go/p4/config/v1"
	p4v1 "github.com/p4lang/p4runtime/go/p4/v1"

	"github.com/dmsc-mesh/dmsc/p4rt/p4info"
)

// Value is an action parameter or match value by name. Build values with
// Param, ParamBytes.
type Value struct {
	Name  string
	bytes []byte
}

// Param is a named value from an unsigned integer.
func Param(name string, v uint64) Value { return Value{Name: name, bytes: p4info.Uint(v)} }

// ParamBytes is a named value from a big-endian byte string (any width that
// fits; it is sent in canonical form).
func ParamBytes(name string, b []byte) Value { return Value{Name: name, bytes: b} }

// EntryBuilder builds a table entry by P4Info names. Errors accumulate and
// Build reports them all, naming the table, field, action or parameter.
type EntryBuilder struct {
	s     *p4info.Schema
	t     *p4info.Table
	entry *p4v1.TableEntry
	errs  []error
}

// NewTableEntry starts an entry of the table named (full name or alias).
func NewTableEntry(s *p4info.Schema, table string) *EntryBuilder {
	b := &EntryBuilder{s: s, entry: &p4v1.TableEntry{}}
	t, err := s.Table(table)
	if err != nil {
		b.errs = append(b.errs, err)
		return b
	}
	b.t = t
	b.entry.TableId = t.Preamble.Id
	return b
}

// Exact adds an exact match on field.
func (b *EntryBuilder) Exact(field string, value []byte) *EntryBuilder {
	if b.t == nil {
		return b
	}
	f, err := b.t.Field(field)
	if err != nil {
		b.errs = append(b.errs, err)
		return b
	}
	if f.GetMatchType() != p4cfg.MatchField_EXACT {
		b.errs = append(b.errs, fmt.Errorf("p4rt: %s.%s is %s, not exact", b.t.Preamble.Name, field, f.GetMatchType()))
		return b
	}
	if err := p4info.CheckWidth(fmt.Sprintf("p4rt: %s.%s", b.t.Preamble.Name, field), value, f.Bitwidth); err != nil {
		b.errs = append(b.errs, err)
		return b
	}
	b.entry.Match = append(b.entry.Match, &p4v1.FieldMatch{
		FieldId:        f.Id,
		FieldMatchType: &p4v1.FieldMatch_Exact_{Exact: &p4v1.FieldMatch_Exact{Value: p4info.Canonical(value)}},
	})
	return b
}

// ExactUint adds an exact match on field from an integer.
func (b *EntryBuilder) ExactUint(field string, v uint64) *EntryBuilder {
	return b.Exact(field, p4info.Uint(v))
}

// Action sets a direct action with its parameters.
func (b *EntryBuilder) Action(name string, params ...Value) *EntryBuilder {
	if b.t == nil {
		return b
	}
	if b.t.Profile != nil {
		b.errs = append(b.errs, fmt.Errorf("p4rt: %s is implemented by %s: use Member or Group, not a direct action", b.t.Preamble.Name, b.t.Profile.Preamble.Name))
		return b
	}
	a, err := buildAction(b.s, name, params)
	if err != nil {
		b.errs = append(b.errs, err)
		return b
	}
	if _, ok := b.t.ActionRef(a.ActionId); !ok {
		b.errs = append(b.errs, fmt.Errorf("p4rt: table %s has no action %s", b.t.Preamble.Name, name))
		return b
	}
	b.entry.Action = &p4v1.TableAction{Type: &p4v1.TableAction_Action{Action: a}}
	return b
}

// Member points the entry at an action profile member.
func (b *EntryBuilder) Member(id uint32) *EntryBuilder {
	if b.requireProfile() {
		b.entry.Action = &p4v1.TableAction{Type: &p4v1.TableAction_ActionProfileMemberId{ActionProfileMemberId: id}}
	}
	return b
}

// Group points the entry at an action profile group.
func (b *EntryBuilder) Group(id uint32) *EntryBuilder {
	if b.requireProfile() {
		b.entry.Action = &p4v1.TableAction{Type: &p4v1.TableAction_ActionProfileGroupId{ActionProfileGroupId: id}}
	}
	return b
}

func (b *EntryBuilder) requireProfile() bool {
	if b.t == nil {
		return false
	}
	if b.t.Profile == nil {
		b.errs = append(b.errs, fmt.Errorf("p4rt: %s is a direct table: it takes an action, not a member or group", b.t.Preamble.Name))
		return false
	}
	return true
}

// Priority sets the entry's priority (tables with ternary, range or optional
// matches only).
func (b *EntryBuilder) Priority(p int32) *EntryBuilder {
	b.entry.Priority = p
	return b
}

// Default makes the entry the table's default entry (no match).
func (b *EntryBuilder) Default() *EntryBuilder {
	b.entry.IsDefaultAction = true
	return b
}

// Build returns the entry, or every error met while building it.
func (b *EntryBuilder) Build() (*p4v1.TableEntry, error) {
	if len(b.errs) > 0 {
		return nil, errors.Join(b.errs...)
	}
	sort.Slice(b.entry.Match, func(i, j int) bool { return b.entry.Match[i].FieldId < b.entry.Match[j].FieldId })
	return b.entry, nil
}

func buildAction(s *p4info.Schema, name string, params []Value) (*p4v1.Action, error) {
	a, err := s.Action(name)
	if err != nil {
		return nil, err
	}
	out := &p4v1.Action{ActionId: a.Preamble.Id}
	seen := map[string]bool{}
	for _, v := range params {
		p, err := a.Param(v.Name)
		if err != nil {
			return nil, err
		}
		if seen[v.Name] {
			return nil, fmt.Errorf("p4rt: action %s: parameter %s given twice", name, v.Name)
		}
		seen[v.Name] = true
		if err := p4info.CheckWidth(fmt.Sprintf("p4rt: action %s parameter %s", name, v.Name), v.bytes, p.Bitwidth); err != nil {
			return nil, err
		}
		out.Params = append(out.Params, &p4v1.Action_Param{ParamId: p.Id, Value: p4info.Canonical(v.bytes)})
	}
	for _, p := range a.Params {
		if !seen[p.Name] {
			return nil, fmt.Errorf("p4rt: action %s: parameter %s missing", name, p.Name)
		}
	}
	sort.Slice(out.Params, func(i, j int) bool { return out.Params[i].ParamId < out.Params[j].ParamId })
	return out, nil
}

// NewMember builds an action profile member by names. The action must be
// one the profile's tables allow.
func NewMember(s *p4info.Schema, profile string, memberID uint32, action string, params ...Value) (*p4v1.ActionProfileMember, error) {
	ap, err := s.ActionProfile(profile)
	if err != nil {
		return nil, err
	}
	a, err := buildAction(s, action, params)
	if err != nil {
		return nil, err
	}
	for _, t := range ap.Tables {
		if _, ok := t.ActionRef(a.ActionId); !ok {
			return nil, fmt.Errorf("p4rt: %s serves table %s, which has no action %s", ap.Preamble.Name, t.Preamble.Name, action)
		}
	}
	return &p4v1.ActionProfileMember{ActionProfileId: ap.Preamble.Id, MemberId: memberID, Action: a}, nil
}

// GroupBuilder builds a weighted action profile group.
type GroupBuilder struct {
	group *p4v1.ActionProfileGroup
	err   error
}

// NewGroup starts group groupID of the named selector; maxSize 0 leaves
// the size to the switch.
func NewGroup(s *p4info.Schema, profile string, groupID uint32, maxSize int32) *GroupBuilder {
	g := &GroupBuilder{group: &p4v1.ActionProfileGroup{GroupId: groupID, MaxSize: maxSize}}
	ap, err := s.ActionProfile(profile)
	if err != nil {
		g.err = err
		return g
	}
	if !ap.WithSelector {
		g.err = fmt.Errorf("p4rt: %s is not a selector: it has no groups", profile)
	}
	g.group.ActionProfileId = ap.Preamble.Id
	return g
}

// Add adds a member with a weight (at least 1).
func (g *GroupBuilder) Add(memberID uint32, weight int32) *GroupBuilder {
	if weight < 1 && g.err == nil {
		g.err = fmt.Errorf("p4rt: group %d: member %d weight %d (must be at least 1)", g.group.GroupId, memberID, weight)
	}
	g.group.Members = append(g.group.Members, &p4v1.ActionProfileGroup_Member{MemberId: memberID, Weight: weight})
	return g
}

// Build returns the group.
func (g *GroupBuilder) Build() (*p4v1.ActionProfileGroup, error) {
	if g.err != nil {
		return nil, g.err
	}
	return g.group, nil
}
