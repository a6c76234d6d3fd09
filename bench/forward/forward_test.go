package forward

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	p4v1 "github.com/p4lang/p4runtime/go/p4/v1"

	"github.com/dmsc-mesh/dmsc/p4"
	"github.com/dmsc-mesh/dmsc/p4rt/p4info"
	"github.com/dmsc-mesh/dmsc/p4rt/server"
	"github.com/dmsc-mesh/dmsc/softswitch"
)

const (
	batch = 32 // frames per sendmmsg of the sender
	// window bounds the frames in flight, so the sender measures the hop's
	// capacity instead of the kernel's drops behind an overrun socket.
	window = 1024
	// stall is how long the sender waits for the hop before it counts the
	// frames in flight as lost and goes on.
	stall = 100 * time.Millisecond
)

// hop is what is measured: frames sent to in come out of out.
type hop interface {
	start(in, out endpoint) error
	stop()
}

// endpoint is one UDP link: the hop's side and the test's side.
type endpoint struct{ hop, test string }

// freeAddrs reserves n loopback UDP addresses. They are released before
// use, so another process could take one in between: good enough for a
// benchmark.
func freeAddrs(n int) ([]string, error) {
	var conns []*net.UDPConn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	var out []string
	for range n {
		c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			return nil, err
		}
		conns = append(conns, c)
		out = append(out, c.LocalAddr().String())
	}
	return out, nil
}

// relay is the ceiling: recvmmsg on in, sendmmsg on out, nothing else.
type relay struct {
	in, out *softswitch.UDPPort
	wg      sync.WaitGroup
}

func (r *relay) start(in, out endpoint) error {
	var err error
	if r.in, err = softswitch.NewUDPPort(in.hop, in.test); err != nil {
		return err
	}
	if r.out, err = softswitch.NewUDPPort(out.hop, out.test); err != nil {
		r.in.Close()
		return err
	}
	ms := make([]softswitch.Message, 64) // the switch's batch
	for i := range ms {
		ms[i].Buf = make([]byte, 2048)
	}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		for {
			n, err := r.in.ReadBatch(ms)
			if err != nil {
				return // closed
			}
			r.out.WriteBatch(ms[:n])
		}
	}()
	return nil
}

func (r *relay) stop() {
	r.in.Close()
	r.wg.Wait()
	r.out.Close()
}

// switchHop is one software switch with a route from port 1 to port 2.
type switchHop struct {
	sw     *softswitch.Switch
	cancel context.CancelFunc
	done   chan error
}

func (h *switchHop) start(in, out endpoint) error {
	schema, err := p4.Schema()
	if err != nil {
		return err
	}
	h.sw = softswitch.New(softswitch.Config{})
	if err := h.sw.CommitPipeline(schema, nil); err != nil {
		return err
	}
	for i, e := range []endpoint{in, out} {
		p, err := softswitch.NewUDPPort(e.hop, e.test)
		if err != nil {
			h.sw.Close()
			return err
		}
		if err := h.sw.AddPort(uint16(i+1), p); err != nil {
			return err
		}
	}
	changes, err := route(schema)
	if err != nil {
		return err
	}
	if err := errors.Join(h.sw.Apply(changes, true)...); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel, h.done = cancel, make(chan error, 1)
	go func() { h.done <- h.sw.Run(ctx) }()
	return nil
}

func (h *switchHop) stop() {
	h.cancel()
	<-h.done
	h.sw.Close()
}

