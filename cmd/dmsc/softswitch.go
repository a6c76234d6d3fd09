package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"

	"github.com/dmsc-mesh/dmsc/p4rt/server"
	"github.com/dmsc-mesh/dmsc/softswitch"
)

type softswitchFlags struct {
	p4rtAddr string
	deviceID uint64
	ports    []string
	impair   []string
	down     []string
	carrier  bool
}

func newSoftswitchCommand(g *globalFlags) *cobra.Command {
	f := &softswitchFlags{}
	cmd := &cobra.Command{
		Use:   "softswitch",
		Short: "Run the Go software switch behind a P4Runtime server",
		Long: `softswitch runs the DMSC pipeline (p4/dmsc.p4) in Go and serves P4Runtime on
--p4rt, so a controller drives it exactly as it drives BMv2 or Tofino. The switch
forwards nothing until a controller pushes the pipeline
(SetForwardingPipelineConfig with the DMSC P4Info) and fills its tables.

Ports (--port, repeatable), numbered 1..510 (255 is the CPU port):
  N=udp:LOCAL,PEER   a UDP tunnel: each Ethernet frame is one UDP datagram from
                     LOCAL to PEER (host:port each); software switches link up on
                     loopback or across machines without root
  N=iface:NAME       a Linux interface through AF_PACKET (root; veth, NIC)
  N=mem              an in-memory port (only useful when embedded)

An iface port follows its interface's carrier (netlink; --carrier=false turns
it off): when the link goes down the port goes down and the switch tells its
P4Runtime controller at once, so the agent reroutes without waiting for its
HELLO dead interval.

Impairments (--impair, repeatable) emulate a worse link on a port's egress:
  N:delay=5ms,jitter=1ms,loss=0.01,rate=100mbit,queue=1000`,
		Example: `  dmsc softswitch --p4rt 127.0.0.1:9559 --device-id 1 \
    --port 1=udp:127.0.0.1:7001,127.0.0.1:7002 --port 2=iface:veth0 \
    --impair 1:delay=2ms,jitter=500us`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runSoftswitch(cmd.Context(), g, f)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.p4rtAddr, "p4rt", "127.0.0.1:9559", "address the P4Runtime server listens on")
	fl.Uint64Var(&f.deviceID, "device-id", 1, "P4Runtime device id")
	fl.StringArrayVar(&f.ports, "port", nil, "a port: N=udp:LOCAL,PEER | N=iface:NAME | N=mem (repeatable)")
	fl.StringArrayVar(&f.impair, "impair", nil, "an egress impairment: N:delay=D,jitter=D,loss=P,rate=R,queue=Q (repeatable)")
	fl.StringArrayVar(&f.down, "down", nil, "start port N administratively down (repeatable; its carrier is not followed)")
	fl.BoolVar(&f.carrier, "carrier", true, "iface ports follow their interface's carrier (netlink) and report it to the controller")
	return cmd
}

func runSoftswitch(ctx context.Context, g *globalFlags, f *softswitchFlags) error {
	log, err := g.logger(os.Stderr)
	if err != nil {
		return err
	}
	if len(f.ports) == 0 {
		return errors.New("softswitch: no --port given; a switch needs at least one (see --help)")
	}
	sw := softswitch.New(softswitch.Config{Logger: log.With("component", "softswitch")})
	defer sw.Close()
	ifaces := map[string]uint16{} // iface ports whose carrier is followed
	for _, spec := range f.ports {
		ps, err := softswitch.ParsePortSpec(spec)
		if err != nil {
			return err
		}
		if ps.Kind == "iface" && f.carrier {
			ifaces[ps.Iface] = ps.Num
		}
		port, err := ps.Open()
		if err != nil {
			return fmt.Errorf("--port %s: %w", spec, err)
		}
		if err := sw.AddPort(ps.Num, port); err != nil {
			port.Close()
			return fmt.Errorf("--port %s: %w", spec, err)
		}
		log.Info("port added", "port", ps.Num, "link", ps.String())
	}
	for _, spec := range f.impair {
		num, im, err := parseImpairFlag(spec)
		if err != nil {
			return err
		}
		if err := sw.SetImpairment(num, im); err != nil {
			return fmt.Errorf("--impair %s: %w", spec, err)
		}
		log.Info("impairment set", "port", num, "impairment", im.String())
	}
	for _, s := range f.down {
		num, err := parsePortNum(s)
		if err != nil {
			return fmt.Errorf("--down %s: %w", s, err)
		}
		if err := sw.SetPortUp(num, false); err != nil {
			return fmt.Errorf("--down %s: %w", s, err)
		}
		for name, p := range ifaces {
			if p == num {
				delete(ifaces, name)
			}
		}
	}

	lis, err := net.Listen("tcp", f.p4rtAddr)
	if err != nil {
		return fmt.Errorf("--p4rt %s: %w", f.p4rtAddr, err)
	}
	srv := server.New(sw, server.Options{DeviceID: f.deviceID, Logger: log.With("component", "p4rt")})
	gs := grpc.NewServer()
	srv.Register(gs)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	runErr := make(chan error, 1)
	go func() { runErr <- sw.Run(ctx) }()
	carrierDone := make(chan struct{})
	go func() {
		defer close(carrierDone)
		if len(ifaces) == 0 {
			return
		}
		if err := softswitch.WatchCarrier(ctx, sw, ifaces, log.With("component", "softswitch")); err != nil {
			// The ports still forward; only pulled cables go unreported.
			log.Error("not following the interfaces' carrier", "err", err)
		}
	}()
	serveErr := make(chan error, 1)
	go func() { serveErr <- gs.Serve(lis) }()
	log.Info("P4Runtime server listening", "addr", lis.Addr().String(), "device_id", f.deviceID)

	select {
	case <-ctx.Done():
		log.Info("shutting down")
	case err = <-serveErr:
		log.Error("P4Runtime server stopped", "err", err)
	}
	srv.Close()
	stopped := make(chan struct{})
	go func() { gs.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(5 * time.Second):
		gs.Stop()
	}
	cancel()
	<-carrierDone
	if rerr := <-runErr; rerr != nil && err == nil {
		err = rerr
	}
	return err
}

// parseImpairFlag reads "N:delay=5ms,...".
func parseImpairFlag(s string) (uint16, softswitch.Impairment, error) {
	numStr, spec, ok := strings.Cut(s, ":")
	if !ok {
		return 0, softswitch.Impairment{}, fmt.Errorf("--impair %q: want PORT:delay=D,jitter=D,loss=P,rate=R,queue=Q", s)
	}
	num, err := parsePortNum(numStr)
	if err != nil {
		return 0, softswitch.Impairment{}, fmt.Errorf("--impair %q: %w", s, err)
	}
	im, err := softswitch.ParseImpairment(spec)
	if err != nil {
		return 0, softswitch.Impairment{}, fmt.Errorf("--impair %q: %w", s, err)
	}
	return num, im, nil
}

func parsePortNum(s string) (uint16, error) {
	n, err := strconv.ParseUint(strings.TrimSpace(s), 10, 16)
	if err != nil {
		return 0, fmt.Errorf("port %q is not a number", s)
	}
	return uint16(n), nil
}
