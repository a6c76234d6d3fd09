package pod

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"runtime"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/dmsc-mesh/dmsc/softswitch"
	"github.com/dmsc-mesh/dmsc/wire"
)

// bareEndpoint is an Endpoint on an in-memory link without TLS; the other
// end of the link is returned for the test to use.
func bareEndpoint(t testing.TB) (*Endpoint, *softswitch.MemPort) {
	t.Helper()
	podEnd, other := softswitch.NewMemPair()
	ep, err := NewEndpoint(Config{Port: podEnd})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ep.Close()
		other.Close()
	})
	return ep, other
}

func dataFrame(dst, src wire.Key, flow uint32, proto uint8, payload []byte) []byte {
	return wire.AppendFrame(nil, wire.Ethernet{}, wire.Header{
		Type: wire.TypeData, HopLimit: 5, FlowLabel: flow, NextProto: proto, Dst: dst, Src: src,
	}, nil, payload)
}

func TestConfigErrors(t *testing.T) {
	a, _ := softswitch.NewMemPair()
	defer a.Close()
	env := &testEnv{t: t, ca: newTestCA(t, testDomain)}
	node, err := env.ca.IssueNode("sg1", "sg")
	if err != nil {
		t.Fatal(err)
	}
	pod, err := env.ca.IssuePod("/shop/cart")
	if err != nil {
		t.Fatal(err)
	}
	other := newTestCA(t, "other.dmsc")
	for _, tc := range []struct {
		name string
		cfg  Config
	}{
		{"no port", Config{}},
		{"bad MAC", Config{Port: a, LocalMAC: net.HardwareAddr{1, 2, 3}}},
		{"negative timeout", Config{Port: a, HandshakeTimeout: -time.Second}},
		{"CA without certificate", Config{Port: a, CA: env.ca.Cert}},
		{"certificate without CA", Config{Port: a, Certificate: pod.TLSCertificate()}},
		{"node certificate", Config{Port: a, CA: env.ca.Cert, Certificate: node.TLSCertificate()}},
		{"certificate of another CA", Config{Port: a, CA: other.Cert, Certificate: pod.TLSCertificate()}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ep, err := NewEndpoint(tc.cfg)
			if err == nil {
				ep.Close()
				t.Fatal("NewEndpoint accepted it")
			}
			t.Log(err)
		})
	}
}

