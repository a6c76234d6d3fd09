package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	rpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"

	"github.com/dmsc-mesh/dmsc/pod"
	"github.com/dmsc-mesh/dmsc/wire"
)

type podCallFlags struct {
	attach podAttachFlags
	list   bool
}

func newPodCallCommand(g *globalFlags) *cobra.Command {
	f := &podCallFlags{}
	cmd := &cobra.Command{
		Use:   "call [--list] SERVICE [METHOD [REQUEST]]",
		Short: "Call a gRPC method of a service by name, grpcurl-style, with JSON in and out",
		Long: `call attaches and announces like 'dmsc pod announce' (a pod must be registered
to send: its source key comes from SPA), dials SERVICE (a DMSC service name such
as /shop/cart) through the fabric, learns its methods by gRPC server reflection
(grpc.reflection.v1, else v1alpha), calls METHOD with REQUEST, prints the
answer, withdraws and exits.

Announce a prefix nobody serves (a certificate of its own, or --prefix below
it): the caller's prefix is a service in the fabric while the call runs.

METHOD is Method, Service/Method or package.Service/Method (a "." may stand
for the "/"). A Service may be given without its package. A method without a
service is looked up among all the services SERVICE serves; a name two of them
have is refused as ambiguous.

REQUEST is the request message as protobuf JSON (protojson: field names as in
the .proto or in lowerCamelCase, bytes as base64, 64-bit integers as strings or
numbers); default {}. "-" reads it from standard input. Client-streaming
methods take several messages: a JSON array of them, or, from standard input,
JSON objects one after another (say one per line); all are read before the
call starts, then sent in order.

The answer goes to standard output as indented protobuf JSON, one object per
message (server streaming prints each as it comes); a summary line goes to
standard error, so that the output pipes into jq:
  dmsc.echo.v1.Echo/Echo: 1 message from dmsc://example.org/echo (served_by 8d9001d3:1c42ddc0:00000000:00000007) in 2.1ms

served_by is shown when the answer has such a field (the example services
name their instance key there); the identity is the server's certificate's.

--list prints the services and methods of SERVICE instead of calling.

A gRPC error ends the command with its code and message; no route to
SERVICE, an unknown method (the known ones are listed) and a request that does
not fit the method's message (protojson's error names the field) too, all
with a non-zero exit. --timeout bounds everything: announcement, dial,
reflection and the call.`,
		Example: `  dmsc pod call --link udp:127.0.0.1:7101,127.0.0.1:7001 \
      --ca ca/ca.crt --cert ca/pod.cli.crt --key ca/pod.cli.key \
      /echo Echo '{"message":"hi"}'
  dmsc pod call ... /echo Repeat '{"message":"hi","count":3,"interval_ms":100}'
  dmsc pod call ... /shop/frontend dmsc.shop.v1.Frontend/Buy '{"user":"ada","skus":["book"]}'
  echo '{"data":"aGVsbG8="}{"data":"d29ybGQ="}' | dmsc pod call ... /echo Sum -
  dmsc pod call ... --list /shop/cart`,
		Args: func(cmd *cobra.Command, args []string) error {
			if f.list {
				if len(args) != 1 {
					return fmt.Errorf("--list takes just SERVICE, got %d arguments", len(args))
				}
				return nil
			}
			if len(args) < 2 || len(args) > 3 {
				return fmt.Errorf("want SERVICE METHOD [REQUEST], got %d arguments", len(args))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			return runPodCall(cmd, g, f, args)
		},
	}
	f.attach.register(cmd,
		"the caller's own prefix to announce: the certificate's or one below it (default: the certificate's)",
		"bound on the whole command: announcement, dial, reflection and the call")
	cmd.Flags().BoolVar(&f.list, "list", false, "list the services and methods of SERVICE instead of calling")
	return cmd
}

func runPodCall(cmd *cobra.Command, g *globalFlags, f *podCallFlags, args []string) error {
	log, err := g.logger(cmd.ErrOrStderr())
	if err != nil {
		return err
	}
	if err := f.attach.check(); err != nil {
		return err
	}
	target, err := wire.ParseName(args[0])
	if err != nil {
		return fmt.Errorf("SERVICE %s: %w", args[0], err)
	}
	// Everything that can be checked without the server is, before the
	// pod attaches.
	var spec methodSpec
	var requests []json.RawMessage
	if !f.list {
		if spec, err = parseMethodSpec(args[1]); err != nil {
			return err
		}
		text := "{}"
		if len(args) == 3 {
			text = args[2]
		}
		if text == "-" {
			b, err := io.ReadAll(cmd.InOrStdin())
			if err != nil {
				return fmt.Errorf("reading the request from standard input: %w", err)
			}
			text = string(b)
		}
		if requests, err = splitRequests(text); err != nil {
			return err
		}
	}

	sigctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(sigctx, f.attach.timeout)
	defer cancel()
	ep, reg, err := attachPod(ctx, sigctx, log, &f.attach)
	if err != nil {
		return err
	}
	defer func() {
		wctx, wcancel := context.WithTimeout(context.Background(), withdrawTimeout)
		defer wcancel()
		if err := reg.Withdraw(wctx); err != nil {
			log.Warn("pod withdrawal not confirmed; the SG drops the instance after its hold time", "err", err)
		}
		ep.Close()
	}()
	log.Info("pod announced", "prefix", reg.Prefix(), "instance", reg.Instance().String())

	name := target.String()
	cc, err := pod.DialGRPC(ctx, ep, name)
	if err != nil {
		return explainTimeout(fmt.Errorf("%s: %w", name, err), ctx, sigctx, f.attach.timeout)
	}
	// Closed before the withdrawal (deferred above, so it runs after):
	// closing sends CONNECTION_CLOSE, which needs the instance key.
	defer cc.Close()

	schema, err := fetchSchema(ctx, cc, name)
	if err != nil {
		return explainTimeout(err, ctx, sigctx, f.attach.timeout)
	}
	out := cmd.OutOrStdout()
	if f.list {
		schema.print(out)
		return nil
	}
	md, err := schema.resolve(spec)
	if err != nil {
		return err
	}
	msgs, err := schema.decodeRequests(md, requests)
	if err != nil {
		return err
	}
	return explainTimeout(invoke(ctx, cc, md, msgs, schema, out, cmd.ErrOrStderr()), ctx, sigctx, f.attach.timeout)
}

// explainTimeout says which flag ran out when ctx did.
func explainTimeout(err error, ctx, sigctx context.Context, timeout time.Duration) error {
	switch {
	case err == nil:
		return nil
	case sigctx.Err() != nil:
		return fmt.Errorf("interrupted: %w", err)
	case ctx.Err() != nil:
		return fmt.Errorf("%w (--timeout %v ran out)", err, timeout)
	}
	return err
}

// methodSpec is METHOD as given: Service may be empty, or lack its package.
type methodSpec struct {
	Service, Method string
}

func (s methodSpec) String() string {
	if s.Service == "" {
		return s.Method
	}
	return s.Service + "/" + s.Method
}

// parseMethodSpec reads METHOD: "Method", "Service/Method",
// "pkg.Service/Method", "/pkg.Service/Method" or "pkg.Service.Method".
func parseMethodSpec(s string) (methodSpec, error) {
	bad := func(why string) (methodSpec, error) {
		return methodSpec{}, fmt.Errorf("METHOD %q: %s (want Method, Service/Method or package.Service/Method)", s, why)
	}
	t := strings.TrimPrefix(strings.TrimSpace(s), "/")
	var spec methodSpec
	qualified := true
	if svc, m, ok := strings.Cut(t, "/"); ok {
		spec = methodSpec{Service: svc, Method: m}
	} else if i := strings.LastIndexByte(t, '.'); i >= 0 {
		spec = methodSpec{Service: t[:i], Method: t[i+1:]}
	} else {
		spec, qualified = methodSpec{Method: t}, false
	}
	if spec.Method == "" {
		return bad("no method name")
	}
	if !isIdent(spec.Method) {
		return bad(fmt.Sprintf("%q is not a method name", spec.Method))
	}
	if qualified {
		for _, part := range strings.Split(spec.Service, ".") {
			if !isIdent(part) {
				return bad(fmt.Sprintf("%q is not a service name", spec.Service))
			}
		}
	}
	return spec, nil
}

// isIdent reports whether s is a protobuf identifier.
func isIdent(s string) bool {
	if s == "" {
		return false
	}
	for i, c := range s {
		switch {
		case c == '_', c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z':
		case c >= '0' && c <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}

// splitRequests splits REQUEST into messages: JSON values one after
// another, each an object (one message) or an array (each element one
// message). It checks only the JSON syntax; the fields are checked against
// the method's input type later (decodeRequests).
func splitRequests(text string) ([]json.RawMessage, error) {
	dec := json.NewDecoder(strings.NewReader(text))
	var msgs []json.RawMessage
	for {
		var v json.RawMessage
		err := dec.Decode(&v)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("REQUEST: not JSON (near byte %d): %w", dec.InputOffset(), err)
		}
		if t := bytes.TrimSpace(v); len(t) > 0 && t[0] == '[' {
			var elems []json.RawMessage
			if err := json.Unmarshal(t, &elems); err != nil {
				return nil, fmt.Errorf("REQUEST: %w", err)
			}
			msgs = append(msgs, elems...)
			continue
		}
		msgs = append(msgs, v)
	}
	if len(msgs) == 0 {
		return nil, errors.New("REQUEST: no JSON message in it")
	}
	return msgs, nil
}

// schema is what a server's reflection described.
type schema struct {
	target   string
	services []protoreflect.ServiceDescriptor // by full name
	// undescribed are services reflection listed but could not describe,
	// with the server's reason.
	undescribed map[string]string
	types       *dynamicpb.Types
}

// Method names of server reflection; the v1alpha messages are the same on
// the wire as v1's.
const (
	reflectionV1      = rpb.ServerReflection_ServerReflectionInfo_FullMethodName
	reflectionV1Alpha = "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"
)

// reflectionStream is one ServerReflectionInfo stream: one question, one
// answer.
type reflectionStream struct {
	st grpc.ClientStream
}

func (r *reflectionStream) ask(req *rpb.ServerReflectionRequest) (*rpb.ServerReflectionResponse, error) {
	// A SendMsg error other than io.EOF is the stream's; io.EOF means the
	// server ended it, and RecvMsg says why.
	if err := r.st.SendMsg(req); err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	resp := new(rpb.ServerReflectionResponse)
	if err := r.st.RecvMsg(resp); err != nil {
		return nil, err
	}
	return resp, nil
}

// openReflection opens a reflection stream and lists the services: v1,
// else v1alpha for older servers.
func openReflection(ctx context.Context, cc *grpc.ClientConn, target string) (*reflectionStream, []string, error) {
	desc := &grpc.StreamDesc{StreamName: "ServerReflectionInfo", ServerStreams: true, ClientStreams: true}
	list := &rpb.ServerReflectionRequest{MessageRequest: &rpb.ServerReflectionRequest_ListServices{}}
	for _, method := range []string{reflectionV1, reflectionV1Alpha} {
		st, err := cc.NewStream(ctx, desc, method)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: server reflection: %w", target, err)
		}
		rs := &reflectionStream{st: st}
		resp, err := rs.ask(list)
		if status.Code(err) == codes.Unimplemented {
			continue
		}
		if err != nil {
			return nil, nil, fmt.Errorf("%s: server reflection: %w", target, err)
		}
		if e := resp.GetErrorResponse(); e != nil {
			return nil, nil, fmt.Errorf("%s: server reflection refused to list services: %s", target, e.GetErrorMessage())
		}
		var names []string
		for _, s := range resp.GetListServicesResponse().GetService() {
			names = append(names, s.GetName())
		}
		return rs, names, nil
	}
	return nil, nil, fmt.Errorf("%s does not serve gRPC server reflection (grpc.reflection.v1 or v1alpha), which dmsc pod call needs", target)
}

// fetchSchema asks the server for its services and their descriptors.
func fetchSchema(ctx context.Context, cc *grpc.ClientConn, target string) (*schema, error) {
	rctx, cancel := context.WithCancel(ctx)
	defer cancel() // ends the reflection stream
	rs, names, err := openReflection(rctx, cc, target)
	if err != nil {
		return nil, err
	}
	defer rs.st.CloseSend()
	slices.Sort(names)
	sc := &schema{target: target, undescribed: map[string]string{}}
	files := map[string]*descriptorpb.FileDescriptorProto{}
	add := func(resp *rpb.ServerReflectionResponse) error {
		for _, b := range resp.GetFileDescriptorResponse().GetFileDescriptorProto() {
			fd := new(descriptorpb.FileDescriptorProto)
			if err := proto.Unmarshal(b, fd); err != nil {
				return fmt.Errorf("%s: server reflection sent a file descriptor that does not decode: %w", target, err)
			}
			files[fd.GetName()] = fd
		}
		return nil
	}
	for _, n := range names {
		resp, err := rs.ask(&rpb.ServerReflectionRequest{MessageRequest: &rpb.ServerReflectionRequest_FileContainingSymbol{FileContainingSymbol: n}})
		if err != nil {
			return nil, fmt.Errorf("%s: server reflection: %w", target, err)
		}
		if e := resp.GetErrorResponse(); e != nil {
			sc.undescribed[n] = e.GetErrorMessage()
			continue
		}
		if err := add(resp); err != nil {
			return nil, err
		}
	}
	// The server sends a file's imports with it; ask for any it left out
	// (sent on an earlier stream, by its reckoning).
	asked := map[string]bool{}
	for {
		var need []string
		for _, fd := range files {
			for _, dep := range fd.GetDependency() {
				if files[dep] == nil && !asked[dep] && !slices.Contains(need, dep) {
					need = append(need, dep)
				}
			}
		}
		if len(need) == 0 {
			break
		}
		slices.Sort(need)
		for _, dep := range need {
			asked[dep] = true
			resp, err := rs.ask(&rpb.ServerReflectionRequest{MessageRequest: &rpb.ServerReflectionRequest_FileByFilename{FileByFilename: dep}})
			if err != nil {
				return nil, fmt.Errorf("%s: server reflection: %w", target, err)
			}
			if e := resp.GetErrorResponse(); e != nil {
				return nil, fmt.Errorf("%s: server reflection has no %s, which its descriptors import: %s", target, dep, e.GetErrorMessage())
			}
			if err := add(resp); err != nil {
				return nil, err
			}
		}
	}
	set := &descriptorpb.FileDescriptorSet{}
	for _, fd := range files {
		set.File = append(set.File, fd)
	}
	reg, err := protodesc.NewFiles(set)
	if err != nil {
		return nil, fmt.Errorf("%s: the descriptors server reflection sent do not build: %w", target, err)
	}
	sc.types = dynamicpb.NewTypes(reg)
	for _, n := range names {
		if _, ok := sc.undescribed[n]; ok {
			continue
		}
		d, err := reg.FindDescriptorByName(protoreflect.FullName(n))
		if err != nil {
			sc.undescribed[n] = "not in the descriptors sent: " + err.Error()
			continue
		}
		sd, ok := d.(protoreflect.ServiceDescriptor)
		if !ok {
			sc.undescribed[n] = "the name is not a service"
			continue
		}
		sc.services = append(sc.services, sd)
	}
	return sc, nil
}

// methodName is "pkg.Service/Method".
func methodName(md protoreflect.MethodDescriptor) string {
	return string(md.Parent().FullName()) + "/" + string(md.Name())
}

// signature is a method as .proto writes it.
func signature(md protoreflect.MethodDescriptor) string {
	in, out := string(md.Input().FullName()), string(md.Output().FullName())
	if md.IsStreamingClient() {
		in = "stream " + in
	}
	if md.IsStreamingServer() {
		out = "stream " + out
	}
	return fmt.Sprintf("%s(%s) returns (%s)", md.Name(), in, out)
}

func (sc *schema) print(out io.Writer) {
	names := make([]string, 0, len(sc.services)+len(sc.undescribed))
	byName := map[string]protoreflect.ServiceDescriptor{}
	for _, sd := range sc.services {
		names = append(names, string(sd.FullName()))
		byName[string(sd.FullName())] = sd
	}
	for n := range sc.undescribed {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		sd, ok := byName[n]
		if !ok {
			fmt.Fprintf(out, "%s (not described: %s)\n", n, sc.undescribed[n])
			continue
		}
		fmt.Fprintln(out, n)
		ms := sd.Methods()
		for i := range ms.Len() {
			fmt.Fprintf(out, "  %s\n", signature(ms.Get(i)))
		}
	}
}

// allMethods lists the methods of services, for error messages.
func allMethods(services []protoreflect.ServiceDescriptor) string {
	var names []string
	for _, sd := range services {
		ms := sd.Methods()
		for i := range ms.Len() {
			names = append(names, methodName(ms.Get(i)))
		}
	}
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ", ")
}

