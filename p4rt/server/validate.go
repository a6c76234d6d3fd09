package server

import (
	"bytes"
	"encoding/binary"
	"fmt"

	p4cfg "github.com/p4lang/p4runtime/go/p4/config/v1"
	p4v1 "github.com/p4lang/p4runtime/go/p4/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/dmsc-mesh/dmsc/p4rt/p4info"
)

// Validation runs on every update of every Write, so the success path
// allocates nothing beyond the map key of a new entry: values are
// canonicalised by re-slicing them in place, and error messages are only
// formatted on failure.

func errf(c codes.Code, format string, args ...any) error {
	return status.Errorf(c, format, args...)
}

func tableName(t *tableState) string { return t.info.Preamble.Name }

// canonical checks that b is a non-empty value that fits in width bits and
// returns its canonical form (a subslice of b). what names the value in the
// error; it is only evaluated on failure.
func canonical(b []byte, width int32, what func() string) ([]byte, error) {
	if width <= 0 {
		return nil, errf(codes.Unimplemented, "%s has no bit width in the P4Info (translated types are not supported)", what())
	}
	if len(b) == 0 {
		return nil, errf(codes.InvalidArgument, "%s: empty value", what())
	}
	if !p4info.Fits(b, width) {
		return nil, errf(codes.InvalidArgument, "%s: value 0x%x does not fit in %d bits", what(), b, width)
	}
	return p4info.Canonical(b), nil
}

// appendBytes appends b with its length, so that concatenated fields cannot
// collide.
func appendBytes(buf, b []byte) []byte {
	buf = binary.AppendUvarint(buf, uint64(len(b)))
	return append(buf, b...)
}

// sortMatch orders match fields by id in place. Tables have a handful of
// fields, usually already in order, so an insertion sort that writes only
// when something is out of order is the cheapest (and keeps stored entries,
// which are re-validated on pipeline reconcile, free of writes).
func sortMatch(ms []*p4v1.FieldMatch) {
	for i := 1; i < len(ms); i++ {
		for j := i; j > 0 && ms[j-1].GetFieldId() > ms[j].GetFieldId(); j-- {
			ms[j-1], ms[j] = ms[j], ms[j-1]
		}
	}
}

func sortParams(ps []*p4v1.Action_Param) {
	for i := 1; i < len(ps); i++ {
		for j := i; j > 0 && ps[j-1].GetParamId() > ps[j].GetParamId(); j-- {
			ps[j-1], ps[j] = ps[j], ps[j-1]
		}
	}
}

