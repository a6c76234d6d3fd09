// Package p4rt is DMSC's P4Runtime v1.4 client: arbitration, pipeline
// configuration, batched writes with per-update errors, wildcard reads,
// packet-in/out with metadata by name, and builders that address tables,
// actions and fields by their P4Info names. The controller agent drives BMv2,
// Tofino and the Go software switch through it alike.
package p4rt

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	p4v1 "github.com/p4lang/p4runtime/go/p4/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/dmsc-mesh/dmsc/p4rt/p4info"
	"github.com/dmsc-mesh/dmsc/p4rt/portstatus"
)

// ElectionID is P4Runtime's 128-bit election id.
type ElectionID struct{ High, Low uint64 }

func (e ElectionID) proto() *p4v1.Uint128 { return &p4v1.Uint128{High: e.High, Low: e.Low} }

// Backoff paces reconnection attempts: Initial, multiplied by Multiplier after
// each failure up to Max, each wait randomized by ±Jitter (a fraction).
type Backoff struct {
	Initial    time.Duration
	Max        time.Duration
	Multiplier float64
	Jitter     float64
}

// DefaultBackoff retries quickly at first (a switch restarting) and settles
// at one attempt every 5 s.
var DefaultBackoff = Backoff{Initial: 100 * time.Millisecond, Max: 5 * time.Second, Multiplier: 2, Jitter: 0.2}

func (b Backoff) next(prev time.Duration) time.Duration {
	d := time.Duration(float64(prev) * b.Multiplier)
	if prev == 0 {
		d = b.Initial
	}
	d = min(d, b.Max)
	return d
}

func (b Backoff) jittered(d time.Duration) time.Duration {
	if b.Jitter <= 0 {
		return d
	}
	f := 1 + b.Jitter*(2*rand.Float64()-1)
	return time.Duration(float64(d) * f)
}

// Options configure a Client.
type Options struct {
	DeviceID   uint64
	ElectionID ElectionID
	// Role is the P4Runtime role name; empty is the default role.
	Role   string
	Logger *slog.Logger
	// Backoff paces stream reconnection; zero fields take DefaultBackoff's.
	Backoff Backoff
	// DialOptions are used by Dial; without any, the connection is insecure.
	DialOptions []grpc.DialOption
	// BatchSize splits a Write into RPCs of at most this many updates
	// (default 1000).
	BatchSize int
	// PacketInBuffer is how many packet-ins wait for the reader before new
	// ones are dropped and counted (default 1024).
	PacketInBuffer int
}

// RoleState is the client's standing with the switch.
type RoleState int

// Role states.
const (
	Disconnected RoleState = iota // no stream, or no arbitration answer yet
	Backup                        // another controller is primary, or none is
	Primary
)

func (r RoleState) String() string {
	switch r {
	case Primary:
		return "primary"
	case Backup:
		return "backup"
	}
	return "disconnected"
}

// Client is a P4Runtime client of one device. Its methods are safe for
// concurrent use.
type Client struct {
	opts  Options
	log   *slog.Logger
	conn  *grpc.ClientConn // owned when made by Dial
	rpc   p4v1.P4RuntimeClient
	cctx  context.Context
	close context.CancelFunc
	done  chan struct{}

	mu      sync.Mutex
	role    RoleState
	schema  *p4info.Schema
	stream  p4v1.P4Runtime_StreamChannelClient
	sendMu  sync.Mutex // serializes Send on the stream
	waiters []chan struct{}

	roleCh    chan RoleState
	packetIns chan PacketIn
	ports     chan portstatus.Status
	streamErr chan error

	packetInsDropped atomic.Uint64
	streamErrors     atomic.Uint64
}

// Dial connects to the P4Runtime server at addr and starts arbitration.
func Dial(ctx context.Context, addr string, opts Options) (*Client, error) {
	dopts := opts.DialOptions
	if len(dopts) == 0 {
		dopts = []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	}
	conn, err := grpc.NewClient(addr, dopts...)
	if err != nil {
		return nil, fmt.Errorf("p4rt: dial %s: %w", addr, err)
	}
	c := New(conn, opts)
	c.conn = conn
	return c, nil
}

// New starts a client on an existing connection, which stays the caller's.
func New(conn grpc.ClientConnInterface, opts Options) *Client {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.BatchSize <= 0 {
		opts.BatchSize = 1000
	}
	if opts.PacketInBuffer <= 0 {
		opts.PacketInBuffer = 1024
	}
	b := &opts.Backoff
	if b.Initial <= 0 {
		b.Initial = DefaultBackoff.Initial
	}
	if b.Max <= 0 {
		b.Max = DefaultBackoff.Max
	}
	if b.Multiplier < 1 {
		b.Multiplier = DefaultBackoff.Multiplier
	}
	ctx, cancel := context.WithCancel(context.Background())
	c := &Client{
		opts:      opts,
		log:       opts.Logger.With("device_id", opts.DeviceID),
		rpc:       p4v1.NewP4RuntimeClient(conn),
		cctx:      ctx,
		close:     cancel,
		done:      make(chan struct{}),
		roleCh:    make(chan RoleState, 1),
		packetIns: make(chan PacketIn, opts.PacketInBuffer),
		ports:     make(chan portstatus.Status, portStatusBuffer),
		streamErr: make(chan error, 16),
	}
	go c.run()
	return c
}

// Close stops the stream (giving up primary) and, for a Dial'ed client, the
// connection. It waits for the client's goroutine.
func (c *Client) Close() error {
	c.close()
	<-c.done
	if c.conn != nil {
		return c.conn.Close()
	}
	return nil
}

