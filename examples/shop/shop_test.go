package shop

import (
	"context"
	"net"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	shoppb "github.com/dmsc-mesh/dmsc/api/shop"
)

// serve runs reg on a loopback gRPC server and returns a client conn to it.
func serve(t *testing.T, reg func(*grpc.Server)) *grpc.ClientConn {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	reg(gs)
	go gs.Serve(lis)
	t.Cleanup(gs.Stop)
	cc, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

func TestShopChain(t *testing.T) {
	ctx := context.Background()
	name := func(n string) func() string { return func() string { return n } }
	catalog := serve(t, func(s *grpc.Server) { shoppb.RegisterCatalogServer(s, NewCatalog(Items, name("catalog-1"))) })
	cart := serve(t, func(s *grpc.Server) {
		shoppb.RegisterCartServer(s, NewCart(shoppb.NewCatalogClient(catalog), name("cart-1")))
	})
	front := serve(t, func(s *grpc.Server) {
		shoppb.RegisterFrontendServer(s, &Frontend{Cart: shoppb.NewCartClient(cart), ServedBy: name("front-1")})
	})
	fc := shoppb.NewFrontendClient(front)
	r, err := fc.Buy(ctx, &shoppb.BuyRequest{User: "ada", Skus: []string{"book", "mug", "mug"}})
	if err != nil {
		t.Fatal(err)
	}
	if r.GetCart().GetTotalCents() != 19900+2*1250 || len(r.GetCart().GetLines()) != 2 || r.GetServedBy() != "front-1" ||
		r.GetCart().GetServedBy() != "cart-1" || r.GetCart().GetLines()[0].GetItem().GetServedBy() != "catalog-1" {
		t.Errorf("buy: %v", r)
	}
	for _, tc := range []struct {
		req  *shoppb.BuyRequest
		code codes.Code
	}{
		{&shoppb.BuyRequest{User: "ada", Skus: []string{"unicorn"}}, codes.NotFound},
		{&shoppb.BuyRequest{User: "ada"}, codes.InvalidArgument},
		{&shoppb.BuyRequest{Skus: []string{"mug"}}, codes.InvalidArgument},
	} {
		if _, err := fc.Buy(ctx, tc.req); status.Code(err) != tc.code {
			t.Errorf("%v: %v, want %v", tc.req, err, tc.code)
		}
	}
	st, err := shoppb.NewCatalogClient(catalog).ListItems(ctx, &shoppb.ListItemsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for {
		if _, err := st.Recv(); err != nil {
			break
		}
		n++
	}
	if n != len(Items) {
		t.Errorf("listed %d items, want %d", n, len(Items))
	}
}
