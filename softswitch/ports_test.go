package softswitch

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/dmsc-mesh/dmsc/p4"
)

func TestParsePortSpec(t *testing.T) {
	tests := []struct {
		in   string
		want PortSpec
		err  string
	}{
		{"1=udp:127.0.0.1:7001,127.0.0.1:7002", PortSpec{Num: 1, Kind: "udp", Local: "127.0.0.1:7001", Peer: "127.0.0.1:7002"}, ""},
		{"7=udp:[::1]:7001,[::1]:7002", PortSpec{Num: 7, Kind: "udp", Local: "[::1]:7001", Peer: "[::1]:7002"}, ""},
		{"8=udp::0,10.0.0.2:9000", PortSpec{Num: 8, Kind: "udp", Local: ":0", Peer: "10.0.0.2:9000"}, ""},
		{"2=iface:veth0", PortSpec{Num: 2, Kind: "iface", Iface: "veth0"}, ""},
		{"3=mem", PortSpec{Num: 3, Kind: "mem"}, ""},
		{"udp:1.2.3.4:1,1.2.3.4:2", PortSpec{}, "want NUMBER="},
		{"x=mem", PortSpec{}, `port number "x"`},
		{"255=mem", PortSpec{}, "CPU port"},
		{"511=mem", PortSpec{}, "drop port"},
		{"600=mem", PortSpec{}, "port number 600"},
		{"1=tcp:1.2.3.4:5", PortSpec{}, `unknown port kind "tcp"`},
		{"1=udp:127.0.0.1:7001", PortSpec{}, "LOCAL,PEER"},
		{"1=udp:127.0.0.1,127.0.0.1:7002", PortSpec{}, `local address "127.0.0.1"`},
		{"1=udp:127.0.0.1:7001,127.0.0.1:x", PortSpec{}, `peer address "127.0.0.1:x"`},
		{"1=udp:127.0.0.1:7001,127.0.0.1:0", PortSpec{}, "needs a host and a port"},
		{"1=iface:", PortSpec{}, "interface name"},
		{"1=iface:a-very-long-interface-name", PortSpec{}, "not a Linux interface name"},
		{"1=mem:x", PortSpec{}, "mem takes no argument"},
	}
	for _, tt := range tests {
		got, err := ParsePortSpec(tt.in)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("ParsePortSpec(%q) error %v, want one mentioning %q", tt.in, err, tt.err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParsePortSpec(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
			continue
		}
		if back, err := ParsePortSpec(got.String()); err != nil || back != got {
			t.Errorf("round trip of %q: %+v, %v", got.String(), back, err)
		}
	}
	p, err := PortSpec{Num: 3, Kind: "mem"}.Open()
	if err != nil {
		t.Fatal(err)
	}
	if mp, ok := p.(*MemPort); !ok || mp.Peer() == nil {
		t.Errorf("mem spec opened %T", p)
	}
	p.Close()
}

func TestMemPortDeadlineAndClose(t *testing.T) {
	a, b := NewMemPair()
	ms := []Message{{Buf: make([]byte, 100)}}
	a.SetReadDeadline(time.Now().Add(10 * time.Millisecond))
	if _, err := a.ReadBatch(ms); !isTimeout(err) {
		t.Errorf("read past deadline: %v", err)
	}
	// A deadline set while a read blocks wakes it.
	errc := make(chan error, 1)
	a.SetReadDeadline(time.Time{})
	go func() { _, err := a.ReadBatch(ms); errc <- err }()
	time.Sleep(10 * time.Millisecond)
	a.SetReadDeadline(time.Unix(1, 0))
	if err := <-errc; !isTimeout(err) {
		t.Errorf("interrupted read: %v", err)
	}
	a.SetReadDeadline(time.Time{})
	// Frames too long for the buffer are dropped; the rest come in a batch.
	b.Send(make([]byte, 200))
	b.Send([]byte{1})
	b.Send([]byte{2, 2})
	ms = []Message{{Buf: make([]byte, 100)}, {Buf: make([]byte, 100)}, {Buf: make([]byte, 100)}}
	n, err := a.ReadBatch(ms)
	if err != nil || n != 2 || ms[0].N != 1 || ms[1].N != 2 {
		t.Errorf("batch: %d %v %+v", n, err, ms)
	}
	a.Close()
	if _, err := a.ReadBatch(ms); !errors.Is(err, net.ErrClosed) {
		t.Errorf("read after close: %v", err)
	}
}

// udpPeer is the test's side of a UDP tunnel.
type udpPeer struct {
	t    *testing.T
	conn *net.UDPConn
}

func newUDPPeer(t *testing.T) *udpPeer {
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &udpPeer{t: t, conn: c}
}

func (p *udpPeer) addr() string { return p.conn.LocalAddr().String() }

func (p *udpPeer) recv() []byte {
	p.t.Helper()
	buf := make([]byte, 4096)
	p.conn.SetReadDeadline(time.Now().Add(2 * time.Second))
	n, _, err := p.conn.ReadFromUDP(buf)
	if err != nil {
		p.t.Fatalf("udp peer %s: %v", p.addr(), err)
	}
	return buf[:n]
}

func TestUDPTunnelEndToEnd(t *testing.T) {
	b := newP4B(t)
	sw := New(Config{})
	if err := sw.CommitPipeline(b.schema, nil); err != nil {
		t.Fatal(err)
	}
	peers := map[uint16]*udpPeer{}
	ports := map[uint16]*UDPPort{}
	for _, n := range []uint16{1, 2} {
		peers[n] = newUDPPeer(t)
		p, err := NewUDPPort("127.0.0.1:0", peers[n].addr())
		if err != nil {
			t.Fatal(err)
		}
		ports[n] = p
		if err := sw.AddPort(n, p); err != nil {
			t.Fatal(err)
		}
	}
	for _, err := range sw.Apply(ins(
		b.portRole(1, p4.RoleFabric), b.portRole(2, p4.RoleFabric),
		b.nhMember(2, 2, mac(2)), b.selMember(p4.TableNexthop, 2, 2),
		b.fib(32, key(h1, 0, 0, 0), p4.ActionSetNexthopGroup, 2),
	), true) {
		if err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sw.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
		if err := sw.Close(); err != nil {
			t.Error(err)
		}
	}()

	to := ports[1].LocalAddr()
	const n = 500
	// Receive while sending: the test's socket buffer is the kernel's
	// default, too small for the whole run.
	frames := make(chan []byte, n)
	go func() {
		for range n {
			buf := make([]byte, 4096)
			peers[2].conn.SetReadDeadline(time.Now().Add(2 * time.Second))
			k, _, err := peers[2].conn.ReadFromUDP(buf)
			if err != nil {
				close(frames)
				return
			}
			frames <- buf[:k]
		}
	}()
	// At most 32 frames in flight: no socket buffer can overflow, however
	// slowly the test machine runs the three parties.
	var got [][]byte
	for i := range n {
		f := seqFrame(uint32(i), 100)
		if _, err := peers[1].conn.WriteToUDP(f, to); err != nil {
			t.Fatal(err)
		}
		for i+1-len(got) >= 32 {
			f, ok := <-frames
			if !ok {
				t.Fatalf("frame %d did not arrive", len(got))
			}
			got = append(got, f)
		}
	}
	for len(got) < n {
		f, ok := <-frames
		if !ok {
			t.Fatalf("frame %d did not arrive", len(got))
		}
		got = append(got, f)
	}
	for i, f := range got {
		want := seqFrame(uint32(i), 100)
		want[offHopLimit]--
		m := mac(2)
		copy(want[:6], m[:])
		if !bytes.Equal(f, want) {
			t.Fatalf("frame %d:\n% x\nwant\n% x", i, f, want)
		}
	}
	// Only the configured peer may send into the tunnel.
	stranger := newUDPPeer(t)
	stranger.conn.WriteToUDP(seqFrame(0, 100), to)
	time.Sleep(20 * time.Millisecond)
	if rx, _ := sw.PortCounters(1); rx != n {
		t.Errorf("port_rx[1] = %d, want %d", rx, n)
	}
	// Adding and removing a port while running.
	peers[3] = newUDPPeer(t)
	p3, err := NewUDPPort("127.0.0.1:0", peers[3].addr())
	if err != nil {
		t.Fatal(err)
	}
	if err := sw.AddPort(3, p3); err != nil {
		t.Fatal(err)
	}
	sw.Apply(ins(b.portRole(3, p4.RoleFabric)), true)
	peers[3].conn.WriteToUDP(seqFrame(1, 100), p3.LocalAddr())
	peers[2].recv()
	if err := sw.RemovePort(3); err != nil {
		t.Fatal(err)
	}
	if _, err := sw.PortStats(3); err == nil {
		t.Error("removed port still has stats")
	}
}

// TestAFPacketVeth runs frames through two AF_PACKET ports on veth pairs in
// a network namespace of its own.
func TestAFPacketVeth(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("skipping: AF_PACKET and network namespaces need root")
	}
	ipCmd, err := exec.LookPath("ip")
	if err != nil {
		t.Skip("skipping: the ip command (iproute2) is not installed")
	}
	var rnd [4]byte
	rand.Read(rnd[:])
	ns := "dmsc-ss-" + hex.EncodeToString(rnd[:])
	ip := func(args ...string) error {
		out, err := exec.Command(ipCmd, args...).CombinedOutput()
		if err != nil {
			return errors.New(strings.Join(args, " ") + ": " + err.Error() + ": " + string(out))
		}
		return nil
	}
	if err := ip("netns", "add", ns); err != nil {
		t.Skipf("skipping: cannot create a network namespace: %v", err)
	}
	t.Cleanup(func() {
		if err := ip("netns", "del", ns); err != nil {
			t.Errorf("deleting namespace %s: %v", ns, err)
		}
	})
	for _, args := range [][]string{
		{"-n", ns, "link", "add", "sw1", "type", "veth", "peer", "name", "host1"},
		{"-n", ns, "link", "add", "sw2", "type", "veth", "peer", "name", "host2"},
	} {
		if err := ip(args...); err != nil {
			t.Fatal(err)
		}
	}
	var sw1, sw2, host1, host2 *PacketPort
	err = inNetns(ns, func() error {
		for _, dev := range []string{"sw1", "host1", "sw2", "host2"} {
			// No IPv6 on the links, so less of the kernel's own
			// traffic (best effort: the frames are filtered anyway).
			os.WriteFile("/proc/sys/net/ipv6/conf/"+dev+"/disable_ipv6", []byte("1"), 0)
			if err := ip("-n", ns, "link", "set", dev, "up"); err != nil {
				return err
			}
		}
		var err error
		if sw1, err = NewPacketPort("sw1"); err != nil {
			return err
		}
		if sw2, err = NewPacketPort("sw2"); err != nil {
			return err
		}
		if host1, err = NewPacketPort("host1"); err != nil {
			return err
		}
		host2, err = NewPacketPort("host2")
		return err
	})
	for _, p := range []*PacketPort{host1, host2} {
		if p != nil {
			t.Cleanup(func() { p.Close() })
		}
	}
	if err != nil {
		for _, p := range []*PacketPort{sw1, sw2} {
			if p != nil {
				p.Close()
			}
		}
		t.Fatal(err)
	}

	b := newP4B(t)
	sw := New(Config{})
	if err := sw.CommitPipeline(b.schema, nil); err != nil {
		t.Fatal(err)
	}
	sw.AddPort(1, sw1)
	sw.AddPort(2, sw2)
	for _, err := range sw.Apply(ins(
		b.portRole(1, p4.RoleFabric), b.portRole(2, p4.RoleFabric),
		b.nhMember(2, 2, mac(2)), b.selMember(p4.TableNexthop, 2, 2),
		b.fib(32, key(h1, 0, 0, 0), p4.ActionSetNexthopGroup, 2),
	), true) {
		if err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sw.Run(ctx) }()
	defer func() {
		cancel()
		<-done
		sw.Close()
	}()

	const n = 50
	for i := range n {
		f := seqFrame(uint32(i), 100)
		if _, err := host1.WriteBatch([]Message{{Buf: f, N: len(f)}}); err != nil {
			t.Fatal(err)
		}
	}
	host2.SetReadDeadline(time.Now().Add(3 * time.Second))
	ms := make([]Message, 8)
	for i := range ms {
		ms[i].Buf = make([]byte, 2048)
	}
	got := 0
	for got < n {
		k, err := host2.ReadBatch(ms)
		if err != nil {
			t.Fatalf("after %d frames: %v", got, err)
		}
		for _, m := range ms[:k] {
			f := m.Buf[:m.N]
			if len(f) < 14 || f[12] != 0x88 || f[13] != 0xb5 {
				continue // the kernel's own traffic on the link
			}
			want := seqFrame(uint32(got), 100)
			want[offHopLimit]--
			mc := mac(2)
			copy(want[:6], mc[:])
			if !bytes.Equal(f, want) {
				t.Fatalf("frame %d:\n% x\nwant\n% x", got, f, want)
			}
			got++
		}
	}
	if _, tx := sw.PortCounters(2); tx != n {
		t.Errorf("port_tx[2] = %d, want %d", tx, n)
	}
}

// inNetns runs f on an OS thread inside network namespace ns; sockets f
// opens stay in ns.
func inNetns(ns string, f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// The thread is not unlocked if it cannot go home: it then
		// ends with the goroutine instead of serving others in ns.
		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer orig.Close()
		target, err := os.Open("/var/run/netns/" + ns)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		ferr := f()
		if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err == nil {
			runtime.UnlockOSThread()
		}
		errc <- ferr
	}()
	return <-errc
}
