// Package p4rtbench measures P4Runtime writes into the software switch end to
// end: the p4rt client, gRPC on loopback, the P4Runtime server's validation
// and the switch's table snapshots.
package p4rtbench

import (
	"context"
	"encoding/binary"
	"net"
	"testing"

	p4v1 "github.com/p4lang/p4runtime/go/p4/v1"
	"google.golang.org/grpc"

	"github.com/dmsc-mesh/dmsc/p4"
	"github.com/dmsc-mesh/dmsc/p4rt"
	"github.com/dmsc-mesh/dmsc/p4rt/server"
	"github.com/dmsc-mesh/dmsc/softswitch"
)

const batch = 1000

// BenchmarkWrite1000 inserts 1,000 fib_64 routes per Write (one op) into a
// software switch that already holds `preload` routes, and reports updates/s.
func BenchmarkWrite1000(b *testing.B) {
	for _, preload := range []int{0, 100_000} {
		b.Run(map[int]string{0: "empty", 100_000: "holding-100k"}[preload], func(b *testing.B) {
			benchWrite(b, preload)
		})
	}
}

func benchWrite(b *testing.B, preload int) {
	ctx := context.Background()
	sw := softswitch.New(softswitch.Config{})
	defer sw.Close()
	srv := server.New(sw, server.Options{DeviceID: 1})
	gs := grpc.NewServer()
	srv.Register(gs)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go gs.Serve(lis)
	defer func() { srv.Close(); gs.Stop() }()

	c, err := p4rt.Dial(ctx, lis.Addr().String(), p4rt.Options{DeviceID: 1, ElectionID: p4rt.ElectionID{Low: 1}, BatchSize: batch})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	if err := c.WaitPrimary(ctx); err != nil {
		b.Fatal(err)
	}
	s, err := p4.Schema()
	if err != nil {
		b.Fatal(err)
	}
	if err := c.SetPipeline(ctx, s.P4Info(), nil, 1); err != nil {
		b.Fatal(err)
	}
	next := uint64(1)
	routes := func(n int) []*p4v1.Update {
		ups := make([]*p4v1.Update, n)
		for i := range ups {
			var key [8]byte
			binary.BigEndian.PutUint64(key[:], next<<8|1)
			next++
			e, err := p4rt.NewTableEntry(s, p4.TableFIB64).Exact(p4.FieldDstKey, key[:]).
				Action(p4.ActionSetNexthopGroup, p4rt.Param(p4.ParamGroupID, next%64+1)).Build()
			if err != nil {
				b.Fatal(err)
			}
			ups[i] = p4rt.Insert(e)
		}
		return ups
	}
	if preload > 0 {
		if err := c.Write(ctx, routes(preload)...); err != nil {
			b.Fatal(err)
		}
	}
	// Build the requests before timing: the figure is the switch's, not the
	// builder's. Tables are finite (131,072 entries each), so the ops insert
	// 16 batches, delete them, and so on: every op is 1,000 updates.
	const rounds = 16
	inserts := make([][]*p4v1.Update, rounds)
	deletes := make([][]*p4v1.Update, rounds)
	for i := range inserts {
		inserts[i] = routes(batch)
		for _, u := range inserts[i] {
			deletes[i] = append(deletes[i], p4rt.Delete(u.Entity))
		}
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		ups := inserts[i%rounds]
		if (i/rounds)%2 == 1 {
			ups = deletes[i%rounds]
		}
		if err := c.Write(ctx, ups...); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "updates/s")
}
