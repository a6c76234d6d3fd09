package spa

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	spapb "github.com/dmsc-mesh/dmsc/api/spa"
	"github.com/dmsc-mesh/dmsc/ca"
	"github.com/dmsc-mesh/dmsc/wire"
)

// Request limits: far above any honest request, low enough that a caller
// cannot make SPA parse or hold much.
const (
	maxChainCerts  = 4
	maxCertSize    = 16 << 10
	maxSignature   = 512
	maxPrefixLen   = 255
	maxRenewBatch  = 10000
	maxListPage    = 1000
	defaultListPag = 100
)

// verdict is one Authorize decision with what the audit line needs.
type verdict struct {
	reason   spapb.Reason
	text     string
	identity string
	serial   string
	instance uint32
	lease    time.Duration
	key      wire.Key
	rule     string
}

func refuse(r spapb.Reason, format string, args ...any) *verdict {
	return &verdict{reason: r, text: fmt.Sprintf(format, args...)}
}

// refusal is a verdict carried out of a store transaction as an error, so
// the transaction rolls back.
type refusal struct{ v *verdict }

func (r refusal) Error() string { return r.v.text }

// Authorize implements spapb.SPAServer. The checks run cheapest first and
// every refusal returns before the registry transaction, so a refused
// announcement changes no registry state. (A challenge whose proof verified
// is remembered even if the policy then refuses: it was spent.)
func (s *Server) Authorize(ctx context.Context, req *spapb.AuthorizeRequest) (*spapb.AuthorizeResponse, error) {
	caller := callerFrom(ctx)
	now := s.now()
	v, err := s.decide(ctx, caller, req, now)
	if err != nil {
		s.log.Error("spa authorize failed", "sg", caller.NodeID, "prefix", req.GetPrefix(), "err", err)
		s.audit.LogAttrs(ctx, slog.LevelError, "spa decision", slog.String("rpc", "Authorize"), slog.String("sg", caller.NodeID),
			slog.Uint64("sg_port", uint64(req.GetSgPort())), slog.String("prefix", req.GetPrefix()),
			slog.String("decision", "ERROR"), slog.String("detail", err.Error()))
		return nil, err
	}
	attrs := []slog.Attr{
		slog.String("rpc", "Authorize"), slog.String("sg", caller.NodeID), slog.Uint64("sg_port", uint64(req.GetSgPort())),
		slog.String("prefix", req.GetPrefix()), slog.String("identity", v.identity), slog.String("serial", v.serial),
	}
	resp := &spapb.AuthorizeResponse{Identity: v.identity}
	if v.reason == spapb.Reason_REASON_NONE {
		resp.Decision = spapb.Decision_ALLOWED
		resp.InstanceId = v.instance
		resp.Lease = durationpb.New(v.lease)
		resp.ServiceKey = append([]byte(nil), v.key[:]...)
		attrs = append(attrs, slog.String("decision", "ALLOWED"), slog.Uint64("instance", uint64(v.instance)),
			slog.Duration("lease", v.lease), slog.String("key", v.key.WithInstance(v.instance).String()), slog.String("rule", v.rule))
		s.audit.LogAttrs(ctx, slog.LevelInfo, "spa decision", attrs...)
	} else {
		resp.Decision = spapb.Decision_REFUSED
		resp.Reason = v.reason
		resp.ReasonText = v.text
		attrs = append(attrs, slog.String("decision", "REFUSED"), slog.String("reason", v.reason.String()), slog.String("detail", v.text))
		if v.rule != "" {
			attrs = append(attrs, slog.String("rule", v.rule))
		}
		s.audit.LogAttrs(ctx, slog.LevelWarn, "spa decision", attrs...)
	}
	return resp, nil
}

