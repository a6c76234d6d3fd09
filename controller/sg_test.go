package controller_test

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	spapb "github.com/dmsc-mesh/dmsc/api/spa"
	"github.com/dmsc-mesh/dmsc/ca"
	"github.com/dmsc-mesh/dmsc/controller"
	"github.com/dmsc-mesh/dmsc/controller/fib"
	"github.com/dmsc-mesh/dmsc/softswitch"
	"github.com/dmsc-mesh/dmsc/spf"
	"github.com/dmsc-mesh/dmsc/topo"
	"github.com/dmsc-mesh/dmsc/wire"
)

// testPod speaks the pod side of pod signalling by hand, frame by frame, so
// that tests can also send what a real pod never would.
type testPod struct {
	t    *testing.T
	link *softswitch.MemPort
	mac  [6]byte
	key  wire.Key // the instance key once accepted
}

func attachPod(t *testing.T, f *topo.Fabric, node string, port uint16) *testPod {
	t.Helper()
	link, err := f.AttachPod(node, port)
	if err != nil {
		t.Fatal(err)
	}
	return &testPod{t: t, link: link, mac: [6]byte{0x02, 0xaa, 0, 0, byte(port >> 8), byte(port)}}
}

func (p *testPod) sendFrame(h wire.Header, payload []byte) {
	p.t.Helper()
	frame := wire.AppendFrame(nil, wire.Ethernet{Dst: [6]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, Src: p.mac}, h, nil, payload)
	if err := p.link.Send(frame); err != nil {
		p.t.Fatal(err)
	}
}

func (p *testPod) send(msgType uint8, m interface{ Append([]byte) ([]byte, error) }) {
	p.t.Helper()
	body, err := m.Append(nil)
	if err != nil {
		p.t.Fatal(err)
	}
	env, _ := wire.AppendControl(nil, wire.SignalPod, msgType, body)
	p.sendFrame(wire.Header{Type: wire.TypeControl, HopLimit: 1, NextProto: wire.ProtoControl, Src: p.key}, env)
}

// recv returns the next frame of the given type within timeout; frames of
// other types are skipped.
func (p *testPod) recv(typ uint8, timeout time.Duration) (wire.Frame, bool) {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		b, err := p.link.Recv(time.Until(deadline))
		if err != nil {
			return wire.Frame{}, false
		}
		var f wire.Frame
		if wire.ParseFrame(b, &f) == wire.DropNone && f.Hdr.Type == typ {
			f.Payload = append([]byte(nil), f.Payload...)
			return f, true
		}
	}
	return wire.Frame{}, false
}

// recvControl returns the next pod message of msgType.
func (p *testPod) recvControl(msgType uint8, timeout time.Duration) ([]byte, error) {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		f, ok := p.recv(wire.TypeControl, time.Until(deadline))
		if !ok {
			break
		}
		c, err := wire.DecodeControl(f.Payload)
		if err != nil || c.Signal != wire.SignalPod {
			continue
		}
		if c.MsgType == wire.PodReject && msgType != wire.PodReject {
			r, err := wire.DecodeReject(c.Body)
			if err != nil {
				return nil, err
			}
			return nil, &rejected{r}
		}
		if c.MsgType == msgType {
			return c.Body, nil
		}
	}
	return nil, fmt.Errorf("no pod message %d within %v", msgType, timeout)
}

type rejected struct{ wire.Reject }

func (r *rejected) Error() string {
	return fmt.Sprintf("rejected: %s (retry after %v): %s", r.Reason, r.RetryAfter, r.Text)
}

func reasonOf(err error) wire.PodReason {
	var r *rejected
	if errors.As(err, &r) {
		return r.Reason
	}
	return 0
}

