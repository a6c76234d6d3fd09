package p4

import "testing"

// TestNamesExistInP4Info checks every name Go code uses against the committed
// P4Info, with the bit widths the Go code assumes.
func TestNamesExistInP4Info(t *testing.T) {
	s, err := Schema()
	if err != nil {
		t.Fatal(err)
	}
	fields := []struct {
		table, field string
		bitwidth     int32
	}{
		{TablePortRole, FieldPort, 9},
		{TableSrcGuard, FieldPort, 9},
		{TableSrcGuard, FieldSrcKey, 128},
		{TableFIB128, FieldDstKey, 128},
		{TableFIB96, FieldDstKey, 96},
		{TableFIB64, FieldDstKey, 64},
		{TableFIB32, FieldDstKey, 32},
		{TableNexthop, FieldGroupID, 16},
		{TableLocalInstance, FieldGroupID, 16},
	}
	for _, f := range fields {
		tbl, err := s.Table(f.table)
		if err != nil {
			t.Error(err)
			continue
		}
		mf, err := tbl.Field(f.field)
		if err != nil {
			t.Error(err)
			continue
		}
		if mf.Bitwidth != f.bitwidth {
			t.Errorf("%s.%s: bitwidth %d, Go assumes %d", f.table, f.field, mf.Bitwidth, f.bitwidth)
		}
	}
	for _, fib := range FIBTables {
		tbl, err := s.Table(fib.Name)
		if err != nil {
			t.Error(err)
			continue
		}
		if tbl.DirectCounter == nil {
			t.Errorf("%s: no direct counter", fib.Name)
		}
		for _, a := range []string{ActionSetNexthopGroup, ActionDeliverLocal, ActionToCPU, ActionDrop} {
			act, err := s.Action(a)
			if err != nil {
				t.Error(err)
				continue
			}
			if _, ok := tbl.ActionRef(act.Preamble.Id); !ok {
				t.Errorf("%s lacks action %s", fib.Name, a)
			}
		}
	}
	params := []struct {
		action, param string
		bitwidth      int32
	}{
		{ActionSetPortRole, ParamRole, 8},
		{ActionSetNexthopGroup, ParamGroupID, 16},
		{ActionDeliverLocal, ParamGroupID, 16},
		{ActionSetNexthop, ParamPort, 9},
		{ActionSetNexthop, ParamDmac, 48},
		{ActionDeliverInstance, ParamPort, 9},
		{ActionDeliverInstance, ParamInstance, 32},
		{ActionDeliverInstance, ParamDmac, 48},
	}
	for _, p := range params {
		a, err := s.Action(p.action)
		if err != nil {
			t.Error(err)
			continue
		}
		ap, err := a.Param(p.param)
		if err != nil {
			t.Error(err)
			continue
		}
		if ap.Bitwidth != p.bitwidth {
			t.Errorf("%s(%s): bitwidth %d, Go assumes %d", p.action, p.param, ap.Bitwidth, p.bitwidth)
		}
	}
	for _, a := range []string{ActionNoAction, ActionAllow} {
		if _, err := s.Action(a); err != nil {
			t.Error(err)
		}
	}
	for _, p := range []struct{ profile, table string }{{ProfileNexthop, TableNexthop}, {ProfileInstance, TableLocalInstance}} {
		ap, err := s.ActionProfile(p.profile)
		if err != nil {
			t.Error(err)
			continue
		}
		if !ap.WithSelector {
			t.Errorf("%s is not a selector", p.profile)
		}
		tbl, err := s.Table(p.table)
		if err == nil && tbl.Profile != ap {
			t.Errorf("%s is not implemented by %s", p.table, p.profile)
		}
	}
	for _, c := range []struct {
		name string
		size int64
	}{{CounterPortRx, MaxPorts}, {CounterPortTx, MaxPorts}, {CounterDrop, 16}} {
		ctr, err := s.Counter(c.name)
		if err != nil {
			t.Error(err)
			continue
		}
		if ctr.Size != c.size {
			t.Errorf("%s: size %d, Go assumes %d", c.name, ctr.Size, c.size)
		}
	}
	for _, d := range []string{DirectFIB128, DirectFIB96, DirectFIB64, DirectFIB32} {
		if _, err := s.DirectCounter(d); err != nil {
			t.Error(err)
		}
	}
	for _, m := range []struct{ header, field string }{{PacketIn, MetaIngress}, {PacketIn, MetaReason}, {PacketOut, MetaEgressPort}, {PacketOut, MetaMode}} {
		pm, err := s.PacketMetadata(m.header)
		if err != nil {
			t.Error(err)
			continue
		}
		f, err := pm.Field(m.field)
		if err != nil {
			t.Error(err)
			continue
		}
		if f.Bitwidth != 16 {
			t.Errorf("%s.%s: bitwidth %d, Go assumes 16", m.header, m.field, f.Bitwidth)
		}
	}
}
