package pod

import (
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	spapb "github.com/dmsc-mesh/dmsc/api/spa"
	"github.com/dmsc-mesh/dmsc/ca"
	"github.com/dmsc-mesh/dmsc/wire"
)

// The announcement protocol, pod side (signal 1, DESIGN §7; README.md of
// this package describes it on the wire). A Registration's goroutine runs
// it: ANNOUNCE → CHALLENGE → PROOF → ACCEPT, then KEEPALIVEs, and on
// loss of the SG a new announcement, until Withdraw or Endpoint.Close.

// Defaults of AnnounceConfig and Config.ResolveTimeout.
const (
	DefaultRetransmitTimeout = 300 * time.Millisecond
	DefaultAttemptTimeout    = 10 * time.Second
	DefaultBackoffMin        = 100 * time.Millisecond
	DefaultBackoffMax        = 5 * time.Second
	DefaultWithdrawTimeout   = time.Second
	DefaultResolveTimeout    = 500 * time.Millisecond
)

// fallbackKeepalive replaces an ACCEPT's keepalive interval of 0, which
// would make the pod send nothing (an SG bug; the pod logs it).
const fallbackKeepalive = time.Second

// maxProofSends is how often one PROOF is sent before the pod asks for a
// fresh challenge: 300+600+1200 ms of waiting stays well inside the ~10 s an
// SG's challenge lives.
const maxProofSends = 4

// maxFreshChallenges bounds the REJECTs (102, 11, 13) one attempt answers by
// asking for a new challenge, so that an SG that refuses every proof ends
// the attempt with its reason instead of looping.
const maxFreshChallenges = 3

// inboxLen is how many signalling messages wait for the registration's
// goroutine; beyond it they are dropped and counted (the protocol
// retransmits).
const inboxLen = 64

// Errors of the announcement protocol.
var (
	// ErrNoAnswer: the SG did not answer ANNOUNCE or PROOF in time (no SG
	// on the link, or one that does not speak signal 1).
	ErrNoAnswer = errors.New("pod: no answer from the SG")
	// ErrRegistered: the Endpoint already holds a registration; one
	// Endpoint holds one (one instance key).
	ErrRegistered = errors.New("pod: the endpoint already holds a registration")
	// ErrSGSilent: no KEEPALIVE echo for the hold time; the SG or the link
	// is gone (a cause in RegStatus.LastError while re-announcing).
	ErrSGSilent = errors.New("pod: the SG stopped echoing keepalives")
	// ErrForgotten: the SG answered a KEEPALIVE with REJECT 106 (unknown
	// instance): it lost the registration, say by a restart.
	ErrForgotten = errors.New("pod: the SG no longer knows the instance")
	// ErrWithdrawUnconfirmed: the SG did not echo the WITHDRAW in time. It
	// drops the instance after its hold time anyway.
	ErrWithdrawUnconfirmed = errors.New("pod: the SG did not confirm the withdrawal")
	// errStopped: Withdraw or Close asked the registration to end.
	errStopped = errors.New("pod: registration stopped")
)

// AnnounceConfig is what Announce announces, and its timers. Only the zero
// value's defaults matter in production; the timers are for tests and odd
// links.
type AnnounceConfig struct {
	// Prefix is the service prefix to announce (as "/shop/cart"): the
	// certificate's own or one below it. Default: the certificate's.
	Prefix string
	// Chain is the certificate chain sent to the SG, DER, leaf first
	// (usually just the leaf: the domain CA is never sent). Default:
	// Config.Certificate's chain, without the domain CA.
	Chain [][]byte
	// Key signs the proof of possession; it must belong to Chain[0].
	// Default: Config.Certificate's private key.
	Key crypto.Signer

	// RetransmitTimeout is how long ANNOUNCE and PROOF wait for an answer
	// before they are sent again, doubling each time up to BackoffMax
	// (default 300 ms).
	RetransmitTimeout time.Duration
	// AttemptTimeout bounds one announcement without an answer: the first
	// one (Announce) when its context has no deadline, and each one while
	// re-announcing (default 10 s).
	AttemptTimeout time.Duration
	// BackoffMin and BackoffMax space re-announcements after the
	// registration was lost and no answer came: BackoffMin doubling to
	// BackoffMax, with ±20 % jitter (defaults 100 ms and 5 s).
	BackoffMin, BackoffMax time.Duration
	// WithdrawTimeout is how long Withdraw (and Endpoint.Close) wait for
	// the SG's WITHDRAW echo; the WITHDRAW is sent again at half of it
	// (default 1 s).
	WithdrawTimeout time.Duration
}

func (c *AnnounceConfig) setDefaults() error {
	for _, d := range []struct {
		name string
		v    *time.Duration
		def  time.Duration
	}{
		{"RetransmitTimeout", &c.RetransmitTimeout, DefaultRetransmitTimeout},
		{"AttemptTimeout", &c.AttemptTimeout, DefaultAttemptTimeout},
		{"BackoffMin", &c.BackoffMin, DefaultBackoffMin},
		{"BackoffMax", &c.BackoffMax, DefaultBackoffMax},
		{"WithdrawTimeout", &c.WithdrawTimeout, DefaultWithdrawTimeout},
	} {
		if *d.v < 0 {
			return fmt.Errorf("pod: announce: %s %v is negative", d.name, *d.v)
		}
		if *d.v == 0 {
			*d.v = d.def
		}
	}
	if c.BackoffMax < c.BackoffMin {
		return fmt.Errorf("pod: announce: BackoffMax %v is below BackoffMin %v", c.BackoffMax, c.BackoffMin)
	}
	return nil
}

