package server

import (
	"fmt"
	"strings"

	p4v1 "github.com/p4lang/p4runtime/go/p4/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/dmsc-mesh/dmsc/p4rt/p4info"
)

func (s *Server) setPipeline(req *p4v1.SetForwardingPipelineConfigRequest) (*p4v1.SetForwardingPipelineConfigResponse, error) {
	if err := s.checkDevice(req.DeviceId); err != nil {
		return nil, s.rpcError(err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.authorize(req.RoleId, req.Role, req.ElectionId); err != nil {
		return nil, s.rpcError(err)
	}
	var err error
	switch req.Action {
	case p4v1.SetForwardingPipelineConfigRequest_VERIFY:
		_, err = s.prepare(req.Config)
	case p4v1.SetForwardingPipelineConfigRequest_VERIFY_AND_SAVE:
		var p *pipeline
		if p, err = s.prepare(req.Config); err == nil {
			s.saved = p
			s.log.Info("P4Runtime pipeline saved", "cookie", cookieAttr(req.Config))
		}
	case p4v1.SetForwardingPipelineConfigRequest_VERIFY_AND_COMMIT:
		var p *pipeline
		if p, err = s.prepare(req.Config); err == nil {
			err = s.commit(p, nil)
		}
	case p4v1.SetForwardingPipelineConfigRequest_COMMIT:
		switch {
		case req.Config != nil:
			err = status.Error(codes.InvalidArgument, "COMMIT commits the saved config: leave config unset")
		case s.saved == nil:
			err = status.Error(codes.NotFound, "no saved config to commit: VERIFY_AND_SAVE one first")
		default:
			// Writes since VERIFY_AND_SAVE were validated against the saved
			// config and kept in its state; COMMIT replays them.
			p := s.saved
			err = s.commit(p, p.state.replay())
		}
	case p4v1.SetForwardingPipelineConfigRequest_RECONCILE_AND_COMMIT:
		var p *pipeline
		if p, err = s.prepare(req.Config); err == nil {
			err = s.reconcile(p)
		}
	default:
		err = status.Errorf(codes.InvalidArgument, "action %v: want VERIFY, VERIFY_AND_SAVE, VERIFY_AND_COMMIT, COMMIT or RECONCILE_AND_COMMIT", req.Action)
	}
	if err != nil {
		return nil, s.rpcError(err)
	}
	return &p4v1.SetForwardingPipelineConfigResponse{}, nil
}

func cookieAttr(c *p4v1.ForwardingPipelineConfig) string {
	if c.GetCookie() == nil {
		return "unset"
	}
	return fmt.Sprint(c.GetCookie().GetCookie())
}

// prepare parses and verifies a config; the target's forwarding is not
// touched.
func (s *Server) prepare(cfg *p4v1.ForwardingPipelineConfig) (*pipeline, error) {
	if cfg == nil || cfg.P4Info == nil {
		return nil, status.Error(codes.InvalidArgument, "config with a p4info is required")
	}
	schema, err := p4info.New(cfg.P4Info)
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	if err := s.target.VerifyPipeline(schema, cfg.P4DeviceConfig); err != nil {
		return nil, targetError(err, codes.InvalidArgument, "the target cannot run this pipeline")
	}
	return newPipeline(schema, cfg), nil
}

// targetError keeps the code of a target's status error, and gives def to
// anything else.
func targetError(err error, def codes.Code, what string) error {
	if st, ok := status.FromError(err); ok && st.Code() != codes.Unknown {
		return status.Errorf(st.Code(), "%s: %s", what, st.Message())
	}
	return status.Errorf(def, "%s: %v", what, err)
}

// commit makes p the running pipeline and installs ups (validated against
// p, and already in p.state) on the target. When the target refuses them,
// p runs with empty state and the error says so.
func (s *Server) commit(p *pipeline, ups []*p4v1.Update) error {
	if err := s.target.CommitPipeline(p.schema, p.config.P4DeviceConfig); err != nil {
		return targetError(err, codes.Internal, "commit failed")
	}
	s.running, s.saved = p, nil
	s.dataplane.Store(p.schema)
	s.log.Info("P4Runtime pipeline committed", "cookie", cookieAttr(p.config), "replayed", len(ups))
	if len(ups) == 0 {
		return nil
	}
	if errs := s.target.Apply(changesOf(ups), true); firstError(errs) >= 0 {
		p.state = newState(p.schema)
		i := firstError(errs)
		return status.Errorf(codes.Internal, "pipeline committed, but the target refused to restore %d entities (first: %v); forwarding state is empty", len(ups), errs[i])
	}
	return nil
}

// reconcile commits p while keeping the forwarding state: everything
// installed must still be valid under p's P4Info (same ids, fields that
// still fit, actions still allowed), or nothing changes (INVALID_ARGUMENT,
// spec, "SetForwardingPipelineConfig RPC"). The target starts empty after CommitPipeline, so the state is
// replayed; traffic is lost in between.
func (s *Server) reconcile(p *pipeline) error {
	if s.saved != nil {
		return status.Error(codes.FailedPrecondition, "a saved config is waiting for COMMIT: commit it, or replace it with VERIFY_AND_COMMIT")
	}
	old := s.running
	if old == nil {
		return s.commit(p, nil)
	}
	ups := old.state.replay()
	if errs := s.applyBatch(p, ups, p4v1.WriteRequest_ROLLBACK_ON_ERROR, false); errs != nil {
		var why []string
		for i, e := range errs {
			if st := status.Convert(e); st.Code() != codes.Aborted {
				why = append(why, fmt.Sprintf("%s: %s", describe(old.schema, ups[i].Entity), st.Message()))
				if len(why) == 5 {
					break
				}
			}
		}
		return status.Errorf(codes.InvalidArgument, "the installed state cannot be kept under the new P4Info: %s", strings.Join(why, "; "))
	}
	if err := s.target.CommitPipeline(p.schema, p.config.P4DeviceConfig); err != nil {
		return targetError(err, codes.Internal, "commit failed")
	}
	if errs := s.target.Apply(changesOf(ups), true); firstError(errs) >= 0 {
		err := errs[firstError(errs)]
		// Put the old pipeline and its state back, so that a refusal costs
		// a blip rather than the whole forwarding state.
		running := newPipeline(p.schema, p.config)
		if rerr := s.target.CommitPipeline(old.schema, old.config.P4DeviceConfig); rerr == nil {
			if rerrs := s.target.Apply(changesOf(ups), true); firstError(rerrs) < 0 {
				return status.Errorf(codes.Internal, "the target refused to restore the state under the new pipeline (%v); the previous pipeline and state are back", err)
			}
			running = newPipeline(old.schema, old.config)
		}
		s.running, s.saved = running, nil
		s.dataplane.Store(running.schema)
		s.log.Error("P4Runtime reconcile failed and the previous pipeline could not be restored", "err", err)
		return status.Errorf(codes.Internal, "the target refused to restore the state under the new pipeline (%v) and restoring the previous pipeline and state failed too; forwarding state is empty", err)
	}
	s.running, s.saved = p, nil
	s.dataplane.Store(p.schema)
	s.log.Info("P4Runtime pipeline reconciled", "cookie", cookieAttr(p.config), "kept", len(ups))
	return nil
}

// describe names an entity for error messages.
func describe(schema *p4info.Schema, e *p4v1.Entity) string {
	switch x := e.GetEntity().(type) {
	case *p4v1.Entity_TableEntry:
		if t, ok := schema.TableByID(x.TableEntry.GetTableId()); ok {
			return fmt.Sprintf("an entry of table %q", t.Preamble.Name)
		}
		return fmt.Sprintf("an entry of table id %d", x.TableEntry.GetTableId())
	case *p4v1.Entity_ActionProfileMember:
		m := x.ActionProfileMember
		if p, ok := schema.ActionProfileByID(m.GetActionProfileId()); ok {
			return fmt.Sprintf("member %d of %q", m.GetMemberId(), p.Preamble.Name)
		}
		return fmt.Sprintf("member %d of action profile id %d", m.GetMemberId(), m.GetActionProfileId())
	case *p4v1.Entity_ActionProfileGroup:
		g := x.ActionProfileGroup
		if p, ok := schema.ActionProfileByID(g.GetActionProfileId()); ok {
			return fmt.Sprintf("group %d of %q", g.GetGroupId(), p.Preamble.Name)
		}
		return fmt.Sprintf("group %d of action profile id %d", g.GetGroupId(), g.GetActionProfileId())
	}
	return entityKind(e)
}

func (s *Server) getPipeline(req *p4v1.GetForwardingPipelineConfigRequest) (*p4v1.GetForwardingPipelineConfigResponse, error) {
	if err := s.checkDevice(req.DeviceId); err != nil {
		return nil, s.rpcError(err)
	}
	s.mu.RLock()
	p := s.current()
	s.mu.RUnlock()
	if p == nil {
		return &p4v1.GetForwardingPipelineConfigResponse{}, nil
	}
	c := p.config
	out := &p4v1.ForwardingPipelineConfig{Cookie: c.Cookie}
	switch req.ResponseType {
	case p4v1.GetForwardingPipelineConfigRequest_ALL:
		out.P4Info, out.P4DeviceConfig = c.P4Info, c.P4DeviceConfig
	case p4v1.GetForwardingPipelineConfigRequest_COOKIE_ONLY:
	case p4v1.GetForwardingPipelineConfigRequest_P4INFO_AND_COOKIE:
		out.P4Info = c.P4Info
	case p4v1.GetForwardingPipelineConfigRequest_DEVICE_CONFIG_AND_COOKIE:
		out.P4DeviceConfig = c.P4DeviceConfig
	default:
		return nil, s.rpcError(status.Errorf(codes.InvalidArgument, "unknown response_type %d", req.ResponseType))
	}
	return &p4v1.GetForwardingPipelineConfigResponse{Config: out}, nil
}
