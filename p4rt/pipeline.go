package p4rt

import (
	"context"
	"fmt"

	p4cfg "github.com/p4lang/p4runtime/go/p4/config/v1"
	p4v1 "github.com/p4lang/p4runtime/go/p4/v1"
	"google.golang.org/protobuf/proto"

	"github.com/dmsc-mesh/dmsc/p4rt/p4info"
)

// SetPipeline pushes a pipeline with VERIFY_AND_COMMIT: the switch starts
// from empty tables.
func (c *Client) SetPipeline(ctx context.Context, info *p4cfg.P4Info, deviceConfig []byte, cookie uint64) error {
	s, err := p4info.New(info)
	if err != nil {
		return err
	}
	if err := c.setPipeline(ctx, p4v1.SetForwardingPipelineConfigRequest_VERIFY_AND_COMMIT, info, deviceConfig, cookie); err != nil {
		return err
	}
	c.UseSchema(s)
	return nil
}

func (c *Client) setPipeline(ctx context.Context, action p4v1.SetForwardingPipelineConfigRequest_Action, info *p4cfg.P4Info, deviceConfig []byte, cookie uint64) error {
	req := &p4v1.SetForwardingPipelineConfigRequest{
		DeviceId:   c.opts.DeviceID,
		ElectionId: c.opts.ElectionID.proto(),
		Action:     action,
		Config: &p4v1.ForwardingPipelineConfig{
			P4Info:         info,
			P4DeviceConfig: deviceConfig,
			Cookie:         &p4v1.ForwardingPipelineConfig_Cookie{Cookie: cookie},
		},
	}
	if c.opts.Role != "" {
		req.Role = c.opts.Role
	}
	if _, err := c.rpc.SetForwardingPipelineConfig(ctx, req); err != nil {
		return fmt.Errorf("p4rt: SetForwardingPipelineConfig %s: %w", action, err)
	}
	return nil
}

// GetPipeline reads the running pipeline (P4Info and cookie).
func (c *Client) GetPipeline(ctx context.Context) (*p4v1.ForwardingPipelineConfig, error) {
	resp, err := c.rpc.GetForwardingPipelineConfig(ctx, &p4v1.GetForwardingPipelineConfigRequest{
		DeviceId:     c.opts.DeviceID,
		ResponseType: p4v1.GetForwardingPipelineConfigRequest_P4INFO_AND_COOKIE,
	})
	if err != nil {
		return nil, fmt.Errorf("p4rt: GetForwardingPipelineConfig: %w", err)
	}
	return resp.GetConfig(), nil
}

// VerifyOrPush is for a warm restart: when the switch already runs this
// P4Info with this cookie, it verifies the pipeline and keeps the switch's
// state (kept is true, and the caller reads the tables back and reconciles);
// otherwise it pushes the pipeline with VERIFY_AND_COMMIT.
func (c *Client) VerifyOrPush(ctx context.Context, info *p4cfg.P4Info, deviceConfig []byte, cookie uint64) (kept bool, err error) {
	s, err := p4info.New(info)
	if err != nil {
		return false, err
	}
	running, err := c.GetPipeline(ctx)
	if err == nil && running.GetP4Info() != nil && running.GetCookie().GetCookie() == cookie && proto.Equal(running.GetP4Info(), info) {
		if err := c.setPipeline(ctx, p4v1.SetForwardingPipelineConfigRequest_VERIFY, info, deviceConfig, cookie); err != nil {
			return false, err
		}
		c.UseSchema(s)
		c.log.Info("pipeline already running: keeping the switch's state", "cookie", cookie)
		return true, nil
	}
	if err := c.SetPipeline(ctx, info, deviceConfig, cookie); err != nil {
		return false, err
	}
	c.log.Info("pipeline pushed", "cookie", cookie)
	return false, nil
}
