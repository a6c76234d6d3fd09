package controller_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/dmsc-mesh/dmsc/controller"
	"github.com/dmsc-mesh/dmsc/spf"
	"github.com/dmsc-mesh/dmsc/topo"
)

func TestFloodingShapes(t *testing.T) {
	for _, tc := range []struct {
		name string
		t    *topo.Topology
		// a node pair and the hop count between them
		from, to string
		hops     int
	}{
		{"line", topo.Line(6), "r1", "r6", 5},
		{"ring", topo.Ring(8), "r1", "r5", 4},
		{"grid", topo.Grid(4, 4), "g0-0", "g3-3", 6},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := startTopology(t, tc.t, topo.AgentOptions{})
			snaps := waitConverged(t, f, 15*time.Second, reachesAll(f))
			for n, s := range snaps {
				if len(s.LSDB) != len(tc.t.Nodes) {
					t.Errorf("%s: %d fragments, want %d", n, len(s.LSDB), len(tc.t.Nodes))
				}
			}
			r := snaps[tc.from].Routes[nodePrefix(tc.to)]
			if r.Metric != uint64(10*tc.hops) {
				t.Errorf("%s → %s: %v, want metric %d", tc.from, tc.to, r, 10*tc.hops)
			}
			probe(t, f, tc.from, tc.to)
		})
	}
}

// TestPartitionHeals partitions a line, changes the topology on one side,
// and heals it: the other side learns the change by database sync (it
// happened before the link came back, so no flooding carries it).
func TestPartitionHeals(t *testing.T) {
	f := startTopology(t, topo.Line(6), topo.AgentOptions{})
	waitConverged(t, f, 10*time.Second, reachesAll(f))
	mid, _ := f.Link("r3", "r4")
	if err := f.Cut(mid); err != nil {
		t.Fatal(err)
	}
	waitSettled(t, f, 10*time.Second) // each side converges alone
	// While partitioned: r1–r2 goes down on the left.
	left, _ := f.Link("r1", "r2")
	if err := f.Cut(left); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	r2 := lspSeq(snapshot(t, f, "r6"), "r2")
	if err := f.Restore(mid); err != nil {
		t.Fatal(err)
	}
	// r1 is cut off and keeps its stale view; r6 learns r2's new LSP and
	// routes accordingly.
	eventually(t, 10*time.Second, func() error {
		r6 := snapshot(t, f, "r6")
		if seq := lspSeq(r6, "r2"); seq <= r2 {
			return fmt.Errorf("r6 holds r2's LSP seq %d, not newer than %d", seq, r2)
		}
		if _, ok := r6.FIB[nodePrefix("r1")]; ok {
			return fmt.Errorf("r6 still routes to r1")
		}
		if _, ok := r6.FIB[nodePrefix("r2")]; !ok {
			return fmt.Errorf("r6 has no route to r2")
		}
		return nil
	})
	waitSettled(t, f, 10*time.Second)
	if err := f.Restore(left); err != nil {
		t.Fatal(err)
	}
	waitConverged(t, f, 10*time.Second, reachesAll(f))
}

func lspSeq(s controller.Snapshot, origin spf.NodeID) uint32 {
	for _, e := range s.LSDB {
		if e.Origin == origin && e.Fragment == 0 {
			return e.Seq
		}
	}
	return 0
}

// TestAgeingAndPurge stops an agent: its neighbours drop the adjacency at
// once, and its LSP ages out everywhere and is purged.
func TestAgeingAndPurge(t *testing.T) {
	timers := testTimers()
	timers.LSPLifetime = 2
	timers.Refresh = time.Second
	timers.PurgeHold = time.Second
	f := startTopology(t, topo.Line(3), topo.AgentOptions{Timers: timers})
	waitConverged(t, f, 10*time.Second, reachesAll(f))
	// Refreshes keep LSPs alive beyond their lifetime.
	time.Sleep(2500 * time.Millisecond)
	waitConverged(t, f, 5*time.Second, reachesAll(f))

	if err := f.StopAgent("r3"); err != nil {
		t.Fatal(err)
	}
	stopped := time.Now()
	// Purged within the lifetime (the last copy was at most a refresh old),
	// then the purge header is dropped after PurgeHold.
	var purgedAt time.Duration
	deadline := time.Now().Add(8 * time.Second)
	for time.Now().Before(deadline) {
		s := snapshot(t, f, "r1")
		found, purged := false, false
		for _, e := range s.LSDB {
			if e.Origin == "r3" {
				found = true
				purged = e.RemainingLifetime == 0
			}
		}
		if purged && purgedAt == 0 {
			purgedAt = time.Since(stopped)
			if _, ok := s.FIB[nodePrefix("r3")]; ok {
				t.Error("r1 routes to r3 after its LSP was purged")
			}
		}
		if !found {
			if purgedAt == 0 {
				t.Fatal("r3's LSP vanished without a purge")
			}
			t.Logf("r3's LSP purged after %v, gone after %v", purgedAt, time.Since(stopped))
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("r3's LSP still held 8 s after its agent stopped (purged after %v)", purgedAt)
}

// TestAgentRestartIsWarm restarts the agent of a transit switch while
// traffic crosses it: the switch keeps forwarding, the new agent reads the
// FIB back and needs no write at all to reconcile, and its LSP sequence
// numbers do not fall back.
func TestAgentRestartIsWarm(t *testing.T) {
	// Neighbours hold the adjacency longer than the restart takes, as
	// operators set hold times for planned restarts.
	timers := testTimers()
	timers.Dead = 3 * time.Second
	timers.WarmHold = 5 * time.Second
	f := startTopology(t, topo.Line(3), topo.AgentOptions{Timers: timers})
	waitConverged(t, f, 10*time.Second, reachesAll(f))
	oldSeq := lspSeq(snapshot(t, f, "r1"), "r2")

	if err := f.StopAgent("r2"); err != nil {
		t.Fatal(err)
	}
	// The data plane forwards on without its agent.
	probe(t, f, "r1", "r3")
	restarted := time.Now()
	if err := f.StartAgent(context.Background(), "r2"); err != nil {
		t.Fatal(err)
	}
	snaps := waitConverged(t, f, 10*time.Second, func(s map[string]controller.Snapshot) error {
		if s["r2"].Warm {
			return fmt.Errorf("r2 still in its warm hold")
		}
		return reachesAll(f)(s)
	})
	if took := time.Since(restarted); took > 2*time.Second {
		t.Errorf("warm hold ended after %v; the database sync should end it at once", took)
	}
	if w := snaps["r2"].FIBWrites; w != 0 {
		t.Errorf("the restarted agent wrote %d batches; the FIB it found was already right", w)
	}
	// The new agent starts at seq 1; the neighbours' copy makes it continue
	// from there (or it reached the same content at the same seq).
	if seq := lspSeq(snaps["r1"], "r2"); seq < oldSeq {
		t.Errorf("r2's LSP seq %d after restart, below the old %d", seq, oldSeq)
	}
	probe(t, f, "r1", "r3")
}

// eventually retries cond until it holds or timeout passes.
func eventually(t *testing.T, timeout time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %v", timeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
