package server

import (
	"context"
	"testing"
	"time"

	p4v1 "github.com/p4lang/p4runtime/go/p4/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/anypb"
)

func TestArbitrationSinglePrimary(t *testing.T) {
	h := newHarness(t, Options{})
	c, a := h.connect("", eid(1))
	wantArb(t, a, codes.OK, 1)
	if a.Role != nil {
		t.Errorf("default role echoed as %v", a.Role)
	}
	c.quiet()
	if got := h.srv.Stats().Streams; got != 1 {
		t.Errorf("Streams = %d", got)
	}
}

func TestArbitrationHigherTakesOver(t *testing.T) {
	h := newHarness(t, Options{})
	a, m := h.connect("", eid(1))
	wantArb(t, m, codes.OK, 1)
	b, m := h.connect("", eid(2))
	wantArb(t, m, codes.OK, 2)
	wantArb(t, a.arb(), codes.AlreadyExists, 2) // the old primary is told
	// A lower newcomer is told alone.
	c, m := h.connect("", eid(1<<40))
	wantArb(t, m, codes.OK, 1<<40)
	wantArb(t, a.arb(), codes.AlreadyExists, 1<<40)
	wantArb(t, b.arb(), codes.AlreadyExists, 1<<40)
	d, m := h.connect("", eid(5))
	wantArb(t, m, codes.AlreadyExists, 1<<40)
	a.quiet()
	b.quiet()
	c.quiet()
	_ = d
	// The high 64 bits count.
	e, m := h.connect("", &p4v1.Uint128{High: 1, Low: 0})
	if codes.Code(m.Status.Code) != codes.OK || m.ElectionId.High != 1 {
		t.Errorf("high-word election: %v", m)
	}
	if m := c.arb(); codes.Code(m.Status.Code) != codes.AlreadyExists || m.ElectionId.High != 1 {
		t.Errorf("old primary told %v", m)
	}
	e.quiet()
}

func TestArbitrationPrimaryLeaves(t *testing.T) {
	t.Run("1.4: no primary until a higher id", func(t *testing.T) {
		h := newHarness(t, Options{})
		a, _ := h.connect("", eid(3))
		b, m := h.connect("", eid(2))
		wantArb(t, m, codes.AlreadyExists, 3)
		c, m := h.connect("", eid(1))
		wantArb(t, m, codes.AlreadyExists, 3)
		a.close()
		wantArb(t, b.arb(), codes.NotFound, 3)
		wantArb(t, c.arb(), codes.NotFound, 3)
		if err := h.write(b, 0); status.Code(err) != codes.PermissionDenied {
			t.Errorf("write with no primary: %v", err)
		}
		// b re-advertises a higher id and becomes primary.
		if err := b.stream.Send(arbitration(testDevice, "", eid(4))); err != nil {
			t.Fatal(err)
		}
		wantArb(t, b.arb(), codes.OK, 4)
		wantArb(t, c.arb(), codes.AlreadyExists, 4)
		b.eid = eid(4)
		if err := h.setPipeline(b, p4v1.SetForwardingPipelineConfigRequest_VERIFY_AND_COMMIT, h.info, 0); err != nil {
			t.Errorf("new primary cannot set the pipeline: %v", err)
		}
	})
	t.Run("legacy: next highest takes over", func(t *testing.T) {
		h := newHarness(t, Options{LegacyFailover: true})
		a, _ := h.connect("", eid(3))
		b, _ := h.connect("", eid(2))
		c, _ := h.connect("", eid(1))
		a.close()
		wantArb(t, b.arb(), codes.OK, 2)
		wantArb(t, c.arb(), codes.AlreadyExists, 2)
		b.close()
		wantArb(t, c.arb(), codes.OK, 1)
	})
	t.Run("a reconnecting primary with the same id is primary again", func(t *testing.T) {
		h := newHarness(t, Options{})
		a, _ := h.connect("", eid(3))
		b, _ := h.connect("", eid(2))
		a.close()
		wantArb(t, b.arb(), codes.NotFound, 3)
		_, m := h.connect("", eid(3))
		wantArb(t, m, codes.OK, 3)
		wantArb(t, b.arb(), codes.AlreadyExists, 3)
	})
}