// matchKey validates te's match and priority against t, canonicalises the
// values in place, and appends to buf the compact key that identifies the
// entry in t.entries. matchLen is the length of the key without the
// priority. With read set, a zero priority on a table that needs one is
// allowed (it is a wildcard) and is left out of the key.
func matchKey(t *tableState, te *p4v1.TableEntry, buf []byte, read bool) (key []byte, matchLen int, err error) {
	ms := te.Match
	for _, fm := range ms {
		if fm == nil {
			return nil, 0, errf(codes.InvalidArgument, "table %q: empty match field", tableName(t))
		}
	}
	sortMatch(ms)
	exact := 0
	for i, fm := range ms {
		if i > 0 && ms[i-1].FieldId == fm.FieldId {
			return nil, 0, errf(codes.InvalidArgument, "table %q: match field id %d given twice", tableName(t), fm.FieldId)
		}
		mf, ok := t.info.FieldByID(fm.FieldId)
		if !ok {
			return nil, 0, errf(codes.InvalidArgument, "table %q has no match field id %d", tableName(t), fm.FieldId)
		}
		what := func() string { return fmt.Sprintf("table %q field %q", tableName(t), mf.Name) }
		buf = binary.AppendUvarint(buf, uint64(fm.FieldId))
		switch mf.GetMatchType() {
		case p4cfg.MatchField_EXACT:
			x := fm.GetExact()
			if x == nil {
				return nil, 0, wrongKind(t, mf, fm)
			}
			c, err := canonical(x.Value, mf.Bitwidth, what)
			if err != nil {
				return nil, 0, err
			}
			if len(c) != len(x.Value) {
				x.Value = c
			}
			buf = appendBytes(buf, c)
			exact++
		case p4cfg.MatchField_LPM:
			x := fm.GetLpm()
			if x == nil {
				return nil, 0, wrongKind(t, mf, fm)
			}
			c, err := canonical(x.Value, mf.Bitwidth, what)
			if err != nil {
				return nil, 0, err
			}
			if x.PrefixLen <= 0 || x.PrefixLen > mf.Bitwidth {
				return nil, 0, errf(codes.InvalidArgument, "%s: prefix_len %d not in 1..%d (omit the field for a don't-care match)", what(), x.PrefixLen, mf.Bitwidth)
			}
			if !lowBitsZero(c, int(mf.Bitwidth-x.PrefixLen)) {
				return nil, 0, errf(codes.InvalidArgument, "%s: value 0x%x has bits set beyond prefix_len %d", what(), c, x.PrefixLen)
			}
			if len(c) != len(x.Value) {
				x.Value = c
			}
			buf = appendBytes(buf, c)
			buf = binary.AppendUvarint(buf, uint64(x.PrefixLen))
		case p4cfg.MatchField_TERNARY:
			x := fm.GetTernary()
			if x == nil {
				return nil, 0, wrongKind(t, mf, fm)
			}
			v, err := canonical(x.Value, mf.Bitwidth, what)
			if err != nil {
				return nil, 0, err
			}
			m, err := canonical(x.Mask, mf.Bitwidth, func() string { return what() + " mask" })
			if err != nil {
				return nil, 0, err
			}
			if len(m) == 1 && m[0] == 0 {
				return nil, 0, errf(codes.InvalidArgument, "%s: zero mask (omit the field for a don't-care match)", what())
			}
			if !maskedOnly(v, m) {
				return nil, 0, errf(codes.InvalidArgument, "%s: value 0x%x has bits outside mask 0x%x", what(), v, m)
			}
			if len(v) != len(x.Value) {
				x.Value = v
			}
			if len(m) != len(x.Mask) {
				x.Mask = m
			}
			buf = appendBytes(buf, v)
			buf = appendBytes(buf, m)
		case p4cfg.MatchField_RANGE:
			x := fm.GetRange()
			if x == nil {
				return nil, 0, wrongKind(t, mf, fm)
			}
			lo, err := canonical(x.Low, mf.Bitwidth, func() string { return what() + " low" })
			if err != nil {
				return nil, 0, err
			}
			hi, err := canonical(x.High, mf.Bitwidth, func() string { return what() + " high" })
			if err != nil {
				return nil, 0, err
			}
			if compareCanonical(lo, hi) > 0 {
				return nil, 0, errf(codes.InvalidArgument, "%s: low 0x%x above high 0x%x", what(), lo, hi)
			}
			if len(lo) == 1 && lo[0] == 0 && isMax(hi, mf.Bitwidth) {
				return nil, 0, errf(codes.InvalidArgument, "%s: full range (omit the field for a don't-care match)", what())
			}
			if len(lo) != len(x.Low) {
				x.Low = lo
			}
			if len(hi) != len(x.High) {
				x.High = hi
			}
			buf = appendBytes(buf, lo)
			buf = appendBytes(buf, hi)
		case p4cfg.MatchField_OPTIONAL:
			x := fm.GetOptional()
			if x == nil {
				return nil, 0, wrongKind(t, mf, fm)
			}
			c, err := canonical(x.Value, mf.Bitwidth, what)
			if err != nil {
				return nil, 0, err
			}
			if len(c) != len(x.Value) {
				x.Value = c
			}
			buf = appendBytes(buf, c)
		default:
			kind := mf.GetOtherMatchType()
			if kind == "" {
				kind = mf.GetMatchType().String()
			}
			return nil, 0, errf(codes.Unimplemented, "%s: match kind %s is not supported", what(), kind)
		}
	}
	if exact < t.numExact {
		for _, mf := range t.info.MatchFields {
			if mf.GetMatchType() == p4cfg.MatchField_EXACT && !hasField(ms, mf.Id) {
				return nil, 0, errf(codes.InvalidArgument, "table %q: exact match field %q is missing", tableName(t), mf.Name)
			}
		}
	}
	matchLen = len(buf)
	switch {
	case t.needsPriority && te.Priority == 0 && read:
	case t.needsPriority && te.Priority <= 0:
		return nil, 0, errf(codes.InvalidArgument, "table %q has ternary, range or optional fields: priority must be > 0, not %d", tableName(t), te.Priority)
	case t.needsPriority:
		buf = binary.BigEndian.AppendUint32(buf, uint32(te.Priority))
	case te.Priority != 0:
		return nil, 0, errf(codes.InvalidArgument, "table %q has only exact and lpm fields: priority must be 0, not %d", tableName(t), te.Priority)
	}
	return buf, matchLen, nil
}

