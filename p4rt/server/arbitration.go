package server

import (
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"

	p4v1 "github.com/p4lang/p4runtime/go/p4/v1"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// uint128 is an election id.
type uint128 struct{ hi, lo uint64 }

func toUint128(u *p4v1.Uint128) uint128 { return uint128{u.GetHigh(), u.GetLow()} }

func (a uint128) cmp(b uint128) int {
	switch {
	case a.hi != b.hi:
		if a.hi < b.hi {
			return -1
		}
		return 1
	case a.lo != b.lo:
		if a.lo < b.lo {
			return -1
		}
		return 1
	}
	return 0
}

func (a uint128) proto() *p4v1.Uint128 { return &p4v1.Uint128{High: a.hi, Low: a.lo} }

func (a uint128) String() string {
	if a.hi == 0 {
		return fmt.Sprint(a.lo)
	}
	return fmt.Sprintf("%d:%d", a.hi, a.lo)
}

// role is the arbitration state of one (device, role name). Roles are kept
// once created: the highest election id seen must outlive the streams.
type role struct {
	name    string
	streams map[*stream]struct{}
	primary *stream
	past    uint128 // highest election id of a primary so far (valid if hasPast)
	hasPast bool
}

// maxQueuedErrors bounds the StreamErrors waiting for a client that does not
// read: they are debugging aids and may be dropped (spec, "Stream Error Reporting").
const maxQueuedErrors = 64

// stream is one StreamChannel. Its handler goroutine is the only one that
// sends on it; everything else queues.
type stream struct {
	peer string

	// Guarded by Server.arb.
	role        *role
	election    uint128
	hasElection bool
	left        bool

	isPrimary atomic.Bool // read by packet-out without the lock

	qmu    sync.Mutex
	ctrl   []*p4v1.StreamMessageResponse // arbitration updates and stream errors, never dropped except errors
	errs   int                           // StreamErrors in ctrl
	wake   chan struct{}                 // cap 1: ctrl has something
	pkts   chan *p4v1.PacketIn           // bounded: dropped when full
	stopRx chan struct{}                 // closed when the handler returns
}

func (st *stream) queue(m *p4v1.StreamMessageResponse) {
	st.qmu.Lock()
	st.ctrl = append(st.ctrl, m)
	st.qmu.Unlock()
	select {
	case st.wake <- struct{}{}:
	default:
	}
}

func (st *stream) takeCtrl() []*p4v1.StreamMessageResponse {
	st.qmu.Lock()
	defer st.qmu.Unlock()
	m := st.ctrl
	st.ctrl, st.errs = nil, 0
	return m
}

func (s *Server) streamError(st *stream, e *p4v1.StreamError) {
	st.qmu.Lock()
	if st.errs >= maxQueuedErrors {
		st.qmu.Unlock()
		s.stats.streamErrorsDropped.Add(1)
		return
	}
	st.errs++
	st.qmu.Unlock()
	st.queue(&p4v1.StreamMessageResponse{Update: &p4v1.StreamMessageResponse_Error{Error: e}})
}

func (s *Server) streamChannel(ss p4v1.P4Runtime_StreamChannelServer) error {
	s.life.Lock()
	if s.closed {
		s.life.Unlock()
		return status.Error(codes.Unavailable, "P4Runtime server is shutting down")
	}
	s.wg.Add(2) // this handler and its receive goroutine
	s.life.Unlock()
	defer s.wg.Done()

	ctx := ss.Context()
	st := &stream{
		wake:   make(chan struct{}, 1),
		pkts:   make(chan *p4v1.PacketIn, s.opts.PacketInQueue),
		stopRx: make(chan struct{}),
	}
	if p, ok := peer.FromContext(ctx); ok {
		st.peer = p.Addr.String()
	}
	s.stats.streams.Add(1)
	defer s.stats.streams.Add(-1)

	// gRPC offers no way to interrupt a blocked Recv but returning from the
	// handler, so receiving runs in its own goroutine, owned by this
	// handler: it ends when the client closes its side or, at the latest,
	// when the handler has returned and gRPC cancels the stream.
	rxDone := make(chan error, 1)
	go func() {
		defer s.wg.Done()
		rxDone <- s.receive(st, ss)
	}()
	defer func() {
		close(st.stopRx)
		s.leave(st)
	}()

	for {
		for _, m := range st.takeCtrl() {
			if err := ss.Send(m); err != nil {
				return err
			}
		}
		select {
		case <-st.wake:
		case pkt := <-st.pkts:
			if err := ss.Send(&p4v1.StreamMessageResponse{Update: &p4v1.StreamMessageResponse_Packet{Packet: pkt}}); err != nil {
				return err
			}
		case err := <-rxDone:
			if err != nil {
				s.log.Info("P4Runtime stream ended", "peer", st.peer, "err", err)
				return err
			}
			return nil
		case <-s.closing:
			return status.Error(codes.Unavailable, "P4Runtime server is shutting down")
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// receive handles what the client sends until it closes its side (nil) or
// something ends the stream (the error to return to the client).
func (s *Server) receive(st *stream, ss p4v1.P4Runtime_StreamChannelServer) error {
	joined := false
	for {
		req, err := ss.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		select {
		case <-st.stopRx:
			return nil
		default:
		}
		switch u := req.Update.(type) {
		case *p4v1.StreamMessageRequest_Arbitration:
			if u.Arbitration == nil { // only possible in-process
				u.Arbitration = &p4v1.MasterArbitrationUpdate{}
			}
			if !joined {
				err = s.join(st, u.Arbitration)
				joined = err == nil
			} else {
				err = s.rearbitrate(st, u.Arbitration)
			}
			if err != nil {
				return err
			}
		default:
			if !joined {
				return status.Error(codes.FailedPrecondition, "the first message on a StreamChannel must be a MasterArbitrationUpdate")
			}
			s.streamRequest(st, req)
		}
	}
}

func (s *Server) streamRequest(st *stream, req *p4v1.StreamMessageRequest) {
	switch u := req.Update.(type) {
	case *p4v1.StreamMessageRequest_Packet:
		s.packetOut(st, u.Packet)
	case *p4v1.StreamMessageRequest_DigestAck:
		s.streamError(st, &p4v1.StreamError{
			CanonicalCode: int32(codes.InvalidArgument),
			Message:       fmt.Sprintf("digest_id %d: the P4Info has no digests this server serves", u.DigestAck.GetDigestId()),
			Details:       &p4v1.StreamError_DigestListAck{DigestListAck: &p4v1.DigestListAckError{DigestListAck: u.DigestAck}},
		})
	default:
		other := req.GetOther()
		s.streamError(st, &p4v1.StreamError{
			CanonicalCode: int32(codes.Unimplemented),
			Message:       "unsupported stream message",
			Details:       &p4v1.StreamError_Other{Other: &p4v1.StreamOtherError{Other: other}},
		})
	}
}

// roleName checks the role of an arbitration update: a name, no config (we
// can only grant full access, and saying yes to a config we ignore would
// be a lie), no deprecated numeric id.
func roleName(r *p4v1.Role) (string, error) {
	if r == nil {
		return "", nil
	}
	if r.Config != nil {
		return "", status.Errorf(codes.InvalidArgument, "role %q: role.config is not supported; leave it unset (every role has full pipeline access)", r.Name)
	}
	if r.Id != 0 { //nolint:staticcheck // rejecting the deprecated field
		return "", status.Errorf(codes.InvalidArgument, "role.id is deprecated since P4Runtime 1.4; name the role instead")
	}
	return r.Name, nil
}

// join handles the first arbitration update of a stream (spec, "Rules for Handling MasterArbitrationUpdate Messages", case 1).
func (s *Server) join(st *stream, arb *p4v1.MasterArbitrationUpdate) error {
	if arb.DeviceId != s.opts.DeviceID {
		return status.Errorf(codes.NotFound, "unknown device_id %d (this server is device %d)", arb.DeviceId, s.opts.DeviceID)
	}
	name, err := roleName(arb.Role)
	if err != nil {
		return err
	}
	s.arb.Lock()
	defer s.arb.Unlock()
	if st.left {
		return status.Error(codes.Canceled, "stream ended")
	}
	r := s.roles[name]
	if r == nil {
		r = &role{name: name, streams: map[*stream]struct{}{}}
		s.roles[name] = r
	}
	if arb.ElectionId != nil {
		e := toUint128(arb.ElectionId)
		if other := r.holder(e, st); other != nil {
			return status.Errorf(codes.InvalidArgument, "election id %v is already used by another controller of role %q", e, name)
		}
		st.election, st.hasElection = e, true
	}
	st.role = r
	r.streams[st] = struct{}{}
	s.log.Info("P4Runtime controller connected", "peer", st.peer, "role", name, "election_id", electionAttr(st))
	s.elect(r, st)
	return nil
}

// rearbitrate handles a later arbitration update on a live stream (case 2).
func (s *Server) rearbitrate(st *stream, arb *p4v1.MasterArbitrationUpdate) error {
	s.arb.Lock()
	defer s.arb.Unlock()
	r := st.role
	if arb.DeviceId != s.opts.DeviceID {
		return status.Errorf(codes.FailedPrecondition, "device_id %d differs from the stream's %d", arb.DeviceId, s.opts.DeviceID)
	}
	if arb.Role.GetName() != r.name {
		return status.Errorf(codes.FailedPrecondition, "role %q differs from the stream's %q: open a new stream to change role", arb.Role.GetName(), r.name)
	}
	if _, err := roleName(arb.Role); err != nil {
		return err
	}
	var e uint128
	if arb.ElectionId != nil {
		e = toUint128(arb.ElectionId)
		if other := r.holder(e, st); other != nil {
			return status.Errorf(codes.InvalidArgument, "election id %v is already used by another controller of role %q", e, r.name)
		}
	}
	st.election, st.hasElection = e, arb.ElectionId != nil
	s.elect(r, st)
	return nil
}

// holder returns the live stream other than self that has election id e.
func (r *role) holder(e uint128, self *stream) *stream {
	for o := range r.streams {
		if o != self && o.hasElection && o.election == e {
			return o
		}
	}
	return nil
}

func electionAttr(st *stream) string {
	if !st.hasElection {
		return "unset"
	}
	return st.election.String()
}

// elect applies the outcome of an arbitration update from c (same section):
// c is primary if its election id is at least the highest seen; a primary
// that lowers its id steps down. Call with arb held.
func (s *Server) elect(r *role, c *stream) {
	old := r.primary
	if s.opts.LegacyFailover {
		next := r.highest()
		s.setPrimary(r, next)
		if next != old || next == c {
			s.notifyAll(r)
		} else {
			s.notify(r, c)
		}
		return
	}
	switch {
	case c.hasElection && (!r.hasPast || c.election.cmp(r.past) >= 0):
		s.setPrimary(r, c)
		s.notifyAll(r)
	case old == c:
		s.setPrimary(r, nil)
		s.notifyAll(r)
	default:
		s.notify(r, c)
	}
}

// highest is the live stream with the highest election id, or nil.
func (r *role) highest() *stream {
	var best *stream
	for o := range r.streams {
		if o.hasElection && (best == nil || o.election.cmp(best.election) > 0) {
			best = o
		}
	}
	return best
}

// leave removes a stream whose handler has returned. Call without arb.
func (s *Server) leave(st *stream) {
	s.arb.Lock()
	defer s.arb.Unlock()
	st.left = true
	r := st.role
	if r == nil {
		return
	}
	delete(r.streams, st)
	s.log.Info("P4Runtime controller disconnected", "peer", st.peer, "role", r.name, "election_id", electionAttr(st))
	if len(r.streams) == 0 && !r.hasPast {
		// Nothing to remember: a role that never had a primary goes, so
		// that role names that come and go do not pile up.
		delete(s.roles, r.name)
		return
	}
	if r.primary != st {
		return
	}
	var next *stream
	if s.opts.LegacyFailover {
		next = r.highest()
	}
	s.setPrimary(r, next)
	s.notifyAll(r)
}

// setPrimary records the primary of r and republishes the packet-in
// destinations. Call with arb held.
func (s *Server) setPrimary(r *role, p *stream) {
	if r.primary == p {
		if p != nil {
			r.past = p.election
		}
		return
	}
	if r.primary != nil {
		r.primary.isPrimary.Store(false)
	}
	r.primary = p
	if p != nil {
		p.isPrimary.Store(true)
		r.past, r.hasPast = p.election, true
		s.log.Info("P4Runtime primary elected", "peer", p.peer, "role", r.name, "election_id", p.election.String())
	} else {
		s.log.Info("P4Runtime role has no primary", "role", r.name)
	}
	prim := make([]*stream, 0, len(s.roles))
	for _, x := range s.roles {
		if x.primary != nil {
			prim = append(prim, x.primary)
		}
	}
	s.primaries.Store(&prim)
}

func (s *Server) notifyAll(r *role) {
	for st := range r.streams {
		s.notify(r, st)
	}
}

// notify queues the arbitration state of r for st (spec, "Client Arbitration Notifications").
func (s *Server) notify(r *role, st *stream) {
	u := &p4v1.MasterArbitrationUpdate{DeviceId: s.opts.DeviceID}
	if r.name != "" {
		u.Role = &p4v1.Role{Name: r.name}
	}
	if r.hasPast {
		u.ElectionId = r.past.proto()
	}
	switch {
	case r.primary == st:
		u.Status = &rpcstatus.Status{Code: int32(codes.OK), Message: "primary"}
	case r.primary != nil:
		u.Status = &rpcstatus.Status{Code: int32(codes.AlreadyExists), Message: "backup: another controller is primary"}
	default:
		u.Status = &rpcstatus.Status{Code: int32(codes.NotFound), Message: "backup: no primary"}
	}
	st.queue(&p4v1.StreamMessageResponse{Update: &p4v1.StreamMessageResponse_Arbitration{Arbitration: u}})
}

// authorize checks that a Write or SetForwardingPipelineConfig comes from
// the primary of its role (spec, "Write RPC" and "SetForwardingPipelineConfig RPC").
func (s *Server) authorize(roleID uint64, name string, eid *p4v1.Uint128) error {
	if roleID != 0 {
		return status.Errorf(codes.InvalidArgument, "role_id is deprecated since P4Runtime 1.4; use role")
	}
	s.arb.Lock()
	defer s.arb.Unlock()
	r := s.roles[name]
	if r == nil && name != "" {
		return status.Errorf(codes.NotFound, "no controller has arbitrated for role %q", name)
	}
	if r == nil || r.primary == nil {
		return status.Errorf(codes.PermissionDenied, "role %q has no primary controller: open a StreamChannel and arbitrate first", name)
	}
	if eid == nil {
		return status.Errorf(codes.PermissionDenied, "election_id unset: only the primary of role %q may write", name)
	}
	if e := toUint128(eid); e != r.primary.election {
		return status.Errorf(codes.PermissionDenied, "election id %v is not the primary's for role %q", e, name)
	}
	return nil
}
