package softswitch

import (
	"math/bits"

	p4v1 "github.com/p4lang/p4runtime/go/p4/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/dmsc-mesh/dmsc/p4"
	"github.com/dmsc-mesh/dmsc/p4rt/server"
)

// maxGroupWeight bounds the sum of a group's weights so that the cumulative
// weights of a selection fit in 32 bits with room to spare.
const maxGroupWeight = 1 << 24

// txn stages one Apply call. It starts from the published snapshot and
// writes into copy-on-write writers; finish builds the next snapshot, and an
// abandoned txn changes nothing. Every operation validates completely before
// it mutates, so a change that fails leaves the txn as it was and a
// non-atomic batch can go on with the next change.
type txn struct {
	cur   *snapshot
	ids   *ids
	roles *roleTable // nil until port_role is written

	guard  cowWriter[guardKey, struct{}]
	fib128 cowWriter[[16]byte, *fibEntry]
	fib96  cowWriter[[12]byte, *fibEntry]
	fib64  cowWriter[uint64, *fibEntry]
	fib32  cowWriter[uint32, *fibEntry]
	sel    [2]cowWriter[uint32, *selEntry] // nexthop, local_instance (uint32 keys take the maps' fast path)
	mem    [2]cowWriter[uint32, *member]
	grp    [2]cowWriter[uint32, *group]

	// Resolution work for finish: groups and members whose selection
	// changed, and selector-table entries to resolve.
	dirtyGroups  [2]map[uint32]bool
	dirtyMembers [2]map[uint32]bool
	dirtyEntries [2]map[uint32]bool
}

func newTxn(cur *snapshot) *txn {
	t := &txn{cur: cur, ids: cur.pipe.ids}
	t.guard.init(&cur.guard)
	t.fib128.init(&cur.fib128)
	t.fib96.init(&cur.fib96)
	t.fib64.init(&cur.fib64)
	t.fib32.init(&cur.fib32)
	t.sel[profNH].init(&cur.nh)
	t.sel[profLI].init(&cur.li)
	for i := range cur.prof {
		t.mem[i].init(&cur.prof[i].members)
		t.grp[i].init(&cur.prof[i].groups)
	}
	return t
}

func (t *txn) apply(ch server.Change) error {
	if ch.Entity == nil {
		return status.Error(codes.InvalidArgument, "empty entity")
	}
	switch e := ch.Entity.Entity.(type) {
	case *p4v1.Entity_TableEntry:
		return t.tableEntry(ch.Type, e.TableEntry)
	case *p4v1.Entity_ActionProfileMember:
		return t.profileMember(ch.Type, e.ActionProfileMember)
	case *p4v1.Entity_ActionProfileGroup:
		return t.profileGroup(ch.Type, e.ActionProfileGroup)
	default:
		return status.Errorf(codes.Unimplemented, "the software switch does not write %T", ch.Entity.Entity)
	}
}

// checkUpdate returns the error P4Runtime prescribes for an update of an
// entry that does (exists) or does not exist yet.
func checkUpdate(typ p4v1.Update_Type, exists bool, what string) error {
	switch typ {
	case p4v1.Update_INSERT:
		if exists {
			return status.Errorf(codes.AlreadyExists, "%s already exists", what)
		}
	case p4v1.Update_MODIFY, p4v1.Update_DELETE:
		if !exists {
			return status.Errorf(codes.NotFound, "%s does not exist", what)
		}
	default:
		return status.Errorf(codes.InvalidArgument, "%s: update type %v", what, typ)
	}
	return nil
}

func full(name string, size int) error {
	return status.Errorf(codes.ResourceExhausted, "%s is full (%d entries)", name, size)
}

