package server

import (
	"context"
	"net"
	"sync"
	"testing"

	p4v1 "github.com/p4lang/p4runtime/go/p4/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// TestServiceInterceptors: the hand-made descriptor runs unary
// interceptors with the decoded requests, like the generated one.
func TestServiceInterceptors(t *testing.T) {
	var mu sync.Mutex
	seen := map[string]any{}
	gs := grpc.NewServer(grpc.UnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		mu.Lock()
		seen[info.FullMethod] = req
		mu.Unlock()
		return handler(ctx, req)
	}))
	srv := New(&fakeTarget{}, Options{DeviceID: testDevice})
	srv.Register(gs)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = gs.Serve(lis)
	}()
	defer func() {
		srv.Close()
		gs.Stop()
		<-served
	}()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := p4v1.NewP4RuntimeClient(conn)
	ctx := context.Background()
	if _, err := client.Write(ctx, &p4v1.WriteRequest{DeviceId: 99, Role: "r"}); status.Code(err) != codes.NotFound {
		t.Errorf("Write: %v", err)
	}
	if _, err := client.Capabilities(ctx, &p4v1.CapabilitiesRequest{}); err != nil {
		t.Error(err)
	}
	if _, err := client.GetForwardingPipelineConfig(ctx, &p4v1.GetForwardingPipelineConfigRequest{DeviceId: testDevice}); err != nil {
		t.Error(err)
	}
	if _, err := client.SetForwardingPipelineConfig(ctx, &p4v1.SetForwardingPipelineConfigRequest{DeviceId: testDevice}); status.Code(err) != codes.PermissionDenied {
		t.Errorf("SetForwardingPipelineConfig: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if w, ok := seen["/p4.v1.P4Runtime/Write"].(*p4v1.WriteRequest); !ok || w.DeviceId != 99 || w.Role != "r" {
		t.Errorf("interceptor saw Write request %v", seen["/p4.v1.P4Runtime/Write"])
	}
	for _, m := range []string{"Capabilities", "GetForwardingPipelineConfig", "SetForwardingPipelineConfig"} {
		if seen["/p4.v1.P4Runtime/"+m] == nil {
			t.Errorf("interceptor did not see %s", m)
		}
	}
}