func hasField(ms []*p4v1.FieldMatch, id uint32) bool {
	for _, fm := range ms {
		if fm.FieldId == id {
			return true
		}
	}
	return false
}

func wrongKind(t *tableState, mf *p4cfg.MatchField, fm *p4v1.FieldMatch) error {
	got := "none"
	switch fm.GetFieldMatchType().(type) {
	case *p4v1.FieldMatch_Exact_:
		got = "exact"
	case *p4v1.FieldMatch_Lpm:
		got = "lpm"
	case *p4v1.FieldMatch_Ternary_:
		got = "ternary"
	case *p4v1.FieldMatch_Range_:
		got = "range"
	case *p4v1.FieldMatch_Optional_:
		got = "optional"
	case *p4v1.FieldMatch_Other:
		got = "other"
	}
	return errf(codes.InvalidArgument, "table %q field %q is %v, not %s", tableName(t), mf.Name, mf.GetMatchType(), got)
}

// lowBitsZero reports whether the n least significant bits of c are zero.
func lowBitsZero(c []byte, n int) bool {
	for j := len(c) - 1; j >= 0 && n > 0; j-- {
		if n >= 8 {
			if c[j] != 0 {
				return false
			}
			n -= 8
			continue
		}
		return c[j]&byte(1<<n-1) == 0
	}
	return true
}

// maskedOnly reports whether value&mask == value for canonical v and m.
func maskedOnly(v, m []byte) bool {
	if len(v) > len(m) {
		return false
	}
	for j := 1; j <= len(v); j++ {
		x := v[len(v)-j]
		if x&m[len(m)-j] != x {
			return false
		}
	}
	return true
}

// compareCanonical compares two canonical big-endian values.
func compareCanonical(a, b []byte) int {
	if len(a) != len(b) {
		if len(a) < len(b) {
			return -1
		}
		return 1
	}
	return bytes.Compare(a, b)
}

// isMax reports whether canonical c is 2^width - 1.
func isMax(c []byte, width int32) bool {
	if len(c) != int(width+7)/8 {
		return false
	}
	top := byte(0xff)
	if width%8 != 0 {
		top = byte(1<<(width%8) - 1)
	}
	if c[0] != top {
		return false
	}
	for _, x := range c[1:] {
		if x != 0xff {
			return false
		}
	}
	return true
}

// actionParams validates and canonicalises a's parameters against act.
func actionParams(act *p4info.Action, a *p4v1.Action) error {
	ps := a.Params
	for _, p := range ps {
		if p == nil {
			return errf(codes.InvalidArgument, "action %q: empty parameter", act.Preamble.Name)
		}
	}
	sortParams(ps)
	for i, p := range ps {
		if i > 0 && ps[i-1].ParamId == p.ParamId {
			return errf(codes.InvalidArgument, "action %q: parameter id %d given twice", act.Preamble.Name, p.ParamId)
		}
		info, ok := act.ParamByID(p.ParamId)
		if !ok {
			return errf(codes.InvalidArgument, "action %q has no parameter id %d", act.Preamble.Name, p.ParamId)
		}
		c, err := canonical(p.Value, info.Bitwidth, func() string {
			return fmt.Sprintf("action %q parameter %q", act.Preamble.Name, info.Name)
		})
		if err != nil {
			return err
		}
		if len(c) != len(p.Value) {
			p.Value = c
		}
	}
	if len(ps) != len(act.Params) {
		for _, info := range act.Params {
			found := false
			for _, p := range ps {
				found = found || p.ParamId == info.Id
			}
			if !found {
				return errf(codes.InvalidArgument, "action %q: parameter %q is missing", act.Preamble.Name, info.Name)
			}
		}
	}
	return nil
}

// action resolves a and checks its parameters. scopeOK reports whether the
// action may be used here, and how to say why not.
func (b *batch) action(a *p4v1.Action, allowed func(act *p4info.Action) error) error {
	if a == nil {
		return errf(codes.InvalidArgument, "action unset")
	}
	if a.ActionId == 0 {
		return errf(codes.InvalidArgument, "action_id 0 is not a valid id")
	}
	act, ok := b.schema.ActionByID(a.ActionId)
	if !ok {
		return errf(codes.NotFound, "unknown action id %d", a.ActionId)
	}
	if err := allowed(act); err != nil {
		return err
	}
	return actionParams(act, a)
}