// register runs ANNOUNCE, CHALLENGE, PROOF and waits for ACCEPT. sign may
// tamper with what is signed (nil: sign honestly).
func (p *testPod) register(prefix string, pod *ca.Issued, sign func(ch wire.Challenge) (sg string, port uint32, key crypto.Signer)) (wire.Accept, error) {
	p.t.Helper()
	p.send(wire.PodAnnounce, wire.Announce{Prefix: prefix, CertChain: [][]byte{pod.Cert.Raw}})
	body, err := p.recvControl(wire.PodChallenge, 2*time.Second)
	if err != nil {
		return wire.Accept{}, err
	}
	ch, err := wire.DecodeChallenge(body)
	if err != nil {
		return wire.Accept{}, err
	}
	sg, port, key := ch.SG, ch.Port, pod.Key
	if sign != nil {
		sg, port, key = sign(ch)
	}
	sig, err := ca.SignProof(key, ch.Challenge[:], sg, port, prefix)
	if err != nil {
		return wire.Accept{}, err
	}
	p.send(wire.PodProof, wire.Proof{Prefix: prefix, Challenge: ch.Challenge, Signature: sig})
	body, err = p.recvControl(wire.PodAccept, 5*time.Second)
	if err != nil {
		return wire.Accept{}, err
	}
	acc, err := wire.DecodeAccept(body)
	if err == nil {
		p.key = acc.Instance
	}
	return acc, err
}

// keepAlive sends the pod's KEEPALIVE every 500 ms until the test ends, as
// a live pod does (the echoes are left in the link's queue; recv skips
// them).
func (p *testPod) keepAlive() {
	key := p.key
	stop := make(chan struct{})
	done := make(chan struct{})
	p.t.Cleanup(func() { close(stop); <-done })
	go func() {
		defer close(done)
		tick := time.NewTicker(500 * time.Millisecond)
		defer tick.Stop()
		body, _ := wire.InstanceMsg{Instance: key}.Append(nil)
		env, _ := wire.AppendControl(nil, wire.SignalPod, wire.PodKeepalive, body)
		frame := wire.AppendFrame(nil, wire.Ethernet{Dst: [6]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, Src: p.mac},
			wire.Header{Type: wire.TypeControl, HopLimit: 1, NextProto: wire.ProtoControl, Src: key}, nil, env)
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				p.link.Send(frame)
			}
		}
	}()
}

// sendData sends a DATA frame from the pod's key (or from src, if set).
func (p *testPod) sendData(dst wire.Key, src *wire.Key, payload string) {
	h := wire.Header{Type: wire.TypeData, HopLimit: 64, FlowLabel: 9, NextProto: wire.ProtoDatagram, Dst: dst, Src: p.key}
	if src != nil {
		h.Src = *src
	}
	p.sendFrame(h, []byte(payload))
}

func startDomainFabric(t *testing.T, opts topo.AgentOptions, dopts topo.DomainOptions) (*topo.Fabric, *topo.Domain) {
	t.Helper()
	tp, err := topo.Load(fig2(t))
	if err != nil {
		t.Fatal(err)
	}
	roles := map[string]topo.Role{}
	for n, node := range tp.Nodes {
		roles[n] = node.Role
	}
	d, err := topo.StartDomain(context.Background(), t.TempDir(), "example.org", roles, dopts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := d.Close(); err != nil {
			t.Error(err)
		}
	})
	opts.SG = d.SGs
	return startTopology(t, tp, opts), d
}

func servicePrefix(name string) spf.Prefix {
	k := wire.KeyOf(wire.MustParseName(name))
	return spf.Prefix{Key: k, Len: uint8(k.PrefixLen())}
}

