package server

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	p4cfg "github.com/p4lang/p4runtime/go/p4/config/v1"
	p4v1 "github.com/p4lang/p4runtime/go/p4/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/dmsc-mesh/dmsc/p4"
	"github.com/dmsc-mesh/dmsc/p4rt/p4info"
)

const testDevice = 7

// fakeTarget records what the server hands it and can be told to fail.
type fakeTarget struct {
	mu        sync.Mutex
	verifyErr error
	commitErr error
	// fail, when set, decides per change whether Apply refuses it.
	fail     func(Change) error
	changes  []Change
	applies  []bool // atomic flag of each Apply call
	commits  int
	packets  []*p4v1.PacketOut
	sink     func(*p4v1.PacketIn)
	status   func(port uint32, up bool)
	counterE error
}

func (f *fakeTarget) VerifyPipeline(*p4info.Schema, []byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.verifyErr
}

func (f *fakeTarget) CommitPipeline(*p4info.Schema, []byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.commitErr != nil {
		return f.commitErr
	}
	f.commits++
	f.changes = nil
	return nil
}

func (f *fakeTarget) Apply(changes []Change, atomic bool) []error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.applies = append(f.applies, atomic)
	var errs []error
	if f.fail != nil {
		for i, c := range changes {
			if err := f.fail(c); err != nil {
				if errs == nil {
					errs = make([]error, len(changes))
				}
				errs[i] = err
			}
		}
	}
	if atomic && errs != nil {
		return errs
	}
	for i, c := range changes {
		if errs == nil || errs[i] == nil {
			f.changes = append(f.changes, c)
		}
	}
	return errs
}

// DirectCounter answers packets = the entry's first match value, bytes =
// 100 times that, so tests can tell entries apart.
func (f *fakeTarget) DirectCounter(te *p4v1.TableEntry) (*p4v1.CounterData, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.counterE != nil {
		return nil, f.counterE
	}
	var v uint64
	if len(te.Match) > 0 {
		v, _ = p4info.ToUint(te.Match[0].GetExact().GetValue())
	}
	return &p4v1.CounterData{PacketCount: int64(v & 0xffffff), ByteCount: 100 * int64(v&0xffffff)}, nil
}

func (f *fakeTarget) Counter(id uint32, index int64) (*p4v1.CounterData, error) {
	return &p4v1.CounterData{PacketCount: index, ByteCount: 10 * index}, nil
}

func (f *fakeTarget) PacketOut(pkt *p4v1.PacketOut) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.packets = append(f.packets, pkt)
	return nil
}

func (f *fakeTarget) SetPacketInSink(sink func(*p4v1.PacketIn)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sink = sink
}

func (f *fakeTarget) SetPortStatusSink(sink func(port uint32, up bool)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.status = sink
}

func (f *fakeTarget) getStatusSink() func(port uint32, up bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.status
}

func (f *fakeTarget) getSink() func(*p4v1.PacketIn) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.sink
}

func (f *fakeTarget) recorded() []Change {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]Change(nil), f.changes...)
}

func (f *fakeTarget) applyCalls() []bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]bool(nil), f.applies...)
}

// set changes the fake's behaviour under its lock.
func (f *fakeTarget) set(fn func(f *fakeTarget)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

func (f *fakeTarget) commitCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.commits
}

func (f *fakeTarget) packetsSent() []*p4v1.PacketOut {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]*p4v1.PacketOut(nil), f.packets...)
}

func (f *fakeTarget) reset() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.changes, f.applies = nil, nil
}

// harness runs a Server on 127.0.0.1:0 behind real gRPC.
type harness struct {
	t      testing.TB
	srv    *Server
	target *fakeTarget
	client p4v1.P4RuntimeClient
	schema *p4info.Schema
	info   *p4cfg.P4Info
}

func dmscInfo(t testing.TB) *p4cfg.P4Info {
	t.Helper()
	info, err := p4info.ParseText(p4.P4InfoText())
	if err != nil {
		t.Fatal(err)
	}
	return info
}

