package harness

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"sync"
	"time"

	"github.com/dmsc-mesh/dmsc/ca"
	"github.com/dmsc-mesh/dmsc/softswitch"
	"github.com/dmsc-mesh/dmsc/wire"
)

// Registration is one pod registering a prefix through a PodPort: what it
// sent and when it got its answers.
type Registration struct {
	Prefix string
	pod    *ca.Issued
	mac    [6]byte

	// Announced is when the first ANNOUNCE went out; Challenged, Proved
	// and Accepted when the last CHALLENGE came, the last PROOF went and
	// the ACCEPT came.
	Announced, Challenged, Proved, Accepted time.Time
	// Instance is the key the SG gave the pod.
	Instance wire.Key
	// Announces and Proofs count what was sent (retransmissions and
	// retries included); Rejects what came back, by reason.
	Announces, Proofs int
	Rejects           map[wire.PodReason]int
	// Err is a final refusal.
	Err error

	state    podState
	lastSent time.Time
	retryAt  time.Time
	done     chan struct{}
}

type podState uint8

const (
	podAnnounced podState = iota + 1 // waiting for CHALLENGE
	podProved                        // waiting for ACCEPT
	podWaiting                       // told to retry later
	podFinished
)

// Done is closed when the registration was accepted or finally refused.
func (r *Registration) Done() <-chan struct{} { return r.done }

// PodTimers are the pods' retransmission times: an ANNOUNCE without a
// CHALLENGE is sent again after Announce, a PROOF without an answer after
// Proof (SPA may take a while under load; the SG ignores a PROOF it is
// already deciding).
type PodTimers struct {
	Announce, Proof time.Duration
}

// PodPort is an SG pod port with any number of pods behind it, each with its
// own MAC, speaking pod signalling frame by frame as controller/sg_test.go's
// pods do, with retransmission: ANNOUNCE, CHALLENGE, PROOF (signed with
// ca.SignProof), ACCEPT or REJECT. One goroutine reads the link, answers
// CHALLENGEs and resends what went unanswered; Close stops it.
type PodPort struct {
	link   *softswitch.MemPort
	Port   uint16
	timers PodTimers

	mu    sync.Mutex
	byMAC map[[6]byte]*Registration
	next  uint32 // pods created, for MACs
	// SendErrors counts frames the link refused (its queue full).
	sendErrors int
	// received counts pod messages from the SG by type; unmatched those for
	// no pod of this port (or one already done).
	received  map[uint8]int
	unmatched int

	stop, stopped chan struct{}
}

// NewPodPort drives the pods of one pod port over link.
func NewPodPort(link *softswitch.MemPort, port uint16, timers PodTimers) *PodPort {
	if timers.Announce <= 0 {
		timers.Announce = 500 * time.Millisecond
	}
	if timers.Proof <= 0 {
		timers.Proof = 3 * time.Second
	}
	p := &PodPort{link: link, Port: port, timers: timers, byMAC: map[[6]byte]*Registration{}, received: map[uint8]int{},
		stop: make(chan struct{}), stopped: make(chan struct{})}
	go p.run()
	return p
}

// Close stops the port's goroutine; registrations not done stay so.
func (p *PodPort) Close() {
	close(p.stop)
	<-p.stopped
}

// SendErrors is how many frames the link refused because its queue was full.
func (p *PodPort) SendErrors() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.sendErrors
}

// Received reports how many pod messages of each type came from the SG,
// and how many of them were for no pod waiting for one.
func (p *PodPort) Received() (byType map[uint8]int, unmatched int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return maps.Clone(p.received), p.unmatched
}

// Register starts a pod that registers prefix with its certificate.
func (p *PodPort) Register(prefix string, pod *ca.Issued) *Registration {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.next++
	r := &Registration{Prefix: prefix, pod: pod, Rejects: map[wire.PodReason]int{}, done: make(chan struct{}),
		mac: [6]byte{0x02, 0xbb, byte(p.Port), byte(p.next >> 16), byte(p.next >> 8), byte(p.next)}}
	p.byMAC[r.mac] = r
	r.Announced = time.Now()
	p.announceLocked(r, r.Announced)
	return r
}

