package server

import (
	"context"

	p4v1 "github.com/p4lang/p4runtime/go/p4/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"
)

// serviceDesc describes p4.v1.P4Runtime like the generated descriptor does,
// with one difference: Write requests are decoded by decodeWrite rather
// than by the generic protobuf decoder, which dominated the cost of a large
// Write. gRPC's codec decodes the request into an empty message, which keeps
// the whole request as unknown fields, a copy that the server owns.
func serviceDesc() *grpc.ServiceDesc {
	return &grpc.ServiceDesc{
		ServiceName: "p4.v1.P4Runtime",
		HandlerType: (*p4v1.P4RuntimeServer)(nil),
		Methods: []grpc.MethodDesc{
			{MethodName: "Write", Handler: writeHandler},
			unary("SetForwardingPipelineConfig", func(s *Server, _ context.Context, req *p4v1.SetForwardingPipelineConfigRequest) (*p4v1.SetForwardingPipelineConfigResponse, error) {
				return s.setPipeline(req)
			}),
			unary("GetForwardingPipelineConfig", func(s *Server, _ context.Context, req *p4v1.GetForwardingPipelineConfigRequest) (*p4v1.GetForwardingPipelineConfigResponse, error) {
				return s.getPipeline(req)
			}),
			unary("Capabilities", func(s *Server, ctx context.Context, req *p4v1.CapabilitiesRequest) (*p4v1.CapabilitiesResponse, error) {
				return (&service{s: s}).Capabilities(ctx, req)
			}),
		},
		Streams: []grpc.StreamDesc{
			{StreamName: "Read", ServerStreams: true, Handler: func(srv any, stream grpc.ServerStream) error {
				req := &p4v1.ReadRequest{}
				if err := stream.RecvMsg(req); err != nil {
					return err
				}
				return srv.(*service).s.read(req, readStream{stream})
			}},
			{StreamName: "StreamChannel", ServerStreams: true, ClientStreams: true, Handler: func(srv any, stream grpc.ServerStream) error {
				return srv.(*service).s.streamChannel(channelStream{stream})
			}},
		},
		Metadata: "p4/v1/p4runtime.proto",
	}
}

const methodPrefix = "/p4.v1.P4Runtime/"

func writeHandler(srv any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
	raw := &emptypb.Empty{}
	if err := dec(raw); err != nil {
		return nil, err
	}
	req, err := decodeWrite(raw.ProtoReflect().GetUnknown())
	if err != nil {
		return nil, status.Errorf(codes.Internal, "grpc: error unmarshalling request: %v", err)
	}
	s := srv.(*service).s
	if interceptor == nil {
		return s.write(req)
	}
	return interceptor(ctx, req, &grpc.UnaryServerInfo{Server: srv, FullMethod: methodPrefix + "Write"},
		func(ctx context.Context, req any) (any, error) { return s.write(req.(*p4v1.WriteRequest)) })
}

// unary is the usual unary handler: decode, then call fn through the
// interceptor, if any.
func unary[Req, Resp any](name string, fn func(*Server, context.Context, *Req) (*Resp, error)) grpc.MethodDesc {
	return grpc.MethodDesc{MethodName: name, Handler: func(srv any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
		req := new(Req)
		if err := dec(req); err != nil {
			return nil, err
		}
		s := srv.(*service).s
		if interceptor == nil {
			return fn(s, ctx, req)
		}
		return interceptor(ctx, req, &grpc.UnaryServerInfo{Server: srv, FullMethod: methodPrefix + name},
			func(ctx context.Context, req any) (any, error) { return fn(s, ctx, req.(*Req)) })
	}}
}

type readStream struct{ grpc.ServerStream }

func (x readStream) Send(m *p4v1.ReadResponse) error { return x.SendMsg(m) }

type channelStream struct{ grpc.ServerStream }

func (x channelStream) Send(m *p4v1.StreamMessageResponse) error { return x.SendMsg(m) }

func (x channelStream) Recv() (*p4v1.StreamMessageRequest, error) {
	m := &p4v1.StreamMessageRequest{}
	if err := x.RecvMsg(m); err != nil {
		return nil, err
	}
	return m, nil
}
