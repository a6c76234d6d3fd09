// Package podtest has test doubles for the pod SDK: FakeSG, the SG side of
// the pod announcement protocol (signal 1) on one link, for the tests of
// package pod, of dmsc pod, and of anything else that needs a pod to
// register without a switch and an agent.
package podtest

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/dmsc-mesh/dmsc/ca"
	"github.com/dmsc-mesh/dmsc/softswitch"
	"github.com/dmsc-mesh/dmsc/wire"
)

// Config configures a FakeSG. Only CA is required.
type Config struct {
	// CA is the domain CA whose pods the SG accepts.
	CA *x509.Certificate
	// NodeID and PortNum go into every CHALLENGE (and so into the proof);
	// defaults "sg1" and 1.
	NodeID  string
	PortNum uint32
	// Keepalive, Hold and Lease go into every ACCEPT (defaults 1 s, 3 s,
	// 30 s).
	Keepalive, Hold, Lease time.Duration
	// FirstInstance is the first instance id handed out (default 1); each
	// ACCEPT of a new registration takes the next one, so a
	// re-registration gets a new instance key.
	FirstInstance uint32
	// ChallengeTTL is how long a challenge is good (default 10 s).
	ChallengeTTL time.Duration
}

// Seen is one frame the SG received from the pod.
type Seen struct {
	Hdr     wire.Header
	MsgType uint8
	Body    []byte
	Dropped bool // DropNext swallowed it
}

type challenge struct {
	value  [wire.ChallengeSize]byte
	leaf   *x509.Certificate
	issued time.Time
}

// FakeSG answers one pod's signalling like an SG agent would, verifying
// the chain against the CA and the proof with ca.VerifyProof, with knobs to
// misbehave. It owns its end of the link.
type FakeSG struct {
	port   softswitch.Port
	cfg    Config
	pool   *x509.CertPool
	domain string
	node   wire.Key

	mu         sync.Mutex
	drop       map[uint8]int
	rejects    []wire.Reject
	noEcho     bool
	silent     bool
	noResolve  bool
	routes     map[wire.Key]wire.Resolved
	challenges map[string]challenge     // by prefix: the live one
	used       map[[32]byte]wire.Accept // consumed challenges, for duplicate PROOFs
	instances  map[wire.Key]string      // instance key → prefix
	nextID     uint32
	seen       []Seen

	done chan struct{}
	wg   sync.WaitGroup
}

// New starts a FakeSG on port (its end of the pod's link).
func New(port softswitch.Port, cfg Config) (*FakeSG, error) {
	if cfg.CA == nil {
		return nil, errors.New("podtest: Config.CA is nil")
	}
	domain, err := ca.DomainOf(cfg.CA)
	if err != nil {
		return nil, fmt.Errorf("podtest: Config.CA: %w", err)
	}
	if cfg.NodeID == "" {
		cfg.NodeID = "sg1"
	}
	if cfg.PortNum == 0 {
		cfg.PortNum = 1
	}
	if cfg.Keepalive == 0 {
		cfg.Keepalive = time.Second
	}
	if cfg.Hold == 0 {
		cfg.Hold = 3 * time.Second
	}
	if cfg.Lease == 0 {
		cfg.Lease = 30 * time.Second
	}
	if cfg.FirstInstance == 0 {
		cfg.FirstInstance = 1
	}
	if cfg.ChallengeTTL == 0 {
		cfg.ChallengeTTL = 10 * time.Second
	}
	nn, err := wire.NodeName(cfg.NodeID)
	if err != nil {
		return nil, fmt.Errorf("podtest: NodeID: %w", err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cfg.CA)
	s := &FakeSG{
		port: port, cfg: cfg, pool: pool, domain: domain, node: wire.KeyOf(nn),
		drop: map[uint8]int{}, routes: map[wire.Key]wire.Resolved{},
		challenges: map[string]challenge{}, used: map[[32]byte]wire.Accept{},
		instances: map[wire.Key]string{}, nextID: cfg.FirstInstance,
		done: make(chan struct{}),
	}
	s.wg.Add(1)
	go s.readLoop()
	return s, nil
}

// Close stops the SG and closes its end of the link.
func (s *FakeSG) Close() {
	select {
	case <-s.done:
		return
	default:
	}
	close(s.done)
	s.port.Close()
	s.wg.Wait()
}

// DropNext swallows the next n messages of msgType from the pod (a lost
// frame).
func (s *FakeSG) DropNext(msgType uint8, n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.drop[msgType] += n
}

// RejectNext answers the next PROOF that verifies with rej instead of an
// ACCEPT (calls queue up). Prefix is filled in.
func (s *FakeSG) RejectNext(rej wire.Reject) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rejects = append(s.rejects, rej)
}

