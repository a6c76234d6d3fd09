package pod

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dmsc-mesh/dmsc/ca"
	"github.com/dmsc-mesh/dmsc/pod/podtest"
	"github.com/dmsc-mesh/dmsc/softswitch"
	"github.com/dmsc-mesh/dmsc/wire"
)

// sgFixture is a pod Endpoint whose link ends at a fake SG.
type sgFixture struct {
	t   testing.TB
	ca  *ca.CA
	pod *ca.Issued // /shop/cart
	sg  *podtest.FakeSG
	ep  *Endpoint
}

// newSGFixture: keepalives every 20 ms and a hold of 300 ms unless sgc says
// otherwise; mod adjusts the Endpoint's Config.
func newSGFixture(t testing.TB, sgc podtest.Config, mod func(*Config)) *sgFixture {
	t.Helper()
	authority := newTestCA(t, testDomain)
	issued, err := authority.IssuePod("/shop/cart")
	if err != nil {
		t.Fatal(err)
	}
	podEnd, sgEnd := softswitch.NewMemPair()
	if sgc.CA == nil {
		sgc.CA = authority.Cert
	}
	if sgc.Keepalive == 0 {
		sgc.Keepalive = 20 * time.Millisecond
	}
	if sgc.Hold == 0 {
		sgc.Hold = 300 * time.Millisecond
	}
	sg, err := podtest.New(sgEnd, sgc)
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{
		Port: podEnd, CA: authority.Cert, Certificate: issued.TLSCertificate(),
		HandshakeTimeout: 400 * time.Millisecond, ResolveTimeout: 100 * time.Millisecond,
		Logger: slog.New(slog.DiscardHandler),
	}
	if mod != nil {
		mod(&cfg)
	}
	ep, err := NewEndpoint(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ep.Close()
		sg.Close()
	})
	return &sgFixture{t: t, ca: authority, pod: issued, sg: sg, ep: ep}
}

func (fx *sgFixture) announce(cfg AnnounceConfig) *Registration {
	fx.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	reg, err := fx.ep.Announce(ctx, cfg)
	if err != nil {
		fx.t.Fatal(err)
	}
	return reg
}

// watch records every status a registration passes through until the
// test ends.
func watch(t testing.TB, reg *Registration) func() []RegStatus {
	var mu sync.Mutex
	var seen []RegStatus
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			ch := reg.Changed()
			st := reg.Status()
			mu.Lock()
			seen = append(seen, st)
			mu.Unlock()
			select {
			case <-ch:
			case <-stop:
				return
			}
		}
	}()
	t.Cleanup(func() { close(stop); wg.Wait() })
	return func() []RegStatus {
		mu.Lock()
		defer mu.Unlock()
		return append([]RegStatus(nil), seen...)
	}
}

func TestAnnounceRegistersAndKeepsAlive(t *testing.T) {
	fx := newSGFixture(t, podtest.Config{}, nil)
	reg := fx.announce(AnnounceConfig{})
	st := reg.Status()
	if st.State != StateRegistered || st.Registrations != 1 || st.Prefix != "/shop/cart" ||
		st.Keepalive != 20*time.Millisecond || st.Hold != 300*time.Millisecond || st.LastError != nil {
		t.Fatalf("status %+v", st)
	}
	insts := fx.sg.Instances()
	if len(insts) != 1 || insts[0] != st.Instance || st.Instance.WithInstance(0) != keyOf("/shop/cart") {
		t.Fatalf("SG holds %v, pod has %s", insts, st.Instance)
	}
	if k, ok := fx.ep.LocalKey(); !ok || k != st.Instance {
		t.Fatalf("local key %s %v, want %s", k, ok, st.Instance)
	}
	waitFor(t, 3*time.Second, "keepalive echoes", func() bool { return fx.ep.AnnounceStats().KeepaliveEchoes >= 3 })

	// Every pod frame is a link-local CONTROL frame to the zero key; the
	// source is zero until ACCEPT and the instance key afterwards.
	var keepalives int
	for _, f := range fx.sg.Seen() {
		h := f.Hdr
		if h.Type != wire.TypeControl || h.NextProto != wire.ProtoControl || h.HopLimit != 1 || !h.Dst.IsZero() {
			t.Fatalf("pod frame %+v", h)
		}
		switch f.MsgType {
		case wire.PodAnnounce, wire.PodProof:
			if !h.Src.IsZero() {
				t.Fatalf("%d sent from %s before registration", f.MsgType, h.Src)
			}
		case wire.PodKeepalive:
			keepalives++
			m, err := wire.DecodeInstanceMsg(f.Body)
			if err != nil || m.Instance != st.Instance || h.Src != st.Instance {
				t.Fatalf("KEEPALIVE %+v from %s (%v)", m, h.Src, err)
			}
		default:
			t.Fatalf("unexpected message type %d", f.MsgType)
		}
	}
	if keepalives < 3 || fx.sg.Count(wire.PodAnnounce) != 1 || fx.sg.Count(wire.PodProof) != 1 {
		t.Fatalf("%d keepalives, %d ANNOUNCE, %d PROOF", keepalives, fx.sg.Count(wire.PodAnnounce), fx.sg.Count(wire.PodProof))
	}
	if s := fx.ep.AnnounceStats(); s.Registrations != 1 || s.Accepts != 1 || s.Lost != 0 || s.Retransmits != 0 {
		t.Fatalf("stats %+v", s)
	}
	// One registration per Endpoint.
	if _, err := fx.ep.Announce(context.Background(), AnnounceConfig{Prefix: "/shop/cart/v2"}); !errors.Is(err, ErrRegistered) {
		t.Fatalf("second Announce: %v, want ErrRegistered", err)
	}
}

