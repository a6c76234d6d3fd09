package controller

import (
	"bytes"
	"errors"
	"slices"
	"time"

	"github.com/dmsc-mesh/dmsc/controller/lsmsg"
	"github.com/dmsc-mesh/dmsc/spf"
	"github.com/dmsc-mesh/dmsc/wire"
)

// neighbor is the flooding state of one two-way adjacency, IS-IS's SRM and
// SSN flags: which fragments still have to reach the neighbour (and when to
// send them again), and which we owe it an ACK for.
type neighbor struct {
	port uint16
	id   spf.NodeID
	mac  [6]byte
	// send maps a fragment to when it is due (again); an ACK, or the same
	// copy coming back, removes it.
	send map[spf.FragmentID]time.Duration
	acks []spf.Summary
	// ackDue is when the pending ACKs go out.
	ackDue time.Duration
	// nextSync is when the next periodic summary is due.
	nextSync time.Duration
	// sawLast: the last range of a summary from the neighbour arrived;
	// requested: what we asked for and have not received yet. Both together
	// say the first database exchange is over.
	sawLast   bool
	requested map[spf.FragmentID]time.Duration
}

// synced reports whether the database exchange with n is complete: its
// last summary range arrived and every fragment we asked for came, or was
// asked for longer than patience ago (the neighbour no longer has it).
func (n *neighbor) synced(now, patience time.Duration) bool {
	if !n.sawLast {
		return false
	}
	for _, at := range n.requested {
		if now-at < patience {
			return false
		}
	}
	return true
}

func (n *neighbor) nextDue() (time.Duration, bool) {
	var next time.Duration
	ok := false
	take := func(t time.Duration) {
		if !ok || t < next {
			next, ok = t, true
		}
	}
	for _, t := range n.send {
		take(t)
	}
	if len(n.acks) > 0 {
		take(n.ackDue)
	}
	take(n.nextSync)
	return next, ok
}

// adjacencyChanged reacts to an adjacency going up or down.
func (a *Agent) adjacencyChanged(ch AdjacencyChange, now time.Duration) {
	l := a.loop
	a.log.Info("adjacency "+ch.To.String(), "port", ch.Port, "neighbor", string(ch.Neighbor), "was", ch.From.String())
	if (ch.To == AdjUp || ch.From == AdjUp) && l.ports[ch.Port] != nil {
		l.ports[ch.Port].adjChanged = time.Now()
	}
	switch {
	case ch.To == AdjUp:
		adj, _ := l.adj.Get(ch.Port)
		n := &neighbor{
			port: ch.Port, id: ch.Neighbor, send: map[spf.FragmentID]time.Duration{},
			requested: map[spf.FragmentID]time.Duration{},
		}
		n.mac = macBytes(adj.NeighborDMAC)
		l.nbrs[ch.Port] = n
		// Database sync: the neighbour gets our summary and asks for what it
		// lacks; we do the same with its summary, which we ask for in case
		// its side of the adjacency did not go down.
		a.sendSummary(n, now, true)
	case ch.From == AdjUp:
		delete(l.nbrs, ch.Port)
	default:
		return
	}
	l.own.setAdjacencies(l.adj.Up(a.portMetric))
	// A change of next hops needs a full SPF even before our new LSP is
	// back from the neighbours.
	l.spf.Event(now)
}

func (a *Agent) portMetric(port uint16) uint32 {
	if ps, ok := a.loop.ports[port]; ok {
		return ps.Metric
	}
	return 10
}

func macBytes(v uint64) [6]byte {
	var m [6]byte
	for i := 5; i >= 0; i-- {
		m[i] = byte(v)
		v >>= 8
	}
	return m
}

// neighborMACChanged updates the next hops through port when the
// neighbour's MAC on it changed (a replaced switch behind the same link).
func (a *Agent) neighborMACChanged(port uint16) {
	l := a.loop
	n, ok := l.nbrs[port]
	if !ok {
		return
	}
	adj, _ := l.adj.Get(port)
	if m := macBytes(adj.NeighborDMAC); m != n.mac {
		n.mac = m
		a.reprogramAll()
	}
}

