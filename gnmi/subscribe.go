package gnmi

import (
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"time"

	gpb "github.com/openconfig/gnmi/proto/gnmi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// maxUpdatesPerNotification splits large snapshots so that no response
// nears gRPC's default 4 MiB message limit.
const maxUpdatesPerNotification = 500

// plan is a validated SubscriptionList.
type plan struct {
	mode        gpb.SubscriptionList_Mode
	target      string // the request prefix's target, reflected in responses
	enc         gpb.Encoding
	updatesOnly bool
	entries     []*entry
}

// entry is one Subscription of a STREAM list and its sending state, owned by
// the subscription's handler goroutine.
type entry struct {
	pattern   []*gpb.PathElem
	onChange  bool // ON_CHANGE (and TARGET_DEFINED); else SAMPLE
	sample    time.Duration
	heartbeat time.Duration
	suppress  bool

	nextSample    time.Time // SAMPLE
	nextHeartbeat time.Time // ON_CHANGE with a heartbeat
	// sent records, per leaf, the value and the (scheduled) time of the last
	// sample sent, for suppress_redundant and its heartbeat.
	sent map[string]sentValue
}

type sentValue struct {
	value any
	at    time.Time
}

// newPlan checks a SubscriptionList. TARGET_DEFINED is served as ON_CHANGE:
// the agent publishes every leaf, counters included, when it reads it, so
// on-change delivery is every new value at the rate the agent collects.
func (t *Target) newPlan(list *gpb.SubscriptionList) (*plan, error) {
	p := &plan{mode: list.GetMode(), target: list.GetPrefix().GetTarget(), enc: list.GetEncoding(), updatesOnly: list.GetUpdatesOnly()}
	switch p.mode {
	case gpb.SubscriptionList_ONCE, gpb.SubscriptionList_POLL, gpb.SubscriptionList_STREAM:
	default:
		return nil, status.Errorf(codes.InvalidArgument, "subscription list mode %v is not defined", p.mode)
	}
	if err := t.checkEncoding(p.enc); err != nil {
		return nil, err
	}
	if err := t.checkModels(list.GetUseModels()); err != nil {
		return nil, err
	}
	if err := t.checkPrefix(list.GetPrefix()); err != nil {
		return nil, err
	}
	if len(list.GetSubscription()) == 0 {
		return nil, status.Error(codes.InvalidArgument, "the subscription list has no subscriptions")
	}
	minInterval := t.opts.MinSampleInterval
	for i, s := range list.GetSubscription() {
		what := fmt.Sprintf("subscription %d", i+1)
		full, err := fullPath(list.GetPrefix(), s.GetPath(), what)
		if err != nil {
			return nil, err
		}
		e := &entry{pattern: full.GetElem()}
		p.entries = append(p.entries, e)
		if p.mode != gpb.SubscriptionList_STREAM {
			continue // ONCE and POLL ignore the per-subscription modes
		}
		what = fmt.Sprintf("%s (%s)", what, PathString(full))
		if e.heartbeat, err = interval(s.GetHeartbeatInterval(), minInterval); err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "%s: heartbeat_interval %v", what, err)
		}
		switch s.GetMode() {
		case gpb.SubscriptionMode_TARGET_DEFINED:
			if s.GetSampleInterval() != 0 {
				return nil, status.Errorf(codes.InvalidArgument, "%s: TARGET_DEFINED takes no sample_interval", what)
			}
			e.onChange = true
		case gpb.SubscriptionMode_ON_CHANGE:
			e.onChange = true
		case gpb.SubscriptionMode_SAMPLE:
			if e.sample, err = interval(s.GetSampleInterval(), minInterval); err != nil {
				return nil, status.Errorf(codes.InvalidArgument, "%s: sample_interval %v", what, err)
			}
			if e.sample == 0 {
				e.sample = minInterval // "the lowest interval possible for the target"
			}
			e.suppress = s.GetSuppressRedundant()
		default:
			return nil, status.Errorf(codes.InvalidArgument, "%s: subscription mode %v is not defined", what, s.GetMode())
		}
	}
	return p, nil
}