func TestEndpointBeforeRegistration(t *testing.T) {
	ep, link := bareEndpoint(t)
	if _, err := ep.DialPacket("/shop/cart"); !errors.Is(err, ErrNoLocalKey) {
		t.Fatalf("DialPacket before SetLocalKey: %v, want ErrNoLocalKey", err)
	}
	if _, err := ep.ListenPacket(); !errors.Is(err, ErrNoLocalKey) {
		t.Fatalf("ListenPacket before SetLocalKey: %v, want ErrNoLocalKey", err)
	}
	if _, err := ep.Dial(context.Background(), "/shop/cart"); !errors.Is(err, ErrNoCertificate) {
		t.Fatalf("Dial without certificates: %v, want ErrNoCertificate", err)
	}
	if _, err := ep.DialPacket("/Shop"); err == nil {
		t.Fatal("DialPacket accepted a bad name")
	}
	if err := ep.SetLocalKey(keyOf("/shop/cart")); err == nil {
		t.Fatal("SetLocalKey accepted a service key")
	}
	// The announcement runs before there is a key: control frames go out
	// with a zero source.
	if err := ep.SendControl(wire.SignalPod, wire.PodAnnounce, []byte("hello")); err != nil {
		t.Fatal(err)
	}
	b, err := link.Recv(time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var f wire.Frame
	if r := wire.ParseFrame(b, &f); r != wire.DropNone {
		t.Fatalf("sent control frame does not parse: %v", r)
	}
	c, err := wire.DecodeControl(f.Payload)
	if err != nil {
		t.Fatal(err)
	}
	if f.Hdr.Type != wire.TypeControl || f.Hdr.NextProto != wire.ProtoControl || !f.Hdr.Src.IsZero() ||
		c.Signal != wire.SignalPod || c.MsgType != wire.PodAnnounce || string(c.Body) != "hello" {
		t.Fatalf("control frame %+v, message %+v", f.Hdr, c)
	}
	// DATA before registration is dropped.
	if err := link.Send(dataFrame(keyOf("/shop/cart").WithInstance(1), keyOf("/a").WithInstance(1), 1, wire.ProtoDatagram, []byte("x"))); err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Second, "the drop", func() bool { return ep.Stats().Drops[DropNoLocalKey] == 1 })
	if st := ep.Stats(); st.ControlOut != 1 || st.FramesOut != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestControlHandler(t *testing.T) {
	ep, link := bareEndpoint(t)
	self := keyOf("/shop/cart").WithInstance(3)
	if err := ep.SetLocalKey(self); err != nil {
		t.Fatal(err)
	}
	env, err := wire.AppendControl(nil, wire.SignalPod, wire.PodChallenge, []byte("nonce"))
	if err != nil {
		t.Fatal(err)
	}
	ctrl := wire.AppendFrame(nil, wire.Ethernet{}, wire.Header{Type: wire.TypeControl, HopLimit: 1, NextProto: wire.ProtoControl}, nil, env)

	// Without a handler the frame is counted and dropped.
	if err := link.Send(ctrl); err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Second, "the drop", func() bool { return ep.Stats().Drops[DropNoHandler] == 1 })

	got := make(chan wire.Frame, 1)
	ep.SetControlHandler(func(f wire.Frame) { got <- f })
	if err := link.Send(ctrl); err != nil {
		t.Fatal(err)
	}
	select {
	case f := <-got:
		c, err := wire.DecodeControl(f.Payload)
		if err != nil || c.MsgType != wire.PodChallenge || string(c.Body) != "nonce" {
			t.Fatalf("handler got %+v (%v)", c, err)
		}
	case <-time.After(time.Second):
		t.Fatal("handler not called")
	}
	// A CONTROL frame must carry a control envelope.
	bad := wire.AppendFrame(nil, wire.Ethernet{}, wire.Header{Type: wire.TypeControl, NextProto: wire.ProtoDatagram}, nil, env)
	if err := link.Send(bad); err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Second, "the drop", func() bool { return ep.Stats().Drops[DropNotControl] == 1 })
	if st := ep.Stats(); st.ControlIn != 1 {
		t.Fatalf("ControlIn %d, want 1", st.ControlIn)
	}
	// After registration control frames carry the instance key.
	if err := ep.SendControl(wire.SignalPod, wire.PodKeepalive, nil); err != nil {
		t.Fatal(err)
	}
	b, err := link.Recv(time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var f wire.Frame
	if wire.ParseFrame(b, &f) != wire.DropNone || f.Hdr.Src != self {
		t.Fatalf("keepalive frame %+v", f.Hdr)
	}
	if err := ep.SendControl(wire.SignalPod, wire.PodKeepalive, make([]byte, wire.MaxControlBody+1)); err == nil {
		t.Fatal("SendControl accepted an oversized body")
	}
}

func TestPacketConnDeadlinesAndClose(t *testing.T) {
	ep, _ := bareEndpoint(t)
	if err := ep.SetLocalKey(keyOf("/shop/web").WithInstance(1)); err != nil {
		t.Fatal(err)
	}
	pc, err := ep.DialPacket("/shop/cart")
	if err != nil {
		t.Fatal(err)
	}
	if ra := pc.RemoteAddr().String(); ra[:11] != "/shop/cart#" || pc.Flow() == 0 {
		t.Fatalf("RemoteAddr %q, flow %d", ra, pc.Flow())
	}
	if pc.RemoteAddr().Network() != "dmsc" {
		t.Fatal("network is not dmsc")
	}
	buf := make([]byte, 100)

	pc.SetReadDeadline(time.Now().Add(30 * time.Millisecond))
	start := time.Now()
	_, _, err = pc.ReadFrom(buf)
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read past the deadline: %v", err)
	}
	if el := time.Since(start); el < 25*time.Millisecond {
		t.Fatalf("deadline hit after %v", el)
	}
	// A deadline moved earlier interrupts a blocked read.
	pc.SetReadDeadline(time.Now().Add(time.Hour))
	errc := make(chan error, 1)
	go func() { _, _, err := pc.ReadFrom(buf); errc <- err }()
	time.Sleep(20 * time.Millisecond)
	pc.SetReadDeadline(time.Now())
	if err := <-errc; !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("blocked read after deadline moved: %v", err)
	}
	// A passed write deadline fails writes; clearing it lets them through.
	pc.SetWriteDeadline(time.Now().Add(-time.Second))
	if _, err := pc.WriteTo([]byte("x"), nil); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("write past the deadline: %v", err)
	}
	pc.SetDeadline(time.Time{})
	if _, err := pc.WriteTo([]byte("x"), nil); err != nil {
		t.Fatalf("write: %v", err)
	}
	if _, err := pc.WriteTo(make([]byte, wire.MaxPayload+1), nil); err == nil {
		t.Fatal("an oversized datagram was sent")
	}
	// Close interrupts a blocked read and fails later calls.
	go func() { _, _, err := pc.ReadFrom(buf); errc <- err }()
	time.Sleep(20 * time.Millisecond)
	pc.Close()
	if err := <-errc; !errors.Is(err, net.ErrClosed) {
		t.Fatalf("blocked read after Close: %v", err)
	}
	if _, err := pc.WriteTo([]byte("x"), nil); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("write after Close: %v", err)
	}
	// The flow label is free again.
	ep.mu.RLock()
	n := len(ep.dials)
	ep.mu.RUnlock()
	if n != 0 {
		t.Fatalf("%d dials registered after Close", n)
	}
}

