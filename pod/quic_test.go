package pod

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/dmsc-mesh/dmsc/wire"
)

func parseKeyT(t testing.TB, s string) wire.Key {
	t.Helper()
	k, err := wire.ParseKey(s)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// echoOnce opens a stream on c, sends msg and reads it back.
func echoOnce(t testing.TB, c *Conn, msg []byte) {
	t.Helper()
	ctx := testCtx(t, 5*time.Second)
	st, err := c.OpenStreamSync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Write(msg); err != nil {
		t.Fatal(err)
	}
	st.Close()
	got, err := io.ReadAll(st)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, msg) {
		t.Fatalf("echo: got %d bytes, want %d", len(got), len(msg))
	}
}

func TestQUICPinning(t *testing.T) {
	env := newTestEnv(t, time.Millisecond)
	a := env.pod(podSpec{service: "/shop/cart", instance: 1})
	b := env.pod(podSpec{service: "/shop/cart", instance: 2})
	client := env.pod(podSpec{service: "/shop/web", instance: 9})
	serveQUICEcho(t, a)
	serveQUICEcho(t, b)
	env.fab.startRecording()

	c, err := client.Dial(testCtx(t, 5*time.Second), "/shop/cart")
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseWithError(0, "")
	echoOnce(t, c, bytes.Repeat([]byte("pin"), 20000)) // 60 kB: many packets

	pinned := c.Instance()
	if pinned.Instance() == 0 {
		t.Fatal("connection is not pinned after replies")
	}
	if got := c.Peer().Prefix.String(); got != "/shop/cart" {
		t.Errorf("peer prefix %s", got)
	}
	if ra := c.RemoteAddr().(*Addr); ra.Key != keyOf("/shop/cart") || ra.Name != "/shop/cart" {
		t.Errorf("QUIC sees remote %v, want the dialed service", ra)
	}
	flow := c.RemoteAddr().(*Addr).Flow
	ck, _ := client.LocalKey()
	svc := keyOf("/shop/cart")
	var toService, toInstance, replies, maxPayload int
	for _, f := range env.fab.seen() {
		maxPayload = max(maxPayload, f.PayloadLn)
		if f.Flow != flow {
			continue
		}
		switch {
		case f.From == ck && f.Dst == svc:
			if toInstance > 0 {
				t.Fatalf("frame to the service key after the connection pinned to %s", pinned)
			}
			toService++
		case f.From == ck:
			if f.Dst != pinned {
				t.Fatalf("frame to %s, the connection is pinned to %s", f.Dst, pinned)
			}
			toInstance++
		default:
			if f.From != pinned || f.To != ck {
				t.Fatalf("reply from %s to %s, want %s to %s", f.From, f.To, pinned, ck)
			}
			replies++
		}
		if f.To != pinned && f.From == ck {
			t.Fatalf("fabric delivered the dial's frame to %s, not the pinned %s", f.To, pinned)
		}
	}
	if toService == 0 || toInstance < 10 || replies == 0 {
		t.Fatalf("frames of the flow: %d to the service, %d to the instance, %d replies", toService, toInstance, replies)
	}
	if maxPayload > quicPacketSize || maxPayload > wire.MaxPayload {
		t.Fatalf("a QUIC packet of %d bytes; the limit is %d", maxPayload, quicPacketSize)
	}
	if maxPayload < 1200 {
		t.Fatalf("largest QUIC packet %d bytes: Initial packets are at least 1200", maxPayload)
	}
	ak, _ := a.LocalKey()
	bk, _ := b.LocalKey()
	if pinned != ak && pinned != bk {
		t.Fatalf("pinned to %s, which is neither instance", pinned)
	}
}