func (t *txn) tableEntry(typ p4v1.Update_Type, te *p4v1.TableEntry) error {
	if te == nil {
		return status.Error(codes.InvalidArgument, "empty table entry")
	}
	if te.IsDefaultAction {
		return status.Error(codes.InvalidArgument, "the DMSC tables have constant default actions")
	}
	x := t.ids
	switch id := te.TableId; id {
	case x.portRole:
		return t.portRole(typ, te)
	case x.srcGuard:
		return t.srcGuard(typ, te)
	case x.nexthop:
		return t.selectorEntry(typ, te, profNH)
	case x.local:
		return t.selectorEntry(typ, te, profLI)
	default:
		if i := x.fibIndex(id); i >= 0 {
			return t.fibEntry(typ, te, i)
		}
		return status.Errorf(codes.NotFound, "unknown table id %d", id)
	}
}

// mspec describes a match field: id, bit width, name for errors.
type mspec struct {
	id    uint32
	width int32
	name  string
}

// exactKey checks that te matches exactly on the fields of specs, in any
// order, each value fitting its width, and returns the values in spec order.
func exactKey(te *p4v1.TableEntry, table string, specs ...mspec) ([2][]byte, error) {
	var out [2][]byte
	if len(te.Match) != len(specs) {
		return out, status.Errorf(codes.InvalidArgument, "%s: %d match fields, want %d", table, len(te.Match), len(specs))
	}
	for _, m := range te.Match {
		i := -1
		for j, s := range specs {
			if s.id == m.FieldId {
				i = j
			}
		}
		if i < 0 {
			return out, status.Errorf(codes.InvalidArgument, "%s: unknown match field id %d", table, m.FieldId)
		}
		if out[i] != nil {
			return out, status.Errorf(codes.InvalidArgument, "%s: match field %q given twice", table, specs[i].name)
		}
		ex := m.GetExact()
		if ex == nil {
			return out, status.Errorf(codes.InvalidArgument, "%s: match field %q is exact", table, specs[i].name)
		}
		if err := fits(ex.Value, specs[i].width, table+"."+specs[i].name); err != nil {
			return out, err
		}
		out[i] = ex.Value
	}
	return out, nil
}

// fits checks a P4Runtime byte string against a bit width.
func fits(b []byte, width int32, what string) error {
	if len(b) == 0 {
		return status.Errorf(codes.InvalidArgument, "%s: empty value", what)
	}
	n := 0
	for i, c := range b {
		if c != 0 {
			n = (len(b)-i-1)*8 + bits.Len8(c)
			break
		}
	}
	if n > int(width) {
		return status.Errorf(codes.InvalidArgument, "%s: value 0x%x does not fit in %d bits", what, b, width)
	}
	return nil
}

// putBE right-aligns the big-endian value b (which fits) in dst.
func putBE(dst, b []byte) {
	clear(dst)
	for len(b) > len(dst) {
		b = b[1:] // leading zeros, checked by fits
	}
	copy(dst[len(dst)-len(b):], b)
}

// beUint decodes a big-endian value of at most 64 bits that fits.
func beUint(b []byte) uint64 {
	var v uint64
	for _, c := range b {
		v = v<<8 | uint64(c)
	}
	return v
}

// pspec describes an action parameter.
type pspec struct {
	id    uint32
	width int32
	name  string
}

// actionParams checks a's parameters against specs and returns their values
// in spec order (every DMSC parameter fits in 64 bits).
func actionParams(a *p4v1.Action, action string, specs ...pspec) ([3]uint64, error) {
	var out [3]uint64
	if len(a.Params) != len(specs) {
		return out, status.Errorf(codes.InvalidArgument, "%s: %d parameters, want %d", action, len(a.Params), len(specs))
	}
	var seen [3]bool
	for _, p := range a.Params {
		i := -1
		for j, s := range specs {
			if s.id == p.ParamId {
				i = j
			}
		}
		if i < 0 {
			return out, status.Errorf(codes.InvalidArgument, "%s: unknown parameter id %d", action, p.ParamId)
		}
		if seen[i] {
			return out, status.Errorf(codes.InvalidArgument, "%s: parameter %q given twice", action, specs[i].name)
		}
		seen[i] = true
		if err := fits(p.Value, specs[i].width, action+"("+specs[i].name+")"); err != nil {
			return out, err
		}
		out[i] = beUint(p.Value)
	}
	return out, nil
}