// tableAction validates the action of a table entry (not a default entry).
func (b *batch) tableAction(t *tableState, ta *p4v1.TableAction) error {
	switch a := ta.GetType().(type) {
	case *p4v1.TableAction_Action:
		if t.profile != nil {
			return errf(codes.InvalidArgument, "table %q is implemented by %q: use action_profile_member_id or action_profile_group_id, not an action", tableName(t), t.profile.info.Preamble.Name)
		}
		return b.action(a.Action, func(act *p4info.Action) error {
			ref, ok := t.info.ActionRef(act.Preamble.Id)
			if !ok {
				return errf(codes.InvalidArgument, "action %q is not an action of table %q", act.Preamble.Name, tableName(t))
			}
			if ref.Scope == p4cfg.ActionRef_DEFAULT_ONLY {
				return errf(codes.PermissionDenied, "action %q is default-only in table %q", act.Preamble.Name, tableName(t))
			}
			return nil
		})
	case *p4v1.TableAction_ActionProfileMemberId:
		if t.profile == nil {
			return errf(codes.InvalidArgument, "table %q is a direct table: use an action, not action_profile_member_id", tableName(t))
		}
		if a.ActionProfileMemberId == 0 {
			return errf(codes.InvalidArgument, "action_profile_member_id 0 is not a valid id")
		}
		if t.profile.members[a.ActionProfileMemberId] == nil {
			return errf(codes.NotFound, "action profile %q has no member %d", t.profile.info.Preamble.Name, a.ActionProfileMemberId)
		}
		return nil
	case *p4v1.TableAction_ActionProfileGroupId:
		if t.profile == nil {
			return errf(codes.InvalidArgument, "table %q is a direct table: use an action, not action_profile_group_id", tableName(t))
		}
		if !t.profile.info.WithSelector {
			return errf(codes.InvalidArgument, "table %q is implemented by %q, which has no selector: use action_profile_member_id", tableName(t), t.profile.info.Preamble.Name)
		}
		if a.ActionProfileGroupId == 0 {
			return errf(codes.InvalidArgument, "action_profile_group_id 0 is not a valid id")
		}
		if t.profile.groups[a.ActionProfileGroupId] == nil {
			return errf(codes.NotFound, "action selector %q has no group %d", t.profile.info.Preamble.Name, a.ActionProfileGroupId)
		}
		return nil
	case *p4v1.TableAction_ActionProfileActionSet:
		if t.profile == nil || !t.profile.info.WithSelector {
			return errf(codes.InvalidArgument, "table %q has no action selector: action_profile_action_set is not allowed", tableName(t))
		}
		return errf(codes.Unimplemented, "one-shot action selector programming is not supported: program members and groups")
	default:
		return errf(codes.InvalidArgument, "table %q: action unset", tableName(t))
	}
}

// entryExtras checks the fields beside match and action that this server
// cannot or does not store: direct meters, idle timeouts, counter values.
// A zero counter_data on INSERT is what a new entry starts with anyway, so
// it is accepted (and dropped) to let clients write back what they read.
func entryExtras(t *tableState, typ p4v1.Update_Type, te *p4v1.TableEntry) error {
	if te.MeterConfig != nil || te.MeterCounterData != nil {
		if !t.directMeter {
			return errf(codes.InvalidArgument, "table %q has no direct meter: meter_config and meter_counter_data must be unset", tableName(t))
		}
		return errf(codes.Unimplemented, "table %q: direct meters are not supported", tableName(t))
	}
	if te.IdleTimeoutNs != 0 || te.TimeSinceLastHit != nil {
		if t.info.IdleTimeoutBehavior == p4cfg.Table_NO_TIMEOUT || te.IsDefaultAction {
			return errf(codes.InvalidArgument, "table %q: idle_timeout_ns and time_since_last_hit must be unset (no idle timeout here)", tableName(t))
		}
		return errf(codes.Unimplemented, "table %q: idle timeouts are not supported", tableName(t))
	}
	if cd := te.CounterData; cd != nil {
		if t.info.DirectCounter == nil {
			return errf(codes.InvalidArgument, "table %q has no direct counter: counter_data must be unset", tableName(t))
		}
		if typ != p4v1.Update_INSERT || cd.ByteCount != 0 || cd.PacketCount != 0 {
			return errf(codes.Unimplemented, "table %q: writing direct counter values is not supported", tableName(t))
		}
		te.CounterData = nil
	}
	return nil
}