// decide returns a verdict, or an error for the caller (overload, store
// failure) that is no decision about the announcement.
func (s *Server) decide(ctx context.Context, caller ca.Identity, req *spapb.AuthorizeRequest, now time.Time) (*verdict, error) {
	// 1. Shape.
	switch {
	case req.GetPrefix() == "":
		return refuse(spapb.Reason_MALFORMED_REQUEST, "prefix is missing"), nil
	case len(req.GetPrefix()) > maxPrefixLen:
		return refuse(spapb.Reason_MALFORMED_REQUEST, "prefix is %d bytes long (at most %d)", len(req.GetPrefix()), maxPrefixLen), nil
	case len(req.GetCertChain()) == 0:
		return refuse(spapb.Reason_MALFORMED_REQUEST, "cert_chain is empty (want the pod certificate, DER, leaf first)"), nil
	case len(req.GetCertChain()) > maxChainCerts:
		return refuse(spapb.Reason_MALFORMED_REQUEST, "cert_chain has %d certificates (at most %d)", len(req.GetCertChain()), maxChainCerts), nil
	case len(req.GetChallenge()) != ca.ChallengeLen:
		return refuse(spapb.Reason_MALFORMED_REQUEST, "challenge is %d bytes (want %d: issue time and 24 random bytes)", len(req.GetChallenge()), ca.ChallengeLen), nil
	case len(req.GetSignature()) == 0 || len(req.GetSignature()) > maxSignature:
		return refuse(spapb.Reason_MALFORMED_REQUEST, "signature is %d bytes (want 1 to %d)", len(req.GetSignature()), maxSignature), nil
	}
	for i, der := range req.GetCertChain() {
		if len(der) == 0 || len(der) > maxCertSize {
			return refuse(spapb.Reason_MALFORMED_REQUEST, "cert_chain[%d] is %d bytes (want 1 to %d)", i, len(der), maxCertSize), nil
		}
	}

	// 2. The name.
	prefix := req.GetPrefix()
	if prefix == "/"+wire.NodeNamespace || strings.HasPrefix(prefix, "/"+wire.NodeNamespace+"/") {
		return refuse(spapb.Reason_RESERVED_PREFIX, "%q: /%s names belong to switches; no pod may announce them", prefix, wire.NodeNamespace), nil
	}
	name, err := wire.ParseName(prefix)
	if err != nil {
		return refuse(spapb.Reason_BAD_PREFIX, "%v", strings.TrimPrefix(err.Error(), "wire: ")), nil
	}

	// 3. Freshness of the challenge.
	issued, _ := ca.ChallengeTime(req.GetChallenge())
	switch {
	case issued.Before(now.Add(-s.cfg.ChallengeWindow)):
		return refuse(spapb.Reason_STALE_CHALLENGE, "challenge issued at %s is older than the %v window (SPA time %s); challenge the pod again",
			stamp(issued), s.cfg.ChallengeWindow, stamp(now)), nil
	case issued.After(now.Add(s.cfg.ClockSkew)):
		return refuse(spapb.Reason_STALE_CHALLENGE, "challenge issued at %s is more than %v ahead of SPA time %s (check the SG's clock)",
			stamp(issued), s.cfg.ClockSkew, stamp(now)), nil
	case issued.Before(s.started):
		// The replay memory is not persisted: a challenge from before this
		// process started may have been used with the previous one.
		return refuse(spapb.Reason_STALE_CHALLENGE, "challenge issued at %s, before this SPA started at %s (its replay memory starts empty); challenge the pod again",
			stamp(issued), stamp(s.started)), nil
	}

	// 4. The certificate chain.
	chain := make([]*x509.Certificate, len(req.GetCertChain()))
	for i, der := range req.GetCertChain() {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return refuse(spapb.Reason_CERT_MALFORMED, "cert_chain[%d] does not parse: %v", i, err), nil
		}
		chain[i] = c
	}
	leaf := chain[0]
	serial := ca.SerialString(leaf.SerialNumber)
	if v := s.verifyChain(chain, now); v != nil {
		v.serial = serial
		return v, nil
	}
	if rl := s.revocations(); rl != nil {
		for i, c := range chain {
			if rl.Revoked(c.SerialNumber) {
				v := refuse(spapb.Reason_CERT_REVOKED, "certificate serial %s (cert_chain[%d]) is revoked by %s", ca.SerialString(c.SerialNumber), i, s.cfg.Revocation)
				v.serial = serial
				return v, nil
			}
		}
	}
	id, err := ca.IdentityOf(leaf)
	if err != nil {
		v := refuse(spapb.Reason_CERT_NOT_POD, "%v", strings.TrimPrefix(err.Error(), "ca: "))
		v.serial = serial
		return v, nil
	}
	if id.Kind != ca.KindPod || id.Domain != s.domain {
		v := refuse(spapb.Reason_CERT_NOT_POD, "the certificate names %s %s, not a pod of domain %s", id.Kind, id, s.domain)
		v.serial = serial
		return v, nil
	}
	withID := func(v *verdict) *verdict { v.identity, v.serial = id.String(), serial; return v }

	// 5. The prefix is the certificate's or below it.
	if !name.HasPrefix(id.Prefix) {
		return withID(refuse(spapb.Reason_PREFIX_OUTSIDE_CERT, "%s may announce %s and, where the policy allows, names below it; not %s",
			id, id.Prefix, name)), nil
	}

	// 6. Proof of possession, made for this SG and port.
	if err := ca.VerifyProof(leaf.PublicKey, req.GetChallenge(), caller.NodeID, req.GetSgPort(), name.String(), req.GetSignature()); err != nil {
		return withID(refuse(spapb.Reason_BAD_PROOF, "%v for SG %s, port %d, prefix %s and this challenge: the pod signed for another SG, port, prefix or challenge, or with another key",
			err, caller.NodeID, req.GetSgPort(), name)), nil
	}

	// 7. Replay. Only a challenge with a valid proof is remembered, so junk
	// cannot fill the memory.
	var nonce [32]byte
	copy(nonce[:], req.GetChallenge())
	switch s.replay.check(nonce, now) {
	case replaySeen:
		return withID(refuse(spapb.Reason_REPLAY, "challenge issued at %s was already used (replay); challenge the pod again", stamp(issued))), nil
	case replayFull:
		return nil, status.Errorf(codes.ResourceExhausted, "spa: replay memory full (%d challenges in the last %v); retry later", s.cfg.ReplayMemory, s.cfg.ChallengeWindow+s.cfg.ClockSkew)
	}

	// 8. Policy.
	pr := s.policy.get().Check(id.Prefix, name, caller.NodeID)
	switch {
	case pr.Denied:
		v := withID(refuse(spapb.Reason_POLICY_DENIED, "deny rule %s matches %s announcing %s on %s", pr.Rule, id, name, caller.NodeID))
		v.rule = pr.Rule
		return v, nil
	case !pr.Allowed:
		return withID(refuse(spapb.Reason_POLICY_NOT_ALLOWED, "no allow rule in %s lets %s announce %s on %s", s.cfg.Policy, id, name, caller.NodeID)), nil
	}

	// 9. Registry: collisions, then the instance.
	expires := now.Add(s.cfg.Lease)
	for _, c := range chain {
		if c.NotAfter.Before(expires) {
			expires = c.NotAfter // no lease outlives the certificate
		}
	}
	in := Instance{
		Name: name.String(), SG: caller.NodeID, Port: req.GetSgPort(), Identity: id.String(), PodPrefix: id.Prefix.String(),
		Serial: serial, CertNotAfter: leaf.NotAfter, Expires: expires, Created: now,
	}
	err = s.store.Update(ctx, func(tx Tx) error { return s.register(tx, name, &in) })
	var ref refusal
	switch {
	case errors.As(err, &ref):
		return withID(ref.v), nil
	case err != nil:
		return nil, status.Errorf(codes.Unavailable, "spa: registry: %v", err)
	}
	v := withID(&verdict{instance: in.ID, lease: expires.Sub(now), key: wire.KeyOf(name), rule: pr.Rule})
	return v, nil
}

