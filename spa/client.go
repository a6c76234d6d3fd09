package spa

import (
	"context"
	"crypto"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	spapb "github.com/dmsc-mesh/dmsc/api/spa"
	"github.com/dmsc-mesh/dmsc/ca"
)

// ErrUnavailable is the class of "SPA unreachable, retry later" errors:
// errors.Is(err, spa.ErrUnavailable) tells an SG to have the pod retry (DESIGN:
// "SPA unreachable (the pod is told to retry)") rather than to reject it.
var ErrUnavailable = errors.New("spa: SPA unreachable, retry later")

// UnavailableError says SPA could not be reached within the retry budget.
type UnavailableError struct {
	Addr     string
	Attempts int
	Elapsed  time.Duration
	Last     error // the last attempt's error
}

func (e *UnavailableError) Error() string {
	return fmt.Sprintf("spa: SPA at %s unreachable after %d attempts in %v, retry later: %v",
		e.Addr, e.Attempts, e.Elapsed.Round(time.Millisecond), e.Last)
}

// Is makes errors.Is(err, ErrUnavailable) true.
func (e *UnavailableError) Is(target error) bool { return target == ErrUnavailable }

func (e *UnavailableError) Unwrap() error { return e.Last }

// Client is an SG's connection to SPA: calls retry with exponential backoff
// while SPA is unreachable, and Authorize answers from a decision cache when
// it can.
//
// The cache holds, per (prefix, pod certificate, SG port):
//   - an ALLOWED decision until 80% of its lease has passed (a Renew of that
//     instance extends it, a Release drops it). A hit is served only after
//     the client has verified the new proof itself with the pod's public key
//     and checked the certificate's dates, so a cached decision never
//     replaces the proof of possession; what it skips is SPA's policy,
//     revocation and registry work. A revocation therefore reaches a pod
//     with a cached decision at its next Renew, within a lease.
//   - a REFUSED decision for a few seconds (WithNegativeTTL), for reasons
//     that depend only on the certificate, prefix and port (certificate,
//     policy, collision), so a pod retrying in a loop does not load SPA.
//     Reasons tied to one request (proof, challenge, replay) are not cached.
//
// The SG's own node id, needed to check proofs, comes from the client
// certificate in the TLS configuration.
type Client struct {
	addr string
	conn *grpc.ClientConn
	api  spapb.SPAClient
	o    clientOptions
	sgID string

	mu      sync.Mutex
	cache   map[[32]byte]*cacheEntry
	byLease map[leaseID][32]byte
}

type leaseID struct {
	prefix string
	id     uint32
}

type cacheEntry struct {
	resp     *spapb.AuthorizeResponse
	until    time.Time // served until then
	expires  time.Time // positive: when the lease ends, as far as the client knows
	pub      crypto.PublicKey
	notAfter time.Time
	lease    leaseID // positive entries
}

// ClientOption adjusts Dial.
type ClientOption func(*clientOptions)

type clientOptions struct {
	log            *slog.Logger
	now            func() time.Time
	initialBackoff time.Duration
	maxBackoff     time.Duration
	budget         time.Duration
	attemptTimeout time.Duration
	negativeTTL    time.Duration
	cacheSize      int
}

// WithClientLogger sets the client's log (default: discarded).
func WithClientLogger(l *slog.Logger) ClientOption { return func(o *clientOptions) { o.log = l } }

// WithClientClock replaces time.Now for the cache (tests).
func WithClientClock(now func() time.Time) ClientOption {
	return func(o *clientOptions) { o.now = now }
}

// WithRetry sets the backoff (initial delay, doubling up to max) and the
// budget: how long one call keeps trying before it returns an
// UnavailableError (also bounded by the call's context). Defaults: 50 ms,
// 2 s, 10 s.
func WithRetry(initial, max, budget time.Duration) ClientOption {
	return func(o *clientOptions) { o.initialBackoff, o.maxBackoff, o.budget = initial, max, budget }
}

// WithAttemptTimeout bounds one attempt (default 3 s).
func WithAttemptTimeout(d time.Duration) ClientOption {
	return func(o *clientOptions) { o.attemptTimeout = d }
}

// WithNegativeTTL sets how long refusals are cached (default 5 s; 0 turns
// negative caching off).
func WithNegativeTTL(d time.Duration) ClientOption {
	return func(o *clientOptions) { o.negativeTTL = d }
}

