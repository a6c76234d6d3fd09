package server

import (
	"bytes"

	p4cfg "github.com/p4lang/p4runtime/go/p4/config/v1"
	p4v1 "github.com/p4lang/p4runtime/go/p4/v1"
	"google.golang.org/grpc/codes"
)

// read answers a Read (spec, "Read RPC"). The entities are collected under the
// shared lock, which keeps the answer consistent with one point between
// Writes, then streamed in chunks after it is released: stored entities are
// immutable, so streaming them while a Write runs is safe, and a slow
// client does not hold up the writers.
func (s *Server) read(req *p4v1.ReadRequest, stream p4v1.P4Runtime_ReadServer) error {
	if err := s.checkDevice(req.DeviceId); err != nil {
		return s.rpcError(err)
	}
	s.stats.reads.Add(1)
	s.mu.RLock()
	p := s.current()
	if p == nil {
		s.mu.RUnlock()
		return s.rpcError(errf(codes.FailedPrecondition, "no forwarding pipeline config: call SetForwardingPipelineConfig first"))
	}
	r := &reader{s: s, p: p}
	var errs []error
	for i, e := range req.Entities {
		mark := len(r.out)
		if err := r.entity(e); err != nil {
			r.out = r.out[:mark] // a request answers all or nothing
			if errs == nil {
				errs = make([]error, len(req.Entities))
			}
			errs[i] = err
		}
	}
	s.mu.RUnlock()
	for out := r.out; len(out) > 0; {
		n := min(len(out), readChunk)
		if err := stream.Send(&p4v1.ReadResponse{Entities: out[:n]}); err != nil {
			return err
		}
		out = out[n:]
	}
	if errs != nil {
		return batchError("read", errs)
	}
	return nil
}

type reader struct {
	s   *Server
	p   *pipeline
	buf []byte
	out []*p4v1.Entity
}

func (r *reader) emit(e *p4v1.Entity) { r.out = append(r.out, e) }

func (r *reader) entity(e *p4v1.Entity) error {
	info := r.p.schema.P4Info()
	switch x := e.GetEntity().(type) {
	case *p4v1.Entity_TableEntry:
		return r.tableEntries(x.TableEntry)
	case *p4v1.Entity_ActionProfileMember:
		return r.members(x.ActionProfileMember)
	case *p4v1.Entity_ActionProfileGroup:
		return r.groups(x.ActionProfileGroup)
	case *p4v1.Entity_CounterEntry:
		return r.counters(x.CounterEntry)
	case *p4v1.Entity_DirectCounterEntry:
		return r.directCounters(x.DirectCounterEntry)
	case *p4v1.Entity_MeterEntry:
		return unsupportedRead("meters", x.MeterEntry.GetMeterId(), len(info.GetMeters()), func(id uint32) bool {
			for _, m := range info.GetMeters() {
				if m.GetPreamble().GetId() == id {
					return true
				}
			}
			return false
		})
	case *p4v1.Entity_DirectMeterEntry:
		id := x.DirectMeterEntry.GetTableEntry().GetTableId()
		if id != 0 && r.p.state.tables[id] == nil {
			return errf(codes.NotFound, "unknown table id %d", id)
		}
		if id != 0 && !r.p.state.tables[id].directMeter {
			return errf(codes.InvalidArgument, "table %q has no direct meter", tableName(r.p.state.tables[id]))
		}
		return unsupportedRead("direct meters", 0, len(info.GetDirectMeters()), nil)
	case *p4v1.Entity_RegisterEntry:
		return unsupportedRead("registers", x.RegisterEntry.GetRegisterId(), len(info.GetRegisters()), func(id uint32) bool {
			for _, m := range info.GetRegisters() {
				if m.GetPreamble().GetId() == id {
					return true
				}
			}
			return false
		})
	case *p4v1.Entity_ValueSetEntry:
		return unsupportedRead("value sets", x.ValueSetEntry.GetValueSetId(), len(info.GetValueSets()), func(id uint32) bool {
			for _, m := range info.GetValueSets() {
				if m.GetPreamble().GetId() == id {
					return true
				}
			}
			return false
		})
	case *p4v1.Entity_DigestEntry:
		return unsupportedRead("digests", x.DigestEntry.GetDigestId(), len(info.GetDigests()), func(id uint32) bool {
			for _, m := range info.GetDigests() {
				if m.GetPreamble().GetId() == id {
					return true
				}
			}
			return false
		})
	case *p4v1.Entity_ExternEntry:
		return unsupportedRead("externs", x.ExternEntry.GetExternTypeId(), len(info.GetExterns()), func(id uint32) bool {
			for _, m := range info.GetExterns() {
				if m.GetExternTypeId() == id {
					return true
				}
			}
			return false
		})
	case *p4v1.Entity_PacketReplicationEngineEntry:
		// Nothing can be written to the replication engine here, so it
		// holds nothing.
		return nil
	default:
		return errf(codes.InvalidArgument, "read request without an entity (a wildcard read names each kind)")
	}
}

