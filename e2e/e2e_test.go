// Package e2e tests DMSC end to end: pods calling pods by name with gRPC
// over QUIC, through SGs and SRs programmed by their agents, with SPA
// deciding who owns which prefix.
package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"

	echopb "github.com/dmsc-mesh/dmsc/api/echo"
	"github.com/dmsc-mesh/dmsc/controller"
	"github.com/dmsc-mesh/dmsc/examples"
	"github.com/dmsc-mesh/dmsc/examples/echo"
	"github.com/dmsc-mesh/dmsc/pod"
	"github.com/dmsc-mesh/dmsc/topo"
)

func fig2(t *testing.T) *topo.Topology {
	t.Helper()
	tp, err := topo.Parse(examples.Fig2)
	if err != nil {
		t.Fatal(err)
	}
	return tp
}

// timers loose enough for race-enabled runs on two busy cores.
func timers() controller.Timers {
	t := controller.DefaultTimers()
	t.Hello = 30 * time.Millisecond
	t.Dead = 300 * time.Millisecond
	return t
}

func startLab(t *testing.T) *topo.Lab {
	t.Helper()
	l, err := topo.StartLab(context.Background(), fig2(t), topo.LabOptions{
		Agents: topo.AgentOptions{Timers: timers()},
		Probe:  controller.ProbeConfig{Interval: -1},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Error(err)
		}
	})
	waitRoutes(t, l)
	return l
}

// waitRoutes waits until every agent routes to every node.
func waitRoutes(t *testing.T, l *topo.Lab) {
	t.Helper()
	eventually(t, 10*time.Second, func() error {
		for _, n := range l.Fabric.Topo.NodeNames() {
			a, _ := l.Fabric.Agent(n)
			s, err := a.Snapshot(context.Background())
			if err != nil {
				return err
			}
			if len(s.Routes) < len(l.Fabric.Topo.Nodes) || !s.Converged() {
				return fmt.Errorf("%s: %d routes, converged %v", n, len(s.Routes), s.Converged())
			}
		}
		return nil
	})
}

func eventually(t *testing.T, timeout time.Duration, cond func() error) {
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

// serveEcho starts an Echo pod for prefix at node and returns it.
func serveEcho(t *testing.T, l *topo.Lab, node, prefix string, port uint16) (*pod.Endpoint, *pod.Registration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	p, err := l.StartPod(ctx, node, prefix, topo.PodOptions{Port: port})
	if err != nil {
		t.Fatal(err)
	}
	ep, reg := p.Endpoint, p.Registration
	lis, err := pod.ListenGRPC(ep)
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	echopb.RegisterEchoServer(gs, &echo.Server{
		ServedBy: func() string { return keyOf(ep) },
		Caller: func(ctx context.Context) string {
			id, _ := pod.PeerIdentity(ctx)
			return id.String()
		},
	})
	go gs.Serve(lis)
	t.Cleanup(gs.Stop)
	return ep, reg
}

func keyOf(ep *pod.Endpoint) string {
	k, _ := ep.LocalKey()
	return k.String()
}

// client starts a pod at node that calls others.
func client(t *testing.T, l *topo.Lab, node, prefix string) *pod.Endpoint {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	p, err := l.StartPod(ctx, node, prefix, topo.PodOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return p.Endpoint
}

// dialEcho dials /echo from ep, retrying while the fabric learns the new
// prefix (a freshly registered service reaches remote FIBs within ms).
func dialEcho(t *testing.T, ep *pod.Endpoint, name string) echopb.EchoClient {
	t.Helper()
	var cc *grpc.ClientConn
	eventually(t, 10*time.Second, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		var err error
		cc, err = pod.DialGRPC(ctx, ep, name)
		return err
	})
	t.Cleanup(func() { cc.Close() })
	return echopb.NewEchoClient(cc)
}

func sum(t *testing.T, c echopb.EchoClient, size int, during func(sent int)) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	up, err := c.Sum(ctx)
	if err != nil {
		t.Fatal(err)
	}
	data := make([]byte, size)
	rand.Read(data)
	const chunk = 64 << 10
	for off := 0; off < size; off += chunk {
		end := min(off+chunk, size)
		if err := up.Send(&echopb.Chunk{Data: data[off:end]}); err != nil {
			t.Fatalf("send at %d: %v", off, err)
		}
		if during != nil {
			during(end)
		}
	}
	d, err := up.CloseAndRecv()
	if err != nil {
		t.Fatal(err)
	}
	want := sha256.Sum256(data)
	if !bytes.Equal(d.GetSha256(), want[:]) || d.GetSize() != int64(size) {
		t.Fatalf("%d bytes sent: the server saw %d bytes, sha256 %x (want %x)", size, d.GetSize(), d.GetSha256(), want)
	}
}