func issuePod(t *testing.T, d *topo.Domain, prefix string, opts ...ca.Option) *ca.Issued {
	t.Helper()
	is, err := d.IssuePod(prefix, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return is
}

// everyFIB waits until every switch's FIB, read back over P4Runtime, has
// (or has not) a route for p; at the node named local it must deliver
// locally.
func everyFIB(t *testing.T, f *topo.Fabric, p spf.Prefix, present bool, local string) {
	t.Helper()
	eventually(t, 10*time.Second, func() error {
		for _, n := range f.Topo.NodeNames() {
			r, ok := readFIB(t, f, n)[p]
			switch {
			case ok != present:
				return fmt.Errorf("%s: route for %v present=%v, want %v", n, p, ok, present)
			case present && n == local && r.Kind != fib.Local:
				return fmt.Errorf("%s: route for %v is %s, want local", n, p, r.Kind)
			case present && n != local && r.Kind != fib.Forward:
				return fmt.Errorf("%s: route for %v is %s, want forward", n, p, r.Kind)
			}
		}
		return nil
	})
}

// TestRegistrationEndToEnd registers a pod at sg4: its service and instance
// prefixes reach every switch's FIB, a frame from a pod at sg1 to the
// service reaches it with the instance written in, and a withdraw removes
// everything.
func TestRegistrationEndToEnd(t *testing.T) {
	f, d := startDomainFabric(t, topo.AgentOptions{}, topo.DomainOptions{})
	waitConverged(t, f, 10*time.Second, reachesAll(f))

	cart := attachPod(t, f, "sg4", 10)
	acc, err := cart.register("/shop/cart", issuePod(t, d, "/shop/cart"), nil)
	if err != nil {
		t.Fatal(err)
	}
	svc := servicePrefix("/shop/cart")
	if acc.Instance.Mask(64) != svc.Key || acc.Instance.Instance() == 0 {
		t.Fatalf("instance key %v is not an instance of /shop/cart", acc.Instance)
	}
	everyFIB(t, f, svc, true, "sg4")
	everyFIB(t, f, spf.Prefix{Key: acc.Instance, Len: 128}, true, "sg4")

	front := attachPod(t, f, "sg1", 10)
	if _, err := front.register("/shop/frontend", issuePod(t, d, "/shop/frontend"), nil); err != nil {
		t.Fatal(err)
	}
	front.sendData(svc.Key, nil, "to the cart")
	got, ok := cart.recv(wire.TypeData, 2*time.Second)
	if !ok {
		t.Fatal("the frame to /shop/cart did not arrive at the cart pod")
	}
	if got.Hdr.Dst != acc.Instance || string(got.Payload) != "to the cart" || got.Hdr.Src != front.key {
		t.Errorf("delivered %v → %v %q", got.Hdr.Src, got.Hdr.Dst, got.Payload)
	}
	if got.Hdr.HopLimit != 64-4 {
		t.Errorf("hop limit %d after sg1 sr1 sr3 sg4", got.Hdr.HopLimit)
	}

	// A pod sending from a key it was not given is dropped at its SG.
	drops0, _ := f.Switches["sg1"].SW.DropCount(wire.DropSrcGuard)
	forged := acc.Instance
	front.sendData(svc.Key, &forged, "spoofed")
	if _, ok := cart.recv(wire.TypeData, 300*time.Millisecond); ok {
		t.Error("a frame from a forged source key was delivered")
	}
	if drops, _ := f.Switches["sg1"].SW.DropCount(wire.DropSrcGuard); drops != drops0+1 {
		t.Errorf("src_guard drops %d → %d, want one more", drops0, drops)
	}

	cart.send(wire.PodWithdraw, wire.InstanceMsg{Instance: acc.Instance})
	if _, err := cart.recvControl(wire.PodWithdraw, 2*time.Second); err != nil {
		t.Fatal(err)
	}
	everyFIB(t, f, svc, false, "")
	everyFIB(t, f, spf.Prefix{Key: acc.Instance, Len: 128}, false, "")
	waitConverged(t, f, 10*time.Second, nil)
}

// TestKeepaliveLoss: a pod that stops sending KEEPALIVEs is withdrawn
// everywhere after the hold time; while it keeps them, it stays.
func TestKeepaliveLoss(t *testing.T) {
	f, d := startDomainFabric(t, topo.AgentOptions{}, topo.DomainOptions{})
	waitConverged(t, f, 10*time.Second, reachesAll(f))
	pod := attachPod(t, f, "sg2", 11)
	acc, err := pod.register("/catalog", issuePod(t, d, "/catalog"), nil)
	if err != nil {
		t.Fatal(err)
	}
	svc := servicePrefix("/catalog")
	everyFIB(t, f, svc, true, "sg2")
	if acc.Keepalive != time.Second || acc.Hold != 3*time.Second {
		t.Errorf("keepalive %v hold %v", acc.Keepalive, acc.Hold)
	}
	for range 4 { // 4 s of keepalives: past the hold time, still there
		pod.send(wire.PodKeepalive, wire.InstanceMsg{Instance: acc.Instance})
		if _, err := pod.recvControl(wire.PodKeepalive, time.Second); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Second)
	}
	everyFIB(t, f, svc, true, "sg2")
	silent := time.Now()
	everyFIB(t, f, svc, false, "")
	if took := time.Since(silent); took > 4*time.Second {
		t.Errorf("withdrawn %v after the last keepalive (hold 3 s)", took)
	}
	// The SG has forgotten it: a late KEEPALIVE is answered with REJECT 106.
	pod.send(wire.PodKeepalive, wire.InstanceMsg{Instance: acc.Instance})
	if _, err := pod.recvControl(wire.PodKeepalive, time.Second); reasonOf(err) != wire.ReasonUnknownInstance {
		t.Errorf("keepalive after expiry: %v", err)
	}
}