// unsupportedRead answers a read of a kind this server does not implement:
// a wildcard over a P4Info that declares none of them is simply empty.
func unsupportedRead(kind string, id uint32, declared int, exists func(uint32) bool) error {
	switch {
	case id == 0 && declared == 0:
		return nil
	case id != 0 && (exists == nil || !exists(id)):
		return errf(codes.NotFound, "unknown id %d among %s", id, kind)
	}
	return errf(codes.Unimplemented, "reading %s is not supported", kind)
}

func (r *reader) tableEntries(f *p4v1.TableEntry) error {
	if f == nil {
		f = &p4v1.TableEntry{}
	}
	if f.TableId == 0 {
		if len(f.Match) > 0 || f.Action != nil {
			return errf(codes.InvalidArgument, "match and action filters need a table_id")
		}
		for _, t := range r.p.state.order {
			if err := r.table(t, f); err != nil {
				return err
			}
		}
		return nil
	}
	t := r.p.state.tables[f.TableId]
	if t == nil {
		return errf(codes.NotFound, "unknown table id %d", f.TableId)
	}
	return r.table(t, f)
}

// table reads the entries of t that pass filter f (spec, "Wildcard Reads" of TableEntry).
func (r *reader) table(t *tableState, f *p4v1.TableEntry) error {
	counters := f.CounterData != nil && t.info.DirectCounter != nil
	if f.IsDefaultAction {
		if len(f.Match) > 0 || f.Priority != 0 {
			return errf(codes.InvalidArgument, "table %q: the default entry has no match and no priority", tableName(t))
		}
		return r.emitEntry(r.defaultEntity(t), counters)
	}
	var actionID uint32
	if f.Action != nil {
		a, ok := f.Action.Type.(*p4v1.TableAction_Action)
		if !ok || a.Action == nil {
			return errf(codes.InvalidArgument, "table %q: entries can only be filtered by the action id of a direct action", tableName(t))
		}
		actionID = a.Action.ActionId
	}
	keep := func(e *p4v1.Entity) bool {
		te := e.GetTableEntry()
		return (actionID == 0 || te.GetAction().GetAction().GetActionId() == actionID) &&
			(f.Priority == 0 || te.Priority == f.Priority) &&
			(f.ControllerMetadata == 0 || te.ControllerMetadata == f.ControllerMetadata) && //nolint:staticcheck // still a filter
			(len(f.Metadata) == 0 || bytes.Equal(te.Metadata, f.Metadata))
	}
	if len(f.Match) == 0 {
		for _, e := range t.entries {
			if keep(e) {
				if err := r.emitEntry(e, counters); err != nil {
					return err
				}
			}
		}
		return nil
	}
	key, matchLen, err := matchKey(t, f, r.buf[:0], true)
	if err != nil {
		return err
	}
	r.buf = key
	if matchLen == len(key) && t.needsPriority {
		// Match given, priority left as a wildcard: the keys end in the
		// 4-byte priority.
		for k, e := range t.entries {
			if len(k) == matchLen+4 && k[:matchLen] == string(key) && keep(e) {
				if err := r.emitEntry(e, counters); err != nil {
					return err
				}
			}
		}
		return nil
	}
	if e := t.entries[string(key)]; e != nil && keep(e) {
		return r.emitEntry(e, counters)
	}
	return nil
}

// emitEntry adds a table entry, with its direct counter when asked.
func (r *reader) emitEntry(e *p4v1.Entity, counters bool) error {
	if !counters {
		r.emit(e)
		return nil
	}
	te := e.GetTableEntry()
	cd, err := r.s.target.DirectCounter(te)
	if err != nil {
		return targetError(err, codes.Internal, "reading a direct counter")
	}
	cp := copyEntry(te)
	cp.CounterData = cd
	r.emit(&p4v1.Entity{Entity: &p4v1.Entity_TableEntry{TableEntry: cp}})
	return nil
}

// defaultEntity is t's default entry as a Read shows it. For a default the
// controller has not changed, the P4Info only knows a const default action
// (and, for indirect tables, the spec's const NoAction); otherwise the
// action is left unset, meaning the program's own default.
func (r *reader) defaultEntity(t *tableState) *p4v1.Entity {
	if t.defaultEntry != nil {
		return t.defaultEntry
	}
	te := &p4v1.TableEntry{TableId: t.info.Preamble.Id, IsDefaultAction: true}
	id := t.info.ConstDefaultActionId
	if id == 0 && t.profile != nil {
		for _, ref := range t.info.ActionRefs {
			if a, ok := r.p.schema.ActionByID(ref.Id); ok && a.Preamble.Name == "NoAction" {
				id = ref.Id
			}
		}
		te.IsConst = true
	}
	if id != 0 {
		te.Action = &p4v1.TableAction{Type: &p4v1.TableAction_Action{Action: &p4v1.Action{ActionId: id}}}
		te.IsConst = true
	}
	return &p4v1.Entity{Entity: &p4v1.Entity_TableEntry{TableEntry: te}}
}

