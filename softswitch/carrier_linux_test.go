//go:build linux

package softswitch

import (
	"context"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/dmsc-mesh/dmsc/internal/netns"
)

type portEvent struct {
	port uint16
	up   bool
}

type recordingSetter chan portEvent

func (r recordingSetter) SetPortUp(num uint16, up bool) error {
	r <- portEvent{num, up}
	return nil
}

// WatchCarrier follows a veth whose peer goes down and up.
func TestWatchCarrier(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("softswitch: the carrier test needs root (network namespaces, veth pairs)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("softswitch: the carrier test needs ip (iproute2)")
	}
	n := netns.New(t, "dmscs")
	ns := n.Namespace()
	root := n.VethToRoot(ns, "c0")

	set := make(recordingSetter, 16)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- WatchCarrier(ctx, set, map[string]uint16{root: 7}, nil) }()
	want := func(ev portEvent) {
		t.Helper()
		select {
		case got := <-set:
			if got != ev {
				t.Fatalf("got %+v, want %+v", got, ev)
			}
		case err := <-done:
			t.Fatalf("WatchCarrier ended: %v", err)
		case <-time.After(5 * time.Second):
			t.Fatalf("no %+v within 5 s", ev)
		}
	}
	want(portEvent{7, true}) // the present state
	n.SetLinkUp(ns, "c0", false)
	want(portEvent{7, false})
	n.SetLinkUp(ns, "c0", true)
	want(portEvent{7, true})
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("WatchCarrier: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("WatchCarrier did not return after its context ended")
	}
}

func TestWatchCarrierUnknownInterface(t *testing.T) {
	err := WatchCarrier(context.Background(), make(recordingSetter, 1), map[string]uint16{"dmsc-no-such0": 1}, nil)
	if err == nil {
		t.Fatal("an unknown interface was accepted")
	}
}
