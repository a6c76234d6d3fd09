package gnmi_test

import (
	"context"
	"fmt"
	"net"
	"time"

	"github.com/dmsc-mesh/dmsc/gnmi"
	gpb "github.com/openconfig/gnmi/proto/gnmi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// policies is a minimal Setter: it takes policy configs and publishes them.
type policies struct{ t *gnmi.Target }

func (p *policies) Writable(path *gpb.Path) bool { return gnmi.Match(gnmi.PolicyConfigPattern(), path) }

func (p *policies) Set(_ context.Context, ops []gnmi.SetOp) error {
	for _, o := range ops { // validate everything first: all or nothing
		if _, ok := o.Value.(gnmi.JSON); o.Op != gpb.UpdateResult_DELETE && !ok {
			return status.Errorf(codes.InvalidArgument, "%s: a policy is a JSON object", gnmi.PathString(o.Path))
		}
	}
	for _, o := range ops {
		if o.Op == gpb.UpdateResult_DELETE {
			p.t.Delete(time.Time{}, o.Path)
			continue
		}
		p.t.Update(time.Time{}, gnmi.Leaf{Path: o.Path, Value: o.Value})
	}
	return nil
}

func Example() {
	p := &policies{}
	t, err := gnmi.NewTarget(gnmi.TargetOptions{Name: "sg1", Setter: p})
	if err != nil {
		panic(err)
	}
	p.t = t
	defer t.Close()
	// An agent publishes what it reads from its switch, at each read; only
	// changes reach ON_CHANGE subscribers.
	now := time.Unix(1_700_000_000, 0)
	t.Update(now,
		gnmi.Leaf{Path: gnmi.InterfaceOperStatusPath(1), Value: gnmi.OperUp},
		gnmi.Leaf{Path: gnmi.InterfaceCounterPath(1, gnmi.InPkts), Value: uint64(42)},
		gnmi.Leaf{Path: gnmi.ProbeStatePath("/shop/cart", 0, gnmi.ProbeDelayNs), Value: uint64(180_000)},
	)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	go t.Serve(lis) // ends at t.Close

	// SCSC's side: set a policy, read the tree back.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := gnmi.Dial(ctx, lis.Addr().String(), nil) // nil: no TLS, local use only
	if err != nil {
		panic(err)
	}
	defer c.Close()
	if _, err := c.Set(ctx, gnmi.ReplaceOp(gnmi.PolicyConfigPath("p1"), gnmi.JSON(`{"weights": {"7": 3}}`))); err != nil {
		panic(err)
	}
	_, err = c.Set(ctx, gnmi.ReplaceOp(gnmi.InterfaceOperStatusPath(1), "DOWN"))
	fmt.Println("set oper-status:", status.Code(err))
	readings, err := c.Get(ctx, gnmi.InterfacesRoot, gnmi.PoliciesRoot)
	if err != nil {
		panic(err)
	}
	for _, r := range readings {
		fmt.Println(gnmi.PathString(r.Path), gnmi.FormatValue(r.Value))
	}
	// Output:
	// set oper-status: PermissionDenied
	// /interfaces/interface[name=1]/state/counters/in-pkts 42
	// /interfaces/interface[name=1]/state/oper-status UP
	// /dmsc/policies/policy[id=p1]/config {"weights":{"7":3}}
}