func newHarness(t testing.TB, opts Options) *harness {
	t.Helper()
	return newHarnessWith(t, opts, nil)
}

// newHarnessWith registers the service with register, when set, instead of
// Server.Register.
func newHarnessWith(t testing.TB, opts Options, register func(*grpc.Server, *Server)) *harness {
	t.Helper()
	opts.DeviceID = testDevice
	ft := &fakeTarget{}
	srv := New(ft, opts)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	if register != nil {
		register(gs, srv)
	} else {
		srv.Register(gs)
	}
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = gs.Serve(lis)
	}()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		conn.Close()
		srv.Close()
		gs.Stop()
		<-served
	})
	schema, err := p4.Schema()
	if err != nil {
		t.Fatal(err)
	}
	return &harness{t: t, srv: srv, target: ft, client: p4v1.NewP4RuntimeClient(conn), schema: schema, info: dmscInfo(t)}
}

// ctrl is a controller's StreamChannel.
type ctrl struct {
	t      testing.TB
	stream p4v1.P4Runtime_StreamChannelClient
	cancel context.CancelFunc
	msgs   chan *p4v1.StreamMessageResponse
	done   chan error // the stream's final status
	eid    *p4v1.Uint128
	role   string
}

func eid(v uint64) *p4v1.Uint128 { return &p4v1.Uint128{Low: v} }

func arbitration(device uint64, role string, e *p4v1.Uint128) *p4v1.StreamMessageRequest {
	a := &p4v1.MasterArbitrationUpdate{DeviceId: device, ElectionId: e}
	if role != "" {
		a.Role = &p4v1.Role{Name: role}
	}
	return &p4v1.StreamMessageRequest{Update: &p4v1.StreamMessageRequest_Arbitration{Arbitration: a}}
}

// open starts a stream and sends first as its first message.
func (h *harness) open(first *p4v1.StreamMessageRequest) *ctrl {
	h.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	st, err := h.client.StreamChannel(ctx)
	if err != nil {
		h.t.Fatal(err)
	}
	c := &ctrl{t: h.t, stream: st, cancel: cancel, msgs: make(chan *p4v1.StreamMessageResponse, 4096), done: make(chan error, 1)}
	go func() {
		for {
			m, err := st.Recv()
			if err != nil {
				if errors.Is(err, io.EOF) {
					err = nil
				}
				c.done <- err
				close(c.msgs)
				return
			}
			c.msgs <- m
		}
	}()
	h.t.Cleanup(func() {
		cancel()
		for range c.msgs {
		}
	})
	if first != nil {
		// io.EOF means the server already ended the stream; end() reads
		// the status it ended it with.
		if err := st.Send(first); err != nil && !errors.Is(err, io.EOF) {
			h.t.Fatal(err)
		}
	}
	return c
}

// connect arbitrates for role with election id e and returns the
// controller after its first arbitration update.
func (h *harness) connect(role string, e *p4v1.Uint128) (*ctrl, *p4v1.MasterArbitrationUpdate) {
	h.t.Helper()
	c := h.open(arbitration(testDevice, role, e))
	c.eid, c.role = e, role
	return c, c.arb()
}

func (c *ctrl) next() *p4v1.StreamMessageResponse {
	c.t.Helper()
	select {
	case m, ok := <-c.msgs:
		if !ok {
			c.t.Fatalf("stream ended: %v", <-c.done)
		}
		return m
	case <-time.After(5 * time.Second):
		c.t.Fatal("no stream message within 5s")
	}
	return nil
}

// quiet checks that nothing arrives for a short while.
func (c *ctrl) quiet() {
	c.t.Helper()
	select {
	case m, ok := <-c.msgs:
		if ok {
			c.t.Fatalf("unexpected stream message %v", m)
		}
	case <-time.After(100 * time.Millisecond):
	}
}

func (c *ctrl) arb() *p4v1.MasterArbitrationUpdate {
	c.t.Helper()
	m := c.next()
	a := m.GetArbitration()
	if a == nil {
		c.t.Fatalf("want an arbitration update, got %v", m)
	}
	return a
}