func TestQUICDialTimeoutAndFailDials(t *testing.T) {
	env := newTestEnv(t, 0)
	t.Run("timeout", func(t *testing.T) {
		client := env.pod(podSpec{service: "/shop/web", instance: 1, mod: func(c *Config) { c.HandshakeTimeout = 300 * time.Millisecond }})
		start := time.Now()
		_, err := client.Dial(context.Background(), "/shop/nobody")
		if !errors.Is(err, ErrHandshakeTimeout) {
			t.Fatalf("dial: %v, want ErrHandshakeTimeout", err)
		}
		if el := time.Since(start); el < 250*time.Millisecond || el > 2*time.Second {
			t.Fatalf("failed after %v, the timeout is 300ms", el)
		}
		if st := client.Stats(); st.Dials != 1 || st.DialErrors != 1 || st.PendingDials != 0 {
			t.Fatalf("stats after the failed dial: %+v", st)
		}
	})
	t.Run("FailDials", func(t *testing.T) {
		client := env.pod(podSpec{service: "/shop/web", instance: 2, mod: func(c *Config) { c.HandshakeTimeout = 10 * time.Second }})
		errc := make(chan error, 1)
		go func() {
			_, err := client.Dial(context.Background(), "/shop/nobody")
			errc <- err
		}()
		waitFor(t, 2*time.Second, "the dial to be pending", func() bool { return client.Stats().PendingDials == 1 })
		if n := client.FailDials(keyOf("/shop/other"), nil); n != 0 {
			t.Fatalf("FailDials of another service failed %d dials", n)
		}
		start := time.Now()
		if n := client.FailDials(keyOf("/shop/nobody"), nil); n != 1 {
			t.Fatalf("FailDials failed %d dials, want 1", n)
		}
		select {
		case err := <-errc:
			if !errors.Is(err, ErrNoRoute) {
				t.Fatalf("dial: %v, want ErrNoRoute", err)
			}
			if !strings.Contains(err.Error(), "/shop/nobody") {
				t.Errorf("error %q does not name the service", err)
			}
			if el := time.Since(start); el > time.Second {
				t.Fatalf("dial ended %v after FailDials", el)
			}
		case <-time.After(3 * time.Second):
			t.Fatal("dial still running 3s after FailDials")
		}
	})
}

// rawDial dials name with a hand-made TLS configuration, as a client that
// does not follow this package's rules would.
func rawDial(ctx context.Context, t testing.TB, ep *Endpoint, name string, tc *tls.Config) error {
	t.Helper()
	pc, err := ep.DialPacket(name)
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	qc, err := quic.Dial(ctx, pc, pc.RemoteAddr(), tc, ep.quicConfig())
	if err != nil {
		return err
	}
	defer qc.CloseWithError(0, "")
	// The server's verdict on our certificate comes after the client's
	// handshake is complete: a stream round trip shows it.
	st, err := qc.OpenStreamSync(ctx)
	if err != nil {
		return err
	}
	if _, err := st.Write([]byte("x")); err != nil {
		return err
	}
	st.Close()
	_, err = io.ReadAll(st)
	return err
}

func TestQUICServerRefuses(t *testing.T) {
	env := newTestEnv(t, 0)
	server := env.pod(podSpec{service: "/shop/cart", instance: 7})
	client := env.pod(podSpec{service: "/shop/web", instance: 1, mod: func(c *Config) { c.HandshakeTimeout = time.Second }})
	serveQUICEcho(t, server)
	own, err := env.ca.IssuePod("/shop/web")
	if err != nil {
		t.Fatal(err)
	}
	otherCA := newTestCA(t, testDomain) // same domain, different key
	foreign, err := otherCA.IssuePod("/shop/web")
	if err != nil {
		t.Fatal(err)
	}
	base := func(cert tls.Certificate, sni string) *tls.Config {
		return &tls.Config{
			MinVersion:         tls.VersionTLS13,
			Certificates:       []tls.Certificate{cert},
			NextProtos:         []string{DefaultALPN},
			ServerName:         sni,
			InsecureSkipVerify: true,
		}
	}
	// A well-behaved raw client works: the test's harness is sound.
	if err := rawDial(testCtx(t, 5*time.Second), t, client, "/shop/cart", base(own.TLSCertificate(), "cart.shop.dmsc")); err != nil {
		t.Fatalf("raw dial with a good certificate: %v", err)
	}
	cases := []struct {
		name string
		tc   *tls.Config
	}{
		{"client certificate of another CA", base(foreign.TLSCertificate(), "cart.shop.dmsc")},
		{"name the server does not own", base(own.TLSCertificate(), "other.shop.dmsc")},
		{"no DMSC name", base(own.TLSCertificate(), "example.com")},
		{"no client certificate", base(tls.Certificate{}, "cart.shop.dmsc")},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.tc.Certificates[0].Certificate == nil {
				tc.tc.Certificates = nil
			}
			before := server.Stats()
			err := rawDial(testCtx(t, 5*time.Second), t, client, "/shop/cart", tc.tc)
			if err == nil {
				t.Fatal("the server accepted")
			}
			after := server.Stats()
			if after.TLSRefused != before.TLSRefused+1 {
				t.Errorf("TLSRefused went %d → %d (err %v)", before.TLSRefused, after.TLSRefused, err)
			}
			if after.Accepted != before.Accepted {
				t.Errorf("the server accepted a connection")
			}
		})
	}
	t.Run("Dial reports the refusal", func(t *testing.T) {
		// A client whose certificate is foreign but who trusts the server:
		// only the server can refuse, and Dial (not a later stream) says so.
		client.tls = &tlsMaterial{cert: foreign.TLSCertificate(), id: foreign.Identity, pool: client.tls.pool, domain: client.tls.domain}
		_, err := client.Dial(testCtx(t, 5*time.Second), "/shop/cart")
		if err == nil {
			t.Fatal("Dial succeeded with a certificate of another CA")
		}
		t.Logf("refused: %v", err)
	})
}