func directAction(te *p4v1.TableEntry, table string) (*p4v1.Action, error) {
	a := te.GetAction().GetAction()
	if a == nil {
		return nil, status.Errorf(codes.InvalidArgument, "%s: entry needs a direct action", table)
	}
	return a, nil
}

func (t *txn) portRole(typ p4v1.Update_Type, te *p4v1.TableEntry) error {
	x := t.ids
	k, err := exactKey(te, p4.TablePortRole, mspec{x.portRolePort, 9, p4.FieldPort})
	if err != nil {
		return err
	}
	port := uint16(beUint(k[0]))
	roles := t.cur.roles
	if t.roles != nil {
		roles = t.roles
	}
	if err := checkUpdate(typ, roles.present[port], "port_role entry"); err != nil {
		return err
	}
	var role uint64
	if typ != p4v1.Update_DELETE {
		a, err := directAction(te, p4.TablePortRole)
		if err != nil {
			return err
		}
		if a.ActionId != x.setPortRole {
			return status.Errorf(codes.InvalidArgument, "%s: action id %d is not %s", p4.TablePortRole, a.ActionId, p4.ActionSetPortRole)
		}
		v, err := actionParams(a, p4.ActionSetPortRole, pspec{x.paramRole, 8, p4.ParamRole})
		if err != nil {
			return err
		}
		role = v[0]
		if typ == p4v1.Update_INSERT && roles.n >= x.portRoleSize {
			return full(p4.TablePortRole, x.portRoleSize)
		}
	}
	if t.roles == nil {
		r := *t.cur.roles
		t.roles = &r
	}
	switch typ {
	case p4v1.Update_INSERT:
		t.roles.n++
		t.roles.present[port] = true
		t.roles.role[port] = uint8(role)
	case p4v1.Update_MODIFY:
		t.roles.role[port] = uint8(role)
	case p4v1.Update_DELETE:
		t.roles.n--
		t.roles.present[port] = false
		t.roles.role[port] = 0
	}
	return nil
}

func (t *txn) srcGuard(typ p4v1.Update_Type, te *p4v1.TableEntry) error {
	x := t.ids
	k, err := exactKey(te, p4.TableSrcGuard,
		mspec{x.srcGuardPort, 9, p4.FieldPort}, mspec{x.srcGuardKey, 128, p4.FieldSrcKey})
	if err != nil {
		return err
	}
	var gk guardKey
	gk.port = uint16(beUint(k[0]))
	putBE(gk.key[:], k[1])
	_, exists := t.guard.get(gk)
	if err := checkUpdate(typ, exists, "src_guard entry"); err != nil {
		return err
	}
	if typ != p4v1.Update_DELETE {
		a, err := directAction(te, p4.TableSrcGuard)
		if err != nil {
			return err
		}
		if a.ActionId != x.allow || len(a.Params) != 0 {
			return status.Errorf(codes.InvalidArgument, "%s: action must be %s without parameters", p4.TableSrcGuard, p4.ActionAllow)
		}
		if typ == p4v1.Update_INSERT && t.guard.len() >= x.srcGuardSize {
			return full(p4.TableSrcGuard, x.srcGuardSize)
		}
	}
	if typ == p4v1.Update_DELETE {
		t.guard.del(gk)
	} else {
		t.guard.put(gk, struct{}{})
	}
	return nil
}