func (r *reader) members(m *p4v1.ActionProfileMember) error {
	if m.GetActionProfileId() == 0 {
		if m.GetMemberId() != 0 {
			return errf(codes.InvalidArgument, "a member_id filter needs an action_profile_id")
		}
		for _, p := range r.p.state.porder {
			for _, x := range p.members {
				r.emit(x.ent)
			}
		}
		return nil
	}
	p := r.p.state.profiles[m.ActionProfileId]
	if p == nil {
		return errf(codes.NotFound, "unknown action profile id %d", m.ActionProfileId)
	}
	if m.MemberId != 0 {
		if x := p.members[m.MemberId]; x != nil {
			r.emit(x.ent)
		}
		return nil
	}
	for _, x := range p.members {
		r.emit(x.ent)
	}
	return nil
}

func (r *reader) groups(g *p4v1.ActionProfileGroup) error {
	if g.GetActionProfileId() == 0 {
		if g.GetGroupId() != 0 {
			return errf(codes.InvalidArgument, "a group_id filter needs an action_profile_id")
		}
		for _, p := range r.p.state.porder {
			for _, x := range p.groups {
				r.emit(x.ent)
			}
		}
		return nil
	}
	p := r.p.state.profiles[g.ActionProfileId]
	if p == nil {
		return errf(codes.NotFound, "unknown action profile id %d", g.ActionProfileId)
	}
	if g.GroupId != 0 {
		if x := p.groups[g.GroupId]; x != nil {
			r.emit(x.ent)
		}
		return nil
	}
	for _, x := range p.groups {
		r.emit(x.ent)
	}
	return nil
}

func (r *reader) counters(ce *p4v1.CounterEntry) error {
	if ce.GetCounterId() == 0 {
		if ce.GetIndex() != nil {
			return errf(codes.InvalidArgument, "an index needs a counter_id")
		}
		for _, c := range r.p.schema.P4Info().GetCounters() {
			if err := r.counterCells(c, nil); err != nil {
				return err
			}
		}
		return nil
	}
	c, ok := r.p.schema.CounterByID(ce.CounterId)
	if !ok {
		return errf(codes.NotFound, "unknown counter id %d", ce.CounterId)
	}
	if err := checkIndex(c, ce.Index); err != nil {
		return err
	}
	return r.counterCells(c, ce.Index)
}

func (r *reader) counterCells(c *p4cfg.Counter, idx *p4v1.Index) error {
	first, last := int64(0), c.Size-1
	if idx != nil {
		first, last = idx.Index, idx.Index
	}
	for i := first; i <= last; i++ {
		d, err := r.s.target.Counter(c.Preamble.Id, i)
		if err != nil {
			return targetError(err, codes.Internal, "reading counter "+c.Preamble.Name)
		}
		r.emit(&p4v1.Entity{Entity: &p4v1.Entity_CounterEntry{CounterEntry: &p4v1.CounterEntry{
			CounterId: c.Preamble.Id, Index: &p4v1.Index{Index: i}, Data: d,
		}}})
	}
	return nil
}

func (r *reader) directCounters(dc *p4v1.DirectCounterEntry) error {
	f := dc.GetTableEntry()
	if f.GetTableId() == 0 {
		if len(f.GetMatch()) > 0 {
			return errf(codes.InvalidArgument, "a match needs a table_id")
		}
		for _, t := range r.p.state.order {
			if t.info.DirectCounter == nil {
				continue
			}
			for _, e := range t.entries {
				if err := r.emitDirect(e.GetTableEntry()); err != nil {
					return err
				}
			}
		}
		return nil
	}
	t := r.p.state.tables[f.TableId]
	if t == nil {
		return errf(codes.NotFound, "unknown table id %d", f.TableId)
	}
	if t.info.DirectCounter == nil {
		return errf(codes.InvalidArgument, "table %q has no direct counter", tableName(t))
	}
	switch {
	case f.IsDefaultAction:
		return r.emitDirect(r.defaultEntity(t).GetTableEntry())
	case len(f.Match) > 0:
		key, _, err := matchKey(t, f, r.buf[:0], false)
		if err != nil {
			return err
		}
		r.buf = key
		e := t.entries[string(key)]
		if e == nil {
			return errf(codes.NotFound, "table %q: no such entry", tableName(t))
		}
		return r.emitDirect(e.GetTableEntry())
	}
	for _, e := range t.entries {
		if err := r.emitDirect(e.GetTableEntry()); err != nil {
			return err
		}
	}
	return nil
}

func (r *reader) emitDirect(te *p4v1.TableEntry) error {
	d, err := r.s.target.DirectCounter(te)
	if err != nil {
		return targetError(err, codes.Internal, "reading a direct counter")
	}
	r.emit(&p4v1.Entity{Entity: &p4v1.Entity_DirectCounterEntry{DirectCounterEntry: &p4v1.DirectCounterEntry{
		TableEntry: &p4v1.TableEntry{TableId: te.TableId, Match: te.Match, Priority: te.Priority, IsDefaultAction: te.IsDefaultAction},
		Data:       d,
	}}})
	return nil
}
