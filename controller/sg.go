package controller

import (
	"context"
	"errors"
	"fmt"
	"time"

	"golang.org/x/time/rate"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	spapb "github.com/dmsc-mesh/dmsc/api/spa"
	"github.com/dmsc-mesh/dmsc/ca"
	"github.com/dmsc-mesh/dmsc/spa"
	"github.com/dmsc-mesh/dmsc/spf"
	"github.com/dmsc-mesh/dmsc/wire"
)

// SPA is what an SG needs from the Service Prefix Authentication server;
// *spa.Client is one.
type SPA interface {
	Authorize(ctx context.Context, req *spapb.AuthorizeRequest) (*spapb.AuthorizeResponse, error)
	Renew(ctx context.Context, leases ...*spapb.LeaseRef) (*spapb.RenewResponse, error)
	Release(ctx context.Context, prefix string, instance uint32) (*spapb.ReleaseResponse, error)
}

// SGConfig configures the SG duties of an agent in role sg: pod
// registration (signaling types 1 and 3). Zero fields take the defaults in
// brackets.
type SGConfig struct {
	SPA SPA
	// Keepalive is how often pods send KEEPALIVE [1 s]; Hold how long the SG
	// keeps an instance without one [3 × Keepalive].
	Keepalive, Hold time.Duration
	// ChallengeTTL is how long a CHALLENGE may be answered [10 s].
	ChallengeTTL time.Duration
	// MaxInstancesPerPort bounds the instances behind one pod port [16].
	MaxInstancesPerPort int
	// AnnounceRate (per second) and AnnounceBurst bound ANNOUNCEs per port
	// [20, 40].
	AnnounceRate  float64
	AnnounceBurst int
	// SPATimeout bounds one decision [5 s]; RetryAfter is what a pod is told
	// when SPA did not answer [1 s].
	SPATimeout, RetryAfter time.Duration
}

func (c *SGConfig) fill() {
	if c.Keepalive == 0 {
		c.Keepalive = time.Second
	}
	if c.Hold == 0 {
		c.Hold = 3 * c.Keepalive
	}
	if c.ChallengeTTL == 0 {
		c.ChallengeTTL = 10 * time.Second
	}
	if c.MaxInstancesPerPort == 0 {
		c.MaxInstancesPerPort = 16
	}
	if c.AnnounceRate == 0 {
		c.AnnounceRate = 20
	}
	if c.AnnounceBurst == 0 {
		c.AnnounceBurst = 40
	}
	if c.SPATimeout == 0 {
		c.SPATimeout = 5 * time.Second
	}
	if c.RetryAfter == 0 {
		c.RetryAfter = time.Second
	}
}

func (a *Agent) checkSG() error {
	if a.cfg.SG == nil {
		return nil // an SG without pods (no pod ports, or pods refused)
	}
	c := *a.cfg.SG
	c.fill()
	switch {
	case c.Hold <= c.Keepalive:
		return fmt.Errorf("sg: hold %v must exceed the keepalive interval %v", c.Hold, c.Keepalive)
	case c.MaxInstancesPerPort < 0:
		return fmt.Errorf("sg: max instances per port %d", c.MaxInstancesPerPort)
	}
	return nil
}

// sgState is the SG's registry of pods, owned by the loop.
type sgState struct {
	cfg   SGConfig
	ports map[uint16]*podPort
	byKey map[wire.Key]*podInstance
	// services maps a service prefix to its local instances.
	services map[spf.Prefix]map[wire.Key]*podInstance
	// workCtx bounds the SPA calls running in workers; they end with the
	// agent.
	workCtx   context.Context
	stopWork  context.CancelFunc
	nextRenew time.Duration
	counters  SGCounters
	accepts   []pendingAccept
}

// SGCounters count what the SG did with pod signalling.
type SGCounters struct {
	Announces, Challenges, Proofs, Accepts, Rejects uint64
	Keepalives, Withdraws, Expired, Resolves        uint64
}

type podPort struct {
	num       uint16
	limiter   *rate.Limiter
	pending   map[string]*pendingAnnounce // by prefix
	instances map[wire.Key]*podInstance
}

type pendingAnnounce struct {
	prefix    string
	name      wire.Name
	chain     [][]byte
	challenge [wire.ChallengeSize]byte
	issued    time.Duration
	mac       [6]byte
	asking    bool // SPA is deciding
}

