package bmv2tests

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/dmsc-mesh/dmsc/p4"
	"github.com/dmsc-mesh/dmsc/wire"
)

// TestBMv2InterfaceDownStopsReception pins down a BMv2 defect the Figure 2
// test works around (README.md, "An interface going down stops BMv2"):
// simple_switch reads all its ports from one thread, which blocks inside
// libpcap on an interface that went down, until a frame arrives on that
// interface after it is up again. Until then no port receives anything.
// The frames waiting in the other ports' sockets are processed afterwards.
// If this test fails because BMv2 went on receiving, the defect is gone:
// update README.md and let the Figure 2 test take the link down instead.
func TestBMv2InterfaceDownStopsReception(t *testing.T) {
	tools := Require(t, Needs{Switch: true})
	bm := startBMv2DUT(t, tools, 3)
	ctx := context.Background()
	g := newGen(5)
	rx := func(port int64) int64 {
		t.Helper()
		v, err := bm.c.ReadCounter(ctx, p4.CounterPortRx, port)
		if err != nil {
			t.Fatal(err)
		}
		return v[port].Packets
	}
	send := func(port uint16) {
		t.Helper()
		f := g.good(wire.TypeData, "no-route", keyOther, g.key())
		if err := bm.taps[port].Send(f.b); err != nil {
			t.Fatal(err)
		}
	}
	waitRx := func(port int64, want int64, within time.Duration) error {
		deadline := time.Now().Add(within)
		for {
			got := rx(port)
			if got == want {
				return nil
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("port_rx[%d] = %d, want %d", port, got, want)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	send(1)
	if err := waitRx(1, 1, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	n := NewNet(t)
	n.SetLinkUp(bm.bmv2.NS, "p3", false)
	// The receive thread blocks once it wakes for the interface's error:
	// give it the time to.
	time.Sleep(300 * time.Millisecond)
	base := rx(1)
	for range 3 {
		send(1)
	}
	if err := waitRx(1, base+3, time.Second); err == nil {
		t.Fatal("BMv2 received on port 1 while port 3 was down: the defect is gone (update README.md and the Figure 2 test)")
	}
	n.SetLinkUp(bm.bmv2.NS, "p3", true)
	time.Sleep(200 * time.Millisecond)
	if got := rx(1); got != base {
		t.Fatalf("port 3 up again, nothing received on it yet: port_rx[1] = %d, want still %d", got, base)
	}
	send(3) // the frame that wakes the receive thread
	if err := waitRx(1, base+3, 5*time.Second); err != nil {
		t.Fatalf("after a frame on port 3: %v", err)
	}
	if err := waitRx(3, 1, 5*time.Second); err != nil {
		t.Fatal(err)
	}
}