// WithCacheSize bounds the decision cache (default 65,536 entries; 0 turns
// the cache off).
func WithCacheSize(n int) ClientOption { return func(o *clientOptions) { o.cacheSize = n } }

// Dial prepares a client of the SPA at addr. It does not wait for a
// connection, so an SG starts while SPA is down; calls then retry. tlsConf
// is normally ca.ClientTLS(caCert, sgCert, ca.RoleSPA).
func Dial(ctx context.Context, addr string, tlsConf *tls.Config, opts ...ClientOption) (*Client, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if tlsConf == nil {
		return nil, errors.New("spa: Dial needs a TLS configuration (mTLS with an SG node certificate)")
	}
	o := clientOptions{
		now:            time.Now,
		initialBackoff: 50 * time.Millisecond,
		maxBackoff:     2 * time.Second,
		budget:         10 * time.Second,
		attemptTimeout: 3 * time.Second,
		negativeTTL:    5 * time.Second,
		cacheSize:      1 << 16,
	}
	for _, f := range opts {
		f(&o)
	}
	if o.log == nil {
		o.log = slog.New(slog.DiscardHandler)
	}
	conn, err := grpc.NewClient("passthrough:///"+addr,
		grpc.WithTransportCredentials(credentials.NewTLS(tlsConf)),
		// Reconnect about as eagerly as calls retry: grpc's default waits
		// a whole second before its first reconnection.
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: o.initialBackoff, Multiplier: 1.6, Jitter: 0.2, MaxDelay: o.maxBackoff},
			MinConnectTimeout: o.attemptTimeout,
		}),
	)
	if err != nil {
		return nil, fmt.Errorf("spa: dial %s: %w", addr, err)
	}
	c := &Client{
		addr: addr, conn: conn, api: spapb.NewSPAClient(conn), o: o,
		cache: map[[32]byte]*cacheEntry{}, byLease: map[leaseID][32]byte{},
	}
	c.sgID = ownNodeID(tlsConf)
	if c.sgID == "" {
		o.log.Warn("spa client: no SG node certificate in the TLS configuration; positive decisions will not be served from cache")
	}
	conn.Connect()
	return c, nil
}

// ownNodeID reads the SG's node id from its client certificate.
func ownNodeID(tc *tls.Config) string {
	if len(tc.Certificates) == 0 {
		return ""
	}
	leaf := tc.Certificates[0].Leaf
	if leaf == nil && len(tc.Certificates[0].Certificate) > 0 {
		leaf, _ = x509.ParseCertificate(tc.Certificates[0].Certificate[0])
	}
	id, err := ca.IdentityOf(leaf)
	if err != nil || id.Kind != ca.KindNode {
		return ""
	}
	return id.NodeID
}

// Close closes the connection.
func (c *Client) Close() error { return c.conn.Close() }

// API is the raw generated client (Lookup, List), without retries.
func (c *Client) API() spapb.SPAClient { return c.api }

// retryable reports whether an error means "try again", and how long SPA
// asked to wait (RetryInfo of a rate limit).
func retryable(err error) (bool, time.Duration) {
	st, ok := status.FromError(err)
	if !ok {
		return false, 0
	}
	switch st.Code() {
	case codes.Unavailable, codes.DeadlineExceeded:
		return true, 0
	case codes.ResourceExhausted:
		for _, d := range st.Details() {
			if ri, ok := d.(*errdetails.RetryInfo); ok {
				return true, ri.GetRetryDelay().AsDuration()
			}
		}
		return true, 0
	}
	return false, 0
}

