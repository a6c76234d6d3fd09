// Package spa is Service Prefix Authentication (DESIGN §7, signaling type
// 3): the server that decides whether a pod may own a service prefix, hands
// out instance ids under leases and keeps the registry name ↔ key; and the
// client SGs use to ask it.
//
// The server speaks gRPC over mutual TLS (api/spa/spa.proto). Only SG node
// certificates of the domain may Authorize, Renew and Release; any node may
// Lookup and List. Everything about an announcement that is wrong gets a
// REFUSED decision with its own reason code and changes no registry state.
// Every decision goes to the audit log, one JSON line each.
package spa

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	spapb "github.com/dmsc-mesh/dmsc/api/spa"
	"github.com/dmsc-mesh/dmsc/ca"
)

// Server is the SPA server. NewServer prepares it, Serve runs it until its
// context ends, Close releases the store and the audit file.
type Server struct {
	spapb.UnimplementedSPAServer

	cfg       Config
	log       *slog.Logger
	audit     *slog.Logger
	auditFile io.Closer
	now       func() time.Time

	store    Store
	ownStore bool

	caCert *x509.Certificate
	roots  *x509.CertPool
	domain string
	self   ca.Identity
	tls    *tls.Config

	policy  *watchedFile[Policy]
	revoked *watchedFile[Revocations] // nil: no revocation list configured

	replay  *replayMemory
	limits  *sgLimiter
	started time.Time

	serving   atomic.Bool
	closeOnce sync.Once
	closeErr  error
}

// ServerOption adjusts NewServer.
type ServerOption func(*serverOptions)

type serverOptions struct {
	log, audit *slog.Logger
	now        func() time.Time
	store      Store
}

// WithLogger sets the operational log (default: discarded).
func WithLogger(l *slog.Logger) ServerOption { return func(o *serverOptions) { o.log = l } }

// WithAuditLogger sets the audit log (default: JSON lines to Config.AuditLog
// when set, else the operational log).
func WithAuditLogger(l *slog.Logger) ServerOption { return func(o *serverOptions) { o.audit = l } }

// WithClock replaces time.Now for certificate, challenge and lease times
// (tests). Rate limits always run on the real clock: they meter load.
func WithClock(now func() time.Time) ServerOption { return func(o *serverOptions) { o.now = now } }

// WithStore uses s instead of opening the bbolt file of Config.Store. The
// server does not close a store it was given.
func WithStore(s Store) ServerOption { return func(o *serverOptions) { o.store = s } }

// NewServer loads everything the configuration names (CA, SPA's own node
// certificate, policy, revocation list, store) and frees leases that expired
// while SPA was down. Errors name the file at fault.
func NewServer(cfg *Config, opts ...ServerOption) (*Server, error) {
	if cfg == nil {
		return nil, errors.New("spa: nil config")
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	o := serverOptions{now: time.Now}
	for _, f := range opts {
		f(&o)
	}
	if o.log == nil {
		o.log = slog.New(slog.DiscardHandler)
	}
	s := &Server{cfg: *cfg, log: o.log, now: o.now}

	tlsConf, self, err := ca.LoadServerTLS(cfg.CA, cfg.Cert, cfg.Key)
	if err != nil {
		return nil, fmt.Errorf("spa: tls: %w", err)
	}
	if self.Role != ca.RoleSPA {
		return nil, fmt.Errorf("spa: tls.cert %s: is %s, want a node certificate of role spa", cfg.Cert, self)
	}
	s.tls, s.self = tlsConf, self
	s.caCert, s.domain, err = ca.LoadCert(cfg.CA)
	if err != nil {
		return nil, fmt.Errorf("spa: tls.ca: %w", err)
	}
	s.roots = x509.NewCertPool()
	s.roots.AddCert(s.caCert)

	if s.policy, err = newWatchedFile("policy", cfg.Policy, maxPolicySize, ParsePolicy); err != nil {
		return nil, fmt.Errorf("spa: %w", err)
	}
	if cfg.Revocation != "" {
		if s.revoked, err = newWatchedFile("revocation", cfg.Revocation, maxRevocationSize, ParseRevocations); err != nil {
			return nil, fmt.Errorf("spa: %w", err)
		}
	}

	s.audit = o.audit
	if s.audit == nil && cfg.AuditLog != "" {
		f, err := os.OpenFile(cfg.AuditLog, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
		if err != nil {
			return nil, fmt.Errorf("spa: audit_log: %w", err)
		}
		s.audit, s.auditFile = slog.New(slog.NewJSONHandler(f, nil)), f
	}
	if s.audit == nil {
		s.audit = s.log
	}

	s.store = o.store
	if s.store == nil {
		bs, err := OpenBoltStore(cfg.Store)
		if err != nil {
			s.closeAudit()
			return nil, err
		}
		s.store, s.ownStore = bs, true
	}

	s.replay = newReplayMemory(cfg.ChallengeWindow+cfg.ClockSkew, cfg.ReplayMemory)
	s.limits = newSGLimiter(cfg.RatePerSecond, cfg.RateBurst)
	s.started = s.now()
	if err := s.sweep(context.Background()); err != nil {
		s.Close()
		return nil, fmt.Errorf("spa: freeing expired leases: %w", err)
	}
	s.log.Info("spa ready", "domain", s.domain, "self", s.self.String(), "policy_rules", s.policy.get().Len(),
		"revoked", s.revocations().Len(), "lease", cfg.Lease)
	return s, nil
}

// Domain is the DMSC domain the server's CA is for.
func (s *Server) Domain() string { return s.domain }

// Close releases the store (if NewServer opened it) and the audit file. Call
// it after Serve has returned.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		if s.ownStore {
			s.closeErr = s.store.Close()
		}
		if err := s.closeAudit(); s.closeErr == nil {
			s.closeErr = err
		}
	})
	return s.closeErr
}