// register binds the name (and its ancestors) to their keys unless a
// different name holds one of them, and gives in an instance id: the one
// already held at the same SG and port, or a free one. It runs inside a
// store transaction and may run more than once.
func (s *Server) register(tx Tx, name wire.Name, in *Instance) error {
	// Every level is checked: /shop/cart's key starts with /shop's, and
	// /32 routes are matched on their own, so a name colliding with an
	// ancestor's key would capture the ancestor's traffic.
	var unbound []wire.Name
	for n, ok := name, true; ok; n, ok = n.Parent() {
		k := wire.KeyOf(n)
		held, found, err := tx.NameOf(k)
		if err != nil {
			return err
		}
		switch {
		case !found:
			unbound = append(unbound, n)
		case held != n.String():
			what := "its key"
			if n != name {
				what = "the key of its ancestor " + n.String()
			}
			return refusal{refuse(spapb.Reason_KEY_COLLISION, "%s: %s (%s) is already held by %s; rename the service",
				name, what, k.Mask(n.PrefixLen()), held)}
		}
	}
	for _, n := range unbound {
		if err := tx.BindName(wire.KeyOf(n), n.String()); err != nil {
			return err
		}
	}
	svc, found, err := tx.Service(in.Name)
	if err != nil {
		return err
	}
	if !found {
		svc = Service{Name: in.Name, Key: wire.KeyOf(name), NextID: 1}
	}
	old, found, err := tx.InstanceAt(in.Name, in.SG, in.Port)
	if err != nil {
		return err
	}
	if found {
		in.ID, in.Created = old.ID, old.Created
		return tx.PutInstance(*in)
	}
	limit := s.cfg.MaxInstances
	if limit == 0 {
		limit = ^uint32(0)
	}
	if svc.Count >= limit {
		return refusal{refuse(spapb.Reason_INSTANCES_EXHAUSTED, "%s already has %d instances (the limit)", in.Name, svc.Count)}
	}
	// Ids go up and wrap, skipping held ones, so a freed id is reused as
	// late as possible: a connection still pinned to an old instance key
	// should not reach a new instance. Count < limit ≤ 2^32-1 guarantees a
	// free id within Count+1 steps.
	id := svc.NextID
	for {
		if id == 0 {
			id = 1
		}
		_, held, err := tx.Instance(in.Name, id)
		if err != nil {
			return err
		}
		if !held {
			break
		}
		id++
	}
	in.ID = id
	svc.NextID = id + 1
	svc.Count++
	if err := tx.PutService(svc); err != nil {
		return err
	}
	return tx.PutInstance(*in)
}

