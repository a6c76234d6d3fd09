package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/reflection"
	rpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	v1alphagrpc "google.golang.org/grpc/reflection/grpc_reflection_v1alpha" //nolint:staticcheck // old servers speak only v1alpha; the fallback is tested against it
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"

	echopb "github.com/dmsc-mesh/dmsc/api/echo"
	shoppb "github.com/dmsc-mesh/dmsc/api/shop"
	"github.com/dmsc-mesh/dmsc/controller"
	"github.com/dmsc-mesh/dmsc/examples"
	"github.com/dmsc-mesh/dmsc/examples/echo"
	"github.com/dmsc-mesh/dmsc/softswitch"
	"github.com/dmsc-mesh/dmsc/topo"
)

// cliFabric is the draft's Figure 2 in this process, with pod certificate
// files and UDP-tunnel pod ports for the CLI's --link.
type cliFabric struct {
	lab    *topo.Lab
	dir    string
	caFile string
}

func startCLIFabric(t *testing.T) *cliFabric {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Skip("UDP tunnels need Linux")
	}
	tp, err := topo.Parse(examples.Fig2)
	if err != nil {
		t.Fatal(err)
	}
	timers := controller.DefaultTimers()
	timers.Hello = 30 * time.Millisecond
	timers.Dead = 300 * time.Millisecond
	lab, err := topo.StartLab(context.Background(), tp, topo.LabOptions{
		Agents: topo.AgentOptions{Timers: timers},
		Probe:  controller.ProbeConfig{Interval: -1},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := lab.Close(); err != nil {
			t.Error(err)
		}
	})
	waitUntilErr(t, 10*time.Second, func() error {
		for _, n := range tp.NodeNames() {
			a, _ := lab.Fabric.Agent(n)
			s, err := a.Snapshot(context.Background())
			if err != nil {
				return err
			}
			if len(s.Routes) < len(tp.Nodes) || !s.Converged() {
				return fmt.Errorf("%s: %d routes, converged %v", n, len(s.Routes), s.Converged())
			}
		}
		return nil
	})
	cf := &cliFabric{lab: lab, dir: t.TempDir()}
	cf.caFile = filepath.Join(cf.dir, "ca.crt")
	if err := os.WriteFile(cf.caFile, lab.Domain.CA.CertPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	return cf
}