// end waits for the stream to end and returns its status code.
func (c *ctrl) end() codes.Code {
	c.t.Helper()
	for {
		select {
		case _, ok := <-c.msgs:
			if !ok {
				return status.Code(<-c.done)
			}
		case <-time.After(5 * time.Second):
			c.t.Fatal("stream did not end within 5s")
		}
	}
}

func (c *ctrl) close() {
	c.cancel()
}

// noElection tells wantArb to expect an unset election id.
const noElection = ^uint64(0)

func wantArb(t testing.TB, a *p4v1.MasterArbitrationUpdate, code codes.Code, election uint64) {
	t.Helper()
	if got := codes.Code(a.GetStatus().GetCode()); got != code {
		t.Errorf("arbitration status %v, want %v (%v)", got, code, a)
	}
	if a.DeviceId != testDevice {
		t.Errorf("arbitration device %d", a.DeviceId)
	}
	if election == noElection {
		if a.ElectionId != nil {
			t.Errorf("election id %v, want unset", a.ElectionId)
		}
	} else if a.GetElectionId().GetLow() != election || a.GetElectionId().GetHigh() != 0 {
		t.Errorf("election id %v, want %d", a.ElectionId, election)
	}
}

// setPipeline commits info as controller c.
func (h *harness) setPipeline(c *ctrl, action p4v1.SetForwardingPipelineConfigRequest_Action, info *p4cfg.P4Info, cookie uint64) error {
	var cfg *p4v1.ForwardingPipelineConfig
	if info != nil {
		cfg = &p4v1.ForwardingPipelineConfig{P4Info: info, P4DeviceConfig: []byte("bmv2-json"), Cookie: &p4v1.ForwardingPipelineConfig_Cookie{Cookie: cookie}}
	}
	_, err := h.client.SetForwardingPipelineConfig(context.Background(), &p4v1.SetForwardingPipelineConfigRequest{
		DeviceId: testDevice, Role: c.role, ElectionId: c.eid, Action: action, Config: cfg,
	})
	return err
}

// primary connects a primary controller and commits the DMSC pipeline.
func (h *harness) primary() *ctrl {
	h.t.Helper()
	c, a := h.connect("", eid(10))
	wantArb(h.t, a, codes.OK, 10)
	if err := h.setPipeline(c, p4v1.SetForwardingPipelineConfigRequest_VERIFY_AND_COMMIT, h.info, 1); err != nil {
		h.t.Fatal(err)
	}
	return c
}

func (h *harness) write(c *ctrl, atomicity p4v1.WriteRequest_Atomicity, ups ...*p4v1.Update) error {
	_, err := h.client.Write(context.Background(), &p4v1.WriteRequest{
		DeviceId: testDevice, Role: c.role, ElectionId: c.eid, Updates: ups, Atomicity: atomicity,
	})
	return err
}

// codesOf returns the per-update codes of a Write or Read error (nil for
// success), failing when the error is not in the batch format.
func codesOf(t testing.TB, err error, n int) []codes.Code {
	t.Helper()
	if err == nil {
		return nil
	}
	st := status.Convert(err)
	if st.Code() != codes.Unknown {
		t.Fatalf("want a batch error (UNKNOWN), got %v", err)
	}
	d := st.Details()
	if len(d) != n {
		t.Fatalf("batch error has %d details for %d items: %v", len(d), n, err)
	}
	out := make([]codes.Code, n)
	for i, x := range d {
		pe, ok := x.(*p4v1.Error)
		if !ok {
			t.Fatalf("detail %d is %T", i, x)
		}
		out[i] = codes.Code(pe.CanonicalCode)
		if out[i] != codes.OK && pe.Message == "" {
			t.Errorf("detail %d: %v without a message", i, out[i])
		}
		if out[i] == codes.OK && pe.Message != "" {
			t.Errorf("detail %d: OK with message %q", i, pe.Message)
		}
	}
	return out
}

