package bmv2tests

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"testing"
	"time"

	p4v1 "github.com/p4lang/p4runtime/go/p4/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/dmsc-mesh/dmsc/controller/fib"
	"github.com/dmsc-mesh/dmsc/p4"
	"github.com/dmsc-mesh/dmsc/p4rt/p4info"
	"github.com/dmsc-mesh/dmsc/spf"
)

// reader reads a switch the agent programs, over P4Runtime, without
// taking part in arbitration (a Read needs none): what the switch holds, as
// opposed to what the agent says it holds.
type reader struct {
	name string
	rpc  p4v1.P4RuntimeClient
	s    *p4info.Schema
}

func newReader(t testing.TB, name, addr string) *reader {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	s, err := p4.Schema()
	if err != nil {
		t.Fatal(err)
	}
	return &reader{name: name, rpc: p4v1.NewP4RuntimeClient(conn), s: s}
}

func (r *reader) read(ctx context.Context, es ...*p4v1.Entity) ([]*p4v1.Entity, error) {
	stream, err := r.rpc.Read(ctx, &p4v1.ReadRequest{DeviceId: DeviceID, Entities: es})
	if err != nil {
		return nil, err
	}
	var out []*p4v1.Entity
	for {
		resp, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%s: read: %w", r.name, err)
		}
		out = append(out, resp.Entities...)
	}
}

// state is everything an agent writes: entries of every table, members
// and groups.
func (r *reader) state(ctx context.Context) ([]*p4v1.Entity, error) {
	return r.read(ctx,
		&p4v1.Entity{Entity: &p4v1.Entity_TableEntry{TableEntry: &p4v1.TableEntry{}}},
		&p4v1.Entity{Entity: &p4v1.Entity_ActionProfileMember{ActionProfileMember: &p4v1.ActionProfileMember{}}},
		&p4v1.Entity{Entity: &p4v1.Entity_ActionProfileGroup{ActionProfileGroup: &p4v1.ActionProfileGroup{}}})
}

// fib reads the switch's FIB back into routes, the way the agent reads it
// on a warm restart (controller/fib.Recover).
func (r *reader) fib(ctx context.Context) (fib.Routes, error) {
	es, err := r.state(ctx)
	if err != nil {
		return nil, err
	}
	p, err := fib.Recover(r.s, es)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", r.name, err)
	}
	return p.Routes(), nil
}

// entries returns the entries of one table.
func (r *reader) entries(ctx context.Context, table string) ([]*p4v1.TableEntry, error) {
	tb, err := r.s.Table(table)
	if err != nil {
		return nil, err
	}
	es, err := r.read(ctx, &p4v1.Entity{Entity: &p4v1.Entity_TableEntry{TableEntry: &p4v1.TableEntry{TableId: tb.Preamble.Id}}})
	if err != nil {
		return nil, err
	}
	out := make([]*p4v1.TableEntry, 0, len(es))
	for _, e := range es {
		out = append(out, e.GetTableEntry())
	}
	return out, nil
}

// counter reads cells of an indexed counter.
func (r *reader) counter(ctx context.Context, name string, cells ...int64) (map[int64]int64, error) {
	c, err := r.s.Counter(name)
	if err != nil {
		return nil, err
	}
	var req []*p4v1.Entity
	for _, i := range cells {
		req = append(req, &p4v1.Entity{Entity: &p4v1.Entity_CounterEntry{CounterEntry: &p4v1.CounterEntry{CounterId: c.Preamble.Id, Index: &p4v1.Index{Index: i}}}})
	}
	es, err := r.read(ctx, req...)
	if err != nil {
		return nil, err
	}
	out := map[int64]int64{}
	for _, e := range es {
		ce := e.GetCounterEntry()
		out[ce.GetIndex().GetIndex()] = ce.GetData().GetPacketCount()
	}
	return out, nil
}

// normalRoutes sorts every route's hops, so that two Routes compare with
// fmt or reflect.
func normalRoutes(rs fib.Routes) fib.Routes {
	out := fib.Routes{}
	for p, r := range rs {
		r.Hops = slices.Clone(r.Hops)
		for i := range r.Hops {
			r.Hops[i].Weight = max(r.Hops[i].Weight, 1)
		}
		slices.SortFunc(r.Hops, func(a, b fib.Hop) int {
			return cmp.Or(cmp.Compare(a.Port, b.Port), cmp.Compare(a.DMAC, b.DMAC), cmp.Compare(a.Instance, b.Instance))
		})
		out[p] = r
	}
	return out
}

// diffRoutesText lists what differs between two FIBs, one prefix a line.
func diffRoutesText(want, got fib.Routes) []string {
	want, got = normalRoutes(want), normalRoutes(got)
	var out []string
	for p, w := range want {
		g, ok := got[p]
		switch {
		case !ok:
			out = append(out, fmt.Sprintf("%v: missing on the switch (agent: %v %v)", p, w.Kind, w.Hops))
		case fmt.Sprint(g) != fmt.Sprint(w):
			out = append(out, fmt.Sprintf("%v: switch %v %v, agent %v %v", p, g.Kind, g.Hops, w.Kind, w.Hops))
		}
	}
	for p, g := range got {
		if _, ok := want[p]; !ok {
			out = append(out, fmt.Sprintf("%v: on the switch only (%v %v)", p, g.Kind, g.Hops))
		}
	}
	slices.Sort(out)
	return out
}

func prefixOf(k [16]byte, n int) spf.Prefix {
	var m [16]byte
	copy(m[:n/8], k[:n/8])
	return spf.Prefix{Key: m, Len: uint8(n)}
}

// eventually retries cond every 20 ms until it holds or timeout passes.
func eventually(t testing.TB, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not after %v: %v", what, timeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// fibTableFor names the FIB table of a prefix length.
func fibTableFor(n uint8) string {
	for _, f := range p4.FIBTables {
		if f.PrefixLen == int(n) {
			return f.Name
		}
	}
	return ""
}

// directCounterOf is the read request for the direct counter of the FIB
// entry of p.
func (r *reader) directCounterOf(p spf.Prefix) (*p4v1.Entity, error) {
	tb, err := r.s.Table(fibTableFor(p.Len))
	if err != nil {
		return nil, err
	}
	f, err := tb.Field(p4.FieldDstKey)
	if err != nil {
		return nil, err
	}
	return &p4v1.Entity{Entity: &p4v1.Entity_DirectCounterEntry{DirectCounterEntry: &p4v1.DirectCounterEntry{
		TableEntry: &p4v1.TableEntry{TableId: tb.Preamble.Id, Match: []*p4v1.FieldMatch{{
			FieldId:        f.Id,
			FieldMatchType: &p4v1.FieldMatch_Exact_{Exact: &p4v1.FieldMatch_Exact{Value: p4info.Canonical(p.Key[:p.Len/8])}},
		}}},
	}}}, nil
}