// Role returns the current role state.
func (c *Client) Role() RoleState {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.role
}

// RoleChanges delivers the latest role state whenever it changes; a slow
// reader sees only the newest state. The agent watches it to notice that it
// lost primary.
func (c *Client) RoleChanges() <-chan RoleState { return c.roleCh }

// StreamErrors delivers StreamError messages from the server (a rejected
// packet-out, for instance) as errors; when nobody reads them they are
// dropped after being counted and logged.
func (c *Client) StreamErrors() <-chan error { return c.streamErr }

// Stats reports what the client dropped.
func (c *Client) Stats() (packetInsDropped, streamErrors uint64) {
	return c.packetInsDropped.Load(), c.streamErrors.Load()
}

// WaitPrimary blocks until the client is primary or ctx ends.
func (c *Client) WaitPrimary(ctx context.Context) error {
	for {
		c.mu.Lock()
		if c.role == Primary {
			c.mu.Unlock()
			return nil
		}
		ch := make(chan struct{})
		c.waiters = append(c.waiters, ch)
		c.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("p4rt: waiting to become primary: %w", ctx.Err())
		case <-c.cctx.Done():
			return errors.New("p4rt: client closed")
		}
	}
}

// Schema returns the P4Info index set by SetPipeline, VerifyOrPush or
// UseSchema, or nil.
func (c *Client) Schema() *p4info.Schema {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.schema
}

// UseSchema sets the P4Info the client encodes packet metadata and builds
// entries with, when the pipeline was pushed by someone else.
func (c *Client) UseSchema(s *p4info.Schema) {
	c.mu.Lock()
	c.schema = s
	c.mu.Unlock()
}

func (c *Client) setRole(r RoleState) {
	c.mu.Lock()
	changed := c.role != r
	c.role = r
	var waiters []chan struct{}
	if r == Primary {
		waiters, c.waiters = c.waiters, nil
	}
	c.mu.Unlock()
	for _, w := range waiters {
		close(w)
	}
	if !changed {
		return
	}
	c.log.Info("P4Runtime role", "role", r.String())
	// Keep only the newest state in the channel.
	select {
	case <-c.roleCh:
	default:
	}
	select {
	case c.roleCh <- r:
	default:
	}
}

// run keeps a StreamChannel open and arbitrated until Close.
func (c *Client) run() {
	defer close(c.done)
	var wait time.Duration
	for {
		start := time.Now()
		err := c.session()
		c.setRole(Disconnected)
		if c.cctx.Err() != nil {
			return
		}
		if time.Since(start) > c.opts.Backoff.Max {
			wait = 0 // the stream was up for a while: start over quickly
		}
		wait = c.opts.Backoff.next(wait)
		d := c.opts.Backoff.jittered(wait)
		c.log.Warn("P4Runtime stream down, reconnecting", "err", err, "retry_in", d)
		select {
		case <-time.After(d):
		case <-c.cctx.Done():
			return
		}
	}
}

// session runs one stream: arbitrate, then read until it fails.
func (c *Client) session() error {
	stream, err := c.rpc.StreamChannel(c.cctx)
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.stream = stream
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		c.stream = nil
		c.mu.Unlock()
	}()
	if err := c.send(stream, &p4v1.StreamMessageRequest{Update: &p4v1.StreamMessageRequest_Arbitration{Arbitration: c.arbitration()}}); err != nil {
		return err
	}
	for {
		msg, err := stream.Recv()
		if err != nil {
			return err
		}
		switch u := msg.Update.(type) {
		case *p4v1.StreamMessageResponse_Arbitration:
			c.onArbitration(u.Arbitration)
		case *p4v1.StreamMessageResponse_Packet:
			c.onPacketIn(u.Packet)
		case *p4v1.StreamMessageResponse_Error:
			c.onStreamError(u.Error)
		case *p4v1.StreamMessageResponse_Other:
			c.onOther(u.Other)
		}
	}
}

func (c *Client) arbitration() *p4v1.MasterArbitrationUpdate {
	a := &p4v1.MasterArbitrationUpdate{DeviceId: c.opts.DeviceID, ElectionId: c.opts.ElectionID.proto()}
	if c.opts.Role != "" {
		a.Role = &p4v1.Role{Name: c.opts.Role}
	}
	return a
}

func (c *Client) onArbitration(a *p4v1.MasterArbitrationUpdate) {
	st := status.FromProto(a.GetStatus())
	switch {
	case st.Code() == codes.OK:
		c.setRole(Primary)
	case st.Code() == codes.AlreadyExists || st.Code() == codes.NotFound:
		c.setRole(Backup)
	default:
		c.log.Warn("arbitration refused", "code", st.Code(), "msg", st.Message())
		c.setRole(Backup)
	}
}

func (c *Client) onStreamError(e *p4v1.StreamError) {
	c.streamErrors.Add(1)
	err := status.Error(codes.Code(e.CanonicalCode), e.Message)
	c.log.Warn("P4Runtime stream error", "err", err)
	select {
	case c.streamErr <- err:
	default:
	}
}

func (c *Client) send(stream p4v1.P4Runtime_StreamChannelClient, m *p4v1.StreamMessageRequest) error {
	c.sendMu.Lock()
	defer c.sendMu.Unlock()
	return stream.Send(m)
}

// requireSchema returns the schema or a clear error.
func (c *Client) requireSchema() (*p4info.Schema, error) {
	if s := c.Schema(); s != nil {
		return s, nil
	}
	return nil, errors.New("p4rt: no P4Info: call SetPipeline, VerifyOrPush or UseSchema first")
}
