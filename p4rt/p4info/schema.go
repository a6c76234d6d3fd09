// Package p4info indexes a P4Info by name and by id, and encodes values the
// way P4Runtime carries them. The client (entry builders), the server
// (validation) and the software switch (mapping ids to its own tables) share it,
// so all three read names and ids from the same P4Info and never hand-copy ids.
package p4info

import (
	"fmt"
	"os"
	"strings"

	p4cfg "github.com/p4lang/p4runtime/go/p4/config/v1"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"
)

// Schema is an immutable index over one P4Info.
type Schema struct {
	info *p4cfg.P4Info

	tables         map[uint32]*Table
	tableNames     map[string]*Table
	actions        map[uint32]*Action
	actionNames    map[string]*Action
	profiles       map[uint32]*ActionProfile
	profileNames   map[string]*ActionProfile
	counters       map[uint32]*p4cfg.Counter
	counterNames   map[string]*p4cfg.Counter
	directCounters map[uint32]*p4cfg.DirectCounter
	directNames    map[string]*p4cfg.DirectCounter
	packetMeta     map[string]*PacketMetadata
	packetMetaIDs  map[uint32]*PacketMetadata
}

// Table is a table with its match fields and actions indexed.
type Table struct {
	*p4cfg.Table
	fields     map[uint32]*p4cfg.MatchField
	fieldNames map[string]*p4cfg.MatchField
	actionRefs map[uint32]*p4cfg.ActionRef
	// Profile is the action profile (or selector) implementing the table, nil
	// for a direct table.
	Profile *ActionProfile
	// DirectCounter is the direct counter attached to the table, or nil.
	DirectCounter *p4cfg.DirectCounter
}

// Action is an action with its parameters indexed.
type Action struct {
	*p4cfg.Action
	params     map[uint32]*p4cfg.Action_Param
	paramNames map[string]*p4cfg.Action_Param
}

// ActionProfile is an action profile or selector with the tables it serves.
type ActionProfile struct {
	*p4cfg.ActionProfile
	Tables []*Table
}

// PacketMetadata is a controller header ("packet_in" or "packet_out").
type PacketMetadata struct {
	*p4cfg.ControllerPacketMetadata
	fields     map[uint32]*p4cfg.ControllerPacketMetadata_Metadata
	fieldNames map[string]*p4cfg.ControllerPacketMetadata_Metadata
}

// Load reads a P4Info file: text format when the name ends in .txt, .txtpb or
// .pb.txt, binary otherwise.
func Load(path string) (*Schema, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var info *p4cfg.P4Info
	if isTextName(path) {
		info, err = ParseText(b)
	} else {
		info = &p4cfg.P4Info{}
		err = proto.Unmarshal(b, info)
	}
	if err != nil {
		return nil, fmt.Errorf("p4info %s: %w", path, err)
	}
	return New(info)
}

func isTextName(path string) bool {
	for _, suffix := range []string{".txt", ".txtpb", ".textproto", ".pbtxt"} {
		if strings.HasSuffix(path, suffix) {
			return true
		}
	}
	return false
}

// ParseText parses a P4Info in protobuf text format.
func ParseText(b []byte) (*p4cfg.P4Info, error) {
	info := &p4cfg.P4Info{}
	if err := prototext.Unmarshal(b, info); err != nil {
		return nil, fmt.Errorf("p4info: %w", err)
	}
	return info, nil
}

