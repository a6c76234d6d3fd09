package main

import (
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/dmsc-mesh/dmsc/demo"
	"github.com/dmsc-mesh/dmsc/topo"
)

type demoFlags struct {
	topology string
	calls    int
	qosDelay time.Duration
	maxDelay time.Duration
	verbose  bool
}

func newDemoCommand(g *globalFlags) *cobra.Command {
	f := &demoFlags{}
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run the draft's Figure 2 in one process: pods calling each other by name, a link cut, a QoS event",
		Long: `demo starts, in this process and with no setup, a DMSC domain (a CA and SPA),
the draft's Figure 2 fabric on the Go software switch (four SGs, three SRs, an
agent each programming its switch over P4Runtime), and the example shop's pods
(frontend → cart → catalog, two catalog instances). It then shows:

  1. the fabric converging (HELLOs, signed LSPs, SPF, FIBs written),
  2. pods announcing their services and SPA allowing them,
  3. calls by service name, gRPC over QUIC over DMSC frames, with latencies,
  4. a link cut under load, and the calls surviving it,
  5. a QoS event: a link's delay rises, the Scheduling Center (SCSC) sees it
     in the SGs' probes and steers the traffic around it by gNMI policies.

Logs are off unless --verbose (then --log-level applies).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var log *slog.Logger
			if f.verbose {
				l, err := g.logger(os.Stderr)
				if err != nil {
					return err
				}
				log = l
			}
			opts := demo.Options{Out: cmd.OutOrStdout(), Log: log, Calls: f.calls, QoSDelay: f.qosDelay, MaxDelay: f.maxDelay}
			if f.topology != "" {
				t, err := topo.Load(f.topology)
				if err != nil {
					return err
				}
				opts.Topology = t
			}
			fmt.Fprintln(cmd.OutOrStdout(), "DMSC demo: the draft's Figure 2 on the embedded software switch")
			_, err := demo.Run(cmd.Context(), opts)
			return err
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.topology, "topology", "", "a topology file instead of the built-in Figure 2 (it needs the SGs sg1..sg4 with pod ports and SRs)")
	fl.IntVar(&f.calls, "calls", 50, "calls per measurement")
	fl.DurationVar(&f.qosDelay, "qos-delay", 30*time.Millisecond, "delay the QoS event adds to a link, each direction")
	fl.DurationVar(&f.maxDelay, "max-delay", 10*time.Millisecond, "SCSC's delay threshold for the shop's services")
	fl.BoolVar(&f.verbose, "verbose", false, "show the components' logs on standard error")
	return cmd
}