func (s *Server) closeAudit() error {
	if s.auditFile != nil {
		return s.auditFile.Close()
	}
	return nil
}

// gracePeriod bounds how long Serve waits for calls in flight at shutdown.
const gracePeriod = 5 * time.Second

// Serve answers on lis until ctx ends, then stops gracefully (calls in flight
// get up to 5 s) and returns nil; or returns the listener's error. It also
// runs the reloading of the policy and revocation files and the freeing of
// expired leases, and stops them before it returns. Serve runs once.
func (s *Server) Serve(ctx context.Context, lis net.Listener) error {
	if !s.serving.CompareAndSwap(false, true) {
		return errors.New("spa: Serve called twice")
	}
	gs := grpc.NewServer(
		grpc.Creds(credentials.NewTLS(s.tls)),
		grpc.ChainUnaryInterceptor(s.authorizeCaller),
		// A request carries at most 4 certificates of 16 KiB, or 10,000
		// lease references.
		grpc.MaxRecvMsgSize(1<<20),
	)
	spapb.RegisterSPAServer(gs, s)

	bg, stopBG := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { s.maintain(bg) })

	served := make(chan error, 1)
	go func() { served <- gs.Serve(lis) }()
	s.log.Info("spa serving", "addr", lis.Addr().String())

	var err error
	select {
	case <-ctx.Done():
	case err = <-served:
		served = nil
	}
	stopBG()
	stopped := make(chan struct{})
	go func() { gs.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(gracePeriod):
		gs.Stop()
		<-stopped
	}
	if served != nil {
		if e := <-served; e != nil && !errors.Is(e, grpc.ErrServerStopped) {
			err = e
		}
	}
	wg.Wait()
	s.log.Info("spa stopped")
	return err
}

// Reload checks the policy and revocation files now (SIGHUP, tests) instead
// of at the next poll.
func (s *Server) Reload() error {
	var errs []error
	if changed, err := s.policy.poll(); err != nil {
		errs = append(errs, err)
	} else if changed {
		s.log.Info("spa policy reloaded", "path", s.cfg.Policy, "rules", s.policy.get().Len())
	}
	if s.revoked != nil {
		if changed, err := s.revoked.poll(); err != nil {
			errs = append(errs, err)
		} else if changed {
			s.log.Info("spa revocation list reloaded", "path", s.cfg.Revocation, "serials", s.revoked.get().Len())
		}
	}
	return errors.Join(errs...)
}

func (s *Server) revocations() *Revocations {
	if s.revoked == nil {
		return nil
	}
	return s.revoked.get()
}

// sweepInterval is how often expired leases are freed: often enough that an
// instance outlives its lease by at most a quarter lease, at most every 10 s.
func (s *Server) sweepInterval() time.Duration {
	return min(max(s.cfg.Lease/4, 50*time.Millisecond), 10*time.Second)
}

// maintain reloads files and frees expired leases until ctx ends.
func (s *Server) maintain(ctx context.Context) {
	reload := time.NewTicker(s.cfg.ReloadInterval)
	defer reload.Stop()
	sweep := time.NewTicker(s.sweepInterval())
	defer sweep.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-reload.C:
			if err := s.Reload(); err != nil {
				// The last good policy and list stay in force.
				s.log.Error("spa reload failed; the previous version stays in force", "err", err)
			}
		case <-sweep.C:
			if err := s.sweep(ctx); err != nil && ctx.Err() == nil {
				s.log.Error("spa lease sweep failed", "err", err)
			}
		}
	}
}