func TestPacketConnPinningAndStrayReplies(t *testing.T) {
	env := newTestEnv(t, 0)
	env.fab.setRoundRobin(true) // the two first datagrams go to different instances
	a := env.pod(podSpec{service: "/shop/cart", instance: 1})
	b := env.pod(podSpec{service: "/shop/cart", instance: 2})
	client := env.pod(podSpec{service: "/shop/web", instance: 9})
	la, err := a.ListenPacket()
	if err != nil {
		t.Fatal(err)
	}
	lb, err := b.ListenPacket()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.ListenPacket(); err == nil {
		t.Fatal("a second ListenPacket succeeded")
	}
	d, err := client.DialPacket("/shop/cart")
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	for _, m := range []string{"one", "two"} {
		if _, err := d.WriteTo([]byte(m), d.RemoteAddr()); err != nil {
			t.Fatal(err)
		}
	}
	ck, _ := client.LocalKey()
	read := func(pc net.PacketConn) (string, net.Addr) {
		t.Helper()
		buf := make([]byte, 2000)
		pc.SetReadDeadline(time.Now().Add(2 * time.Second))
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			t.Fatal(err)
		}
		return string(buf[:n]), from
	}
	ma, fromA := read(la)
	mb, fromB := read(lb)
	if ma != "one" || mb != "two" {
		t.Fatalf("instances got %q and %q", ma, mb)
	}
	for _, from := range []net.Addr{fromA, fromB} {
		if fa := from.(*Addr); fa.Key != ck || fa.Flow != d.Flow() {
			t.Fatalf("listener reports the client as %v, want %s with flow %08x", fa, ck, d.Flow())
		}
	}
	if _, ok := d.Pinned(); ok {
		t.Fatal("pinned before any reply")
	}
	// a answers first: the dial pins to a.
	if _, err := la.WriteTo([]byte("from a"), fromA); err != nil {
		t.Fatal(err)
	}
	got, from := read(d)
	if got != "from a" || from != d.RemoteAddr() {
		t.Fatalf("dial read %q from %v", got, from)
	}
	ak, _ := a.LocalKey()
	if p, ok := d.Pinned(); !ok || p != ak {
		t.Fatalf("pinned to %v %v, want %s", p, ok, ak)
	}
	// b's late answer is not delivered, but counted.
	if _, err := lb.WriteTo([]byte("from b"), fromB); err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Second, "the stray reply", func() bool { return client.Stats().Drops[DropStrayReply] == 1 })
	// From now on everything goes to a, round robin or not.
	for i := 0; i < 4; i++ {
		if _, err := d.WriteTo([]byte("pinned"), nil); err != nil {
			t.Fatal(err)
		}
		if m, _ := read(la); m != "pinned" {
			t.Fatalf("a got %q", m)
		}
	}
	lb.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if _, _, err := lb.ReadFrom(make([]byte, 100)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("b still receives the pinned dial: %v", err)
	}
	if _, err := la.WriteTo([]byte("x"), &net.UDPAddr{}); err == nil {
		t.Fatal("ListenConn wrote to a UDP address")
	}
}

