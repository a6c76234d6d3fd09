package gnmi

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"time"

	gpb "github.com/openconfig/gnmi/proto/gnmi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
)

// Client is a gNMI client of one target (SCSC's connection to an agent, or
// `dmsc show`'s).
type Client struct {
	conn *grpc.ClientConn
	gnmi gpb.GNMIClient
}

// Dial connects to the gNMI target at addr (host:port) with tlsConf (ca's
// ClientTLS or LoadClientTLS for DMSC), or without TLS when tlsConf is nil.
// It asks the target's Capabilities before it returns, so that a wrong
// address, a TLS mismatch or a refused identity shows here, within ctx.
// The connection reconnects by itself afterwards.
func Dial(ctx context.Context, addr string, tlsConf *tls.Config) (*Client, error) {
	creds := insecure.NewCredentials()
	if tlsConf != nil {
		creds = credentials.NewTLS(tlsConf)
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds),
		// Notice a target that vanished (an agent whose host died) within
		// about 40 s even while a subscription is idle.
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 30 * time.Second, Timeout: 10 * time.Second, PermitWithoutStream: true}))
	if err != nil {
		return nil, fmt.Errorf("gnmi: dial %s: %w", addr, err)
	}
	c := NewClient(conn)
	if _, err := c.Capabilities(ctx); err != nil {
		conn.Close()
		return nil, fmt.Errorf("gnmi: dial %s: %w", addr, err)
	}
	return c, nil
}

// NewClient is a Client over a connection the caller made (and closes:
// Close then closes it too).
func NewClient(conn *grpc.ClientConn) *Client {
	return &Client{conn: conn, gnmi: gpb.NewGNMIClient(conn)}
}

// Close closes the connection; running subscriptions end with an error.
func (c *Client) Close() error { return c.conn.Close() }

// Raw is the generated gNMI client, for requests the helpers do not build.
func (c *Client) Raw() gpb.GNMIClient { return c.gnmi }

// Capabilities asks the target's models, encodings and gNMI version.
func (c *Client) Capabilities(ctx context.Context) (*gpb.CapabilityResponse, error) {
	return c.gnmi.Capabilities(ctx, &gpb.CapabilityRequest{})
}

// Get reads the leaves at or below paths (string form, wildcards allowed)
// with typed (PROTO) values. A path that selects nothing is a NOT_FOUND
// error.
func (c *Client) Get(ctx context.Context, paths ...string) ([]Reading, error) {
	req := &gpb.GetRequest{Encoding: gpb.Encoding_PROTO}
	for _, s := range paths {
		p, err := ParsePath(s)
		if err != nil {
			return nil, err
		}
		req.Path = append(req.Path, p)
	}
	resp, err := c.gnmi.Get(ctx, req)
	if err != nil {
		return nil, err
	}
	var out []Reading
	for _, n := range resp.GetNotification() {
		rs, err := Decode(n)
		if err != nil {
			return nil, err
		}
		out = append(out, rs...)
	}
	return out, nil
}

// DeleteOp deletes what is at or below p.
func DeleteOp(p *gpb.Path) SetOp { return SetOp{Op: gpb.UpdateResult_DELETE, Path: p} }

// ReplaceOp replaces what is at p with v (a value as Leaf takes; JSON for a
// policy's config).
func ReplaceOp(p *gpb.Path, v any) SetOp {
	return SetOp{Op: gpb.UpdateResult_REPLACE, Path: p, Value: v}
}

// UpdateOp merges v into what is at p.
func UpdateOp(p *gpb.Path, v any) SetOp { return SetOp{Op: gpb.UpdateResult_UPDATE, Path: p, Value: v} }

// Set sends ops as one SetRequest: one transaction on the target, which
// applies deletes, then replaces, then updates (each in the order given
// here), all or nothing.
func (c *Client) Set(ctx context.Context, ops ...SetOp) (*gpb.SetResponse, error) {
	req := &gpb.SetRequest{}
	for i, o := range ops {
		if o.Path == nil {
			return nil, fmt.Errorf("gnmi: set: op %d has no path", i+1)
		}
		if o.Op == gpb.UpdateResult_DELETE {
			req.Delete = append(req.Delete, o.Path)
			continue
		}
		v, err := normalize(o.Value)
		if err != nil {
			return nil, fmt.Errorf("gnmi: set: op %d (%s): %w", i+1, PathString(o.Path), err)
		}
		u := &gpb.Update{Path: o.Path, Val: encodeValue(v, gpb.Encoding_PROTO)}
		switch o.Op {
		case gpb.UpdateResult_REPLACE:
			req.Replace = append(req.Replace, u)
		case gpb.UpdateResult_UPDATE:
			req.Update = append(req.Update, u)
		default:
			return nil, fmt.Errorf("gnmi: set: op %d: operation %v is not DELETE, REPLACE or UPDATE", i+1, o.Op)
		}
	}
	return c.gnmi.Set(ctx, req)
}

