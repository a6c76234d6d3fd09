package gnmi

import (
	"context"
	"errors"
	"slices"
	"testing"

	gpb "github.com/openconfig/gnmi/proto/gnmi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// FuzzParsePath: no input panics, and whatever parses prints to a string
// that parses back to the same path and prints the same again.
func FuzzParsePath(f *testing.F) {
	for _, s := range []string{
		"/", "/interfaces/interface[name=1]/state/counters/in-pkts",
		"/dmsc/probes/probe[target=/shop/cart][instance=0]/state/delay-ns",
		`/foo[name=[\\\]]`, `/a\/b[k\=x=v\]]/...`, "/a[k=*]/*/...", "a/b", "/a[b=c][d=e]", "/a[",
		"/x[y=\xff]", `/\`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParsePath(s)
		if err != nil {
			return
		}
		str := PathString(p)
		back, err := ParsePath(str)
		if err != nil {
			t.Fatalf("ParsePath(%q) = %v, but its PathString %q does not parse: %v", s, p, str, err)
		}
		if !proto.Equal(p, back) {
			t.Fatalf("round trip of %q through %q: %v != %v", s, str, back, p)
		}
		if again := PathString(back); again != str {
			t.Fatalf("PathString not stable: %q then %q", str, again)
		}
	})
}

// FuzzPatternSelection: for any pattern, the datastore's tree walk selects
// exactly the leaves that Match accepts one by one.
func FuzzPatternSelection(f *testing.F) {
	leaves := []string{
		"/interfaces/interface[name=1]/state/oper-status",
		"/interfaces/interface[name=1]/state/counters/in-pkts",
		"/interfaces/interface[name=2]/state/counters/in-pkts",
		"/dmsc/probes/probe[instance=0][target=/shop/cart]/state/delay-ns",
		"/dmsc/probes/probe[instance=7][target=/shop/cart]/state/delay-ns",
		"/dmsc/probes/probe[instance=0][target=/shop]/state/loss",
		"/dmsc/lsdb/state/nodes",
		"/dmsc/policies/policy[id=p1]/config",
		"/dmsc/policies/policy[id=p1]/state/applied",
		"/a/state/b/state/c",
	}
	s := newStore()
	for _, l := range leaves {
		p, err := ParsePath(l)
		if err != nil {
			f.Fatal(err)
		}
		if err := s.update(1, []Leaf{{Path: p, Value: int64(1)}}); err != nil {
			f.Fatal(err)
		}
	}
	for _, seed := range []string{"/", "/.../state", "/interfaces/interface/...", "/*/*/probe[target=*]", "/.../.../c",
		"/dmsc/probes/probe[instance=0]", "/interfaces/interface[name=1]", "/x"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, pat string) {
		p, err := ParsePath(pat)
		if err != nil {
			return
		}
		var got []string
		for _, l := range s.snapshot(p.GetElem()) {
			got = append(got, l.key)
		}
		var want []string
		for _, l := range leaves {
			if Match(p, mustPath(t, l)) {
				want = append(want, l)
			}
		}
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Fatalf("pattern %s: the store selects %q, Match selects %q", pat, got, want)
		}
	})
}

// FuzzRequests: Get, Set and subscription lists from any bytes a client
// could send never panic, and whatever Set lets through to the Setter is
// checked (paths valid, values decoded, wildcards only in deletes).
func FuzzRequests(f *testing.F) {
	seeds := []proto.Message{
		&gpb.GetRequest{Prefix: pp("/interfaces"), Path: []*gpb.Path{pp("/interface[name=*]/..."), pp("/*")}, Type: gpb.GetRequest_OPERATIONAL},
		&gpb.SetRequest{Delete: []*gpb.Path{pp("/dmsc/policies/policy[id=*]/config")},
			Replace: []*gpb.Update{{Path: PolicyConfigPath("p"), Val: jsonVal(`{"a":1}`)}}},
		&gpb.SubscriptionList{Subscription: []*gpb.Subscription{{Path: pp("/dmsc/..."), Mode: gpb.SubscriptionMode_SAMPLE, SampleInterval: 1e9}}},
	}
	for _, m := range seeds {
		b, err := proto.Marshal(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	setter := &checkingSetter{}
	tg, err := NewTarget(TargetOptions{Setter: setter})
	if err != nil {
		f.Fatal(err)
	}
	fill(f, tg)
	ctx := context.Background()
	f.Fuzz(func(t *testing.T, b []byte) {
		var get gpb.GetRequest
		if proto.Unmarshal(b, &get) == nil {
			tg.Get(ctx, &get)
		}
		var set gpb.SetRequest
		if proto.Unmarshal(b, &set) == nil {
			if _, err := tg.Set(ctx, &set); err == nil || status.Code(err) == codes.Aborted {
				if setter.bad != "" {
					t.Fatal(setter.bad)
				}
			}
		}
		var list gpb.SubscriptionList
		if proto.Unmarshal(b, &list) == nil {
			tg.newPlan(&list)
		}
	})
}

// checkingSetter accepts everything writable and records what it should
// never have been given.
type checkingSetter struct{ bad string }

func (s *checkingSetter) Writable(p *gpb.Path) bool {
	return len(p.GetElem()) > 0 && p.GetElem()[0].GetName() == "dmsc"
}

func (s *checkingSetter) Set(_ context.Context, ops []SetOp) error {
	s.bad = ""
	for _, o := range ops {
		switch {
		case ValidatePath(o.Path) != nil:
			s.bad = "invalid path " + PathString(o.Path)
		case o.Op != gpb.UpdateResult_DELETE && HasWildcards(o.Path):
			s.bad = "wildcards in " + o.Op.String() + " " + PathString(o.Path)
		case o.Op != gpb.UpdateResult_DELETE && o.Value == nil:
			s.bad = "no value for " + PathString(o.Path)
		}
	}
	if s.bad != "" {
		return errors.New(s.bad)
	}
	return nil
}

// FuzzParseRouteKey: what parses prints back (in lowercase) to a key that
// parses to the same route.
func FuzzParseRouteKey(f *testing.F) {
	f.Add("8d9001d3:1c42ddc0:00000000:00000000/64")
	f.Add("8D9001D3:00000000:00000000:00000000/32")
	f.Add("x/1")
	f.Fuzz(func(t *testing.T, s string) {
		k, n, err := ParseRouteKey(s)
		if err != nil {
			return
		}
		k2, n2, err := ParseRouteKey(RouteKey(k, n))
		if err != nil || k2 != k || n2 != n {
			t.Fatalf("%q → %v/%d → %q → %v/%d, %v", s, k, n, RouteKey(k, n), k2, n2, err)
		}
	})
}
