package pod

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
	"google.golang.org/grpc/peer"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

func TestGRPCUnaryByName(t *testing.T) {
	env := newTestEnv(t, 0)
	server := env.pod(podSpec{service: "/shop/cart", instance: 7})
	client := env.pod(podSpec{service: "/shop/web", instance: 1})
	serveEcho(t, server)

	cc := dialGRPC(t, client, "/shop/cart")
	var p peer.Peer
	inst, caller, err := who(testCtx(t, 5*time.Second), cc, grpc.Peer(&p))
	if err != nil {
		t.Fatal(err)
	}
	if want := keyOf("/shop/cart").WithInstance(7).String(); inst != want {
		t.Errorf("answered by %s, want instance %s", inst, want)
	}
	if want := "dmsc://" + testDomain + "/shop/web"; caller != want {
		t.Errorf("server saw caller %q, want %q", caller, want)
	}
	// The client sees the server's identity too, in the AuthInfo.
	ai, ok := p.AuthInfo.(AuthInfo)
	if !ok {
		t.Fatalf("client AuthInfo is %T, want pod.AuthInfo", p.AuthInfo)
	}
	if got := ai.Identity.String(); got != "dmsc://"+testDomain+"/shop/cart" {
		t.Errorf("client sees server %q", got)
	}
}

func TestGRPCPeerIdentityWithCredentials(t *testing.T) {
	// With grpc.Creds(TransportCredentials()) the identity comes in the
	// AuthInfo rather than the address; PeerIdentity reads either.
	env := newTestEnv(t, 0)
	server := env.pod(podSpec{service: "/shop/cart", instance: 7})
	client := env.pod(podSpec{service: "/shop/web", instance: 1})
	serveEcho(t, server, grpc.Creds(TransportCredentials()))
	cc := dialGRPC(t, client, "/shop/cart")
	_, caller, err := who(testCtx(t, 5*time.Second), cc)
	if err != nil {
		t.Fatal(err)
	}
	if want := "dmsc://" + testDomain + "/shop/web"; caller != want {
		t.Errorf("server saw caller %q, want %q", caller, want)
	}
}

func TestGRPCStreaming(t *testing.T) {
	env := newTestEnv(t, 2*time.Millisecond) // some latency on every hop
	server := env.pod(podSpec{service: "/shop/cart", instance: 7})
	client := env.pod(podSpec{service: "/shop/web", instance: 1})
	serveEcho(t, server)
	cc := dialGRPC(t, client, "/shop/cart")
	ctx := testCtx(t, 10*time.Second)

	t.Run("server-streaming", func(t *testing.T) {
		st, err := cc.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true}, methodCount)
		if err != nil {
			t.Fatal(err)
		}
		if err := st.SendMsg(wrapperspb.UInt32(50)); err != nil {
			t.Fatal(err)
		}
		if err := st.CloseSend(); err != nil {
			t.Fatal(err)
		}
		for i := 0; ; i++ {
			var m wrapperspb.StringValue
			err := st.RecvMsg(&m)
			if errors.Is(err, io.EOF) {
				if i != 50 {
					t.Fatalf("stream ended after %d messages, want 50", i)
				}
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			if m.Value != fmt.Sprint(i) {
				t.Fatalf("message %d is %q", i, m.Value)
			}
		}
	})
	t.Run("bidi", func(t *testing.T) {
		st, err := cc.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true, ClientStreams: true}, methodEcho)
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 20; i++ {
			msg := bytes.Repeat([]byte{byte(i)}, 100*i+1)
			if err := st.SendMsg(wrapperspb.Bytes(msg)); err != nil {
				t.Fatal(err)
			}
			var m wrapperspb.BytesValue
			if err := st.RecvMsg(&m); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(m.Value, msg) {
				t.Fatalf("echo %d: got %d bytes, want %d", i, len(m.Value), len(msg))
			}
		}
		if err := st.CloseSend(); err != nil {
			t.Fatal(err)
		}
		if err := st.RecvMsg(new(wrapperspb.BytesValue)); !errors.Is(err, io.EOF) {
			t.Fatalf("after CloseSend: %v, want EOF", err)
		}
	})
}

func TestGRPCLargeMessage(t *testing.T) {
	env := newTestEnv(t, 0)
	server := env.pod(podSpec{service: "/shop/cart", instance: 7})
	client := env.pod(podSpec{service: "/shop/web", instance: 1})
	serveEcho(t, server)
	cc := dialGRPC(t, client, "/shop/cart")

	msg := make([]byte, 10<<20)
	if _, err := rand.Read(msg); err != nil {
		t.Fatal(err)
	}
	var out wrapperspb.BytesValue
	if err := cc.Invoke(testCtx(t, 20*time.Second), methodSum, wrapperspb.Bytes(msg), &out); err != nil {
		t.Fatal(err)
	}
	if want := sha256.Sum256(msg); !bytes.Equal(out.Value, want[:]) {
		t.Fatalf("server's SHA-256 %x, want %x", out.Value, want)
	}
}

