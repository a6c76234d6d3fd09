package server

import (
	"unicode/utf8"

	p4v1 "github.com/p4lang/p4runtime/go/p4/v1"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// decodeWrite parses a serialized WriteRequest.
//
// Generic protobuf decoding costs about fifteen allocations per table-entry
// update, most of them for oneof wrappers, and was most of the server's time
// in a large Write. This decoder allocates the messages of a batch in slabs
// and points byte fields into b (which the caller hands over and must not
// reuse). It knows the common shapes only: table entries with plain match
// fields and direct or profile actions, action profile members and groups.
// Any other update, and anything unusual in one (an unknown or repeated
// field, an unexpected wire type), is decoded by proto.Unmarshal, as is the
// whole request when its top level is unusual, so the result is always what
// proto.Unmarshal would produce (FuzzDecodeWrite checks this).
//
// Entities decoded here share slabs, so an installed entry keeps its batch's
// slab alive: memory is held per batch, not per entry, until the last entry
// of a batch is deleted.
func decodeWrite(b []byte) (*p4v1.WriteRequest, error) {
	req := &p4v1.WriteRequest{}
	var ups [][]byte
	orig := b
	generic := func() (*p4v1.WriteRequest, error) {
		req := &p4v1.WriteRequest{}
		if err := proto.Unmarshal(orig, req); err != nil {
			return nil, err
		}
		return req, nil
	}
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return generic()
		}
		b = b[n:]
		switch {
		case typ == protowire.VarintType && (num == 1 || num == 2 || num == 5):
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return generic()
			}
			b = b[n:]
			switch num {
			case 1:
				req.DeviceId = v
			case 2:
				req.RoleId = v //nolint:staticcheck // decoded like any other field
			case 5:
				req.Atomicity = p4v1.WriteRequest_Atomicity(int32(v))
			}
		case typ == protowire.BytesType && (num == 3 || num == 4 || num == 6):
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return generic()
			}
			b = b[n:]
			switch num {
			case 3:
				if req.ElectionId != nil {
					return generic() // a repeated message field merges
				}
				req.ElectionId = &p4v1.Uint128{}
				if proto.Unmarshal(v, req.ElectionId) != nil {
					return generic()
				}
			case 4:
				ups = append(ups, v)
			case 6:
				if !utf8.Valid(v) {
					return generic()
				}
				req.Role = string(v)
			}
		default:
			return generic()
		}
	}
	if len(ups) == 0 {
		return req, nil
	}
	d := newDecoder(ups)
	req.Updates = make([]*p4v1.Update, len(ups))
	for i, ub := range ups {
		u := d.updates.alloc()
		if !d.update(ub, u) {
			u = &p4v1.Update{}
			if err := proto.Unmarshal(ub, u); err != nil {
				return nil, err
			}
		}
		req.Updates[i] = u
	}
	return req, nil
}

// slab hands out pointers into arrays allocated a chunk at a time.
type slab[T any] struct {
	free      []T
	next, max int
}

// newSlab sizes the first chunk for the expected count; later chunks double
// up to max.
func newSlab[T any](expect, max int) slab[T] {
	if expect <= 0 {
		expect = 8
	}
	return slab[T]{next: expect, max: max}
}

func (s *slab[T]) alloc() *T {
	if len(s.free) == 0 {
		s.free = make([]T, s.next)
		s.next = max(min(2*s.next, s.max), s.next)
	}
	p := &s.free[0]
	s.free = s.free[1:]
	return p
}

// ptrs hands out sub-slices of chunked pointer arrays.
type ptrs[T any] struct {
	free []*T
	size int
}

func (p *ptrs[T]) take(src []*T) []*T {
	if len(p.free) < len(src) {
		p.free = make([]*T, max(p.size, len(src)))
	}
	out := p.free[:len(src):len(src)]
	copy(out, src)
	p.free = p.free[len(src):]
	return out
}