func TestArbitrationDowngrade(t *testing.T) {
	h := newHarness(t, Options{})
	a, _ := h.connect("", eid(5))
	b, _ := h.connect("", eid(4))
	if err := a.stream.Send(arbitration(testDevice, "", eid(1))); err != nil {
		t.Fatal(err)
	}
	wantArb(t, a.arb(), codes.NotFound, 5)
	wantArb(t, b.arb(), codes.NotFound, 5)
	// A no-op update from a primary is answered like an election.
	c, _ := h.connect("", eid(6))
	wantArb(t, a.arb(), codes.AlreadyExists, 6)
	wantArb(t, b.arb(), codes.AlreadyExists, 6)
	if err := c.stream.Send(arbitration(testDevice, "", eid(6))); err != nil {
		t.Fatal(err)
	}
	wantArb(t, c.arb(), codes.OK, 6)
	wantArb(t, a.arb(), codes.AlreadyExists, 6)
}

func TestArbitrationRejects(t *testing.T) {
	anyCfg, _ := anypb.New(&p4v1.Uint128{})
	tests := []struct {
		name  string
		first *p4v1.StreamMessageRequest
		want  codes.Code
	}{
		{"wrong device", arbitration(testDevice+1, "", eid(1)), codes.NotFound},
		{"packet before arbitration", &p4v1.StreamMessageRequest{Update: &p4v1.StreamMessageRequest_Packet{Packet: &p4v1.PacketOut{}}}, codes.FailedPrecondition},
		{"role config", &p4v1.StreamMessageRequest{Update: &p4v1.StreamMessageRequest_Arbitration{Arbitration: &p4v1.MasterArbitrationUpdate{
			DeviceId: testDevice, Role: &p4v1.Role{Name: "sg", Config: anyCfg}, ElectionId: eid(1)}}}, codes.InvalidArgument},
		{"deprecated role id", &p4v1.StreamMessageRequest{Update: &p4v1.StreamMessageRequest_Arbitration{Arbitration: &p4v1.MasterArbitrationUpdate{
			DeviceId: testDevice, Role: &p4v1.Role{Id: 3}, ElectionId: eid(1)}}}, codes.InvalidArgument},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, Options{})
			c := h.open(tt.first)
			if got := c.end(); got != tt.want {
				t.Errorf("stream ended with %v, want %v", got, tt.want)
			}
		})
	}
}

func TestArbitrationDuplicateElectionID(t *testing.T) {
	h := newHarness(t, Options{})
	a, _ := h.connect("", eid(5))
	b := h.open(arbitration(testDevice, "", eid(5)))
	if got := b.end(); got != codes.InvalidArgument {
		t.Errorf("duplicate election id: %v", got)
	}
	a.quiet() // the primary is not disturbed
	// The same id in another role is fine.
	_, m := h.connect("other", eid(5))
	wantArb(t, m, codes.OK, 5)
	// A later update that takes another stream's id ends the stream.
	c, _ := h.connect("", eid(4))
	if err := c.stream.Send(arbitration(testDevice, "", eid(5))); err != nil {
		t.Fatal(err)
	}
	if got := c.end(); got != codes.InvalidArgument {
		t.Errorf("rearbitration to a taken id: %v", got)
	}
	// Changing role or device mid-stream ends it too.
	d, _ := h.connect("", eid(3))
	if err := d.stream.Send(arbitration(testDevice, "x", eid(3))); err != nil {
		t.Fatal(err)
	}
	if got := d.end(); got != codes.FailedPrecondition {
		t.Errorf("role change: %v", got)
	}
	e, _ := h.connect("", eid(2))
	if err := e.stream.Send(arbitration(testDevice+1, "", eid(2))); err != nil {
		t.Fatal(err)
	}
	if got := e.end(); got != codes.FailedPrecondition {
		t.Errorf("device change: %v", got)
	}
}

func TestArbitrationUnsetElectionID(t *testing.T) {
	h := newHarness(t, Options{})
	a, m := h.connect("", nil)
	wantArb(t, m, codes.NotFound, noElection) // no primary has ever been
	b, m := h.connect("", nil)                // two unset ids do not clash
	wantArb(t, m, codes.NotFound, noElection)
	_, m = h.connect("", eid(0)) // zero is set, and higher than unset
	wantArb(t, m, codes.OK, 0)
	wantArb(t, a.arb(), codes.AlreadyExists, 0)
	wantArb(t, b.arb(), codes.AlreadyExists, 0)
	if err := h.write(a, 0); status.Code(err) != codes.PermissionDenied {
		t.Errorf("unset election id wrote: %v", err)
	}
}