// resolve finds the method spec names among the server's services.
func (sc *schema) resolve(spec methodSpec) (protoreflect.MethodDescriptor, error) {
	services := sc.services
	if spec.Service != "" {
		var match []protoreflect.ServiceDescriptor
		for _, sd := range sc.services {
			full := string(sd.FullName())
			if full == spec.Service || strings.HasSuffix(full, "."+spec.Service) {
				match = append(match, sd)
			}
		}
		switch {
		case len(match) == 0:
			if why, ok := sc.undescribed[spec.Service]; ok {
				return nil, fmt.Errorf("%s serves %s but reflection does not describe it: %s", sc.target, spec.Service, why)
			}
			var known []string
			for _, sd := range sc.services {
				known = append(known, string(sd.FullName()))
			}
			return nil, fmt.Errorf("%s has no service %s; it serves %s", sc.target, spec.Service, strings.Join(known, ", "))
		case len(match) > 1:
			var names []string
			for _, sd := range match {
				names = append(names, string(sd.FullName()))
			}
			return nil, fmt.Errorf("service %s is ambiguous on %s: %s; give its package", spec.Service, sc.target, strings.Join(names, ", "))
		}
		services = match
	}
	var found []protoreflect.MethodDescriptor
	for _, sd := range services {
		if md := sd.Methods().ByName(protoreflect.Name(spec.Method)); md != nil {
			found = append(found, md)
		}
	}
	switch len(found) {
	case 0:
		return nil, fmt.Errorf("%s has no method %s; its methods: %s", sc.target, spec, allMethods(services))
	case 1:
		return found[0], nil
	}
	var names []string
	for _, md := range found {
		names = append(names, methodName(md))
	}
	return nil, fmt.Errorf("method %s is ambiguous on %s: %s; name the service", spec.Method, sc.target, strings.Join(names, ", "))
}

