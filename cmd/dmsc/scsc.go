package main

import (
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/dmsc-mesh/dmsc/scsc"
	"github.com/dmsc-mesh/dmsc/scsc/etcdleader"
)

type scscFlags struct {
	config string
	check  bool
}

func newSCSCCommand(g *globalFlags) *cobra.Command {
	f := &scscFlags{}
	cmd := &cobra.Command{
		Use:   "scsc",
		Short: "Run SCSC, the Service Mesh Communication Scheduling Center",
		Long: `scsc is the Scheduling Center of a DMSC domain (DESIGN §7, docs/telemetry.md).
It is never in the forwarding path: it subscribes by gNMI to every agent
(probe results, neighbours, interfaces, and the LSDB of a few of them), checks
the draft's conditions per ingress SG and service (delay ≥ max_delay, jitter ≥
max_jitter, bandwidth ≤ min_bandwidth, loss ≥ max_loss) with hysteresis, runs a
QoS-weighted Dijkstra over the live topology and pushes policies by gNMI Set:
next-hop overrides along a better path, set from the path's last node to its
first, and instance weights at egress SGs. Policies carry a TTL and are renewed
while the decision stands, so when SCSC stops they expire and SPF carries on.

Everything comes from --config (scsc/config.go documents scsc.yaml): id,
agents, tls (ca, cert, key: a node certificate of role scsc; without tls the
connections are insecure, for local use), sample_interval, policy_ttl,
services with their thresholds, defaults, hysteresis, status_addr, and
election (etcd endpoints: replicas elect one leader, the only one that
pushes; without it SCSC runs as a single replica).
Every decision is logged once with its reason; status_addr serves GET /status.
SIGINT or SIGTERM stops it.

--check loads and validates the configuration and the TLS files exactly as
SCSC does at start, without connecting to any agent, and exits 0 if all is
well or 1 with the first error.`,
		Example: `  dmsc ca issue node --id scsc1 --role scsc
  dmsc scsc --config /etc/dmsc/scsc.yaml --check
  dmsc scsc --config /etc/dmsc/scsc.yaml --log-format json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runSCSC(cmd, g, f)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.config, "config", "scsc.yaml", "the SCSC configuration file; relative paths in it are relative to its directory")
	fl.BoolVar(&f.check, "check", false, "validate the configuration and TLS files, then exit without connecting")
	return cmd
}

func runSCSC(cmd *cobra.Command, g *globalFlags, f *scscFlags) error {
	log, err := g.logger(cmd.ErrOrStderr())
	if err != nil {
		return err
	}
	cfg, err := scsc.LoadConfig(f.config)
	if err != nil {
		return fmt.Errorf("--config %s: %w", f.config, err)
	}
	if f.check {
		// The same checks as a start (TLS files included), without
		// connecting to agents or to etcd.
		if _, err := scsc.New(cfg, scsc.WithLogger(log), scsc.WithLeader(scsc.SingleReplica{})); err != nil {
			return fmt.Errorf("--config %s: %w", f.config, err)
		}
		security := "insecure (no tls)"
		if cfg.TLS != nil {
			security = "tls " + cfg.TLS.Cert
		}
		election := "single replica"
		if cfg.Election != nil {
			election = fmt.Sprintf("election in etcd %s at %s", strings.Join(cfg.Election.Endpoints, ","), cfg.Election.Prefix)
		}
		fmt.Fprintf(cmd.OutOrStdout(), "%s: ok: id %s, %d agents, %d services, sample_interval %v, policy_ttl %v, %s, %s\n",
			f.config, cfg.ID, len(cfg.Agents), len(cfg.Services), cfg.SampleInterval, cfg.PolicyTTL, security, election)
		return nil
	}
	var leader scsc.Leader = scsc.SingleReplica{}
	if cfg.Election != nil {
		el, err := etcdleader.New(cfg.Election, cfg.ID, log.With("component", "scsc-election"))
		if err != nil {
			return fmt.Errorf("--config %s: election: %w", f.config, err)
		}
		defer el.Close()
		leader = el
	}
	c, err := scsc.New(cfg, scsc.WithLogger(log.With("component", "scsc")), scsc.WithLeader(leader))
	if err != nil {
		return fmt.Errorf("--config %s: %w", f.config, err)
	}
	ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := c.Run(ctx); err != nil {
		return fmt.Errorf("scsc: %w", err)
	}
	return nil
}