func TestMalformedFramesCounted(t *testing.T) {
	env := newTestEnv(t, 0)
	server := env.pod(podSpec{service: "/shop/cart", instance: 7})
	client := env.pod(podSpec{service: "/shop/web", instance: 1})
	serveEcho(t, server)
	sk, _ := server.LocalKey()
	ck, _ := client.LocalKey()

	good := dataFrame(sk, ck, 42, wire.ProtoDatagram, []byte("payload"))
	badVersion := append([]byte(nil), good...)
	badVersion[wire.EthernetHeaderLen] = 2<<4 | wire.TypeData
	badLength := append([]byte(nil), good...)
	badLength[wire.EthernetHeaderLen+9] = 200 // payload_len beyond the frame
	notDMSC := append([]byte(nil), good...)
	notDMSC[12], notDMSC[13] = 0x08, 0x00
	probe := wire.AppendFrame(nil, wire.Ethernet{}, wire.Header{Type: wire.TypeProbe, Dst: sk, Src: ck}, &wire.ProbeHeader{Seq: 1}, nil)
	for _, tc := range []struct {
		frame  []byte
		reason string
	}{
		{good[:10], "malformed"},
		{good[:40], "malformed"},
		{notDMSC, "not_dmsc"},
		{badVersion, "bad_version"},
		{badLength, "bad_length"},
		{append(append([]byte(nil), good...), make([]byte, 30)...), "bad_length"},
		{probe, DropUnexpectedType},
		{dataFrame(sk, ck, 42, wire.ProtoNone, nil), DropNotDatagram},
		{dataFrame(sk.WithInstance(99), ck, 42, wire.ProtoDatagram, []byte("x")), DropWrongDst},
	} {
		before := server.Stats().Drops[tc.reason]
		if err := env.fab.inject(sk, tc.frame); err != nil {
			t.Fatal(err)
		}
		waitFor(t, time.Second, "drop "+tc.reason, func() bool { return server.Stats().Drops[tc.reason] == before+1 })
	}
	// A QUIC datagram of no dial, at a pod that does not listen.
	if err := env.fab.inject(ck, dataFrame(ck, sk, 7, wire.ProtoDatagram, []byte("?"))); err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Second, "drop no_listener", func() bool { return client.Stats().Drops[DropNoListener] == 1 })

	// The pod still serves.
	cc := dialGRPC(t, client, "/shop/cart")
	if _, _, err := who(testCtx(t, 5*time.Second), cc); err != nil {
		t.Fatalf("call after malformed frames: %v", err)
	}
}

// FuzzEndpointFrame feeds arbitrary frames to the Endpoint's receive path,
// with a dial and a listener to deliver to: it must not panic, and every
// frame must be counted exactly once, as received or as malformed.
func FuzzEndpointFrame(f *testing.F) {
	podEnd, other := softswitch.NewMemPair()
	ep, err := NewEndpoint(Config{Port: podEnd, QueueLen: 4})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() {
		ep.Close()
		other.Close()
	})
	self := keyOf("/shop/cart").WithInstance(1)
	peer := keyOf("/shop/web").WithInstance(2)
	if err := ep.SetLocalKey(self); err != nil {
		f.Fatal(err)
	}
	ep.SetControlHandler(func(wire.Frame) {})
	if _, err := ep.ListenPacket(); err != nil {
		f.Fatal(err)
	}
	d, err := ep.DialPacket("/shop/web")
	if err != nil {
		f.Fatal(err)
	}
	// A fixed flow label, so that the corpus can reach the dial.
	const flow = 0x01020304
	ep.mu.Lock()
	delete(ep.dials, d.Flow())
	d.remote.Flow = flow
	ep.dials[flow] = d
	ep.mu.Unlock()

	env, _ := wire.AppendControl(nil, wire.SignalPod, wire.PodAccept, []byte("ok"))
	f.Add(dataFrame(self, peer, flow, wire.ProtoDatagram, []byte{0x40, 1, 2, 3}))
	f.Add(dataFrame(self, peer.WithInstance(3), flow, wire.ProtoDatagram, []byte{0xc0}))
	f.Add(dataFrame(self, self, flow, wire.ProtoDatagram, []byte("loop")))
	f.Add(dataFrame(self, peer, 9, wire.ProtoDatagram, nil))
	f.Add(wire.AppendFrame(nil, wire.Ethernet{}, wire.Header{Type: wire.TypeControl, NextProto: wire.ProtoControl}, nil, env))
	f.Add(wire.AppendFrame(nil, wire.Ethernet{}, wire.Header{Type: wire.TypeProbeReply}, &wire.ProbeHeader{}, nil))
	f.Add([]byte{})
	f.Add(make([]byte, 59))
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > maxFrameLen {
			b = b[:maxFrameLen] // a port hands over no more
		}
		counted := func() uint64 {
			st := ep.Stats()
			n := st.FramesIn
			for r := wire.DropReason(1); r <= wire.DropBadLength; r++ {
				n += st.Drops[r.String()]
			}
			return n
		}
		before := counted()
		var fr wire.Frame
		wellFormed := wire.ParseFrame(b, &fr) == wire.DropNone
		framesIn := ep.Stats().FramesIn
		ep.handleFrame(b)
		if after := counted(); after != before+1 {
			t.Fatalf("frame counted %d times", after-before)
		}
		if got := ep.Stats().FramesIn - framesIn; (got == 1) != wellFormed {
			t.Fatalf("well-formed %v, but FramesIn grew by %d", wellFormed, got)
		}
		// Drain what was delivered, so the queues keep accepting.
		for {
			select {
			case pk := <-d.queue:
				ep.putPayload(pk.buf)
				continue
			default:
			}
			break
		}
	})
}