// interval reads a nanosecond interval of a Subscription: 0, or at least
// minInterval (a target that cannot sample that fast must refuse, gNMI spec
// 3.5.1.5.2).
func interval(ns uint64, minInterval time.Duration) (time.Duration, error) {
	switch {
	case ns == 0:
		return 0, nil
	case ns > uint64(1<<63-1):
		return 0, fmt.Errorf("%d ns is too long", ns)
	case time.Duration(ns) < minInterval:
		return 0, fmt.Errorf("%v is shorter than this target's minimum %v", time.Duration(ns), minInterval)
	}
	return time.Duration(ns), nil
}

// Subscribe serves one Subscribe RPC. A receiver goroutine reads the client's
// requests so that the handler can also wait for changes, timers and Close;
// it ends when the RPC does (gRPC cancels the stream), and Close waits for it.
func (t *Target) Subscribe(stream gpb.GNMI_SubscribeServer) error {
	if err := t.enter(); err != nil {
		return err
	}
	defer t.wg.Done()
	ctx := stream.Context()
	if err := t.authorize(ctx, RPCSubscribe); err != nil {
		return err
	}
	reqs := make(chan *gpb.SubscribeRequest)
	recvErr := make(chan error, 1)
	stop := make(chan struct{})
	defer close(stop)
	t.wg.Add(1) // the handler's own count keeps Close from finishing first
	go func() {
		defer t.wg.Done()
		for {
			r, err := stream.Recv()
			if err != nil {
				recvErr <- err
				return
			}
			select {
			case reqs <- r:
			case <-stop:
				return
			}
		}
	}()
	s := &session{t: t, stream: stream, reqs: reqs, recvErr: recvErr}
	var first *gpb.SubscribeRequest
	select {
	case first = <-reqs:
	case err := <-recvErr:
		if errors.Is(err, io.EOF) {
			return nil // the client left without asking anything
		}
		return err
	case <-t.done:
		return errClosing
	case <-ctx.Done():
		return status.FromContextError(ctx.Err()).Err()
	}
	list := first.GetSubscribe()
	if list == nil {
		return status.Error(codes.InvalidArgument, "the first SubscribeRequest must carry a subscription list (a poll needs a POLL subscription first)")
	}
	p, err := t.newPlan(list)
	if err != nil {
		return err
	}
	s.plan = p
	t.log.Debug("gnmi: subscription", "peer", peerAddr(ctx), "mode", p.mode, "paths", len(p.entries))
	switch p.mode {
	case gpb.SubscriptionList_ONCE:
		err = s.sendSnapshot()
	case gpb.SubscriptionList_POLL:
		err = s.poll()
	default:
		err = s.streamLoop()
	}
	t.log.Debug("gnmi: subscription ended", "peer", peerAddr(ctx), "mode", p.mode, "err", err)
	return err
}

var errClosing = status.Error(codes.Unavailable, "gnmi target is closing")

// session is one Subscribe RPC.
type session struct {
	t       *Target
	stream  gpb.GNMI_SubscribeServer
	reqs    <-chan *gpb.SubscribeRequest
	recvErr chan error
	plan    *plan
}

var syncResponse = &gpb.SubscribeResponse{Response: &gpb.SubscribeResponse_SyncResponse{SyncResponse: true}}

// sendSnapshot sends the current leaves of all the plan's paths (none if
// updates_only) and a sync_response: a ONCE subscription, or one poll.
func (s *session) sendSnapshot() error {
	if !s.plan.updatesOnly {
		s.t.store.mu.RLock()
		leaves := s.union(s.t.store.collect)
		s.t.store.mu.RUnlock()
		if err := s.send(asItems(leaves)); err != nil {
			return err
		}
	}
	return s.stream.Send(syncResponse)
}

// union is the leaves any entry selects, each once, sorted by path.
func (s *session) union(collect func([]*gpb.PathElem) []*leafValue) []*leafValue {
	if len(s.plan.entries) == 1 {
		return collect(s.plan.entries[0].pattern)
	}
	var all []*leafValue
	for _, e := range s.plan.entries {
		all = append(all, collect(e.pattern)...)
	}
	slices.SortFunc(all, func(a, b *leafValue) int { return strings.Compare(a.key, b.key) })
	return slices.CompactFunc(all, func(a, b *leafValue) bool { return a.key == b.key })
}

