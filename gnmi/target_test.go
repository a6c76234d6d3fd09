package gnmi

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dmsc-mesh/dmsc/wire"
	gpb "github.com/openconfig/gnmi/proto/gnmi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestNewTargetOptions(t *testing.T) {
	for _, o := range []TargetOptions{
		{Encodings: []gpb.Encoding{gpb.Encoding_ASCII}},
		{Encodings: []gpb.Encoding{}},
		{MinSampleInterval: -time.Second},
		{Models: []*gpb.ModelData{{Version: "1"}}},
	} {
		if _, err := NewTarget(o); err == nil {
			t.Errorf("NewTarget(%+v) accepted", o)
		}
	}
}

func TestCapabilities(t *testing.T) {
	_, c := serveAndDial(t, TargetOptions{Encodings: []gpb.Encoding{gpb.Encoding_PROTO, gpb.Encoding_JSON_IETF}})
	resp, err := c.Capabilities(ctxTimeout(t, 5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetGNMIVersion() == "" || !strings.HasPrefix(resp.GetGNMIVersion(), "0.") {
		t.Errorf("gNMI version %q", resp.GetGNMIVersion())
	}
	if !slices.Equal(resp.GetSupportedEncodings(), []gpb.Encoding{gpb.Encoding_PROTO, gpb.Encoding_JSON_IETF}) {
		t.Errorf("encodings %v", resp.GetSupportedEncodings())
	}
	var names []string
	for _, m := range resp.GetSupportedModels() {
		names = append(names, m.GetName()+"@"+m.GetVersion())
	}
	if !slices.Contains(names, "dmsc@"+SchemaVersion) || !slices.ContainsFunc(names, func(s string) bool { return strings.HasPrefix(s, "openconfig-interfaces@") }) {
		t.Errorf("models %v", names)
	}
}

func TestGet(t *testing.T) {
	tg, c := serveAndDial(t, TargetOptions{Name: "sg1"})
	fill(t, tg)
	type notif []string
	tests := []struct {
		name     string
		prefix   string
		paths    []string
		typ      gpb.GetRequest_DataType
		enc      gpb.Encoding
		target   string
		useModel string
		want     []notif
		code     codes.Code
		msg      string
	}{
		{name: "leaf", paths: []string{"/interfaces/interface[name=1]/state/counters/in-pkts"},
			want: []notif{{"/interfaces/interface[name=1]/state/counters/in-pkts=10"}}},
		{name: "subtree", paths: []string{"/interfaces/interface[name=1]"},
			want: []notif{{
				"/interfaces/interface[name=1]/state/counters/in-pkts=10",
				"/interfaces/interface[name=1]/state/counters/out-pkts=20",
				"/interfaces/interface[name=1]/state/oper-status=UP",
			}}},
		{name: "key wildcard", paths: []string{"/interfaces/interface[name=*]/state/oper-status"},
			want: []notif{{"/interfaces/interface[name=1]/state/oper-status=UP", "/interfaces/interface[name=2]/state/oper-status=DOWN"}}},
		{name: "keys left out", paths: []string{"/interfaces/interface/state/counters/in-pkts"},
			want: []notif{{"/interfaces/interface[name=1]/state/counters/in-pkts=10", "/interfaces/interface[name=2]/state/counters/in-pkts=5"}}},
		{name: "one of two keys", paths: []string{"/dmsc/probes/probe[instance=7]"},
			want: []notif{{"/dmsc/probes/probe[instance=7][target=/shop/cart]/state/loss=0.25"}}},
		{name: "elem wildcard", paths: []string{"/*/*/*/state/oper-status"}, code: codes.NotFound},
		{name: "elem wildcards", paths: []string{"/interfaces/*/*/oper-status"},
			want: []notif{{"/interfaces/interface[name=1]/state/oper-status=UP", "/interfaces/interface[name=2]/state/oper-status=DOWN"}}},
		{name: "any depth", paths: []string{"/.../loss"},
			want: []notif{{"/dmsc/probes/probe[instance=7][target=/shop/cart]/state/loss=0.25"}}},
		{name: "any depth inside", paths: []string{"/dmsc/.../applied"},
			want: []notif{{"/dmsc/policies/policy[id=p1]/state/applied=true"}}},
		{name: "prefix", prefix: "/dmsc/probes/probe[target=/shop/cart]", paths: []string{"/state/delay-ns", "/state/loss"},
			want: []notif{
				{"/dmsc/probes/probe[instance=0][target=/shop/cart]/state/delay-ns=1500"},
				{"/dmsc/probes/probe[instance=7][target=/shop/cart]/state/loss=0.25"},
			}},
		{name: "prefix alone", prefix: "/dmsc/policies/policy[id=p1]/state",
			want: []notif{{"/dmsc/policies/policy[id=p1]/state/applied=true"}}},
		{name: "config", paths: []string{"/dmsc", "/test"}, typ: gpb.GetRequest_CONFIG,
			want: []notif{{`/dmsc/policies/policy[id=p1]/config={"target":"/shop/cart"}`}, {"/test/thing[id=a]/config/name=x"}}},
		{name: "state", paths: []string{"/test"}, typ: gpb.GetRequest_STATE,
			want: []notif{{"/test/thing[id=a]/state/blob=0x0102", "/test/thing[id=a]/state/count=-3", "/test/thing[id=a]/state/name=x"}}},
		{name: "operational leaves out applied config", paths: []string{"/test"}, typ: gpb.GetRequest_OPERATIONAL,
			want: []notif{{"/test/thing[id=a]/state/blob=0x0102", "/test/thing[id=a]/state/count=-3"}}},
		{name: "filtered to nothing", paths: []string{"/interfaces"}, typ: gpb.GetRequest_CONFIG, want: []notif{{}}},
		{name: "root", paths: []string{"/"}, typ: gpb.GetRequest_CONFIG,
			want: []notif{{`/dmsc/policies/policy[id=p1]/config={"target":"/shop/cart"}`, "/test/thing[id=a]/config/name=x"}}},
		{name: "json_ietf", paths: []string{"/interfaces/interface[name=2]", "/test/thing/state/count", "/dmsc/policies/policy/config"}, enc: gpb.Encoding_JSON_IETF,
			want: []notif{
				{`/interfaces/interface[name=2]/state/counters/in-pkts="5"`, `/interfaces/interface[name=2]/state/oper-status="DOWN"`},
				{`/test/thing[id=a]/state/count="-3"`},
				{`/dmsc/policies/policy[id=p1]/config={"target":"/shop/cart"}`},
			}},
		{name: "json", paths: []string{"/interfaces/interface[name=2]/state/counters", "/test/thing/state/blob"}, enc: gpb.Encoding_JSON,
			want: []notif{{`/interfaces/interface[name=2]/state/counters/in-pkts=5`}, {`/test/thing[id=a]/state/blob="AQI="`}}},
		{name: "target reflected", target: "sg1", paths: []string{"/dmsc/lsdb", "/interfaces/interface[name=2]/state/oper-status"}, code: codes.NotFound, msg: "/dmsc/lsdb"},
		{name: "other target", target: "sg2", paths: []string{"/interfaces"}, code: codes.NotFound, msg: `"sg2"`},
		{name: "not found", paths: []string{"/interfaces", "/interfaces/interface[name=3]"}, code: codes.NotFound, msg: "interface[name=3]"},
		{name: "not found below a leaf", paths: []string{"/interfaces/interface[name=1]/state/oper-status/x"}, code: codes.NotFound},
		{name: "bad encoding", paths: []string{"/interfaces"}, enc: gpb.Encoding_ASCII, code: codes.Unimplemented, msg: "ASCII"},
		{name: "unknown type", paths: []string{"/interfaces"}, typ: 9, code: codes.InvalidArgument},
		{name: "unknown model", paths: []string{"/interfaces"}, useModel: "openconfig-bgp", code: codes.InvalidArgument, msg: "openconfig-bgp"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req := &gpb.GetRequest{Type: tc.typ, Encoding: tc.enc}
			if tc.enc == 0 && tc.name != "json" {
				req.Encoding = gpb.Encoding_PROTO
			}
			if tc.prefix != "" {
				req.Prefix = mustPath(t, tc.prefix)
			}
			if tc.target != "" {
				if req.Prefix == nil {
					req.Prefix = &gpb.Path{}
				}
				req.Prefix.Target = tc.target
			}
			if tc.useModel != "" {
				req.UseModels = []*gpb.ModelData{{Name: tc.useModel}}
			}
			for _, p := range tc.paths {
				req.Path = append(req.Path, mustPath(t, p))
			}
			resp, err := c.Raw().Get(ctxTimeout(t, 5*time.Second), req)
			if tc.code != codes.OK {
				wantCode(t, err, tc.code)
				if !strings.Contains(status.Convert(err).Message(), tc.msg) {
					t.Errorf("message %q does not name %q", status.Convert(err).Message(), tc.msg)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(resp.GetNotification()) != len(tc.want) {
				t.Fatalf("%d notifications, want %d: %v", len(resp.GetNotification()), len(tc.want), resp)
			}
			for i, n := range resp.GetNotification() {
				if n.GetTimestamp() != fixedNow.UnixNano() {
					t.Errorf("notification %d timestamp %d, want the clock's %d", i, n.GetTimestamp(), fixedNow.UnixNano())
				}
				if n.GetPrefix().GetTarget() != tc.target {
					t.Errorf("prefix target %q, want %q", n.GetPrefix().GetTarget(), tc.target)
				}
				if got := notifLines(t, n); !slices.Equal(got, tc.want[i]) && !(len(got) == 0 && len(tc.want[i]) == 0) {
					t.Errorf("notification %d:\n got %q\nwant %q", i, got, tc.want[i])
				}
			}
		})
	}
}

func TestGetTargetReflected(t *testing.T) {
	tg, c := serveAndDial(t, TargetOptions{Name: "sg1"})
	fill(t, tg)
	resp, err := c.Raw().Get(ctxTimeout(t, 5*time.Second), &gpb.GetRequest{
		Prefix: &gpb.Path{Target: "sg1"}, Path: []*gpb.Path{InterfaceOperStatusPath(1)}, Encoding: gpb.Encoding_PROTO})
	if err != nil {
		t.Fatal(err)
	}
	if n := resp.GetNotification()[0]; n.GetPrefix().GetTarget() != "sg1" || len(n.GetUpdate()) != 1 {
		t.Fatalf("notification %v", n)
	}
}

func TestGetBadPaths(t *testing.T) {
	tg, c := serveAndDial(t, TargetOptions{})
	fill(t, tg)
	for name, req := range map[string]*gpb.GetRequest{
		"deprecated element":   {Path: []*gpb.Path{{Element: []string{"interfaces"}}}},
		"empty name":           {Path: []*gpb.Path{{Elem: []*gpb.PathElem{{Name: "interfaces"}, {Name: ""}}}}},
		"empty key":            {Path: []*gpb.Path{{Elem: []*gpb.PathElem{{Name: "interface", Key: map[string]string{"": "1"}}}}}},
		"origin twice":         {Prefix: &gpb.Path{Origin: "openconfig"}, Path: []*gpb.Path{{Origin: "openconfig", Elem: []*gpb.PathElem{{Name: "interfaces"}}}}},
		"unknown origin":       {Path: []*gpb.Path{{Origin: "cli", Elem: []*gpb.PathElem{{Name: "interfaces"}}}}},
		"bad prefix":           {Prefix: &gpb.Path{Elem: []*gpb.PathElem{{Name: ""}}}, Path: []*gpb.Path{{}}},
		"too long when joined": {Prefix: mustPath(t, "/"+strings.Repeat("a/", 20)+"a"), Path: []*gpb.Path{mustPath(t, "/"+strings.Repeat("b/", 20)+"b")}},
	} {
		_, err := c.Raw().Get(ctxTimeout(t, 5*time.Second), req)
		if status.Code(err) != codes.InvalidArgument {
			t.Errorf("%s: error %v, want INVALID_ARGUMENT", name, err)
		}
	}
	// The openconfig origin is the default one and is accepted.
	_, err := c.Raw().Get(ctxTimeout(t, 5*time.Second), &gpb.GetRequest{Path: []*gpb.Path{{Origin: "openconfig", Elem: []*gpb.PathElem{{Name: "interfaces"}}}}})
	if err != nil {
		t.Errorf("origin openconfig: %v", err)
	}
}

func TestClientGet(t *testing.T) {
	tg, c := serveAndDial(t, TargetOptions{})
	fill(t, tg)
	rs, err := c.Get(ctxTimeout(t, 5*time.Second), "/interfaces/interface[name=2]", "/dmsc/policies")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		`/dmsc/policies/policy[id=p1]/config={"target":"/shop/cart"}`,
		"/dmsc/policies/policy[id=p1]/state/applied=true",
		"/interfaces/interface[name=2]/state/counters/in-pkts=5",
		"/interfaces/interface[name=2]/state/oper-status=DOWN",
	}
	if got := lines(rs); !slices.Equal(got, want) {
		t.Fatalf("got %q\nwant %q", got, want)
	}
	for _, r := range rs {
		if !r.Time.Equal(fixedNow) {
			t.Errorf("%s: time %v", PathString(r.Path), r.Time)
		}
		if PathString(r.Path) == "/interfaces/interface[name=2]/state/counters/in-pkts" {
			if _, ok := r.Value.(uint64); !ok {
				t.Errorf("in-pkts decoded as %T, want uint64", r.Value)
			}
		}
	}
	if _, err := c.Get(ctxTimeout(t, 5*time.Second), "/a["); err == nil {
		t.Error("a bad path string was sent")
	}
	_, err = c.Get(ctxTimeout(t, 5*time.Second), "/nothing/here")
	wantCode(t, err, codes.NotFound)
}

func TestUpdateAndDelete(t *testing.T) {
	tg, err := NewTarget(TargetOptions{Now: func() time.Time { return fixedNow }})
	if err != nil {
		t.Fatal(err)
	}
	defer tg.Close()
	fill(t, tg)
	bad := []Leaf{
		{nil, int64(1)},
		{mustPath(t, "/"), int64(1)},
		{mustPath(t, "/a[k=*]/b"), int64(1)},
		{mustPath(t, "/a/b"), struct{}{}},
		{mustPath(t, "/a/c"), nil},
		{mustPath(t, "/a/d"), JSON("{bad")},
		{mustPath(t, "/a/e"), "\xff"},
		{mustPath(t, "/interfaces"), int64(1)}, // a container
		{mustPath(t, "/interfaces/interface[name=1]/state/oper-status/x"), int64(1)}, // below a leaf
		{mustPath(t, "/interfaces/interface[port=9]/state/oper-status"), "UP"},       // other key names
		{mustPath(t, "/a/f"), 1.0 / zero()},
	}
	good := Leaf{mustPath(t, "/a/ok"), int8(-1)}
	err = tg.Update(time.Time{}, append(bad, good)...)
	if err == nil {
		t.Fatal("bad leaves were accepted")
	}
	for i := range bad {
		if !strings.Contains(err.Error(), "leaf ") {
			t.Errorf("error does not name leaf %d: %v", i, err)
		}
	}
	if n := strings.Count(err.Error(), "\n") + 1; n != len(bad) {
		t.Errorf("%d errors for %d bad leaves: %v", n, len(bad), err)
	}
	rs := tg.Snapshot(mustPath(t, "/a"))
	if got := lines(rs); !slices.Equal(got, []string{"/a/ok=-1"}) || !rs[0].Time.Equal(fixedNow) {
		t.Fatalf("after a partly bad update /a holds %q at %v", got, rs[0].Time)
	}
	if got := lines(tg.Snapshot(mustPath(t, "/interfaces/interface[port=9]"))); len(got) != 0 {
		t.Fatalf("a refused leaf left %q", got)
	}

	// Delete with a wildcard removes the subtrees and prunes empty parents.
	if err := tg.Delete(time.Time{}, mustPath(t, "/interfaces/interface[name=*]/state/counters"), mustPath(t, "/test")); err != nil {
		t.Fatal(err)
	}
	if got := lines(tg.Snapshot(mustPath(t, "/interfaces"))); !slices.Equal(got, []string{
		"/interfaces/interface[name=1]/state/oper-status=UP", "/interfaces/interface[name=2]/state/oper-status=DOWN"}) {
		t.Fatalf("after delete: %q", got)
	}
	if n := emptyContainers(&tg.store.root); n > 0 {
		t.Fatalf("%d empty containers were not pruned", n)
	}
	// Deleting everything, then publishing again, works.
	if err := tg.Delete(time.Time{}, mustPath(t, "/")); err != nil {
		t.Fatal(err)
	}
	if n := len(tg.Snapshot(mustPath(t, "/"))); n != 0 || tg.store.count != 0 {
		t.Fatalf("%d leaves (count %d) after deleting the root", n, tg.store.count)
	}
	fill(t, tg)
	if n := len(tg.Snapshot(mustPath(t, "/"))); n != len(testLeaves(t)) || tg.store.count != n {
		t.Fatalf("%d leaves (count %d) after refilling, want %d", n, tg.store.count, len(testLeaves(t)))
	}
	if err := tg.Delete(time.Time{}, &gpb.Path{Element: []string{"x"}}); err == nil {
		t.Fatal("a bad delete path was accepted")
	}
}

func zero() float64 { return 0 }

// recordingSetter is an all-or-nothing Setter over a map, like an agent's:
// it validates every op first, then applies them and publishes the result.
type recordingSetter struct {
	tg       *Target
	writable *gpb.Path
	mu       sync.Mutex
	calls    [][]SetOp
	config   map[string]any
	failOn   string // a value that makes the whole transaction fail
	failWith error
}

func (s *recordingSetter) Writable(p *gpb.Path) bool { return Match(s.writable, p) }

func (s *recordingSetter) Set(_ context.Context, ops []SetOp) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = append(s.calls, ops)
	for _, o := range ops {
		if j, ok := o.Value.(JSON); ok && strings.Contains(string(j), s.failOn) && s.failOn != "" {
			return s.failWith
		}
	}
	next := map[string]any{}
	for k, v := range s.config {
		next[k] = v
	}
	for _, o := range ops {
		switch o.Op {
		case gpb.UpdateResult_DELETE:
			for k := range next {
				if Match(o.Path, pp(k)) {
					delete(next, k)
				}
			}
		default:
			next[PathString(o.Path)] = o.Value
		}
	}
	var gone []*gpb.Path
	for k := range s.config {
		if _, ok := next[k]; !ok {
			gone = append(gone, pp(k))
		}
	}
	var leaves []Leaf
	for k, v := range next {
		leaves = append(leaves, Leaf{pp(k), v})
	}
	s.config = next
	if err := s.tg.Delete(time.Time{}, gone...); err != nil {
		return err
	}
	return s.tg.Update(time.Time{}, leaves...)
}

func TestSet(t *testing.T) {
	setter := &recordingSetter{writable: PolicyConfigPattern(), config: map[string]any{}}
	tg, c := serveAndDial(t, TargetOptions{Setter: setter})
	setter.tg = tg
	fill(t, tg)
	ctx := ctxTimeout(t, 10*time.Second)
	getConfig := func() []string {
		t.Helper()
		rs, err := c.Get(ctx, "/dmsc/policies/policy/config")
		if status.Code(err) == codes.NotFound {
			return nil
		}
		if err != nil {
			t.Fatal(err)
		}
		return lines(rs)
	}

	// Replace two policies; the fixture's p1 was published by the agent
	// itself, not set, and stays.
	resp, err := c.Set(ctx, ReplaceOp(PolicyConfigPath("p2"), JSON(`{"w":2}`)), ReplaceOp(PolicyConfigPath("p3"), JSON(`{"w":3}`)))
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetTimestamp() != fixedNow.UnixNano() || len(resp.GetResponse()) != 2 || resp.GetResponse()[1].GetOp() != gpb.UpdateResult_REPLACE ||
		PathString(resp.GetResponse()[1].GetPath()) != "/dmsc/policies/policy[id=p3]/config" {
		t.Fatalf("response %v", resp)
	}
	want := []string{`/dmsc/policies/policy[id=p1]/config={"target":"/shop/cart"}`, `/dmsc/policies/policy[id=p2]/config={"w":2}`, `/dmsc/policies/policy[id=p3]/config={"w":3}`}
	if got := getConfig(); !slices.Equal(got, want) {
		t.Fatalf("after set: %q", got)
	}

	// The spec order, whatever the order of the request's fields: the
	// request lists updates first, then a replace, then deletes.
	req := &gpb.SetRequest{
		Prefix:  mustPath(t, "/dmsc/policies"),
		Update:  []*gpb.Update{{Path: mustPath(t, "/policy[id=p4]/config"), Val: &gpb.TypedValue{Value: &gpb.TypedValue_JsonIetfVal{JsonIetfVal: []byte(`{"w":4}`)}}}},
		Replace: []*gpb.Update{{Path: mustPath(t, "/policy[id=p2]/config"), Val: &gpb.TypedValue{Value: &gpb.TypedValue_JsonVal{JsonVal: []byte(`{"w":22}`)}}}},
		Delete:  []*gpb.Path{mustPath(t, "/policy[id=p3]/config"), mustPath(t, "/policy[id=p9]/config")},
	}
	resp, err = c.Raw().Set(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	last := setter.calls[len(setter.calls)-1]
	var order []string
	for _, o := range last {
		order = append(order, o.Op.String()+" "+PathString(o.Path))
	}
	wantOrder := []string{
		"DELETE /dmsc/policies/policy[id=p3]/config", "DELETE /dmsc/policies/policy[id=p9]/config",
		"REPLACE /dmsc/policies/policy[id=p2]/config", "UPDATE /dmsc/policies/policy[id=p4]/config",
	}
	if !slices.Equal(order, wantOrder) {
		t.Fatalf("ops %q, want %q", order, wantOrder)
	}
	var results []string
	for _, r := range resp.GetResponse() {
		results = append(results, r.GetOp().String()+" "+PathString(r.GetPath()))
	}
	if !slices.Equal(results, []string{"DELETE /policy[id=p3]/config", "DELETE /policy[id=p9]/config", "REPLACE /policy[id=p2]/config", "UPDATE /policy[id=p4]/config"}) ||
		PathString(resp.GetPrefix()) != "/dmsc/policies" {
		t.Fatalf("results %q under prefix %s", results, PathString(resp.GetPrefix()))
	}
	want = []string{`/dmsc/policies/policy[id=p1]/config={"target":"/shop/cart"}`, `/dmsc/policies/policy[id=p2]/config={"w":22}`, `/dmsc/policies/policy[id=p4]/config={"w":4}`}
	if got := getConfig(); !slices.Equal(got, want) {
		t.Fatalf("after the second set: %q", got)
	}

	// Refusals: the Setter is not called, or its error keeps its code;
	// either way nothing changes.
	calls := len(setter.calls)
	bad := []struct {
		name    string
		req     *gpb.SetRequest
		code    codes.Code
		msg     string
		reaches bool // the Setter is called (and refuses)
	}{
		{"read-only path among good ops", &gpb.SetRequest{
			Replace: []*gpb.Update{
				{Path: PolicyConfigPath("p5"), Val: jsonVal(`{"w":5}`)},
				{Path: InterfaceCounterPath(1, InPkts), Val: &gpb.TypedValue{Value: &gpb.TypedValue_UintVal{UintVal: 0}}},
			}}, codes.PermissionDenied, "in-pkts", false},
		{"delete too wide", &gpb.SetRequest{Delete: []*gpb.Path{mustPath(t, "/dmsc/...")}}, codes.PermissionDenied, "not writable", false},
		{"wildcard replace", &gpb.SetRequest{Replace: []*gpb.Update{{Path: mustPath(t, "/dmsc/policies/policy[id=*]/config"), Val: jsonVal(`{}`)}}}, codes.InvalidArgument, "wildcards", false},
		{"bad JSON among good ops", &gpb.SetRequest{Update: []*gpb.Update{
			{Path: PolicyConfigPath("p5"), Val: jsonVal(`{"w":5}`)},
			{Path: PolicyConfigPath("p6"), Val: jsonVal(`{"w":`)},
		}}, codes.InvalidArgument, "UPDATE 2", false},
		{"no value", &gpb.SetRequest{Update: []*gpb.Update{{Path: PolicyConfigPath("p5")}}}, codes.InvalidArgument, "no value", false},
		{"ascii", &gpb.SetRequest{Update: []*gpb.Update{{Path: PolicyConfigPath("p5"), Val: &gpb.TypedValue{Value: &gpb.TypedValue_AsciiVal{AsciiVal: "x"}}}}}, codes.Unimplemented, "ASCII", false},
		{"proto bytes", &gpb.SetRequest{Update: []*gpb.Update{{Path: PolicyConfigPath("p5"), Val: &gpb.TypedValue{Value: &gpb.TypedValue_ProtoBytes{ProtoBytes: []byte{1}}}}}}, codes.Unimplemented, "protobuf", false},
		{"union_replace", &gpb.SetRequest{UnionReplace: []*gpb.Update{{Path: PolicyConfigPath("p5"), Val: jsonVal(`{}`)}}}, codes.Unimplemented, "union_replace", false},
		{"bad path", &gpb.SetRequest{Delete: []*gpb.Path{{Element: []string{"dmsc"}}}}, codes.InvalidArgument, "element", false},
		{"setter refuses a value", &gpb.SetRequest{
			Delete:  []*gpb.Path{PolicyConfigPath("p2")},
			Replace: []*gpb.Update{{Path: PolicyConfigPath("p7"), Val: jsonVal(`{"w":"invalid"}`)}},
		}, codes.InvalidArgument, "weight", true},
	}
	setter.failOn = "invalid"
	setter.failWith = status.Error(codes.InvalidArgument, "weight must be a number")
	for _, tc := range bad {
		_, err := c.Raw().Set(ctx, tc.req)
		wantCode(t, err, tc.code)
		if !strings.Contains(status.Convert(err).Message(), tc.msg) {
			t.Errorf("%s: message %q does not name %q", tc.name, status.Convert(err).Message(), tc.msg)
		}
		if tc.reaches {
			calls++
		}
		if len(setter.calls) != calls {
			t.Errorf("%s: the Setter was called %d times, want %d", tc.name, len(setter.calls), calls)
		}
		calls = len(setter.calls)
	}
	if got := getConfig(); !slices.Equal(got, want) {
		t.Fatalf("refused sets changed the config: %q", got)
	}

	// A plain error from the Setter is ABORTED.
	setter.failWith = errors.New("switch unreachable")
	_, err = c.Set(ctx, ReplaceOp(PolicyConfigPath("p8"), JSON(`{"invalid":1}`)))
	wantCode(t, err, codes.Aborted)
	if !strings.Contains(err.Error(), "switch unreachable") {
		t.Errorf("aborted error %v does not carry the cause", err)
	}
	// A different target name is refused when the target has a name: this
	// one has none, so any is accepted (see TestSetNamedTarget).
	if _, err := c.Raw().Set(ctx, &gpb.SetRequest{Prefix: &gpb.Path{Target: "elsewhere"}, Delete: []*gpb.Path{PolicyConfigPath("p1")}}); err != nil {
		t.Errorf("unnamed target, named request: %v", err)
	}

	// An empty SetRequest is no error and reaches no Setter.
	calls = len(setter.calls)
	if _, err := c.Raw().Set(ctx, &gpb.SetRequest{}); err != nil {
		t.Errorf("empty set: %v", err)
	}
	if len(setter.calls) != calls {
		t.Error("an empty Set reached the Setter")
	}
	// Client-side checks.
	if _, err := c.Set(ctx, SetOp{Op: gpb.UpdateResult_REPLACE}); err == nil {
		t.Error("an op without a path was sent")
	}
	if _, err := c.Set(ctx, ReplaceOp(PolicyConfigPath("x"), struct{}{})); err == nil {
		t.Error("a value of no gNMI type was sent")
	}
	if _, err := c.Set(ctx, SetOp{Op: gpb.UpdateResult_INVALID, Path: PolicyConfigPath("x"), Value: "v"}); err == nil {
		t.Error("an op of no kind was sent")
	}
}

func jsonVal(s string) *gpb.TypedValue {
	return &gpb.TypedValue{Value: &gpb.TypedValue_JsonIetfVal{JsonIetfVal: []byte(s)}}
}

func TestSetWithoutSetter(t *testing.T) {
	_, c := serveAndDial(t, TargetOptions{})
	_, err := c.Set(ctxTimeout(t, 5*time.Second), DeleteOp(PolicyConfigPath("p1")))
	wantCode(t, err, codes.Unimplemented)
}

func TestSetNamedTarget(t *testing.T) {
	setter := &recordingSetter{writable: PolicyConfigPattern(), config: map[string]any{}}
	tg, c := serveAndDial(t, TargetOptions{Name: "sg1", Setter: setter})
	setter.tg = tg
	ctx := ctxTimeout(t, 5*time.Second)
	_, err := c.Raw().Set(ctx, &gpb.SetRequest{Prefix: &gpb.Path{Target: "sg2"}, Delete: []*gpb.Path{PolicyConfigPath("p1")}})
	wantCode(t, err, codes.NotFound)
	resp, err := c.Raw().Set(ctx, &gpb.SetRequest{Prefix: &gpb.Path{Target: "sg1"}, Delete: []*gpb.Path{PolicyConfigPath("p1")}})
	if err != nil || resp.GetPrefix().GetTarget() != "sg1" {
		t.Fatalf("set on sg1: %v, %v", resp, err)
	}
}

func TestPathsAndRouteKeys(t *testing.T) {
	k := wireKey(t, "8d9001d3:1c42ddc0:00000000:00000007")
	for _, tc := range []struct {
		p    *gpb.Path
		want string
	}{
		{InterfaceOperStatusPath(3), "/interfaces/interface[name=3]/state/oper-status"},
		{InterfaceCounterPath(3, OutDiscards), "/interfaces/interface[name=3]/state/counters/out-discards"},
		{NeighborStatePath(2, NeighborCapacityBps), "/dmsc/neighbors/neighbor[port=2]/state/capacity-bps"},
		{ProbeStatePath("/shop/cart", 0, ProbeBandwidthBps), "/dmsc/probes/probe[instance=0][target=/shop/cart]/state/bandwidth-bps"},
		{LSDBStatePath(LSDBFragments), "/dmsc/lsdb/state/fragments"},
		{LSPStatePath("sr1", 2, LSPRemainingLifetime), "/dmsc/lsdb/lsp[fragment=2][origin=sr1]/state/remaining-lifetime"},
		{RouteStatePath(k, 64, RouteNextHops), "/dmsc/fib/route[prefix=8d9001d3:1c42ddc0:00000000:00000000/64]/state/next-hops"},
		{PolicyStatePath("p1", PolicyExpires), "/dmsc/policies/policy[id=p1]/state/expires"},
		{PolicyConfigPattern(), "/dmsc/policies/policy[id=*]/config"},
	} {
		if got := PathString(tc.p); got != tc.want {
			t.Errorf("got %s, want %s", got, tc.want)
		}
		if back := mustPath(t, tc.want); PathString(back) != tc.want {
			t.Errorf("%s does not round-trip", tc.want)
		}
	}
	if len(Counters()) != 6 {
		t.Errorf("Counters() = %v", Counters())
	}
	key, n, err := ParseRouteKey(RouteKey(k, 128))
	if err != nil || key != k || n != 128 {
		t.Fatalf("ParseRouteKey(RouteKey) = %v, %d, %v", key, n, err)
	}
	for _, s := range []string{"8d9001d3:1c42ddc0:00000000:00000007", "8d9001d3:1c42ddc0:00000000:00000007/64", "8d9001d3:1c42ddc0:00000000:00000000/63", "zz/32", "8d9001d3:1c42ddc0:00000000:00000000/x"} {
		if _, _, err := ParseRouteKey(s); err == nil {
			t.Errorf("ParseRouteKey(%q) accepted", s)
		}
	}
}

// pp parses a path known to be good (test tables and fakes).
func pp(s string) *gpb.Path {
	p, err := ParsePath(s)
	if err != nil {
		panic(err)
	}
	return p
}

func wireKey(t testing.TB, s string) wire.Key {
	k, err := wire.ParseKey(s)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// emptyContainers counts nodes below n that hold neither a value nor
// children: debris that delete must prune.
func emptyContainers(n *node) int {
	count := 0
	for _, list := range n.children {
		for _, c := range list {
			if c.value == nil && len(c.children) == 0 {
				count++
			}
			count += emptyContainers(c)
		}
	}
	return count
}