// RegState is where a Registration stands.
type RegState int

// Registration states.
const (
	// StateAnnouncing: the first announcement runs (Announce has not
	// returned).
	StateAnnouncing RegState = iota
	// StateRegistered: accepted; keepalives flow.
	StateRegistered
	// StateReannouncing: the registration was lost (RegStatus.LastError
	// says how) and the pod announces again. The Endpoint keeps the last
	// instance key meanwhile, so that connections survive should the SG
	// give it back.
	StateReannouncing
	// StateWithdrawn: ended by Withdraw or Endpoint.Close.
	StateWithdrawn
	// StateFailed: ended by a final REJECT, or by the link closing
	// (RegStatus.LastError, Registration.Err).
	StateFailed
)

func (s RegState) String() string {
	switch s {
	case StateAnnouncing:
		return "announcing"
	case StateRegistered:
		return "registered"
	case StateReannouncing:
		return "reannouncing"
	case StateWithdrawn:
		return "withdrawn"
	case StateFailed:
		return "failed"
	}
	return fmt.Sprintf("state_%d", int(s))
}

// RegStatus is a snapshot of a Registration.
type RegStatus struct {
	State  RegState
	Prefix string
	// Instance is the instance key of the last ACCEPT (zero before the
	// first).
	Instance wire.Key
	// Keepalive, Hold and Lease are the last ACCEPT's (Keepalive and Hold
	// as the pod uses them, see Announce).
	Keepalive, Hold, Lease time.Duration
	// Registrations counts ACCEPTs taken: 1 after Announce, one more per
	// re-registration.
	Registrations int
	// Since is when State was entered.
	Since time.Time
	// LastError is why the registration was last lost, or why the last
	// attempt failed (a temporary REJECT, no answer), or why it ended; nil
	// when nothing went wrong.
	LastError error
}

// RejectError is an SG's REJECT of an announcement.
type RejectError struct {
	Prefix string
	Reason wire.PodReason
	// RetryAfter > 0 makes the refusal temporary.
	RetryAfter time.Duration
	Text       string
}

// ReasonName names a REJECT reason: SPA's enum name for 1–99
// ("PREFIX_OUTSIDE_CERT"), wire.PodReason's for the SG's own
// ("spa_unavailable").
func ReasonName(r wire.PodReason) string {
	if r > 0 && r < 100 {
		if _, ok := spapb.Reason_name[int32(r)]; ok {
			return spapb.Reason(r).String()
		}
	}
	return r.String()
}

func (e *RejectError) Error() string {
	s := fmt.Sprintf("pod: the SG rejected the announcement of %s: %s (%d)", e.Prefix, ReasonName(e.Reason), e.Reason)
	if e.Text != "" {
		s += ": " + e.Text
	}
	if e.RetryAfter > 0 {
		s += fmt.Sprintf(" (temporary: retry after %v)", e.RetryAfter)
	}
	return s
}

// Temporary reports whether the SG asked the pod to retry later.
func (e *RejectError) Temporary() bool { return e.RetryAfter > 0 }

// Registration is an Endpoint's registration with its SG: one prefix, one
// instance key. Its goroutine, owned by the Endpoint, keeps it alive and
// re-announces when it is lost, until Withdraw or Endpoint.Close.
type Registration struct {
	ep         *Endpoint
	cfg        AnnounceConfig
	prefix     string   // canonical
	serviceKey wire.Key // of prefix
	key        crypto.Signer
	announce   []byte // the ANNOUNCE body
	log        *slog.Logger

	inbox    chan ctrlMsg
	stop     chan struct{}
	stopOnce sync.Once
	done     chan struct{}
	first    chan error // the outcome of the first announcement, once

	mu          sync.Mutex
	status      RegStatus
	changed     chan struct{}
	err         error // why it ended (StateFailed), or the withdrawal's error
	withdrawErr error
}

// ctrlMsg is one signalling message for the registration's goroutine.
type ctrlMsg struct {
	typ  uint8
	body []byte
}

// Announce registers the pod with its SG under cfg.Prefix and returns once
// the SG accepted it: the instance key is then the Endpoint's local key
// (SetLocalKey) and a goroutine sends KEEPALIVEs every ACCEPT keepalive
// interval. It fails on a final REJECT (a *RejectError naming the reason),
// when ctx ends (temporary REJECTs are retried until then), or with
// ErrNoAnswer when the SG did not answer until ctx's deadline or, without
// one, for AnnounceConfig.AttemptTimeout.
//
// Afterwards the registration lives on its own: when no KEEPALIVE echo
// comes for the hold time, or the SG says it forgot the instance, the pod
// announces again (with backoff) until it is accepted, a final REJECT ends
// it (StateFailed), or Withdraw or Endpoint.Close stops it. A new instance
// key replaces the old one (SetLocalKey); QUIC connections made under the
// old key cannot work any more (their peers send to the old key) and are
// closed, so that gRPC redials at once instead of waiting out the idle
// timeout.
//
// One Endpoint holds one registration at a time (ErrRegistered); announce
// another prefix from another Endpoint. Announce and Resolve take over the
// Endpoint's control handler: a handler set before still gets every CONTROL
// frame that is not pod signalling; do not call SetControlHandler after.
func (e *Endpoint) Announce(ctx context.Context, cfg AnnounceConfig) (*Registration, error) {
	r, err := e.newRegistration(cfg)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("pod: announce %s: %w", r.prefix, err)
	}
	e.sig.install(e)
	if err := e.sig.add(r); err != nil {
		return nil, err
	}
	go r.run(ctx)
	if err := <-r.first; err != nil {
		<-r.done
		return nil, err
	}
	return r, nil
}

