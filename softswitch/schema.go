package softswitch

import (
	"errors"
	"fmt"

	p4cfg "github.com/p4lang/p4runtime/go/p4/config/v1"

	"github.com/dmsc-mesh/dmsc/p4"
	"github.com/dmsc-mesh/dmsc/p4rt/p4info"
)

// Indexes of the four FIB tables, longest prefix first (p4.FIBTables order).
const (
	fib128 = iota
	fib96
	fib64
	fib32
)

// ids holds every P4Info id the software switch needs, resolved by name from
// the P4Info it was given. Nothing in this package hard-codes an id: a
// recompiled program with new ids works unchanged, and a program that lacks a
// table, action, field or counter the pipeline needs is refused whole, with
// every problem named.
type ids struct {
	// Tables and their match fields.
	portRole, srcGuard, nexthop, local uint32
	fib                                [4]uint32
	portRolePort                       uint32
	srcGuardPort, srcGuardKey          uint32
	fibKey                             [4]uint32
	nexthopGroup, localGroup           uint32

	// Table sizes from the P4Info, enforced with RESOURCE_EXHAUSTED.
	portRoleSize, srcGuardSize, nexthopSize, localSize int
	fibSize                                            [4]int

	// Actions and parameters.
	setPortRole, allow                       uint32
	setNexthopGroup, deliverLocal            uint32
	toCPU, drop                              uint32
	setNexthop, deliverInstance              uint32
	paramRole                                uint32
	paramNHGroup, paramLocalGroup            uint32
	paramNHPort, paramNHDmac                 uint32
	paramInstPort, paramInstID, paramInstMAC uint32

	// Action selectors and their member capacity.
	profNexthop, profInstance         uint32
	profNexthopSize, profInstanceSize int

	// Counters.
	ctrPortRx, ctrPortTx, ctrDrop uint32
	directFIB                     [4]uint32

	// Controller packet metadata.
	pinIngressPort, pinReason uint32
	poutEgressPort, poutMode  uint32
}

