package server

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"

	p4v1 "github.com/p4lang/p4runtime/go/p4/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/dmsc-mesh/dmsc/p4rt/p4info"
)

// APIVersion is the P4Runtime version this server implements.
const APIVersion = "1.4.1"

// DefaultPacketInQueue is the per-stream packet-in queue length when
// Options.PacketInQueue is not set.
const DefaultPacketInQueue = 1024

// readChunk bounds the entities per ReadResponse, so a Read of a full FIB
// streams in pieces instead of one message the size of the table.
const readChunk = 1000

// Options configure a Server.
type Options struct {
	// DeviceID is the P4Runtime device id this server answers for. Requests
	// for any other id fail with NOT_FOUND.
	DeviceID uint64
	// Logger receives arbitration changes and errors. Nil discards.
	Logger *slog.Logger
	// PacketInQueue is the number of packet-ins queued per primary stream
	// before new ones are dropped (default DefaultPacketInQueue).
	PacketInQueue int
	// LegacyFailover applies the P4Runtime 1.0 arbitration rule: when the
	// primary's stream ends (or it downgrades itself), the live controller
	// with the next highest election id becomes primary at once. By default
	// the server follows 1.1 and later, where the role stays without a
	// primary until a controller advertises an election id at least as high
	// as any seen before.
	LegacyFailover bool
}

// Stats are counters for observability. All counts are since New.
type Stats struct {
	Writes       uint64 // Write RPCs that reached the batch (authorised, pipeline set)
	Updates      uint64 // updates applied
	UpdateErrors uint64 // updates that failed or were rolled back
	RPCErrors    uint64 // RPCs that failed as a whole (auth, device, pipeline, ...)
	Reads        uint64 // Read RPCs

	PacketOuts      uint64 // packet-outs handed to the target
	PacketOutErrors uint64 // packet-outs refused (not primary, bad metadata, target error)

	PacketIns              uint64 // packet-ins queued to a primary stream
	PacketInDropsNoPrimary uint64 // packet-ins dropped: no role had a primary
	PacketInDropsQueueFull uint64 // packet-ins dropped: a primary's queue was full

	StreamErrorsDropped uint64 // StreamError reports dropped because a client did not read them

	Streams int // live StreamChannel streams
}

// Server is the P4Runtime service over one Target. Create it with New,
// register it on a grpc.Server with Register, and Close it when done.
type Server struct {
	target Target
	opts   Options
	log    *slog.Logger

	// mu guards the pipelines and their state. Write and
	// SetForwardingPipelineConfig hold it exclusively, Read and
	// GetForwardingPipelineConfig shared. Lock order: mu, then arb.
	mu      sync.RWMutex
	running *pipeline // committed to the target; nil before the first commit
	saved   *pipeline // VERIFY_AND_SAVE'd and not committed yet, or nil
	keyBuf  []byte    // scratch for match keys, used under mu held exclusively

	// dataplane is the running pipeline's schema for the packet paths, which
	// must not wait for a long Write to release mu.
	dataplane atomic.Pointer[p4info.Schema]

	// arb guards roles, and the role and election fields of streams.
	arb       sync.Mutex
	roles     map[string]*role
	primaries atomic.Pointer[[]*stream] // copy-on-write: read by every packet-in

	// life guards closed and the WaitGroup's Add, so that Close never races a
	// stream that is just starting.
	life    sync.Mutex
	closed  bool
	closing chan struct{}
	wg      sync.WaitGroup // stream handlers and their receive goroutines
	once    sync.Once

	stats counters
}

type counters struct {
	writes, updates, updateErrors, rpcErrors, reads atomic.Uint64
	packetOuts, packetOutErrors                     atomic.Uint64
	packetIns, dropNoPrimary, dropQueueFull         atomic.Uint64
	streamErrorsDropped                             atomic.Uint64
	streams                                         atomic.Int64
}

// New returns a Server for target and registers its packet-in sink with the
// target. The server has no pipeline until a controller sets one.
func New(target Target, opts Options) *Server {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.PacketInQueue <= 0 {
		opts.PacketInQueue = DefaultPacketInQueue
	}
	s := &Server{
		target:  target,
		opts:    opts,
		log:     opts.Logger,
		roles:   map[string]*role{},
		closing: make(chan struct{}),
	}
	s.primaries.Store(&[]*stream{})
	target.SetPacketInSink(s.packetIn)
	if r, ok := target.(PortStatusReporter); ok {
		r.SetPortStatusSink(s.portStatus)
	}
	return s
}