// verifyChain verifies the pod chain against the domain CA at now, telling
// an untrusted chain from a trusted but expired or not yet valid one.
func (s *Server) verifyChain(chain []*x509.Certificate, now time.Time) *verdict {
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	verify := func(at time.Time) error {
		_, err := chain[0].Verify(x509.VerifyOptions{
			Roots: s.roots, Intermediates: inter, CurrentTime: at,
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		})
		return err
	}
	err := verify(now)
	if err == nil {
		return nil
	}
	var inv x509.CertificateInvalidError
	if errors.As(err, &inv) && inv.Reason == x509.Expired && inv.Cert != nil {
		// Say "expired" only of a certificate that would be trusted at a
		// time inside its validity: a forged chain is untrusted, whatever
		// its dates.
		bad := inv.Cert
		at := bad.NotBefore.Add(time.Second)
		if !at.Before(bad.NotAfter) {
			at = bad.NotBefore
		}
		var ua x509.UnknownAuthorityError
		if e := verify(at); e != nil && errors.As(e, &ua) {
			return refuse(spapb.Reason_CERT_UNTRUSTED, "certificate %q is not issued by the CA of domain %s (issuer %q)",
				chain[0].Subject.CommonName, s.domain, chain[0].Issuer.CommonName)
		}
		who := fmt.Sprintf("certificate serial %s (%q)", ca.SerialString(bad.SerialNumber), bad.Subject.CommonName)
		if now.Before(bad.NotBefore) {
			return refuse(spapb.Reason_CERT_NOT_YET_VALID, "%s is valid from %s; SPA time is %s", who, stamp(bad.NotBefore), stamp(now))
		}
		return refuse(spapb.Reason_CERT_EXPIRED, "%s expired at %s; SPA time is %s", who, stamp(bad.NotAfter), stamp(now))
	}
	var ua x509.UnknownAuthorityError
	if errors.As(err, &ua) {
		return refuse(spapb.Reason_CERT_UNTRUSTED, "certificate %q is not issued by the CA of domain %s (issuer %q)",
			chain[0].Subject.CommonName, s.domain, chain[0].Issuer.CommonName)
	}
	return refuse(spapb.Reason_CERT_UNTRUSTED, "certificate %q does not verify against the CA of domain %s: %v", chain[0].Subject.CommonName, s.domain, err)
}

func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// Renew implements spapb.SPAServer: one transaction (one fsync) for the
// whole batch. A lease is renewed only if it is still held by the caller,
// unexpired, and its pod certificate is still unrevoked, unexpired and
// allowed by the policy; an instance failing one of the last three is freed
// at once, so revocation and policy changes take effect within a lease.
func (s *Server) Renew(ctx context.Context, req *spapb.RenewRequest) (*spapb.RenewResponse, error) {
	caller := callerFrom(ctx)
	if n := len(req.GetLeases()); n > maxRenewBatch {
		return nil, status.Errorf(codes.InvalidArgument, "spa: Renew of %d leases (at most %d a call)", n, maxRenewBatch)
	}
	now := s.now()
	pol, rl := s.policy.get(), s.revocations()
	var results []*spapb.RenewResult
	err := s.store.Update(ctx, func(tx Tx) error {
		results = results[:0]
		for _, ref := range req.GetLeases() {
			r, err := s.renewOne(tx, caller, ref, now, pol, rl)
			if err != nil {
				return err
			}
			results = append(results, r)
		}
		return nil
	})
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "spa: registry: %v", err)
	}
	for _, r := range results {
		attrs := []slog.Attr{slog.String("rpc", "Renew"), slog.String("sg", caller.NodeID), slog.String("prefix", r.GetLease().GetPrefix()),
			slog.Uint64("instance", uint64(r.GetLease().GetInstanceId())), slog.String("decision", r.GetDecision().String())}
		if r.GetDecision() == spapb.Decision_ALLOWED {
			attrs = append(attrs, slog.Duration("lease", r.GetLeaseDuration().AsDuration()))
		} else {
			attrs = append(attrs, slog.String("reason", r.GetReason().String()), slog.String("detail", r.GetReasonText()))
		}
		s.audit.LogAttrs(ctx, slog.LevelInfo, "spa decision", attrs...)
	}
	return &spapb.RenewResponse{Results: results}, nil
}