// SetEcho turns KEEPALIVE echoes on (the default) or off.
func (s *FakeSG) SetEcho(on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.noEcho = !on
}

// SetSilent makes the SG answer nothing at all (it still records frames).
func (s *FakeSG) SetSilent(on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.silent = on
}

// SetResolve turns RESOLVE answers on (the default) or off (an old SG).
func (s *FakeSG) SetResolve(on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.noResolve = !on
}

// SetRoute sets the answer to RESOLVE of dst; keys without one are
// unreachable.
func (s *FakeSG) SetRoute(dst wire.Key, reachable bool, metric uint32) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.routes[dst] = wire.Resolved{Dst: dst, Reachable: reachable, Metric: metric}
}

// Forget drops every registration, as a restarted SG would: KEEPALIVEs
// are answered with REJECT 106 from now on.
func (s *FakeSG) Forget() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.instances = map[wire.Key]string{}
	s.challenges = map[string]challenge{}
}

// Instances returns the registered instance keys.
func (s *FakeSG) Instances() []wire.Key {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []wire.Key
	for k := range s.instances {
		out = append(out, k)
	}
	return out
}

// Count is how many messages of msgType arrived (dropped ones included).
func (s *FakeSG) Count(msgType uint8) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, f := range s.seen {
		if f.MsgType == msgType {
			n++
		}
	}
	return n
}

// Seen returns every signalling frame received so far.
func (s *FakeSG) Seen() []Seen {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Seen(nil), s.seen...)
}

// Send sends one signalling message to the pod as the SG, for tests that
// craft their own answers.
func (s *FakeSG) Send(msgType uint8, body []byte) error {
	payload, err := wire.AppendControl(nil, wire.SignalPod, msgType, body)
	if err != nil {
		return err
	}
	return s.SendRaw(payload)
}

// SendRaw sends payload (a control envelope, or anything) in a CONTROL
// frame to the pod.
func (s *FakeSG) SendRaw(payload []byte) error {
	if len(payload) > wire.MaxPayload {
		payload = payload[:wire.MaxPayload]
	}
	f := wire.AppendFrame(nil, wire.Ethernet{}, wire.Header{
		Type: wire.TypeControl, HopLimit: 1, NextProto: wire.ProtoControl, Src: s.node,
	}, nil, payload)
	_, err := s.port.WriteBatch([]softswitch.Message{{Buf: f, N: len(f)}})
	return err
}

func (s *FakeSG) readLoop() {
	defer s.wg.Done()
	ms := make([]softswitch.Message, 16)
	for i := range ms {
		ms[i].Buf = make([]byte, 2048)
	}
	for {
		n, err := s.port.ReadBatch(ms)
		for i := 0; i < n; i++ {
			s.handle(ms[i].Buf[:ms[i].N])
		}
		if err != nil {
			select {
			case <-s.done:
				return
			default:
			}
			if errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(time.Millisecond) // ECONNREFUSED on UDP before the pod is up
		}
	}
}

func (s *FakeSG) handle(b []byte) {
	var f wire.Frame
	if wire.ParseFrame(b, &f) != wire.DropNone || f.Hdr.Type != wire.TypeControl {
		return
	}
	c, err := wire.DecodeControl(f.Payload)
	if err != nil || c.Signal != wire.SignalPod {
		return
	}
	s.mu.Lock()
	seen := Seen{Hdr: f.Hdr, MsgType: c.MsgType, Body: append([]byte(nil), c.Body...)}
	if s.drop[c.MsgType] > 0 {
		s.drop[c.MsgType]--
		seen.Dropped = true
	}
	s.seen = append(s.seen, seen)
	if seen.Dropped || s.silent {
		s.mu.Unlock()
		return
	}
	typ, body := s.answer(c.MsgType, c.Body)
	s.mu.Unlock()
	if body != nil {
		_ = s.Send(typ, body)
	}
}

func reject(prefix string, r wire.PodReason, text string) (uint8, []byte) {
	b, _ := wire.Reject{Prefix: prefix, Reason: r, Text: text}.Append(nil)
	return wire.PodReject, b
}

// SPA's reason codes (api/spa/spa.proto) the fake uses.
const (
	reasonCertMalformed     = 4
	reasonCertUntrusted     = 5
	reasonCertExpired       = 6
	reasonCertNotPod        = 9
	reasonPrefixOutsideCert = 10
	reasonBadProof          = 12
)

