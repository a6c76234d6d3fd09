package gnmi

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	gpb "github.com/openconfig/gnmi/proto/gnmi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// The RPC names passed to TargetOptions.Authorize.
const (
	RPCCapabilities = "Capabilities"
	RPCGet          = "Get"
	RPCSet          = "Set"
	RPCSubscribe    = "Subscribe"
)

// DefaultMinSampleInterval is the shortest SAMPLE (and heartbeat) interval a
// target accepts unless TargetOptions says otherwise; a sample_interval of 0
// means this interval.
const DefaultMinSampleInterval = 100 * time.Millisecond

// Setter applies gNMI Set transactions; the agent implements it.
type Setter interface {
	// Writable reports whether a Set may name path (absolute, without
	// target or origin; a delete's path may hold wildcards). Match against
	// a pattern such as PolicyPattern() is the usual implementation. The
	// target refuses a request with any path not writable, with
	// PERMISSION_DENIED, before calling Set.
	Writable(path *gpb.Path) bool
	// Set applies ops, all or nothing: deletes, then replaces, then updates,
	// each group in request order (gNMI spec 3.4). It is called once per
	// SetRequest, never concurrently. A status error is returned to the
	// client with its code (INVALID_ARGUMENT for a value the schema refuses,
	// say); any other error becomes ABORTED. The Setter publishes the
	// resulting state itself (Target.Update), before it returns, so that a
	// Get after the Set sees it.
	Set(ctx context.Context, ops []SetOp) error
}

// SetOp is one validated operation of a SetRequest.
type SetOp struct {
	Op    gpb.UpdateResult_Operation // DELETE, REPLACE or UPDATE
	Path  *gpb.Path                  // prefix joined; no target or origin; wildcards only in deletes
	Value any                        // as Leaf.Value (JSON for json_val and json_ietf_val); nil for DELETE
}

// TargetOptions configures a Target. The zero value serves an insecure
// target with the default models and encodings that refuses Set.
type TargetOptions struct {
	// Name is the target's name (its node id). A request whose prefix names
	// another target is refused with NOT_FOUND; an empty prefix target is
	// always accepted.
	Name   string
	Logger *slog.Logger
	// Models are reported by Capabilities; nil means DefaultModels(). A
	// request's use_models must name only these.
	Models []*gpb.ModelData
	// Encodings are the encodings served: a subset of JSON, JSON_IETF and
	// PROTO; nil means all three. Others are refused with UNIMPLEMENTED.
	Encodings []gpb.Encoding
	// Setter applies Set requests; nil refuses them with UNIMPLEMENTED.
	Setter Setter
	// Authorize, if set, is asked before every RPC (rpc is one of the RPC*
	// names). A status error is returned as it is; any other error becomes
	// PERMISSION_DENIED. PeerTLS and PeerCertificate read the caller's
	// certificate from ctx.
	Authorize func(ctx context.Context, rpc string) error
	// Now is the clock of timestamps (Get, Set, Update with a zero time);
	// nil means time.Now. Sample intervals run on real time.
	Now func() time.Time
	// MinSampleInterval is the shortest sample or heartbeat interval
	// accepted; 0 means DefaultMinSampleInterval.
	MinSampleInterval time.Duration
	// TLS is the server configuration Serve uses (ca.LoadServerTLS builds
	// DMSC's); nil serves without TLS, for local use only.
	TLS *tls.Config
}

// Target is a gNMI target over a datastore that its owner fills with Update
// and Delete. It serves Capabilities, Get, Set (through the Setter) and
// Subscribe (ONCE, POLL, STREAM with ON_CHANGE, SAMPLE and TARGET_DEFINED).
type Target struct {
	gpb.UnimplementedGNMIServer

	opts      TargetOptions
	log       *slog.Logger
	now       func() time.Time
	encodings []gpb.Encoding
	models    []*gpb.ModelData
	store     *store
	setMu     sync.Mutex // one Set transaction at a time

	mu     sync.Mutex
	closed bool
	srv    *grpc.Server   // Serve's server, stopped by Close
	wg     sync.WaitGroup // Subscribe handlers and their receivers
	done   chan struct{}  // closed by Close: subscriptions end
}

// DefaultModels are the models a DMSC agent reports: the OpenConfig
// interfaces model (whose names /interfaces uses) and DMSC's own tree.
func DefaultModels() []*gpb.ModelData {
	return []*gpb.ModelData{
		{Name: "openconfig-interfaces", Organization: "OpenConfig working group", Version: "3.7.1"},
		{Name: "dmsc", Organization: "DMSC", Version: SchemaVersion},
	}
}

var allEncodings = []gpb.Encoding{gpb.Encoding_JSON, gpb.Encoding_JSON_IETF, gpb.Encoding_PROTO}