func (e *Endpoint) newRegistration(cfg AnnounceConfig) (*Registration, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	if len(cfg.Chain) == 0 && e.tls != nil {
		for _, der := range e.tls.cert.Certificate {
			if e.cfg.CA != nil && string(der) == string(e.cfg.CA.Raw) {
				continue // the SG knows the domain CA
			}
			cfg.Chain = append(cfg.Chain, der)
		}
	}
	if len(cfg.Chain) == 0 {
		return nil, fmt.Errorf("pod: announce: no certificate (set AnnounceConfig.Chain or Config.Certificate)")
	}
	leaf, err := x509.ParseCertificate(cfg.Chain[0])
	if err != nil {
		return nil, fmt.Errorf("pod: announce: certificate: %w", err)
	}
	id, err := ca.IdentityOf(leaf)
	if err != nil {
		return nil, fmt.Errorf("pod: announce: certificate: %w", err)
	}
	if id.Kind != ca.KindPod {
		return nil, fmt.Errorf("pod: announce: the certificate names %s, not a pod", id)
	}
	if cfg.Key == nil && e.tls != nil {
		if s, ok := e.tls.cert.PrivateKey.(crypto.Signer); ok {
			cfg.Key = s
		}
	}
	if cfg.Key == nil {
		return nil, errors.New("pod: announce: no private key (set AnnounceConfig.Key or Config.Certificate)")
	}
	type equaler interface{ Equal(crypto.PublicKey) bool }
	if pk, ok := cfg.Key.Public().(equaler); !ok || !pk.Equal(leaf.PublicKey) {
		return nil, fmt.Errorf("pod: announce: the private key does not belong to the certificate of %s", id)
	}
	prefix := id.Prefix
	if cfg.Prefix != "" {
		if prefix, err = checkPrefix(cfg.Prefix, id); err != nil {
			return nil, fmt.Errorf("pod: announce: %w", err)
		}
	}
	body, err := wire.Announce{Prefix: prefix.String(), CertChain: cfg.Chain}.Append(nil)
	if err != nil {
		return nil, fmt.Errorf("pod: announce %s: %w", prefix, err)
	}
	cfg.Prefix = prefix.String()
	r := &Registration{
		ep:         e,
		cfg:        cfg,
		prefix:     prefix.String(),
		serviceKey: wire.KeyOf(prefix),
		key:        cfg.Key,
		announce:   body,
		log:        e.log.With("prefix", prefix.String()),
		inbox:      make(chan ctrlMsg, inboxLen),
		stop:       make(chan struct{}),
		done:       make(chan struct{}),
		first:      make(chan error, 1),
		changed:    make(chan struct{}),
	}
	r.status = RegStatus{State: StateAnnouncing, Prefix: r.prefix, Since: time.Now()}
	return r, nil
}

// checkPrefix parses a prefix to announce and checks that the certificate
// owns it, as SPA will (PREFIX_OUTSIDE_CERT): a clear error before anything
// is sent.
func checkPrefix(s string, id ca.Identity) (wire.Name, error) {
	n, err := wire.ParseName(s)
	if err != nil {
		return wire.Name{}, err
	}
	if n.IsNode() {
		return wire.Name{}, fmt.Errorf("prefix %s: /%s names belong to switches", n, wire.NodeNamespace)
	}
	if !n.HasPrefix(id.Prefix) {
		return wire.Name{}, fmt.Errorf("prefix %s is outside the certificate's %s", n, id.Prefix)
	}
	return n, nil
}

// Prefix is the announced prefix.
func (r *Registration) Prefix() string { return r.prefix }

// Status returns a snapshot.
func (r *Registration) Status() RegStatus {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.status
}

// Instance is the current instance key (the last ACCEPT's).
func (r *Registration) Instance() wire.Key { return r.Status().Instance }

// Changed returns a channel that is closed at the next change of Status.
// Take it before reading Status, so that no change falls between:
//
//	for {
//		ch := reg.Changed()
//		st := reg.Status()
//		... use st ...
//		<-ch
//	}
func (r *Registration) Changed() <-chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.changed
}

// Done is closed when the registration has ended: withdrawn, or failed
// (Err says why).
func (r *Registration) Done() <-chan struct{} { return r.done }

// Err is why the registration ended: nil while it lives and after a
// withdrawal, else a *RejectError or the link's error.
func (r *Registration) Err() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.err
}