// fibEntry writes one of the four FIB tables.
func (t *txn) fibEntry(typ p4v1.Update_Type, te *p4v1.TableEntry, i int) error {
	x := t.ids
	fib := p4.FIBTables[i]
	k, err := exactKey(te, fib.Name, mspec{x.fibKey[i], int32(fib.PrefixLen), p4.FieldDstKey})
	if err != nil {
		return err
	}
	var key [16]byte
	n := fib.PrefixLen / 8
	putBE(key[:n], k[0])

	var old *fibEntry
	var exists bool
	var size int
	switch i {
	case fib128:
		old, exists = t.fib128.get(key)
		size = t.fib128.len()
	case fib96:
		old, exists = t.fib96.get([12]byte(key[:12]))
		size = t.fib96.len()
	case fib64:
		old, exists = t.fib64.get(beUint(key[:8]))
		size = t.fib64.len()
	case fib32:
		old, exists = t.fib32.get(uint32(beUint(key[:4])))
		size = t.fib32.len()
	}
	if err := checkUpdate(typ, exists, fib.Name+" entry"); err != nil {
		return err
	}

	var e *fibEntry
	if typ != p4v1.Update_DELETE {
		a, err := directAction(te, fib.Name)
		if err != nil {
			return err
		}
		e = &fibEntry{}
		switch a.ActionId {
		case x.setNexthopGroup, x.deliverLocal:
			name, pid, fwd := p4.ActionSetNexthopGroup, x.paramNHGroup, uint8(fwdGroup)
			if a.ActionId == x.deliverLocal {
				name, pid, fwd = p4.ActionDeliverLocal, x.paramLocalGroup, fwdLocal
			}
			v, err := actionParams(a, name, pspec{pid, 16, p4.ParamGroupID})
			if err != nil {
				return err
			}
			e.fwd, e.group = fwd, uint16(v[0])
		case x.toCPU, x.drop:
			if len(a.Params) != 0 {
				return status.Errorf(codes.InvalidArgument, "%s: action %d takes no parameters", fib.Name, a.ActionId)
			}
			e.fwd = fwdCPU
			if a.ActionId == x.drop {
				e.fwd = fwdDrop
			}
		default:
			return status.Errorf(codes.InvalidArgument, "%s: action id %d is not a FIB action", fib.Name, a.ActionId)
		}
		if typ == p4v1.Update_INSERT && size >= x.fibSize[i] {
			return full(fib.Name, x.fibSize[i])
		}
		// The direct counter outlives a MODIFY, as on BMv2, unless the
		// update writes it (counter_data): then the entry gets a new cell
		// with that value, so a batch that is rolled back leaves the
		// installed counter alone.
		switch cd := te.CounterData; {
		case cd != nil:
			e.ctr = &counterCell{}
			e.ctr.store(uint64(cd.PacketCount), uint64(cd.ByteCount))
		case old != nil:
			e.ctr = old.ctr
		default:
			e.ctr = &counterCell{}
		}
	}
	switch i {
	case fib128:
		if e == nil {
			t.fib128.del(key)
		} else {
			t.fib128.put(key, e)
		}
	case fib96:
		if e == nil {
			t.fib96.del([12]byte(key[:12]))
		} else {
			t.fib96.put([12]byte(key[:12]), e)
		}
	case fib64:
		if e == nil {
			t.fib64.del(beUint(key[:8]))
		} else {
			t.fib64.put(beUint(key[:8]), e)
		}
	case fib32:
		if e == nil {
			t.fib32.del(uint32(beUint(key[:4])))
		} else {
			t.fib32.put(uint32(beUint(key[:4])), e)
		}
	}
	return nil
}

func (t *txn) profileIndex(id uint32) (int, error) {
	switch id {
	case t.ids.profNexthop:
		return profNH, nil
	case t.ids.profInstance:
		return profLI, nil
	}
	return 0, status.Errorf(codes.NotFound, "unknown action profile id %d", id)
}

func profileName(p int) string {
	if p == profNH {
		return p4.ProfileNexthop
	}
	return p4.ProfileInstance
}

