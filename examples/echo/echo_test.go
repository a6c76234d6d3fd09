package echo

import (
	"bytes"
	"context"
	"crypto/sha256"
	"io"
	"net"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	echopb "github.com/dmsc-mesh/dmsc/api/echo"
)

func TestEcho(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	echopb.RegisterEchoServer(gs, &Server{ServedBy: func() string { return "me" }, Caller: func(context.Context) string { return "you" }})
	go gs.Serve(lis)
	defer gs.Stop()
	cc, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	c := echopb.NewEchoClient(cc)
	ctx := context.Background()
	r, err := c.Echo(ctx, &echopb.EchoRequest{Message: "hi", Payload: []byte{1, 2}})
	if err != nil || r.GetMessage() != "hi" || !bytes.Equal(r.GetPayload(), []byte{1, 2}) || r.GetServedBy() != "me" || r.GetCaller() != "you" {
		t.Errorf("echo: %v %v", r, err)
	}
	up, err := c.Sum(ctx)
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	for i := range 5 {
		chunk := bytes.Repeat([]byte{byte(i)}, 1000)
		h.Write(chunk)
		if err := up.Send(&echopb.Chunk{Data: chunk}); err != nil {
			t.Fatal(err)
		}
	}
	d, err := up.CloseAndRecv()
	if err != nil || !bytes.Equal(d.GetSha256(), h.Sum(nil)) || d.GetSize() != 5000 {
		t.Errorf("sum: %v %v", d, err)
	}
	down, err := c.Repeat(ctx, &echopb.RepeatRequest{Message: "x", Count: 3})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for {
		_, err := down.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		n++
	}
	if n != 3 {
		t.Errorf("repeat: %d replies", n)
	}
	bad, _ := c.Repeat(ctx, &echopb.RepeatRequest{Count: -1})
	if _, err := bad.Recv(); status.Code(err) != codes.InvalidArgument {
		t.Errorf("repeat -1: %v", err)
	}
}
