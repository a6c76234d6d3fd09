package bmv2

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	bmv2tests "github.com/dmsc-mesh/dmsc/bmv2-tests"
	"github.com/dmsc-mesh/dmsc/controller/fib"
	"github.com/dmsc-mesh/dmsc/internal/netns"
	"github.com/dmsc-mesh/dmsc/internal/switchtest"
	"github.com/dmsc-mesh/dmsc/p4"
	"github.com/dmsc-mesh/dmsc/p4rt"
	"github.com/dmsc-mesh/dmsc/softswitch"
	"github.com/dmsc-mesh/dmsc/spf"
)

// deviceID is both switches' P4Runtime device id.
const deviceID = 1

// bmv2LogEnv sets BMv2's --log-level (default off; trace is what BMv2 runs
// at when given none, with its messages formatted for a null sink).
const bmv2LogEnv = "DMSC_BENCH_BMV2_LOG_LEVEL"

// path is what a trial sends through: a sender's link in, a receiver's
// link out, and between them a switch or nothing.
type path struct {
	name    string
	senders []*sender
	rx      *receiver
	// alive is nil while the switch runs (always, without a switch).
	alive func() error
	pid   int // the switch process, 0 without one
	epoch uint32
}

// kind is one of the benchmark's paths.
type kind struct {
	name  string
	setup func(t testing.TB, senders int) *path
}

var kinds = []kind{
	{"veth-direct", directPath},
	{"relay", relayPath},
	{"softswitch", softswitchPath},
	{"bmv2", bmv2Path},
}

// directPath is the rig's ceiling: the sender on one end of a veth pair,
// the receiver on the other (in a namespace, as a switch's port would be).
func directPath(t testing.TB, senders int) *path {
	t.Helper()
	need(t)
	r := newRig(t)
	ns := r.Namespace()
	root := r.VethToRoot(ns, "d0")
	var rx *softswitch.PacketPort
	if err := netns.Enter(ns, func() (err error) { rx, err = softswitch.NewPacketPort("d0"); return err }); err != nil {
		t.Fatal(err)
	}
	p := &path{name: "veth-direct", rx: startReceiver(rx, inMAC)}
	t.Cleanup(p.rx.close)
	p.senders = openSenders(t, root, senders)
	return p
}

// switchLinks creates a namespace for a switch with ports p1 and p2 on
// veths and returns it with the root ends.
func switchLinks(t testing.TB) (ns, in, out string) {
	t.Helper()
	r := newRig(t)
	ns = r.Namespace()
	return ns, r.VethToRoot(ns, "p1"), r.VethToRoot(ns, "p2")
}

// attach opens the test's ends of a switch's links.
func attach(t testing.TB, name, in, out string, senders int, sw *proc) *path {
	t.Helper()
	rx, err := softswitch.NewPacketPort(out)
	if err != nil {
		t.Fatal(err)
	}
	p := &path{name: name, rx: startReceiver(rx, routeMAC), alive: sw.exited, pid: sw.cmd.Process.Pid}
	t.Cleanup(p.rx.close)
	p.senders = openSenders(t, in, senders)
	return p
}

func openSenders(t testing.TB, iface string, n int) []*sender {
	t.Helper()
	var ss []*sender
	for range n {
		port, err := softswitch.NewPacketPort(iface)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { port.Close() })
		ss = append(ss, newSender(port))
	}
	return ss
}

// softswitchPath runs dmsc softswitch, built from this tree, in a
// namespace of its own with its ports on AF_PACKET, as BMv2 runs.
func softswitchPath(t testing.TB, senders int) *path {
	t.Helper()
	need(t)
	dmsc := buildDmsc(t)
	ns, in, out := switchLinks(t)
	// P4Runtime listens on the namespace's loopback; the client's
	// connection is made from inside the namespace.
	pr := startProc(t, "softswitch", ns, t.TempDir(), os.Environ(), dmsc, "--log-level", "warn", "softswitch",
		"--p4rt", "127.0.0.1:9559", "--device-id", strconv.Itoa(deviceID), "--port", "1=iface:p1", "--port", "2=iface:p2")
	dial := grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
		var c net.Conn
		err := netns.Enter(ns, func() (err error) {
			var d net.Dialer
			c, err = d.DialContext(ctx, "tcp", addr)
			return err
		})
		return c, err
	})
	program(t, "passthrough:///127.0.0.1:9559", []grpc.DialOption{dial}, pr.exited)
	return attach(t, "softswitch", in, out, senders, pr)
}