// call runs one RPC with retries. The request must be safe to send twice:
// an Authorize sent again after a lost answer is refused as a REPLAY, which
// the SG handles like any refusal of a proof (challenge the pod again; the
// instance id comes back unchanged, since it is per SG port).
func call[Resp any](ctx context.Context, c *Client, what string, rpc func(context.Context) (Resp, error)) (Resp, error) {
	start := time.Now()
	budget, cancel := context.WithTimeout(ctx, c.o.budget)
	defer cancel()
	delay := c.o.initialBackoff
	var zero Resp
	var last error // the last error that says why SPA did not answer
	for attempt := 1; ; attempt++ {
		actx, acancel := context.WithTimeout(budget, c.o.attemptTimeout)
		resp, err := rpc(actx)
		acancel()
		if err == nil {
			return resp, nil
		}
		again, wait := retryable(err)
		if !again {
			return zero, err
		}
		if ctx.Err() != nil {
			// The caller gave up: that is the caller's error, not SPA's.
			return zero, ctx.Err()
		}
		// An attempt cut short by the end of the budget says only that
		// time ran out; the attempt before it says why.
		if last == nil || budget.Err() == nil {
			last = err
		}
		if budget.Err() != nil {
			return zero, &UnavailableError{Addr: c.addr, Attempts: attempt, Elapsed: time.Since(start), Last: last}
		}
		// Full jitter around the doubling delay spreads the retries of many
		// SGs after an SPA restart.
		sleep := max(wait, delay/2+rand.N(delay/2+1))
		delay = min(2*delay, c.o.maxBackoff)
		c.o.log.Debug("spa call failed; retrying", "rpc", what, "attempt", attempt, "in", sleep, "err", err)
		t := time.NewTimer(sleep)
		select {
		case <-budget.Done():
			t.Stop()
			if ctx.Err() != nil {
				return zero, ctx.Err()
			}
			return zero, &UnavailableError{Addr: c.addr, Attempts: attempt, Elapsed: time.Since(start), Last: last}
		case <-t.C:
		}
	}
}

// Authorize asks SPA (or the decision cache) about one announcement. A
// refusal is a response with Decision REFUSED, not an error; errors are
// UnavailableError (retry later), PERMISSION_DENIED and the like.
func (c *Client) Authorize(ctx context.Context, req *spapb.AuthorizeRequest) (*spapb.AuthorizeResponse, error) {
	key, cacheable := cacheKey(req)
	if cacheable {
		if r := c.cached(key, req); r != nil {
			return r, nil
		}
	}
	resp, err := call(ctx, c, "Authorize", func(ctx context.Context) (*spapb.AuthorizeResponse, error) {
		return c.api.Authorize(ctx, req)
	})
	if err != nil {
		return nil, err
	}
	if cacheable {
		c.remember(key, req, resp)
	}
	return resp, nil
}

// Renew renews leases (all of an SG's due leases in one call); an ALLOWED
// result extends the cached decision of that instance, any other drops it.
func (c *Client) Renew(ctx context.Context, leases ...*spapb.LeaseRef) (*spapb.RenewResponse, error) {
	resp, err := call(ctx, c, "Renew", func(ctx context.Context) (*spapb.RenewResponse, error) {
		return c.api.Renew(ctx, &spapb.RenewRequest{Leases: leases})
	})
	if err != nil {
		return nil, err
	}
	now := c.o.now()
	c.mu.Lock()
	for _, r := range resp.GetResults() {
		lid := leaseID{r.GetLease().GetPrefix(), r.GetLease().GetInstanceId()}
		k, ok := c.byLease[lid]
		if !ok {
			continue
		}
		if e := c.cache[k]; e != nil && r.GetDecision() == spapb.Decision_ALLOWED {
			e.until = now.Add(r.GetLeaseDuration().AsDuration() * 4 / 5)
			e.expires = now.Add(r.GetLeaseDuration().AsDuration())
			continue
		}
		c.dropLocked(k)
	}
	c.mu.Unlock()
	return resp, nil
}

// Release frees an instance and drops its cached decision.
func (c *Client) Release(ctx context.Context, prefix string, instance uint32) (*spapb.ReleaseResponse, error) {
	c.mu.Lock()
	if k, ok := c.byLease[leaseID{prefix, instance}]; ok {
		c.dropLocked(k)
	}
	c.mu.Unlock()
	return call(ctx, c, "Release", func(ctx context.Context) (*spapb.ReleaseResponse, error) {
		return c.api.Release(ctx, &spapb.ReleaseRequest{Lease: &spapb.LeaseRef{Prefix: prefix, InstanceId: instance}})
	})
}

// cacheKey is SHA-256 over the prefix, the SG port and the leaf DER: what a
// decision depends on besides the proof.
func cacheKey(req *spapb.AuthorizeRequest) ([32]byte, bool) {
	if len(req.GetCertChain()) == 0 || req.GetPrefix() == "" {
		return [32]byte{}, false
	}
	h := sha256.New()
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], uint32(len(req.GetPrefix())))
	h.Write(b[:])
	h.Write([]byte(req.GetPrefix()))
	binary.BigEndian.PutUint32(b[:], req.GetSgPort())
	h.Write(b[:])
	for _, der := range req.GetCertChain() {
		binary.BigEndian.PutUint32(b[:], uint32(len(der)))
		h.Write(b[:])
		h.Write(der)
	}
	var k [32]byte
	h.Sum(k[:0])
	return k, true
}