// answer is the SG's protocol; s.mu is held.
func (s *FakeSG) answer(typ uint8, body []byte) (uint8, []byte) {
	now := time.Now()
	switch typ {
	case wire.PodAnnounce:
		m, err := wire.DecodeAnnounce(body)
		if err != nil {
			return reject("", wire.ReasonMalformed, err.Error())
		}
		leaf, reason, text := s.verifyChain(m, now)
		if reason != 0 {
			return reject(m.Prefix, reason, text)
		}
		// A retransmitted ANNOUNCE gets the live challenge again, so that a
		// PROOF already on its way stays good.
		ch, ok := s.challenges[m.Prefix]
		if !ok || now.Sub(ch.issued) > s.cfg.ChallengeTTL || !ch.leaf.Equal(leaf) {
			v, err := ca.NewChallenge(now)
			if err != nil {
				return reject(m.Prefix, wire.ReasonSPAUnavailable, err.Error())
			}
			ch = challenge{leaf: leaf, issued: now}
			copy(ch.value[:], v)
			s.challenges[m.Prefix] = ch
		}
		b, _ := wire.Challenge{Prefix: m.Prefix, Challenge: ch.value, SG: s.cfg.NodeID, Port: s.cfg.PortNum}.Append(nil)
		return wire.PodChallenge, b
	case wire.PodProof:
		m, err := wire.DecodeProof(body)
		if err != nil {
			return reject("", wire.ReasonMalformed, err.Error())
		}
		if acc, ok := s.used[m.Challenge]; ok && acc.Prefix == m.Prefix {
			if _, live := s.instances[acc.Instance]; live {
				b, _ := acc.Append(nil)
				return wire.PodAccept, b // a retransmitted PROOF
			}
		}
		ch, ok := s.challenges[m.Prefix]
		if !ok || ch.value != m.Challenge || now.Sub(ch.issued) > s.cfg.ChallengeTTL {
			return reject(m.Prefix, wire.ReasonNoChallenge, "no live challenge for this PROOF")
		}
		if err := ca.VerifyProof(ch.leaf.PublicKey, m.Challenge[:], s.cfg.NodeID, s.cfg.PortNum, m.Prefix, m.Signature); err != nil {
			delete(s.challenges, m.Prefix)
			return reject(m.Prefix, reasonBadProof, err.Error())
		}
		delete(s.challenges, m.Prefix)
		if len(s.rejects) > 0 {
			rej := s.rejects[0]
			s.rejects = s.rejects[1:]
			rej.Prefix = m.Prefix
			b, _ := rej.Append(nil)
			return wire.PodReject, b
		}
		n := wire.MustParseName(m.Prefix) // DecodeProof checked it
		acc := wire.Accept{
			Prefix: m.Prefix, Instance: wire.KeyOf(n).WithInstance(s.nextID),
			Keepalive: s.cfg.Keepalive, Hold: s.cfg.Hold, Lease: s.cfg.Lease,
		}
		s.nextID++
		s.instances[acc.Instance] = m.Prefix
		s.used[m.Challenge] = acc
		b, _ := acc.Append(nil)
		return wire.PodAccept, b
	case wire.PodKeepalive, wire.PodWithdraw:
		m, err := wire.DecodeInstanceMsg(body)
		if err != nil {
			return reject("", wire.ReasonMalformed, err.Error())
		}
		if _, ok := s.instances[m.Instance]; !ok {
			return reject("", wire.ReasonUnknownInstance, "instance "+m.Instance.String()+" is not registered on this port")
		}
		if typ == wire.PodWithdraw {
			delete(s.instances, m.Instance)
		} else if s.noEcho {
			return 0, nil
		}
		b, _ := m.Append(nil)
		return typ, b
	case wire.PodResolve:
		m, err := wire.DecodeResolve(body)
		if err != nil || s.noResolve {
			return 0, nil
		}
		res, ok := s.routes[m.Dst]
		if !ok {
			res = wire.Resolved{Dst: m.Dst}
		}
		b, _ := res.Append(nil)
		return wire.PodResolved, b
	}
	return 0, nil
}

// verifyChain checks an ANNOUNCE's chain as SPA would, returning SPA's
// reason on failure.
func (s *FakeSG) verifyChain(m wire.Announce, now time.Time) (*x509.Certificate, wire.PodReason, string) {
	var certs []*x509.Certificate
	for _, der := range m.CertChain {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, reasonCertMalformed, err.Error()
		}
		certs = append(certs, c)
	}
	leaf := certs[0]
	if now.After(leaf.NotAfter) || now.Before(leaf.NotBefore) {
		return nil, reasonCertExpired, "certificate not valid now"
	}
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: s.pool, Intermediates: inter, CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return nil, reasonCertUntrusted, err.Error()
	}
	id, err := ca.IdentityOf(leaf)
	if err != nil || id.Kind != ca.KindPod || id.Domain != s.domain {
		return nil, reasonCertNotPod, "not a pod certificate of " + s.domain
	}
	n, err := wire.ParseName(m.Prefix)
	if err != nil || !n.HasPrefix(id.Prefix) {
		return nil, reasonPrefixOutsideCert, m.Prefix + " is outside " + id.Prefix.String()
	}
	return leaf, 0, ""
}