// NewTarget checks opts and returns a target with an empty datastore.
func NewTarget(opts TargetOptions) (*Target, error) {
	t := &Target{opts: opts, log: opts.Logger, now: opts.Now, store: newStore(), done: make(chan struct{})}
	if t.log == nil {
		t.log = slog.New(slog.DiscardHandler)
	}
	if t.now == nil {
		t.now = time.Now
	}
	if t.opts.MinSampleInterval < 0 {
		return nil, fmt.Errorf("gnmi: MinSampleInterval %v is negative", opts.MinSampleInterval)
	}
	if t.opts.MinSampleInterval == 0 {
		t.opts.MinSampleInterval = DefaultMinSampleInterval
	}
	t.encodings = slices.Clone(opts.Encodings)
	if t.encodings == nil {
		t.encodings = allEncodings
	}
	if len(t.encodings) == 0 {
		return nil, errors.New("gnmi: Encodings is empty (leave it nil for JSON, JSON_IETF and PROTO)")
	}
	for _, e := range t.encodings {
		if !slices.Contains(allEncodings, e) {
			return nil, fmt.Errorf("gnmi: encoding %v cannot be served (JSON, JSON_IETF and PROTO can)", e)
		}
	}
	t.models = opts.Models
	if t.models == nil {
		t.models = DefaultModels()
	}
	for i, m := range t.models {
		if m.GetName() == "" {
			return nil, fmt.Errorf("gnmi: model %d has no name", i)
		}
	}
	return t, nil
}

// Update publishes leaves with timestamp ts (zero: the clock's now).
// Subscribers hear only of values that changed; re-publishing a value
// refreshes its timestamp and nothing else. Every valid leaf is applied; the
// error names each refused one (a wildcard path, an unsupported value type,
// a leaf where a container is or below a leaf).
func (t *Target) Update(ts time.Time, leaves ...Leaf) error {
	if err := t.store.update(t.stamp(ts), leaves); err != nil {
		return fmt.Errorf("gnmi: update: %w", err)
	}
	return nil
}

// Delete removes every leaf at or below paths (wildcards allowed), stamped
// ts (zero: now). ON_CHANGE and SAMPLE subscribers get a delete for each
// removed leaf they cover.
func (t *Target) Delete(ts time.Time, paths ...*gpb.Path) error {
	if err := t.store.delete(t.stamp(ts), paths); err != nil {
		return fmt.Errorf("gnmi: delete: %w", err)
	}
	return nil
}

// Snapshot returns the current leaves that pattern selects, sorted by path.
func (t *Target) Snapshot(pattern *gpb.Path) []Reading {
	leaves := t.store.snapshot(pattern.GetElem())
	out := make([]Reading, len(leaves))
	for i, l := range leaves {
		out[i] = Reading{Path: l.path, Value: l.value, Time: time.Unix(0, l.ts)}
	}
	return out
}

func (t *Target) stamp(ts time.Time) int64 {
	if ts.IsZero() {
		ts = t.now()
	}
	return ts.UnixNano()
}

// Register adds the gNMI service to s. The caller owns s: stop it
// (Stop, or GracefulStop after Close, since streams last until Close) and
// call Close.
func (t *Target) Register(s *grpc.Server) { gpb.RegisterGNMIServer(s, t) }

// Serve serves gNMI on lis, with TargetOptions.TLS (or without TLS), until
// Close. It returns nil after Close.
func (t *Target) Serve(lis net.Listener) error {
	creds := insecure.NewCredentials()
	if t.opts.TLS != nil {
		creds = credentials.NewTLS(t.opts.TLS)
	}
	srv := grpc.NewServer(grpc.Creds(creds),
		// Clients (SCSC) ping every 30 s to notice a dead agent; the
		// default policy would call that abuse.
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: time.Minute, Timeout: 20 * time.Second}))
	t.Register(srv)
	t.mu.Lock()
	switch {
	case t.closed:
		t.mu.Unlock()
		return errors.New("gnmi: serve: target is closed")
	case t.srv != nil:
		t.mu.Unlock()
		return errors.New("gnmi: serve: already serving")
	}
	t.srv = srv
	t.mu.Unlock()
	t.log.Info("gnmi: serving", "addr", lis.Addr().String(), "tls", t.opts.TLS != nil, "target", t.opts.Name)
	if err := srv.Serve(lis); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		return fmt.Errorf("gnmi: serve: %w", err)
	}
	return nil
}