type podInstance struct {
	port          uint16
	prefix        string
	name          wire.Name
	service       spf.Prefix
	key           wire.Key
	mac           [6]byte
	lastKeepalive time.Duration
	lease         time.Duration
	leaseUntil    time.Duration
	renewing      bool
}

func (a *Agent) newSGState() *sgState {
	s := &sgState{
		ports:    map[uint16]*podPort{},
		byKey:    map[wire.Key]*podInstance{},
		services: map[spf.Prefix]map[wire.Key]*podInstance{},
	}
	if a.cfg.SG != nil {
		s.cfg = *a.cfg.SG
	}
	s.cfg.fill()
	s.workCtx, s.stopWork = context.WithCancel(context.Background())
	for _, p := range a.cfg.Ports {
		if p.Kind == PortPod {
			s.ports[p.Num] = &podPort{
				num:       p.Num,
				limiter:   rate.NewLimiter(rate.Limit(s.cfg.AnnounceRate), s.cfg.AnnounceBurst),
				pending:   map[string]*pendingAnnounce{},
				instances: map[wire.Key]*podInstance{},
			}
		}
	}
	return s
}

// work runs fn in a goroutine the agent waits for; fn's result is applied on
// the loop by the function it returns.
func (a *Agent) work(fn func(ctx context.Context) func()) {
	s := a.loop.sg
	a.workers.Add(1)
	go func() {
		defer a.workers.Done()
		apply := fn(s.workCtx)
		if apply == nil {
			return
		}
		select {
		case a.events <- apply:
		case <-s.workCtx.Done():
		}
	}()
}

// podSignal handles a pod signalling message from a pod port.
func (a *Agent) podSignal(port uint16, f *wire.Frame, c wire.Control) {
	s := a.loop.sg
	pp, ok := s.ports[port]
	if !ok {
		a.drop("pod_signal_unknown_port")
		return
	}
	now := a.now()
	mac := f.Eth.Src
	switch c.MsgType {
	case wire.PodAnnounce:
		a.podAnnounce(pp, mac, c.Body, now)
	case wire.PodProof:
		a.podProof(pp, mac, c.Body, now)
	case wire.PodKeepalive:
		m, err := wire.DecodeInstanceMsg(c.Body)
		if err != nil {
			a.podReject(pp, mac, "", wire.ReasonMalformed, 0, err.Error())
			return
		}
		inst, ok := pp.instances[m.Instance]
		if !ok {
			a.podReject(pp, mac, "", wire.ReasonUnknownInstance, 0, fmt.Sprintf("port %d holds no instance %v", port, m.Instance))
			return
		}
		s.counters.Keepalives++
		inst.lastKeepalive = now
		inst.mac = mac
		a.podSend(pp, mac, wire.PodKeepalive, m)
	case wire.PodWithdraw:
		m, err := wire.DecodeInstanceMsg(c.Body)
		if err != nil {
			a.podReject(pp, mac, "", wire.ReasonMalformed, 0, err.Error())
			return
		}
		if inst, ok := pp.instances[m.Instance]; ok {
			s.counters.Withdraws++
			a.log.Info("pod withdrew", "port", port, "service", inst.prefix, "instance", inst.key.Instance())
			a.removeInstance(inst, true)
		}
		// Echoed whether or not we held it: a repeated WITHDRAW is answered.
		a.podSend(pp, mac, wire.PodWithdraw, m)
	case wire.PodResolve:
		m, err := wire.DecodeResolve(c.Body)
		if err != nil {
			a.podReject(pp, mac, "", wire.ReasonMalformed, 0, err.Error())
			return
		}
		s.counters.Resolves++
		reach, metric := a.resolve(m.Dst)
		a.podSend(pp, mac, wire.PodResolved, wire.Resolved{Dst: m.Dst, Reachable: reach, Metric: metric})
	default:
		a.drop("pod_signal_unknown_type")
	}
}

type podMsg interface{ Append([]byte) ([]byte, error) }

func (a *Agent) podSend(pp *podPort, mac [6]byte, msgType uint8, m podMsg) {
	body, err := m.Append(nil)
	if err != nil {
		a.logOnce("pod-encode", "cannot encode pod message", "type", msgType, "err", err)
		return
	}
	a.sendControl(pp.num, wire.SignalPod, msgType, body, a.nodeKey, mac)
}

