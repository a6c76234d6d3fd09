package bmv2tests

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	p4v1 "github.com/p4lang/p4runtime/go/p4/v1"

	"github.com/dmsc-mesh/dmsc/internal/switchtest"
	"github.com/dmsc-mesh/dmsc/p4"
	"github.com/dmsc-mesh/dmsc/p4rt"
)

// dut is a device under test: a switch with ports 1..n whose far ends the
// test holds, programmed over P4Runtime by the project's client.
type dut struct {
	name string
	c    *p4rt.Client
	taps map[uint16]*Tap
	pins *pinRecorder
	bmv2 *BMv2 // nil for the software switch
}

// startBMv2DUT starts BMv2 in a namespace of its own with data ports
// 1..ports on veth pairs to the root namespace, taps their root ends, and
// pushes the DMSC pipeline with the committed BMv2 JSON.
func startBMv2DUT(t *testing.T, tools Tools, ports int) *dut {
	t.Helper()
	n := NewNet(t)
	ns := n.Namespace()
	bind := map[uint16]string{}
	roots := map[uint16]string{}
	for p := 1; p <= ports; p++ {
		name := fmt.Sprintf("p%d", p)
		roots[uint16(p)] = n.VethToRoot(ns, name)
		bind[uint16(p)] = name
	}
	b := StartBMv2(t, tools.Switch, "dut", ns, bind)
	d := &dut{name: "bmv2", taps: map[uint16]*Tap{}, bmv2: b}
	for p, iface := range roots {
		d.taps[p] = OpenTap(t, iface)
	}
	d.c = primary(t, b.Addr, BMv2JSON(t))
	d.pins = recordPacketIns(t, d.c)
	return d
}

// startSoftDUT starts the software switch with in-memory ports 1..ports
// behind the project's P4Runtime server and pushes the same pipeline (the
// software switch accepts the BMv2 JSON and ignores it).
func startSoftDUT(t *testing.T, ports int) *dut {
	t.Helper()
	ts := switchtest.Start(t, ports)
	d := &dut{name: "softswitch", taps: map[uint16]*Tap{}}
	for p, far := range ts.Links {
		d.taps[p] = NewTap(t, fmt.Sprintf("mem%d", p), far)
	}
	d.c = primary(t, ts.Addr, BMv2JSON(t))
	d.pins = recordPacketIns(t, d.c)
	return d
}

// primary dials addr as the primary controller and pushes the pipeline.
func primary(t testing.TB, addr string, deviceConfig []byte) *p4rt.Client {
	t.Helper()
	c, err := p4rt.Dial(context.Background(), addr, p4rt.Options{
		DeviceID:   DeviceID,
		ElectionID: p4rt.ElectionID{Low: 1},
		Backoff:    p4rt.Backoff{Initial: 20 * time.Millisecond, Max: 200 * time.Millisecond},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := c.WaitPrimary(ctx); err != nil {
		t.Fatalf("%s: %v", addr, err)
	}
	s, err := p4.Schema()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.SetPipeline(ctx, s.P4Info(), deviceConfig, 1); err != nil {
		t.Fatalf("%s: %v", addr, err)
	}
	return c
}

// pinRecorder keeps the packet-ins a client receives.
type pinRecorder struct {
	mu   sync.Mutex
	pins []p4rt.PacketIn
	last time.Time
}

func recordPacketIns(t testing.TB, c *p4rt.Client) *pinRecorder {
	r := &pinRecorder{}
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case pi := <-c.PacketIns():
				r.mu.Lock()
				r.pins = append(r.pins, pi)
				r.last = time.Now()
				r.mu.Unlock()
			case <-stop:
				return
			}
		}
	}()
	t.Cleanup(func() { close(stop); <-done })
	return r
}

func (r *pinRecorder) take() []p4rt.PacketIn {
	r.mu.Lock()
	defer r.mu.Unlock()
	p := r.pins
	r.pins = nil
	return p
}

func (r *pinRecorder) activity() (int, time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.pins), r.last
}

// write sends updates in one Write and fails the test on any error.
func (d *dut) write(t testing.TB, ups ...*p4v1.Update) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := d.c.Write(ctx, ups...); err != nil {
		t.Fatalf("%s: %v", d.name, err)
	}
}

// settle waits until nothing has arrived on any tap or as a packet-in of
// the duts for quiet, or max has passed.
func settle(quiet, max time.Duration, duts ...*dut) {
	deadline := time.Now().Add(max)
	var lastSeen string
	stable := time.Now()
	for time.Now().Before(deadline) {
		var mark []any
		for _, d := range duts {
			ports := make([]uint16, 0, len(d.taps))
			for p := range d.taps {
				ports = append(ports, p)
			}
			slices.Sort(ports)
			for _, p := range ports {
				mark = append(mark, d.taps[p].Len(), d.taps[p].LastArrival().UnixNano())
			}
			n, last := d.pins.activity()
			mark = append(mark, n, last.UnixNano())
		}
		s := fmt.Sprint(mark...)
		if s != lastSeen {
			lastSeen, stable = s, time.Now()
		} else if time.Since(stable) >= quiet {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}