type decoder struct {
	updates     slab[p4v1.Update]
	entities    slab[p4v1.Entity]
	entryWraps  slab[p4v1.Entity_TableEntry]
	entries     slab[p4v1.TableEntry]
	matches     slab[p4v1.FieldMatch]
	exactWraps  slab[p4v1.FieldMatch_Exact_]
	exacts      slab[p4v1.FieldMatch_Exact]
	tableActs   slab[p4v1.TableAction]
	actWraps    slab[p4v1.TableAction_Action]
	actions     slab[p4v1.Action]
	params      slab[p4v1.Action_Param]
	memberRefs  slab[p4v1.TableAction_ActionProfileMemberId]
	groupRefs   slab[p4v1.TableAction_ActionProfileGroupId]
	memberWraps slab[p4v1.Entity_ActionProfileMember]
	members     slab[p4v1.ActionProfileMember]
	groupWraps  slab[p4v1.Entity_ActionProfileGroup]
	groups      slab[p4v1.ActionProfileGroup]
	groupMems   slab[p4v1.ActionProfileGroup_Member]

	matchPtrs ptrs[p4v1.FieldMatch]
	paramPtrs ptrs[p4v1.Action_Param]
	gmPtrs    ptrs[p4v1.ActionProfileGroup_Member]

	// scratch for repeated fields while one message is parsed
	ms  []*p4v1.FieldMatch
	ps  []*p4v1.Action_Param
	gms []*p4v1.ActionProfileGroup_Member
}

// newDecoder sizes the slabs from a first look at what each update holds,
// so that a batch of 1,000 entries allocates each kind of message once.
func newDecoder(ups [][]byte) *decoder {
	n := len(ups)
	var entries, members, groups int
	for _, u := range ups {
		switch peekEntity(u) {
		case 2:
			entries++
		case 3:
			members++
		case 4:
			groups++
		}
	}
	return &decoder{
		updates:     newSlab[p4v1.Update](n, n),
		entities:    newSlab[p4v1.Entity](n, n),
		entryWraps:  newSlab[p4v1.Entity_TableEntry](entries, n),
		entries:     newSlab[p4v1.TableEntry](entries, n),
		matches:     newSlab[p4v1.FieldMatch](entries, n),
		exactWraps:  newSlab[p4v1.FieldMatch_Exact_](entries, n),
		exacts:      newSlab[p4v1.FieldMatch_Exact](entries, n),
		tableActs:   newSlab[p4v1.TableAction](entries, n),
		actWraps:    newSlab[p4v1.TableAction_Action](entries, n),
		actions:     newSlab[p4v1.Action](entries+members, n),
		params:      newSlab[p4v1.Action_Param](entries+2*members, 2*n),
		memberRefs:  newSlab[p4v1.TableAction_ActionProfileMemberId](0, n),
		groupRefs:   newSlab[p4v1.TableAction_ActionProfileGroupId](0, n),
		memberWraps: newSlab[p4v1.Entity_ActionProfileMember](members, n),
		members:     newSlab[p4v1.ActionProfileMember](members, n),
		groupWraps:  newSlab[p4v1.Entity_ActionProfileGroup](groups, n),
		groups:      newSlab[p4v1.ActionProfileGroup](groups, n),
		groupMems:   newSlab[p4v1.ActionProfileGroup_Member](4*groups, 4*n),
		matchPtrs:   ptrs[p4v1.FieldMatch]{size: max(entries, 8)},
		paramPtrs:   ptrs[p4v1.Action_Param]{size: max(entries+2*members, 8)},
		gmPtrs:      ptrs[p4v1.ActionProfileGroup_Member]{size: max(4*groups, 8)},
	}
}

// peekEntity returns the field number of the first field of an update's
// entity (2 table entry, 3 member, 4 group), or 0.
func peekEntity(b []byte) protowire.Number {
	for len(b) > 0 {
		num, _, bs, rest, isBytes, ok := field(b)
		if !ok {
			return 0
		}
		if num == 2 && isBytes {
			num, _, n := protowire.ConsumeTag(bs)
			if n < 0 {
				return 0
			}
			return num
		}
		b = rest
	}
	return 0
}

// field reads one field of a message: its number, and either a varint or
// a length-delimited value. ok is false for anything else or a decoding
// error, which sends the caller to proto.Unmarshal.
func field(b []byte) (num protowire.Number, v uint64, bs []byte, rest []byte, isBytes, ok bool) {
	num, typ, n := protowire.ConsumeTag(b)
	if n < 0 {
		return 0, 0, nil, nil, false, false
	}
	b = b[n:]
	switch typ {
	case protowire.VarintType:
		v, n = protowire.ConsumeVarint(b)
		if n < 0 {
			return 0, 0, nil, nil, false, false
		}
		return num, v, nil, b[n:], false, true
	case protowire.BytesType:
		bs, n = protowire.ConsumeBytes(b)
		if n < 0 {
			return 0, 0, nil, nil, false, false
		}
		return num, 0, bs, b[n:], true, true
	}
	return 0, 0, nil, nil, false, false
}

func (d *decoder) update(b []byte, u *p4v1.Update) bool {
	for len(b) > 0 {
		num, v, bs, rest, isBytes, ok := field(b)
		if !ok {
			return false
		}
		b = rest
		switch {
		case num == 1 && !isBytes:
			u.Type = p4v1.Update_Type(int32(v))
		case num == 2 && isBytes && u.Entity == nil:
			u.Entity = d.entities.alloc()
			if !d.entity(bs, u.Entity) {
				return false
			}
		default:
			return false
		}
	}
	return true
}

