package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"

	"github.com/dmsc-mesh/dmsc/controller"
	"github.com/dmsc-mesh/dmsc/controller/nodeconf"
	"github.com/dmsc-mesh/dmsc/p4rt/server"
	"github.com/dmsc-mesh/dmsc/softswitch"
)

type agentFlags struct {
	config string
	check  bool
}

// agentHooks let a test reach the agent the verb runs; the verb itself
// sets none.
type agentHooks struct {
	// started is called with the agent after it was created, before it
	// runs.
	started func(*controller.Agent)
}

func newAgentCommand(g *globalFlags) *cobra.Command { return newAgentCommandWith(g, agentHooks{}) }

func newAgentCommandWith(g *globalFlags, h agentHooks) *cobra.Command {
	f := &agentFlags{}
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Run the per-switch agent (SG or SR) of one switch",
		Long: `agent runs the controller of one switch (DESIGN §6): it connects to the switch
over P4Runtime, pushes or verifies the DMSC pipeline, finds its neighbours with
HELLOs on the fabric ports, floods LSPs signed with the node's Ed25519 key,
runs SPF and programs the FIB. As an SG it also registers the pods on its pod
ports with SPA.

Everything comes from --config (controller/nodeconf/README.md documents
node.yaml; the example below is complete). Relative paths in it are relative to
its directory. With switch.p4rt: embedded the agent first starts the Go
software switch in its own process, with the ports of the embedded section,
behind a P4Runtime server on 127.0.0.1, and drives that; it stops both on exit.
SIGINT or SIGTERM stops the agent.

--check loads and validates the file, the certificates, the key, the trusted
node certificates and the pipeline files exactly as a start does, prints a
summary and exits 0, or prints every problem (file:line: field: what) and
exits 1.`,
		Example: `  dmsc agent --config /etc/dmsc/node.yaml --check
  dmsc agent --config /etc/dmsc/node.yaml --log-format json

  # node.yaml of an SG driving a switch at 127.0.0.1:9559
` + indent(nodeconf.Example, "  ") + `

  # node.yaml of an SR on an embedded software switch
` + indent(nodeconf.ExampleEmbedded, "  "),
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runAgent(cmd, g, f, h)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.config, "config", "node.yaml", "the node configuration file; relative paths in it are relative to its directory")
	fl.BoolVar(&f.check, "check", false, "validate the configuration and the files it names, then exit without running")
	return cmd
}

func indent(s, prefix string) string {
	lines := strings.SplitAfter(strings.TrimRight(s, "\n"), "\n")
	return prefix + strings.Join(lines, prefix)
}

func runAgent(cmd *cobra.Command, g *globalFlags, f *agentFlags, h agentHooks) error {
	log, err := g.logger(cmd.ErrOrStderr())
	if err != nil {
		return err
	}
	// The error names the file, the line and the field of every problem.
	file, err := nodeconf.Load(f.config)
	if err != nil {
		return err
	}
	if f.check {
		return checkAgent(cmd.OutOrStdout(), file)
	}
	for _, w := range file.Warnings {
		log.Warn(w, "config", f.config)
	}

	ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// The agent names its node in every record and its parts by
	// component (p4rt, fib, ...).
	cfg, spaClient, err := file.Config(log)
	if err != nil {
		return err
	}
	defer spaClient.Close()

	// runCtx also ends when the embedded switch's server fails, with that
	// failure as its cause.
	runCtx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	if file.Switch.IsEmbedded() {
		es, err := startEmbedded(file, log, cancel)
		if err != nil {
			return err
		}
		// Deferred after the agent's Run: the switch outlives the agent,
		// which may still write to it while stopping.
		defer func() {
			if err := es.stop(); err != nil {
				log.Error("embedded switch: stopping", "err", err)
			}
		}()
		cfg.Switch = es.addr
	}
	agent, err := controller.New(cfg)
	if err != nil {
		return err
	}
	log.Info("agent starting", "config", f.config, "node", string(file.Node), "role", string(file.Role),
		"switch", cfg.Switch, "embedded", file.Switch.IsEmbedded(), "ports", len(cfg.Ports),
		"trusted", strings.Join(idList(file), ","), "spa", spaAddr(file), "gnmi", cfg.GNMI != nil)
	if h.started != nil {
		h.started(agent)
	}
	err = agent.Run(runCtx)
	if err == nil && ctx.Err() == nil {
		// Run ended without a signal: the embedded server failed.
		err = context.Cause(runCtx)
	}
	if err != nil {
		return fmt.Errorf("agent %s: %w", file.Node, err)
	}
	log.Info("agent stopped", "node", string(file.Node))
	return nil
}

func idList(file *nodeconf.File) []string {
	var out []string
	for _, id := range file.TrustedIDs() {
		out = append(out, string(id))
	}
	return out
}

