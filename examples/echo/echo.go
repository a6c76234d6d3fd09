// Package echo implements api/echo's Echo service: what `dmsc pod serve`
// serves and the end-to-end tests call.
package echo

import (
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	echopb "github.com/dmsc-mesh/dmsc/api/echo"
)

// MaxRepeat bounds Repeat's count.
const MaxRepeat = 100000

// Server is the Echo service.
type Server struct {
	echopb.UnimplementedEchoServer
	// ServedBy names this instance in replies.
	ServedBy func() string
	// Caller names the caller of a request (the pod identity the transport
	// authenticated); nil leaves it empty.
	Caller func(ctx context.Context) string
}

func (s *Server) servedBy() string {
	if s.ServedBy == nil {
		return ""
	}
	return s.ServedBy()
}

func (s *Server) caller(ctx context.Context) string {
	if s.Caller == nil {
		return ""
	}
	return s.Caller(ctx)
}

// Echo answers with the request.
func (s *Server) Echo(ctx context.Context, req *echopb.EchoRequest) (*echopb.EchoReply, error) {
	return &echopb.EchoReply{Message: req.GetMessage(), Payload: req.GetPayload(), ServedBy: s.servedBy(), Caller: s.caller(ctx)}, nil
}

// Sum hashes what the client streams.
func (s *Server) Sum(stream echopb.Echo_SumServer) error {
	h := sha256.New()
	var n int64
	for {
		c, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return stream.SendAndClose(&echopb.Digest{Sha256: h.Sum(nil), Size: n, ServedBy: s.servedBy()})
		}
		if err != nil {
			return err
		}
		h.Write(c.GetData())
		n += int64(len(c.GetData()))
	}
}

// Repeat streams the message count times, interval apart.
func (s *Server) Repeat(req *echopb.RepeatRequest, stream echopb.Echo_RepeatServer) error {
	if req.GetCount() < 0 || req.GetCount() > MaxRepeat || req.GetIntervalMs() < 0 {
		return status.Errorf(codes.InvalidArgument, "count %d (0 to %d), interval %d ms", req.GetCount(), MaxRepeat, req.GetIntervalMs())
	}
	for i := int32(0); i < req.GetCount(); i++ {
		if i > 0 && req.GetIntervalMs() > 0 {
			select {
			case <-stream.Context().Done():
				return stream.Context().Err()
			case <-time.After(time.Duration(req.GetIntervalMs()) * time.Millisecond):
			}
		}
		if err := stream.Send(&echopb.EchoReply{Message: req.GetMessage(), ServedBy: s.servedBy(), Caller: s.caller(stream.Context())}); err != nil {
			return err
		}
	}
	return nil
}