// route programs port 1 and 2 as fabric ports and /shop (key segment 1) to
// port 2 through a next-hop group.
func route(schema *p4info.Schema) ([]server.Change, error) {
	tbl := func(name string) (*p4info.Table, error) { return schema.Table(name) }
	act := func(name string, params ...[]byte) (*p4v1.Action, error) {
		a, err := schema.Action(name)
		if err != nil {
			return nil, err
		}
		out := &p4v1.Action{ActionId: a.Preamble.Id}
		for i, p := range a.Params {
			out.Params = append(out.Params, &p4v1.Action_Param{ParamId: p.Id, Value: p4info.Canonical(params[i])})
		}
		return out, nil
	}
	exact := func(t *p4info.Table, field string, v []byte) (*p4v1.FieldMatch, error) {
		f, err := t.Field(field)
		if err != nil {
			return nil, err
		}
		return &p4v1.FieldMatch{FieldId: f.Id, FieldMatchType: &p4v1.FieldMatch_Exact_{Exact: &p4v1.FieldMatch_Exact{Value: p4info.Canonical(v)}}}, nil
	}
	var es []*p4v1.Entity
	var errs []error
	entry := func(table string, field string, key []byte, a *p4v1.TableAction) {
		t, err := tbl(table)
		if err != nil {
			errs = append(errs, err)
			return
		}
		m, err := exact(t, field, key)
		errs = append(errs, err)
		es = append(es, &p4v1.Entity{Entity: &p4v1.Entity_TableEntry{TableEntry: &p4v1.TableEntry{
			TableId: t.Preamble.Id, Match: []*p4v1.FieldMatch{m}, Action: a}}})
	}
	direct := func(name string, params ...[]byte) *p4v1.TableAction {
		a, err := act(name, params...)
		errs = append(errs, err)
		return &p4v1.TableAction{Type: &p4v1.TableAction_Action{Action: a}}
	}
	for _, port := range []uint64{1, 2} {
		entry(p4.TablePortRole, p4.FieldPort, p4info.Uint(port), direct(p4.ActionSetPortRole, p4info.Uint(p4.RoleFabric)))
	}
	prof, err := schema.ActionProfile(p4.ProfileNexthop)
	if err != nil {
		return nil, err
	}
	member, err := act(p4.ActionSetNexthop, p4info.Uint(2), []byte{2, 0, 0, 0, 0, 2})
	if err != nil {
		return nil, err
	}
	es = append(es, &p4v1.Entity{Entity: &p4v1.Entity_ActionProfileMember{ActionProfileMember: &p4v1.ActionProfileMember{
		ActionProfileId: prof.Preamble.Id, MemberId: 1, Action: member}}})
	es = append(es, &p4v1.Entity{Entity: &p4v1.Entity_ActionProfileGroup{ActionProfileGroup: &p4v1.ActionProfileGroup{
		ActionProfileId: prof.Preamble.Id, GroupId: 1, Members: []*p4v1.ActionProfileGroup_Member{{MemberId: 1, Weight: 1}}}}})
	entry(p4.TableNexthop, p4.FieldGroupID, p4info.Uint(1),
		&p4v1.TableAction{Type: &p4v1.TableAction_ActionProfileGroupId{ActionProfileGroupId: 1}})
	entry(p4.TableFIB32, p4.FieldDstKey, p4info.Uint(1), direct(p4.ActionSetNexthopGroup, p4info.Uint(1)))
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	out := make([]server.Change, len(es))
	for i, e := range es {
		out[i] = server.Change{Type: p4v1.Update_INSERT, Entity: e}
	}
	return out, nil
}

// frame is a DMSC DATA frame to key 1|…, flow i.
func frame(payload int, flow uint32) []byte {
	b := make([]byte, 58+payload)
	copy(b[0:6], []byte{2, 0, 0, 0, 0, 1})
	copy(b[6:12], []byte{2, 0, 0, 0, 0, 0xfe})
	binary.BigEndian.PutUint16(b[12:], 0x88B5)
	b[14] = 0x10 // version 1, DATA
	b[16] = 64   // hop limit
	binary.BigEndian.PutUint32(b[18:], flow)
	binary.BigEndian.PutUint16(b[22:], uint16(payload))
	binary.BigEndian.PutUint32(b[26:], 1) // dst_key /shop-ish, rest 0
	binary.BigEndian.PutUint32(b[42:], 2) // src_key
	return b
}

// result of one run.
type result struct {
	sent, received uint64
	elapsed        time.Duration
}