func TestArbitrationRoles(t *testing.T) {
	h := newHarness(t, Options{})
	sg, m := h.connect("sg", eid(1))
	wantArb(t, m, codes.OK, 1)
	if m.GetRole().GetName() != "sg" {
		t.Errorf("role not echoed: %v", m.Role)
	}
	sr, m := h.connect("sr", eid(1))
	wantArb(t, m, codes.OK, 1)
	sg.quiet()
	if err := h.setPipeline(sg, p4v1.SetForwardingPipelineConfigRequest_VERIFY_AND_COMMIT, h.info, 0); err != nil {
		t.Fatal(err)
	}
	if err := h.write(sr, 0, ins(h.fib64(1, 1))); err != nil {
		t.Errorf("primary of a named role cannot write: %v", err)
	}
	// Role names are part of the identity: sg's id in role sr is not primary.
	if err := h.write(&ctrl{role: "sr", eid: eid(2)}, 0); status.Code(err) != codes.PermissionDenied {
		t.Errorf("wrong election id: %v", err)
	}
	if err := h.write(&ctrl{role: "nope", eid: eid(1)}, 0); status.Code(err) != codes.NotFound {
		t.Errorf("unknown role: %v", err)
	}
	if err := h.write(&ctrl{eid: eid(1)}, 0); status.Code(err) != codes.PermissionDenied {
		t.Errorf("default role without a primary: %v", err)
	}
}

func TestBackupWriteDenied(t *testing.T) {
	h := newHarness(t, Options{})
	p := h.primary()
	b, _ := h.connect("", eid(5))
	tests := []struct {
		name string
		req  *p4v1.WriteRequest
		want codes.Code
	}{
		{"backup", &p4v1.WriteRequest{DeviceId: testDevice, ElectionId: b.eid}, codes.PermissionDenied},
		{"unset election id", &p4v1.WriteRequest{DeviceId: testDevice}, codes.PermissionDenied},
		{"wrong device", &p4v1.WriteRequest{DeviceId: 99, ElectionId: p.eid}, codes.NotFound},
		{"deprecated role_id", &p4v1.WriteRequest{DeviceId: testDevice, ElectionId: p.eid, RoleId: 1}, codes.InvalidArgument},
		{"primary", &p4v1.WriteRequest{DeviceId: testDevice, ElectionId: p.eid}, codes.OK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := h.client.Write(context.Background(), tt.req)
			if status.Code(err) != tt.want {
				t.Errorf("Write: %v, want %v", err, tt.want)
			}
		})
	}
	err := h.setPipeline(b, p4v1.SetForwardingPipelineConfigRequest_VERIFY_AND_COMMIT, h.info, 0)
	if status.Code(err) != codes.PermissionDenied {
		t.Errorf("backup set the pipeline: %v", err)
	}
	// Read, GetForwardingPipelineConfig and Capabilities need no arbitration.
	if _, _, err := h.read(ent(&p4v1.TableEntry{})); err != nil {
		t.Error(err)
	}
	if _, err := h.client.GetForwardingPipelineConfig(context.Background(), &p4v1.GetForwardingPipelineConfigRequest{DeviceId: testDevice}); err != nil {
		t.Error(err)
	}
	caps, err := h.client.Capabilities(context.Background(), &p4v1.CapabilitiesRequest{})
	if err != nil || caps.P4RuntimeApiVersion != "1.4.1" {
		t.Errorf("Capabilities: %v %v", caps, err)
	}
}

func TestCloseEndsStreams(t *testing.T) {
	h := newHarness(t, Options{})
	a, _ := h.connect("", eid(1))
	done := make(chan struct{})
	go func() {
		defer close(done)
		h.srv.Close()
	}()
	if got := a.end(); got != codes.Unavailable {
		t.Errorf("stream ended with %v on Close", got)
	}
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not return")
	}
	b := h.open(arbitration(testDevice, "", eid(2)))
	if got := b.end(); got != codes.Unavailable {
		t.Errorf("stream after Close: %v", got)
	}
	if h.target.getSink() != nil {
		t.Error("packet-in sink still registered after Close")
	}
}