// resolveIDs maps the DMSC pipeline's names to ids in schema and checks bit
// widths, table implementations and counter sizes against what the Go
// pipeline assumes. The error lists every mismatch, not only the first.
func resolveIDs(schema *p4info.Schema) (*ids, error) {
	if schema == nil {
		return nil, errors.New("softswitch: no P4Info")
	}
	var errs []error
	fail := func(err error) { errs = append(errs, err) }

	table := func(name string, size *int) (*p4info.Table, uint32) {
		t, err := schema.Table(name)
		if err != nil {
			fail(err)
			return nil, 0
		}
		if size != nil {
			*size = int(t.Size)
			if t.Size <= 0 {
				*size = 1 << 20 // a P4Info without sizes: do not refuse everything
			}
		}
		return t, t.Preamble.Id
	}
	field := func(t *p4info.Table, name string, width int32) uint32 {
		if t == nil {
			return 0
		}
		f, err := t.Field(name)
		if err != nil {
			fail(err)
			return 0
		}
		if f.Bitwidth != width {
			fail(fmt.Errorf("table %q field %q: bitwidth %d, the pipeline needs %d", t.Preamble.Name, name, f.Bitwidth, width))
		}
		if f.GetMatchType() != p4cfg.MatchField_EXACT {
			fail(fmt.Errorf("table %q field %q: match type %v, the pipeline needs EXACT", t.Preamble.Name, name, f.GetMatchType()))
		}
		return f.Id
	}
	type param struct {
		name  string
		width int32
		id    *uint32
	}
	action := func(name string, params ...param) uint32 {
		a, err := schema.Action(name)
		if err != nil {
			fail(err)
			return 0
		}
		if len(a.Params) != len(params) {
			fail(fmt.Errorf("action %q: %d parameters, the pipeline needs %d", name, len(a.Params), len(params)))
		}
		for _, p := range params {
			ap, err := a.Param(p.name)
			if err != nil {
				fail(err)
				continue
			}
			if ap.Bitwidth != p.width {
				fail(fmt.Errorf("action %q parameter %q: bitwidth %d, the pipeline needs %d", name, p.name, ap.Bitwidth, p.width))
			}
			*p.id = ap.Id
		}
		return a.Preamble.Id
	}
	allows := func(t *p4info.Table, actionID uint32, actionName string) {
		if t == nil || actionID == 0 {
			return
		}
		if _, ok := t.ActionRef(actionID); !ok {
			fail(fmt.Errorf("table %q does not allow action %q", t.Preamble.Name, actionName))
		}
	}

	x := &ids{}
	x.setPortRole = action(p4.ActionSetPortRole, param{p4.ParamRole, 8, &x.paramRole})
	x.allow = action(p4.ActionAllow)
	x.setNexthopGroup = action(p4.ActionSetNexthopGroup, param{p4.ParamGroupID, 16, &x.paramNHGroup})
	x.deliverLocal = action(p4.ActionDeliverLocal, param{p4.ParamGroupID, 16, &x.paramLocalGroup})
	x.toCPU = action(p4.ActionToCPU)
	x.drop = action(p4.ActionDrop)
	x.setNexthop = action(p4.ActionSetNexthop,
		param{p4.ParamPort, 9, &x.paramNHPort}, param{p4.ParamDmac, 48, &x.paramNHDmac})
	x.deliverInstance = action(p4.ActionDeliverInstance,
		param{p4.ParamPort, 9, &x.paramInstPort}, param{p4.ParamInstance, 32, &x.paramInstID},
		param{p4.ParamDmac, 48, &x.paramInstMAC})

	var t *p4info.Table
	t, x.portRole = table(p4.TablePortRole, &x.portRoleSize)
	x.portRolePort = field(t, p4.FieldPort, 9)
	allows(t, x.setPortRole, p4.ActionSetPortRole)

	t, x.srcGuard = table(p4.TableSrcGuard, &x.srcGuardSize)
	x.srcGuardPort = field(t, p4.FieldPort, 9)
	x.srcGuardKey = field(t, p4.FieldSrcKey, 128)
	allows(t, x.allow, p4.ActionAllow)

	for i, fib := range p4.FIBTables {
		t, x.fib[i] = table(fib.Name, &x.fibSize[i])
		x.fibKey[i] = field(t, p4.FieldDstKey, int32(fib.PrefixLen))
		allows(t, x.setNexthopGroup, p4.ActionSetNexthopGroup)
		allows(t, x.deliverLocal, p4.ActionDeliverLocal)
		allows(t, x.toCPU, p4.ActionToCPU)
		allows(t, x.drop, p4.ActionDrop)
		if t != nil {
			if t.DirectCounter == nil {
				fail(fmt.Errorf("table %q has no direct counter", fib.Name))
			} else {
				x.directFIB[i] = t.DirectCounter.Preamble.Id
			}
		}
	}

	selector := func(tableName, profileName string, tableID *uint32, tableSize *int, groupField *uint32,
		profID *uint32, profSize *int, memberAction uint32, memberActionName string) {
		t, id := table(tableName, tableSize)
		*tableID = id
		*groupField = field(t, p4.FieldGroupID, 16)
		allows(t, memberAction, memberActionName)
		ap, err := schema.ActionProfile(profileName)
		if err != nil {
			fail(err)
			return
		}
		if !ap.WithSelector {
			fail(fmt.Errorf("action profile %q is not a selector", profileName))
		}
		if t != nil && t.Profile != ap {
			fail(fmt.Errorf("table %q is not implemented by %q", tableName, profileName))
		}
		*profID = ap.Preamble.Id
		*profSize = int(ap.Size)
		if ap.Size <= 0 {
			*profSize = 1 << 16
		}
	}
	selector(p4.TableNexthop, p4.ProfileNexthop, &x.nexthop, &x.nexthopSize, &x.nexthopGroup,
		&x.profNexthop, &x.profNexthopSize, x.setNexthop, p4.ActionSetNexthop)
	selector(p4.TableLocalInstance, p4.ProfileInstance, &x.local, &x.localSize, &x.localGroup,
		&x.profInstance, &x.profInstanceSize, x.deliverInstance, p4.ActionDeliverInstance)

	counter := func(name string, min int64) uint32 {
		c, err := schema.Counter(name)
		if err != nil {
			fail(err)
			return 0
		}
		if c.Size < min {
			fail(fmt.Errorf("counter %q: size %d, the pipeline needs %d", name, c.Size, min))
		}
		return c.Preamble.Id
	}
	x.ctrPortRx = counter(p4.CounterPortRx, p4.MaxPorts)
	x.ctrPortTx = counter(p4.CounterPortTx, p4.MaxPorts)
	x.ctrDrop = counter(p4.CounterDrop, numDropReasons)

	meta := func(header, name string) uint32 {
		pm, err := schema.PacketMetadata(header)
		if err != nil {
			fail(err)
			return 0
		}
		f, err := pm.Field(name)
		if err != nil {
			fail(err)
			return 0
		}
		if f.Bitwidth != 16 {
			fail(fmt.Errorf("%s field %q: bitwidth %d, the pipeline needs 16", header, name, f.Bitwidth))
		}
		return f.Id
	}
	x.pinIngressPort = meta(p4.PacketIn, p4.MetaIngress)
	x.pinReason = meta(p4.PacketIn, p4.MetaReason)
	x.poutEgressPort = meta(p4.PacketOut, p4.MetaEgressPort)
	x.poutMode = meta(p4.PacketOut, p4.MetaMode)

	if len(errs) > 0 {
		return nil, fmt.Errorf("softswitch: the P4Info does not fit the DMSC pipeline: %w", errors.Join(errs...))
	}
	return x, nil
}

// fibIndex returns which FIB table id is, or -1.
func (x *ids) fibIndex(id uint32) int {
	for i, f := range x.fib {
		if f == id {
			return i
		}
	}
	return -1
}
