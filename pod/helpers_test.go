package pod

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/dmsc-mesh/dmsc/ca"
	"github.com/dmsc-mesh/dmsc/wire"
)

const testDomain = "test.dmsc"

func newTestCA(t testing.TB, domain string) *ca.CA {
	t.Helper()
	c, err := ca.Init(t.TempDir(), domain)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// podSpec describes a test pod: the prefix its certificate names, the
// service and instance the fabric knows it by.
type podSpec struct {
	cert     string // certificate prefix (default: service)
	service  string
	instance uint32
	ca       *ca.CA // default: the test's CA
	mod      func(*Config)
}

type testEnv struct {
	t   testing.TB
	fab *testFabric
	ca  *ca.CA
}

func newTestEnv(t testing.TB, delay time.Duration) *testEnv {
	return &testEnv{t: t, fab: newTestFabric(t, delay), ca: newTestCA(t, testDomain)}
}

// pod attaches and registers a pod; it is closed at the test's end.
func (env *testEnv) pod(s podSpec) *Endpoint {
	t := env.t
	t.Helper()
	if s.cert == "" {
		s.cert = s.service
	}
	authority := s.ca
	if authority == nil {
		authority = env.ca
	}
	is, err := authority.IssuePod(s.cert)
	if err != nil {
		t.Fatal(err)
	}
	port, key := env.fab.attach(s.service, s.instance)
	cfg := Config{Port: port, CA: authority.Cert, Certificate: is.TLSCertificate(), Logger: slog.New(slog.DiscardHandler)}
	if s.mod != nil {
		s.mod(&cfg)
	}
	ep, err := NewEndpoint(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ep.Close() })
	if err := ep.SetLocalKey(key); err != nil {
		t.Fatal(err)
	}
	return ep
}

// The test gRPC service, written without generated code: messages are
// protobuf wrappers.
const (
	methodWho   = "/dmsc.test.Echo/Who"   // → "<server instance key>|<caller identity>"
	methodSum   = "/dmsc.test.Echo/Sum"   // → SHA-256 of the request
	methodCount = "/dmsc.test.Echo/Count" // server stream: n messages "0".."n-1"
	methodEcho  = "/dmsc.test.Echo/Echo"  // bidi: each message back
)

type echoService interface{}

type echoServer struct{ ep *Endpoint }

func unary(f func(ctx context.Context, in *wrapperspb.BytesValue) (any, error)) grpc.MethodHandler {
	return func(_ any, ctx context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
		var in wrapperspb.BytesValue
		if err := dec(&in); err != nil {
			return nil, err
		}
		return f(ctx, &in)
	}
}

func (s *echoServer) who(ctx context.Context, _ *wrapperspb.BytesValue) (any, error) {
	id, ok := PeerIdentity(ctx)
	if !ok {
		return nil, errors.New("no peer identity")
	}
	k, _ := s.ep.LocalKey()
	return wrapperspb.String(k.String() + "|" + id.String()), nil
}

func (s *echoServer) sum(_ context.Context, in *wrapperspb.BytesValue) (any, error) {
	h := sha256.Sum256(in.Value)
	return wrapperspb.Bytes(h[:]), nil
}

func (s *echoServer) count(_ any, st grpc.ServerStream) error {
	var n wrapperspb.UInt32Value
	if err := st.RecvMsg(&n); err != nil {
		return err
	}
	for i := uint32(0); i < n.Value; i++ {
		if err := st.SendMsg(wrapperspb.String(fmt.Sprint(i))); err != nil {
			return err
		}
	}
	return nil
}

func (s *echoServer) echo(_ any, st grpc.ServerStream) error {
	for {
		var m wrapperspb.BytesValue
		if err := st.RecvMsg(&m); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		if err := st.SendMsg(&m); err != nil {
			return err
		}
	}
}

func echoDesc(s *echoServer) *grpc.ServiceDesc {
	return &grpc.ServiceDesc{
		ServiceName: "dmsc.test.Echo",
		HandlerType: (*echoService)(nil),
		Methods: []grpc.MethodDesc{
			{MethodName: "Who", Handler: unary(s.who)},
			{MethodName: "Sum", Handler: unary(s.sum)},
		},
		Streams: []grpc.StreamDesc{
			{StreamName: "Count", Handler: s.count, ServerStreams: true},
			{StreamName: "Echo", Handler: s.echo, ServerStreams: true, ClientStreams: true},
		},
	}
}

// serveEcho runs the test service on ep until the test ends.
func serveEcho(t testing.TB, ep *Endpoint, opts ...grpc.ServerOption) {
	t.Helper()
	lis, err := ListenGRPC(ep)
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(append([]grpc.ServerOption{grpc.MaxRecvMsgSize(32 << 20)}, opts...)...)
	srv.RegisterService(echoDesc(&echoServer{ep: ep}), &echoServer{ep: ep})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		_ = srv.Serve(lis)
	}()
	t.Cleanup(func() {
		srv.Stop()
		wg.Wait()
	})
}

func dialGRPC(t testing.TB, ep *Endpoint, name string) *grpc.ClientConn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cc, err := DialGRPC(ctx, ep, name, grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(32<<20), grpc.MaxCallSendMsgSize(32<<20)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

// who calls Who and returns the answering instance and the caller identity
// the server saw.
func who(ctx context.Context, cc *grpc.ClientConn, opts ...grpc.CallOption) (instance, caller string, err error) {
	var out wrapperspb.StringValue
	if err := cc.Invoke(ctx, methodWho, wrapperspb.Bytes(nil), &out, opts...); err != nil {
		return "", "", err
	}
	inst, id, ok := strings.Cut(out.Value, "|")
	if !ok {
		return "", "", fmt.Errorf("bad Who answer %q", out.Value)
	}
	return inst, id, nil
}

func testCtx(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// serveQUICEcho accepts QUIC connections on ep and echoes every stream.
func serveQUICEcho(t testing.TB, ep *Endpoint) *Listener {
	t.Helper()
	ln, err := ep.Listen()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept(ctx)
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					st, err := c.AcceptStream(ctx)
					if err != nil {
						return
					}
					wg.Add(1)
					go func() {
						defer wg.Done()
						_, _ = io.Copy(st, st)
						st.Close()
					}()
				}
			}()
		}
	}()
	t.Cleanup(func() {
		cancel()
		ln.Close()
		wg.Wait()
	})
	return ln
}

// waitFor polls cond until it holds or d passes.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// goroutinesSettle waits for the goroutine count to come back to base.
func goroutinesSettle(t testing.TB, base int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		n := runtime.NumGoroutine()
		if n <= base {
			return
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines still running, %d before the test:\n%s", n, base, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func keyOf(name string) wire.Key { return wire.KeyOf(wire.MustParseName(name)) }

var _ net.Addr = (*Addr)(nil)

func wrapBytes(s string) *wrapperspb.BytesValue { return wrapperspb.Bytes([]byte(s)) }