// Withdraw ends the registration: WITHDRAW to the SG, waiting up to
// AnnounceConfig.WithdrawTimeout for its echo (ErrWithdrawUnconfirmed
// without one), then the keepalives stop and the Endpoint's local key is
// cleared. While the pod is re-announcing nothing is withdrawn (the SG holds
// no instance it knows of). ctx bounds only the wait; the goroutine ends
// within WithdrawTimeout regardless. Called again, or after the
// registration failed, Withdraw returns what the withdrawal returned (nil
// after a failure: nothing was left to withdraw).
func (r *Registration) Withdraw(ctx context.Context) error {
	r.stopOnce.Do(func() { close(r.stop) })
	select {
	case <-r.done:
	case <-ctx.Done():
		return fmt.Errorf("pod: withdraw %s: %w", r.prefix, ctx.Err())
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.withdrawErr
}

// update changes the status and wakes Changed waiters.
func (r *Registration) update(f func(*RegStatus)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	old := r.status.State
	f(&r.status)
	if r.status.State != old {
		r.status.Since = time.Now()
	}
	close(r.changed)
	r.changed = make(chan struct{})
}

// run is the registration's goroutine.
func (r *Registration) run(ctx context.Context) {
	defer close(r.done)
	defer r.ep.sig.release(r)
	acc, err := r.registerFirst(ctx)
	if err != nil {
		r.finish(StateFailed, err)
		r.first <- err
		return
	}
	r.accepted(acc)
	r.first <- nil
	for {
		err := r.keepAlive(acc)
		switch {
		case errors.Is(err, errStopped):
			werr := r.withdraw(acc.Instance)
			r.mu.Lock()
			r.withdrawErr = werr
			r.mu.Unlock()
			r.finish(StateWithdrawn, werr)
			return
		case errors.Is(err, net.ErrClosed):
			r.finish(StateFailed, err)
			return
		}
		r.ep.sig.stats.lost.Add(1)
		r.log.Warn("pod registration lost; announcing again", "instance", acc.Instance.String(), "err", err)
		r.update(func(s *RegStatus) { s.State, s.LastError = StateReannouncing, err })
		acc, err = r.reannounce(!errors.Is(err, ErrForgotten))
		switch {
		case errors.Is(err, errStopped):
			r.finish(StateWithdrawn, nil)
			return
		case err != nil:
			r.log.Warn("pod registration ended", "err", err)
			r.finish(StateFailed, err)
			return
		}
		r.accepted(acc)
	}
}

// registerFirst runs the first announcement: attempts until an ACCEPT, a
// final answer, silence or ctx's end.
func (r *Registration) registerFirst(ctx context.Context) (wire.Accept, error) {
	var last error
	for {
		// With a deadline, ctx bounds the attempt (and its error says so).
		var bound time.Time
		if _, ok := ctx.Deadline(); !ok {
			bound = time.Now().Add(r.cfg.AttemptTimeout)
		}
		acc, err := r.attempt(ctx, bound)
		if err == nil {
			return acc, nil
		}
		var rej *RejectError
		if !errors.As(err, &rej) || !rej.Temporary() {
			return wire.Accept{}, r.firstError(err, last)
		}
		last = err
		r.log.Info("pod announcement refused for now; retrying", "err", err)
		r.update(func(s *RegStatus) { s.LastError = err })
		if err := r.sleep(ctx, retryDelay(rej.RetryAfter)); err != nil {
			return wire.Accept{}, r.firstError(err, last)
		}
	}
}

// firstError words the failure of the first announcement, with the last
// temporary refusal when it was the SG's last word.
func (r *Registration) firstError(err, last error) error {
	var rej *RejectError
	switch {
	case errors.As(err, &rej):
		return err // names the prefix itself
	case errors.Is(err, errStopped):
		err = net.ErrClosed
	}
	if last != nil {
		return fmt.Errorf("pod: announce %s: %w (last answer: %v)", r.prefix, err, last)
	}
	return fmt.Errorf("pod: announce %s: %w", r.prefix, err)
}

// reannounce announces again after the registration was lost: after
// BackoffMin (delayFirst) or at once (the SG forgot us, so it is there),
// then with backoff while the SG is silent, after RetryAfter when it
// refuses for now.
func (r *Registration) reannounce(delayFirst bool) (wire.Accept, error) {
	backoff := r.cfg.BackoffMin
	var delay time.Duration
	if delayFirst {
		delay = jitter(backoff)
	}
	for {
		if delay > 0 {
			if err := r.sleep(context.Background(), delay); err != nil {
				return wire.Accept{}, err
			}
		}
		acc, err := r.attempt(context.Background(), time.Now().Add(r.cfg.AttemptTimeout))
		if err == nil {
			return acc, nil
		}
		var rej *RejectError
		switch {
		case errors.Is(err, errStopped), errors.Is(err, net.ErrClosed):
			return wire.Accept{}, err
		case errors.As(err, &rej) && rej.Temporary():
			delay = retryDelay(rej.RetryAfter)
		case errors.As(err, &rej):
			return wire.Accept{}, err
		default: // no answer
			backoff = min(2*backoff, r.cfg.BackoffMax)
			delay = jitter(backoff)
		}
		r.log.Debug("pod re-announcement failed", "err", err, "next_in", delay)
		r.update(func(s *RegStatus) { s.LastError = err })
	}
}

// accepted installs an ACCEPT.
func (r *Registration) accepted(acc wire.Accept) {
	e := r.ep
	old, had := e.LocalKey()
	// SetLocalKey cannot fail: attempt checked the instance segment.
	_ = e.SetLocalKey(acc.Instance)
	st := r.Status()
	rekeyed := st.Registrations > 0 && st.Instance != acc.Instance
	r.update(func(s *RegStatus) {
		s.State, s.Instance = StateRegistered, acc.Instance
		s.Keepalive, s.Hold, s.Lease = acc.Keepalive, acc.Hold, acc.Lease
		s.Registrations++
		s.LastError = nil
	})
	e.sig.stats.registrations.Add(1)
	args := []any{"instance", acc.Instance.String(), "keepalive", acc.Keepalive, "hold", acc.Hold, "lease", acc.Lease}
	switch {
	case st.Registrations == 0:
		r.log.Info("pod registered", args...)
	case rekeyed:
		n := 0
		if had && old != acc.Instance {
			n = e.closeConnsAfterRekey()
		}
		r.log.Warn("pod registered again under a new instance key; connections of the old one closed",
			append(args, "old_instance", st.Instance.String(), "closed_conns", n)...)
	default:
		r.log.Info("pod registered again", args...)
	}
}

// finish ends the registration: the local key goes (when it is still the
// registration's), and the status says why.
func (r *Registration) finish(state RegState, err error) {
	st := r.Status()
	if st.Registrations > 0 {
		if p := r.ep.local.Load(); p != nil && *p == st.Instance {
			r.ep.local.CompareAndSwap(p, nil)
		}
	}
	r.mu.Lock()
	if state == StateFailed {
		r.err = err
	}
	r.mu.Unlock()
	r.update(func(s *RegStatus) {
		s.State = state
		if err != nil {
			s.LastError = err
		}
	})
	if state == StateWithdrawn && st.Registrations > 0 {
		r.log.Info("pod registration withdrawn", "instance", st.Instance.String(), "err", err)
	}
}

// send sends one signalling message. Errors other than a closed link are
// left to retransmission.
func (r *Registration) send(typ uint8, body []byte) error {
	err := r.ep.SendControl(wire.SignalPod, typ, body)
	if err == nil {
		return nil
	}
	if errors.Is(err, net.ErrClosed) {
		return err
	}
	r.log.Debug("pod signalling send failed", "msg_type", typ, "err", err)
	return nil
}

// sleep waits d, dropping (and counting) what arrives meanwhile.
func (r *Registration) sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			return nil
		case <-r.stop:
			return errStopped
		case <-ctx.Done():
			return ctx.Err()
		case <-r.inbox:
			r.ep.sig.stats.ignored.Add(1)
		}
	}
}