// run sends n frames of payload bytes through h and counts what arrives.
// The benchmark timer runs only while frames flow.
func run(b *testing.B, h hop, n int, payload int) (result, error) {
	b.StopTimer()
	defer b.StopTimer()
	addrs, err := freeAddrs(4)
	if err != nil {
		return result{}, err
	}
	in := endpoint{hop: addrs[0], test: addrs[1]}
	out := endpoint{hop: addrs[2], test: addrs[3]}
	if err := h.start(in, out); err != nil {
		return result{}, fmt.Errorf("start: %w", err)
	}
	defer h.stop()
	sender, err := softswitch.NewUDPPort(in.test, in.hop)
	if err != nil {
		return result{}, err
	}
	defer sender.Close()
	receiver, err := softswitch.NewUDPPort(out.test, out.hop)
	if err != nil {
		return result{}, err
	}
	defer receiver.Close()

	size := 58 + payload
	var received atomic.Uint64
	rdone := make(chan struct{})
	go func() {
		defer close(rdone)
		ms := make([]softswitch.Message, 64)
		for i := range ms {
			ms[i].Buf = make([]byte, 2048)
		}
		for {
			k, err := receiver.ReadBatch(ms)
			if err != nil {
				return // deadline: the run is over
			}
			// Honest counting: only whole DMSC frames of the right size.
			good := 0
			for _, m := range ms[:k] {
				if m.N == size && m.Buf[12] == 0x88 && m.Buf[13] == 0xB5 {
					good++
				}
			}
			received.Add(uint64(good))
		}
	}()

	frames := make([]softswitch.Message, batch)
	for i := range frames {
		f := frame(payload, uint32(i))
		frames[i] = softswitch.Message{Buf: f, N: len(f)}
	}
	// Warm the path (ARP-free loopback, but page faults and the switch's
	// lazily grown batches): not counted.
	sender.WriteBatch(frames[:1])
	deadline := time.Now().Add(time.Second)
	for received.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if received.Load() == 0 {
		return result{}, errors.New("the warm-up frame never arrived")
	}
	base := received.Load()

	var sent, lostCredit uint64
	b.StartTimer()
	start := time.Now()
	lastProgress, lastSeen := start, base
	for sent < uint64(n) {
		got := received.Load() - base
		if sent-got-lostCredit >= window {
			if got != lastSeen {
				lastSeen, lastProgress = got, time.Now()
			} else if time.Since(lastProgress) > stall {
				lostCredit = sent - got // give up on those in flight
				lastProgress = time.Now()
			}
			time.Sleep(20 * time.Microsecond)
			continue
		}
		k := min(batch, n-int(sent))
		w, err := sender.WriteBatch(frames[:k])
		if err != nil {
			return result{}, err
		}
		sent += uint64(w)
	}
	// Drain: wait until everything arrived or nothing more comes.
	lastSeen, lastProgress = received.Load(), time.Now()
	for received.Load()-base < sent && time.Since(lastProgress) < stall {
		time.Sleep(100 * time.Microsecond)
		if r := received.Load(); r != lastSeen {
			lastSeen, lastProgress = r, time.Now()
		}
	}
	end := lastProgress
	if received.Load()-base == sent {
		end = time.Now()
	}
	receiver.SetReadDeadline(time.Unix(1, 0))
	<-rdone
	return result{sent: sent, received: received.Load() - base, elapsed: end.Sub(start)}, nil
}

// BenchmarkForward measures packets per second through one hop: the
// software switch, and beside it the do-nothing relay, for small and large
// frames. ns/op is per frame sent.
func BenchmarkForward(b *testing.B) {
	for _, payload := range []int{64, 1400} {
		for _, c := range []struct {
			name string
			hop  func() hop
		}{
			{"relay", func() hop { return &relay{} }},
			{"softswitch", func() hop { return &switchHop{} }},
		} {
			b.Run(fmt.Sprintf("%dB/%s", payload, c.name), func(b *testing.B) {
				r, err := run(b, c.hop(), b.N, payload)
				if err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(float64(r.received)/r.elapsed.Seconds(), "pps")
				b.ReportMetric(100*float64(r.sent-r.received)/float64(max(r.sent, 1)), "loss%")
			})
		}
	}
}