// memberAction decodes a member's action for profile p.
func (t *txn) memberAction(p int, a *p4v1.Action) (memberAction, error) {
	x := t.ids
	var act memberAction
	if a == nil {
		return act, status.Errorf(codes.InvalidArgument, "%s: member without action", profileName(p))
	}
	var v [3]uint64
	var err error
	if p == profNH {
		if a.ActionId != x.setNexthop {
			return act, status.Errorf(codes.InvalidArgument, "%s: member action must be %s", profileName(p), p4.ActionSetNexthop)
		}
		v, err = actionParams(a, p4.ActionSetNexthop, pspec{x.paramNHPort, 9, p4.ParamPort}, pspec{x.paramNHDmac, 48, p4.ParamDmac})
		v[2] = v[1]
		v[1] = 0
	} else {
		if a.ActionId != x.deliverInstance {
			return act, status.Errorf(codes.InvalidArgument, "%s: member action must be %s", profileName(p), p4.ActionDeliverInstance)
		}
		v, err = actionParams(a, p4.ActionDeliverInstance, pspec{x.paramInstPort, 9, p4.ParamPort},
			pspec{x.paramInstID, 32, p4.ParamInstance}, pspec{x.paramInstMAC, 48, p4.ParamDmac})
	}
	if err != nil {
		return act, err
	}
	act.port = uint16(v[0])
	act.instance = uint32(v[1])
	for i := range 6 {
		act.dmac[i] = byte(v[2] >> (8 * (5 - i)))
	}
	return act, nil
}

func (t *txn) profileMember(typ p4v1.Update_Type, m *p4v1.ActionProfileMember) error {
	if m == nil {
		return status.Error(codes.InvalidArgument, "empty action profile member")
	}
	p, err := t.profileIndex(m.ActionProfileId)
	if err != nil {
		return err
	}
	mw := &t.mem[p]
	old, exists := mw.get(m.MemberId)
	if err := checkUpdate(typ, exists, profileName(p)+" member"); err != nil {
		return err
	}
	switch typ {
	case p4v1.Update_DELETE:
		if old.refs > 0 {
			return status.Errorf(codes.FailedPrecondition, "%s member %d is used by %d groups or entries", profileName(p), m.MemberId, old.refs)
		}
		mw.del(m.MemberId)
		return nil
	case p4v1.Update_INSERT:
		size := t.ids.profNexthopSize
		if p == profLI {
			size = t.ids.profInstanceSize
		}
		if mw.len() >= size {
			return full(profileName(p), size)
		}
	}
	act, err := t.memberAction(p, m.Action)
	if err != nil {
		return err
	}
	nm := &member{act: act}
	if old != nil {
		nm.refs = old.refs
		t.markMember(p, m.MemberId)
	}
	mw.put(m.MemberId, nm)
	return nil
}

func (t *txn) markMember(p int, id uint32) {
	if t.dirtyMembers[p] == nil {
		t.dirtyMembers[p] = map[uint32]bool{}
	}
	t.dirtyMembers[p][id] = true
}

func (t *txn) markGroup(p int, id uint32) {
	if t.dirtyGroups[p] == nil {
		t.dirtyGroups[p] = map[uint32]bool{}
	}
	t.dirtyGroups[p][id] = true
}

func (t *txn) markEntry(p int, k uint32) {
	if t.dirtyEntries[p] == nil {
		t.dirtyEntries[p] = map[uint32]bool{}
	}
	t.dirtyEntries[p][k] = true
}

// refMember adds delta to a member's reference count.
func (t *txn) refMember(p int, id uint32, delta int) {
	m, _ := t.mem[p].get(id)
	nm := *m
	nm.refs += delta
	t.mem[p].put(id, &nm)
}

