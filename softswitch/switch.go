package softswitch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	p4v1 "github.com/p4lang/p4runtime/go/p4/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/dmsc-mesh/dmsc/p4"
	"github.com/dmsc-mesh/dmsc/p4rt/p4info"
	"github.com/dmsc-mesh/dmsc/p4rt/server"
	"github.com/dmsc-mesh/dmsc/wire"
)

// Config configures a Switch. The zero value works.
type Config struct {
	// Logger receives the switch's logs; nil discards them.
	Logger *slog.Logger
	// BatchSize is how many frames a receive loop reads at once (default 64).
	BatchSize int
	// FrameSize is the receive buffer per frame (default 2048, enough for a
	// 1500-byte MTU). Longer frames are dropped by the port and counted in
	// its errors; raise it for jumbo frames.
	FrameSize int
	// PuntQueue is how many packet-ins may wait for the sink (default 1024);
	// beyond that they are dropped and counted (Stats.PuntDropped).
	PuntQueue int
	// Now is the clock of probe timestamps (default time.Now).
	Now func() time.Time
}

const (
	defaultBatch     = 64
	defaultFrameSize = 2048
	defaultPuntQueue = 1024
)

// Switch is the software switch. It implements server.Target.
type Switch struct {
	log       *slog.Logger
	batch     int
	frameSize int
	now       func() time.Time

	snap atomic.Pointer[snapshot] // nil until CommitPipeline
	wmu  sync.Mutex               // serializes CommitPipeline and Apply

	sink        atomic.Pointer[func(*p4v1.PacketIn)]
	statusSink  atomic.Pointer[func(port uint32, up bool)]
	punts       chan *p4v1.PacketIn
	puntDropped atomic.Uint64

	pmu     sync.Mutex // guards the port table's writers and the run state
	ports   atomic.Pointer[portTable]
	running bool
	closed  bool
}

var _ server.Target = (*Switch)(nil)

// portTable is indexed by port number; copied on write.
type portTable [p4.MaxPorts]*portEntry

type portEntry struct {
	num  uint16
	port Port
	up   atomic.Bool
	imp  atomic.Pointer[impairer]
	st   portStats

	// The receive loop while Run runs; guarded by Switch.pmu.
	stop chan struct{}
	done chan struct{}
}

type portStats struct {
	rxFrames, rxBytes, rxNoPipeline atomic.Uint64
	txFrames, txBytes, txErrors     atomic.Uint64
	down, impairLoss, queueFull     atomic.Uint64
}

// PortStats are a port's own counters, beside the pipeline's port_rx and
// port_tx: what actually crossed the link.
type PortStats struct {
	Up         bool
	Impairment Impairment
	RxFrames   uint64 // frames read from the link
	RxBytes    uint64
	// RxNoPipeline counts frames read before any pipeline was committed.
	RxNoPipeline uint64
	// RxErrors counts frames the link could not deliver whole (longer than
	// Config.FrameSize), for the ports that know (UDP, interface).
	RxErrors uint64
	TxFrames uint64 // frames the link took
	TxBytes  uint64
	// TxErrors counts frames the link refused (a full memory link, a UDP
	// peer that is down, a kernel error).
	TxErrors uint64
	// TxDown, TxImpairLoss and TxQueueFull count frames lost for drop reasons
	// PortDown, Impairment and QueueFull on this port.
	TxDown, TxImpairLoss, TxQueueFull uint64
}