// decodeRequests turns the JSON messages into md's input messages.
func (sc *schema) decodeRequests(md protoreflect.MethodDescriptor, requests []json.RawMessage) ([]proto.Message, error) {
	if !md.IsStreamingClient() && len(requests) != 1 {
		return nil, fmt.Errorf("REQUEST: %s takes one %s, got %d messages", methodName(md), md.Input().FullName(), len(requests))
	}
	opts := protojson.UnmarshalOptions{Resolver: sc.types}
	msgs := make([]proto.Message, 0, len(requests))
	for i, raw := range requests {
		m := dynamicpb.NewMessage(md.Input())
		if err := opts.Unmarshal(raw, m); err != nil {
			which := ""
			if len(requests) > 1 {
				which = fmt.Sprintf(" message %d", i+1)
			}
			return nil, fmt.Errorf("REQUEST%s does not fit %s: %w", which, md.Input().FullName(), err)
		}
		msgs = append(msgs, m)
	}
	return msgs, nil
}

// printMessage writes m as indented JSON. protojson's own indentation is
// deliberately unstable, so it is indented here.
func (sc *schema) printMessage(out io.Writer, m proto.Message) error {
	b, err := protojson.MarshalOptions{Resolver: sc.types}.Marshal(m)
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	if err := json.Indent(&buf, b, "", "  "); err != nil {
		return err
	}
	buf.WriteByte('\n')
	_, err = out.Write(buf.Bytes())
	return err
}