// New indexes info and checks that it is consistent: unique ids and names,
// and every reference (action refs, implementation ids, direct resources)
// resolving. The Schema keeps info; do not modify it afterwards.
func New(info *p4cfg.P4Info) (*Schema, error) {
	if info == nil {
		return nil, fmt.Errorf("p4info: empty")
	}
	s := &Schema{
		info:           info,
		tables:         map[uint32]*Table{},
		tableNames:     map[string]*Table{},
		actions:        map[uint32]*Action{},
		actionNames:    map[string]*Action{},
		profiles:       map[uint32]*ActionProfile{},
		profileNames:   map[string]*ActionProfile{},
		counters:       map[uint32]*p4cfg.Counter{},
		counterNames:   map[string]*p4cfg.Counter{},
		directCounters: map[uint32]*p4cfg.DirectCounter{},
		directNames:    map[string]*p4cfg.DirectCounter{},
		packetMeta:     map[string]*PacketMetadata{},
		packetMetaIDs:  map[uint32]*PacketMetadata{},
	}
	ids := map[uint32]string{}
	claim := func(p *p4cfg.Preamble) error {
		if p == nil || p.Id == 0 {
			return fmt.Errorf("p4info: object without preamble id")
		}
		if prev, dup := ids[p.Id]; dup {
			return fmt.Errorf("p4info: id %#x used by both %q and %q", p.Id, prev, p.Name)
		}
		ids[p.Id] = p.Name
		return nil
	}
	for _, a := range info.Actions {
		if err := claim(a.Preamble); err != nil {
			return nil, err
		}
		ia := &Action{Action: a, params: map[uint32]*p4cfg.Action_Param{}, paramNames: map[string]*p4cfg.Action_Param{}}
		for _, p := range a.Params {
			if _, dup := ia.params[p.Id]; dup {
				return nil, fmt.Errorf("p4info: action %q: duplicate param id %d", a.Preamble.Name, p.Id)
			}
			ia.params[p.Id] = p
			ia.paramNames[p.Name] = p
		}
		s.actions[a.Preamble.Id] = ia
		addName(s.actionNames, a.Preamble, ia)
	}
	for _, c := range info.Counters {
		if err := claim(c.Preamble); err != nil {
			return nil, err
		}
		s.counters[c.Preamble.Id] = c
		addName(s.counterNames, c.Preamble, c)
	}
	for _, c := range info.DirectCounters {
		if err := claim(c.Preamble); err != nil {
			return nil, err
		}
		s.directCounters[c.Preamble.Id] = c
		addName(s.directNames, c.Preamble, c)
	}
	for _, ap := range info.ActionProfiles {
		if err := claim(ap.Preamble); err != nil {
			return nil, err
		}
		iap := &ActionProfile{ActionProfile: ap}
		s.profiles[ap.Preamble.Id] = iap
		addName(s.profileNames, ap.Preamble, iap)
	}
	for _, t := range info.Tables {
		if err := claim(t.Preamble); err != nil {
			return nil, err
		}
		it := &Table{
			Table:      t,
			fields:     map[uint32]*p4cfg.MatchField{},
			fieldNames: map[string]*p4cfg.MatchField{},
			actionRefs: map[uint32]*p4cfg.ActionRef{},
		}
		for _, f := range t.MatchFields {
			if _, dup := it.fields[f.Id]; dup {
				return nil, fmt.Errorf("p4info: table %q: duplicate match field id %d", t.Preamble.Name, f.Id)
			}
			it.fields[f.Id] = f
			it.fieldNames[f.Name] = f
		}
		for _, r := range t.ActionRefs {
			if _, ok := s.actions[r.Id]; !ok {
				return nil, fmt.Errorf("p4info: table %q refers to unknown action id %#x", t.Preamble.Name, r.Id)
			}
			it.actionRefs[r.Id] = r
		}
		if t.ImplementationId != 0 {
			ap, ok := s.profiles[t.ImplementationId]
			if !ok {
				return nil, fmt.Errorf("p4info: table %q: unknown implementation id %#x", t.Preamble.Name, t.ImplementationId)
			}
			it.Profile = ap
			ap.Tables = append(ap.Tables, it)
		}
		for _, d := range t.DirectResourceIds {
			if dc, ok := s.directCounters[d]; ok {
				it.DirectCounter = dc
			}
		}
		s.tables[t.Preamble.Id] = it
		addName(s.tableNames, t.Preamble, it)
	}
	for _, m := range info.ControllerPacketMetadata {
		if err := claim(m.Preamble); err != nil {
			return nil, err
		}
		pm := &PacketMetadata{
			ControllerPacketMetadata: m,
			fields:                   map[uint32]*p4cfg.ControllerPacketMetadata_Metadata{},
			fieldNames:               map[string]*p4cfg.ControllerPacketMetadata_Metadata{},
		}
		for _, f := range m.Metadata {
			pm.fields[f.Id] = f
			pm.fieldNames[f.Name] = f
		}
		s.packetMeta[m.Preamble.Name] = pm
		s.packetMetaIDs[m.Preamble.Id] = pm
	}
	return s, nil
}

// addName indexes an object by its full name and by its alias.
func addName[T any](m map[string]T, p *p4cfg.Preamble, v T) {
	m[p.Name] = v
	if p.Alias != "" {
		m[p.Alias] = v
	}
}

// P4Info returns the indexed P4Info. Callers must not modify it.
func (s *Schema) P4Info() *p4cfg.P4Info { return s.info }

// Table finds a table by full name ("DmscIngress.fib_64") or alias ("fib_64").
func (s *Schema) Table(name string) (*Table, error) {
	if t, ok := s.tableNames[name]; ok {
		return t, nil
	}
	return nil, fmt.Errorf("p4info: no table %q", name)
}

// TableByID finds a table by id.
func (s *Schema) TableByID(id uint32) (*Table, bool) {
	t, ok := s.tables[id]
	return t, ok
}