func (a *Agent) podReject(pp *podPort, mac [6]byte, prefix string, reason wire.PodReason, retry time.Duration, text string) {
	a.loop.sg.counters.Rejects++
	a.podSend(pp, mac, wire.PodReject, wire.Reject{Prefix: prefix, Reason: reason, RetryAfter: retry, Text: text})
}

func (a *Agent) podAnnounce(pp *podPort, mac [6]byte, body []byte, now time.Duration) {
	s := a.loop.sg
	s.counters.Announces++
	if !pp.limiter.Allow() {
		a.podReject(pp, mac, "", wire.ReasonRateLimited, s.cfg.RetryAfter, "too many announcements on this port")
		return
	}
	m, err := wire.DecodeAnnounce(body)
	if err != nil {
		a.podReject(pp, mac, "", wire.ReasonMalformed, 0, err.Error())
		return
	}
	name, _ := wire.ParseName(m.Prefix) // DecodeAnnounce checked it
	if a.cfg.SG == nil || s.cfg.SPA == nil {
		a.podReject(pp, mac, m.Prefix, wire.ReasonSPAUnavailable, 0, "this SG takes no pods: no SPA configured")
		return
	}
	if len(pp.instances) >= s.cfg.MaxInstancesPerPort && !pp.holds(m.Prefix) {
		a.podReject(pp, mac, m.Prefix, wire.ReasonPortBusy, 0,
			fmt.Sprintf("port %d holds its maximum of %d instances", pp.num, s.cfg.MaxInstancesPerPort))
		return
	}
	if p, ok := pp.pending[m.Prefix]; ok && p.asking {
		return // SPA is deciding this one; its answer will come
	}
	ch, err := ca.NewChallenge(time.Now())
	if err != nil {
		a.podReject(pp, mac, m.Prefix, wire.ReasonSPAUnavailable, s.cfg.RetryAfter, "no randomness for a challenge")
		return
	}
	p := &pendingAnnounce{prefix: m.Prefix, name: name, issued: now, mac: mac}
	copy(p.challenge[:], ch)
	for _, c := range m.CertChain {
		p.chain = append(p.chain, append([]byte(nil), c...))
	}
	pp.pending[m.Prefix] = p
	s.counters.Challenges++
	a.podSend(pp, mac, wire.PodChallenge, wire.Challenge{Prefix: m.Prefix, Challenge: p.challenge, SG: string(a.cfg.NodeID), Port: uint32(pp.num)})
}

func (pp *podPort) holds(prefix string) bool {
	for _, i := range pp.instances {
		if i.prefix == prefix {
			return true
		}
	}
	return false
}

func (a *Agent) podProof(pp *podPort, mac [6]byte, body []byte, now time.Duration) {
	s := a.loop.sg
	s.counters.Proofs++
	m, err := wire.DecodeProof(body)
	if err != nil {
		a.podReject(pp, mac, "", wire.ReasonMalformed, 0, err.Error())
		return
	}
	p, ok := pp.pending[m.Prefix]
	if !ok || p.challenge != m.Challenge {
		// A replayed or stale proof: the pod starts over with an ANNOUNCE.
		a.podReject(pp, mac, m.Prefix, wire.ReasonNoChallenge, 100*time.Millisecond, "no live challenge for this proof: announce again")
		return
	}
	if p.asking {
		return // a retransmitted PROOF while SPA decides
	}
	if now-p.issued > s.cfg.ChallengeTTL {
		delete(pp.pending, m.Prefix)
		a.podReject(pp, mac, m.Prefix, wire.ReasonNoChallenge, 100*time.Millisecond, "challenge expired: announce again")
		return
	}
	p.asking = true
	p.mac = mac
	req := &spapb.AuthorizeRequest{Prefix: m.Prefix, CertChain: p.chain, Challenge: p.challenge[:],
		Signature: append([]byte(nil), m.Signature...), SgPort: uint32(pp.num)}
	timeout := s.cfg.SPATimeout
	client := s.cfg.SPA
	a.work(func(ctx context.Context) func() {
		ctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		resp, err := client.Authorize(ctx, req)
		return func() { a.podDecided(pp, p, resp, err) }
	})
}