// Wait waits until every registration is done, or ctx ends.
func Wait(ctx context.Context, regs []*Registration) error {
	for _, r := range regs {
		select {
		case <-r.done:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	var errs []error
	for _, r := range regs {
		if r.Err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", r.Prefix, r.Err))
		}
	}
	if len(errs) > 3 {
		errs = append(errs[:3], fmt.Errorf("and %d more", len(errs)-3))
	}
	return errors.Join(errs...)
}

func (p *PodPort) sendLocked(r *Registration, msgType uint8, m interface{ Append([]byte) ([]byte, error) }) {
	body, err := m.Append(nil)
	if err != nil {
		r.Err = err
		return
	}
	env, err := wire.AppendControl(nil, wire.SignalPod, msgType, body)
	if err != nil {
		r.Err = err
		return
	}
	frame := wire.AppendFrame(nil, wire.Ethernet{Dst: [6]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, Src: r.mac},
		wire.Header{Type: wire.TypeControl, HopLimit: 1, NextProto: wire.ProtoControl}, nil, env)
	if p.link.Send(frame) != nil {
		p.sendErrors++ // the retransmission timer sends it again
	}
}

func (p *PodPort) announceLocked(r *Registration, now time.Time) {
	r.state, r.lastSent = podAnnounced, now
	r.Announces++
	p.sendLocked(r, wire.PodAnnounce, wire.Announce{Prefix: r.Prefix, CertChain: [][]byte{r.pod.Cert.Raw}})
}

func (p *PodPort) finishLocked(r *Registration, err error) {
	if r.state == podFinished {
		return
	}
	r.state, r.Err = podFinished, err
	close(r.done)
}

func (p *PodPort) run() {
	defer close(p.stopped)
	lastScan := time.Now()
	for {
		select {
		case <-p.stop:
			return
		default:
		}
		if b, err := p.link.Recv(10 * time.Millisecond); err == nil {
			p.handle(b)
		}
		if now := time.Now(); now.Sub(lastScan) >= 10*time.Millisecond {
			lastScan = now
			p.retransmit(now)
		}
	}
}

// handle reacts to one frame from the SG.
func (p *PodPort) handle(b []byte) {
	var f wire.Frame
	if wire.ParseFrame(b, &f) != wire.DropNone || f.Hdr.Type != wire.TypeControl {
		return
	}
	c, err := wire.DecodeControl(f.Payload)
	if err != nil || c.Signal != wire.SignalPod {
		return
	}
	now := time.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.received[c.MsgType]++
	r, ok := p.byMAC[f.Eth.Dst]
	if !ok || r.state == podFinished {
		p.unmatched++
		return
	}
	switch c.MsgType {
	case wire.PodChallenge:
		ch, err := wire.DecodeChallenge(c.Body)
		if err != nil || ch.Prefix != r.Prefix {
			return
		}
		sig, err := ca.SignProof(r.pod.Key, ch.Challenge[:], ch.SG, ch.Port, r.Prefix)
		if err != nil {
			p.finishLocked(r, err)
			return
		}
		r.Challenged, r.Proved = now, now
		r.state, r.lastSent = podProved, now
		r.Proofs++
		p.sendLocked(r, wire.PodProof, wire.Proof{Prefix: r.Prefix, Challenge: ch.Challenge, Signature: sig})
	case wire.PodAccept:
		acc, err := wire.DecodeAccept(c.Body)
		if err != nil || acc.Prefix != r.Prefix {
			return
		}
		r.Accepted, r.Instance = now, acc.Instance
		p.finishLocked(r, nil)
	case wire.PodReject:
		rej, err := wire.DecodeReject(c.Body)
		if err != nil {
			return
		}
		r.Rejects[rej.Reason]++
		switch {
		case rej.Reason == wire.ReasonNoChallenge:
			p.announceLocked(r, now) // the challenge was lost or stale: start over
		case rej.RetryAfter > 0:
			r.state, r.retryAt = podWaiting, now.Add(rej.RetryAfter)
		default:
			p.finishLocked(r, fmt.Errorf("rejected: %s: %s", rej.Reason, rej.Text))
		}
	}
}

// retransmit resends what went unanswered and retries what was told to
// wait.
func (p *PodPort) retransmit(now time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, r := range p.byMAC {
		switch {
		case r.state == podAnnounced && now.Sub(r.lastSent) > p.timers.Announce,
			r.state == podWaiting && !now.Before(r.retryAt),
			r.state == podProved && now.Sub(r.lastSent) > p.timers.Proof:
			// A PROOF that went unanswered is retried from the ANNOUNCE: the
			// challenge may have expired with a lost frame.
			p.announceLocked(r, now)
		}
	}
}
