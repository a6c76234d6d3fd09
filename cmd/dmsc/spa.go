package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/dmsc-mesh/dmsc/spa"
	"github.com/dmsc-mesh/dmsc/wire"
)

type spaFlags struct {
	config string
	check  bool
}

func newSPACommand(g *globalFlags) *cobra.Command {
	f := &spaFlags{}
	cmd := &cobra.Command{
		Use:   "spa",
		Short: "Run SPA, the Service Prefix Authentication server",
		Long: `spa decides whether a pod may own a service prefix (DESIGN §7): SGs call it
over gRPC with mutual TLS, sending the pod's certificate chain and its signed
proof; SPA checks the chain, the proof, the policy, the revocation list and key
collisions, and answers ALLOWED with an instance id and a lease, or REFUSED with
a reason. Its registry persists in a bbolt file.

Everything comes from --config (spa/README.md documents spa.yaml): listen
address, tls (ca, cert, key: a node certificate of role spa), store, policy,
revocation, audit_log, lease and limits. The policy and revocation files are
re-read when they change (reload_interval) and at once on SIGHUP; a file that
fails to parse is logged and the previous version stays in force.
SIGINT or SIGTERM stops the server (calls in flight get up to 5 s).

--check loads and validates the configuration, the TLS files, the policy and
the revocation list exactly as the server does at start, without opening the
store or listening, and exits 0 if all is well or 1 with the first error.`,
		Example: `  dmsc ca issue node --id spa1 --role spa
  dmsc spa --config /etc/dmsc/spa.yaml --check
  dmsc spa --config /etc/dmsc/spa.yaml --log-format json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runSPA(cmd, g, f)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.config, "config", "spa.yaml", "the SPA configuration file; relative paths in it are relative to its directory")
	fl.BoolVar(&f.check, "check", false, "validate the configuration, TLS files, policy and revocation list, then exit without serving")
	return cmd
}

func runSPA(cmd *cobra.Command, g *globalFlags, f *spaFlags) error {
	log, err := g.logger(cmd.ErrOrStderr())
	if err != nil {
		return err
	}
	cfg, err := spa.LoadConfig(f.config)
	if err != nil {
		return fmt.Errorf("--config %s: %w", f.config, err)
	}
	if f.check {
		return checkSPA(cmd, f.config, cfg)
	}

	ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// SIGHUP is caught from here on: its default action would end the
	// process, and one arriving during start-up is served once running.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	srv, err := spa.NewServer(cfg, spa.WithLogger(log.With("component", "spa")))
	if err != nil {
		return fmt.Errorf("--config %s: %w", f.config, err)
	}
	// Close releases the store's file lock, so a restarted SPA (or a
	// backup tool) can open it at once.
	defer func() {
		if cerr := srv.Close(); cerr != nil {
			log.Error("spa: closing the store", "store", cfg.Store, "err", cerr)
		}
	}()
	lis, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("--config %s: listen %s: %w", f.config, cfg.Listen, err)
	}
	log.Info("spa listening", "addr", lis.Addr().String(), "config", f.config, "domain", srv.Domain())

	serveCtx, stopServe := context.WithCancel(ctx)
	defer stopServe()
	var wg sync.WaitGroup
	wg.Go(func() { reloadOnSignal(serveCtx, hup, srv, log) })
	err = srv.Serve(serveCtx, lis)
	// Serve also returns when the listener fails; the reloader stops then too.
	stopServe()
	wg.Wait()
	if err != nil {
		return fmt.Errorf("spa: serving on %s: %w", cfg.Listen, err)
	}
	return nil
}

// reloader is the part of *spa.Server the SIGHUP loop needs.
type reloader interface{ Reload() error }

// reloadOnSignal re-reads the policy and revocation files on every signal
// from sigs until ctx ends. Server.Reload logs each file it loaded; a broken
// file is reported by the first reload that sees it, and the previous
// version stays in force until the file is fixed.
func reloadOnSignal(ctx context.Context, sigs <-chan os.Signal, srv reloader, log *slog.Logger) {
	for {
		select {
		case <-ctx.Done():
			return
		case sig := <-sigs:
			if err := srv.Reload(); err != nil {
				log.Error("spa reload failed; the previous policy and revocation list stay in force", "signal", sig.String(), "err", err)
				continue
			}
			log.Info("spa reload checked the policy and revocation files", "signal", sig.String())
		}
	}
}

// checkSPA validates what spa.NewServer would load, with a store that holds
// nothing and keeps nothing: opening the real bbolt file would create it,
// or wait for the lock of an SPA that is running. The store and audit_log
// paths are checked to be creatable instead.
func checkSPA(cmd *cobra.Command, path string, cfg *spa.Config) error {
	checkCfg := *cfg
	// NewServer would open (create) the audit file; the check must not.
	checkCfg.AuditLog = ""
	srv, err := spa.NewServer(&checkCfg, spa.WithStore(emptyStore{}),
		spa.WithLogger(slog.New(slog.DiscardHandler)), spa.WithAuditLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		return fmt.Errorf("--config %s: %w", path, err)
	}
	domain := srv.Domain()
	if err := srv.Close(); err != nil {
		return fmt.Errorf("--config %s: %w", path, err)
	}
	if err := checkWritablePath("store", cfg.Store); err != nil {
		return fmt.Errorf("--config %s: %w", path, err)
	}
	if cfg.AuditLog != "" {
		if err := checkWritablePath("audit_log", cfg.AuditLog); err != nil {
			return fmt.Errorf("--config %s: %w", path, err)
		}
	}
	revocation := cfg.Revocation
	if revocation == "" {
		revocation = "(none)"
	}
	fmt.Fprintf(cmd.OutOrStdout(), "%s: ok: domain %s, listen %s, policy %s, revocation %s, store %s\n",
		path, domain, cfg.Listen, cfg.Policy, revocation, cfg.Store)
	return nil
}

// checkWritablePath checks that a file the server will open or create can
// be: an existing path must be a regular file, a missing one needs its
// directory.
func checkWritablePath(field, p string) error {
	fi, err := os.Stat(p)
	switch {
	case err == nil && !fi.Mode().IsRegular():
		return fmt.Errorf("%s: %s is not a regular file", field, p)
	case err == nil:
		return nil
	case !errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("%s: %w", field, err)
	}
	dir := filepath.Dir(p)
	di, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("%s: %s cannot be created: %w", field, p, err)
	}
	if !di.IsDir() {
		return fmt.Errorf("%s: %s cannot be created: %s is not a directory", field, p, dir)
	}
	return nil
}

// emptyStore is a spa.Store with no records that refuses writes: enough for
// NewServer's start-up sweep of expired leases, which finds none.
type emptyStore struct{}

var errCheckStore = errors.New("spa --check: the check store keeps nothing")

func (emptyStore) View(_ context.Context, fn func(spa.Tx) error) error   { return fn(emptyTx{}) }
func (emptyStore) Update(_ context.Context, fn func(spa.Tx) error) error { return fn(emptyTx{}) }
func (emptyStore) Close() error                                          { return nil }

type emptyTx struct{}

func (emptyTx) NameOf(wire.Key) (string, bool, error)         { return "", false, nil }
func (emptyTx) BindName(wire.Key, string) error               { return errCheckStore }
func (emptyTx) Service(string) (spa.Service, bool, error)     { return spa.Service{}, false, nil }
func (emptyTx) PutService(spa.Service) error                  { return errCheckStore }
func (emptyTx) Services(string, func(spa.Service) bool) error { return nil }
func (emptyTx) Instance(string, uint32) (spa.Instance, bool, error) {
	return spa.Instance{}, false, nil
}
func (emptyTx) InstanceAt(string, string, uint32) (spa.Instance, bool, error) {
	return spa.Instance{}, false, nil
}
func (emptyTx) PutInstance(spa.Instance) error                  { return errCheckStore }
func (emptyTx) DeleteInstance(string, uint32) error             { return errCheckStore }
func (emptyTx) Instances(string, func(spa.Instance) bool) error { return nil }