// servedByOf is m's top-level served_by string, which the example
// services fill with their instance key.
func servedByOf(m proto.Message) string {
	r := m.ProtoReflect()
	fd := r.Descriptor().Fields().ByName("served_by")
	if fd == nil || fd.Kind() != protoreflect.StringKind || fd.Cardinality() == protoreflect.Repeated {
		return ""
	}
	return r.Get(fd).String()
}

// identityOf is the server's pod identity as the connection verified it.
func identityOf(p *peer.Peer) string {
	if ai, ok := p.AuthInfo.(pod.AuthInfo); ok {
		return ai.Identity.String()
	}
	if pa, ok := p.Addr.(*pod.PeerAddr); ok {
		return pa.Identity.String()
	}
	return "the server"
}

// invoke calls md with msgs, printing answers to out and the summary to
// summary.
func invoke(ctx context.Context, cc *grpc.ClientConn, md protoreflect.MethodDescriptor, msgs []proto.Message, sc *schema, out, summary io.Writer) error {
	method := "/" + methodName(md)
	var p peer.Peer
	var last proto.Message
	n := 0
	start := time.Now()
	callErr := func(err error) error {
		if s, ok := status.FromError(err); ok {
			return fmt.Errorf("%s: %s: %s", methodName(md), s.Code(), s.Message())
		}
		return fmt.Errorf("%s: %w", methodName(md), err)
	}
	if !md.IsStreamingClient() && !md.IsStreamingServer() {
		resp := dynamicpb.NewMessage(md.Output())
		if err := cc.Invoke(ctx, method, msgs[0], resp, grpc.Peer(&p)); err != nil {
			return callErr(err)
		}
		if err := sc.printMessage(out, resp); err != nil {
			return err
		}
		last, n = resp, 1
	} else {
		sctx, cancel := context.WithCancel(ctx)
		defer cancel()
		desc := &grpc.StreamDesc{StreamName: string(md.Name()), ServerStreams: md.IsStreamingServer(), ClientStreams: md.IsStreamingClient()}
		st, err := cc.NewStream(sctx, desc, method, grpc.Peer(&p))
		if err != nil {
			return callErr(err)
		}
		// Sending runs beside receiving, so that a server that answers
		// while it reads (bidirectional streaming) is not stalled.
		sent := make(chan struct{})
		go func() {
			defer close(sent)
			for _, m := range msgs {
				if st.SendMsg(m) != nil {
					return // the stream ended; RecvMsg tells why
				}
			}
			_ = st.CloseSend()
		}()
		recvErr := func() error {
			for {
				resp := dynamicpb.NewMessage(md.Output())
				err := st.RecvMsg(resp)
				if errors.Is(err, io.EOF) {
					return nil
				}
				if err != nil {
					return callErr(err)
				}
				if err := sc.printMessage(out, resp); err != nil {
					return err
				}
				last = resp
				n++
				if !md.IsStreamingServer() {
					return nil // one answer, and the status came with it
				}
			}
		}()
		cancel() // ends a sender still blocked
		<-sent
		if recvErr != nil {
			return recvErr
		}
	}
	took := time.Since(start)
	plural := "s"
	if n == 1 {
		plural = ""
	}
	line := fmt.Sprintf("%s: %d message%s from %s", methodName(md), n, plural, identityOf(&p))
	if last != nil {
		if sb := servedByOf(last); sb != "" {
			line += " (served_by " + sb + ")"
		}
	}
	fmt.Fprintf(summary, "%s in %v\n", line, took.Round(10*time.Microsecond))
	return nil
}