func (d *decoder) entity(b []byte, e *p4v1.Entity) bool {
	for len(b) > 0 {
		num, _, bs, rest, isBytes, ok := field(b)
		if !ok || !isBytes || e.Entity != nil {
			return false
		}
		b = rest
		switch num {
		case 2:
			w := d.entryWraps.alloc()
			w.TableEntry = d.entries.alloc()
			e.Entity = w
			if !d.tableEntry(bs, w.TableEntry) {
				return false
			}
		case 3:
			w := d.memberWraps.alloc()
			w.ActionProfileMember = d.members.alloc()
			e.Entity = w
			if !d.member(bs, w.ActionProfileMember) {
				return false
			}
		case 4:
			w := d.groupWraps.alloc()
			w.ActionProfileGroup = d.groups.alloc()
			e.Entity = w
			if !d.group(bs, w.ActionProfileGroup) {
				return false
			}
		default:
			return false
		}
	}
	return true
}

func (d *decoder) tableEntry(b []byte, te *p4v1.TableEntry) bool {
	d.ms = d.ms[:0]
	for len(b) > 0 {
		num, v, bs, rest, isBytes, ok := field(b)
		if !ok {
			return false
		}
		b = rest
		switch {
		case num == 1 && !isBytes:
			te.TableId = uint32(v)
		case num == 2 && isBytes:
			m := d.matches.alloc()
			if !d.fieldMatch(bs, m) {
				return false
			}
			d.ms = append(d.ms, m)
		case num == 3 && isBytes && te.Action == nil:
			te.Action = d.tableActs.alloc()
			if !d.tableAction(bs, te.Action) {
				return false
			}
		case num == 4 && !isBytes:
			te.Priority = int32(v)
		case num == 5 && !isBytes:
			te.ControllerMetadata = v //nolint:staticcheck // decoded like any other field
		case num == 8 && !isBytes:
			te.IsDefaultAction = v != 0
		case num == 9 && !isBytes:
			te.IdleTimeoutNs = int64(v)
		case num == 11 && isBytes:
			te.Metadata = bs
		case num == 13 && !isBytes:
			te.IsConst = v != 0
		default:
			return false
		}
	}
	if len(d.ms) > 0 {
		te.Match = d.matchPtrs.take(d.ms)
	}
	return true
}

func (d *decoder) fieldMatch(b []byte, m *p4v1.FieldMatch) bool {
	for len(b) > 0 {
		num, v, bs, rest, isBytes, ok := field(b)
		if !ok {
			return false
		}
		b = rest
		switch {
		case num == 1 && !isBytes:
			m.FieldId = uint32(v)
		case num == 2 && isBytes && m.FieldMatchType == nil:
			w := d.exactWraps.alloc()
			w.Exact = d.exacts.alloc()
			m.FieldMatchType = w
			if !oneBytes(bs, &w.Exact.Value) {
				return false
			}
		case isBytes && m.FieldMatchType == nil && (num == 3 || num == 4 || num == 6 || num == 7):
			// The other kinds are rare: plain allocations.
			var ok bool
			switch num {
			case 3:
				x := &p4v1.FieldMatch_Ternary{}
				m.FieldMatchType = &p4v1.FieldMatch_Ternary_{Ternary: x}
				ok = twoBytes(bs, &x.Value, &x.Mask)
			case 4:
				x := &p4v1.FieldMatch_LPM{}
				m.FieldMatchType = &p4v1.FieldMatch_Lpm{Lpm: x}
				ok = lpm(bs, x)
			case 6:
				x := &p4v1.FieldMatch_Range{}
				m.FieldMatchType = &p4v1.FieldMatch_Range_{Range: x}
				ok = twoBytes(bs, &x.Low, &x.High)
			case 7:
				x := &p4v1.FieldMatch_Optional{}
				m.FieldMatchType = &p4v1.FieldMatch_Optional_{Optional: x}
				ok = oneBytes(bs, &x.Value)
			}
			if !ok {
				return false
			}
		default:
			return false
		}
	}
	return true
}

// oneBytes decodes a message whose only field is bytes field 1.
func oneBytes(b []byte, v *[]byte) bool {
	for len(b) > 0 {
		num, _, bs, rest, isBytes, ok := field(b)
		if !ok || !isBytes || num != 1 {
			return false
		}
		*v, b = bs, rest
	}
	return true
}

