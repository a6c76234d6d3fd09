package controller_test

import (
	"bytes"
	"crypto/ed25519"
	"fmt"
	"testing"
	"time"

	"github.com/dmsc-mesh/dmsc/controller"
	"github.com/dmsc-mesh/dmsc/controller/lsmsg"
	"github.com/dmsc-mesh/dmsc/softswitch"
	"github.com/dmsc-mesh/dmsc/spf"
	"github.com/dmsc-mesh/dmsc/topo"
	"github.com/dmsc-mesh/dmsc/wire"
)

// rogue is a neighbour the test plays by hand on a fabric port: it forms an
// adjacency like any node, then sends what no honest node would.
type rogue struct {
	t    *testing.T
	link *softswitch.MemPort
	id   spf.NodeID
	seen map[spf.FragmentID]spf.LSP // LSPs flooded to it
}

func (r *rogue) send(msgType uint8, body []byte) {
	r.t.Helper()
	env, err := wire.AppendControl(nil, wire.SignalLinkState, msgType, body)
	if err != nil {
		r.t.Fatal(err)
	}
	frame := wire.AppendFrame(nil, wire.Ethernet{Dst: [6]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, Src: [6]byte{2, 0xee}},
		wire.Header{Type: wire.TypeControl, HopLimit: 1, NextProto: wire.ProtoControl}, nil, env)
	if err := r.link.Send(frame); err != nil {
		r.t.Fatal(err)
	}
}

func (r *rogue) sendRaw(frame []byte) {
	if err := r.link.Send(frame); err != nil {
		r.t.Fatal(err)
	}
}

// pump reads what the switch sends for d, answering HELLOs as a neighbour
// on port peerPort would, and keeping the LSPs it is flooded.
func (r *rogue) pump(d time.Duration, peer spf.NodeID, peerPort uint32) {
	r.t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		b, err := r.link.Recv(10 * time.Millisecond)
		if err != nil {
			continue
		}
		var f wire.Frame
		if wire.ParseFrame(b, &f) != wire.DropNone {
			continue
		}
		c, err := wire.DecodeControl(f.Payload)
		if err != nil || c.Signal != wire.SignalLinkState {
			continue
		}
		switch c.MsgType {
		case wire.LSHello:
			body, _ := lsmsg.AppendHello(nil, lsmsg.Hello{Router: r.id, Port: 1, HeardRouter: peer, HeardPort: peerPort, HoldTime: time.Second})
			r.send(wire.LSHello, body)
		case wire.LSLSP:
			if l, err := lsmsg.DecodeLSP(c.Body); err == nil {
				r.seen[l.ID()] = l
			}
		case wire.LSDBSummary:
			// Answer with an empty database: the peer floods us everything.
			body, _ := lsmsg.AppendDBSummary(nil, lsmsg.DBSummary{First: true, Last: true})
			r.send(wire.LSDBSummary, body)
		}
	}
}

func lspBody(t *testing.T, l *spf.LSP) []byte {
	t.Helper()
	b, err := lsmsg.AppendLSP(nil, l)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestForgedAndReplayedLSPs: a neighbour on a fabric port sends a forged
// LSP (content changed under a valid signature), one from an untrusted
// origin, a replay of an old copy, an oversized frame and garbage. Each is
// dropped and counted, nothing changes in the database, and the replay is
// answered with the current copy.
func TestForgedAndReplayedLSPs(t *testing.T) {
	f := startTopology(t, topo.Line(3), topo.AgentOptions{
		Configure: func(node string, cfg *controller.Config) {
			if node == "r1" {
				cfg.Ports = append(cfg.Ports, controller.Port{Num: 9, Kind: controller.PortFabric, Metric: 10})
			}
		},
	})
	link, err := f.AttachPod("r1", 9)
	if err != nil {
		t.Fatal(err)
	}
	r := &rogue{t: t, link: link, id: "mallory", seen: map[spf.FragmentID]spf.LSP{}}
	r.pump(500*time.Millisecond, "r1", 9)
	old, ok := r.seen[spf.FragmentID{Origin: "r2"}]
	if !ok {
		t.Fatalf("the rogue was not flooded r2's LSP (saw %d)", len(r.seen))
	}
	// r2 re-originates: cut its link to r3.
	l23, _ := f.Link("r2", "r3")
	if err := f.Cut(l23); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, func() error {
		r.pump(50*time.Millisecond, "r1", 9)
		if seq := lspSeq(snapshot(t, f, "r1"), "r2"); seq <= old.Seq {
			return fmt.Errorf("r1 still holds r2 seq %d", seq)
		}
		return nil
	})
	before := snapshot(t, f, "r1")
	current := lspSeq(before, "r2")

	// Forged: a changed metric under r2's real signature.
	forged := old
	forged.Seq = current + 5
	forged.Adjacencies = []spf.Adjacency{{Neighbor: "r1", Metric: 1, LinkID: 1}}
	r.send(wire.LSLSP, lspBody(t, &forged))
	// Untrusted: mallory signs its own LSP.
	_, priv, _ := ed25519.GenerateKey(nil)
	own := spf.LSP{Origin: "mallory", Seq: 1, RemainingLifetime: 1200,
		Adjacencies: []spf.Adjacency{{Neighbor: "r1", Metric: 1, LinkID: 1}}}
	lsmsg.Signer{ID: "mallory", Key: priv}.Seal(&own)
	r.send(wire.LSLSP, lspBody(t, &own))
	// Replayed: r2's old copy, validly signed but older.
	r.seen = map[spf.FragmentID]spf.LSP{}
	r.send(wire.LSLSP, lspBody(t, &old))
	// Garbage, and an oversized frame.
	r.send(wire.LSLSP, []byte{0, 3, 'r', '2'})
	big := bytes.Repeat([]byte{0}, 1420)
	env, _ := wire.AppendControl(nil, wire.SignalLinkState, wire.LSLSP, big)
	r.sendRaw(wire.AppendFrame(nil, wire.Ethernet{}, wire.Header{Type: wire.TypeControl, HopLimit: 1, NextProto: wire.ProtoControl}, nil, env))

	eventually(t, 5*time.Second, func() error {
		r.pump(50*time.Millisecond, "r1", 9)
		s := snapshot(t, f, "r1")
		for _, reason := range []string{"lsp_bad_auth", "lsp_untrusted", "lsp_older", "lsp_malformed", "lsp_oversized"} {
			if s.Counters.Dropped[reason] == 0 {
				return fmt.Errorf("no %s drop counted: %v", reason, s.Counters.Dropped)
			}
		}
		if _, ok := r.seen[spf.FragmentID{Origin: "r2"}]; !ok {
			return fmt.Errorf("the replay was not answered with the current copy")
		}
		return nil
	})
	if got := r.seen[spf.FragmentID{Origin: "r2"}]; got.Seq != current {
		t.Errorf("replay answered with seq %d, want %d", got.Seq, current)
	}
	after := snapshot(t, f, "r1")
	if seq := lspSeq(after, "r2"); seq != current {
		t.Errorf("r1's copy of r2 moved from seq %d to %d", current, seq)
	}
	for _, e := range after.LSDB {
		if e.Origin == "mallory" {
			t.Error("r1 installed an LSP from an untrusted origin")
		}
	}
	// The rogue is an adjacency of r1 but never two-way in SPF: no route.
	if _, ok := after.FIB[nodePrefix("mallory")]; ok {
		t.Error("r1 routes to the rogue")
	}
}
