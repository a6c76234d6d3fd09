package server

import (
	"context"
	"errors"
	"strings"
	"testing"

	p4cfg "github.com/p4lang/p4runtime/go/p4/config/v1"
	p4v1 "github.com/p4lang/p4runtime/go/p4/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/dmsc-mesh/dmsc/p4"
)

const (
	verify          = p4v1.SetForwardingPipelineConfigRequest_VERIFY
	verifyAndSave   = p4v1.SetForwardingPipelineConfigRequest_VERIFY_AND_SAVE
	verifyAndCommit = p4v1.SetForwardingPipelineConfigRequest_VERIFY_AND_COMMIT
	commit          = p4v1.SetForwardingPipelineConfigRequest_COMMIT
	reconcile       = p4v1.SetForwardingPipelineConfigRequest_RECONCILE_AND_COMMIT
)

func (h *harness) getConfig(rt p4v1.GetForwardingPipelineConfigRequest_ResponseType) *p4v1.ForwardingPipelineConfig {
	h.t.Helper()
	resp, err := h.client.GetForwardingPipelineConfig(context.Background(), &p4v1.GetForwardingPipelineConfigRequest{DeviceId: testDevice, ResponseType: rt})
	if err != nil {
		h.t.Fatal(err)
	}
	return resp.Config
}

func (h *harness) count(filter *p4v1.Entity) int {
	h.t.Helper()
	got, _, err := h.read(filter)
	if err != nil {
		h.t.Fatal(err)
	}
	return len(got)
}

func TestPipelineConfig(t *testing.T) {
	h := newHarness(t, Options{})
	c, _ := h.connect("", eid(1))
	if cfg := h.getConfig(p4v1.GetForwardingPipelineConfigRequest_ALL); cfg != nil {
		t.Errorf("config before any: %v", cfg)
	}
	// VERIFY changes nothing.
	if err := h.setPipeline(c, verify, h.info, 3); err != nil {
		t.Fatal(err)
	}
	if cfg := h.getConfig(p4v1.GetForwardingPipelineConfigRequest_ALL); cfg != nil || h.target.commitCount() != 0 {
		t.Errorf("VERIFY committed: %v", cfg)
	}
	if err := h.setPipeline(c, verifyAndCommit, h.info, 42); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		rt                p4v1.GetForwardingPipelineConfigRequest_ResponseType
		p4info, devicecfg bool
	}{
		{p4v1.GetForwardingPipelineConfigRequest_ALL, true, true},
		{p4v1.GetForwardingPipelineConfigRequest_COOKIE_ONLY, false, false},
		{p4v1.GetForwardingPipelineConfigRequest_P4INFO_AND_COOKIE, true, false},
		{p4v1.GetForwardingPipelineConfigRequest_DEVICE_CONFIG_AND_COOKIE, false, true},
	}
	for _, tt := range tests {
		cfg := h.getConfig(tt.rt)
		if cfg.GetCookie().GetCookie() != 42 {
			t.Errorf("%v: cookie %v", tt.rt, cfg.GetCookie())
		}
		if (cfg.P4Info != nil) != tt.p4info || (cfg.P4DeviceConfig != nil) != tt.devicecfg {
			t.Errorf("%v: p4info %v, device config %q", tt.rt, cfg.P4Info != nil, cfg.P4DeviceConfig)
		}
		if tt.p4info && !proto.Equal(cfg.P4Info, h.info) {
			t.Errorf("%v: P4Info differs", tt.rt)
		}
	}
	if _, err := h.client.GetForwardingPipelineConfig(context.Background(), &p4v1.GetForwardingPipelineConfigRequest{DeviceId: 99}); status.Code(err) != codes.NotFound {
		t.Errorf("Get for another device: %v", err)
	}
}