// sweep frees every instance whose lease has expired.
func (s *Server) sweep(ctx context.Context) error {
	now := s.now()
	var freed []Instance
	err := s.store.Update(ctx, func(tx Tx) error {
		freed = freed[:0]
		var expired []Instance
		if err := tx.Instances("", func(in Instance) bool {
			if !now.Before(in.Expires) {
				expired = append(expired, in)
			}
			return true
		}); err != nil {
			return err
		}
		for _, in := range expired {
			if err := deleteInstance(tx, in); err != nil {
				return err
			}
		}
		freed = expired
		return nil
	})
	if err != nil {
		return err
	}
	for _, in := range freed {
		s.audit.LogAttrs(ctx, slog.LevelInfo, "spa decision",
			slog.String("rpc", "expire"), slog.String("sg", in.SG), slog.Uint64("sg_port", uint64(in.Port)),
			slog.String("prefix", in.Name), slog.Uint64("instance", uint64(in.ID)), slog.String("identity", in.Identity),
			slog.String("decision", "RELEASED"), slog.String("reason", "LEASE_EXPIRED"),
			slog.String("detail", "lease expired at "+in.Expires.UTC().Format(time.RFC3339Nano)))
	}
	return nil
}

// deleteInstance removes an instance and keeps its service's count.
func deleteInstance(tx Tx, in Instance) error {
	if err := tx.DeleteInstance(in.Name, in.ID); err != nil {
		return err
	}
	svc, ok, err := tx.Service(in.Name)
	if err != nil || !ok {
		return err
	}
	if svc.Count > 0 {
		svc.Count--
	}
	return tx.PutService(svc)
}

type callerKey struct{}

func callerFrom(ctx context.Context) ca.Identity {
	id, _ := ctx.Value(callerKey{}).(ca.Identity)
	return id
}

// sgMethods may be called by SG nodes only.
var sgMethods = map[string]bool{
	spapb.SPA_Authorize_FullMethodName: true,
	spapb.SPA_Renew_FullMethodName:     true,
	spapb.SPA_Release_FullMethodName:   true,
}

// authorizeCaller admits a call: the caller must be a node of this domain
// (an SG for sgMethods) and within its rate limit. Refusals are audited.
func (s *Server) authorizeCaller(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	caller, err := s.callerOf(ctx)
	if err != nil {
		return nil, s.denyCall(ctx, info.FullMethod, "(unknown)", fmt.Sprintf("spa: %s: the caller's certificate names no DMSC node of domain %s: %v", info.FullMethod, s.domain, err))
	}
	switch {
	case caller.Kind != ca.KindNode:
		return nil, s.denyCall(ctx, info.FullMethod, caller.String(), fmt.Sprintf("spa: %s is for DMSC nodes of domain %s; the caller is %s %s", info.FullMethod, s.domain, caller.Kind, caller))
	case sgMethods[info.FullMethod] && caller.Role != ca.RoleSG:
		return nil, s.denyCall(ctx, info.FullMethod, caller.String(), fmt.Sprintf("spa: %s is for SG nodes (role sg) of domain %s; the caller is %s", info.FullMethod, s.domain, caller))
	}
	if ok, wait := s.limits.allow(caller.NodeID, time.Now()); !ok {
		msg := fmt.Sprintf("spa: rate limit of %s exceeded (%g calls/s, burst %d); retry in %v", caller, s.cfg.RatePerSecond, s.cfg.RateBurst, wait.Round(time.Millisecond))
		s.audit.LogAttrs(ctx, slog.LevelWarn, "spa decision", slog.String("rpc", info.FullMethod), slog.String("sg", caller.NodeID),
			slog.String("decision", "REFUSED"), slog.String("reason", "RATE_LIMITED"), slog.String("detail", msg))
		st, err := status.New(codes.ResourceExhausted, msg).WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(wait)})
		if err != nil {
			return nil, status.Error(codes.ResourceExhausted, msg)
		}
		return nil, st.Err()
	}
	return handler(context.WithValue(ctx, callerKey{}, caller), req)
}

func (s *Server) denyCall(ctx context.Context, method, who, msg string) error {
	s.audit.LogAttrs(ctx, slog.LevelWarn, "spa decision", slog.String("rpc", method), slog.String("caller", who),
		slog.String("decision", "REFUSED"), slog.String("reason", "PERMISSION_DENIED"), slog.String("detail", msg))
	return status.Error(codes.PermissionDenied, msg)
}

func (s *Server) callerOf(ctx context.Context) (ca.Identity, error) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return ca.Identity{}, errors.New("no peer")
	}
	ti, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok {
		return ca.Identity{}, errors.New("not a TLS connection")
	}
	return ca.PeerIdentity(ti.State, s.domain)
}