func waitUntilErr(t *testing.T, timeout time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %v", timeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// pod is a pod's flags: its link to an SG port and its certificate files.
type cliPod struct {
	link, cert, key string
}

// pod issues a certificate for prefix and opens a UDP-tunnel port num on
// node's switch (one of the topology's pod ports, so the agent treats it as
// one).
func (cf *cliFabric) pod(t *testing.T, node string, num uint16, prefix string) cliPod {
	t.Helper()
	is, err := cf.lab.Domain.IssuePod(prefix)
	if err != nil {
		t.Fatal(err)
	}
	base := filepath.Join(cf.dir, fmt.Sprintf("%s-%d", node, num))
	p := cliPod{cert: base + ".crt", key: base + ".key"}
	if err := os.WriteFile(p.cert, is.CertPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p.key, is.KeyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	// The pod's end: a free loopback port, reserved for a moment.
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	podAddr := pc.LocalAddr().String()
	pc.Close()
	port, err := softswitch.NewUDPPort("127.0.0.1:0", podAddr)
	if err != nil {
		t.Fatal(err)
	}
	if err := cf.lab.Fabric.Switches[node].SW.AddPort(num, port); err != nil {
		port.Close()
		t.Fatal(err)
	}
	p.link = "udp:" + podAddr + "," + port.LocalAddr().String()
	return p
}

func (cf *cliFabric) args(verb string, p cliPod, extra ...string) []string {
	return append([]string{"--log-level", "warn", "pod", verb, "--link", p.link,
		"--ca", cf.caFile, "--cert", p.cert, "--key", p.key}, extra...)
}

// runCLI runs dmsc with args and stdin; standard output and error apart.
func runCLI(ctx context.Context, stdin string, args ...string) (stdout, stderr string, err error) {
	var out, errOut bytes.Buffer
	cmd := newRootCommand()
	cmd.SetIn(strings.NewReader(stdin))
	cmd.SetOut(&out)
	cmd.SetErr(&errOut)
	cmd.SetArgs(args)
	err = cmd.ExecuteContext(ctx)
	return out.String(), errOut.String(), err
}

// served is a running `dmsc pod serve`.
type served struct {
	out, errOut syncBuffer
	cancel      context.CancelFunc
	done        chan error
	instance    string
	stopped     bool
	err         error
}

// serve starts `dmsc pod serve` and waits for its registration; the test's
// cleanup stops it if the test did not.
func serve(t *testing.T, args ...string) *served {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s := &served{cancel: cancel, done: make(chan error, 1)}
	go func() {
		cmd := newRootCommand()
		cmd.SetOut(&s.out)
		cmd.SetErr(&s.errOut)
		cmd.SetArgs(args)
		s.done <- cmd.ExecuteContext(ctx)
	}()
	t.Cleanup(func() { s.stop(t) })
	deadline := time.After(15 * time.Second)
	for s.instance == "" {
		for _, l := range strings.Split(s.out.String(), "\n") {
			if _, inst, ok := strings.Cut(l, " instance "); ok && strings.HasPrefix(l, "registered ") {
				s.instance = inst
			}
		}
		select {
		case err := <-s.done:
			s.stopped, s.err = true, err
			t.Fatalf("dmsc %s ended: %v\n%s%s", strings.Join(args, " "), err, s.out.String(), s.errOut.String())
		case <-deadline:
			t.Fatalf("dmsc %s did not register:\n%s%s", strings.Join(args, " "), s.out.String(), s.errOut.String())
		case <-time.After(10 * time.Millisecond):
		}
	}
	return s
}

// stop interrupts it (as SIGINT would) and returns its error.
func (s *served) stop(t *testing.T) error {
	t.Helper()
	if s.stopped {
		return s.err
	}
	s.stopped = true
	s.cancel()
	select {
	case s.err = <-s.done:
	case <-time.After(10 * time.Second):
		t.Errorf("dmsc pod serve did not stop:\n%s", s.out.String())
		s.err = errors.New("did not stop")
	}
	return s.err
}

// messages decodes stdout's JSON objects into fresh messages like proto.
func messages[M proto.Message](t *testing.T, stdout string, newM func() M) []M {
	t.Helper()
	var out []M
	dec := json.NewDecoder(strings.NewReader(stdout))
	for {
		var raw json.RawMessage
		if err := dec.Decode(&raw); errors.Is(err, io.EOF) {
			return out
		} else if err != nil {
			t.Fatalf("output is not JSON objects: %v\n%s", err, stdout)
		}
		m := newM()
		if err := protojson.Unmarshal(raw, m); err != nil {
			t.Fatalf("output %s: %v", raw, err)
		}
		out = append(out, m)
	}
}

// TestPodServeAndCall: pod serve at sg4 and pod call from sg1 across the
// fabric (sg1 sr1 sr3 sg4): unary, streaming both ways, --list and the
// errors; then the shop's chain, cart at sg2 calling catalog at sg3 and
// frontend at sg4 calling cart, called from sg1.
func TestPodServeAndCall(t *testing.T) {
	cf := startCLIFabric(t)
	ctx := context.Background()
	echoSrv := serve(t, cf.args("serve", cf.pod(t, "sg4", 10, "/echo"), "--service", "echo", "--prefix", "/echo")...)
	if !strings.Contains(echoSrv.out.String(), "serving dmsc.echo.v1.Echo on /echo: Echo, Repeat, Sum\n") {
		t.Errorf("serve does not say what it serves:\n%s", echoSrv.out.String())
	}
	caller := cf.pod(t, "sg1", 10, "/cli")
	call := func(stdin string, extra ...string) (string, string, error) {
		return runCLI(ctx, stdin, cf.args("call", caller, extra...)...)
	}

	// The first call waits for the fabric to learn /echo (its announcement
	// reaches sg1's FIB within milliseconds); it fails with "no route"
	// until then.
	var stdout, stderr string
	waitUntilErr(t, 10*time.Second, func() error {
		var err error
		stdout, stderr, err = call("", "/echo", "Echo", `{"message":"hi"}`)
		return err
	})
	replies := messages(t, stdout, func() *echopb.EchoReply { return new(echopb.EchoReply) })
	if len(replies) != 1 || replies[0].GetMessage() != "hi" || replies[0].GetServedBy() != echoSrv.instance ||
		replies[0].GetCaller() != "dmsc://dmsc.example/cli" {
		t.Errorf("echo answered %v, want hi from %s to dmsc://dmsc.example/cli", replies, echoSrv.instance)
	}
	if want := "dmsc.echo.v1.Echo/Echo: 1 message from dmsc://dmsc.example/echo (served_by " + echoSrv.instance + ") in "; !strings.Contains(stderr, want) {
		t.Errorf("summary %q, want it to contain %q", stderr, want)
	}

	// The method however it is named, and streaming both ways.
	for _, method := range []string{"Echo/Echo", "dmsc.echo.v1.Echo/Echo", "/dmsc.echo.v1.Echo/Echo", "dmsc.echo.v1.Echo.Echo", "v1.Echo/Echo"} {
		stdout, _, err := call("", "/echo", method, `{"message":"`+method+`"}`)
		if r := messages(t, stdout, func() *echopb.EchoReply { return new(echopb.EchoReply) }); err != nil || len(r) != 1 || r[0].GetMessage() != method {
			t.Errorf("call %s: %v %v", method, r, err)
		}
	}
	stdout, stderr, err := call("", "/echo", "Repeat", `{"message":"again","count":3,"interval_ms":5}`)
	replies = messages(t, stdout, func() *echopb.EchoReply { return new(echopb.EchoReply) })
	if err != nil || len(replies) != 3 || !strings.Contains(stderr, "3 messages from dmsc://dmsc.example/echo") {
		t.Errorf("repeat: %v %v\n%s", replies, err, stderr)
	}
	for _, r := range replies {
		if r.GetMessage() != "again" || r.GetServedBy() != echoSrv.instance {
			t.Errorf("repeat answered %v", r)
		}
	}
	want := sha256.Sum256([]byte("hello, world"))
	for _, tc := range []struct{ name, stdin, request string }{
		{"stdin", "{\"data\":\"aGVsbG8s\"}\n{\"data\":\"IHdvcmxk\"}\n", "-"},
		{"array", "", `[{"data":"aGVsbG8s"},{"data":"IHdvcmxk"}]`},
	} {
		stdout, _, err := call(tc.stdin, "/echo", "Sum", tc.request)
		d := messages(t, stdout, func() *echopb.Digest { return new(echopb.Digest) })
		if err != nil || len(d) != 1 || !bytes.Equal(d[0].GetSha256(), want[:]) || d[0].GetSize() != 12 {
			t.Errorf("sum from %s: %v %v", tc.name, d, err)
		}
	}

	stdout, _, err = call("", "--list", "/echo")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range []string{
		"dmsc.echo.v1.Echo\n",
		"  Echo(dmsc.echo.v1.EchoRequest) returns (dmsc.echo.v1.EchoReply)\n",
		"  Sum(stream dmsc.echo.v1.Chunk) returns (dmsc.echo.v1.Digest)\n",
		"  Repeat(dmsc.echo.v1.RepeatRequest) returns (stream dmsc.echo.v1.EchoReply)\n",
		"grpc.reflection.v1.ServerReflection\n",
	} {
		if !strings.Contains(stdout, line) {
			t.Errorf("--list lacks %q:\n%s", line, stdout)
		}
	}

	for _, tc := range []struct {
		name string
		args []string
		want []string
	}{
		{"unknown method", []string{"/echo", "Shout", "{}"}, []string{"/echo has no method Shout", "dmsc.echo.v1.Echo/Echo", "dmsc.echo.v1.Echo/Repeat"}},
		{"unknown service", []string{"/echo", "Cart/AddItem", "{}"}, []string{"/echo has no service Cart", "dmsc.echo.v1.Echo"}},
		{"unknown field", []string{"/echo", "Echo", `{"mesage":"hi"}`}, []string{"does not fit dmsc.echo.v1.EchoRequest", `unknown field "mesage"`}},
		{"wrong type", []string{"/echo", "Repeat", `{"count":"many"}`}, []string{"does not fit dmsc.echo.v1.RepeatRequest", "count"}},
		{"two messages to a unary method", []string{"/echo", "Echo", `[{},{}]`}, []string{"takes one dmsc.echo.v1.EchoRequest, got 2"}},
		{"gRPC status", []string{"/echo", "Repeat", `{"count":-1}`}, []string{"dmsc.echo.v1.Echo/Repeat: InvalidArgument: count -1"}},
		{"no route", []string{"/nothing/here", "Echo", "{}"}, []string{"no route to /nothing/here"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			stdout, _, err := call("", tc.args...)
			if err == nil {
				t.Fatalf("no error; output %s", stdout)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}

	// The shop: cart (sg2) prices at catalog (sg3); frontend (sg4) orders
	// through cart.
	catalog := serve(t, cf.args("serve", cf.pod(t, "sg3", 10, "/shop/catalog"), "--service", "catalog")...)
	cart := serve(t, cf.args("serve", cf.pod(t, "sg2", 10, "/shop/cart"), "--service", "cart")...)
	if !strings.Contains(cart.out.String(), "serving dmsc.shop.v1.Cart on /shop/cart: AddItem, GetCart (calls /shop/catalog)\n") {
		t.Errorf("cart's serve says:\n%s", cart.out.String())
	}
	var views []*shoppb.CartView
	waitUntilErr(t, 10*time.Second, func() error {
		stdout, _, err := call("", "/shop/cart", "AddItem", `{"user":"ada","sku":"book"}`)
		if err != nil {
			return err
		}
		views = messages(t, stdout, func() *shoppb.CartView { return new(shoppb.CartView) })
		return nil
	})
	if len(views) != 1 || views[0].GetTotalCents() != 19900 || views[0].GetServedBy() != cart.instance ||
		len(views[0].GetLines()) != 1 || views[0].GetLines()[0].GetItem().GetServedBy() != catalog.instance {
		t.Errorf("AddItem answered %v; want total 19900 from cart %s, priced by catalog %s", views, cart.instance, catalog.instance)
	}
	if _, _, err := call("", "/shop/cart", "AddItem", `{"user":"ada","sku":"unicorn"}`); err == nil ||
		!strings.Contains(err.Error(), `dmsc.shop.v1.Cart/AddItem: NotFound: catalog has no item "unicorn"`) {
		t.Errorf("an unknown sku through cart to catalog: %v", err)
	}
	frontend := serve(t, cf.args("serve", cf.pod(t, "sg4", 11, "/shop/frontend"), "--service", "frontend")...)
	var buys []*shoppb.BuyReply
	waitUntilErr(t, 10*time.Second, func() error {
		stdout, _, err := call("", "/shop/frontend", "dmsc.shop.v1.Frontend/Buy", `{"user":"bob","skus":["book","mug"]}`)
		if err != nil {
			return err
		}
		buys = messages(t, stdout, func() *shoppb.BuyReply { return new(shoppb.BuyReply) })
		return nil
	})
	if len(buys) != 1 || buys[0].GetServedBy() != frontend.instance || buys[0].GetCart().GetTotalCents() != 19900+1250 ||
		buys[0].GetCart().GetServedBy() != cart.instance {
		t.Errorf("Buy answered %v", buys)
	}

	// Stopped as by SIGINT, each serve withdraws and says so.
	for _, s := range []*served{frontend, cart, catalog, echoSrv} {
		if err := s.stop(t); err != nil {
			t.Errorf("serve ended with %v", err)
		}
		if !strings.Contains(s.out.String(), "withdrawn ") || !strings.Contains(s.out.String(), s.instance) {
			t.Errorf("serve did not report the withdrawal:\n%s", s.out.String())
		}
		// Its callers closed their connections (CONNECTION_CLOSE), so
		// nothing was left to drain.
		if strings.Contains(s.errOut.String(), "cutting them") {
			t.Errorf("serve had to cut calls at its end:\n%s", s.errOut.String())
		}
	}
}

// TestPodServeWaitsForWhatItCalls: a cart whose catalog never comes gives up
// after --timeout, naming the missing route.
func TestPodServeWaitsForWhatItCalls(t *testing.T) {
	cf := startCLIFabric(t)
	start := time.Now()
	_, _, err := runCLI(context.Background(), "", cf.args("serve", cf.pod(t, "sg3", 12, "/broken"), "--service", "cart",
		"--calls", "/shop/nowhere", "--timeout", "700ms")...)
	if err == nil || !strings.Contains(err.Error(), "calls /shop/nowhere") || !strings.Contains(err.Error(), "no route to /shop/nowhere") {
		t.Fatalf("cart without its catalog: %v", err)
	}
	if d := time.Since(start); d < 600*time.Millisecond || d > 5*time.Second {
		t.Errorf("gave up after %v, want about --timeout", d)
	}
}

// TestPodServeCallFlags: errors found before anything is opened.
func TestPodServeCallFlags(t *testing.T) {
	pod := []string{"--link", "udp:127.0.0.1:1,127.0.0.1:2", "--ca", "ca.crt", "--cert", "p.crt", "--key", "p.key"}
	with := func(verb string, extra ...string) []string {
		return append(append([]string{"pod", verb}, pod...), extra...)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"pod", "serve", "--ca", "ca.crt", "--cert", "p.crt", "--key", "p.key"}, "--link is required"},
		{with("serve", "--service", "web"), `--service "web": want one of cart, catalog, echo, frontend`},
		{with("serve", "--calls", "/shop/cart"), "--calls /shop/cart: the echo service calls no other service"},
		{with("serve", "--service", "cart", "--calls", "shop"), "--calls shop: "},
		{with("serve", "--timeout", "0s"), "--timeout"},
		{with("serve", "extra"), "unknown command"},
		{[]string{"pod", "call", "/echo", "Echo"}, "--link is required"},
		{with("call", "/echo"), "want SERVICE METHOD [REQUEST], got 1"},
		{with("call", "--list", "/echo", "Echo"), "--list takes just SERVICE"},
		{with("call", "echo", "Echo"), "SERVICE echo: "},
		{with("call", "/echo", "Echo/"), `METHOD "Echo/": no method name`},
		{with("call", "/echo", "9lives"), `METHOD "9lives": "9lives" is not a method name`},
		{with("call", "/echo", "a..b/Echo"), `"a..b" is not a service name`},
		{with("call", "/echo", "Echo", `{"message":`), "REQUEST: not JSON"},
		{with("call", "/echo", "Echo", ``), "REQUEST: no JSON message"},
		{with("call", "/echo", "Echo", "--timeout", "-1s"), "--timeout"},
		{with("call", "/echo", "Echo", "--ca", "/nonexistent/ca.crt"), "--ca /nonexistent/ca.crt"},
	} {
		_, _, err := runCLI(context.Background(), "", tc.args...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("dmsc %s: %v, want an error containing %q", strings.Join(tc.args, " "), err, tc.want)
		}
	}
}

func TestParseMethodSpec(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want methodSpec
		err  string
	}{
		{"Echo", methodSpec{Method: "Echo"}, ""},
		{" Echo ", methodSpec{Method: "Echo"}, ""},
		{"Echo/Echo", methodSpec{Service: "Echo", Method: "Echo"}, ""},
		{"dmsc.shop.v1.Frontend/Buy", methodSpec{Service: "dmsc.shop.v1.Frontend", Method: "Buy"}, ""},
		{"/dmsc.shop.v1.Frontend/Buy", methodSpec{Service: "dmsc.shop.v1.Frontend", Method: "Buy"}, ""},
		{"dmsc.shop.v1.Frontend.Buy", methodSpec{Service: "dmsc.shop.v1.Frontend", Method: "Buy"}, ""},
		{"_x9/_y", methodSpec{Service: "_x9", Method: "_y"}, ""},
		{"", methodSpec{}, "no method name"},
		{"/", methodSpec{}, "no method name"},
		{"/Buy", methodSpec{Method: "Buy"}, ""},
		{"//Buy", methodSpec{}, `"" is not a service name`},
		{"a/b/c", methodSpec{}, `"b/c" is not a method name`},
		{".Buy", methodSpec{}, `"" is not a service name`},
		{"Frontend.", methodSpec{}, "no method name"},
		{"Buy-Now", methodSpec{}, "is not a method name"},
		{"shop v1/Buy", methodSpec{}, "is not a service name"},
	} {
		got, err := parseMethodSpec(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("parseMethodSpec(%q) = %v, %v; want an error containing %q", tc.in, got, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("parseMethodSpec(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
	}
}

func TestSplitRequests(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
		err  string
	}{
		{`{}`, []string{`{}`}, ""},
		{` {"a":1} `, []string{`{"a":1}`}, ""},
		{"{\"a\":1}\n{\"a\":2}\n", []string{`{"a":1}`, `{"a":2}`}, ""},
		{`{"a":1}{"a":2}`, []string{`{"a":1}`, `{"a":2}`}, ""},
		{`[{"a":1}, {"a":2}] {"a":3}`, []string{`{"a":1}`, `{"a":2}`, `{"a":3}`}, ""},
		{`[]`, nil, "no JSON message"},
		{"  \n", nil, "no JSON message"},
		{`{"a":`, nil, "not JSON"},
		{`{"a":1}}`, nil, "not JSON"},
	} {
		got, err := splitRequests(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("splitRequests(%q) = %s, %v; want an error containing %q", tc.in, got, err, tc.err)
			}
			continue
		}
		var gotS []string
		for _, m := range got {
			gotS = append(gotS, string(m))
		}
		if err != nil || strings.Join(gotS, "|") != strings.Join(tc.want, "|") {
			t.Errorf("splitRequests(%q) = %q, %v; want %q", tc.in, gotS, err, tc.want)
		}
	}
}

// otherCart is a second service named Cart in another package, with an
// AddItem and an Echo, to make names ambiguous.
func otherCart(t *testing.T) protoreflect.FileDescriptor {
	t.Helper()
	s := func(v string) *string { return &v }
	fd, err := protodesc.NewFile(&descriptorpb.FileDescriptorProto{
		Name: s("other.proto"), Package: s("other.v1"), Syntax: s("proto3"),
		MessageType: []*descriptorpb.DescriptorProto{{Name: s("M")}},
		Service: []*descriptorpb.ServiceDescriptorProto{{Name: s("Cart"), Method: []*descriptorpb.MethodDescriptorProto{
			{Name: s("AddItem"), InputType: s(".other.v1.M"), OutputType: s(".other.v1.M")},
			{Name: s("Echo"), InputType: s(".other.v1.M"), OutputType: s(".other.v1.M")},
		}}},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return fd
}

// reflectionServer serves reflection on loopback TCP for the services
// names, described by files (a name they lack is listed but not
// described); v1alpha serves only the old version.
func reflectionServer(t *testing.T, names []string, files *protoregistry.Files, v1alpha bool) *grpc.ClientConn {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	if names != nil {
		opts := reflection.ServerOptions{Services: serviceNames(names), DescriptorResolver: files}
		if v1alpha {
			v1alphagrpc.RegisterServerReflectionServer(gs, reflection.NewServer(opts))
		} else {
			rpb.RegisterServerReflectionServer(gs, reflection.NewServerV1(opts))
		}
	}
	echopb.RegisterEchoServer(gs, &echo.Server{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); gs.Serve(lis) }()
	cc, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cc.Close()
		gs.Stop()
		wg.Wait()
	})
	return cc
}

// serviceNames is a reflection.ServiceInfoProvider listing names.
type serviceNames []string

func (s serviceNames) GetServiceInfo() map[string]grpc.ServiceInfo {
	m := map[string]grpc.ServiceInfo{}
	for _, n := range s {
		m[n] = grpc.ServiceInfo{}
	}
	return m
}

// TestSchema: reflection over loopback TCP, v1 and v1alpha; --list's
// listing; method lookup with and without the service, ambiguous names.
func TestSchema(t *testing.T) {
	files := new(protoregistry.Files)
	for _, fd := range []protoreflect.FileDescriptor{echopb.File_echo_proto, shoppb.File_shop_proto, otherCart(t)} {
		if err := files.RegisterFile(fd); err != nil {
			t.Fatal(err)
		}
	}
	names := []string{"dmsc.echo.v1.Echo", "dmsc.shop.v1.Cart", "dmsc.shop.v1.Catalog", "other.v1.Cart", "ghost.v1.Ghost"}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, v1alpha := range []bool{false, true} {
		sc, err := fetchSchema(ctx, reflectionServer(t, names, files, v1alpha), "/test")
		if err != nil {
			t.Fatalf("v1alpha %v: %v", v1alpha, err)
		}
		var list bytes.Buffer
		sc.print(&list)
		for _, line := range []string{
			"dmsc.shop.v1.Catalog\n  GetItem(dmsc.shop.v1.GetItemRequest) returns (dmsc.shop.v1.Item)\n  ListItems(dmsc.shop.v1.ListItemsRequest) returns (stream dmsc.shop.v1.Item)\n",
			"ghost.v1.Ghost (not described: ",
			"other.v1.Cart\n  AddItem(other.v1.M) returns (other.v1.M)\n",
		} {
			if !strings.Contains(list.String(), line) {
				t.Errorf("v1alpha %v: listing lacks %q:\n%s", v1alpha, line, list.String())
			}
		}
		for _, tc := range []struct {
			spec string
			want string // the method's full name, or an error's text
		}{
			{"GetItem", "dmsc.shop.v1.Catalog/GetItem"},
			{"Catalog/GetItem", "dmsc.shop.v1.Catalog/GetItem"},
			{"shop.v1.Cart/AddItem", "dmsc.shop.v1.Cart/AddItem"},
			{"other.v1.Cart.AddItem", "other.v1.Cart/AddItem"},
			{"Repeat", "dmsc.echo.v1.Echo/Repeat"},
			{"AddItem", "method AddItem is ambiguous on /test: dmsc.shop.v1.Cart/AddItem, other.v1.Cart/AddItem; name the service"},
			{"Echo", "method Echo is ambiguous on /test: dmsc.echo.v1.Echo/Echo, other.v1.Cart/Echo"},
			{"Echo/Echo", "dmsc.echo.v1.Echo/Echo"},
			{"Cart/GetCart", "service Cart is ambiguous on /test: dmsc.shop.v1.Cart, other.v1.Cart; give its package"},
			{"Frontend/Buy", "/test has no service Frontend; it serves dmsc.echo.v1.Echo, dmsc.shop.v1.Cart, dmsc.shop.v1.Catalog, other.v1.Cart"},
			{"ghost.v1.Ghost/Boo", "/test serves ghost.v1.Ghost but reflection does not describe it"},
			{"Catalog/AddItem", "/test has no method Catalog/AddItem; its methods: dmsc.shop.v1.Catalog/GetItem, dmsc.shop.v1.Catalog/ListItems"},
		} {
			spec, err := parseMethodSpec(tc.spec)
			if err != nil {
				t.Fatal(err)
			}
			md, err := sc.resolve(spec)
			got := ""
			if err != nil {
				got = err.Error()
			} else {
				got = methodName(md)
			}
			if !strings.HasPrefix(got, tc.want) {
				t.Errorf("v1alpha %v: resolve %q = %q, want %q", v1alpha, tc.spec, got, tc.want)
			}
		}
	}
	// A server without reflection.
	_, err := fetchSchema(ctx, reflectionServer(t, nil, nil, false), "/plain")
	if err == nil || !strings.Contains(err.Error(), "/plain does not serve gRPC server reflection") {
		t.Errorf("no reflection: %v", err)
	}
}

func FuzzParseMethodSpec(f *testing.F) {
	for _, s := range []string{"Echo", "Echo/Echo", "/dmsc.shop.v1.Frontend/Buy", "a.b.C", "", "/", "a//b", "ü/ß"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		spec, err := parseMethodSpec(s)
		if err != nil {
			return
		}
		// What it accepts reads back the same.
		again, err := parseMethodSpec(spec.String())
		if err != nil || again != spec {
			t.Fatalf("%q → %+v → %q → %+v, %v", s, spec, spec.String(), again, err)
		}
		if !isIdent(spec.Method) {
			t.Fatalf("%q: method %q", s, spec.Method)
		}
	})
}

func FuzzSplitRequests(f *testing.F) {
	for _, s := range []string{`{}`, `{"a":1}{"b":2}`, `[{"a":1},{}]`, `[`, `{"a":`, "\n", `[[1]]`, `"x"`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		msgs, err := splitRequests(s)
		if err != nil {
			return
		}
		if len(msgs) == 0 {
			t.Fatalf("%q: no messages and no error", s)
		}
		for _, m := range msgs {
			if !json.Valid(m) {
				t.Fatalf("%q: message %q is not JSON", s, m)
			}
		}
	})
}