func TestPipelineRejects(t *testing.T) {
	bad := func(h *harness) *p4cfg.P4Info {
		info := proto.Clone(h.info).(*p4cfg.P4Info)
		info.Actions[1].Preamble.Id = info.Actions[0].Preamble.Id
		return info
	}
	tests := []struct {
		name    string
		action  p4v1.SetForwardingPipelineConfigRequest_Action
		info    func(h *harness) *p4cfg.P4Info
		prepare func(h *harness)
		want    codes.Code
		msg     string
	}{
		{"no config", verifyAndCommit, func(*harness) *p4cfg.P4Info { return nil }, nil, codes.InvalidArgument, "p4info"},
		{"bad p4info", verifyAndCommit, bad, nil, codes.InvalidArgument, "used by both"},
		{"bad p4info on VERIFY", verify, bad, nil, codes.InvalidArgument, "used by both"},
		{"target cannot run it", verifyAndCommit, func(h *harness) *p4cfg.P4Info { return h.info }, func(h *harness) {
			h.target.set(func(f *fakeTarget) { f.verifyErr = errors.New("no such table in the switch") })
		}, codes.InvalidArgument, "no such table"},
		{"target refuses with a code", verifyAndSave, func(h *harness) *p4cfg.P4Info { return h.info }, func(h *harness) {
			h.target.set(func(f *fakeTarget) { f.verifyErr = status.Error(codes.ResourceExhausted, "too big") })
		}, codes.ResourceExhausted, "too big"},
		{"commit fails", verifyAndCommit, func(h *harness) *p4cfg.P4Info { return h.info }, func(h *harness) {
			h.target.set(func(f *fakeTarget) { f.commitErr = errors.New("broken") })
		}, codes.Internal, "broken"},
		{"COMMIT without a saved config", commit, func(*harness) *p4cfg.P4Info { return nil }, nil, codes.NotFound, "saved"},
		{"COMMIT with a config", commit, func(h *harness) *p4cfg.P4Info { return h.info }, nil, codes.InvalidArgument, "config"},
		{"unspecified action", p4v1.SetForwardingPipelineConfigRequest_UNSPECIFIED, func(h *harness) *p4cfg.P4Info { return h.info }, nil, codes.InvalidArgument, "action"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, Options{})
			c, _ := h.connect("", eid(1))
			if tt.prepare != nil {
				tt.prepare(h)
			}
			err := h.setPipeline(c, tt.action, tt.info(h), 0)
			if status.Code(err) != tt.want || !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("%v, want %v containing %q", err, tt.want, tt.msg)
			}
			if h.getConfig(p4v1.GetForwardingPipelineConfigRequest_ALL) != nil {
				t.Error("a refused config was installed")
			}
		})
	}
}

// TestPipelineReplace: VERIFY_AND_COMMIT clears all state, also in the
// target.
func TestPipelineReplace(t *testing.T) {
	h := newHarness(t, Options{})
	c := h.primary()
	h.seed(c)
	if n := h.count(ent(&p4v1.TableEntry{})); n != 2 {
		t.Fatalf("%d entries", n)
	}
	if err := h.setPipeline(c, verifyAndCommit, h.info, 2); err != nil {
		t.Fatal(err)
	}
	if n := h.count(ent(&p4v1.TableEntry{})) + h.count(ent(&p4v1.ActionProfileMember{})) + h.count(ent(&p4v1.ActionProfileGroup{})); n != 0 {
		t.Errorf("%d entities survived VERIFY_AND_COMMIT", n)
	}
	if h.target.commitCount() != 2 {
		t.Errorf("%d commits", h.target.commitCount())
	}
	// The old entries are gone for Write too.
	if err := h.write(c, 0, ins(h.member(1, 1)), ins(h.fib64(100, 1))); err != nil {
		t.Errorf("re-inserting after replace: %v", err)
	}
}

// TestPipelineSaveCommit: writes between VERIFY_AND_SAVE and COMMIT refer to
// the saved config and reach the target only on COMMIT.
func TestPipelineSaveCommit(t *testing.T) {
	h := newHarness(t, Options{})
	c := h.primary()
	h.seed(c)
	if err := h.setPipeline(c, verifyAndSave, h.info, 9); err != nil {
		t.Fatal(err)
	}
	if h.target.commitCount() != 1 {
		t.Errorf("VERIFY_AND_SAVE committed")
	}
	if got := h.getConfig(p4v1.GetForwardingPipelineConfigRequest_COOKIE_ONLY).GetCookie().GetCookie(); got != 9 {
		t.Errorf("cookie after save %d", got)
	}
	h.target.reset()
	if err := h.write(c, 0, ins(h.member(7, 1)), ins(h.nexthopEntry(3, memberRef(7)))); err != nil {
		t.Fatal(err)
	}
	if got := h.target.recorded(); len(got) != 0 {
		t.Errorf("target saw %d changes before COMMIT", len(got))
	}
	if n := h.count(ent(&p4v1.TableEntry{})); n != 1 {
		t.Errorf("saved state has %d entries", n)
	}
	if err := h.setPipeline(c, commit, nil, 0); err != nil {
		t.Fatal(err)
	}
	got := h.target.recorded()
	if len(got) != 2 || got[0].Entity.GetActionProfileMember() == nil || got[1].Entity.GetTableEntry() == nil {
		t.Errorf("COMMIT replayed %v", got)
	}
	if calls := h.target.applyCalls(); len(calls) != 1 || !calls[0] {
		t.Errorf("replay Apply calls %v, want one atomic", calls)
	}
	if err := h.setPipeline(c, commit, nil, 0); status.Code(err) != codes.NotFound {
		t.Errorf("second COMMIT: %v", err)
	}
}