func (t *txn) profileGroup(typ p4v1.Update_Type, g *p4v1.ActionProfileGroup) error {
	if g == nil {
		return status.Error(codes.InvalidArgument, "empty action profile group")
	}
	p, err := t.profileIndex(g.ActionProfileId)
	if err != nil {
		return err
	}
	gw := &t.grp[p]
	old, exists := gw.get(g.GroupId)
	if err := checkUpdate(typ, exists, profileName(p)+" group"); err != nil {
		return err
	}
	if typ == p4v1.Update_DELETE {
		if old.refs > 0 {
			return status.Errorf(codes.FailedPrecondition, "%s group %d is used by %d table entries", profileName(p), g.GroupId, old.refs)
		}
		for _, gm := range old.members {
			t.refMember(p, gm.id, -1)
		}
		gw.del(g.GroupId)
		return nil
	}

	// Validate the whole new member list before touching anything.
	if g.MaxSize < 0 {
		return status.Errorf(codes.InvalidArgument, "%s group %d: negative max_size", profileName(p), g.GroupId)
	}
	maxSize := g.MaxSize
	if maxSize == 0 && old != nil {
		maxSize = old.maxSize
	}
	if maxSize > 0 && int32(len(g.Members)) > maxSize {
		return status.Errorf(codes.ResourceExhausted, "%s group %d: %d members exceed max_size %d", profileName(p), g.GroupId, len(g.Members), maxSize)
	}
	ms := make([]groupMember, 0, len(g.Members))
	var total uint64
	for _, gm := range g.Members {
		if gm == nil {
			return status.Errorf(codes.InvalidArgument, "%s group %d: empty member", profileName(p), g.GroupId)
		}
		if _, ok := t.mem[p].get(gm.MemberId); !ok {
			return status.Errorf(codes.NotFound, "%s group %d: member %d does not exist", profileName(p), g.GroupId, gm.MemberId)
		}
		// Weight 0 is proto3's "unset": clients that predate weights
		// leave it so, and mean 1.
		w := gm.Weight
		if w < 0 {
			return status.Errorf(codes.InvalidArgument, "%s group %d: member %d has weight %d", profileName(p), g.GroupId, gm.MemberId, w)
		}
		if w == 0 {
			w = 1
		}
		total += uint64(w)
		ms = append(ms, groupMember{id: gm.MemberId, weight: uint32(w)})
	}
	if total > maxGroupWeight {
		return status.Errorf(codes.InvalidArgument, "%s group %d: weights sum to %d, more than %d", profileName(p), g.GroupId, total, maxGroupWeight)
	}
	sortMembers(ms)
	for i := 1; i < len(ms); i++ {
		if ms[i].id == ms[i-1].id {
			return status.Errorf(codes.InvalidArgument, "%s group %d: member %d listed twice", profileName(p), g.GroupId, ms[i].id)
		}
	}

	ng := &group{members: ms, maxSize: maxSize}
	if old != nil {
		ng.refs = old.refs
		for _, gm := range old.members {
			t.refMember(p, gm.id, -1)
		}
	}
	for _, gm := range ms {
		t.refMember(p, gm.id, +1)
	}
	gw.put(g.GroupId, ng)
	t.markGroup(p, g.GroupId)
	return nil
}

// selectorEntry writes nexthop (p = profNH) or local_instance (profLI).
func (t *txn) selectorEntry(typ p4v1.Update_Type, te *p4v1.TableEntry, p int) error {
	x := t.ids
	name, fieldID, size := p4.TableNexthop, x.nexthopGroup, x.nexthopSize
	if p == profLI {
		name, fieldID, size = p4.TableLocalInstance, x.localGroup, x.localSize
	}
	k, err := exactKey(te, name, mspec{fieldID, 16, p4.FieldGroupID})
	if err != nil {
		return err
	}
	key := uint32(beUint(k[0]))
	sw := &t.sel[p]
	old, exists := sw.get(key)
	if err := checkUpdate(typ, exists, name+" entry"); err != nil {
		return err
	}
	unref := func(e *selEntry) {
		if e.isGroup {
			g, _ := t.grp[p].get(e.ref)
			ng := *g
			ng.refs--
			t.grp[p].put(e.ref, &ng)
		} else {
			t.refMember(p, e.ref, -1)
		}
	}
	if typ == p4v1.Update_DELETE {
		unref(old)
		sw.del(key)
		return nil
	}

	ne := &selEntry{}
	switch a := te.GetAction().GetType().(type) {
	case *p4v1.TableAction_ActionProfileGroupId:
		if _, ok := t.grp[p].get(a.ActionProfileGroupId); !ok {
			return status.Errorf(codes.NotFound, "%s: group %d does not exist in %s", name, a.ActionProfileGroupId, profileName(p))
		}
		ne.isGroup, ne.ref = true, a.ActionProfileGroupId
	case *p4v1.TableAction_ActionProfileMemberId:
		if _, ok := t.mem[p].get(a.ActionProfileMemberId); !ok {
			return status.Errorf(codes.NotFound, "%s: member %d does not exist in %s", name, a.ActionProfileMemberId, profileName(p))
		}
		ne.ref = a.ActionProfileMemberId
	case *p4v1.TableAction_ActionProfileActionSet:
		return status.Errorf(codes.Unimplemented, "%s: one-shot action sets are not supported; use groups", name)
	default:
		return status.Errorf(codes.InvalidArgument, "%s: entry must name an action profile group or member", name)
	}
	if typ == p4v1.Update_INSERT && sw.len() >= size {
		return full(name, size)
	}
	if old != nil {
		unref(old)
	}
	if ne.isGroup {
		g, _ := t.grp[p].get(ne.ref)
		ng := *g
		ng.refs++
		t.grp[p].put(ne.ref, &ng)
	} else {
		t.refMember(p, ne.ref, +1)
	}
	sw.put(key, ne)
	t.markEntry(p, key)
	return nil
}