// receiveLSP handles an LSP from neighbour n on port.
func (a *Agent) receiveLSP(port uint16, n *neighbor, lsp spf.LSP, now time.Duration) {
	l := a.loop
	l.counters.LSPsReceived++
	// Flooding brings every LSP once per neighbour; a copy identical to the
	// one we hold (and so already verified) needs no signature check.
	if !a.holdsCopy(&lsp, now) {
		if err := a.verifyLSP(n, &lsp); err != nil {
			return
		}
	}
	res := l.db.Receive(lsp, now)

	id := lsp.ID()
	switch res.Verdict {
	case spf.Invalid:
		a.drop("lsp_invalid")
		a.logOnce("invalid/"+string(lsp.Origin), "LSP dropped: invalid", "origin", string(lsp.Origin), "from", string(n.id), "err", res.Err)
		if errors.Is(res.Err, spf.ErrSeqExhausted) {
			a.log.Error("own LSP sequence space exhausted; the fragment will age out", "fragment", id.String())
		}
		return
	case spf.Newer:
		a.ack(n, lsp, now)
		delete(n.send, id)
		for p, other := range l.nbrs {
			if p != port {
				other.send[id] = now
			}
		}
	case spf.Same:
		a.ack(n, lsp, now)
		delete(n.send, id)
	case spf.Older:
		// A replay or a stale copy: the sender gets ours.
		a.drop("lsp_older")
		n.send[id] = now
	case spf.Reoriginated:
		a.log.Info("own LSP seen newer elsewhere: re-originated above it", "fragment", id.String(), "seq", lsp.Seq)
		for _, other := range l.nbrs {
			other.send[id] = now
		}
	}
	delete(n.requested, id)
	if res.Topology || res.Prefixes {
		a.lsdbChanged(res.Topology, now)
	}
}

// verifyLSP checks an LSP's signature; a failure is dropped, counted and
// logged once per origin.
func (a *Agent) verifyLSP(n *neighbor, lsp *spf.LSP) error {
	signer, err := lsmsg.Verify(lsp, a.cfg.TrustedKeys)
	if err == nil {
		return nil
	}
	reason := "lsp_bad_auth"
	if errors.Is(err, lsmsg.ErrUntrusted) {
		reason = "lsp_untrusted"
	}
	a.drop(reason)
	a.logOnce(reason+"/"+string(lsp.Origin), "LSP dropped: authentication failed",
		"origin", string(lsp.Origin), "signer", string(signer), "from", string(n.id), "err", err)
	return err
}

// holdsCopy reports whether lsp is exactly the copy the database holds:
// same sequence number, same content, same authentication.
func (a *Agent) holdsCopy(lsp *spf.LSP, now time.Duration) bool {
	cur, ok := a.loop.db.Get(lsp.ID(), now)
	if !ok || cur.Seq != lsp.Seq || cur.Purged != lsp.Purged || (cur.RemainingLifetime == 0) != (lsp.RemainingLifetime == 0) {
		return false
	}
	return bytes.Equal(cur.Opaque, lsp.Opaque) && slices.Equal(cur.Adjacencies, lsp.Adjacencies) &&
		slices.Equal(cur.Prefixes, lsp.Prefixes)
}

func (a *Agent) ack(n *neighbor, lsp spf.LSP, now time.Duration) {
	// The summary of the copy we now hold, which is what Covers compares on
	// the other side; a purge of a fragment we do not hold is acknowledged
	// as received.
	s, ok := a.loop.db.SummaryOf(lsp.ID(), now)
	if !ok {
		s = spf.Summary{Origin: lsp.Origin, Fragment: lsp.Fragment, Seq: lsp.Seq}
	}
	if len(n.acks) == 0 {
		n.ackDue = now + a.t.AckDelay
	}
	n.acks = append(n.acks, s)
}

// expired floods what the database aged out or refreshed.
func (a *Agent) expired(res spf.ExpireResult, now time.Duration) {
	l := a.loop
	if res.Err != nil {
		a.log.Error("LSDB expiry", "err", res.Err)
	}
	for _, lsp := range append(res.Purged, res.Refreshed...) {
		for _, n := range l.nbrs {
			n.send[lsp.ID()] = now
		}
	}
	if len(res.Refreshed) > 0 {
		l.counters.LSPsOriginated += uint64(len(res.Refreshed))
	}
	if res.Topology || res.Prefixes {
		a.lsdbChanged(res.Topology, now)
	}
}