// Close ends every subscription (UNAVAILABLE), stops Serve's server and
// waits for the subscriptions' goroutines. New RPCs get UNAVAILABLE.
func (t *Target) Close() error {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil
	}
	t.closed = true
	srv := t.srv
	t.mu.Unlock()
	close(t.done)
	if srv != nil {
		stopped := make(chan struct{})
		go func() {
			srv.GracefulStop()
			close(stopped)
		}()
		select {
		case <-stopped:
		case <-time.After(2 * time.Second):
			srv.Stop() // a client that stopped reading holds a send
			<-stopped
		}
	}
	t.wg.Wait()
	return nil
}

// enter admits an RPC that Close must wait for.
func (t *Target) enter() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return status.Error(codes.Unavailable, "gnmi target is closing")
	}
	t.wg.Add(1)
	return nil
}

func (t *Target) authorize(ctx context.Context, rpc string) error {
	if t.opts.Authorize == nil {
		return nil
	}
	err := t.opts.Authorize(ctx, rpc)
	if err == nil {
		return nil
	}
	t.log.Info("gnmi: call refused", "rpc", rpc, "peer", peerAddr(ctx), "err", err)
	if _, ok := status.FromError(err); ok {
		return err
	}
	return status.Errorf(codes.PermissionDenied, "%s refused: %v", rpc, err)
}

func peerAddr(ctx context.Context) string {
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		return p.Addr.String()
	}
	return ""
}

// PeerTLS returns the TLS state of the connection ctx belongs to (false for
// a connection without TLS); ca.PeerIdentity reads the DMSC identity from it.
func PeerTLS(ctx context.Context) (tls.ConnectionState, bool) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return tls.ConnectionState{}, false
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok {
		return tls.ConnectionState{}, false
	}
	return info.State, true
}

// PeerCertificate returns the caller's verified client certificate.
func PeerCertificate(ctx context.Context) (*x509.Certificate, error) {
	cs, ok := PeerTLS(ctx)
	if !ok {
		return nil, errors.New("gnmi: the connection has no TLS")
	}
	if len(cs.VerifiedChains) == 0 || len(cs.VerifiedChains[0]) == 0 {
		return nil, errors.New("gnmi: the client presented no verified certificate")
	}
	return cs.VerifiedChains[0][0], nil
}

// gnmiVersion is the version of the gNMI service in the proto package.
func gnmiVersion() string {
	opts := gpb.File_github_com_openconfig_gnmi_proto_gnmi_gnmi_proto.Options()
	v, _ := proto.GetExtension(opts, gpb.E_GnmiService).(string)
	return v
}

// Capabilities reports models, encodings and the gNMI version.
func (t *Target) Capabilities(ctx context.Context, _ *gpb.CapabilityRequest) (*gpb.CapabilityResponse, error) {
	if err := t.authorize(ctx, RPCCapabilities); err != nil {
		return nil, err
	}
	return &gpb.CapabilityResponse{
		SupportedModels:    t.models,
		SupportedEncodings: t.encodings,
		GNMIVersion:        gnmiVersion(),
	}, nil
}

// checkEncoding refuses encodings not served (gNMI spec 3.3.1: UNIMPLEMENTED).
func (t *Target) checkEncoding(e gpb.Encoding) error {
	if slices.Contains(t.encodings, e) {
		return nil
	}
	names := make([]string, len(t.encodings))
	for i, s := range t.encodings {
		names[i] = s.String()
	}
	return status.Errorf(codes.Unimplemented, "encoding %v is not supported (supported: %s)", e, strings.Join(names, ", "))
}

func (t *Target) checkModels(use []*gpb.ModelData) error {
	for _, m := range use {
		if !slices.ContainsFunc(t.models, func(have *gpb.ModelData) bool { return have.GetName() == m.GetName() }) {
			return status.Errorf(codes.InvalidArgument, "model %q is not supported (see Capabilities)", m.GetName())
		}
	}
	return nil
}

// checkPrefix checks a request's prefix: its target, if any, must be this
// one; its origin, if any, must be the one tree there is.
func (t *Target) checkPrefix(prefix *gpb.Path) error {
	if tg := prefix.GetTarget(); tg != "" && t.opts.Name != "" && tg != t.opts.Name && tg != "*" {
		return status.Errorf(codes.NotFound, "target %q is not served here (this is %q)", tg, t.opts.Name)
	}
	if err := checkOrigin(prefix.GetOrigin()); err != nil {
		return status.Errorf(codes.InvalidArgument, "prefix: %v", err)
	}
	if err := ValidatePath(prefix); err != nil {
		return status.Errorf(codes.InvalidArgument, "prefix %s: %v", PathString(prefix), err)
	}
	return nil
}

// checkOrigin accepts the origins that name DMSC's single tree: none, or
// "openconfig", which the gNMI spec makes the default.
func checkOrigin(o string) error {
	if o == "" || o == "openconfig" {
		return nil
	}
	return fmt.Errorf("origin %q is not served (leave it empty)", o)
}