// Register registers the P4Runtime service on r (a *grpc.Server).
func (s *Server) Register(r grpc.ServiceRegistrar) {
	r.RegisterService(serviceDesc(), &service{s: s})
}

// Close ends every StreamChannel (clients see UNAVAILABLE), refuses new ones,
// stops packet-in delivery and waits for the stream goroutines to finish.
// Unary RPCs keep working: stop the grpc.Server for that. Call Close before
// grpc.Server.GracefulStop, which waits for streams to end. A stream whose
// client has stopped reading while the server is sending to it ends only
// when gRPC gives up on the connection (or the grpc.Server is stopped).
func (s *Server) Close() {
	s.once.Do(func() {
		s.life.Lock()
		s.closed = true
		close(s.closing)
		s.life.Unlock()
		s.target.SetPacketInSink(nil)
		if r, ok := s.target.(PortStatusReporter); ok {
			r.SetPortStatusSink(nil)
		}
		s.wg.Wait()
	})
}

// Stats returns a snapshot of the counters.
func (s *Server) Stats() Stats {
	c := &s.stats
	return Stats{
		Writes:                 c.writes.Load(),
		Updates:                c.updates.Load(),
		UpdateErrors:           c.updateErrors.Load(),
		RPCErrors:              c.rpcErrors.Load(),
		Reads:                  c.reads.Load(),
		PacketOuts:             c.packetOuts.Load(),
		PacketOutErrors:        c.packetOutErrors.Load(),
		PacketIns:              c.packetIns.Load(),
		PacketInDropsNoPrimary: c.dropNoPrimary.Load(),
		PacketInDropsQueueFull: c.dropQueueFull.Load(),
		StreamErrorsDropped:    c.streamErrorsDropped.Load(),
		Streams:                int(c.streams.Load()),
	}
}

// service adapts Server to the generated interface, so that the RPC handlers
// do not become part of Server's exported API. Register serves it through
// serviceDesc; it also works with the generated descriptor
// (p4v1.RegisterP4RuntimeServer), which BenchmarkWrite1000Generic uses as
// the baseline for decodeWrite.
type service struct {
	p4v1.UnimplementedP4RuntimeServer
	s *Server
}

func (v *service) Write(ctx context.Context, req *p4v1.WriteRequest) (*p4v1.WriteResponse, error) {
	return v.s.write(req)
}

func (v *service) Read(req *p4v1.ReadRequest, stream p4v1.P4Runtime_ReadServer) error {
	return v.s.read(req, stream)
}

func (v *service) SetForwardingPipelineConfig(ctx context.Context, req *p4v1.SetForwardingPipelineConfigRequest) (*p4v1.SetForwardingPipelineConfigResponse, error) {
	return v.s.setPipeline(req)
}

func (v *service) GetForwardingPipelineConfig(ctx context.Context, req *p4v1.GetForwardingPipelineConfigRequest) (*p4v1.GetForwardingPipelineConfigResponse, error) {
	return v.s.getPipeline(req)
}

func (v *service) StreamChannel(stream p4v1.P4Runtime_StreamChannelServer) error {
	return v.s.streamChannel(stream)
}

func (v *service) Capabilities(context.Context, *p4v1.CapabilitiesRequest) (*p4v1.CapabilitiesResponse, error) {
	return &p4v1.CapabilitiesResponse{P4RuntimeApiVersion: APIVersion}, nil
}

// checkDevice answers NOT_FOUND for any device but ours.
func (s *Server) checkDevice(id uint64) error {
	if id != s.opts.DeviceID {
		return status.Errorf(codes.NotFound, "unknown device_id %d (this server is device %d)", id, s.opts.DeviceID)
	}
	return nil
}

// current is the pipeline Reads and Writes refer to: the saved one between
// VERIFY_AND_SAVE and COMMIT, the running one otherwise. Call with mu held.
func (s *Server) current() *pipeline {
	if s.saved != nil {
		return s.saved
	}
	return s.running
}

func (s *Server) rpcError(err error) error {
	s.stats.rpcErrors.Add(1)
	return err
}