type announceStep int

const (
	stepAnnounce announceStep = iota // waiting for CHALLENGE
	stepProof                        // waiting for ACCEPT or REJECT
)

// attempt runs one announcement: ANNOUNCE, CHALLENGE, PROOF, then ACCEPT
// (returned) or REJECT (a *RejectError), retransmitting ANNOUNCE and PROOF
// until bound (ErrNoAnswer; the zero time: until ctx ends).
func (r *Registration) attempt(ctx context.Context, bound time.Time) (wire.Accept, error) {
	a := r.newAttempt()
	defer a.retx.Stop()
	var limit <-chan time.Time
	if !bound.IsZero() {
		t := time.NewTimer(time.Until(bound))
		defer t.Stop()
		limit = t.C
	}
	if err := a.sendAnnounce(); err != nil {
		return wire.Accept{}, err
	}
	for {
		select {
		case <-r.stop:
			return wire.Accept{}, errStopped
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return wire.Accept{}, fmt.Errorf("%w (%w)", noAnswer(a.step), ctx.Err())
			}
			return wire.Accept{}, ctx.Err()
		case <-limit:
			return wire.Accept{}, noAnswer(a.step)
		case <-a.retx.C:
			if err := a.retransmit(); err != nil {
				return wire.Accept{}, err
			}
		case m := <-r.inbox:
			if acc, done, err := a.handle(m); done {
				return acc, err
			}
		}
	}
}

// attemptState is one announcement in progress.
type attemptState struct {
	r          *Registration
	step       announceStep
	challenge  [wire.ChallengeSize]byte
	haveCh     bool
	proof      []byte
	proofSent  bool // a PROOF went out in this attempt: an ACCEPT may answer it
	sends      int  // of the current message
	freshTries int
	interval   time.Duration
	retx       *time.Timer
}

func (r *Registration) newAttempt() *attemptState {
	return &attemptState{r: r, interval: r.cfg.RetransmitTimeout, retx: time.NewTimer(r.cfg.RetransmitTimeout)}
}

// sendAnnounce (re)starts at step 1.
func (a *attemptState) sendAnnounce() error {
	a.step, a.haveCh, a.sends = stepAnnounce, false, 1
	a.interval = a.r.cfg.RetransmitTimeout
	a.retx.Reset(a.interval)
	a.r.ep.sig.stats.announces.Add(1)
	return a.r.send(wire.PodAnnounce, a.r.announce)
}

// retransmit runs when the current message went unanswered.
func (a *attemptState) retransmit() error {
	st := &a.r.ep.sig.stats
	st.retransmits.Add(1)
	if a.step == stepProof && a.sends >= maxProofSends {
		// The challenge may have expired at the SG: ask anew.
		a.r.log.Debug("pod PROOF unanswered; announcing again for a fresh challenge")
		return a.sendAnnounce()
	}
	a.interval = min(2*a.interval, a.r.cfg.BackoffMax)
	a.retx.Reset(a.interval)
	a.sends++
	if a.step == stepAnnounce {
		st.announces.Add(1)
		return a.r.send(wire.PodAnnounce, a.r.announce)
	}
	st.proofs.Add(1)
	return a.r.send(wire.PodProof, a.proof)
}