// podDecided applies SPA's answer on the loop.
func (a *Agent) podDecided(pp *podPort, p *pendingAnnounce, resp *spapb.AuthorizeResponse, err error) {
	s := a.loop.sg
	if cur, ok := pp.pending[p.prefix]; ok && cur == p {
		delete(pp.pending, p.prefix)
	}
	switch {
	case err != nil:
		retry := s.cfg.RetryAfter
		if status.Code(err) == codes.PermissionDenied {
			// SPA does not accept this SG: no retry helps the pod.
			retry = 0
		}
		if !errors.Is(err, spa.ErrUnavailable) {
			a.logOnce("spa-error/"+status.Code(err).String(), "SPA call failed", "err", err)
		}
		a.podReject(pp, p.mac, p.prefix, wire.ReasonSPAUnavailable, retry, "SPA did not decide: "+err.Error())
	case resp.GetDecision() != spapb.Decision_ALLOWED:
		a.log.Info("pod refused", "port", pp.num, "service", p.prefix, "reason", resp.GetReason().String(), "detail", resp.GetReasonText())
		a.podReject(pp, p.mac, p.prefix, wire.PodReason(resp.GetReason()), 0, resp.GetReasonText())
	case resp.GetInstanceId() == 0:
		a.podReject(pp, p.mac, p.prefix, wire.ReasonSPAUnavailable, s.cfg.RetryAfter, "SPA allowed without an instance id")
	default:
		inst := a.addInstance(pp, p, resp.GetInstanceId(), resp.GetLease().AsDuration())
		// The ACCEPT goes once the switch holds the pod's src_guard entry
		// and its delivery (the service and instance routes to the pod): a
		// pod sends as soon as it is accepted, its first frames must not
		// be dropped, and the answers to them must find it. The routes
		// exist once our LSP carries the prefixes and the routes are
		// computed (stampAccepts).
		s.accepts = append(s.accepts, pendingAccept{port: pp, mac: p.mac,
			routes:   []spf.Prefix{inst.service, {Key: inst.key, Len: 128}},
			deadline: a.now() + acceptRouteWait,
			msg:      wire.Accept{Prefix: p.prefix, Instance: inst.key, Keepalive: s.cfg.Keepalive, Hold: s.cfg.Hold, Lease: inst.lease}})
		a.sendAccepts()
	}
}

// acceptRouteWait bounds how long an ACCEPT waits for its routes to be
// computed. They are computed in the loop step that announces the
// prefixes, or one LSP origination interval later; a prefix our LSP cannot
// carry (its fragments full, logged) never gets one, and the pod is
// accepted without it rather than left to time out.
const acceptRouteWait = time.Second

// pendingAccept is an ACCEPT waiting for its routes to be computed (then
// gen is set: stamped), and for the switch to take generation gen.
type pendingAccept struct {
	routes   []spf.Prefix
	deadline time.Duration // stamp by then, routes or not
	stamped  bool
	gen      uint64
	port     *podPort
	mac      [6]byte
	msg      wire.Accept
}

// stampAccepts gives each waiting ACCEPT whose routes the RIB now holds the
// writer's newest generation: the one that carries them, since the agent
// submits routes as soon as it computes them.
func (a *Agent) stampAccepts(now time.Duration) {
	l := a.loop
	for i := range l.sg.accepts {
		pa := &l.sg.accepts[i]
		if pa.stamped {
			continue
		}
		ready := true
		for _, p := range pa.routes {
			if _, ok := l.rib.Route(p); !ok {
				ready = false
				break
			}
		}
		if !ready && now < pa.deadline {
			continue
		}
		if !ready {
			a.logOnce("accept-without-route", "accepting a pod before its routes exist (is the SG's LSP full?)", "service", pa.msg.Prefix)
		}
		_, pa.gen, _, _ = l.w.status()
		pa.stamped = true
	}
}

