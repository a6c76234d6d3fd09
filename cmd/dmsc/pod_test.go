package main

import (
	"context"
	"io"
	"net"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/dmsc-mesh/dmsc/ca"
	"github.com/dmsc-mesh/dmsc/pod/podtest"
	"github.com/dmsc-mesh/dmsc/softswitch"
	"github.com/dmsc-mesh/dmsc/wire"
)

// runTo runs dmsc with args, its output to out (syncBuffer of spa_test.go
// when the test reads it meanwhile).
func runTo(ctx context.Context, out io.Writer, args ...string) error {
	cmd := newRootCommand()
	cmd.SetOut(out)
	cmd.SetErr(out)
	cmd.SetArgs(args)
	return cmd.ExecuteContext(ctx)
}

// podFixture is a CA, a /shop/cart pod certificate and a fake SG on a UDP
// tunnel on loopback.
type podFixture struct {
	caFile string
	pod    *ca.Issued
	sg     *podtest.FakeSG
	link   string
}

func newPodFixture(t *testing.T) *podFixture {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Skip("UDP tunnels need Linux")
	}
	dir := t.TempDir()
	authority, err := ca.Init(dir, "example.org")
	if err != nil {
		t.Fatal(err)
	}
	is, err := ca.IssuePod(dir, "/shop/cart")
	if err != nil {
		t.Fatal(err)
	}
	// The pod's address: reserved for a moment to learn a free port.
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
	sg, err := podtest.New(port, podtest.Config{CA: authority.Cert, Keepalive: 20 * time.Millisecond, Hold: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sg.Close)
	return &podFixture{
		caFile: filepath.Join(dir, ca.CertFile), pod: is, sg: sg,
		link: "udp:" + podAddr + "," + port.LocalAddr().String(),
	}
}

func (fx *podFixture) args(extra ...string) []string {
	return append([]string{"--log-level", "warn", "pod", "announce", "--link", fx.link,
		"--ca", fx.caFile, "--cert", fx.pod.CertPath, "--key", fx.pod.KeyPath}, extra...)
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestPodAnnounce(t *testing.T) {
	fx := newPodFixture(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out syncBuffer
	errc := make(chan error, 1)
	go func() { errc <- runTo(ctx, &out, fx.args()...) }()

	var first wire.Key
	waitUntil(t, "the registration", func() bool {
		insts := fx.sg.Instances()
		if len(insts) != 1 {
			return false
		}
		first = insts[0]
		return strings.Contains(out.String(), "registered /shop/cart instance "+first.String()+"\n")
	})
	waitUntil(t, "keepalives", func() bool { return fx.sg.Count(wire.PodKeepalive) >= 3 })

	// A restarted SG: the pod registers again and says so.
	fx.sg.Forget()
	var second wire.Key
	waitUntil(t, "the re-registration", func() bool {
		insts := fx.sg.Instances()
		if len(insts) != 1 || insts[0] == first {
			return false
		}
		second = insts[0]
		return strings.Contains(out.String(), "re-registered /shop/cart instance "+second.String()+"\n")
	})

	cancel() // as SIGINT would
	select {
	case err := <-errc:
		if err != nil {
			t.Fatalf("dmsc pod announce: %v\n%s", err, out.String())
		}
	case <-time.After(5 * time.Second):
		t.Fatal("dmsc pod announce did not stop")
	}
	if n := fx.sg.Count(wire.PodWithdraw); n != 1 || len(fx.sg.Instances()) != 0 {
		t.Fatalf("%d WITHDRAWs; the SG holds %v", n, fx.sg.Instances())
	}
	if !strings.Contains(out.String(), "withdrawn /shop/cart instance "+second.String()+"\n") {
		t.Fatalf("output does not report the withdrawal:\n%s", out.String())
	}
}

func TestPodAnnounceErrors(t *testing.T) {
	fx := newPodFixture(t)
	other := t.TempDir()
	if _, err := ca.Init(other, "example.org"); err != nil {
		t.Fatal(err)
	}
	otherPod, err := ca.IssuePod(other, "/shop/cart")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"pod", "announce", "--ca", fx.caFile, "--cert", fx.pod.CertPath, "--key", fx.pod.KeyPath}, "--link is required"},
		{[]string{"pod", "announce", "--link", fx.link, "--cert", fx.pod.CertPath, "--key", fx.pod.KeyPath}, "--ca is required"},
		{fx.args("--link", "tcp:127.0.0.1:1"), "--link tcp:127.0.0.1:1"},
		{fx.args("--link", "udp:127.0.0.1:1"), "LOCAL,PEER"},
		{fx.args("--ca", filepath.Join(other, "missing.crt")), "--ca "},
		{fx.args("--cert", otherPod.CertPath, "--key", otherPod.KeyPath), "--cert " + otherPod.CertPath},
		{fx.args("--key", otherPod.KeyPath), "--key " + otherPod.KeyPath},
		{fx.args("--prefix", "/shop/web"), "--prefix /shop/web"},
		{fx.args("--prefix", "/Shop"), "--prefix /Shop"},
		{fx.args("--timeout", "0s"), "--timeout"},
	} {
		var out syncBuffer
		err := runTo(context.Background(), &out, tc.args...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("dmsc %s: %v, want an error containing %q", strings.Join(tc.args, " "), err, tc.want)
		}
	}
	if n := fx.sg.Count(wire.PodAnnounce); n != 0 {
		t.Fatalf("%d ANNOUNCEs for bad flags", n)
	}

	// The SG's final refusal, by name.
	fx.sg.RejectNext(wire.Reject{Reason: 15, Text: "no rule allows /shop/cart"})
	var out syncBuffer
	err = runTo(context.Background(), &out, fx.args()...)
	if err == nil || !strings.Contains(err.Error(), "POLICY_NOT_ALLOWED") || !strings.Contains(err.Error(), "no rule allows") {
		t.Fatalf("refused announcement: %v", err)
	}
	// No SG answering: the announcement gives up after --timeout.
	fx.sg.SetSilent(true)
	start := time.Now()
	err = runTo(context.Background(), &out, fx.args("--timeout", "300ms")...)
	if err == nil || !strings.Contains(err.Error(), "no answer from the SG") {
		t.Fatalf("silent SG: %v", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("gave up after %v", d)
	}
}
