package controller

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/dmsc-mesh/dmsc/p4"
	"github.com/dmsc-mesh/dmsc/wire"
)

// ProbeResult is one probe's answer.
type ProbeResult struct {
	// RTT is the round trip without the reflector's own processing time.
	RTT time.Duration
	// Responder is the key that answered (an instance key when a service
	// key was probed).
	Responder wire.Key
	// Port is the port the reply came in on.
	Port uint16
}

// probeWait is a probe in flight: what to do with its reply. Periodic
// probes are forgotten after the probe timeout; Probe's own waits are
// removed by Probe.
type probeWait struct {
	reply    func(ProbeResult)
	periodic bool
	sentAt   time.Duration
}

// ErrProbeTimeout is returned when no reply came in time.
var ErrProbeTimeout = errors.New("controller: probe timed out")

// Probe sends one PROBE to target (a node key, a service key or an instance
// key) through the switch's FIB and waits for its reply: egress SGs reflect
// probes to their instances in the data plane, agents answer probes to their
// node key.
func (a *Agent) Probe(ctx context.Context, target wire.Key, flow uint32) (ProbeResult, error) {
	done := make(chan ProbeResult, 1)
	var seq uint32
	var sendErr error
	if err := a.do(ctx, func() {
		seq, sendErr = a.sendProbe(target, flow, func(r ProbeResult) { done <- r })
	}); err != nil {
		return ProbeResult{}, err
	}
	if sendErr != nil {
		return ProbeResult{}, sendErr
	}
	defer a.do(context.Background(), func() { delete(a.loop.probes, seq) })
	select {
	case r := <-done:
		return r, nil
	case <-ctx.Done():
		return ProbeResult{}, fmt.Errorf("%w: %v", ErrProbeTimeout, ctx.Err())
	case <-a.stopped:
		return ProbeResult{}, errors.New("controller: agent stopped")
	}
}

// sendProbe sends a probe from the loop; reply runs on the loop when the
// answer comes. The caller forgets the probe (delete from probes) when it
// gives up waiting.
func (a *Agent) sendProbe(target wire.Key, flow uint32, reply func(ProbeResult)) (uint32, error) {
	l := a.loop
	if l.probes == nil {
		l.probes = map[uint32]*probeWait{}
	}
	l.probeSeq++
	seq := l.probeSeq
	ph := wire.ProbeHeader{Seq: seq, TTx: uint64(time.Now().UnixNano())}
	h := wire.Header{Version: wire.Version, Type: wire.TypeProbe, HopLimit: wire.DefaultHopLimit,
		FlowLabel: flow, Dst: target, Src: a.nodeKey}
	frame := wire.AppendFrame(nil, wire.Ethernet{Dst: broadcastMAC}, h, &ph, nil)
	if err := a.packetOut(frame, 0, p4.OutRoute); err != nil {
		return 0, err
	}
	l.probes[seq] = &probeWait{reply: reply}
	return seq, nil
}

// probeFrame answers a probe to our node key, or completes one of ours.
// It reports whether the frame was a probe.
func (a *Agent) probeFrame(port uint16, f *wire.Frame) bool {
	l := a.loop
	switch {
	case f.Hdr.Type == wire.TypeProbe && f.Hdr.Dst == a.nodeKey:
		ph := f.Probe
		t := uint64(time.Now().UnixNano())
		ph.TRx, ph.TReply = t, t
		h := f.Hdr
		h.Type = wire.TypeProbeReply
		h.HopLimit = wire.DefaultHopLimit
		h.Dst, h.Src = f.Hdr.Src, a.nodeKey
		frame := wire.AppendFrame(nil, wire.Ethernet{Dst: broadcastMAC}, h, &ph, nil)
		a.packetOut(frame, 0, p4.OutRoute)
		l.counters.ProbesAnswered++
		return true
	case f.Hdr.Type == wire.TypeProbeReply && f.Hdr.Dst == a.nodeKey:
		w, ok := l.probes[f.Probe.Seq]
		if !ok {
			a.drop("probe_reply_unexpected")
			return true
		}
		delete(l.probes, f.Probe.Seq)
		now := uint64(time.Now().UnixNano())
		rtt := time.Duration(now-f.Probe.TTx) - time.Duration(f.Probe.TReply-f.Probe.TRx)
		w.reply(ProbeResult{RTT: max(rtt, 0), Responder: f.Hdr.Src, Port: port})
		return true
	}
	return false
}