// poll serves a POLL subscription: a snapshot now (as updates_only says),
// then one per Poll request, until the client ends the RPC.
func (s *session) poll() error {
	if err := s.sendSnapshot(); err != nil {
		return err
	}
	s.plan.updatesOnly = false // later polls return the data
	ctx := s.stream.Context()
	for {
		select {
		case r := <-s.reqs:
			if r.GetPoll() == nil {
				return status.Error(codes.InvalidArgument, "a POLL subscription takes only poll requests after its subscription list")
			}
			if err := s.sendSnapshot(); err != nil {
				return err
			}
		case err := <-s.recvErr:
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		case <-s.t.done:
			return errClosing
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		}
	}
}

// streamLoop serves a STREAM subscription: the initial state and
// sync_response, then changes (ON_CHANGE), samples (SAMPLE) and heartbeats
// until the client cancels, the stream fails or the target closes.
func (s *session) streamLoop() error {
	ctx := s.stream.Context()
	q := newQueue(s.plan.entries)
	var initial []*leafValue
	s.t.store.register(q, func(collect func([]*gpb.PathElem) []*leafValue) {
		if !s.plan.updatesOnly {
			initial = s.union(collect)
		}
	})
	defer s.t.store.unregister(q)

	start := time.Now()
	for _, e := range s.plan.entries {
		if e.onChange {
			if e.heartbeat > 0 {
				e.nextHeartbeat = start.Add(e.heartbeat)
			}
			continue
		}
		e.nextSample = start.Add(e.sample)
		e.sent = map[string]sentValue{}
		for _, l := range initial {
			if matchElems(e.pattern, l.path.GetElem()) {
				e.sent[l.key] = sentValue{l.value, start}
			}
		}
	}
	if s.plan.updatesOnly {
		if err := s.stream.Send(syncResponse); err != nil {
			return err
		}
	} else {
		if err := s.send(asItems(initial)); err != nil {
			return err
		}
		if err := s.stream.Send(syncResponse); err != nil {
			return err
		}
	}
	initial = nil

	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	recvErr := s.recvErr
	for {
		next, ok := s.nextDeadline()
		if ok {
			timer.Reset(time.Until(next))
		} else {
			timer.Stop()
		}
		select {
		case <-q.wake:
			items := q.drain()
			for _, it := range items {
				if it.deleted {
					for _, e := range s.plan.entries {
						delete(e.sent, it.leaf.key)
					}
				}
			}
			if err := s.send(items); err != nil {
				return err
			}
		case <-timer.C:
			if err := s.tick(); err != nil {
				return err
			}
		case <-s.reqs:
			return status.Error(codes.InvalidArgument, "a STREAM subscription takes no requests after its subscription list")
		case err := <-recvErr:
			if errors.Is(err, io.EOF) {
				recvErr = nil // the client closed its side; keep streaming
				continue
			}
			return err
		case <-s.t.done:
			return errClosing
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		}
	}
}

// nextDeadline is the earliest sample or heartbeat due.
func (s *session) nextDeadline() (time.Time, bool) {
	var next time.Time
	for _, e := range s.plan.entries {
		for _, d := range []time.Time{e.nextSample, e.nextHeartbeat} {
			if !d.IsZero() && (next.IsZero() || d.Before(next)) {
				next = d
			}
		}
	}
	return next, !next.IsZero()
}

// tick runs the samples and heartbeats that are due. Schedules advance on a
// fixed grid (no drift), skipping ticks missed while the client was slow.
func (s *session) tick() error {
	now := time.Now()
	for _, e := range s.plan.entries {
		if !e.nextSample.IsZero() && !now.Before(e.nextSample) {
			at := e.nextSample
			e.nextSample = advance(e.nextSample, e.sample, now)
			if err := s.send(e.takeSample(s.t.store.snapshot(e.pattern), at)); err != nil {
				return err
			}
		}
		if !e.nextHeartbeat.IsZero() && !now.Before(e.nextHeartbeat) {
			e.nextHeartbeat = advance(e.nextHeartbeat, e.heartbeat, now)
			if err := s.send(asItems(s.t.store.snapshot(e.pattern))); err != nil {
				return err
			}
		}
	}
	return nil
}