// twoBytes decodes a message of bytes fields 1 and 2.
func twoBytes(b []byte, v1, v2 *[]byte) bool {
	for len(b) > 0 {
		num, _, bs, rest, isBytes, ok := field(b)
		if !ok || !isBytes || (num != 1 && num != 2) {
			return false
		}
		if num == 1 {
			*v1 = bs
		} else {
			*v2 = bs
		}
		b = rest
	}
	return true
}

func lpm(b []byte, x *p4v1.FieldMatch_LPM) bool {
	for len(b) > 0 {
		num, v, bs, rest, isBytes, ok := field(b)
		if !ok {
			return false
		}
		b = rest
		switch {
		case num == 1 && isBytes:
			x.Value = bs
		case num == 2 && !isBytes:
			x.PrefixLen = int32(v)
		default:
			return false
		}
	}
	return true
}

func (d *decoder) tableAction(b []byte, ta *p4v1.TableAction) bool {
	for len(b) > 0 {
		num, v, bs, rest, isBytes, ok := field(b)
		if !ok || ta.Type != nil {
			return false
		}
		b = rest
		switch {
		case num == 1 && isBytes:
			w := d.actWraps.alloc()
			w.Action = d.actions.alloc()
			ta.Type = w
			if !d.action(bs, w.Action) {
				return false
			}
		case num == 2 && !isBytes:
			w := d.memberRefs.alloc()
			w.ActionProfileMemberId = uint32(v)
			ta.Type = w
		case num == 3 && !isBytes:
			w := d.groupRefs.alloc()
			w.ActionProfileGroupId = uint32(v)
			ta.Type = w
		default:
			return false
		}
	}
	return true
}

func (d *decoder) action(b []byte, a *p4v1.Action) bool {
	d.ps = d.ps[:0]
	for len(b) > 0 {
		num, v, bs, rest, isBytes, ok := field(b)
		if !ok {
			return false
		}
		b = rest
		switch {
		case num == 1 && !isBytes:
			a.ActionId = uint32(v)
		case num == 4 && isBytes:
			p := d.params.alloc()
			if !d.param(bs, p) {
				return false
			}
			d.ps = append(d.ps, p)
		default:
			return false
		}
	}
	if len(d.ps) > 0 {
		a.Params = d.paramPtrs.take(d.ps)
	}
	return true
}

func (d *decoder) param(b []byte, p *p4v1.Action_Param) bool {
	for len(b) > 0 {
		num, v, bs, rest, isBytes, ok := field(b)
		if !ok {
			return false
		}
		b = rest
		switch {
		case num == 2 && !isBytes:
			p.ParamId = uint32(v)
		case num == 3 && isBytes:
			p.Value = bs
		default:
			return false
		}
	}
	return true
}

func (d *decoder) member(b []byte, m *p4v1.ActionProfileMember) bool {
	for len(b) > 0 {
		num, v, bs, rest, isBytes, ok := field(b)
		if !ok {
			return false
		}
		b = rest
		switch {
		case num == 1 && !isBytes:
			m.ActionProfileId = uint32(v)
		case num == 2 && !isBytes:
			m.MemberId = uint32(v)
		case num == 3 && isBytes && m.Action == nil:
			m.Action = d.actions.alloc()
			if !d.action(bs, m.Action) {
				return false
			}
		default:
			return false
		}
	}
	return true
}

func (d *decoder) group(b []byte, g *p4v1.ActionProfileGroup) bool {
	d.gms = d.gms[:0]
	for len(b) > 0 {
		num, v, bs, rest, isBytes, ok := field(b)
		if !ok {
			return false
		}
		b = rest
		switch {
		case num == 1 && !isBytes:
			g.ActionProfileId = uint32(v)
		case num == 2 && !isBytes:
			g.GroupId = uint32(v)
		case num == 3 && isBytes:
			m := d.groupMems.alloc()
			if !groupMember(bs, m) {
				return false
			}
			d.gms = append(d.gms, m)
		case num == 4 && !isBytes:
			g.MaxSize = int32(v)
		default:
			return false
		}
	}
	if len(d.gms) > 0 {
		g.Members = d.gmPtrs.take(d.gms)
	}
	return true
}

func groupMember(b []byte, m *p4v1.ActionProfileGroup_Member) bool {
	for len(b) > 0 {
		num, v, _, rest, isBytes, ok := field(b)
		if !ok || isBytes {
			return false
		}
		b = rest
		switch num {
		case 1:
			m.MemberId = uint32(v)
		case 2:
			m.Weight = int32(v)
		default:
			return false // watch ports and anything else
		}
	}
	return true
}