// bmv2Path runs simple_switch_grpc in a namespace of its own, as
// bmv2-tests does, with logging off.
func bmv2Path(t testing.TB, senders int) *path {
	t.Helper()
	tool := bmv2tests.Require(t, bmv2tests.Needs{Switch: true}).Switch
	ns, in, out := switchLinks(t)
	dir := t.TempDir()
	sock := filepath.Join(dir, "p4rt.sock")
	if len(sock) > 100 {
		t.Fatalf("BMv2: socket path %s is too long for a Unix socket; set TMPDIR to a shorter directory", sock)
	}
	pr := startProc(t, "simple_switch_grpc", ns, dir, tool.Env, tool.Path,
		"--device-id", strconv.Itoa(deviceID), "--no-p4",
		// BMv2's default is shared by every switch with this device id.
		"--notifications-addr", "ipc://"+filepath.Join(dir, "notifications.ipc"),
		"-i", "1@p1", "-i", "2@p2",
		// Without a level BMv2 formats every trace message for a null
		// sink; off is its fastest setting short of a rebuild.
		"--log-level", cmp.Or(os.Getenv(bmv2LogEnv), "off"),
		"--", "--grpc-server-addr", "unix://"+sock, "--cpu-port", strconv.Itoa(p4.CPUPort))
	program(t, "unix://"+sock, nil, pr.exited)
	return attach(t, "bmv2", in, out, senders, pr)
}

// buildDmsc builds cmd/dmsc into a temporary directory.
func buildDmsc(t testing.TB) string {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		goTool = filepath.Join(runtime.GOROOT(), "bin", "go")
		if _, err := os.Stat(goTool); err != nil {
			t.Skip("bench/bmv2: the go tool (to build dmsc) is not on PATH nor in GOROOT")
		}
	}
	root, err := bmv2tests.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "dmsc")
	cmd := exec.Command(goTool, "build", "-o", bin, "./cmd/dmsc")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/dmsc: %v\n%s", err, out)
	}
	return bin
}

