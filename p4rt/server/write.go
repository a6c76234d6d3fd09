package server

import (
	"fmt"

	p4cfg "github.com/p4lang/p4runtime/go/p4/config/v1"
	p4v1 "github.com/p4lang/p4runtime/go/p4/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/protoadapt"

	"github.com/dmsc-mesh/dmsc/p4rt/p4info"
)

func (s *Server) write(req *p4v1.WriteRequest) (*p4v1.WriteResponse, error) {
	if err := s.checkDevice(req.DeviceId); err != nil {
		return nil, s.rpcError(err)
	}
	switch req.Atomicity {
	case p4v1.WriteRequest_CONTINUE_ON_ERROR, p4v1.WriteRequest_ROLLBACK_ON_ERROR, p4v1.WriteRequest_DATAPLANE_ATOMIC:
	default:
		return nil, s.rpcError(errf(codes.InvalidArgument, "unknown atomicity %d", req.Atomicity))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	// The primary is checked while holding mu, so a Write that passed the
	// check completes before the next one starts, whoever is primary then:
	// the serialisation the spec asks for around a change of primary.
	if err := s.authorize(req.RoleId, req.Role, req.ElectionId); err != nil {
		return nil, s.rpcError(err)
	}
	p := s.current()
	if p == nil {
		return nil, s.rpcError(errf(codes.FailedPrecondition, "no forwarding pipeline config: call SetForwardingPipelineConfig first"))
	}
	s.stats.writes.Add(1)
	// Between VERIFY_AND_SAVE and COMMIT the target still runs the old
	// pipeline: writes go to the saved state and are replayed on COMMIT.
	errs := s.applyBatch(p, req.Updates, req.Atomicity, p == s.running)
	if errs == nil {
		s.stats.updates.Add(uint64(len(req.Updates)))
		return &p4v1.WriteResponse{}, nil
	}
	failed := 0
	for _, e := range errs {
		if e != nil {
			failed++
		}
	}
	s.stats.updates.Add(uint64(len(req.Updates) - failed))
	s.stats.updateErrors.Add(uint64(failed))
	err := batchError("write", errs)
	s.log.Debug("P4Runtime write failed", "role", req.Role, "err", err)
	return nil, err
}

// batch applies the updates of one Write to a state, recording one change
// for the target and one undo record per applied update.
type batch struct {
	schema  *p4info.Schema
	st      *state
	buf     []byte
	changes []Change
	undos   []undo
	owner   []int // index of the update behind each change
}

func (b *batch) record(i int, c Change, u undo) {
	b.changes = append(b.changes, c)
	b.undos = append(b.undos, u)
	b.owner = append(b.owner, i)
}

func (b *batch) rollback(s *Server) {
	for j := len(b.undos) - 1; j >= 0; j-- {
		b.st.revert(&b.undos[j], s.log)
	}
}

// applyBatch validates and applies updates in order (so that an update can
// use what an earlier one of the batch created), then hands the changes to
// the target in one Apply when toTarget is set. It returns nil when every
// update succeeded, else one error (nil for success) per update.
func (s *Server) applyBatch(p *pipeline, updates []*p4v1.Update, atomicity p4v1.WriteRequest_Atomicity, toTarget bool) []error {
	n := len(updates)
	b := &batch{
		schema:  p.schema,
		st:      p.state,
		buf:     s.keyBuf[:0],
		changes: make([]Change, 0, n),
		undos:   make([]undo, 0, n),
		owner:   make([]int, 0, n),
	}
	defer func() { s.keyBuf = b.buf[:0] }()
	var errs []error
	fail := func(i int, err error) {
		if errs == nil {
			errs = make([]error, n)
		}
		errs[i] = err
	}
	for i, u := range updates {
		if err := b.update(i, u); err != nil {
			fail(i, err)
		}
	}
	atomic := atomicity != p4v1.WriteRequest_CONTINUE_ON_ERROR
	if atomic && errs != nil {
		b.rollback(s)
		return abortRest(errs)
	}
	if !toTarget || len(b.changes) == 0 {
		return errs
	}
	terrs := s.target.Apply(b.changes, atomic)
	if atomic {
		if firstError(terrs) < 0 {
			return nil
		}
		b.rollback(s)
		for j, e := range terrs {
			if e != nil && j < len(b.owner) {
				fail(b.owner[j], e)
			}
		}
		return abortRest(errs)
	}
	for j := min(len(terrs), len(b.changes)) - 1; j >= 0; j-- {
		if terrs[j] != nil {
			b.st.revert(&b.undos[j], s.log)
			fail(b.owner[j], terrs[j])
		}
	}
	return errs
}

func firstError(errs []error) int {
	for i, e := range errs {
		if e != nil {
			return i
		}
	}
	return -1
}

// abortRest marks every update without an error of its own as rolled back.
func abortRest(errs []error) []error {
	first := firstError(errs)
	if first < 0 {
		return nil
	}
	aborted := errf(codes.Aborted, "not applied: the batch was rolled back because update %d failed", first)
	for i, e := range errs {
		if e == nil {
			errs[i] = aborted
		}
	}
	return errs
}

// batchError is the spec's batch error: UNKNOWN, with one p4.v1.Error per
// item of the batch, in order, OK for the ones that succeeded.
func batchError(op string, errs []error) error {
	details := make([]protoadapt.MessageV1, len(errs))
	failed, first := 0, ""
	for i, e := range errs {
		if e == nil {
			details[i] = &p4v1.Error{CanonicalCode: int32(codes.OK)}
			continue
		}
		st := status.Convert(e)
		details[i] = &p4v1.Error{CanonicalCode: int32(st.Code()), Message: st.Message()}
		if failed == 0 {
			first = fmt.Sprintf("#%d: %s: %s", i, st.Code(), st.Message())
		}
		failed++
	}
	st := status.Newf(codes.Unknown, "%s: %d of %d failed; first %s", op, failed, len(errs), first)
	withDetails, err := st.WithDetails(details...)
	if err != nil {
		return st.Err()
	}
	return withDetails.Err()
}

func (b *batch) update(i int, u *p4v1.Update) error {
	if u == nil {
		return errf(codes.InvalidArgument, "empty update")
	}
	switch u.Type {
	case p4v1.Update_INSERT, p4v1.Update_MODIFY, p4v1.Update_DELETE:
	default:
		return errf(codes.InvalidArgument, "update type %v: want INSERT, MODIFY or DELETE", u.Type)
	}
	switch e := u.GetEntity().GetEntity().(type) {
	case *p4v1.Entity_TableEntry:
		if e.TableEntry == nil {
			return errf(codes.InvalidArgument, "empty table_entry")
		}
		return b.tableEntry(i, u.Type, u.Entity, e.TableEntry)
	case *p4v1.Entity_ActionProfileMember:
		if e.ActionProfileMember == nil {
			return errf(codes.InvalidArgument, "empty action_profile_member")
		}
		return b.member(i, u.Type, u.Entity, e.ActionProfileMember)
	case *p4v1.Entity_ActionProfileGroup:
		if e.ActionProfileGroup == nil {
			return errf(codes.InvalidArgument, "empty action_profile_group")
		}
		return b.group(i, u.Type, u.Entity, e.ActionProfileGroup)
	case *p4v1.Entity_CounterEntry:
		return b.counterEntry(u.Type, e.CounterEntry)
	case *p4v1.Entity_DirectCounterEntry:
		return b.directCounterEntry(u.Type, e.DirectCounterEntry)
	case nil:
		return errf(codes.InvalidArgument, "update without an entity")
	default:
		return errf(codes.Unimplemented, "writing %s is not supported", entityKind(u.Entity))
	}
}

// entityKind names the entity's kind for messages.
func entityKind(e *p4v1.Entity) string {
	if e == nil {
		return "nothing"
	}
	if f := e.ProtoReflect().WhichOneof(e.ProtoReflect().Descriptor().Oneofs().ByName("entity")); f != nil {
		return string(f.Name())
	}
	return "an empty entity"
}

func (b *batch) table(id uint32) (*tableState, error) {
	if id == 0 {
		return nil, errf(codes.InvalidArgument, "table_id 0 is not a valid id")
	}
	t := b.st.tables[id]
	if t == nil {
		return nil, errf(codes.NotFound, "unknown table id %d", id)
	}
	return t, nil
}

func (b *batch) tableEntry(i int, typ p4v1.Update_Type, ent *p4v1.Entity, te *p4v1.TableEntry) error {
	t, err := b.table(te.TableId)
	if err != nil {
		return err
	}
	if te.IsConst {
		return errf(codes.InvalidArgument, "is_const must be false in a write")
	}
	if te.IsDefaultAction {
		return b.defaultEntry(i, typ, ent, te, t)
	}
	if t.info.IsConstTable {
		return errf(codes.PermissionDenied, "table %q has const entries", tableName(t))
	}
	if len(t.info.MatchFields) == 0 && typ == p4v1.Update_INSERT {
		return errf(codes.InvalidArgument, "table %q has no match key: only its default entry can be written", tableName(t))
	}
	b.buf, _, err = matchKey(t, te, b.buf[:0], false)
	if err != nil {
		return err
	}
	old := t.entries[string(b.buf)] // no allocation: the compiler special-cases the lookup
	if typ == p4v1.Update_DELETE {
		// Only the key counts in a DELETE; the rest may be anything.
		if old == nil {
			return errf(codes.NotFound, "table %q: no such entry", tableName(t))
		}
		key := string(b.buf)
		b.record(i, Change{Type: typ, Entity: old}, undo{kind: undoEntry, table: t, key: key, old: old})
		b.st.putEntry(t, key, nil)
		return nil
	}
	if err := entryExtras(t, typ, te); err != nil {
		return err
	}
	if te.Action == nil && typ == p4v1.Update_INSERT {
		return errf(codes.InvalidArgument, "table %q: INSERT needs an action", tableName(t))
	}
	if te.Action != nil {
		if err := b.tableAction(t, te.Action); err != nil {
			return err
		}
	}
	switch {
	case typ == p4v1.Update_INSERT && old != nil:
		return errf(codes.AlreadyExists, "table %q: entry already exists", tableName(t))
	case typ == p4v1.Update_MODIFY && old == nil:
		return errf(codes.NotFound, "table %q: no such entry", tableName(t))
	case typ == p4v1.Update_MODIFY && te.Action == nil:
		// A MODIFY without an action keeps the action installed.
		cp := copyEntry(te)
		cp.Action = old.GetTableEntry().Action
		ent = &p4v1.Entity{Entity: &p4v1.Entity_TableEntry{TableEntry: cp}}
	}
	key := string(b.buf)
	b.record(i, Change{Type: typ, Entity: ent}, undo{kind: undoEntry, table: t, key: key, old: old})
	b.st.putEntry(t, key, ent)
	return nil
}

func (b *batch) defaultEntry(i int, typ p4v1.Update_Type, ent *p4v1.Entity, te *p4v1.TableEntry, t *tableState) error {
	if len(te.Match) > 0 || te.Priority != 0 {
		return errf(codes.InvalidArgument, "table %q: the default entry has no match and no priority", tableName(t))
	}
	if typ != p4v1.Update_MODIFY {
		return errf(codes.InvalidArgument, "table %q: the default entry always exists: only MODIFY it", tableName(t))
	}
	if t.info.ConstDefaultActionId != 0 {
		return errf(codes.PermissionDenied, "table %q has a const default action", tableName(t))
	}
	if t.profile != nil {
		return errf(codes.PermissionDenied, "table %q is indirect: its default entry is a const NoAction", tableName(t))
	}
	if err := entryExtras(t, typ, te); err != nil {
		return err
	}
	stored := ent
	if te.Action == nil {
		// An unset action resets the default entry to the program's.
		stored = nil
	} else {
		a, ok := te.Action.Type.(*p4v1.TableAction_Action)
		if !ok {
			return errf(codes.InvalidArgument, "table %q: a default entry needs an action", tableName(t))
		}
		err := b.action(a.Action, func(act *p4info.Action) error {
			ref, ok := t.info.ActionRef(act.Preamble.Id)
			if !ok {
				return errf(codes.InvalidArgument, "action %q is not an action of table %q", act.Preamble.Name, tableName(t))
			}
			if ref.Scope == p4cfg.ActionRef_TABLE_ONLY {
				return errf(codes.PermissionDenied, "action %q cannot be the default action of table %q (table-only)", act.Preamble.Name, tableName(t))
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	b.record(i, Change{Type: typ, Entity: ent}, undo{kind: undoDefault, table: t, old: t.defaultEntry})
	t.defaultEntry = stored
	return nil
}

func (b *batch) profile(id uint32) (*profileState, error) {
	if id == 0 {
		return nil, errf(codes.InvalidArgument, "action_profile_id 0 is not a valid id")
	}
	p := b.st.profiles[id]
	if p == nil {
		return nil, errf(codes.NotFound, "unknown action profile id %d", id)
	}
	return p, nil
}

func (b *batch) member(i int, typ p4v1.Update_Type, ent *p4v1.Entity, m *p4v1.ActionProfileMember) error {
	p, err := b.profile(m.ActionProfileId)
	if err != nil {
		return err
	}
	name := p.info.Preamble.Name
	if m.MemberId == 0 {
		return errf(codes.InvalidArgument, "member_id 0 is not a valid id")
	}
	cur := p.members[m.MemberId]
	if typ == p4v1.Update_DELETE {
		switch {
		case cur == nil:
			return errf(codes.NotFound, "action profile %q has no member %d", name, m.MemberId)
		case cur.groupRefs > 0:
			return errf(codes.FailedPrecondition, "action profile %q member %d is in %d group(s): remove it from them first", name, m.MemberId, cur.groupRefs)
		case cur.tableRefs > 0:
			return errf(codes.FailedPrecondition, "action profile %q member %d is used by %d table entries", name, m.MemberId, cur.tableRefs)
		}
		b.record(i, Change{Type: typ, Entity: cur.ent}, undo{kind: undoMember, prof: p, id: m.MemberId, old: cur.ent})
		p.putMember(m.MemberId, nil)
		return nil
	}
	err = b.action(m.Action, func(act *p4info.Action) error {
		scope, ok := p.actions[act.Preamble.Id]
		if !ok {
			return errf(codes.InvalidArgument, "action %q is not an action of the tables of %q", act.Preamble.Name, name)
		}
		if scope == p4cfg.ActionRef_DEFAULT_ONLY {
			return errf(codes.PermissionDenied, "action %q is default-only in the tables of %q", act.Preamble.Name, name)
		}
		return nil
	})
	if err != nil {
		return err
	}
	switch {
	case typ == p4v1.Update_INSERT && cur != nil:
		return errf(codes.AlreadyExists, "action profile %q member %d already exists", name, m.MemberId)
	case typ == p4v1.Update_MODIFY && cur == nil:
		return errf(codes.NotFound, "action profile %q has no member %d", name, m.MemberId)
	}
	var old *p4v1.Entity
	if cur != nil {
		old = cur.ent
	}
	b.record(i, Change{Type: typ, Entity: ent}, undo{kind: undoMember, prof: p, id: m.MemberId, old: old})
	p.putMember(m.MemberId, ent)
	return nil
}

func (b *batch) group(i int, typ p4v1.Update_Type, ent *p4v1.Entity, g *p4v1.ActionProfileGroup) error {
	p, err := b.profile(g.ActionProfileId)
	if err != nil {
		return err
	}
	name := p.info.Preamble.Name
	if !p.info.WithSelector {
		return errf(codes.InvalidArgument, "action profile %q has no selector, so no groups", name)
	}
	if g.GroupId == 0 {
		return errf(codes.InvalidArgument, "group_id 0 is not a valid id")
	}
	cur := p.groups[g.GroupId]
	if typ == p4v1.Update_DELETE {
		switch {
		case cur == nil:
			return errf(codes.NotFound, "action selector %q has no group %d", name, g.GroupId)
		case cur.tableRefs > 0:
			return errf(codes.FailedPrecondition, "action selector %q group %d is used by %d table entries", name, g.GroupId, cur.tableRefs)
		}
		b.record(i, Change{Type: typ, Entity: cur.ent}, undo{kind: undoGroup, prof: p, id: g.GroupId, old: cur.ent})
		p.putGroup(g.GroupId, nil)
		return nil
	}
	if err := b.groupMembers(p, g); err != nil {
		return err
	}
	switch {
	case typ == p4v1.Update_INSERT && cur != nil:
		return errf(codes.AlreadyExists, "action selector %q group %d already exists", name, g.GroupId)
	case typ == p4v1.Update_MODIFY && cur == nil:
		return errf(codes.NotFound, "action selector %q has no group %d", name, g.GroupId)
	case typ == p4v1.Update_MODIFY && cur.ent.GetActionProfileGroup().GetMaxSize() != g.MaxSize:
		return errf(codes.InvalidArgument, "action selector %q group %d: max_size is %d and cannot change", name, g.GroupId, cur.ent.GetActionProfileGroup().GetMaxSize())
	}
	var old *p4v1.Entity
	if cur != nil {
		old = cur.ent
	}
	b.record(i, Change{Type: typ, Entity: ent}, undo{kind: undoGroup, prof: p, id: g.GroupId, old: old})
	p.putGroup(g.GroupId, ent)
	return nil
}

// groupMembers checks a group's members, weights and size.
func (b *batch) groupMembers(p *profileState, g *p4v1.ActionProfileGroup) error {
	name := p.info.Preamble.Name
	maxGroup := p.info.MaxGroupSize
	if g.MaxSize < 0 {
		return errf(codes.InvalidArgument, "action selector %q: max_size %d is negative", name, g.MaxSize)
	}
	if maxGroup > 0 && g.MaxSize > maxGroup {
		return errf(codes.InvalidArgument, "action selector %q: max_size %d exceeds max_group_size %d", name, g.MaxSize, maxGroup)
	}
	var maxWeight int32
	bySum := true
	if sm, ok := p.info.SelectorSizeSemantics.(*p4cfg.ActionProfile_SumOfMembers_); ok {
		bySum = false
		maxWeight = sm.SumOfMembers.GetMaxMemberWeight()
	}
	var size int64
	for k, gm := range g.Members {
		if gm == nil {
			return errf(codes.InvalidArgument, "action selector %q group %d: empty member", name, g.GroupId)
		}
		if gm.MemberId == 0 {
			return errf(codes.InvalidArgument, "action selector %q group %d: member_id 0 is not a valid id", name, g.GroupId)
		}
		for _, prev := range g.Members[:k] {
			if prev.MemberId == gm.MemberId {
				return errf(codes.InvalidArgument, "action selector %q group %d: member %d listed twice (use its weight)", name, g.GroupId, gm.MemberId)
			}
		}
		if gm.Weight < 1 {
			return errf(codes.InvalidArgument, "action selector %q group %d: member %d has weight %d, must be >= 1", name, g.GroupId, gm.MemberId, gm.Weight)
		}
		if maxWeight > 0 && gm.Weight > maxWeight {
			return errf(codes.InvalidArgument, "action selector %q group %d: member %d weight %d exceeds max_member_weight %d", name, g.GroupId, gm.MemberId, gm.Weight, maxWeight)
		}
		if len(gm.GetWatchPort()) > 0 || gm.GetWatch() != 0 { //nolint:staticcheck // the deprecated watch counts too
			return errf(codes.Unimplemented, "action selector %q group %d: watch ports are not supported", name, g.GroupId)
		}
		if p.members[gm.MemberId] == nil {
			return errf(codes.NotFound, "action selector %q has no member %d", name, gm.MemberId)
		}
		if bySum {
			size += int64(gm.Weight)
		} else {
			size++
		}
	}
	limit := int64(g.MaxSize)
	if limit == 0 {
		limit = int64(maxGroup)
	}
	if limit > 0 && size > limit {
		return errf(codes.InvalidArgument, "action selector %q group %d: size %d exceeds the maximum %d", name, g.GroupId, size, limit)
	}
	return nil
}

func (b *batch) counterEntry(typ p4v1.Update_Type, ce *p4v1.CounterEntry) error {
	if ce == nil {
		return errf(codes.InvalidArgument, "empty counter_entry")
	}
	if typ != p4v1.Update_MODIFY {
		return errf(codes.InvalidArgument, "counter entries can only be modified")
	}
	if ce.CounterId == 0 {
		return errf(codes.InvalidArgument, "counter_id 0 is not a valid id")
	}
	c, ok := b.schema.CounterByID(ce.CounterId)
	if !ok {
		return errf(codes.NotFound, "unknown counter id %d", ce.CounterId)
	}
	if err := checkIndex(c, ce.Index); err != nil {
		return err
	}
	if ce.Data == nil {
		return nil // nothing to write
	}
	return errf(codes.Unimplemented, "counter %q: writing counter values is not supported", c.Preamble.Name)
}

func checkIndex(c *p4cfg.Counter, idx *p4v1.Index) error {
	if idx == nil {
		return nil
	}
	if idx.Index < 0 {
		return errf(codes.InvalidArgument, "counter %q: negative index %d", c.Preamble.Name, idx.Index)
	}
	if idx.Index >= c.Size {
		return errf(codes.OutOfRange, "counter %q: index %d out of range (size %d)", c.Preamble.Name, idx.Index, c.Size)
	}
	return nil
}

func (b *batch) directCounterEntry(typ p4v1.Update_Type, dc *p4v1.DirectCounterEntry) error {
	if typ != p4v1.Update_MODIFY {
		return errf(codes.InvalidArgument, "direct counter entries can only be modified")
	}
	te := dc.GetTableEntry()
	if te == nil {
		return errf(codes.InvalidArgument, "direct_counter_entry without table_entry")
	}
	t, err := b.table(te.TableId)
	if err != nil {
		return err
	}
	if t.info.DirectCounter == nil {
		return errf(codes.InvalidArgument, "table %q has no direct counter", tableName(t))
	}
	if !te.IsDefaultAction {
		b.buf, _, err = matchKey(t, te, b.buf[:0], false)
		if err != nil {
			return err
		}
		if t.entries[string(b.buf)] == nil {
			return errf(codes.NotFound, "table %q: no such entry", tableName(t))
		}
	}
	if dc.Data == nil {
		return nil
	}
	return errf(codes.Unimplemented, "table %q: writing direct counter values is not supported", tableName(t))
}

// copyEntry is a shallow copy of a table entry: the parts are shared and
// never modified.
func copyEntry(te *p4v1.TableEntry) *p4v1.TableEntry {
	return &p4v1.TableEntry{
		TableId:            te.TableId,
		Match:              te.Match,
		Action:             te.Action,
		Priority:           te.Priority,
		ControllerMetadata: te.ControllerMetadata, //nolint:staticcheck // deprecated, still part of the entry
		MeterConfig:        te.MeterConfig,
		CounterData:        te.CounterData,
		MeterCounterData:   te.MeterCounterData,
		IsDefaultAction:    te.IsDefaultAction,
		IdleTimeoutNs:      te.IdleTimeoutNs,
		TimeSinceLastHit:   te.TimeSinceLastHit,
		Metadata:           te.Metadata,
		IsConst:            te.IsConst,
	}
}
