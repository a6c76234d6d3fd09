package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/dmsc-mesh/dmsc/pod"
)

func newPodCommand(g *globalFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "pod",
		Short: "Act as a pod on an SG port: announce a service prefix, serve a service, call one by name",
		Long: `pod attaches to the port of a Service Gateway the way the pod SDK (package pod)
does, for scripts, tests and debugging. The link is a UDP tunnel to a software
switch port (udp:LOCAL,PEER) or a Linux interface (iface:NAME); the pod proves
its identity with a pod certificate of the domain CA (dmsc ca issue pod).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(newPodAnnounceCommand(g), newPodServeCommand(g), newPodCallCommand(g))
	return cmd
}

type podAnnounceFlags struct {
	link, ca, cert, key, prefix string
	timeout                     time.Duration
}

func newPodAnnounceCommand(g *globalFlags) *cobra.Command {
	f := &podAnnounceFlags{}
	cmd := &cobra.Command{
		Use:   "announce",
		Short: "Announce a service prefix to the SG and keep it registered until interrupted",
		Long: `announce registers a service prefix with the SG on --link (signal 1:
ANNOUNCE, the SG's CHALLENGE, a PROOF signed with --key, then ACCEPT with an
instance key from SPA), prints the instance key, and keeps the registration
alive with KEEPALIVEs. When the SG goes silent or forgets the pod it announces
again, and prints the new instance key. SIGINT or SIGTERM withdraws the prefix
(WITHDRAW, confirmed by the SG) and exits.

Output, one line per event on standard output:
  registered /shop/cart instance 8d9001d3:1c42ddc0:00000000:00000007
  re-registered /shop/cart instance 8d9001d3:1c42ddc0:00000000:00000008
  withdrawn /shop/cart instance 8d9001d3:1c42ddc0:00000000:00000008

A final refusal (REJECT) ends the command with its reason, such as
PREFIX_OUTSIDE_CERT or POLICY_NOT_ALLOWED; temporary ones are retried.`,
		Example: `  dmsc ca issue pod --prefix /shop/cart
  dmsc pod announce --link udp:127.0.0.1:7101,127.0.0.1:7001 \
      --ca ca/ca.crt --cert ca/pod.shop.cart.crt --key ca/pod.shop.cart.key
  dmsc pod announce --link iface:veth1 --ca ca.crt --cert cart.crt --key cart.key --prefix /shop/cart/v2`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runPodAnnounce(cmd, g, f)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.link, "link", "", "the link to the SG port: udp:LOCAL,PEER (a UDP tunnel) or iface:NAME")
	fl.StringVar(&f.ca, "ca", "", "the domain CA's certificate (ca.crt)")
	fl.StringVar(&f.cert, "cert", "", "the pod's certificate (PEM; leaf first if it holds a chain)")
	fl.StringVar(&f.key, "key", "", "the pod's private key (PKCS#8 PEM)")
	fl.StringVar(&f.prefix, "prefix", "", "the prefix to announce: the certificate's or one below it (default: the certificate's)")
	fl.DurationVar(&f.timeout, "timeout", 10*time.Second, "how long to wait for the SG to accept the announcement")
	return cmd
}

func runPodAnnounce(cmd *cobra.Command, g *globalFlags, f *podAnnounceFlags) error {
	log, err := g.logger(cmd.ErrOrStderr())
	if err != nil {
		return err
	}
	for _, req := range []struct{ name, v string }{{"link", f.link}, {"ca", f.ca}, {"cert", f.cert}, {"key", f.key}} {
		if req.v == "" {
			return fmt.Errorf("--%s is required", req.name)
		}
	}
	if f.timeout <= 0 {
		return fmt.Errorf("--timeout %v: want a positive duration", f.timeout)
	}
	ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	actx, cancel := context.WithTimeout(ctx, f.timeout)
	ep, reg, err := pod.Attach(actx, pod.AttachConfig{
		Link: f.link, CA: f.ca, Cert: f.cert, Key: f.key, Prefix: f.prefix,
		Endpoint: pod.Config{Logger: log},
	})
	cancel()
	if err != nil {
		var ae *pod.AttachError
		if errors.As(err, &ae) {
			return fmt.Errorf("--%s %s: %w", ae.Field, ae.Value, ae.Err)
		}
		if ctx.Err() != nil {
			return fmt.Errorf("interrupted before the SG accepted: %w", err)
		}
		return err
	}
	defer ep.Close()
	return keepAnnounced(ctx, cmd.OutOrStdout(), log, reg)
}

// keepAnnounced reports the registration's changes until ctx ends (then it
// withdraws) or the registration fails.
func keepAnnounced(ctx context.Context, out io.Writer, log *slog.Logger, reg *pod.Registration) error {
	st := reg.Status()
	fmt.Fprintf(out, "registered %s instance %s\n", st.Prefix, st.Instance)
	log.Info("pod announced", "prefix", st.Prefix, "instance", st.Instance.String(),
		"keepalive", st.Keepalive, "hold", st.Hold, "lease", st.Lease)
	last := st
	for {
		changed := reg.Changed()
		st := reg.Status()
		switch {
		case st.State == pod.StateRegistered && st.Registrations != last.Registrations:
			fmt.Fprintf(out, "re-registered %s instance %s\n", st.Prefix, st.Instance)
			last = st
		case st.State == pod.StateFailed:
			return fmt.Errorf("registration of %s ended: %w", st.Prefix, reg.Err())
		}
		select {
		case <-ctx.Done():
			// The signal context is done; the withdrawal gets its own time.
			wctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			registered := reg.Status().State == pod.StateRegistered
			if err := reg.Withdraw(wctx); err != nil {
				log.Warn("pod withdrawal not confirmed; the SG drops the instance after its hold time", "err", err)
			}
			if registered {
				fmt.Fprintf(out, "withdrawn %s instance %s\n", st.Prefix, reg.Status().Instance)
			} else {
				fmt.Fprintf(out, "stopped %s while re-announcing (nothing to withdraw)\n", st.Prefix)
			}
			return nil
		case <-changed:
		}
	}
}