// program gives a switch the benchmark's configuration through the
// project's P4Runtime client, the same for both switches: the DMSC
// pipeline with p4/build/dmsc.json as device config (BMv2 needs it; the
// software switch does not read it), ports 1 and 2 FABRIC, and one fib_64
// route to a next-hop group of one member, set_nexthop(port 2).
func program(t testing.TB, addr string, dial []grpc.DialOption, alive func() error) {
	t.Helper()
	opts := p4rt.Options{
		DeviceID:    deviceID,
		ElectionID:  p4rt.ElectionID{Low: 1},
		Backoff:     p4rt.Backoff{Initial: 20 * time.Millisecond, Max: 200 * time.Millisecond},
		DialOptions: append([]grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}, dial...),
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := p4rt.Dial(ctx, addr, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := waitPrimary(ctx, c, alive); err != nil {
		t.Fatal(err)
	}
	s, err := p4.Schema()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.SetPipeline(ctx, s.P4Info(), bmv2tests.BMv2JSON(t), 1); err != nil {
		t.Fatalf("SetForwardingPipelineConfig: %v", err)
	}
	switchtest.FabricPorts(t, c, 1, 2)
	plan, err := fib.New(c.Schema()).Plan(fib.Routes{
		spf.Prefix{Key: routeKey.Mask(64), Len: 64}: {Kind: fib.Forward, Hops: []fib.Hop{{Port: 2, DMAC: mac48(routeMAC), Weight: 1}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	for i, phase := range plan.Phases {
		if err := c.Write(ctx, phase...); err != nil {
			t.Fatalf("route, phase %d: %v", i, err)
		}
	}
}

// waitPrimary waits until the client is primary, giving up early if the
// switch process died.
func waitPrimary(ctx context.Context, c *p4rt.Client, alive func() error) error {
	for {
		wctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		err := c.WaitPrimary(wctx)
		cancel()
		if err == nil {
			return nil
		}
		if aerr := alive(); aerr != nil {
			return aerr
		}
		if ctx.Err() != nil {
			return fmt.Errorf("P4Runtime: not primary: %w", err)
		}
	}
}

func mac48(m [6]byte) uint64 {
	var v uint64
	for _, b := range m {
		v = v<<8 | uint64(b)
	}
	return v
}

// outcome is what one trial measured.
type outcome struct {
	sent, received uint64
	sendTime       time.Duration // first frame sent to last frame sent
	elapsed        time.Duration // first frame sent to last frame received
	cpu            cpuUse        // while frames were sent
}

// pps is the forwarding rate: frames received per second.
func (o outcome) pps() float64 {
	if o.elapsed <= 0 {
		return 0
	}
	return float64(o.received) / o.elapsed.Seconds()
}

// offered is the rate frames were sent at.
func (o outcome) offered() float64 {
	if o.sendTime <= 0 {
		return 0
	}
	return float64(o.sent) / o.sendTime.Seconds()
}

// loss is the share of frames sent that never arrived, in percent.
func (o outcome) loss() float64 {
	if o.sent == 0 {
		return 0
	}
	return 100 * float64(o.sent-min(o.received, o.sent)) / float64(o.sent)
}

func (p *path) newTrial(payload int, latency bool) *trial {
	p.epoch++
	tr := &trial{epoch: p.epoch, size: payloadOff + payload, latency: latency}
	p.rx.cur.Store(tr)
	return tr
}

// run sends n frames of payload bytes at rate frames/s (0: unpaced), for
// at most d if d > 0, split over the senders, and waits until they arrived
// or the path went quiet. b, if not nil, times the trial.
func (p *path) run(b *testing.B, payload, n int, rate float64, d time.Duration) (outcome, error) {
	tr := p.newTrial(payload, false)
	defer p.rx.cur.Store(nil)
	if b != nil {
		b.StartTimer()
		defer b.StopTimer()
	}
	before := sampleCPU(p.pid)
	start := mono()
	var wg sync.WaitGroup
	sent := make([]int, len(p.senders))
	errs := make([]error, len(p.senders))
	k := len(p.senders)
	for i, s := range p.senders {
		wg.Go(func() {
			sent[i], errs[i] = s.send(tr, payload, n/k+boolInt(i < n%k), rate/float64(k), d)
		})
	}
	wg.Wait()
	sendEnd := mono()
	var o outcome
	o.cpu = sampleCPU(p.pid).since(before, p.pid)
	for _, s := range sent {
		o.sent += uint64(s)
	}
	if err := errors.Join(errs...); err != nil {
		return o, err
	}
	p.drain(tr, o.sent)
	o.received = tr.count.Load()
	o.sendTime = time.Duration(sendEnd - start)
	o.elapsed = time.Duration(max(tr.last.Load(), sendEnd) - start)
	if o.received == 0 {
		o.elapsed = 0
	}
	if p.alive != nil {
		if err := p.alive(); err != nil {
			return o, err
		}
	}
	return o, nil
}

// drain waits until want frames of tr arrived or none came for quiet.
func (p *path) drain(tr *trial, want uint64) {
	seen, since := tr.count.Load(), time.Now()
	for seen < want && time.Since(since) < quiet {
		time.Sleep(time.Millisecond)
		if c := tr.count.Load(); c != seen {
			seen, since = c, time.Now()
		}
	}
}

// latency sends a stream of rate frames/s for d from the first sender and
// returns the one-way latencies, sorted, with the frames sent.
func (p *path) latency(payload int, rate float64, d time.Duration) ([]int64, int, error) {
	tr := p.newTrial(payload, true)
	defer p.rx.cur.Store(nil)
	sent, err := p.senders[0].stream(tr, payload, rate, d)
	if err != nil {
		return nil, sent, err
	}
	p.drain(tr, uint64(sent))
	if p.alive != nil {
		if err := p.alive(); err != nil {
			return nil, sent, err
		}
	}
	return tr.latencies(), sent, nil
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