// TestRegistrationRefusals: every bad case gets its reason and changes no
// state.
func TestRegistrationRefusals(t *testing.T) {
	f, d := startDomainFabric(t, topo.AgentOptions{}, topo.DomainOptions{})
	waitConverged(t, f, 10*time.Second, reachesAll(f))
	otherCA, err := ca.Init(t.TempDir(), "example.org")
	if err != nil {
		t.Fatal(err)
	}
	foreign, err := otherCA.IssuePod("/shop/cart")
	if err != nil {
		t.Fatal(err)
	}
	expired := issuePod(t, d, "/shop/cart", ca.WithNotBefore(time.Now().Add(-48*time.Hour)), ca.WithValidity(time.Hour))
	future := issuePod(t, d, "/shop/cart", ca.WithNotBefore(time.Now().Add(time.Hour)), ca.WithValidity(time.Hour))
	good := issuePod(t, d, "/shop/cart")

	type sign = func(wire.Challenge) (string, uint32, crypto.Signer)
	for i, tc := range []struct {
		name   string
		prefix string
		pod    *ca.Issued
		sign   sign
		want   wire.PodReason
	}{
		{"wrong CA", "/shop/cart", foreign, nil, wire.PodReason(spapb.Reason_CERT_UNTRUSTED)},
		{"expired", "/shop/cart", expired, nil, wire.PodReason(spapb.Reason_CERT_EXPIRED)},
		{"not yet valid", "/shop/cart", future, nil, wire.PodReason(spapb.Reason_CERT_NOT_YET_VALID)},
		{"prefix outside the certificate", "/shop/orders", good, nil, wire.PodReason(spapb.Reason_PREFIX_OUTSIDE_CERT)},
		{"proof for another SG", "/shop/cart", good, func(c wire.Challenge) (string, uint32, crypto.Signer) { return "sg2", c.Port, good.Key }, wire.PodReason(spapb.Reason_BAD_PROOF)},
		{"proof for another port", "/shop/cart", good, func(c wire.Challenge) (string, uint32, crypto.Signer) { return c.SG, c.Port + 1, good.Key }, wire.PodReason(spapb.Reason_BAD_PROOF)},
		{"signed by another key", "/shop/cart", good, func(c wire.Challenge) (string, uint32, crypto.Signer) { return c.SG, c.Port, expired.Key }, wire.PodReason(spapb.Reason_BAD_PROOF)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pod := attachPod(t, f, "sg3", uint16(10+i%4))
			_, err := pod.register(tc.prefix, tc.pod, tc.sign)
			if reasonOf(err) != tc.want {
				t.Fatalf("got %v, want reason %s", err, tc.want)
			}
			if err := f.Switches["sg3"].SW.RemovePort(uint16(10 + i%4)); err != nil {
				t.Fatal(err)
			}
		})
	}

	// Malformed messages, and a PROOF that answers no CHALLENGE (a replay).
	pod := attachPod(t, f, "sg3", 10)
	pod.sendFrame(wire.Header{Type: wire.TypeControl, HopLimit: 1, NextProto: wire.ProtoControl},
		must(wire.AppendControl(nil, wire.SignalPod, wire.PodAnnounce, []byte{1, 2, 3})))
	if _, err := pod.recvControl(wire.PodChallenge, time.Second); reasonOf(err) != wire.ReasonMalformed {
		t.Errorf("malformed ANNOUNCE: %v", err)
	}
	var ch [wire.ChallengeSize]byte
	pod.send(wire.PodProof, wire.Proof{Prefix: "/shop/cart", Challenge: ch, Signature: []byte{1}})
	if _, err := pod.recvControl(wire.PodAccept, time.Second); reasonOf(err) != wire.ReasonNoChallenge {
		t.Errorf("proof without a challenge: %v", err)
	}
	acc, err := pod.register("/shop/cart", good, nil)
	if err != nil {
		t.Fatal(err)
	}
	// The same PROOF again (captured and replayed): no live challenge.
	pod.send(wire.PodProof, wire.Proof{Prefix: "/shop/cart", Challenge: ch, Signature: []byte{1}})
	if _, err := pod.recvControl(wire.PodAccept, time.Second); reasonOf(err) != wire.ReasonNoChallenge {
		t.Errorf("replayed proof: %v", err)
	}
	// Nothing but the one good registration reached the FIBs.
	waitConverged(t, f, 10*time.Second, func(s map[string]controller.Snapshot) error {
		for n, snap := range s {
			for p := range snap.FIB {
				if p.Len == 128 && p.Key != acc.Instance {
					return fmt.Errorf("%s: unexpected instance route %v", n, p)
				}
			}
		}
		return nil
	})

	// SPA down: the pod is told to retry, and nothing changes.
	if err := d.StopSPA(); err != nil {
		t.Fatal(err)
	}
	other := attachPod(t, f, "sg1", 12)
	_, err = other.register("/shop/cart", good, nil)
	var r *rejected
	if !errors.As(err, &r) || r.Reason != wire.ReasonSPAUnavailable || r.RetryAfter == 0 || !strings.Contains(r.Text, "SPA") {
		t.Errorf("SPA down: %v", err)
	}
}