// sendAccepts sends the ACCEPTs whose entries are on the switch.
func (a *Agent) sendAccepts() {
	s := a.loop.sg
	if len(s.accepts) == 0 {
		return
	}
	a.stampAccepts(a.now())
	applied := a.loop.w.appliedGen()
	kept := s.accepts[:0]
	for _, pa := range s.accepts {
		if !pa.stamped || pa.gen > applied {
			kept = append(kept, pa)
			continue
		}
		if s.byKey[pa.msg.Instance] == nil {
			continue // withdrawn meanwhile
		}
		s.counters.Accepts++
		a.podSend(pa.port, pa.mac, wire.PodAccept, pa.msg)
	}
	s.accepts = kept
}

// addInstance registers an allowed instance: src_guard, local delivery, and
// the service and instance prefixes in our LSP.
func (a *Agent) addInstance(pp *podPort, p *pendingAnnounce, id uint32, lease time.Duration) *podInstance {
	l := a.loop
	s := l.sg
	now := a.now()
	svcKey := wire.KeyOf(p.name)
	key := svcKey.WithInstance(id)
	if lease <= 0 {
		lease = 30 * time.Second
	}
	inst, existed := s.byKey[key]
	if existed && inst.port != pp.num {
		// The same instance moved to another port (SPA hands out an id per
		// port, so this is a stale entry): replace it.
		a.removeInstance(inst, false)
		existed = false
	}
	if !existed {
		inst = &podInstance{port: pp.num, prefix: p.prefix, name: p.name, key: key,
			service: spf.Prefix{Key: svcKey, Len: uint8(svcKey.PrefixLen())}}
		s.byKey[key] = inst
		pp.instances[key] = inst
		if s.services[inst.service] == nil {
			s.services[inst.service] = map[wire.Key]*podInstance{}
		}
		s.services[inst.service][key] = inst
		l.w.setGuard(pp.num, key, true)
		a.log.Info("pod registered", "port", pp.num, "service", p.prefix, "instance", id, "key", key.String())
	}
	inst.mac = p.mac
	inst.lastKeepalive = now
	inst.lease = lease
	inst.leaseUntil = now + lease
	a.syncLocal(inst.service)
	a.syncLocalInstance(inst, true)
	return inst
}

// removeInstance forgets an instance everywhere; release frees it at SPA.
func (a *Agent) removeInstance(inst *podInstance, release bool) {
	l := a.loop
	s := l.sg
	delete(s.byKey, inst.key)
	if pp, ok := s.ports[inst.port]; ok {
		delete(pp.instances, inst.key)
	}
	if m := s.services[inst.service]; m != nil {
		delete(m, inst.key)
		if len(m) == 0 {
			delete(s.services, inst.service)
		}
	}
	l.w.setGuard(inst.port, inst.key, false)
	a.syncLocal(inst.service)
	a.syncLocalInstance(inst, false)
	if release && s.cfg.SPA != nil {
		client, prefix, id := s.cfg.SPA, inst.prefix, inst.key.Instance()
		a.work(func(ctx context.Context) func() {
			ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			if _, err := client.Release(ctx, prefix, id); err != nil {
				return func() {
					a.logOnce("release/"+prefix, "SPA release failed; the lease will expire", "service", prefix, "err", err)
				}
			}
			return nil
		})
	}
}

// syncLocal brings a service prefix's local delivery and announcement in
// line with its instances.
func (a *Agent) syncLocal(svc spf.Prefix) {
	l := a.loop
	insts := l.sg.services[svc]
	if len(insts) == 0 {
		delete(l.local, svc)
		l.own.removePrefix(svc)
	} else {
		lr := localRoute{}
		for _, i := range insts {
			lr.hops = append(lr.hops, localHop{port: i.port, instance: i.key.Instance(), mac: macUint(i.mac), weight: 1})
		}
		l.local[svc] = lr
		l.own.setPrefix(spf.PrefixReach{Prefix: svc})
	}
	a.reprogram(svc)
}

// syncLocalInstance adds or removes the /128 route of one instance.
func (a *Agent) syncLocalInstance(inst *podInstance, present bool) {
	l := a.loop
	p := spf.Prefix{Key: inst.key, Len: 128}
	if present {
		l.local[p] = localRoute{hops: []localHop{{port: inst.port, instance: inst.key.Instance(), mac: macUint(inst.mac), weight: 1}}}
		l.own.setPrefix(spf.PrefixReach{Prefix: p})
	} else {
		delete(l.local, p)
		l.own.removePrefix(p)
	}
	a.reprogram(p)
}