func TestQUICClientRefusesServerOfOtherCA(t *testing.T) {
	env := newTestEnv(t, 0)
	otherCA := newTestCA(t, testDomain)
	server := env.pod(podSpec{service: "/shop/cart", instance: 7, ca: otherCA})
	client := env.pod(podSpec{service: "/shop/web", instance: 1})
	serveQUICEcho(t, server)
	_, err := client.Dial(testCtx(t, 5*time.Second), "/shop/cart")
	var ua x509.UnknownAuthorityError
	if err == nil || !strings.Contains(err.Error(), ua.Error()[:20]) {
		t.Fatalf("dial to a server of another CA: %v, want an unknown-authority error", err)
	}
	if !strings.Contains(err.Error(), "/shop/cart") {
		t.Errorf("error %q does not name the dialed service", err)
	}
}

func TestQUICServerCertDoesNotOwnPrefix(t *testing.T) {
	env := newTestEnv(t, 0)
	rogue := env.pod(podSpec{cert: "/shop/other", service: "/shop/cart", instance: 7})
	client := env.pod(podSpec{service: "/shop/web", instance: 1})
	serveQUICEcho(t, rogue)
	_, err := client.Dial(testCtx(t, 5*time.Second), "/shop/cart")
	if err == nil || !strings.Contains(err.Error(), "does not own the dialed prefix /shop/cart") {
		t.Fatalf("dial: %v, want a refusal naming the prefix", err)
	}
	// An ancestor prefix owns the name: a pod certified for /shop serves
	// /shop/cart.
	env2 := newTestEnv(t, 0)
	parent := env2.pod(podSpec{cert: "/shop", service: "/shop/cart", instance: 3})
	client2 := env2.pod(podSpec{service: "/shop/web", instance: 1})
	serveQUICEcho(t, parent)
	c, err := client2.Dial(testCtx(t, 5*time.Second), "/shop/cart")
	if err != nil {
		t.Fatalf("dial to a pod certified for /shop: %v", err)
	}
	echoOnce(t, c, []byte("hello"))
	c.CloseWithError(0, "")
}

func TestQUICSelfDial(t *testing.T) {
	// A pod calling its own service may be answered by itself: its dial
	// and listener then talk inside the Endpoint.
	env := newTestEnv(t, 0)
	ep := env.pod(podSpec{service: "/shop/cart", instance: 5})
	serveQUICEcho(t, ep)
	c, err := ep.Dial(testCtx(t, 5*time.Second), "/shop/cart")
	if err != nil {
		t.Fatal(err)
	}
	echoOnce(t, c, bytes.Repeat([]byte("me"), 5000))
	self, _ := ep.LocalKey()
	if c.Instance() != self {
		t.Errorf("pinned to %s, want itself %s", c.Instance(), self)
	}
	if ep.Stats().Loopback == 0 {
		t.Error("no datagram went through the loopback")
	}
	c.CloseWithError(0, "")
}

func TestEndpointCloseEndsConnections(t *testing.T) {
	env := newTestEnv(t, 0)
	server := env.pod(podSpec{service: "/shop/cart", instance: 7})
	client := env.pod(podSpec{service: "/shop/web", instance: 1})
	serveQUICEcho(t, server)
	c, err := client.Dial(testCtx(t, 5*time.Second), "/shop/cart")
	if err != nil {
		t.Fatal(err)
	}
	client.Close()
	select {
	case <-c.Context().Done():
	case <-time.After(2 * time.Second):
		t.Fatal("connection alive after the Endpoint closed")
	}
	if _, err := client.Dial(context.Background(), "/shop/cart"); err == nil {
		t.Fatal("Dial on a closed Endpoint succeeded")
	}
}