func TestAnnounceFinalReject(t *testing.T) {
	for _, tc := range []struct {
		reason wire.PodReason
		name   string
	}{
		{10, "PREFIX_OUTSIDE_CERT"},
		{5, "CERT_UNTRUSTED"},
		{15, "POLICY_NOT_ALLOWED"},
		{16, "KEY_COLLISION"},
		{wire.ReasonPortBusy, "port_busy"},
		{wire.ReasonSPAUnavailable, "spa_unavailable"}, // without RetryAfter: final
	} {
		t.Run(tc.name, func(t *testing.T) {
			fx := newSGFixture(t, podtest.Config{}, nil)
			fx.sg.RejectNext(wire.Reject{Reason: tc.reason, Text: "the test says no"})
			reg, err := fx.ep.Announce(testCtx(t, 5*time.Second), AnnounceConfig{})
			if err == nil {
				t.Fatalf("accepted: %+v", reg.Status())
			}
			var rej *RejectError
			if !errors.As(err, &rej) || rej.Reason != tc.reason || rej.Temporary() {
				t.Fatalf("error %v (%T), want a final *RejectError %d", err, err, tc.reason)
			}
			for _, want := range []string{tc.name, "the test says no", "/shop/cart"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not name %q", err, want)
				}
			}
			if _, ok := fx.ep.LocalKey(); ok {
				t.Error("a rejected pod has a local key")
			}
			if n := fx.sg.Count(wire.PodAnnounce); n != 1 {
				t.Errorf("%d ANNOUNCEs after a final reject, want 1", n)
			}
			// The Endpoint is free for another announcement.
			reg = fx.announce(AnnounceConfig{})
			if reg.Status().State != StateRegistered {
				t.Fatalf("after the reject: %+v", reg.Status())
			}
		})
	}
	t.Run("real untrusted certificate", func(t *testing.T) {
		other := newTestCA(t, testDomain) // same domain, another key
		is, err := other.IssuePod("/shop/cart")
		if err != nil {
			t.Fatal(err)
		}
		fx := newSGFixture(t, podtest.Config{}, func(c *Config) { c.CA, c.Certificate = other.Cert, is.TLSCertificate() })
		_, err = fx.ep.Announce(testCtx(t, 5*time.Second), AnnounceConfig{})
		var rej *RejectError
		if !errors.As(err, &rej) || rej.Reason != 5 || !strings.Contains(err.Error(), "CERT_UNTRUSTED") {
			t.Fatalf("error %v, want CERT_UNTRUSTED", err)
		}
	})
}

func TestAnnounceTemporaryRejectRetried(t *testing.T) {
	fx := newSGFixture(t, podtest.Config{}, nil)
	for range 2 {
		fx.sg.RejectNext(wire.Reject{Reason: wire.ReasonSPAUnavailable, RetryAfter: 50 * time.Millisecond, Text: "SPA is down"})
	}
	start := time.Now()
	reg := fx.announce(AnnounceConfig{})
	if d := time.Since(start); d < 100*time.Millisecond {
		t.Fatalf("registered after %v: the two RetryAfters of 50 ms were not waited", d)
	}
	if st := reg.Status(); st.State != StateRegistered || st.LastError != nil {
		t.Fatalf("status %+v", st)
	}
	if a, p := fx.sg.Count(wire.PodAnnounce), fx.sg.Count(wire.PodProof); a != 3 || p != 3 {
		t.Fatalf("%d ANNOUNCE, %d PROOF, want 3 each", a, p)
	}
	if s := fx.ep.AnnounceStats(); s.Rejects != 2 || s.Accepts != 1 {
		t.Fatalf("stats %+v", s)
	}

	t.Run("until the context ends", func(t *testing.T) {
		fx := newSGFixture(t, podtest.Config{}, nil)
		for range 100 {
			fx.sg.RejectNext(wire.Reject{Reason: wire.ReasonSPAUnavailable, RetryAfter: 20 * time.Millisecond})
		}
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		_, err := fx.ep.Announce(ctx, AnnounceConfig{})
		if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "spa_unavailable") {
			t.Fatalf("error %v, want the deadline and the last refusal", err)
		}
		if n := fx.sg.Count(wire.PodAnnounce); n < 3 {
			t.Fatalf("%d ANNOUNCEs in 300 ms of 20 ms refusals", n)
		}
	})
}