// handle takes one message from the SG; done says the attempt is over,
// with the ACCEPT or the error.
func (a *attemptState) handle(m ctrlMsg) (acc wire.Accept, done bool, err error) {
	r := a.r
	st := &r.ep.sig.stats
	switch m.typ {
	case wire.PodChallenge:
		c, err := wire.DecodeChallenge(m.body)
		if err != nil {
			st.malformed.Add(1)
			return acc, false, nil
		}
		if c.Prefix != r.prefix || (a.haveCh && c.Challenge == a.challenge) {
			st.ignored.Add(1) // another prefix's, or a duplicate
			return acc, false, nil
		}
		sig, err := ca.SignProof(r.key, c.Challenge[:], c.SG, c.Port, r.prefix)
		if err != nil {
			return acc, true, fmt.Errorf("pod: announce %s: %w", r.prefix, err)
		}
		proof, err := wire.Proof{Prefix: r.prefix, Challenge: c.Challenge, Signature: sig}.Append(nil)
		if err != nil {
			return acc, true, fmt.Errorf("pod: announce %s: %w", r.prefix, err)
		}
		a.proof, a.challenge, a.haveCh, a.step, a.proofSent, a.sends = proof, c.Challenge, true, stepProof, true, 1
		a.interval = r.cfg.RetransmitTimeout
		a.retx.Reset(a.interval)
		st.proofs.Add(1)
		if err := r.send(wire.PodProof, proof); err != nil {
			return acc, true, err
		}
	case wire.PodAccept:
		ac, err := wire.DecodeAccept(m.body)
		if err != nil {
			st.malformed.Add(1)
			return acc, false, nil
		}
		if ac.Prefix != r.prefix || !a.proofSent {
			st.ignored.Add(1)
			return acc, false, nil
		}
		if ac.Instance.WithInstance(0) != r.serviceKey {
			st.ignored.Add(1)
			r.log.Warn("pod ignored an ACCEPT whose instance key is not of the announced prefix", "instance", ac.Instance.String())
			return acc, false, nil
		}
		st.accepts.Add(1)
		return r.sanitize(ac), true, nil
	case wire.PodReject:
		j, err := wire.DecodeReject(m.body)
		if err != nil {
			st.malformed.Add(1)
			return acc, false, nil
		}
		if (j.Prefix != "" && j.Prefix != r.prefix) || j.Reason == wire.ReasonUnknownInstance {
			st.ignored.Add(1) // another prefix's, or a late answer to a KEEPALIVE
			return acc, false, nil
		}
		rej := &RejectError{Prefix: r.prefix, Reason: j.Reason, RetryAfter: j.RetryAfter, Text: j.Text}
		if j.RetryAfter == 0 && freshChallengeHelps(j.Reason) {
			if a.step != stepProof {
				st.ignored.Add(1) // answers a PROOF of before
				return acc, false, nil
			}
			st.rejects.Add(1)
			if a.freshTries++; a.freshTries > maxFreshChallenges {
				return acc, true, rej
			}
			r.log.Debug("pod PROOF refused; announcing again for a fresh challenge", "err", rej)
			if err := a.sendAnnounce(); err != nil {
				return acc, true, err
			}
			return acc, false, nil
		}
		st.rejects.Add(1)
		return acc, true, rej
	default:
		st.ignored.Add(1) // a late KEEPALIVE or WITHDRAW echo
	}
	return acc, false, nil
}

// freshChallengeHelps: refusals of a PROOF that a new challenge cures. The
// SG forgot or expired the challenge (102), SPA found it stale (11) or used
// (13, a retransmitted PROOF that reached SPA twice).
func freshChallengeHelps(r wire.PodReason) bool {
	return r == wire.ReasonNoChallenge ||
		r == wire.PodReason(spapb.Reason_STALE_CHALLENGE) ||
		r == wire.PodReason(spapb.Reason_REPLAY)
}

func noAnswer(step announceStep) error {
	if step == stepAnnounce {
		return fmt.Errorf("%w: no CHALLENGE to ANNOUNCE (is an SG on the link?)", ErrNoAnswer)
	}
	return fmt.Errorf("%w: no ACCEPT or REJECT to PROOF", ErrNoAnswer)
}

// sanitize makes an ACCEPT's timers usable: a keepalive of 0 would send
// nothing, a hold not above the keepalive would lose the registration
// between two echoes.
func (r *Registration) sanitize(a wire.Accept) wire.Accept {
	if a.Keepalive <= 0 {
		r.log.Warn("pod: the SG's ACCEPT has no keepalive interval; using a fallback", "keepalive", fallbackKeepalive)
		a.Keepalive = fallbackKeepalive
	}
	if a.Hold <= a.Keepalive {
		r.log.Warn("pod: the SG's ACCEPT has a hold time not above its keepalive; using 3 keepalives", "hold", a.Hold, "keepalive", a.Keepalive)
		a.Hold = 3 * a.Keepalive
	}
	return a
}