func (h *harness) read(entities ...*p4v1.Entity) ([]*p4v1.Entity, int, error) {
	h.t.Helper()
	rs, err := h.client.Read(context.Background(), &p4v1.ReadRequest{DeviceId: testDevice, Entities: entities})
	if err != nil {
		return nil, 0, err
	}
	var out []*p4v1.Entity
	chunks := 0
	for {
		resp, err := rs.Recv()
		if errors.Is(err, io.EOF) {
			return out, chunks, nil
		}
		if err != nil {
			return out, chunks, err
		}
		chunks++
		out = append(out, resp.Entities...)
	}
}

// Builders over the DMSC P4Info, by name.

func (h *harness) tableID(name string) uint32 {
	t, err := h.schema.Table(name)
	if err != nil {
		h.t.Fatal(err)
	}
	return t.Preamble.Id
}

func (h *harness) actionID(name string) uint32 {
	a, err := h.schema.Action(name)
	if err != nil {
		h.t.Fatal(err)
	}
	return a.Preamble.Id
}

func (h *harness) profileID(name string) uint32 {
	p, err := h.schema.ActionProfile(name)
	if err != nil {
		h.t.Fatal(err)
	}
	return p.Preamble.Id
}

func (h *harness) counterID(name string) uint32 {
	c, err := h.schema.Counter(name)
	if err != nil {
		h.t.Fatal(err)
	}
	return c.Preamble.Id
}

func exact(id uint32, v []byte) *p4v1.FieldMatch {
	return &p4v1.FieldMatch{FieldId: id, FieldMatchType: &p4v1.FieldMatch_Exact_{Exact: &p4v1.FieldMatch_Exact{Value: v}}}
}

// action builds an action with params in P4Info order.
func (h *harness) action(name string, params ...[]byte) *p4v1.Action {
	a := &p4v1.Action{ActionId: h.actionID(name)}
	for i, v := range params {
		a.Params = append(a.Params, &p4v1.Action_Param{ParamId: uint32(i + 1), Value: v})
	}
	return a
}

func direct(a *p4v1.Action) *p4v1.TableAction {
	return &p4v1.TableAction{Type: &p4v1.TableAction_Action{Action: a}}
}

func memberRef(id uint32) *p4v1.TableAction {
	return &p4v1.TableAction{Type: &p4v1.TableAction_ActionProfileMemberId{ActionProfileMemberId: id}}
}

func groupRef(id uint32) *p4v1.TableAction {
	return &p4v1.TableAction{Type: &p4v1.TableAction_ActionProfileGroupId{ActionProfileGroupId: id}}
}

// fib64 is a fib_64 entry for key k pointing at next-hop group g.
func (h *harness) fib64(k uint64, g uint64) *p4v1.TableEntry {
	return &p4v1.TableEntry{
		TableId: h.tableID(p4.TableFIB64),
		Match:   []*p4v1.FieldMatch{exact(1, p4info.Uint(k))},
		Action:  direct(h.action(p4.ActionSetNexthopGroup, p4info.Uint(g))),
	}
}

func (h *harness) nexthopEntry(g uint64, a *p4v1.TableAction) *p4v1.TableEntry {
	return &p4v1.TableEntry{
		TableId: h.tableID(p4.TableNexthop),
		Match:   []*p4v1.FieldMatch{exact(1, p4info.Uint(g))},
		Action:  a,
	}
}

func (h *harness) member(id uint32, port uint64) *p4v1.ActionProfileMember {
	return &p4v1.ActionProfileMember{
		ActionProfileId: h.profileID(p4.ProfileNexthop),
		MemberId:        id,
		Action:          h.action(p4.ActionSetNexthop, p4info.Uint(port), p4info.Uint(0x02_00_00_00_00_00|port)),
	}
}

func (h *harness) group(id uint32, members ...uint32) *p4v1.ActionProfileGroup {
	g := &p4v1.ActionProfileGroup{ActionProfileId: h.profileID(p4.ProfileNexthop), GroupId: id}
	for _, m := range members {
		g.Members = append(g.Members, &p4v1.ActionProfileGroup_Member{MemberId: m, Weight: 1})
	}
	return g
}