func spaAddr(file *nodeconf.File) string {
	if file.SG == nil {
		return ""
	}
	return file.SG.SPAAddr
}

// checkAgent prints what --check found in a file that loaded.
func checkAgent(w io.Writer, file *nodeconf.File) error {
	for _, warn := range file.Warnings {
		fmt.Fprintf(w, "%s: warning: %s\n", file.Path, warn)
	}
	var fabric, pod int
	for _, p := range file.Ports {
		if p.Kind == controller.PortPod {
			pod++
		} else {
			fabric++
		}
	}
	sw := fmt.Sprintf("switch %s device %d", file.Switch.P4RT, file.Switch.DeviceID)
	if file.Embedded != nil {
		sw = "embedded switch with " + count(len(file.Embedded.Ports), "port")
	}
	fmt.Fprintf(w, "%s: ok: node %s (role %s), %s, %s, %s, domain %s, trusted nodes %s",
		file.Path, file.Node, file.Role, sw, count(fabric, "fabric port"), count(pod, "pod port"), file.Domain(), strings.Join(idList(file), " "))
	if file.SG != nil {
		fmt.Fprintf(w, ", spa %s", file.SG.SPAAddr)
	}
	if file.GNMI != nil {
		tls := "TLS"
		if !file.GNMI.TLS {
			tls = "no TLS"
		}
		fmt.Fprintf(w, ", gnmi %s (%s)", file.GNMI.Listen, tls)
	}
	fmt.Fprintln(w)
	return nil
}

func count(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

// embeddedSwitch is the software switch of switch.p4rt: embedded, behind a
// P4Runtime server on loopback, as dmsc softswitch runs it.
type embeddedSwitch struct {
	sw     *softswitch.Switch
	srv    *server.Server
	gs     *grpc.Server
	addr   string
	cancel context.CancelFunc
	wg     sync.WaitGroup
	runErr error // sw.Run's, read after wg.Wait
	log    *slog.Logger
}

// startEmbedded opens the switch's ports and starts it and its P4Runtime
// server; fail is called if the server stops on its own.
func startEmbedded(file *nodeconf.File, base *slog.Logger, fail context.CancelCauseFunc) (*embeddedSwitch, error) {
	log := base.With("component", "embedded-switch")
	sw := softswitch.New(softswitch.Config{Logger: log})
	abort := func(err error) (*embeddedSwitch, error) {
		if cerr := sw.Close(); cerr != nil {
			log.Warn("closing the embedded switch", "err", cerr)
		}
		return nil, err
	}
	for _, ps := range file.Embedded.Ports {
		port, err := ps.Open()
		if err != nil {
			return abort(fmt.Errorf("embedded.ports %s: %w", ps, err))
		}
		if err := sw.AddPort(ps.Num, port); err != nil {
			port.Close()
			return abort(fmt.Errorf("embedded.ports %s: %w", ps, err))
		}
	}
	for _, im := range file.Embedded.Impair {
		if err := sw.SetImpairment(im.Port, im.Impairment); err != nil {
			return abort(fmt.Errorf("embedded.impair %d:%s: %w", im.Port, im.Impairment, err))
		}
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return abort(fmt.Errorf("embedded switch: P4Runtime listener: %w", err))
	}
	e := &embeddedSwitch{
		sw:   sw,
		srv:  server.New(sw, server.Options{DeviceID: file.Switch.DeviceID, Logger: base.With("component", "p4rt-server")}),
		gs:   grpc.NewServer(),
		addr: lis.Addr().String(),
		log:  log,
	}
	e.srv.Register(e.gs)
	// The switch runs until stop, not until the agent's context ends, so
	// that the agent can still reach it while stopping.
	swCtx, cancel := context.WithCancel(context.Background())
	e.cancel = cancel
	e.wg.Go(func() { e.runErr = sw.Run(swCtx) })
	e.wg.Go(func() {
		if err := e.gs.Serve(lis); err != nil {
			fail(fmt.Errorf("embedded switch: P4Runtime server on %s: %w", e.addr, err))
		}
	})
	log.Info("embedded switch running", "p4rt", e.addr, "device_id", file.Switch.DeviceID, "ports", len(file.Embedded.Ports))
	return e, nil
}

// stop ends the P4Runtime server, then the switch, and closes its ports.
func (e *embeddedSwitch) stop() error {
	e.srv.Close()
	stopped := make(chan struct{})
	go func() { e.gs.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(5 * time.Second):
		e.gs.Stop()
		<-stopped
	}
	e.cancel()
	e.wg.Wait()
	err := errors.Join(e.runErr, e.sw.Close())
	e.log.Info("embedded switch stopped")
	return err
}