func (s *Server) renewOne(tx Tx, caller ca.Identity, ref *spapb.LeaseRef, now time.Time, pol *Policy, rl *Revocations) (*spapb.RenewResult, error) {
	res := &spapb.RenewResult{Lease: &spapb.LeaseRef{Prefix: ref.GetPrefix(), InstanceId: ref.GetInstanceId()}, Decision: spapb.Decision_REFUSED}
	no := func(r spapb.Reason, format string, args ...any) (*spapb.RenewResult, error) {
		res.Reason, res.ReasonText = r, fmt.Sprintf(format, args...)
		return res, nil
	}
	name, err := wire.ParseName(ref.GetPrefix())
	if err != nil {
		return no(spapb.Reason_BAD_PREFIX, "%v", strings.TrimPrefix(err.Error(), "wire: "))
	}
	in, found, err := tx.Instance(name.String(), ref.GetInstanceId())
	if err != nil {
		return nil, err
	}
	switch {
	case !found:
		return no(spapb.Reason_LEASE_UNKNOWN, "%s has no instance %d (released or expired); announce again", name, ref.GetInstanceId())
	case in.SG != caller.NodeID:
		return no(spapb.Reason_NOT_LEASE_HOLDER, "instance %d of %s is held by SG %s, not %s", in.ID, name, in.SG, caller.NodeID)
	}
	free := func(r spapb.Reason, format string, args ...any) (*spapb.RenewResult, error) {
		if err := deleteInstance(tx, in); err != nil {
			return nil, err
		}
		return no(r, format, args...)
	}
	if !now.Before(in.Expires) {
		return free(spapb.Reason_LEASE_UNKNOWN, "lease of instance %d of %s expired at %s; announce again", in.ID, name, stamp(in.Expires))
	}
	if rl.RevokedString(in.Serial) {
		return free(spapb.Reason_CERT_REVOKED, "certificate serial %s of %s is revoked; instance %d freed", in.Serial, in.Identity, in.ID)
	}
	if !now.Before(in.CertNotAfter) {
		return free(spapb.Reason_CERT_EXPIRED, "certificate serial %s of %s expired at %s; instance %d freed", in.Serial, in.Identity, stamp(in.CertNotAfter), in.ID)
	}
	if podPrefix, err := wire.ParseName(in.PodPrefix); err == nil {
		if pr := pol.Check(podPrefix, name, in.SG); !pr.Allowed {
			if pr.Denied {
				return free(spapb.Reason_POLICY_DENIED, "deny rule %s now matches %s announcing %s; instance %d freed", pr.Rule, in.Identity, name, in.ID)
			}
			return free(spapb.Reason_POLICY_NOT_ALLOWED, "the policy no longer lets %s announce %s; instance %d freed", in.Identity, name, in.ID)
		}
	}
	in.Expires = now.Add(s.cfg.Lease)
	if in.CertNotAfter.Before(in.Expires) {
		in.Expires = in.CertNotAfter
	}
	if err := tx.PutInstance(in); err != nil {
		return nil, err
	}
	res.Decision, res.LeaseDuration = spapb.Decision_ALLOWED, durationpb.New(in.Expires.Sub(now))
	return res, nil
}