// keepAlive sends KEEPALIVEs and watches their echoes until the
// registration is stopped (errStopped) or lost (ErrSGSilent, ErrForgotten).
func (r *Registration) keepAlive(acc wire.Accept) error {
	st := &r.ep.sig.stats
	body, _ := wire.InstanceMsg{Instance: acc.Instance}.Append(nil)
	tick := time.NewTicker(acc.Keepalive)
	defer tick.Stop()
	hold := time.NewTimer(acc.Hold)
	defer hold.Stop()
	for {
		select {
		case <-r.stop:
			return errStopped
		case <-tick.C:
			st.keepalivesOut.Add(1)
			if err := r.send(wire.PodKeepalive, body); err != nil {
				return err
			}
		case <-hold.C:
			return fmt.Errorf("%w for %v (hold time)", ErrSGSilent, acc.Hold)
		case m := <-r.inbox:
			echo, err := r.handleRegistered(m, acc.Instance)
			if err != nil {
				return err
			}
			if echo {
				hold.Reset(acc.Hold)
			}
		}
	}
}

// handleRegistered takes one message while registered as inst: echo says
// it was the KEEPALIVE echo, err that the SG forgot the instance.
func (r *Registration) handleRegistered(m ctrlMsg, inst wire.Key) (echo bool, err error) {
	st := &r.ep.sig.stats
	switch m.typ {
	case wire.PodKeepalive:
		k, err := wire.DecodeInstanceMsg(m.body)
		switch {
		case err != nil:
			st.malformed.Add(1)
		case k.Instance != inst:
			st.ignored.Add(1)
		default:
			st.keepaliveEchoes.Add(1)
			return true, nil
		}
	case wire.PodReject:
		j, err := wire.DecodeReject(m.body)
		switch {
		case err != nil:
			st.malformed.Add(1)
		case j.Reason == wire.ReasonUnknownInstance && (j.Prefix == "" || j.Prefix == r.prefix):
			st.rejects.Add(1)
			if j.Text != "" {
				return false, fmt.Errorf("%w: %s", ErrForgotten, j.Text)
			}
			return false, ErrForgotten
		default:
			st.ignored.Add(1) // a late answer to the announcement
		}
	default:
		st.ignored.Add(1) // late duplicates of the announcement
	}
	return false, nil
}

// withdraw sends WITHDRAW and waits for the echo, sending it once more at
// half the timeout.
func (r *Registration) withdraw(inst wire.Key) error {
	st := &r.ep.sig.stats
	body, _ := wire.InstanceMsg{Instance: inst}.Append(nil)
	st.withdraws.Add(1)
	if err := r.send(wire.PodWithdraw, body); err != nil {
		return fmt.Errorf("pod: withdraw %s: %w", r.prefix, err)
	}
	again := time.NewTimer(r.cfg.WithdrawTimeout / 2)
	defer again.Stop()
	give := time.NewTimer(r.cfg.WithdrawTimeout)
	defer give.Stop()
	for {
		select {
		case <-again.C:
			st.withdraws.Add(1)
			st.retransmits.Add(1)
			if err := r.send(wire.PodWithdraw, body); err != nil {
				return fmt.Errorf("pod: withdraw %s: %w", r.prefix, err)
			}
		case <-give.C:
			return fmt.Errorf("pod: withdraw %s (instance %s): %w within %v", r.prefix, inst, ErrWithdrawUnconfirmed, r.cfg.WithdrawTimeout)
		case m := <-r.inbox:
			if r.handleWithdrawing(m, inst) {
				return nil
			}
		}
	}
}

// handleWithdrawing takes one message while withdrawing inst; it reports
// whether the SG no longer holds the instance.
func (r *Registration) handleWithdrawing(m ctrlMsg, inst wire.Key) bool {
	st := &r.ep.sig.stats
	switch m.typ {
	case wire.PodWithdraw:
		k, err := wire.DecodeInstanceMsg(m.body)
		if err == nil && k.Instance == inst {
			return true
		}
	case wire.PodReject:
		j, err := wire.DecodeReject(m.body)
		if err == nil && j.Reason == wire.ReasonUnknownInstance {
			return true // gone already
		}
	}
	st.ignored.Add(1)
	return false
}

// jitter spreads d by ±20 %, so that pods that lost one SG together do not
// come back in step.
func jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return d - d/5 + rand.N(2*d/5+1)
}

// retryDelay is an SG's RetryAfter plus up to 20 %: never earlier than
// asked.
func retryDelay(d time.Duration) time.Duration { return d + rand.N(d/5+1) }

// closeConnsAfterRekey closes the QUIC connections made under the previous
// instance key: their peers answer to it, which no longer reaches this pod.
func (e *Endpoint) closeConnsAfterRekey() int {
	e.mu.RLock()
	conns := slices.Collect(maps.Keys(e.conns))
	ln := e.listener
	e.mu.RUnlock()
	if ln != nil {
		ln.mu.Lock()
		for c := range ln.accepted {
			conns = append(conns, c)
		}
		ln.mu.Unlock()
	}
	for _, c := range conns {
		_ = c.CloseWithError(0, "pod instance key changed")
	}
	return len(conns)
}

// signalling is the Endpoint's side of signal 1: the registration, waiting
// RESOLVEs, and their counters. Its zero value is ready.
type signalling struct {
	once sync.Once // installs the control handler

	mu       sync.Mutex
	closed   bool
	reg      *Registration
	resolves map[wire.Key][]chan wire.Resolved
	wg       sync.WaitGroup // registration goroutines

	stats signalCounters
}