func ent(x proto.Message) *p4v1.Entity {
	switch v := x.(type) {
	case *p4v1.TableEntry:
		return &p4v1.Entity{Entity: &p4v1.Entity_TableEntry{TableEntry: v}}
	case *p4v1.ActionProfileMember:
		return &p4v1.Entity{Entity: &p4v1.Entity_ActionProfileMember{ActionProfileMember: v}}
	case *p4v1.ActionProfileGroup:
		return &p4v1.Entity{Entity: &p4v1.Entity_ActionProfileGroup{ActionProfileGroup: v}}
	case *p4v1.CounterEntry:
		return &p4v1.Entity{Entity: &p4v1.Entity_CounterEntry{CounterEntry: v}}
	case *p4v1.DirectCounterEntry:
		return &p4v1.Entity{Entity: &p4v1.Entity_DirectCounterEntry{DirectCounterEntry: v}}
	case *p4v1.MeterEntry:
		return &p4v1.Entity{Entity: &p4v1.Entity_MeterEntry{MeterEntry: v}}
	}
	panic("ent: unsupported type")
}

func upd(typ p4v1.Update_Type, x proto.Message) *p4v1.Update {
	return &p4v1.Update{Type: typ, Entity: ent(x)}
}

func ins(x proto.Message) *p4v1.Update { return upd(p4v1.Update_INSERT, x) }
func mod(x proto.Message) *p4v1.Update { return upd(p4v1.Update_MODIFY, x) }
func del(x proto.Message) *p4v1.Update { return upd(p4v1.Update_DELETE, x) }

// sameEntities checks got and want hold the same entities, in any order.
func sameEntities(t testing.TB, got, want []*p4v1.Entity) {
	t.Helper()
	used := make([]bool, len(got))
	ok := len(got) == len(want)
	for _, w := range want {
		found := false
		for i, g := range got {
			if !used[i] && proto.Equal(g, w) {
				used[i], found = true, true
				break
			}
		}
		ok = ok && found
	}
	if !ok {
		t.Errorf("entities differ:\ngot  %v\nwant %v", got, want)
	}
}

// checkState recomputes every reference count from scratch and checks the
// stored references resolve: the invariant the undo logic must keep.
func checkState(t testing.TB, st *state) {
	t.Helper()
	memberRefs := map[*member][2]int{}
	groupRefs := map[*group]int{}
	for _, p := range st.profiles {
		for _, g := range p.groups {
			for _, gm := range g.ent.GetActionProfileGroup().GetMembers() {
				m := p.members[gm.MemberId]
				if m == nil {
					t.Fatalf("group %d lists missing member %d", g.ent.GetActionProfileGroup().GroupId, gm.MemberId)
				}
				r := memberRefs[m]
				r[0]++
				memberRefs[m] = r
			}
		}
	}
	for _, tb := range st.tables {
		for _, e := range tb.entries {
			switch a := e.GetTableEntry().GetAction().GetType().(type) {
			case *p4v1.TableAction_ActionProfileMemberId:
				m := tb.profile.members[a.ActionProfileMemberId]
				if m == nil {
					t.Fatalf("entry uses missing member %d", a.ActionProfileMemberId)
				}
				r := memberRefs[m]
				r[1]++
				memberRefs[m] = r
			case *p4v1.TableAction_ActionProfileGroupId:
				g := tb.profile.groups[a.ActionProfileGroupId]
				if g == nil {
					t.Fatalf("entry uses missing group %d", a.ActionProfileGroupId)
				}
				groupRefs[g]++
			}
		}
	}
	for _, p := range st.profiles {
		for id, m := range p.members {
			if r := memberRefs[m]; r[0] != m.groupRefs || r[1] != m.tableRefs {
				t.Fatalf("member %d refs %d/%d, counted %d/%d", id, m.groupRefs, m.tableRefs, r[0], r[1])
			}
		}
		for id, g := range p.groups {
			if groupRefs[g] != g.tableRefs {
				t.Fatalf("group %d refs %d, counted %d", id, g.tableRefs, groupRefs[g])
			}
		}
	}
}