func TestGRPCConcurrentStreams(t *testing.T) {
	env := newTestEnv(t, 0)
	server := env.pod(podSpec{service: "/shop/cart", instance: 7})
	client := env.pod(podSpec{service: "/shop/web", instance: 1})
	serveEcho(t, server)
	cc := dialGRPC(t, client, "/shop/cart")
	ctx := testCtx(t, 15*time.Second)

	const streams = 100
	var wg sync.WaitGroup
	errs := make(chan error, streams)
	start := make(chan struct{})
	for i := 0; i < streams; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			st, err := cc.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true, ClientStreams: true}, methodEcho)
			if err != nil {
				errs <- err
				return
			}
			for j := 0; j < 5; j++ {
				msg := []byte(fmt.Sprintf("stream %d message %d", i, j))
				if err := st.SendMsg(wrapperspb.Bytes(msg)); err != nil {
					errs <- err
					return
				}
				var m wrapperspb.BytesValue
				if err := st.RecvMsg(&m); err != nil {
					errs <- err
					return
				}
				if !bytes.Equal(m.Value, msg) {
					errs <- fmt.Errorf("stream %d: got %q, want %q", i, m.Value, msg)
					return
				}
			}
			if err := st.CloseSend(); err != nil {
				errs <- err
				return
			}
			if err := st.RecvMsg(new(wrapperspb.BytesValue)); !errors.Is(err, io.EOF) {
				errs <- fmt.Errorf("stream %d end: %v", i, err)
			}
		}()
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestGRPCLoadSharedAcrossDials(t *testing.T) {
	env := newTestEnv(t, 0)
	a := env.pod(podSpec{service: "/shop/cart", instance: 1})
	b := env.pod(podSpec{service: "/shop/cart", instance: 2})
	client := env.pod(podSpec{service: "/shop/web", instance: 1})
	serveEcho(t, a)
	serveEcho(t, b)

	seen := map[string]int{}
	for i := 0; i < 16; i++ {
		cc := dialGRPC(t, client, "/shop/cart")
		inst, _, err := who(testCtx(t, 5*time.Second), cc)
		if err != nil {
			t.Fatal(err)
		}
		// One ClientConn stays with its instance.
		for j := 0; j < 3; j++ {
			again, _, err := who(testCtx(t, 5*time.Second), cc)
			if err != nil {
				t.Fatal(err)
			}
			if again != inst {
				t.Fatalf("dial %d: call %d answered by %s, the first by %s", i, j, again, inst)
			}
		}
		seen[inst]++
		cc.Close()
	}
	// 16 dials with random flow labels all hashing to one of two instances
	// would happen once in 2^15 runs.
	if len(seen) != 2 {
		t.Fatalf("16 dials reached %v, want both instances", seen)
	}
}

func TestGRPCKilledInstanceReplaced(t *testing.T) {
	env := newTestEnv(t, 0)
	fast := func(c *Config) {
		c.IdleTimeout = time.Second
		c.KeepAlivePeriod = 100 * time.Millisecond
	}
	a := env.pod(podSpec{service: "/shop/cart", instance: 1, mod: fast})
	b := env.pod(podSpec{service: "/shop/cart", instance: 2, mod: fast})
	client := env.pod(podSpec{service: "/shop/web", instance: 1, mod: fast})
	serveEcho(t, a)
	serveEcho(t, b)
	keys := map[string]bool{}
	for _, ep := range []*Endpoint{a, b} {
		k, _ := ep.LocalKey()
		keys[k.String()] = true
	}

	cc := dialGRPC(t, client, "/shop/cart")
	first, _, err := who(testCtx(t, 5*time.Second), cc)
	if err != nil {
		t.Fatal(err)
	}
	if !keys[first] {
		t.Fatalf("answered by unknown instance %s", first)
	}
	var victim, other string
	for k := range keys {
		if k == first {
			victim = k
		} else {
			other = k
		}
	}
	vk := parseKeyT(t, victim)
	env.fab.kill(vk)

	// A new call on a new dial goes to the other instance.
	cc2 := dialGRPC(t, client, "/shop/cart")
	got, _, err := who(testCtx(t, 5*time.Second), cc2)
	if err != nil {
		t.Fatal(err)
	}
	if got != other {
		t.Fatalf("after killing %s, a new dial reached %s, want %s", victim, got, other)
	}

	// The old ClientConn notices the dead connection (idle timeout), and
	// its reconnect is a fresh dial that reaches the survivor.
	ctx := testCtx(t, 8*time.Second)
	for {
		cctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		got, _, err := who(cctx, cc, grpc.WaitForReady(true))
		cancel()
		if err == nil {
			if got != other {
				t.Fatalf("old client reconnected to %s, want %s", got, other)
			}
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("old client never recovered: %v", err)
		}
	}
}

func TestGRPCDialUnknownService(t *testing.T) {
	env := newTestEnv(t, 0)
	client := env.pod(podSpec{service: "/shop/web", instance: 1, mod: func(c *Config) { c.HandshakeTimeout = 300 * time.Millisecond }})
	start := time.Now()
	_, err := DialGRPC(context.Background(), client, "/shop/nobody")
	if !errors.Is(err, ErrHandshakeTimeout) {
		t.Fatalf("DialGRPC to a name no one serves: %v, want ErrHandshakeTimeout", err)
	}
	if el := time.Since(start); el > 2*time.Second {
		t.Fatalf("took %v, the handshake timeout is 300ms", el)
	}
	if !strings.Contains(err.Error(), "/shop/nobody") {
		t.Errorf("error %q does not name the service", err)
	}
}

func TestGRPCServerCertDoesNotOwnPrefix(t *testing.T) {
	env := newTestEnv(t, 0)
	// The fabric delivers /shop/cart to a pod whose certificate is for
	// /shop/other (a stale route, a rogue pod).
	rogue := env.pod(podSpec{cert: "/shop/other", service: "/shop/cart", instance: 7})
	client := env.pod(podSpec{service: "/shop/web", instance: 1})
	serveEcho(t, rogue)
	_, err := DialGRPC(testCtx(t, 5*time.Second), client, "/shop/cart")
	if err == nil {
		t.Fatal("DialGRPC accepted a server whose certificate is for /shop/other")
	}
	for _, want := range []string{"/shop/cart", "/shop/other", "does not own"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}