// flood sends every LSP, ACK and periodic summary that is due.
func (a *Agent) flood(now time.Duration) {
	l := a.loop
	for _, n := range l.nbrs {
		for id, due := range n.send {
			if due > now {
				continue
			}
			lsp, ok := l.db.Get(id, now)
			if !ok {
				delete(n.send, id)
				continue
			}
			if (lsp.Purged || lsp.RemainingLifetime == 0) && !lsmsg.IsPurgeAuth(&lsp) {
				// A purge the database made itself (a lifetime ran out): we
				// vouch for it.
				lsp.Opaque = a.signer.PurgeAuth(&lsp)
			}
			body, err := lsmsg.AppendLSP(nil, &lsp)
			if err != nil {
				a.logOnce("encode/"+id.String(), "cannot encode LSP; not flooded", "fragment", id.String(), "err", err)
				delete(n.send, id)
				continue
			}
			if a.sendControl(n.port, wire.SignalLinkState, wire.LSLSP, body, a.nodeKey, n.mac) == nil {
				l.counters.LSPsSent++
			}
			n.send[id] = now + jitter(a.t.Retransmit)
		}
		if len(n.acks) > 0 && n.ackDue <= now {
			a.sendAcks(n)
		}
		if n.nextSync <= now {
			a.sendSummary(n, now, false)
		}
	}
}

// sendAcks sends the pending ACKs of n, as many per message as fit.
func (a *Agent) sendAcks(n *neighbor) {
	for len(n.acks) > 0 {
		size, k := 2, 0
		for k < len(n.acks) && size+lsmsg.SummarySize(n.acks[k]) <= lsmsg.MaxBody {
			size += lsmsg.SummarySize(n.acks[k])
			k++
		}
		body, err := lsmsg.AppendAck(nil, lsmsg.Ack{Entries: n.acks[:k]})
		if err == nil && a.sendControl(n.port, wire.SignalLinkState, wire.LSAck, body, a.nodeKey, n.mac) == nil {
			a.loop.counters.AcksSent++
		}
		n.acks = n.acks[k:]
	}
	n.acks = nil
}

// sendSummary sends the whole database summary to n, in ranges that fit a
// message each and together cover the id space.
func (a *Agent) sendSummary(n *neighbor, now time.Duration, wantReply bool) {
	l := a.loop
	all := l.db.Summary(now)
	msg := lsmsg.DBSummary{First: true, WantReply: wantReply}
	size := 1 + 2*2 + 2 // flags, two empty ids, count
	flush := func(last bool) {
		msg.Last = last
		if !last {
			msg.Through = msg.Entries[len(msg.Entries)-1].ID()
		}
		body, err := lsmsg.AppendDBSummary(nil, msg)
		if err != nil {
			a.logOnce("summary-encode", "cannot encode DB_SUMMARY", "err", err)
			return
		}
		if a.sendControl(n.port, wire.SignalLinkState, wire.LSDBSummary, body, a.nodeKey, n.mac) == nil {
			l.counters.SummariesSent++
		}
		msg = lsmsg.DBSummary{After: msg.Through}
		size = 1 + lsmsg.IDSize(msg.After) + 2 + 2
	}
	for _, s := range all {
		es := lsmsg.SummarySize(s)
		// Room for the entry and for the Through id the flush adds.
		if len(msg.Entries) > 0 && size+es+lsmsg.IDSize(s.ID()) > lsmsg.MaxBody {
			flush(false)
		}
		msg.Entries = append(msg.Entries, s)
		size += es
	}
	flush(true)
	n.nextSync = now + jitter(a.t.Sync)
}

// receiveSummary compares one DB_SUMMARY range with the database: the
// neighbour gets what it lacks, and we ask for what we lack.
func (a *Agent) receiveSummary(n *neighbor, s lsmsg.DBSummary, now time.Duration) {
	l := a.loop
	plan := l.db.CompareRange(s.Entries, s.Covers)
	for _, e := range s.Entries {
		if l.db.Covers(e) {
			delete(n.send, e.ID())
		}
	}
	for _, id := range plan.Send {
		n.send[id] = now
	}
	if len(plan.Request) > 0 {
		a.sendRequest(n, plan.Request, now)
	}
	if s.Last {
		n.sawLast = true
	}
	if s.First && s.WantReply {
		a.sendSummary(n, now, false)
	}
}

func (a *Agent) sendRequest(n *neighbor, ids []spf.FragmentID, now time.Duration) {
	for len(ids) > 0 {
		size, k := 2, 0
		for k < len(ids) && size+lsmsg.IDSize(ids[k]) <= lsmsg.MaxBody {
			size += lsmsg.IDSize(ids[k])
			k++
		}
		body, err := lsmsg.AppendDBRequest(nil, lsmsg.DBRequest{IDs: ids[:k]})
		if err == nil && a.sendControl(n.port, wire.SignalLinkState, wire.LSDBRequest, body, a.nodeKey, n.mac) == nil {
			a.loop.counters.RequestsSent++
			for _, id := range ids[:k] {
				n.requested[id] = now
			}
		}
		ids = ids[k:]
	}
}
