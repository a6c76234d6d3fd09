package bmv2

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dmsc-mesh/dmsc/softswitch"
)

// relayEnv, set to "IN,OUT" (interfaces), makes TestRelayProcess the relay
// of BenchmarkForward/relay instead of a skipped test.
const relayEnv = "DMSC_BENCH_RELAY"

// relayReady is the line the relay prints once its ports are open.
const relayReady = "relay: ports open"

// relayPath is the peer of the software switch: a do-nothing hop with the
// same I/O (AF_PACKET, recvmmsg of 64 → sendmmsg) in a process of its own,
// which rewrites the destination MAC as the route does and nothing else.
// It is this test binary again, running TestRelayProcess in the switch's
// namespace.
func relayPath(t testing.TB, senders int) *path {
	t.Helper()
	need(t)
	self, err := os.Executable()
	if err != nil {
		t.Skipf("bench/bmv2: cannot find the test binary to run as the relay: %v", err)
	}
	ns, in, out := switchLinks(t)
	pr := startProc(t, "relay", ns, t.TempDir(), append(os.Environ(), relayEnv+"=p1,p2"), self, "-test.run=^TestRelayProcess$")
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(pr.tail(5), relayReady) {
		if err := pr.exited(); err != nil {
			t.Fatal(err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("relay: not ready after 10 s: %s", pr.tail(5))
		}
		time.Sleep(10 * time.Millisecond)
	}
	return attach(t, "relay", in, out, senders, pr)
}

// TestRelayProcess is BenchmarkForward/relay's relay when started by it
// (relayEnv set); otherwise it skips.
func TestRelayProcess(t *testing.T) {
	spec := os.Getenv(relayEnv)
	if spec == "" {
		t.Skip("bench/bmv2: the relay process of BenchmarkForward/relay; runs only when started by it")
	}
	inName, outName, ok := strings.Cut(spec, ",")
	if !ok {
		t.Fatalf("%s=%q: want IN,OUT", relayEnv, spec)
	}
	in, err := softswitch.NewPacketPort(inName)
	if err != nil {
		t.Fatal(err)
	}
	out, err := softswitch.NewPacketPort(outName)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	fmt.Println(relayReady)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	go func() {
		<-ctx.Done()
		in.Close() // ends the loop below
	}()
	ms := make([]softswitch.Message, 64) // the switch's batch
	for i := range ms {
		ms[i].Buf = make([]byte, 2048)
	}
	for {
		n, err := in.ReadBatch(ms)
		if err != nil {
			if errors.Is(err, net.ErrClosed) || ctx.Err() != nil {
				return
			}
			t.Fatal(err)
		}
		for i := range ms[:n] {
			copy(ms[i].Buf[0:6], routeMAC[:])
		}
		if _, err := out.WriteBatch(ms[:n]); err != nil {
			t.Fatal(err)
		}
	}
}