func TestGoroutinesStopOnClose(t *testing.T) {
	base := runtime.NumGoroutine()
	t.Run("traffic", func(t *testing.T) {
		env := newTestEnv(t, 0)
		server := env.pod(podSpec{service: "/shop/cart", instance: 7})
		client := env.pod(podSpec{service: "/shop/web", instance: 1})
		serveEcho(t, server)
		serveQUICEcho(t, client) // a second listener kind, unused
		cc := dialGRPC(t, client, "/shop/cart")
		if _, _, err := who(testCtx(t, 5*time.Second), cc); err != nil {
			t.Fatal(err)
		}
		c, err := client.Dial(testCtx(t, 5*time.Second), "/shop/cart")
		if err != nil {
			t.Fatal(err)
		}
		_ = c // left open: Endpoint.Close must end it
		pc, err := client.DialPacket("/shop/cart")
		if err != nil {
			t.Fatal(err)
		}
		_ = pc
	})
	goroutinesSettle(t, base)
}

func TestGRPCServerGracefulStop(t *testing.T) {
	env := newTestEnv(t, 0)
	server := env.pod(podSpec{service: "/shop/cart", instance: 7})
	client := env.pod(podSpec{service: "/shop/web", instance: 1})
	lis, err := ListenGRPC(server)
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	srv.RegisterService(echoDesc(&echoServer{ep: server}), &echoServer{ep: server})
	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()

	cc := dialGRPC(t, client, "/shop/cart")
	st, err := cc.NewStream(testCtx(t, 5*time.Second), &grpc.StreamDesc{ServerStreams: true, ClientStreams: true}, methodEcho)
	if err != nil {
		t.Fatal(err)
	}
	roundTrip := func(msg string) error {
		if err := st.SendMsg(wrapBytes(msg)); err != nil {
			return err
		}
		var m = wrapBytes("")
		if err := st.RecvMsg(m); err != nil {
			return err
		}
		if !bytes.Equal(m.Value, []byte(msg)) {
			return errors.New("wrong echo")
		}
		return nil
	}
	if err := roundTrip("before"); err != nil {
		t.Fatal(err)
	}
	stopped := make(chan struct{})
	go func() { srv.GracefulStop(); close(stopped) }()
	// The stream in flight keeps working while the server drains.
	time.Sleep(50 * time.Millisecond)
	if err := roundTrip("during"); err != nil {
		t.Fatalf("stream during GracefulStop: %v", err)
	}
	select {
	case <-stopped:
		t.Fatal("GracefulStop returned with a stream open")
	default:
	}
	st.CloseSend()
	if err := st.RecvMsg(wrapBytes("")); err == nil {
		t.Fatal("stream did not end")
	}
	select {
	case <-stopped:
	case <-time.After(5 * time.Second):
		t.Fatal("GracefulStop did not return after the stream ended")
	}
	if err := <-served; err != nil {
		t.Fatalf("Serve: %v", err)
	}
	// The listener is gone: the Endpoint may listen again.
	waitFor(t, 2*time.Second, "the listener to go", func() bool {
		l, err := server.ListenPacket()
		if err != nil {
			return false
		}
		l.Close()
		return true
	})
}