// fullPath joins a request's prefix and one of its paths and checks the
// result; what is a reference to an error message ("path 2").
func fullPath(prefix, p *gpb.Path, what string) (*gpb.Path, error) {
	if p.GetOrigin() != "" && prefix.GetOrigin() != "" {
		return nil, status.Errorf(codes.InvalidArgument, "%s: origin is set in both the prefix and the path", what)
	}
	if err := checkOrigin(p.GetOrigin()); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "%s: %v", what, err)
	}
	if err := ValidatePath(p); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "%s (%s): %v", what, PathString(p), err)
	}
	full := JoinPath(prefix, p)
	if len(full.Elem) > maxPathElems {
		return nil, status.Errorf(codes.InvalidArgument, "%s: prefix and path have %d elements (at most %d)", what, len(full.Elem), maxPathElems)
	}
	return full, nil
}

// responsePrefix is the prefix of notifications: the request's target, if
// it named one (gNMI spec 2.2.2.1), and nothing else, since every update
// carries its full path.
func responsePrefix(target string) *gpb.Path {
	if target == "" {
		return nil
	}
	return &gpb.Path{Target: target}
}

// Get returns one notification per requested path, holding every leaf at or
// below it (one update per leaf, at the leaf's granularity), taken under one
// snapshot. A path that selects nothing is NOT_FOUND (the root always
// exists); a leaf excluded by the type filter is simply left out.
func (t *Target) Get(ctx context.Context, req *gpb.GetRequest) (*gpb.GetResponse, error) {
	if err := t.authorize(ctx, RPCGet); err != nil {
		return nil, err
	}
	if err := t.checkEncoding(req.GetEncoding()); err != nil {
		return nil, err
	}
	if err := t.checkModels(req.GetUseModels()); err != nil {
		return nil, err
	}
	if err := t.checkPrefix(req.GetPrefix()); err != nil {
		return nil, err
	}
	switch req.GetType() {
	case gpb.GetRequest_ALL, gpb.GetRequest_CONFIG, gpb.GetRequest_STATE, gpb.GetRequest_OPERATIONAL:
	default:
		return nil, status.Errorf(codes.InvalidArgument, "data type %v is not defined", req.GetType())
	}
	paths := make([]*gpb.Path, len(req.GetPath()))
	for i, p := range req.GetPath() {
		full, err := fullPath(req.GetPrefix(), p, fmt.Sprintf("path %d", i+1))
		if err != nil {
			return nil, err
		}
		paths[i] = full
	}
	if len(paths) == 0 && len(req.GetPrefix().GetElem()) > 0 {
		// A prefix alone names one path.
		paths = append(paths, JoinPath(req.GetPrefix(), nil))
	}
	ts := t.now().UnixNano()
	resp := &gpb.GetResponse{}
	s := t.store
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, p := range paths {
		leaves := s.collect(p.GetElem())
		if len(leaves) == 0 && len(p.GetElem()) > 0 {
			return nil, status.Errorf(codes.NotFound, "nothing at %s", PathString(p))
		}
		n := &gpb.Notification{Timestamp: ts, Prefix: responsePrefix(req.GetPrefix().GetTarget())}
		for _, l := range leaves {
			if !s.isType(l.path.GetElem(), req.GetType()) {
				continue
			}
			n.Update = append(n.Update, &gpb.Update{Path: l.path, Val: encodeValue(l.value, req.GetEncoding())})
		}
		resp.Notification = append(resp.Notification, n)
	}
	return resp, nil
}

// isType applies Get's type filter by the OpenConfig container convention:
// CONFIG is what lies below an element named "config"; STATE is the rest;
// OPERATIONAL is STATE without the applied-config mirrors, the state leaves
// whose twin under "config" (the last "state" element renamed) exists. The
// caller holds the store's lock.
func (s *store) isType(elems []*gpb.PathElem, typ gpb.GetRequest_DataType) bool {
	if typ == gpb.GetRequest_ALL {
		return true
	}
	isConfig := slices.ContainsFunc(elems, func(e *gpb.PathElem) bool { return e.GetName() == "config" })
	switch typ {
	case gpb.GetRequest_CONFIG:
		return isConfig
	case gpb.GetRequest_STATE:
		return !isConfig
	}
	if isConfig {
		return false
	}
	last := -1
	for i, e := range elems {
		if e.GetName() == "state" {
			last = i
		}
	}
	if last < 0 {
		return true
	}
	twin := slices.Clone(elems)
	twin[last] = &gpb.PathElem{Name: "config", Key: elems[last].GetKey()}
	return s.lookup(twin) == nil
}