// Subscriptions makes one Subscription per path (string form), each a copy
// of tmpl's mode and intervals: for example
//
//	Subscriptions(&gpb.Subscription{Mode: gpb.SubscriptionMode_SAMPLE,
//		SampleInterval: uint64(time.Second)}, ProbesRoot, InterfacesRoot)
func Subscriptions(tmpl *gpb.Subscription, paths ...string) ([]*gpb.Subscription, error) {
	out := make([]*gpb.Subscription, 0, len(paths))
	for _, s := range paths {
		p, err := ParsePath(s)
		if err != nil {
			return nil, err
		}
		out = append(out, &gpb.Subscription{
			Path:              p,
			Mode:              tmpl.GetMode(),
			SampleInterval:    tmpl.GetSampleInterval(),
			SuppressRedundant: tmpl.GetSuppressRedundant(),
			HeartbeatInterval: tmpl.GetHeartbeatInterval(),
		})
	}
	return out, nil
}

// Subscribe runs the subscription list (set Encoding to PROTO for typed
// values; Decode reads the notifications) and calls fn with every response,
// sync_response included, until ctx ends (it returns ctx's error), the
// stream ends (nil: a ONCE subscription is complete) or fails, or fn returns
// an error (returned). For POLL use Poll.
func (c *Client) Subscribe(ctx context.Context, list *gpb.SubscriptionList, fn func(*gpb.SubscribeResponse) error) error {
	if list.GetMode() == gpb.SubscriptionList_POLL {
		return errors.New("gnmi: subscribe: use Poll for a POLL subscription")
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // ends the stream when fn fails
	stream, err := c.gnmi.Subscribe(ctx)
	if err != nil {
		return err
	}
	if err := stream.Send(&gpb.SubscribeRequest{Request: &gpb.SubscribeRequest_Subscribe{Subscribe: list}}); err != nil {
		return recvError(ctx, stream, err)
	}
	for {
		resp, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return err
		}
		if err := fn(resp); err != nil {
			return err
		}
	}
}

// recvError turns a failed Send into the stream's real status: gRPC reports
// a send on a failed stream as EOF and keeps the cause for Recv.
func recvError(ctx context.Context, stream gpb.GNMI_SubscribeClient, err error) error {
	if errors.Is(err, io.EOF) {
		if _, rerr := stream.Recv(); rerr != nil && !errors.Is(rerr, io.EOF) {
			err = rerr
		}
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}

// Poller is a POLL subscription.
type Poller struct {
	stream  gpb.GNMI_SubscribeClient
	cancel  context.CancelFunc
	ctx     context.Context
	initial bool // the target's first snapshot is still to be read
}

// Poll opens a POLL subscription of list; each Poller.Poll returns one
// snapshot, the first one the target sends by itself. Close ends it.
func (c *Client) Poll(ctx context.Context, list *gpb.SubscriptionList) (*Poller, error) {
	l := cloneList(list)
	l.Mode = gpb.SubscriptionList_POLL
	ctx, cancel := context.WithCancel(ctx)
	stream, err := c.gnmi.Subscribe(ctx)
	if err != nil {
		cancel()
		return nil, err
	}
	if err := stream.Send(&gpb.SubscribeRequest{Request: &gpb.SubscribeRequest_Subscribe{Subscribe: l}}); err != nil {
		err = recvError(ctx, stream, err)
		cancel()
		return nil, err
	}
	return &Poller{stream: stream, cancel: cancel, ctx: ctx, initial: true}, nil
}

func cloneList(l *gpb.SubscriptionList) *gpb.SubscriptionList {
	return &gpb.SubscriptionList{
		Prefix:           l.GetPrefix(),
		Subscription:     l.GetSubscription(),
		Qos:              l.GetQos(),
		Mode:             l.GetMode(),
		AllowAggregation: l.GetAllowAggregation(),
		UseModels:        l.GetUseModels(),
		Encoding:         l.GetEncoding(),
		UpdatesOnly:      l.GetUpdatesOnly(),
	}
}

// Poll returns the next snapshot: the readings up to the target's
// sync_response. Not safe for concurrent use.
func (p *Poller) Poll() ([]Reading, error) {
	if !p.initial {
		if err := p.stream.Send(&gpb.SubscribeRequest{Request: &gpb.SubscribeRequest_Poll{Poll: &gpb.Poll{}}}); err != nil {
			return nil, recvError(p.ctx, p.stream, err)
		}
	}
	p.initial = false
	var out []Reading
	for {
		resp, err := p.stream.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil, errors.New("gnmi: poll: the target ended the subscription")
			}
			return nil, err
		}
		if resp.GetSyncResponse() {
			return out, nil
		}
		rs, err := Decode(resp.GetUpdate())
		if err != nil {
			return nil, err
		}
		out = append(out, rs...)
	}
}

// Close ends the POLL subscription.
func (p *Poller) Close() error {
	err := p.stream.CloseSend()
	p.cancel()
	return err
}