// A new service is a change of prefixes only: every switch learns it by a
// partial route calculation at once, even while the SPF back-off holds
// topology changes for seconds (here: 2 s for a full minute after the
// fabric came up).
func TestPrefixChangeSkipsSPFBackoff(t *testing.T) {
	tm := testTimers()
	tm.SPF = controller.SPFDelay{ShortDelay: 2 * time.Second, LongDelay: 2 * time.Second, HoldDown: time.Minute, TimeToLearn: time.Minute}
	f, d := startDomainFabric(t, topo.AgentOptions{Timers: tm}, topo.DomainOptions{})
	waitConverged(t, f, 30*time.Second, reachesAll(f))

	cart := attachPod(t, f, "sg4", 10)
	start := time.Now()
	if _, err := cart.register("/shop/cart", issuePod(t, d, "/shop/cart"), nil); err != nil {
		t.Fatal(err)
	}
	everyFIB(t, f, servicePrefix("/shop/cart"), true, "sg4")
	took := time.Since(start)
	t.Logf("registered and in every FIB in %v", took)
	if took >= tm.SPF.ShortDelay {
		t.Errorf("the new service took %v to reach every FIB: it waited for the SPF back-off (%v)", took, tm.SPF.ShortDelay)
	}
}

// The ACCEPT goes once the SG's switch can deliver to the pod: its service
// and instance routes are there when the pod hears it, for a new service
// and for a second instance of one.
func TestAcceptAfterDelivery(t *testing.T) {
	f, d := startDomainFabric(t, topo.AgentOptions{}, topo.DomainOptions{})
	waitConverged(t, f, 10*time.Second, reachesAll(f))
	for i, name := range []string{"/acc/one", "/acc/two", "/acc/three", "/acc/one"} {
		p := attachPod(t, f, "sg4", uint16(10+i))
		acc, err := p.register(name, issuePod(t, d, name), nil)
		if err != nil {
			t.Fatal(err)
		}
		got := readFIB(t, f, "sg4")
		for _, want := range []spf.Prefix{servicePrefix(name), {Key: acc.Instance, Len: 128}} {
			if r, ok := got[want]; !ok || r.Kind != fib.Local {
				t.Errorf("%s (port %d): at ACCEPT the SG's switch has no local route for %v", name, 10+i, want)
			}
		}
		if r := got[servicePrefix(name)]; i == 3 && len(r.Hops) != 2 {
			t.Errorf("%s's second instance: at ACCEPT the service delivers to %d instances, want 2", name, len(r.Hops))
		}
	}
}