// resolve answers RESOLVE: is there a route to dst, and at what metric?
func (a *Agent) resolve(dst wire.Key) (bool, uint32) {
	for _, n := range []int{128, 96, 64, 32} {
		p := spf.Prefix{Key: dst.Mask(n), Len: uint8(n)}
		if r, ok := a.loop.rib.Route(p); ok {
			return true, uint32(min(r.Metric, 1<<32-1))
		}
	}
	return false, 0
}

// sgStep expires silent pods and stale challenges, and renews leases.
func (a *Agent) sgStep(now time.Duration) {
	s := a.loop.sg
	a.sendAccepts()
	for _, pp := range s.ports {
		for prefix, p := range pp.pending {
			if !p.asking && now-p.issued > s.cfg.ChallengeTTL {
				delete(pp.pending, prefix)
			}
		}
	}
	for _, inst := range s.byKey {
		if now-inst.lastKeepalive > s.cfg.Hold {
			s.counters.Expired++
			a.log.Info("pod keepalive lost: instance withdrawn", "port", inst.port, "service", inst.prefix,
				"instance", inst.key.Instance(), "silent", now-inst.lastKeepalive)
			a.removeInstance(inst, true)
		}
	}
	if now >= s.nextRenew {
		s.nextRenew = now + time.Second
		a.renewLeases(now)
	}
}

// renewLeases renews, in one SPA call, every lease past half its time.
func (a *Agent) renewLeases(now time.Duration) {
	s := a.loop.sg
	var due []*podInstance
	var refs []*spapb.LeaseRef
	for _, inst := range s.byKey {
		if !inst.renewing && inst.leaseUntil-now < inst.lease/2 {
			inst.renewing = true
			due = append(due, inst)
			refs = append(refs, &spapb.LeaseRef{Prefix: inst.prefix, InstanceId: inst.key.Instance()})
		}
	}
	if len(refs) == 0 || s.cfg.SPA == nil {
		return
	}
	client, timeout := s.cfg.SPA, s.cfg.SPATimeout
	a.work(func(ctx context.Context) func() {
		ctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		resp, err := client.Renew(ctx, refs...)
		return func() { a.leasesRenewed(due, resp, err) }
	})
}

func (a *Agent) leasesRenewed(due []*podInstance, resp *spapb.RenewResponse, err error) {
	s := a.loop.sg
	now := a.now()
	for i, inst := range due {
		inst.renewing = false
		if s.byKey[inst.key] != inst {
			continue // gone meanwhile
		}
		if err != nil {
			// SPA unreachable: the instance stays while its lease lasts.
			if now > inst.leaseUntil {
				a.log.Warn("lease expired while SPA was unreachable: instance withdrawn", "service", inst.prefix, "instance", inst.key.Instance())
				a.removeInstance(inst, false)
			}
			continue
		}
		if i >= len(resp.GetResults()) {
			continue
		}
		r := resp.GetResults()[i]
		if r.GetDecision() == spapb.Decision_ALLOWED {
			inst.leaseUntil = now + r.GetLeaseDuration().AsDuration()
			continue
		}
		a.log.Info("SPA ended an instance at renewal", "service", inst.prefix, "instance", inst.key.Instance(),
			"reason", r.GetReason().String(), "detail", r.GetReasonText())
		if pp, ok := s.ports[inst.port]; ok {
			a.podReject(pp, inst.mac, inst.prefix, wire.PodReason(r.GetReason()), 0, "registration ended: "+r.GetReasonText())
		}
		a.removeInstance(inst, false)
	}
	if err != nil {
		a.logOnce("renew", "SPA lease renewal failed; retrying", "err", err)
	}
}

func (a *Agent) sgNextDeadline() (time.Duration, bool) {
	s := a.loop.sg
	next, ok := s.nextRenew, true
	for _, pa := range s.accepts {
		if !pa.stamped && pa.deadline < next {
			next = pa.deadline
		}
	}
	for _, inst := range s.byKey {
		if t := inst.lastKeepalive + s.cfg.Hold + time.Millisecond; t < next {
			next = t
		}
	}
	return next, ok
}

// sgShutdown stops the SG's workers.
func (a *Agent) sgShutdown() {
	if s := a.loop.sg; s != nil {
		s.stopWork()
	}
}