func TestAnnounceRetransmits(t *testing.T) {
	t.Run("lost ANNOUNCE and PROOF", func(t *testing.T) {
		fx := newSGFixture(t, podtest.Config{}, nil)
		fx.sg.DropNext(wire.PodAnnounce, 1)
		fx.sg.DropNext(wire.PodProof, 1)
		start := time.Now()
		fx.announce(AnnounceConfig{}) // the default 300 ms
		if d := time.Since(start); d < 550*time.Millisecond {
			t.Fatalf("registered after %v, before two 300 ms retransmission timeouts", d)
		}
		if a, p := fx.sg.Count(wire.PodAnnounce), fx.sg.Count(wire.PodProof); a != 2 || p != 2 {
			t.Fatalf("%d ANNOUNCE, %d PROOF, want 2 each", a, p)
		}
		if s := fx.ep.AnnounceStats(); s.Retransmits != 2 {
			t.Fatalf("stats %+v", s)
		}
	})
	t.Run("PROOF lost until a fresh challenge", func(t *testing.T) {
		fx := newSGFixture(t, podtest.Config{}, nil)
		fx.sg.DropNext(wire.PodProof, maxProofSends)
		fx.announce(AnnounceConfig{RetransmitTimeout: 30 * time.Millisecond})
		if a, p := fx.sg.Count(wire.PodAnnounce), fx.sg.Count(wire.PodProof); a != 2 || p != maxProofSends+1 {
			t.Fatalf("%d ANNOUNCE, %d PROOF, want 2 and %d", a, p, maxProofSends+1)
		}
	})
	t.Run("expired challenges", func(t *testing.T) {
		// Every PROOF comes too late: 102, a fresh challenge, up to the
		// limit, then the reason.
		fx := newSGFixture(t, podtest.Config{ChallengeTTL: time.Nanosecond}, nil)
		_, err := fx.ep.Announce(testCtx(t, 5*time.Second), AnnounceConfig{})
		var rej *RejectError
		if !errors.As(err, &rej) || rej.Reason != wire.ReasonNoChallenge || !strings.Contains(err.Error(), "no_challenge") {
			t.Fatalf("error %v, want no_challenge", err)
		}
		if n := fx.sg.Count(wire.PodAnnounce); n != 1+maxFreshChallenges {
			t.Fatalf("%d ANNOUNCEs, want %d", n, 1+maxFreshChallenges)
		}
	})
	t.Run("no SG", func(t *testing.T) {
		fx := newSGFixture(t, podtest.Config{}, nil)
		fx.sg.SetSilent(true)
		start := time.Now()
		_, err := fx.ep.Announce(context.Background(), AnnounceConfig{RetransmitTimeout: 40 * time.Millisecond, AttemptTimeout: 500 * time.Millisecond})
		if !errors.Is(err, ErrNoAnswer) || !strings.Contains(err.Error(), "CHALLENGE") {
			t.Fatalf("error %v, want ErrNoAnswer", err)
		}
		if d := time.Since(start); d < 500*time.Millisecond {
			t.Fatalf("gave up after %v, before AttemptTimeout", d)
		}
		// Sent at 0, 40, 120, 280 ms (doubling), the next would be at 600.
		if n := fx.sg.Count(wire.PodAnnounce); n != 4 {
			t.Fatalf("%d ANNOUNCEs in 500 ms, want 4", n)
		}
	})
	t.Run("no SG until the deadline", func(t *testing.T) {
		fx := newSGFixture(t, podtest.Config{}, nil)
		fx.sg.SetSilent(true)
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		_, err := fx.ep.Announce(ctx, AnnounceConfig{})
		if !errors.Is(err, ErrNoAnswer) || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("error %v, want ErrNoAnswer at the deadline", err)
		}
	})
}