func advance(next time.Time, every time.Duration, now time.Time) time.Time {
	next = next.Add(every)
	if !next.After(now) {
		// Missed ticks are not made up: the next one is on the grid ahead.
		next = next.Add((now.Sub(next)/every + 1) * every)
	}
	return next
}

// takeSample picks the leaves of one sample taken at (scheduled) time at:
// all of them, or with suppress_redundant those whose value differs from
// the last one sent, and those not sent for a heartbeat interval.
func (e *entry) takeSample(leaves []*leafValue, at time.Time) []item {
	out := make([]item, 0, len(leaves))
	sent := make(map[string]sentValue, len(leaves))
	for _, l := range leaves {
		last, had := e.sent[l.key]
		if !e.suppress || !had || !equalValues(last.value, l.value) || (e.heartbeat > 0 && at.Sub(last.at) >= e.heartbeat) {
			out = append(out, item{leaf: l})
			last = sentValue{l.value, at}
		}
		sent[l.key] = last
	}
	e.sent = sent
	return out
}

// item is one leaf to send: a value, or a delete.
type item struct {
	leaf    *leafValue
	deleted bool
	dups    uint32 // values coalesced into this one
}

func asItems(leaves []*leafValue) []item {
	out := make([]item, len(leaves))
	for i, l := range leaves {
		out[i] = item{leaf: l}
	}
	return out
}

// send sends items as notifications, one per run of equal timestamps (gNMI
// notifications carry one time), deletes before updates.
func (s *session) send(items []item) error {
	for len(items) > 0 {
		n := 1
		for n < len(items) && n < maxUpdatesPerNotification && items[n].leaf.ts == items[0].leaf.ts {
			n++
		}
		notif := &gpb.Notification{Timestamp: items[0].leaf.ts, Prefix: responsePrefix(s.plan.target)}
		for _, it := range items[:n] {
			if it.deleted {
				notif.Delete = append(notif.Delete, it.leaf.path)
				continue
			}
			notif.Update = append(notif.Update, &gpb.Update{Path: it.leaf.path, Val: encodeValue(it.leaf.value, s.plan.enc), Duplicates: it.dups})
		}
		if err := s.stream.Send(&gpb.SubscribeResponse{Response: &gpb.SubscribeResponse_Update{Update: notif}}); err != nil {
			return err
		}
		items = items[n:]
	}
	return nil
}

// queue collects the changes a STREAM subscription must send, coalesced per
// leaf: while the client is slow, a leaf that changes again keeps its place
// and takes the newest value (counted in the update's duplicates field), so
// the queue never holds more than one entry per leaf.
type queue struct {
	entries []*entry // read-only here: patterns and modes
	wake    chan struct{}

	mu    sync.Mutex
	order []string
	items map[string]*item
}

func newQueue(entries []*entry) *queue {
	return &queue{entries: entries, wake: make(chan struct{}, 1), items: map[string]*item{}}
}

// offer takes the events an ON_CHANGE entry covers, and deletes for any
// entry (SAMPLE subscribers hear of removals at once too).
func (q *queue) offer(events []event) {
	added := false
	q.mu.Lock()
	for _, ev := range events {
		if !q.wants(ev) {
			continue
		}
		added = true
		if it, ok := q.items[ev.leaf.key]; ok {
			it.leaf, it.deleted = ev.leaf, ev.deleted
			it.dups++
			continue
		}
		q.items[ev.leaf.key] = &item{leaf: ev.leaf, deleted: ev.deleted}
		q.order = append(q.order, ev.leaf.key)
	}
	q.mu.Unlock()
	if added {
		select {
		case q.wake <- struct{}{}:
		default:
		}
	}
}

func (q *queue) wants(ev event) bool {
	for _, e := range q.entries {
		if (e.onChange || ev.deleted) && matchElems(e.pattern, ev.leaf.path.GetElem()) {
			return true
		}
	}
	return false
}

func (q *queue) drain() []item {
	q.mu.Lock()
	defer q.mu.Unlock()
	out := make([]item, len(q.order))
	for i, k := range q.order {
		out[i] = *q.items[k]
	}
	q.order = q.order[:0]
	clear(q.items)
	return out
}