// New returns a switch without pipeline or ports.
func New(cfg Config) *Switch {
	s := &Switch{
		log:       cfg.Logger,
		batch:     cfg.BatchSize,
		frameSize: cfg.FrameSize,
		now:       cfg.Now,
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.batch <= 0 {
		s.batch = defaultBatch
	}
	if s.frameSize <= 0 {
		s.frameSize = defaultFrameSize
	}
	if s.now == nil {
		s.now = time.Now
	}
	q := cfg.PuntQueue
	if q <= 0 {
		q = defaultPuntQueue
	}
	s.punts = make(chan *p4v1.PacketIn, q)
	s.ports.Store(&portTable{})
	return s
}

// pipeline returns the committed pipeline, or nil.
func (s *Switch) pipeline() *pipeline {
	if sn := s.snap.Load(); sn != nil {
		return sn.pipe
	}
	return nil
}

// VerifyPipeline implements server.Target: the P4Info must name every table,
// action, field, selector, counter and controller header of dmsc.p4 with the
// widths the pipeline uses. The device config is not needed and not read.
func (s *Switch) VerifyPipeline(schema *p4info.Schema, deviceConfig []byte) error {
	_, err := resolveIDs(schema)
	return err
}

// CommitPipeline implements server.Target. Entries, members, groups and
// counters start empty.
func (s *Switch) CommitPipeline(schema *p4info.Schema, deviceConfig []byte) error {
	x, err := resolveIDs(schema)
	if err != nil {
		return err
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.snap.Store(newSnapshot(&pipeline{schema: schema, ids: x}))
	s.log.Info("pipeline committed", "tables", len(schema.Tables()))
	return nil
}

var errNoPipeline = status.Error(codes.FailedPrecondition, "softswitch: no pipeline committed")

// Apply implements server.Target. The whole call becomes one snapshot: the
// data plane sees either none or all of its successful changes. With atomic,
// a failure anywhere applies nothing; errs then holds the failures and
// ABORTED for the changes that were valid but rolled back.
func (s *Switch) Apply(changes []server.Change, atomic bool) []error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	cur := s.snap.Load()
	if cur == nil {
		errs := make([]error, len(changes))
		for i := range errs {
			errs[i] = errNoPipeline
		}
		return errs
	}
	t := newTxn(cur)
	var errs []error
	for i, ch := range changes {
		if err := t.apply(ch); err != nil {
			if errs == nil {
				errs = make([]error, len(changes))
			}
			errs[i] = err
		}
	}
	if errs != nil && atomic {
		for i := range errs {
			if errs[i] == nil {
				errs[i] = status.Error(codes.Aborted, "not applied: another change of the atomic batch failed")
			}
		}
		return errs
	}
	s.snap.Store(t.finish())
	return errs
}

// DirectCounter implements server.Target for the FIB tables' counters.
func (s *Switch) DirectCounter(entry *p4v1.TableEntry) (*p4v1.CounterData, error) {
	sn := s.snap.Load()
	if sn == nil {
		return nil, errNoPipeline
	}
	if entry == nil {
		return nil, status.Error(codes.InvalidArgument, "no table entry")
	}
	x := sn.pipe.ids
	i := x.fibIndex(entry.TableId)
	if i < 0 {
		return nil, status.Errorf(codes.InvalidArgument, "table id %d has no direct counter", entry.TableId)
	}
	fib := p4.FIBTables[i]
	k, err := exactKey(entry, fib.Name, mspec{x.fibKey[i], int32(fib.PrefixLen), p4.FieldDstKey})
	if err != nil {
		return nil, err
	}
	var key [16]byte
	putBE(key[:fib.PrefixLen/8], k[0])
	var e *fibEntry
	switch i {
	case fib128:
		e, _ = sn.fib128.get(key)
	case fib96:
		e, _ = sn.fib96.get([12]byte(key[:12]))
	case fib64:
		e, _ = sn.fib64.get(beUint(key[:8]))
	case fib32:
		e, _ = sn.fib32.get(uint32(beUint(key[:4])))
	}
	if e == nil {
		return nil, status.Errorf(codes.NotFound, "%s: no entry for key 0x%x", fib.Name, k[0])
	}
	pk, by := e.ctr.load()
	return &p4v1.CounterData{PacketCount: int64(pk), ByteCount: int64(by)}, nil
}

// Counter implements server.Target for port_rx, port_tx and drop_counter.
func (s *Switch) Counter(counterID uint32, index int64) (*p4v1.CounterData, error) {
	sn := s.snap.Load()
	if sn == nil {
		return nil, errNoPipeline
	}
	pipe := sn.pipe
	var cells []counterCell
	switch counterID {
	case pipe.ids.ctrPortRx:
		cells = pipe.portRx[:]
	case pipe.ids.ctrPortTx:
		cells = pipe.portTx[:]
	case pipe.ids.ctrDrop:
		cells = pipe.drops[:]
	default:
		return nil, status.Errorf(codes.NotFound, "unknown counter id %d", counterID)
	}
	size := int64(len(cells))
	if c, ok := pipe.schema.CounterByID(counterID); ok && c.Size > size {
		size = c.Size
	}
	if index < 0 || index >= size {
		return nil, status.Errorf(codes.OutOfRange, "counter index %d not in [0, %d)", index, size)
	}
	if index >= int64(len(cells)) {
		return &p4v1.CounterData{}, nil // declared bigger than the pipeline uses
	}
	pk, by := cells[index].load()
	return &p4v1.CounterData{PacketCount: int64(pk), ByteCount: int64(by)}, nil
}

// DropCount returns drop_counter[reason]: a shortcut for tests and status
// pages.
func (s *Switch) DropCount(reason wire.DropReason) (packets, bytes uint64) {
	pipe := s.pipeline()
	if pipe == nil || int(reason) >= len(pipe.drops) {
		return 0, 0
	}
	return pipe.drops[reason].load()
}

// PortCounters returns port_rx[port] and port_tx[port] packets.
func (s *Switch) PortCounters(port uint16) (rx, tx uint64) {
	pipe := s.pipeline()
	if pipe == nil || int(port) >= p4.MaxPorts {
		return 0, 0
	}
	rx, _ = pipe.portRx[port].load()
	tx, _ = pipe.portTx[port].load()
	return rx, tx
}

// SetPacketInSink implements server.Target.
func (s *Switch) SetPacketInSink(sink func(*p4v1.PacketIn)) {
	if sink == nil {
		s.sink.Store(nil)
		return
	}
	s.sink.Store(&sink)
}

// SetPortStatusSink implements server.PortStatusReporter: sink hears of
// every port that SetPortUp takes down or brings up.
func (s *Switch) SetPortStatusSink(sink func(port uint32, up bool)) {
	if sink == nil {
		s.statusSink.Store(nil)
		return
	}
	s.statusSink.Store(&sink)
}

// PacketOut implements server.Target: mode 0 sends the payload out of
// egress_port unchanged; any other mode runs it through the pipeline as if
// received from the CPU port (port_role and src_guard skipped).
func (s *Switch) PacketOut(pkt *p4v1.PacketOut) error {
	sn := s.snap.Load()
	if sn == nil {
		return errNoPipeline
	}
	if pkt == nil {
		return status.Error(codes.InvalidArgument, "no packet")
	}
	x := sn.pipe.ids
	var egress, mode uint64
	for _, m := range pkt.Metadata {
		if m == nil {
			continue
		}
		switch m.MetadataId {
		case x.poutEgressPort:
			if err := fits(m.Value, 16, "packet_out.egress_port"); err != nil {
				return err
			}
			egress = beUint(m.Value)
		case x.poutMode:
			if err := fits(m.Value, 16, "packet_out.mode"); err != nil {
				return err
			}
			mode = beUint(m.Value)
		default:
			return status.Errorf(codes.InvalidArgument, "packet_out: unknown metadata id %d", m.MetadataId)
		}
	}
	frame := slices.Clone(pkt.Payload) // the pipeline rewrites it
	ilen := uint64(len(frame)) + packetOutLen
	pipe := sn.pipe

	v := verdict{kind: vOut, port: uint16(egress) & (p4.MaxPorts - 1)} // (port_t) cast: 9 bits
	if mode != p4.OutDirect {
		v = ingress(sn, p4.CPUPort, frame, ilen, true, &work{now: s.now})
	}
	switch v.kind {
	case vPunt:
		pipe.portTx[p4.CPUPort].add(1, ilen)
		s.punt(pipe, p4.CPUPort, uint16(v.reason), frame, true)
	case vOut:
		if v.port == dropPort {
			pipe.drops[dropPortDown].add(1, uint64(len(frame)))
			return nil
		}
		pipe.portTx[v.port].add(1, ilen)
		if v.port == p4.CPUPort {
			s.toCPURaw(pipe, frame, true)
			return nil
		}
		s.output(pipe, v.port, []Message{{Buf: frame, N: len(frame)}})
	}
	return nil
}

// punt builds a packet-in: the frame with packet_in.ingress_port and reason.
// From a receive loop (direct false) it is queued for the sink goroutine;
// from PacketOut it goes to the sink at once.
func (s *Switch) punt(pipe *pipeline, ingressPort, reason uint16, frame []byte, direct bool) {
	x := pipe.ids
	pin := &p4v1.PacketIn{
		Payload: slices.Clone(frame),
		Metadata: []*p4v1.PacketMetadata{
			{MetadataId: x.pinIngressPort, Value: p4info.Uint(uint64(ingressPort))},
			{MetadataId: x.pinReason, Value: p4info.Uint(uint64(reason))},
		},
	}
	s.deliver(pin, direct)
}

// toCPURaw handles a frame sent to the CPU port without a packet_in header
// (set_nexthop or a direct packet-out naming port 255). BMv2's P4Runtime
// server reads the packet_in header from the first bytes of whatever reaches
// the CPU port, so the controller sees the frame's first four bytes as
// ingress_port and reason. Do the same, so the two targets agree even here.
func (s *Switch) toCPURaw(pipe *pipeline, frame []byte, direct bool) {
	if len(frame) < packetOutLen {
		s.puntDropped.Add(1)
		return
	}
	x := pipe.ids
	pin := &p4v1.PacketIn{
		Payload: slices.Clone(frame[4:]),
		Metadata: []*p4v1.PacketMetadata{
			{MetadataId: x.pinIngressPort, Value: p4info.Canonical(slices.Clone(frame[0:2]))},
			{MetadataId: x.pinReason, Value: p4info.Canonical(slices.Clone(frame[2:4]))},
		},
	}
	s.deliver(pin, direct)
}

func (s *Switch) deliver(pin *p4v1.PacketIn, direct bool) {
	if direct {
		if sink := s.sink.Load(); sink != nil {
			(*sink)(pin)
		} else {
			s.puntDropped.Add(1)
		}
		return
	}
	select {
	case s.punts <- pin:
	default:
		s.puntDropped.Add(1)
	}
}

// output hands frames to egress port num: its impairment, or the port.
func (s *Switch) output(pipe *pipeline, num uint16, ms []Message) {
	pe := s.ports.Load()[num]
	if pe == nil || !pe.up.Load() {
		countDown(pipe, pe, ms)
		return
	}
	if im := pe.imp.Load(); im != nil {
		im.enqueue(ms)
		return
	}
	s.write(pe, ms)
}

// send is the impairment queue's way out: the port may have gone down while
// the frames waited.
func (s *Switch) send(pe *portEntry, ms []Message) {
	if len(ms) == 0 {
		return
	}
	if !pe.up.Load() {
		countDown(s.pipeline(), pe, ms)
		return
	}
	s.write(pe, ms)
}

func countDown(pipe *pipeline, pe *portEntry, ms []Message) {
	var bytes uint64
	for i := range ms {
		bytes += uint64(ms[i].N)
	}
	if pipe != nil {
		pipe.drops[dropPortDown].add(uint64(len(ms)), bytes)
	}
	if pe != nil {
		pe.st.down.Add(uint64(len(ms)))
	}
}

func (s *Switch) write(pe *portEntry, ms []Message) {
	n, err := pe.port.WriteBatch(ms)
	if n > 0 {
		var bytes uint64
		for i := range ms[:n] {
			bytes += uint64(ms[i].N)
		}
		pe.st.txFrames.Add(uint64(n))
		pe.st.txBytes.Add(bytes)
	}
	if n < len(ms) {
		pe.st.txErrors.Add(uint64(len(ms) - n))
	}
	if err != nil && !errors.Is(err, net.ErrClosed) {
		s.log.Debug("port write", "port", pe.num, "err", err)
	}
}

// Stats are switch-wide counters outside the P4 program.
type Stats struct {
	// PuntDropped counts packet-ins lost: no sink, or the sink's queue full.
	PuntDropped uint64
}

// Stats returns switch-wide counters.
func (s *Switch) Stats() Stats {
	return Stats{PuntDropped: s.puntDropped.Load()}
}

// checkPortNum refuses the CPU port, v1model's drop port and numbers beyond
// the 9-bit port space.
func checkPortNum(num uint16) error {
	switch {
	case num >= p4.MaxPorts:
		return fmt.Errorf("softswitch: port %d: ports are 0-%d", num, p4.MaxPorts-2)
	case num == p4.CPUPort:
		return fmt.Errorf("softswitch: port %d is the CPU port", num)
	case num == dropPort:
		return fmt.Errorf("softswitch: port %d is v1model's drop port", num)
	}
	return nil
}

// AddPort attaches p as port num, up. The switch owns p from now on: it
// closes it on RemovePort and Close. While Run runs, the port's receive loop
// starts at once.
func (s *Switch) AddPort(num uint16, p Port) error {
	if err := checkPortNum(num); err != nil {
		return err
	}
	if p == nil {
		return fmt.Errorf("softswitch: port %d: nil port", num)
	}
	s.pmu.Lock()
	defer s.pmu.Unlock()
	if s.closed {
		return errors.New("softswitch: closed")
	}
	old := s.ports.Load()
	if old[num] != nil {
		return fmt.Errorf("softswitch: port %d already exists", num)
	}
	pe := &portEntry{num: num, port: p}
	pe.up.Store(true)
	next := *old
	next[num] = pe
	s.ports.Store(&next)
	if s.running {
		s.startLoop(pe)
	}
	s.log.Info("port added", "port", num, "link", fmt.Sprint(p))
	return nil
}

// RemovePort stops port num's receive loop and impairment, closes the port
// and forgets it. Frames still queued in its impairment are discarded.
func (s *Switch) RemovePort(num uint16) error {
	s.pmu.Lock()
	defer s.pmu.Unlock()
	old := s.ports.Load()
	if int(num) >= len(old) || old[num] == nil {
		return fmt.Errorf("softswitch: no port %d", num)
	}
	pe := old[num]
	next := *old
	next[num] = nil
	s.ports.Store(&next)
	s.stopLoop(pe)
	if im := pe.imp.Swap(nil); im != nil {
		im.close(false)
	}
	err := pe.port.Close()
	s.log.Info("port removed", "port", num)
	return err
}

func (s *Switch) portEntry(num uint16) (*portEntry, error) {
	if int(num) >= p4.MaxPorts {
		return nil, fmt.Errorf("softswitch: no port %d", num)
	}
	pe := s.ports.Load()[num]
	if pe == nil {
		return nil, fmt.Errorf("softswitch: no port %d", num)
	}
	return pe, nil
}

// SetPortUp brings port num up or down. Frames to a down port are dropped
// (reason PortDown); frames received on it are discarded, as by a NIC whose
// link is down.
func (s *Switch) SetPortUp(num uint16, up bool) error {
	pe, err := s.portEntry(num)
	if err != nil {
		return err
	}
	if pe.up.Swap(up) != up {
		s.log.Info("port state", "port", num, "up", up)
		if sink := s.statusSink.Load(); sink != nil {
			(*sink)(uint32(num), up)
		}
	}
	return nil
}

// SetImpairment sets the egress impairment of port num; the zero Impairment
// removes it, sending what it still holds at once.
func (s *Switch) SetImpairment(num uint16, im Impairment) error {
	if err := im.Validate(); err != nil {
		return fmt.Errorf("softswitch: port %d impairment: %w", num, err)
	}
	s.pmu.Lock()
	defer s.pmu.Unlock()
	pe, err := s.portEntry(num)
	if err != nil {
		return err
	}
	cur := pe.imp.Load()
	switch {
	case im.IsZero():
		if cur != nil {
			pe.imp.Store(nil)
			cur.close(true)
		}
	case cur != nil:
		cur.setConfig(im)
	default:
		pe.imp.Store(newImpairer(s, pe, im, s.frameSize))
	}
	s.log.Info("port impairment", "port", num, "impairment", im.String())
	return nil
}

// PortStats returns port num's own counters.
func (s *Switch) PortStats(num uint16) (PortStats, error) {
	pe, err := s.portEntry(num)
	if err != nil {
		return PortStats{}, err
	}
	st := PortStats{
		Up:           pe.up.Load(),
		RxFrames:     pe.st.rxFrames.Load(),
		RxBytes:      pe.st.rxBytes.Load(),
		RxNoPipeline: pe.st.rxNoPipeline.Load(),
		TxFrames:     pe.st.txFrames.Load(),
		TxBytes:      pe.st.txBytes.Load(),
		TxErrors:     pe.st.txErrors.Load(),
		TxDown:       pe.st.down.Load(),
		TxImpairLoss: pe.st.impairLoss.Load(),
		TxQueueFull:  pe.st.queueFull.Load(),
	}
	if ep, ok := pe.port.(interface{ Errors() (rx, tx uint64) }); ok {
		st.RxErrors, _ = ep.Errors()
	}
	if im := pe.imp.Load(); im != nil {
		im.mu.Lock()
		st.Impairment = im.cfg
		im.mu.Unlock()
	}
	return st, nil
}

// Ports lists the port numbers in use.
func (s *Switch) Ports() []uint16 {
	var out []uint16
	for i, pe := range s.ports.Load() {
		if pe != nil {
			out = append(out, uint16(i))
		}
	}
	return out
}

// Run forwards until ctx ends: one receive loop per port (ports added while
// it runs get theirs at once) and the packet-in goroutine. It returns when
// everything it started has stopped. The ports stay open; Close closes them.
func (s *Switch) Run(ctx context.Context) error {
	s.pmu.Lock()
	switch {
	case s.closed:
		s.pmu.Unlock()
		return errors.New("softswitch: closed")
	case s.running:
		s.pmu.Unlock()
		return errors.New("softswitch: already running")
	}
	s.running = true
	for _, pe := range s.ports.Load() {
		if pe != nil {
			s.startLoop(pe)
		}
	}
	s.pmu.Unlock()

	puntDone := make(chan struct{})
	puntStop := make(chan struct{})
	go s.puntLoop(puntStop, puntDone)
	s.log.Info("switch running")

	<-ctx.Done()

	s.pmu.Lock()
	s.running = false
	for _, pe := range s.ports.Load() {
		if pe != nil {
			s.stopLoop(pe)
		}
	}
	s.pmu.Unlock()
	close(puntStop)
	<-puntDone
	s.log.Info("switch stopped")
	return nil
}

// Close stops everything and closes every port. Call it after Run returned.
func (s *Switch) Close() error {
	s.pmu.Lock()
	s.closed = true
	s.pmu.Unlock()
	var errs []error
	for _, num := range s.Ports() {
		if err := s.RemovePort(num); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// startLoop starts pe's receive loop; s.pmu held.
func (s *Switch) startLoop(pe *portEntry) {
	if pe.stop != nil {
		return
	}
	// A deadline left by the previous stop would end the loop at once.
	if err := pe.port.SetReadDeadline(time.Time{}); err != nil {
		s.log.Warn("port deadline", "port", pe.num, "err", err)
	}
	pe.stop = make(chan struct{})
	pe.done = make(chan struct{})
	l := s.newLoop(pe)
	go l.run(pe.stop, pe.done)
}

// stopLoop stops pe's receive loop and waits for it; s.pmu held.
func (s *Switch) stopLoop(pe *portEntry) {
	if pe.stop == nil {
		return
	}
	close(pe.stop)
	// Wake a blocked read; the loop sees stop and returns.
	if err := pe.port.SetReadDeadline(time.Unix(1, 0)); err != nil {
		s.log.Warn("port deadline", "port", pe.num, "err", err)
	}
	<-pe.done
	pe.stop, pe.done = nil, nil
}

// puntLoop gives queued packet-ins to the sink.
func (s *Switch) puntLoop(stop, done chan struct{}) {
	defer close(done)
	for {
		select {
		case pin := <-s.punts:
			if sink := s.sink.Load(); sink != nil {
				(*sink)(pin)
			} else {
				s.puntDropped.Add(1)
			}
		case <-stop:
			return
		}
	}
}

// rxLoop is one port's receive loop and its buffers.
type rxLoop struct {
	s  *Switch
	pe *portEntry
	ms []Message
	sc *scratch
}

func (s *Switch) newLoop(pe *portEntry) *rxLoop {
	l := &rxLoop{s: s, pe: pe, ms: make([]Message, s.batch), sc: newScratch(s.now, s.batch)}
	buf := make([]byte, s.batch*s.frameSize)
	for i := range l.ms {
		l.ms[i].Buf = buf[i*s.frameSize : (i+1)*s.frameSize : (i+1)*s.frameSize]
	}
	return l
}

func (l *rxLoop) run(stop, done chan struct{}) {
	defer close(done)
	s, pe := l.s, l.pe
	var lastErr time.Time
	for {
		n, err := pe.port.ReadBatch(l.ms)
		if err != nil {
			select {
			case <-stop:
				return
			default:
			}
			if isTimeout(err) {
				continue
			}
			if errors.Is(err, net.ErrClosed) {
				s.log.Warn("port closed under its receive loop", "port", pe.num)
				return
			}
			// Keep reading, but do not spin or flood the log on a
			// persistent error.
			if time.Since(lastErr) > time.Second {
				s.log.Warn("port read", "port", pe.num, "err", err)
			}
			lastErr = time.Now()
			select {
			case <-stop:
				return
			case <-time.After(10 * time.Millisecond):
			}
			continue
		}
		if !pe.up.Load() {
			continue // a link that is down delivers nothing
		}
		ms := l.ms[:n]
		var bytes uint64
		for i := range ms {
			bytes += uint64(ms[i].N)
		}
		pe.st.rxFrames.Add(uint64(n))
		pe.st.rxBytes.Add(bytes)
		sn := s.snap.Load()
		if sn == nil {
			pe.st.rxNoPipeline.Add(uint64(n))
			continue
		}
		s.processBatch(sn, pe.num, ms, l.sc)
	}
}