func TestAnnounceIgnoresStrayAnswers(t *testing.T) {
	fx := newSGFixture(t, podtest.Config{}, nil)
	fx.sg.SetSilent(true)
	type result struct {
		reg *Registration
		err error
	}
	done := make(chan result, 1)
	go func() {
		reg, err := fx.ep.Announce(testCtx(t, 5*time.Second), AnnounceConfig{RetransmitTimeout: 100 * time.Millisecond})
		done <- result{reg, err}
	}()
	waitFor(t, 2*time.Second, "the ANNOUNCE", func() bool { return fx.sg.Count(wire.PodAnnounce) >= 1 })
	// Before any PROOF: an ACCEPT is no answer; a CHALLENGE of another
	// prefix is not ours; garbage does not decode.
	stray := keyOf("/shop/cart").WithInstance(999)
	send := func(typ uint8, m interface{ Append([]byte) ([]byte, error) }) {
		b, err := m.Append(nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := fx.sg.Send(typ, b); err != nil {
			t.Fatal(err)
		}
	}
	send(wire.PodAccept, wire.Accept{Prefix: "/shop/cart", Instance: stray, Keepalive: time.Second, Hold: 3 * time.Second})
	send(wire.PodChallenge, wire.Challenge{Prefix: "/shop/web", SG: "sg1", Port: 1})
	send(wire.PodReject, wire.Reject{Prefix: "/shop/web", Reason: 15})
	if err := fx.sg.Send(wire.PodChallenge, []byte{0xff}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 2*time.Second, "the strays counted", func() bool {
		s := fx.ep.AnnounceStats()
		return s.Ignored >= 3 && s.Malformed >= 1
	})
	fx.sg.SetSilent(false)
	r := <-done
	if r.err != nil {
		t.Fatal(r.err)
	}
	if inst := r.reg.Instance(); inst == stray || len(fx.sg.Instances()) != 1 || fx.sg.Instances()[0] != inst {
		t.Fatalf("registered as %s; the SG holds %v", inst, fx.sg.Instances())
	}
	// Registered: strays change nothing either.
	send(wire.PodKeepalive, wire.InstanceMsg{Instance: stray})
	send(wire.PodAccept, wire.Accept{Prefix: "/shop/cart", Instance: stray, Keepalive: time.Second, Hold: 3 * time.Second})
	send(wire.PodReject, wire.Reject{Prefix: "/shop/cart", Reason: 15})
	before := fx.ep.AnnounceStats().Ignored
	waitFor(t, 2*time.Second, "the strays counted", func() bool { return fx.ep.AnnounceStats().Ignored >= before+3 })
	if st := r.reg.Status(); st.State != StateRegistered || st.Registrations != 1 || st.Instance == stray {
		t.Fatalf("status %+v", st)
	}
}

func TestReannounceWhenSGSilent(t *testing.T) {
	fx := newSGFixture(t, podtest.Config{Hold: 200 * time.Millisecond}, nil)
	reg := fx.announce(AnnounceConfig{BackoffMin: 20 * time.Millisecond})
	statuses := watch(t, reg)
	first := reg.Instance()
	fx.sg.SetEcho(false)
	lostAt := time.Now()
	waitFor(t, 3*time.Second, "re-announcing", func() bool { return reg.Status().State == StateReannouncing })
	if d := time.Since(lostAt); d < 150*time.Millisecond {
		t.Fatalf("registration lost after %v, before the 200 ms hold", d)
	}
	if err := reg.Status().LastError; !errors.Is(err, ErrSGSilent) {
		t.Fatalf("LastError %v, want ErrSGSilent", err)
	}
	fx.sg.SetEcho(true)
	waitFor(t, 3*time.Second, "re-registration", func() bool {
		st := reg.Status()
		return st.State == StateRegistered && st.Registrations == 2
	})
	second := reg.Instance()
	if second == first || second.WithInstance(0) != keyOf("/shop/cart") {
		t.Fatalf("instance %s after %s: want a new one", second, first)
	}
	if k, _ := fx.ep.LocalKey(); k != second {
		t.Fatalf("local key %s, want %s", k, second)
	}
	echoes := fx.ep.AnnounceStats().KeepaliveEchoes
	waitFor(t, 2*time.Second, "keepalives of the new instance", func() bool { return fx.ep.AnnounceStats().KeepaliveEchoes >= echoes+3 })
	if s := fx.ep.AnnounceStats(); s.Lost != 1 || s.Registrations != 2 {
		t.Fatalf("stats %+v", s)
	}
	// registered → reannouncing → registered, each change seen.
	var states []RegState
	for _, st := range statuses() {
		if len(states) == 0 || states[len(states)-1] != st.State {
			states = append(states, st.State)
		}
	}
	if want := []RegState{StateRegistered, StateReannouncing, StateRegistered}; !slicesEqual(states, want) {
		t.Fatalf("states %v, want %v", states, want)
	}
}

func slicesEqual[T comparable](a, b []T) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestReannounceWhenSGForgets(t *testing.T) {
	// A hold of 5 s: only the 106 answer can make the pod re-announce
	// within the test's second.
	fx := newSGFixture(t, podtest.Config{Hold: 5 * time.Second}, nil)
	reg := fx.announce(AnnounceConfig{})
	first := reg.Instance()
	fx.sg.Forget()
	start := time.Now()
	waitFor(t, time.Second, "re-registration", func() bool { return reg.Status().Registrations == 2 })
	t.Logf("re-registered %v after the SG forgot", time.Since(start))
	st := reg.Status()
	if st.State != StateRegistered || st.Instance == first {
		t.Fatalf("status %+v after %s", st, first)
	}
	if insts := fx.sg.Instances(); len(insts) != 1 || insts[0] != st.Instance {
		t.Fatalf("SG holds %v", insts)
	}
	if s := fx.ep.AnnounceStats(); s.Lost != 1 || s.Rejects < 1 {
		t.Fatalf("stats %+v", s)
	}
}

func TestWithdraw(t *testing.T) {
	t.Run("on Close", func(t *testing.T) {
		fx := newSGFixture(t, podtest.Config{}, nil)
		reg := fx.announce(AnnounceConfig{})
		inst := reg.Instance()
		if err := fx.ep.Close(); err != nil {
			t.Fatal(err)
		}
		select {
		case <-reg.Done():
		default:
			t.Fatal("registration still running after Close")
		}
		if n := fx.sg.Count(wire.PodWithdraw); n != 1 {
			t.Fatalf("%d WITHDRAWs, want 1", n)
		}
		for _, f := range fx.sg.Seen() {
			if f.MsgType == wire.PodWithdraw {
				m, err := wire.DecodeInstanceMsg(f.Body)
				if err != nil || m.Instance != inst {
					t.Fatalf("WITHDRAW of %s (%v), want %s", m.Instance, err, inst)
				}
			}
		}
		if insts := fx.sg.Instances(); len(insts) != 0 {
			t.Fatalf("SG still holds %v", insts)
		}
		if st := reg.Status(); st.State != StateWithdrawn || reg.Err() != nil || st.LastError != nil {
			t.Fatalf("status %+v, err %v", st, reg.Err())
		}
		ka := fx.sg.Count(wire.PodKeepalive)
		time.Sleep(60 * time.Millisecond)
		if n := fx.sg.Count(wire.PodKeepalive); n != ka {
			t.Fatalf("keepalives go on after Close: %d → %d", ka, n)
		}
		if _, err := fx.ep.Announce(context.Background(), AnnounceConfig{}); !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Announce after Close: %v", err)
		}
	})
	t.Run("unconfirmed", func(t *testing.T) {
		fx := newSGFixture(t, podtest.Config{}, nil)
		reg := fx.announce(AnnounceConfig{WithdrawTimeout: 200 * time.Millisecond})
		fx.sg.SetSilent(true)
		start := time.Now()
		err := reg.Withdraw(context.Background())
		if !errors.Is(err, ErrWithdrawUnconfirmed) {
			t.Fatalf("Withdraw: %v, want ErrWithdrawUnconfirmed", err)
		}
		if d := time.Since(start); d < 200*time.Millisecond {
			t.Fatalf("gave up after %v", d)
		}
		if n := fx.sg.Count(wire.PodWithdraw); n != 2 {
			t.Fatalf("%d WITHDRAWs, want 2 (one retransmission)", n)
		}
		if _, ok := fx.ep.LocalKey(); ok {
			t.Fatal("local key kept after the withdrawal")
		}
		if err := reg.Withdraw(context.Background()); !errors.Is(err, ErrWithdrawUnconfirmed) {
			t.Fatalf("second Withdraw: %v", err)
		}
	})
	t.Run("then announce again", func(t *testing.T) {
		fx := newSGFixture(t, podtest.Config{}, nil)
		reg := fx.announce(AnnounceConfig{})
		first := reg.Instance()
		if err := reg.Withdraw(context.Background()); err != nil {
			t.Fatal(err)
		}
		if _, ok := fx.ep.LocalKey(); ok {
			t.Fatal("local key kept after the withdrawal")
		}
		reg2 := fx.announce(AnnounceConfig{Prefix: "/shop/cart/v2"})
		if k, _ := fx.ep.LocalKey(); k != reg2.Instance() || k == first || k.WithInstance(0) != keyOf("/shop/cart/v2") {
			t.Fatalf("local key %s, registration %s", k, reg2.Instance())
		}
	})
}