// install makes the Endpoint's control handler the signalling dispatcher;
// a handler set before gets the frames that are not pod signalling.
func (s *signalling) install(e *Endpoint) {
	s.once.Do(func() {
		prev := e.control.Load()
		e.SetControlHandler(func(f wire.Frame) { e.handleSignal(f, prev) })
	})
}

func (s *signalling) add(r *Registration) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return fmt.Errorf("pod: announce %s: %w", r.prefix, net.ErrClosed)
	}
	if s.reg != nil {
		return fmt.Errorf("pod: announce %s: %w (of %s; withdraw it first)", r.prefix, ErrRegistered, s.reg.prefix)
	}
	s.reg = r
	s.wg.Add(1)
	return nil
}

// release forgets r once its goroutine ends.
func (s *signalling) release(r *Registration) {
	s.mu.Lock()
	if s.reg == r {
		s.reg = nil
	}
	s.mu.Unlock()
	s.wg.Done()
}

// active reports whether a registration runs (registered or re-announcing).
func (s *signalling) active() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.reg != nil
}

// shutdown withdraws the registration and waits for its goroutine (from
// Endpoint.Close).
func (s *signalling) shutdown() {
	s.mu.Lock()
	s.closed = true
	r := s.reg
	s.mu.Unlock()
	if r != nil {
		_ = r.Withdraw(context.Background())
	}
	s.wg.Wait()
}

// handleSignal is the control handler: on the reader goroutine, so it only
// decodes and hands over.
func (e *Endpoint) handleSignal(f wire.Frame, prev *func(wire.Frame)) {
	st := &e.sig.stats
	c, err := wire.DecodeControl(f.Payload)
	if err != nil || c.Signal != wire.SignalPod {
		if prev != nil {
			(*prev)(f)
			return
		}
		if err != nil {
			st.malformed.Add(1)
		} else {
			st.ignored.Add(1)
		}
		return
	}
	switch c.MsgType {
	case wire.PodResolved:
		res, err := wire.DecodeResolved(c.Body)
		if err != nil {
			st.malformed.Add(1)
			return
		}
		if !e.sig.answer(res) {
			st.ignored.Add(1)
		}
	case wire.PodChallenge, wire.PodAccept, wire.PodReject, wire.PodKeepalive, wire.PodWithdraw:
		e.sig.mu.Lock()
		r := e.sig.reg
		e.sig.mu.Unlock()
		if r == nil {
			st.ignored.Add(1)
			return
		}
		select {
		case r.inbox <- ctrlMsg{typ: c.MsgType, body: c.Body}:
		default:
			st.inboxFull.Add(1)
		}
	default:
		st.ignored.Add(1) // the SG's side of the protocol: not for a pod
	}
}

// signalCounters count the signalling.
type signalCounters struct {
	announces, proofs, retransmits       atomic.Uint64
	accepts, rejects                     atomic.Uint64
	keepalivesOut, keepaliveEchoes       atomic.Uint64
	withdraws                            atomic.Uint64
	registrations, lost                  atomic.Uint64
	ignored, malformed, inboxFull        atomic.Uint64
	resolves, resolveTimeouts, resolveOK atomic.Uint64
}

// AnnounceStats counts an Endpoint's pod signalling.
type AnnounceStats struct {
	Announces, Proofs uint64 // ANNOUNCEs and PROOFs sent, retransmissions included
	// Retransmits counts ANNOUNCEs, PROOFs and WITHDRAWs sent again for
	// want of an answer.
	Retransmits     uint64
	Accepts         uint64 // ACCEPTs taken
	Rejects         uint64 // REJECTs taken (of announcements, and 106 to KEEPALIVEs)
	KeepalivesOut   uint64
	KeepaliveEchoes uint64
	Withdraws       uint64 // WITHDRAWs sent
	Registrations   uint64 // registrations made (the first and every re-registration)
	Lost            uint64 // registrations lost: SG silent, or it forgot the instance
	// Ignored counts answers that did not match the current step, prefix or
	// instance (late duplicates, other prefixes, messages a pod never gets).
	Ignored   uint64
	Malformed uint64 // signalling messages that did not decode
	InboxFull uint64 // messages dropped because the registration was behind
	Resolves  uint64 // RESOLVEs asked (retransmissions not counted)
	// ResolveTimeouts counts Resolves the SG did not answer in time;
	// Resolved those it did.
	ResolveTimeouts, Resolved uint64
}

// AnnounceStats returns a snapshot of the signalling counters.
func (e *Endpoint) AnnounceStats() AnnounceStats {
	s := &e.sig.stats
	return AnnounceStats{
		Announces: s.announces.Load(), Proofs: s.proofs.Load(), Retransmits: s.retransmits.Load(),
		Accepts: s.accepts.Load(), Rejects: s.rejects.Load(),
		KeepalivesOut: s.keepalivesOut.Load(), KeepaliveEchoes: s.keepaliveEchoes.Load(),
		Withdraws: s.withdraws.Load(), Registrations: s.registrations.Load(), Lost: s.lost.Load(),
		Ignored: s.ignored.Load(), Malformed: s.malformed.Load(), InboxFull: s.inboxFull.Load(),
		Resolves: s.resolves.Load(), ResolveTimeouts: s.resolveTimeouts.Load(), Resolved: s.resolveOK.Load(),
	}
}
