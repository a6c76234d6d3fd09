package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/dmsc-mesh/dmsc/controller"
	"github.com/dmsc-mesh/dmsc/topo"
)

func TestShow(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	f, err := topo.Start(ctx, topo.Line(2), topo.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	timers := controller.DefaultTimers()
	timers.Dead = 300 * time.Millisecond
	if err := f.StartAgents(ctx, topo.AgentOptions{Timers: timers, Configure: func(_ string, c *controller.Config) {
		c.GNMI = &controller.GNMIConfig{Listen: "127.0.0.1:0", Interval: 100 * time.Millisecond}
	}}); err != nil {
		t.Fatal(err)
	}
	a, _ := f.Agent("r1")
	addr := a.GNMIAddr()
	deadline := time.Now().Add(10 * time.Second)
	var out string
	for time.Now().Before(deadline) {
		out, err = run(ctx, "show", "neighbors", "--agent", addr, "--insecure")
		if err == nil && strings.Contains(out, "r2") && strings.Contains(out, "UP") {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !strings.Contains(out, "NEIGHBOR") || !strings.Contains(out, "r2") || !strings.Contains(out, "UP") {
		t.Fatalf("show neighbors: %v\n%s", err, out)
	}
	for _, tc := range []struct{ verb, want string }{
		{"lsdb", "r2"}, {"fib", "cpu"}, {"probes", "no probes"}, {"policies", "no policies"},
	} {
		out, err := run(ctx, "show", tc.verb, "--agent", addr, "--insecure")
		if err != nil || !strings.Contains(out, tc.want) {
			t.Errorf("show %s: %v\n%s", tc.verb, err, out)
		}
	}
	if _, err := run(ctx, "show", "fib", "--agent", addr); err == nil || !strings.Contains(err.Error(), "--insecure") {
		t.Errorf("show without TLS files: %v", err)
	}
	if _, err := run(ctx, "show", "fib", "--agent", "127.0.0.1:1", "--insecure", "--timeout", "300ms"); err == nil {
		t.Error("show against nothing succeeded")
	}
}