// finish resolves the selections that changed and returns the next snapshot.
func (t *txn) finish() *snapshot {
	for p := range 2 {
		t.resolve(p)
	}
	next := &snapshot{
		pipe:   t.cur.pipe,
		roles:  t.cur.roles,
		guard:  t.guard.finish(),
		fib128: t.fib128.finish(),
		fib96:  t.fib96.finish(),
		fib64:  t.fib64.finish(),
		fib32:  t.fib32.finish(),
		nh:     t.sel[profNH].finish(),
		li:     t.sel[profLI].finish(),
	}
	if t.roles != nil {
		next.roles = t.roles
	}
	for p := range 2 {
		next.prof[p] = profile{members: t.mem[p].finish(), groups: t.grp[p].finish()}
	}
	return next
}

// resolve recompiles the selections of profile p that this batch changed:
// groups written, groups containing modified members, and the selector-table
// entries that use either or were written themselves.
func (t *txn) resolve(p int) {
	dm, dg, de := t.dirtyMembers[p], t.dirtyGroups[p], t.dirtyEntries[p]
	if len(dm) == 0 && len(dg) == 0 && len(de) == 0 {
		return
	}
	if dg == nil {
		dg = map[uint32]bool{}
	}
	if len(dm) > 0 {
		t.grp[p].each(func(id uint32, g *group) bool {
			for _, gm := range g.members {
				if dm[gm.id] {
					dg[id] = true
					break
				}
			}
			return true
		})
	}
	memberOf := func(id uint32) (*member, bool) { return t.mem[p].get(id) }
	for id := range dg {
		g, ok := t.grp[p].get(id)
		if !ok {
			continue // deleted later in the batch
		}
		ng := *g
		ng.sel = compileSelection(ng.members, memberOf)
		t.grp[p].put(id, &ng)
	}
	resolveEntry := func(e *selEntry) *selEntry {
		ne := *e
		if e.isGroup {
			g, _ := t.grp[p].get(e.ref)
			ne.sel = g.sel
		} else {
			m, _ := t.mem[p].get(e.ref)
			ne.sel = singleSelection(m.act)
		}
		return &ne
	}
	sw := &t.sel[p]
	if len(dm) > 0 || len(dg) > 0 {
		// Entries that refer to a changed group or member: a scan of the
		// selector table, which holds one entry per next-hop set.
		var stale []uint32
		sw.each(func(k uint32, e *selEntry) bool {
			if de[k] || (e.isGroup && dg[e.ref]) || (!e.isGroup && dm[e.ref]) {
				stale = append(stale, k)
			}
			return true
		})
		for _, k := range stale {
			e, _ := sw.get(k)
			sw.put(k, resolveEntry(e))
		}
		return
	}
	for k := range de {
		if e, ok := sw.get(k); ok {
			sw.put(k, resolveEntry(e))
		}
	}
}