func TestResolve(t *testing.T) {
	fx := newSGFixture(t, podtest.Config{}, nil)
	up, down := keyOf("/shop/cart"), keyOf("/shop/gone")
	fx.sg.SetRoute(up, true, 7)
	fx.sg.SetRoute(down, false, 0)
	// Before registration too.
	ok, metric, err := fx.ep.Resolve(testCtx(t, time.Second), up)
	if err != nil || !ok || metric != 7 {
		t.Fatalf("Resolve(up): %v %d %v", ok, metric, err)
	}
	fx.announce(AnnounceConfig{})
	for _, k := range []wire.Key{down, keyOf("/never/heard")} {
		if ok, _, err := fx.ep.Resolve(testCtx(t, time.Second), k); err != nil || ok {
			t.Fatalf("Resolve(%s): %v %v, want unreachable", k, ok, err)
		}
	}
	fx.sg.SetResolve(false)
	start := time.Now()
	_, _, err = fx.ep.Resolve(testCtx(t, time.Second), up)
	if !errors.Is(err, ErrResolveTimeout) {
		t.Fatalf("Resolve of an old SG: %v, want ErrResolveTimeout", err)
	}
	if d := time.Since(start); d < 100*time.Millisecond || d > 600*time.Millisecond {
		t.Fatalf("timed out after %v, want the 100 ms ResolveTimeout", d)
	}
	if n := fx.sg.Count(wire.PodResolve); n != 5 { // 1 + 2 answered, 2 for the timeout
		t.Fatalf("%d RESOLVEs, want 5", n)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, _, err := fx.ep.Resolve(ctx, up); !errors.Is(err, context.Canceled) {
		t.Fatalf("Resolve with a cancelled context: %v", err)
	}
	if s := fx.ep.AnnounceStats(); s.Resolved != 3 || s.ResolveTimeouts != 1 {
		t.Fatalf("stats %+v", s)
	}
}

func TestDialAsksForRoute(t *testing.T) {
	fx := newSGFixture(t, podtest.Config{}, nil)
	// Not registered: no RESOLVE (the fabric of the other tests has no SG).
	if _, err := fx.ep.Dial(testCtx(t, 2*time.Second), "/shop/missing"); !errors.Is(err, ErrNoLocalKey) {
		t.Fatalf("Dial before registration: %v", err)
	}
	if n := fx.sg.Count(wire.PodResolve); n != 0 {
		t.Fatalf("%d RESOLVEs before registration", n)
	}
	fx.announce(AnnounceConfig{})
	fx.sg.SetRoute(keyOf("/shop/up"), true, 1)

	start := time.Now()
	_, err := fx.ep.Dial(testCtx(t, 2*time.Second), "/shop/missing")
	var nr *NoRouteError
	if !errors.Is(err, ErrNoRoute) || !errors.As(err, &nr) || nr.Name != "/shop/missing" || !strings.Contains(err.Error(), "no route to /shop/missing") {
		t.Fatalf("Dial of an unreachable name: %v", err)
	}
	if d := time.Since(start); d > 200*time.Millisecond {
		t.Fatalf("no route took %v: not at once", d)
	}
	if _, err := DialGRPC(testCtx(t, 2*time.Second), fx.ep, "/shop/missing"); !errors.Is(err, ErrNoRoute) {
		t.Fatalf("DialGRPC of an unreachable name: %v", err)
	}
	// A route: the dial goes ahead (and times out: nobody serves it here).
	if _, err := fx.ep.Dial(testCtx(t, 2*time.Second), "/shop/up"); !errors.Is(err, ErrHandshakeTimeout) {
		t.Fatalf("Dial of a reachable name: %v, want ErrHandshakeTimeout", err)
	}
	// An SG that does not answer RESOLVE: the dial goes ahead too.
	fx.sg.SetResolve(false)
	if _, err := fx.ep.Dial(testCtx(t, 2*time.Second), "/shop/missing"); !errors.Is(err, ErrHandshakeTimeout) {
		t.Fatalf("Dial without a RESOLVED: %v, want ErrHandshakeTimeout", err)
	}
	if st := fx.ep.Stats(); st.Dials != 5 || st.DialErrors != 5 {
		t.Fatalf("dial stats %+v", st)
	}

	t.Run("NoResolve", func(t *testing.T) {
		fx := newSGFixture(t, podtest.Config{}, func(c *Config) { c.NoResolve = true })
		fx.announce(AnnounceConfig{})
		if _, err := fx.ep.Dial(testCtx(t, 2*time.Second), "/shop/missing"); !errors.Is(err, ErrHandshakeTimeout) {
			t.Fatalf("Dial: %v, want ErrHandshakeTimeout", err)
		}
		if n := fx.sg.Count(wire.PodResolve); n != 0 {
			t.Fatalf("%d RESOLVEs with NoResolve", n)
		}
	})
}

func TestAnnounceConfigErrors(t *testing.T) {
	fx := newSGFixture(t, podtest.Config{}, nil)
	node, err := fx.ca.IssueNode("sg1", ca.RoleSG)
	if err != nil {
		t.Fatal(err)
	}
	other, err := fx.ca.IssuePod("/shop/cart")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		cfg  AnnounceConfig
		want string
	}{
		{"bad prefix", AnnounceConfig{Prefix: "/Shop"}, "Shop"},
		{"prefix outside the certificate", AnnounceConfig{Prefix: "/shop/web"}, "outside the certificate's /shop/cart"},
		{"parent prefix", AnnounceConfig{Prefix: "/shop"}, "outside"},
		{"node namespace", AnnounceConfig{Prefix: "/_node/sg1"}, "_node"},
		{"node certificate", AnnounceConfig{Chain: [][]byte{node.Cert.Raw}, Key: node.Key}, "not a pod"},
		{"key of another certificate", AnnounceConfig{Key: other.Key}, "does not belong"},
		{"garbage certificate", AnnounceConfig{Chain: [][]byte{{1, 2, 3}}, Key: other.Key}, "certificate"},
		{"negative timer", AnnounceConfig{RetransmitTimeout: -1}, "RetransmitTimeout"},
		{"backoff upside down", AnnounceConfig{BackoffMin: time.Second, BackoffMax: time.Millisecond}, "BackoffMax"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := fx.ep.Announce(context.Background(), tc.cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
	if n := fx.sg.Count(wire.PodAnnounce); n != 0 {
		t.Fatalf("%d ANNOUNCEs sent for bad configurations", n)
	}
	bare, _ := bareEndpoint(t)
	if _, err := bare.Announce(context.Background(), AnnounceConfig{}); err == nil || !strings.Contains(err.Error(), "no certificate") {
		t.Fatalf("Announce without a certificate: %v", err)
	}
}

func TestRekeyClosesConnections(t *testing.T) {
	env := newTestEnv(t, 0)
	server := env.pod(podSpec{service: "/shop/cart", instance: 7})
	client := env.pod(podSpec{service: "/shop/web", instance: 1})
	serveQUICEcho(t, server)
	c, err := client.Dial(testCtx(t, 5*time.Second), "/shop/cart")
	if err != nil {
		t.Fatal(err)
	}
	echoOnce(t, c, []byte("before"))
	if n := client.closeConnsAfterRekey(); n != 1 {
		t.Fatalf("closed %d connections, want 1", n)
	}
	select {
	case <-c.Context().Done():
	case <-time.After(2 * time.Second):
		t.Fatal("connection still open")
	}
	waitFor(t, 2*time.Second, "the server side closed", func() bool {
		ln := server.listener
		ln.mu.Lock()
		defer ln.mu.Unlock()
		return len(ln.accepted) == 0
	})
}

func TestGoroutinesStopAfterAnnounce(t *testing.T) {
	base := runtime.NumGoroutine()
	t.Run("lifecycle", func(t *testing.T) {
		fx := newSGFixture(t, podtest.Config{Hold: 100 * time.Millisecond}, nil)
		reg := fx.announce(AnnounceConfig{BackoffMin: 10 * time.Millisecond})
		fx.sg.Forget()
		waitFor(t, 2*time.Second, "re-registration", func() bool { return reg.Status().Registrations == 2 })
		if _, _, err := fx.ep.Resolve(testCtx(t, time.Second), keyOf("/x")); err != nil {
			t.Fatal(err)
		}
		fx.sg.SetEcho(false) // closed while re-announcing, or just before
		time.Sleep(150 * time.Millisecond)
	})
	t.Run("failed announcement", func(t *testing.T) {
		fx := newSGFixture(t, podtest.Config{}, nil)
		fx.sg.RejectNext(wire.Reject{Reason: 15})
		if _, err := fx.ep.Announce(testCtx(t, time.Second), AnnounceConfig{}); err == nil {
			t.Fatal("accepted")
		}
	})
	t.Run("final reject while re-announcing", func(t *testing.T) {
		fx := newSGFixture(t, podtest.Config{}, nil)
		reg := fx.announce(AnnounceConfig{})
		fx.sg.RejectNext(wire.Reject{Reason: 8, Text: "revoked"})
		fx.sg.Forget()
		select {
		case <-reg.Done():
		case <-time.After(2 * time.Second):
			t.Fatal("registration still running after a final reject")
		}
		var rej *RejectError
		if err := reg.Err(); !errors.As(err, &rej) || !strings.Contains(err.Error(), "CERT_REVOKED") {
			t.Fatalf("Err %v, want CERT_REVOKED", err)
		}
		if st := reg.Status(); st.State != StateFailed {
			t.Fatalf("status %+v", st)
		}
		if _, ok := fx.ep.LocalKey(); ok {
			t.Fatal("local key kept after the registration failed")
		}
		if err := reg.Withdraw(context.Background()); err != nil {
			t.Fatalf("Withdraw of a failed registration: %v", err)
		}
	})
	goroutinesSettle(t, base)
}

func TestReasonName(t *testing.T) {
	for r, want := range map[wire.PodReason]string{
		10: "PREFIX_OUTSIDE_CERT", 16: "KEY_COLLISION", 99: "spa_reason_99",
		100: "spa_unavailable", 106: "unknown_instance", 250: "reason_250",
	} {
		if got := ReasonName(r); got != want {
			t.Errorf("ReasonName(%d) = %q, want %q", r, got, want)
		}
	}
}

// podFiles writes a CA and a /shop/cart pod certificate under dir.
func podFiles(t testing.TB, dir string) (caFile string, is *ca.Issued) {
	t.Helper()
	if _, err := ca.Init(dir, testDomain); err != nil {
		t.Fatal(err)
	}
	is, err := ca.IssuePod(dir, "/shop/cart")
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(dir, ca.CertFile), is
}

// udpSG is a fake SG on a UDP tunnel on loopback; it returns the pod's link
// spec.
func udpSG(t testing.TB, caCert string, cfg podtest.Config) (*podtest.FakeSG, string) {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Skip("UDP tunnels need Linux")
	}
	c, _, err := ca.LoadCert(caCert)
	if err != nil {
		t.Fatal(err)
	}
	// The pod's address, reserved for a moment to learn a free port.
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
	cfg.CA = c
	sg, err := podtest.New(port, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sg.Close)
	return sg, "udp:" + podAddr + "," + port.LocalAddr().String()
}

func TestAttachFromFiles(t *testing.T) {
	dir := t.TempDir()
	caFile, is := podFiles(t, dir)
	sg, link := udpSG(t, caFile, podtest.Config{Keepalive: 20 * time.Millisecond, Hold: 500 * time.Millisecond})
	ep, reg, err := Attach(testCtx(t, 5*time.Second), AttachConfig{
		Link: link, CA: caFile, Cert: is.CertPath, Key: is.KeyPath,
		Endpoint: Config{Logger: slog.New(slog.DiscardHandler)},
	})
	if err != nil {
		t.Fatal(err)
	}
	if k, ok := ep.LocalKey(); !ok || k != reg.Instance() || reg.Prefix() != "/shop/cart" {
		t.Fatalf("local key %s, registration %s of %s", k, reg.Instance(), reg.Prefix())
	}
	waitFor(t, 2*time.Second, "keepalive echoes over UDP", func() bool { return ep.AnnounceStats().KeepaliveEchoes >= 2 })
	if err := ep.Close(); err != nil {
		t.Fatal(err)
	}
	if sg.Count(wire.PodWithdraw) != 1 || len(sg.Instances()) != 0 {
		t.Fatalf("%d WITHDRAWs; SG holds %v", sg.Count(wire.PodWithdraw), sg.Instances())
	}

	otherDir := t.TempDir()
	otherCA, otherPod := podFiles(t, otherDir)
	for _, tc := range []struct {
		name  string
		ac    AttachConfig
		field string
	}{
		{"bad link", AttachConfig{Link: "tcp:1.2.3.4:5", CA: caFile, Cert: is.CertPath, Key: is.KeyPath}, "link"},
		{"mem link", AttachConfig{Link: "mem", CA: caFile, Cert: is.CertPath, Key: is.KeyPath}, "link"},
		{"missing CA", AttachConfig{Link: link, CA: filepath.Join(dir, "nope.crt"), Cert: is.CertPath, Key: is.KeyPath}, "ca"},
		{"CA is a pod certificate", AttachConfig{Link: link, CA: is.CertPath, Cert: is.CertPath, Key: is.KeyPath}, "ca"},
		{"certificate of another CA", AttachConfig{Link: link, CA: caFile, Cert: otherPod.CertPath, Key: otherPod.KeyPath}, "cert"},
		{"key of another pod", AttachConfig{Link: link, CA: otherCA, Cert: otherPod.CertPath, Key: is.KeyPath}, "key"},
		{"key is a certificate", AttachConfig{Link: link, CA: caFile, Cert: is.CertPath, Key: is.CertPath}, "key"},
		{"prefix outside", AttachConfig{Link: link, CA: caFile, Cert: is.CertPath, Key: is.KeyPath, Prefix: "/shop"}, "prefix"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := Attach(context.Background(), tc.ac)
			var ae *AttachError
			if !errors.As(err, &ae) || ae.Field != tc.field {
				t.Fatalf("error %v, want an AttachError of %q", err, tc.field)
			}
		})
	}
	if _, err := os.Stat(filepath.Join(dir, "nope.crt")); err == nil {
		t.Fatal("a test file appeared")
	}
}

func TestParseLink(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want LinkSpec
		err  string
	}{
		{"udp:127.0.0.1:7101,127.0.0.1:7001", LinkSpec{Kind: "udp", Local: "127.0.0.1:7101", Peer: "127.0.0.1:7001"}, ""},
		{" UDP: 127.0.0.1:0 , [::1]:7001", LinkSpec{Kind: "udp", Local: "127.0.0.1:0", Peer: "[::1]:7001"}, ""},
		{"iface:veth0", LinkSpec{Kind: "iface", Iface: "veth0"}, ""},
		{"udp:127.0.0.1:7101", LinkSpec{}, "LOCAL,PEER"},
		{"udp:127.0.0.1:x,127.0.0.1:1", LinkSpec{}, "not a number"},
		{"udp:127.0.0.1:1,127.0.0.1:0", LinkSpec{}, "needs a host and a port"},
		{"udp:127.0.0.1:1,:5", LinkSpec{}, "needs a host and a port"},
		{"iface:", LinkSpec{}, "interface name"},
		{"iface:a/b", LinkSpec{}, "interface name"},
		{"1=udp:127.0.0.1:1,127.0.0.1:2", LinkSpec{}, "unknown link kind"},
		{"mem", LinkSpec{}, "want udp:LOCAL,PEER"},
	} {
		got, err := ParseLink(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParseLink(%q): %v, want an error containing %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ParseLink(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
		if again, err := ParseLink(got.String()); err != nil || again != got {
			t.Errorf("ParseLink(%q.String()) = %+v, %v", tc.in, again, err)
		}
	}
}

func FuzzParseLink(f *testing.F) {
	for _, s := range []string{"udp:127.0.0.1:1,127.0.0.1:2", "iface:eth0", "udp:,", "iface:", ":"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		l, err := ParseLink(s)
		if err != nil {
			return
		}
		again, err := ParseLink(l.String())
		if err != nil || again != l {
			t.Fatalf("ParseLink(%q) = %+v, but its String %q gives %+v, %v", s, l, l.String(), again, err)
		}
	})
}

// FuzzSignalFromSG feeds arbitrary frames from the SG through the
// Endpoint's dispatcher and every step of the protocol: no input may panic.
// It drives the handlers one message at a time on the test's goroutine (the
// registration's own goroutine does not run), so that coverage is the
// input's alone.
func FuzzSignalFromSG(f *testing.F) {
	inst := keyOf("/shop/cart").WithInstance(1)
	seed := func(typ uint8, m interface{ Append([]byte) ([]byte, error) }) {
		b, _ := m.Append(nil)
		f.Add(typ, b)
	}
	seed(wire.PodChallenge, wire.Challenge{Prefix: "/shop/cart", SG: "sg1", Port: 1})
	seed(wire.PodAccept, wire.Accept{Prefix: "/shop/cart", Instance: inst, Keepalive: time.Millisecond})
	seed(wire.PodReject, wire.Reject{Prefix: "/shop/cart", Reason: wire.ReasonUnknownInstance})
	seed(wire.PodReject, wire.Reject{Reason: wire.ReasonNoChallenge})
	seed(wire.PodReject, wire.Reject{Reason: 100, RetryAfter: time.Millisecond})
	seed(wire.PodKeepalive, wire.InstanceMsg{Instance: inst})
	seed(wire.PodWithdraw, wire.InstanceMsg{Instance: inst})
	seed(wire.PodResolved, wire.Resolved{Dst: inst, Reachable: true})
	f.Add(uint8(200), []byte{})

	authority := newTestCA(f, testDomain)
	is, err := authority.IssuePod("/shop/cart")
	if err != nil {
		f.Fatal(err)
	}
	podEnd, sgEnd := softswitch.NewMemPair() // nobody reads sgEnd: sends fill it, then drop
	ep, err := NewEndpoint(Config{Port: podEnd, CA: authority.Cert, Certificate: is.TLSCertificate(), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		f.Fatal(err)
	}
	r, err := ep.newRegistration(AnnounceConfig{})
	if err != nil {
		f.Fatal(err)
	}
	ep.sig.install(ep)
	ep.sig.mu.Lock()
	ep.sig.reg = r // without its goroutine
	ep.sig.mu.Unlock()
	f.Cleanup(func() {
		ep.sig.mu.Lock()
		ep.sig.reg = nil
		ep.sig.mu.Unlock()
		ep.Close()
		sgEnd.Close()
	})
	control := func(payload []byte) []byte {
		return wire.AppendFrame(nil, wire.Ethernet{}, wire.Header{Type: wire.TypeControl, HopLimit: 1, NextProto: wire.ProtoControl}, nil, payload)
	}
	f.Fuzz(func(t *testing.T, typ uint8, body []byte) {
		if len(body) > wire.MaxControlBody {
			body = body[:wire.MaxControlBody]
		}
		env, err := wire.AppendControl(nil, wire.SignalPod, typ, body)
		if err != nil {
			t.Fatal(err)
		}
		ep.handleFrame(control(env))
		ep.handleFrame(control(body)) // the body as an envelope
		for {
			select {
			case m := <-r.inbox:
				for _, step := range []announceStep{stepAnnounce, stepProof} {
					a := r.newAttempt()
					a.step, a.proofSent = step, step == stepProof
					_, _, _ = a.handle(m)
					a.retx.Stop()
				}
				_, _ = r.handleRegistered(m, inst)
				_ = r.handleWithdrawing(m, inst)
				continue
			default:
			}
			break
		}
	})
}