// Release implements spapb.SPAServer.
func (s *Server) Release(ctx context.Context, req *spapb.ReleaseRequest) (*spapb.ReleaseResponse, error) {
	caller := callerFrom(ctx)
	ref := req.GetLease()
	resp := &spapb.ReleaseResponse{Decision: spapb.Decision_REFUSED}
	err := s.store.Update(ctx, func(tx Tx) error {
		resp.Decision, resp.Reason, resp.ReasonText = spapb.Decision_REFUSED, 0, ""
		name, err := wire.ParseName(ref.GetPrefix())
		if err != nil {
			resp.Reason, resp.ReasonText = spapb.Reason_BAD_PREFIX, strings.TrimPrefix(err.Error(), "wire: ")
			return nil
		}
		in, found, err := tx.Instance(name.String(), ref.GetInstanceId())
		switch {
		case err != nil:
			return err
		case !found:
			resp.Reason, resp.ReasonText = spapb.Reason_LEASE_UNKNOWN, fmt.Sprintf("%s has no instance %d (released or expired)", name, ref.GetInstanceId())
			return nil
		case in.SG != caller.NodeID:
			resp.Reason, resp.ReasonText = spapb.Reason_NOT_LEASE_HOLDER, fmt.Sprintf("instance %d of %s is held by SG %s, not %s", in.ID, name, in.SG, caller.NodeID)
			return nil
		}
		resp.Decision = spapb.Decision_ALLOWED
		return deleteInstance(tx, in)
	})
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "spa: registry: %v", err)
	}
	attrs := []slog.Attr{slog.String("rpc", "Release"), slog.String("sg", caller.NodeID), slog.String("prefix", ref.GetPrefix()),
		slog.Uint64("instance", uint64(ref.GetInstanceId())), slog.String("decision", resp.Decision.String())}
	if resp.Decision != spapb.Decision_ALLOWED {
		attrs = append(attrs, slog.String("reason", resp.Reason.String()), slog.String("detail", resp.ReasonText))
	}
	s.audit.LogAttrs(ctx, slog.LevelInfo, "spa decision", attrs...)
	return resp, nil
}

// Lookup implements spapb.SPAServer.
func (s *Server) Lookup(ctx context.Context, req *spapb.LookupRequest) (*spapb.LookupResponse, error) {
	var key wire.Key
	switch w := req.GetWhat().(type) {
	case *spapb.LookupRequest_Name:
		n, err := wire.ParseName(w.Name)
		if err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "spa: lookup: %v", err)
		}
		key = wire.KeyOf(n)
	case *spapb.LookupRequest_Key:
		if len(w.Key) != len(key) {
			return nil, status.Errorf(codes.InvalidArgument, "spa: lookup: key of %d bytes (want 16)", len(w.Key))
		}
		copy(key[:], w.Key)
		key = key.WithInstance(0)
	default:
		return nil, status.Error(codes.InvalidArgument, "spa: lookup: give a name or a key")
	}
	resp := &spapb.LookupResponse{}
	err := s.store.View(ctx, func(tx Tx) error {
		resp.Found, resp.Service = false, nil
		name, found, err := tx.NameOf(key)
		if err != nil || !found {
			return err
		}
		resp.Found = true
		resp.Service, err = serviceProto(tx, name, key)
		return err
	})
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "spa: registry: %v", err)
	}
	return resp, nil
}

// List implements spapb.SPAServer.
func (s *Server) List(ctx context.Context, req *spapb.ListRequest) (*spapb.ListResponse, error) {
	size := int(req.GetPageSize())
	if size == 0 {
		size = defaultListPag
	}
	size = min(size, maxListPage)
	resp := &spapb.ListResponse{}
	err := s.store.View(ctx, func(tx Tx) error {
		resp.Services, resp.NextPageToken = nil, ""
		var names []Service
		if err := tx.Services(req.GetPageToken(), func(sv Service) bool {
			names = append(names, sv)
			return len(names) <= size // one more than the page: is there a next?
		}); err != nil {
			return err
		}
		if len(names) > size {
			names = names[:size]
			resp.NextPageToken = names[size-1].Name
		}
		for _, sv := range names {
			p, err := serviceProto(tx, sv.Name, sv.Key)
			if err != nil {
				return err
			}
			resp.Services = append(resp.Services, p)
		}
		return nil
	})
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "spa: registry: %v", err)
	}
	return resp, nil
}

func serviceProto(tx Tx, name string, key wire.Key) (*spapb.Service, error) {
	p := &spapb.Service{Name: name, Key: append([]byte(nil), key[:]...)}
	err := tx.Instances(name, func(in Instance) bool {
		p.Instances = append(p.Instances, &spapb.Instance{
			Id: in.ID, Sg: in.SG, SgPort: in.Port, Identity: in.Identity, CertSerial: in.Serial,
			LeaseExpiresUnixNano: in.Expires.UnixNano(), CreatedUnixNano: in.Created.UnixNano(),
		})
		return true
	})
	return p, err
}