// TestPipelineReconcile keeps state that is valid under the new P4Info and
// refuses one under which it is not.
func TestPipelineReconcile(t *testing.T) {
	h := newHarness(t, Options{})
	c := h.primary()
	h.seed(c)
	if err := h.write(c, 0, mod(h.member(2, 9))); err != nil {
		t.Fatal(err)
	}
	h.target.reset()
	// Same program, new cookie: everything stays, and is replayed.
	if err := h.setPipeline(c, reconcile, h.info, 5); err != nil {
		t.Fatal(err)
	}
	if n := h.count(ent(&p4v1.TableEntry{})); n != 2 {
		t.Errorf("%d entries after reconcile", n)
	}
	got := h.target.recorded()
	if len(got) != 5 {
		t.Errorf("reconcile replayed %d changes, want 5", len(got))
	}
	if h.getConfig(p4v1.GetForwardingPipelineConfigRequest_COOKIE_ONLY).GetCookie().GetCookie() != 5 {
		t.Error("cookie not updated")
	}
	h.srv.mu.RLock()
	checkState(t, h.srv.running.state)
	h.srv.mu.RUnlock()

	// A P4Info without fib_64 cannot keep fib_64's entry.
	info := proto.Clone(h.info).(*p4cfg.P4Info)
	fib64 := h.tableID(p4.TableFIB64)
	for i, tb := range info.Tables {
		if tb.Preamble.Id == fib64 {
			info.Tables = append(info.Tables[:i], info.Tables[i+1:]...)
			break
		}
	}
	for i, dc := range info.DirectCounters {
		if dc.DirectTableId == fib64 {
			info.DirectCounters = append(info.DirectCounters[:i], info.DirectCounters[i+1:]...)
			break
		}
	}
	err := h.setPipeline(c, reconcile, info, 6)
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "cannot be kept") {
		t.Errorf("reconcile that loses state: %v", err)
	}
	if n := h.count(ent(&p4v1.TableEntry{TableId: fib64})); n != 1 {
		t.Errorf("refused reconcile changed state: %d fib_64 entries", n)
	}
	// A narrower field that no longer fits the installed value.
	narrow := proto.Clone(h.info).(*p4cfg.P4Info)
	for _, a := range narrow.Actions {
		if a.Preamble.Name == p4.ActionSetNexthop {
			a.Params[0].Bitwidth = 3 // member 2 has port 9
		}
	}
	if err := h.setPipeline(c, reconcile, narrow, 7); status.Code(err) != codes.InvalidArgument {
		t.Errorf("reconcile with a narrower param: %v", err)
	}
	// The target refusing the replay puts the old pipeline and state back.
	h.target.set(func(f *fakeTarget) {
		first := len(f.applies) + 1
		f.fail = func(Change) error {
			if len(f.applies) == first { // called with f.mu held
				return status.Error(codes.ResourceExhausted, "full")
			}
			return nil
		}
	})
	err = h.setPipeline(c, reconcile, h.info, 8)
	h.target.set(func(f *fakeTarget) { f.fail = nil })
	if status.Code(err) != codes.Internal || !strings.Contains(err.Error(), "are back") {
		t.Errorf("refused replay: %v", err)
	}
	if h.getConfig(p4v1.GetForwardingPipelineConfigRequest_COOKIE_ONLY).GetCookie().GetCookie() != 5 {
		t.Error("the previous config should still be current")
	}
	if n := h.count(ent(&p4v1.TableEntry{})); n != 2 {
		t.Errorf("%d entries after a restored reconcile", n)
	}
}
