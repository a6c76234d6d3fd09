package topo

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/dmsc-mesh/dmsc/ca"
	"github.com/dmsc-mesh/dmsc/controller"
	"github.com/dmsc-mesh/dmsc/spa"
)

// DefaultPolicy lets every pod announce its certificate's prefix and the
// names below it: what a demo or test domain needs.
const DefaultPolicy = `version: 1
rules:
  - allow: self
  - allow: self/**
`

// Domain is a DMSC identity domain running in this process: a CA in a
// directory, node certificates for every switch, and an SPA server on
// loopback. It gives each SG of a fabric its SPA client.
type Domain struct {
	Name string
	Dir  string
	CA   *ca.CA
	// SPAAddr is where SPA listens.
	SPAAddr string
	SPA     *spa.Server

	nodes      map[string]*ca.Issued
	log        *slog.Logger
	cancel     context.CancelFunc
	served     chan error
	mu         sync.Mutex
	clients    []*spa.Client
	closed     bool
	spaStopped bool
	spaErr     error
}

// DomainOptions tune StartDomain.
type DomainOptions struct {
	Logger *slog.Logger
	// Policy is SPA's policy (default DefaultPolicy).
	Policy string
	// Lease is SPA's lease (default 30 s).
	Lease time.Duration
}

// StartDomain makes a CA for domain in dir (which must be empty or absent),
// issues node certificates for SPA and for the nodes named, and starts SPA
// on 127.0.0.1.
func StartDomain(ctx context.Context, dir, domain string, nodes map[string]Role, opts DomainOptions) (*Domain, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Policy == "" {
		opts.Policy = DefaultPolicy
	}
	c, err := ca.Init(filepath.Join(dir, "ca"), domain)
	if err != nil {
		return nil, fmt.Errorf("topo: domain CA: %w", err)
	}
	spaNode, err := ca.IssueNode(filepath.Join(dir, "ca"), "spa1", ca.RoleSPA)
	if err != nil {
		return nil, fmt.Errorf("topo: SPA certificate: %w", err)
	}
	issued := map[string]*ca.Issued{}
	for name, role := range nodes {
		r := ca.RoleSR
		if role == RoleSG {
			r = ca.RoleSG
		}
		if issued[name], err = c.IssueNode(name, r); err != nil {
			return nil, fmt.Errorf("topo: %s certificate: %w", name, err)
		}
	}
	spaDir := filepath.Join(dir, "spa")
	if err := os.MkdirAll(spaDir, 0o700); err != nil {
		return nil, err
	}
	policy := filepath.Join(spaDir, "policy.yaml")
	if err := os.WriteFile(policy, []byte(opts.Policy), 0o600); err != nil {
		return nil, err
	}
	cfg := spa.DefaultConfig()
	cfg.Listen = "127.0.0.1:0"
	cfg.CA = filepath.Join(dir, "ca", ca.CertFile)
	cfg.Cert, cfg.Key = spaNode.CertPath, spaNode.KeyPath
	cfg.Store = filepath.Join(spaDir, "spa.db")
	cfg.Policy = policy
	cfg.RatePerSecond = 0
	if opts.Lease > 0 {
		cfg.Lease = opts.Lease
	}
	log := opts.Logger.With("component", "spa")
	srv, err := spa.NewServer(&cfg, spa.WithLogger(log), spa.WithAuditLogger(log.With("audit", true)))
	if err != nil {
		return nil, fmt.Errorf("topo: SPA: %w", err)
	}
	lis, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		srv.Close()
		return nil, err
	}
	sctx, cancel := context.WithCancel(ctx)
	d := &Domain{Name: domain, Dir: dir, CA: c, SPAAddr: lis.Addr().String(), SPA: srv,
		nodes: issued, log: opts.Logger, cancel: cancel, served: make(chan error, 1)}
	go func() { d.served <- srv.Serve(sctx, lis) }()
	return d, nil
}

// Node is the certificate StartDomain issued for a node.
func (d *Domain) Node(node string) (*ca.Issued, bool) {
	is, ok := d.nodes[node]
	return is, ok
}

// SGConfig gives an SG its SPA client (authenticated as that SG).
func (d *Domain) SGConfig(node string) (*controller.SGConfig, error) {
	is, ok := d.nodes[node]
	if !ok {
		return nil, fmt.Errorf("topo: no certificate for node %q", node)
	}
	tc, err := ca.ClientTLS(d.CA.Cert, is.TLSCertificate(), ca.RoleSPA)
	if err != nil {
		return nil, fmt.Errorf("topo: %s: %w", node, err)
	}
	c, err := spa.Dial(context.Background(), d.SPAAddr, tc,
		spa.WithClientLogger(d.log.With("node", node, "component", "spa-client")),
		spa.WithRetry(50*time.Millisecond, time.Second, 3*time.Second))
	if err != nil {
		return nil, err
	}
	d.mu.Lock()
	d.clients = append(d.clients, c)
	d.mu.Unlock()
	return &controller.SGConfig{SPA: c}, nil
}

// SGs is an AgentOptions.SG function: every SG gets its SPA client.
func (d *Domain) SGs(node string) *controller.SGConfig {
	c, err := d.SGConfig(node)
	if err != nil {
		d.log.Error("no SPA client for SG", "node", node, "err", err)
		return nil
	}
	return c
}

// IssuePod issues a pod certificate for prefix.
func (d *Domain) IssuePod(prefix string, opts ...ca.Option) (*ca.Issued, error) {
	return d.CA.IssuePod(prefix, opts...)
}

// StopSPA stops the SPA server (as a crash would); the SGs' clients stay
// and find it unreachable.
func (d *Domain) StopSPA() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.spaStopped {
		return d.spaErr
	}
	d.spaStopped = true
	d.cancel()
	err := <-d.served
	d.spaErr = errors.Join(err, d.SPA.Close())
	return d.spaErr
}

// Close stops SPA and closes the SG clients.
func (d *Domain) Close() error {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return nil
	}
	d.closed = true
	clients := d.clients
	d.mu.Unlock()
	var errs []error
	for _, c := range clients {
		if err := c.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(append(errs, d.StopSPA())...)
}