// Tables lists the tables in P4Info order.
func (s *Schema) Tables() []*Table {
	out := make([]*Table, 0, len(s.info.Tables))
	for _, t := range s.info.Tables {
		out = append(out, s.tables[t.Preamble.Id])
	}
	return out
}

// Action finds an action by full name or alias.
func (s *Schema) Action(name string) (*Action, error) {
	if a, ok := s.actionNames[name]; ok {
		return a, nil
	}
	return nil, fmt.Errorf("p4info: no action %q", name)
}

// ActionByID finds an action by id.
func (s *Schema) ActionByID(id uint32) (*Action, bool) {
	a, ok := s.actions[id]
	return a, ok
}

// ActionProfile finds an action profile or selector by full name or alias.
func (s *Schema) ActionProfile(name string) (*ActionProfile, error) {
	if p, ok := s.profileNames[name]; ok {
		return p, nil
	}
	return nil, fmt.Errorf("p4info: no action profile %q", name)
}

// ActionProfileByID finds an action profile by id.
func (s *Schema) ActionProfileByID(id uint32) (*ActionProfile, bool) {
	p, ok := s.profiles[id]
	return p, ok
}

// ActionProfiles lists the action profiles in P4Info order.
func (s *Schema) ActionProfiles() []*ActionProfile {
	out := make([]*ActionProfile, 0, len(s.info.ActionProfiles))
	for _, p := range s.info.ActionProfiles {
		out = append(out, s.profiles[p.Preamble.Id])
	}
	return out
}

// Counter finds an indexed counter by full name or alias.
func (s *Schema) Counter(name string) (*p4cfg.Counter, error) {
	if c, ok := s.counterNames[name]; ok {
		return c, nil
	}
	return nil, fmt.Errorf("p4info: no counter %q", name)
}

// CounterByID finds an indexed counter by id.
func (s *Schema) CounterByID(id uint32) (*p4cfg.Counter, bool) {
	c, ok := s.counters[id]
	return c, ok
}

// DirectCounter finds a direct counter by full name or alias.
func (s *Schema) DirectCounter(name string) (*p4cfg.DirectCounter, error) {
	if c, ok := s.directNames[name]; ok {
		return c, nil
	}
	return nil, fmt.Errorf("p4info: no direct counter %q", name)
}

// DirectCounterByID finds a direct counter by id.
func (s *Schema) DirectCounterByID(id uint32) (*p4cfg.DirectCounter, bool) {
	c, ok := s.directCounters[id]
	return c, ok
}

// PacketMetadata finds a controller header by name: "packet_in" or "packet_out".
func (s *Schema) PacketMetadata(name string) (*PacketMetadata, error) {
	if m, ok := s.packetMeta[name]; ok {
		return m, nil
	}
	return nil, fmt.Errorf("p4info: no controller header %q", name)
}

// Field finds a match field by name.
func (t *Table) Field(name string) (*p4cfg.MatchField, error) {
	if f, ok := t.fieldNames[name]; ok {
		return f, nil
	}
	return nil, fmt.Errorf("p4info: table %q has no match field %q", t.Preamble.Name, name)
}

// FieldByID finds a match field by id.
func (t *Table) FieldByID(id uint32) (*p4cfg.MatchField, bool) {
	f, ok := t.fields[id]
	return f, ok
}

// ActionRef returns the table's reference to an action, if the table has it.
func (t *Table) ActionRef(actionID uint32) (*p4cfg.ActionRef, bool) {
	r, ok := t.actionRefs[actionID]
	return r, ok
}

// Param finds an action parameter by name.
func (a *Action) Param(name string) (*p4cfg.Action_Param, error) {
	if p, ok := a.paramNames[name]; ok {
		return p, nil
	}
	return nil, fmt.Errorf("p4info: action %q has no parameter %q", a.Preamble.Name, name)
}

// ParamByID finds an action parameter by id.
func (a *Action) ParamByID(id uint32) (*p4cfg.Action_Param, bool) {
	p, ok := a.params[id]
	return p, ok
}

// Field finds a controller-header field by name.
func (m *PacketMetadata) Field(name string) (*p4cfg.ControllerPacketMetadata_Metadata, error) {
	if f, ok := m.fieldNames[name]; ok {
		return f, nil
	}
	return nil, fmt.Errorf("p4info: %s has no field %q", m.Preamble.Name, name)
}

// FieldByID finds a controller-header field by id.
func (m *PacketMetadata) FieldByID(id uint32) (*p4cfg.ControllerPacketMetadata_Metadata, bool) {
	f, ok := m.fields[id]
	return f, ok
}