// cacheChallengeWindow: a cache hit needs a challenge at most this far from
// the client's clock (the SG made it moments ago; SPA's default window).
const cacheChallengeWindow = time.Minute

// cacheableRefusal lists the reasons that depend only on what the cache key
// covers.
var cacheableRefusal = map[spapb.Reason]bool{
	spapb.Reason_BAD_PREFIX: true, spapb.Reason_RESERVED_PREFIX: true, spapb.Reason_CERT_MALFORMED: true,
	spapb.Reason_CERT_UNTRUSTED: true, spapb.Reason_CERT_EXPIRED: true, spapb.Reason_CERT_REVOKED: true,
	spapb.Reason_CERT_NOT_POD: true, spapb.Reason_PREFIX_OUTSIDE_CERT: true, spapb.Reason_POLICY_DENIED: true,
	spapb.Reason_POLICY_NOT_ALLOWED: true, spapb.Reason_KEY_COLLISION: true,
}

func (c *Client) cached(key [32]byte, req *spapb.AuthorizeRequest) *spapb.AuthorizeResponse {
	now := c.o.now()
	c.mu.Lock()
	e := c.cache[key]
	if e != nil && !now.Before(e.until) {
		c.dropLocked(key)
		e = nil
	}
	c.mu.Unlock()
	if e == nil {
		return nil
	}
	if e.resp.GetDecision() != spapb.Decision_ALLOWED {
		return proto.Clone(e.resp).(*spapb.AuthorizeResponse)
	}
	// A positive hit still needs this request's proof and a certificate
	// within its dates; otherwise SPA decides (and says why).
	if c.sgID == "" || !now.Before(e.notAfter) ||
		ca.VerifyProof(e.pub, req.GetChallenge(), c.sgID, req.GetSgPort(), req.GetPrefix(), req.GetSignature()) != nil {
		return nil
	}
	if t, err := ca.ChallengeTime(req.GetChallenge()); err != nil || now.Sub(t).Abs() > cacheChallengeWindow {
		return nil
	}
	r := proto.Clone(e.resp).(*spapb.AuthorizeResponse)
	c.mu.Lock()
	r.Lease = durationpb.New(e.expires.Sub(now)) // what is left of it
	c.mu.Unlock()
	return r
}

func (c *Client) remember(key [32]byte, req *spapb.AuthorizeRequest, resp *spapb.AuthorizeResponse) {
	if c.o.cacheSize <= 0 {
		return
	}
	now := c.o.now()
	e := &cacheEntry{resp: proto.Clone(resp).(*spapb.AuthorizeResponse)}
	switch {
	case resp.GetDecision() == spapb.Decision_ALLOWED:
		leaf, err := x509.ParseCertificate(req.GetCertChain()[0])
		if err != nil {
			return
		}
		e.pub, e.notAfter = leaf.PublicKey, leaf.NotAfter
		e.until = now.Add(resp.GetLease().AsDuration() * 4 / 5)
		e.expires = now.Add(resp.GetLease().AsDuration())
		e.lease = leaseID{req.GetPrefix(), resp.GetInstanceId()}
	case cacheableRefusal[resp.GetReason()] && c.o.negativeTTL > 0:
		e.until = now.Add(c.o.negativeTTL)
	default:
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.cache) >= c.o.cacheSize {
		c.evictLocked(now)
	}
	c.dropLocked(key)
	c.cache[key] = e
	if e.lease.id != 0 {
		c.byLease[e.lease] = key
	}
}

// evictLocked drops expired entries, and if none was, an arbitrary one: the
// cache is an optimization, a miss only costs a call.
func (c *Client) evictLocked(now time.Time) {
	n := len(c.cache)
	for k, e := range c.cache {
		if !now.Before(e.until) {
			c.dropLocked(k)
		}
	}
	if len(c.cache) < n {
		return
	}
	for k := range c.cache {
		c.dropLocked(k)
		return
	}
}

func (c *Client) dropLocked(k [32]byte) {
	if e, ok := c.cache[k]; ok {
		if e.lease.id != 0 && c.byLease[e.lease] == k {
			delete(c.byLease, e.lease)
		}
		delete(c.cache, k)
	}
}

// cacheLen is for tests.
func (c *Client) cacheLen() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.cache)
}
