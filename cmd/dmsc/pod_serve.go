package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/reflection"

	echopb "github.com/dmsc-mesh/dmsc/api/echo"
	shoppb "github.com/dmsc-mesh/dmsc/api/shop"
	"github.com/dmsc-mesh/dmsc/examples/echo"
	"github.com/dmsc-mesh/dmsc/examples/shop"
	"github.com/dmsc-mesh/dmsc/pod"
	"github.com/dmsc-mesh/dmsc/wire"
)

// podAttachFlags are the flags of the pod verbs that attach to an SG port
// and announce (serve and call; announce has its own copy in pod.go).
type podAttachFlags struct {
	link, ca, cert, key, prefix string
	timeout                     time.Duration
}

// register adds the flags to cmd; prefixUsage and timeoutUsage say what
// --prefix and --timeout mean for the verb.
func (f *podAttachFlags) register(cmd *cobra.Command, prefixUsage, timeoutUsage string) {
	fl := cmd.Flags()
	fl.StringVar(&f.link, "link", "", "the link to the SG port: udp:LOCAL,PEER (a UDP tunnel) or iface:NAME")
	fl.StringVar(&f.ca, "ca", "", "the domain CA's certificate (ca.crt)")
	fl.StringVar(&f.cert, "cert", "", "the pod's certificate (PEM; leaf first if it holds a chain)")
	fl.StringVar(&f.key, "key", "", "the pod's private key (PKCS#8 PEM)")
	fl.StringVar(&f.prefix, "prefix", "", prefixUsage)
	fl.DurationVar(&f.timeout, "timeout", 10*time.Second, timeoutUsage)
}

// check reports the first missing or bad flag, before anything is opened.
func (f *podAttachFlags) check() error {
	for _, req := range []struct{ name, v string }{{"link", f.link}, {"ca", f.ca}, {"cert", f.cert}, {"key", f.key}} {
		if req.v == "" {
			return fmt.Errorf("--%s is required", req.name)
		}
	}
	if f.timeout <= 0 {
		return fmt.Errorf("--timeout %v: want a positive duration", f.timeout)
	}
	return nil
}

// attachPod attaches and announces as `dmsc pod announce` does, under ctx
// (whose deadline bounds the announcement). Errors name the flag at fault.
// sigctx is the signal context, to tell an interruption from a timeout.
func attachPod(ctx, sigctx context.Context, log *slog.Logger, f *podAttachFlags) (*pod.Endpoint, *pod.Registration, error) {
	ep, reg, err := pod.Attach(ctx, pod.AttachConfig{
		Link: f.link, CA: f.ca, Cert: f.cert, Key: f.key, Prefix: f.prefix,
		Endpoint: pod.Config{Logger: log},
	})
	if err != nil {
		var ae *pod.AttachError
		if errors.As(err, &ae) {
			return nil, nil, fmt.Errorf("--%s %s: %w", ae.Field, ae.Value, ae.Err)
		}
		if sigctx.Err() != nil {
			return nil, nil, fmt.Errorf("interrupted before the SG accepted: %w", err)
		}
		return nil, nil, err
	}
	return ep, reg, nil
}

// withdrawTimeout bounds the withdrawal at the end of serve and call; the
// signal that ended them must not cut it short.
const withdrawTimeout = 5 * time.Second

// drainTimeout is how long serve lets running calls finish after SIGINT
// before it cuts them.
const drainTimeout = 3 * time.Second

// servedService is one service dmsc pod serve can serve.
type servedService struct {
	// calls is the service name it calls by default ("": none).
	calls string
	// register puts it on gs. servedBy names the instance; dep is the
	// connection to calls (nil when calls is "").
	register func(gs *grpc.Server, servedBy func() string, dep *grpc.ClientConn)
}

// servedServices are the values of --service.
var servedServices = map[string]servedService{
	"echo": {register: func(gs *grpc.Server, servedBy func() string, _ *grpc.ClientConn) {
		echopb.RegisterEchoServer(gs, &echo.Server{ServedBy: servedBy, Caller: callerIdentity})
	}},
	"catalog": {register: func(gs *grpc.Server, servedBy func() string, _ *grpc.ClientConn) {
		shoppb.RegisterCatalogServer(gs, shop.NewCatalog(shop.Items, servedBy))
	}},
	"cart": {calls: shop.CatalogService, register: func(gs *grpc.Server, servedBy func() string, dep *grpc.ClientConn) {
		shoppb.RegisterCartServer(gs, shop.NewCart(shoppb.NewCatalogClient(dep), servedBy))
	}},
	"frontend": {calls: shop.CartService, register: func(gs *grpc.Server, servedBy func() string, dep *grpc.ClientConn) {
		shoppb.RegisterFrontendServer(gs, &shop.Frontend{Cart: shoppb.NewCartClient(dep), ServedBy: servedBy})
	}},
}