// TestCallsAcrossTheFabric: sg1 → sr1 → sr3 → sg4, unary, both streaming
// directions, a 10 MB upload intact, and 100 concurrent streams.
func TestCallsAcrossTheFabric(t *testing.T) {
	l := startLab(t)
	srv, _ := serveEcho(t, l, "sg4", "/echo", 0)
	c := dialEcho(t, client(t, l, "sg1", "/shop/frontend"), "/echo")
	ctx := context.Background()

	r, err := c.Echo(ctx, &echopb.EchoRequest{Message: "hello, sg4"})
	if err != nil {
		t.Fatal(err)
	}
	if r.GetMessage() != "hello, sg4" || r.GetServedBy() != keyOf(srv) || r.GetCaller() != "dmsc://dmsc.example/shop/frontend" {
		t.Errorf("echo: %+v", r)
	}
	start := time.Now()
	const n = 50
	for range n {
		if _, err := c.Echo(ctx, &echopb.EchoRequest{Message: "x"}); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("%d unary calls in %v (%v each)", n, time.Since(start), time.Since(start)/n)

	down, err := c.Repeat(ctx, &echopb.RepeatRequest{Message: "tick", Count: 20})
	if err != nil {
		t.Fatal(err)
	}
	got := 0
	for {
		_, err := down.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got++
	}
	if got != 20 {
		t.Errorf("server stream: %d of 20", got)
	}

	sum(t, c, 10<<20, nil)

	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for i := range 100 {
		wg.Go(func() {
			s, err := c.Repeat(ctx, &echopb.RepeatRequest{Message: fmt.Sprint(i), Count: 5, IntervalMs: 10})
			if err != nil {
				errs <- err
				return
			}
			for k := 0; ; k++ {
				m, err := s.Recv()
				if errors.Is(err, io.EOF) {
					if k != 5 {
						errs <- fmt.Errorf("stream %d: %d messages", i, k)
					}
					return
				}
				if err != nil {
					errs <- fmt.Errorf("stream %d: %w", i, err)
					return
				}
				if m.GetMessage() != fmt.Sprint(i) {
					errs <- fmt.Errorf("stream %d got %q", i, m.GetMessage())
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestLinkCutMidStream cuts sr1–sr3 while a 16 MB upload crosses it: QUIC
// recovers what was lost while the fabric rerouted, and the checksum holds.
func TestLinkCutMidStream(t *testing.T) {
	l := startLab(t)
	serveEcho(t, l, "sg4", "/echo", 0)
	c := dialEcho(t, client(t, l, "sg1", "/shop/frontend"), "/echo")
	link, _ := l.Fabric.Link("sr1", "sr3")
	cut := false
	sum(t, c, 16<<20, func(sent int) {
		if !cut && sent >= 4<<20 {
			cut = true
			if err := l.Fabric.Cut(link); err != nil {
				t.Fatal(err)
			}
		}
	})
	if !cut {
		t.Fatal("the link was never cut")
	}
	// The bytes really went around: sr1's port to sr2 carried them.
	st, _ := l.Fabric.Switches["sr1"].SW.PortStats(3)
	if st.TxBytes < 8<<20 {
		t.Errorf("sr1 → sr2 carried %d bytes; the detour was not taken", st.TxBytes)
	}
}

// TestLoadSharingAndFailover: two instances of /echo behind sg4 share the
// dials; when one dies, new calls go to the other.
func TestLoadSharingAndFailover(t *testing.T) {
	l := startLab(t)
	a, _ := serveEcho(t, l, "sg4", "/echo", 10)
	b, _ := serveEcho(t, l, "sg4", "/echo", 11)
	cl := client(t, l, "sg1", "/shop/frontend")
	dialEcho(t, cl, "/echo") // the fabric has learnt /echo
	served := map[string]int{}
	for range 16 {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		cc, err := pod.DialGRPC(ctx, cl, "/echo")
		if err != nil {
			cancel()
			t.Fatal(err)
		}
		r, err := echopb.NewEchoClient(cc).Echo(ctx, &echopb.EchoRequest{Message: "who"})
		cancel()
		cc.Close()
		if err != nil {
			t.Fatal(err)
		}
		served[r.GetServedBy()]++
	}
	if served[keyOf(a)] == 0 || served[keyOf(b)] == 0 {
		t.Errorf("16 dials served by %v: both instances should take some", served)
	}
	// a dies: its port goes away, its keepalives stop.
	if err := l.Fabric.Switches["sg4"].SW.RemovePort(10); err != nil {
		t.Fatal(err)
	}
	died := time.Now()
	eventually(t, 10*time.Second, func() error {
		for range 4 {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			cc, err := pod.DialGRPC(ctx, cl, "/echo")
			if err != nil {
				cancel()
				return err
			}
			r, err := echopb.NewEchoClient(cc).Echo(ctx, &echopb.EchoRequest{Message: "who"})
			cancel()
			cc.Close()
			if err != nil {
				return err
			}
			if r.GetServedBy() != keyOf(b) {
				return fmt.Errorf("served by %s, the dead instance", r.GetServedBy())
			}
		}
		return nil
	})
	t.Logf("new calls all reach the live instance %v after the other died (SG hold time 3 s)", time.Since(died).Round(10*time.Millisecond))
}

// TestBadCalls: an unknown service fails at once with "no route", and a
// pod whose certificate does not own the prefix is refused.
func TestBadCalls(t *testing.T) {
	l := startLab(t)
	cl := client(t, l, "sg1", "/shop/frontend")
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := pod.DialGRPC(ctx, cl, "/nothing/here")
	if !errors.Is(err, pod.ErrNoRoute) {
		t.Fatalf("dial to an unknown service: %v", err)
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("no route took %v", took)
	}
	t.Logf("unknown service: %v after %v", err, time.Since(start).Round(time.Millisecond))

	is, err := l.Domain.IssuePod("/shop/other")
	if err != nil {
		t.Fatal(err)
	}
	link, err := l.Fabric.AttachPod("sg2", 12)
	if err != nil {
		t.Fatal(err)
	}
	ep, err := pod.NewEndpoint(pod.Config{Port: link, CA: l.Domain.CA.Cert, Certificate: is.TLSCertificate()})
	if err != nil {
		t.Fatal(err)
	}
	defer ep.Close()
	// The SDK refuses before asking (controller's TestRegistrationRefusals
	// shows SG and SPA refusing a pod that asks anyway).
	_, err = ep.Announce(ctx, pod.AnnounceConfig{Prefix: "/echo"})
	if err == nil || !strings.Contains(err.Error(), "outside the certificate") {
		t.Errorf("announcing a prefix the certificate does not own: %v", err)
	}
}

// TestSGGoneReannounces: the SG's agent dies and comes back; the pod
// re-announces on its own and is called again.
func TestSGGoneReannounces(t *testing.T) {
	l := startLab(t)
	_, reg := serveEcho(t, l, "sg4", "/echo", 0)
	cl := client(t, l, "sg1", "/shop/frontend")
	c := dialEcho(t, cl, "/echo")
	if _, err := c.Echo(context.Background(), &echopb.EchoRequest{Message: "before"}); err != nil {
		t.Fatal(err)
	}
	if err := l.Fabric.StopAgent("sg4"); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, func() error {
		if st := reg.Status(); st.State != pod.StateReannouncing {
			return fmt.Errorf("pod state %v", st.State)
		}
		return nil
	})
	if err := l.Fabric.StartAgent(context.Background(), "sg4"); err != nil {
		t.Fatal(err)
	}
	eventually(t, 15*time.Second, func() error {
		if st := reg.Status(); st.State != pod.StateRegistered || st.Registrations < 2 {
			return fmt.Errorf("pod state %v after %d registrations", st.State, st.Registrations)
		}
		return nil
	})
	eventually(t, 10*time.Second, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		_, err := dialEchoOnce(ctx, cl).Echo(ctx, &echopb.EchoRequest{Message: "after"})
		return err
	})
}

func dialEchoOnce(ctx context.Context, ep *pod.Endpoint) echopb.EchoClient {
	cc, err := pod.DialGRPC(ctx, ep, "/echo")
	if err != nil {
		return failingEcho{err}
	}
	go func() { <-ctx.Done(); cc.Close() }()
	return echopb.NewEchoClient(cc)
}

type failingEcho struct{ err error }

func (f failingEcho) Echo(context.Context, *echopb.EchoRequest, ...grpc.CallOption) (*echopb.EchoReply, error) {
	return nil, f.err
}
func (f failingEcho) Sum(context.Context, ...grpc.CallOption) (grpc.ClientStreamingClient[echopb.Chunk, echopb.Digest], error) {
	return nil, f.err
}
func (f failingEcho) Repeat(context.Context, *echopb.RepeatRequest, ...grpc.CallOption) (grpc.ServerStreamingClient[echopb.EchoReply], error) {
	return nil, f.err
}