func servedServiceNames() []string {
	names := make([]string, 0, len(servedServices))
	for n := range servedServices {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// callerIdentity is the Echo service's Caller: the calling pod as its
// verified certificate names it.
func callerIdentity(ctx context.Context) string {
	id, ok := pod.PeerIdentity(ctx)
	if !ok {
		return ""
	}
	return id.String()
}

type podServeFlags struct {
	attach  podAttachFlags
	service string
	calls   string
}

func newPodServeCommand(g *globalFlags) *cobra.Command {
	f := &podServeFlags{}
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Serve an example gRPC service (echo, or the shop's catalog, cart, frontend) on an SG port",
		Long: `serve attaches and announces like 'dmsc pod announce', then serves one of the
example services over gRPC on DMSC QUIC (package pod's ListenGRPC), with gRPC
server reflection, so that 'dmsc pod call' and reflection-based tools find its
methods:

  echo      dmsc.echo.v1.Echo (api/echo): Echo, Sum, Repeat; replies name the
            instance (served_by) and the caller's pod identity (caller)
  catalog   dmsc.shop.v1.Catalog (api/shop): GetItem, ListItems
  cart      dmsc.shop.v1.Cart: AddItem, GetCart; prices items at /shop/catalog
  frontend  dmsc.shop.v1.Frontend: Buy; adds the items to the cart at /shop/cart

cart and frontend dial the service they call by name (--calls overrides it)
before serving, waiting up to --timeout for the fabric to know a route to it.
served_by in answers is this pod's instance key.

Output, on standard output:
  serving dmsc.echo.v1.Echo on /echo: Echo, Repeat, Sum
  registered /echo instance 8d9001d3:1c42ddc0:00000000:00000007
  withdrawn /echo instance 8d9001d3:1c42ddc0:00000000:00000007

It runs until SIGINT or SIGTERM: then it lets running calls finish (up to 3 s),
withdraws the prefix and exits. Re-registrations are printed as for announce.`,
		Example: `  dmsc pod serve --link udp:127.0.0.1:7104,127.0.0.1:7004 \
      --ca ca/ca.crt --cert ca/pod.echo.crt --key ca/pod.echo.key
  dmsc pod serve --link udp:127.0.0.1:7102,127.0.0.1:7002 --service cart \
      --ca ca/ca.crt --cert ca/pod.shop.cart.crt --key ca/pod.shop.cart.key`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runPodServe(cmd, g, f)
		},
	}
	f.attach.register(cmd,
		"the prefix to announce and serve: the certificate's or one below it (default: the certificate's)",
		"how long to wait for the SG to accept the announcement and for the service --calls names to be reachable")
	fl := cmd.Flags()
	fl.StringVar(&f.service, "service", "echo", "the service to serve: "+strings.Join(servedServiceNames(), ", "))
	fl.StringVar(&f.calls, "calls", "", "the service name cart or frontend calls (default: /shop/catalog for cart, /shop/cart for frontend)")
	return cmd
}

func runPodServe(cmd *cobra.Command, g *globalFlags, f *podServeFlags) error {
	log, err := g.logger(cmd.ErrOrStderr())
	if err != nil {
		return err
	}
	if err := f.attach.check(); err != nil {
		return err
	}
	svc, ok := servedServices[f.service]
	if !ok {
		return fmt.Errorf("--service %q: want one of %s", f.service, strings.Join(servedServiceNames(), ", "))
	}
	calls := svc.calls
	if f.calls != "" {
		if svc.calls == "" {
			return fmt.Errorf("--calls %s: the %s service calls no other service", f.calls, f.service)
		}
		n, err := wire.ParseName(f.calls)
		if err != nil {
			return fmt.Errorf("--calls %s: %w", f.calls, err)
		}
		calls = n.String()
	}

	ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	sctx, cancel := context.WithTimeout(ctx, f.attach.timeout)
	defer cancel()
	ep, reg, err := attachPod(sctx, ctx, log, &f.attach)
	if err != nil {
		return err
	}
	// Closing the Endpoint withdraws too; it is the backstop of every
	// early return below.
	defer ep.Close()
	var dep *grpc.ClientConn
	if calls != "" {
		if dep, err = dialWhenRoutable(sctx, ep, calls, log); err != nil {
			if ctx.Err() != nil {
				return fmt.Errorf("interrupted while dialing %s: %w", calls, err)
			}
			return fmt.Errorf("the %s service calls %s: %w", f.service, calls, err)
		}
		defer dep.Close()
	}
	cancel()

	lis, err := pod.ListenGRPC(ep)
	if err != nil {
		return err
	}
	servedBy := func() string {
		k, _ := ep.LocalKey()
		return k.String()
	}
	gs := grpc.NewServer()
	svc.register(gs, servedBy, dep)
	reflection.Register(gs)
	out := cmd.OutOrStdout()
	printServed(out, log, gs, reg.Prefix(), calls)

	served := make(chan error, 1)
	go func() { served <- gs.Serve(lis) }()
	// keepAnnounced withdraws when its context ends; it gets its own, so
	// that running calls are drained before the instance goes.
	kctx, kcancel := context.WithCancel(context.WithoutCancel(ctx))
	defer kcancel()
	announced := make(chan error, 1)
	go func() { announced <- keepAnnounced(kctx, out, log, reg) }()

	var result error
	serveDone := false
	select {
	case <-ctx.Done():
		stopGracefully(gs, drainTimeout, log)
		// The connection to the called service goes before the
		// withdrawal: closing it sends CONNECTION_CLOSE, which needs the
		// instance key, and spares that server waiting for it.
		if dep != nil {
			dep.Close()
		}
		kcancel()
		result = <-announced
	case result = <-announced: // the registration failed for good
		gs.Stop()
	case err := <-served:
		serveDone = true
		kcancel()
		<-announced
		result = fmt.Errorf("serving gRPC on %s: %w", reg.Prefix(), err)
	}
	if !serveDone {
		gs.Stop()
		<-served
	}
	return result
}

// printServed says what gs serves, on out and in the log. Server reflection
// is listed in the log only: every serve has it.
func printServed(out io.Writer, log *slog.Logger, gs *grpc.Server, prefix, calls string) {
	infos := gs.GetServiceInfo()
	names := make([]string, 0, len(infos))
	for n := range infos {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		var methods []string
		for _, m := range infos[n].Methods {
			methods = append(methods, m.Name)
		}
		slices.Sort(methods)
		if strings.HasPrefix(n, "grpc.reflection.") {
			log.Info("serving server reflection", "service", n, "prefix", prefix)
			continue
		}
		line := fmt.Sprintf("serving %s on %s: %s", n, prefix, strings.Join(methods, ", "))
		if calls != "" {
			line += " (calls " + calls + ")"
		}
		fmt.Fprintln(out, line)
		log.Info("serving", "service", n, "prefix", prefix, "methods", methods, "calls", calls)
	}
}

// stopGracefully lets running calls finish for up to within, then cuts
// them.
func stopGracefully(gs *grpc.Server, within time.Duration, log *slog.Logger) {
	done := make(chan struct{})
	go func() {
		gs.GracefulStop()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(within):
		log.Warn("calls still running after the drain time; cutting them", "drain", within)
		gs.Stop() // makes GracefulStop return
		<-done
	}
}

// dialRetry is how often dialWhenRoutable tries again.
const dialRetry = 100 * time.Millisecond

// dialWhenRoutable dials name, trying again while the fabric has no route
// to it or nobody answers, until ctx ends: the service may be starting, or
// its announcement still spreading through the fabric. Other errors (a
// server certificate that does not own the name) end it at once.
func dialWhenRoutable(ctx context.Context, ep *pod.Endpoint, name string, log *slog.Logger) (*grpc.ClientConn, error) {
	var last error
	for attempt := 0; ; attempt++ {
		cc, err := pod.DialGRPC(ctx, ep, name)
		if err == nil {
			if attempt > 0 {
				log.Info("reached the service it calls", "service", name, "attempts", attempt+1)
			}
			return cc, nil
		}
		if ctx.Err() == nil || last == nil {
			last = err
		}
		if !errors.Is(err, pod.ErrNoRoute) && !errors.Is(err, pod.ErrHandshakeTimeout) && ctx.Err() == nil {
			return nil, err
		}
		if attempt == 0 {
			log.Info("waiting for the service it calls", "service", name, "err", err)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("not reachable in time: %w", last)
		case <-time.After(dialRetry):
		}
	}
}
