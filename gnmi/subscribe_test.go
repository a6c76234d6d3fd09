package gnmi

import (
	"context"
	"errors"
	"io"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	gpb "github.com/openconfig/gnmi/proto/gnmi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// stream is a running Client.Subscribe whose responses a test reads.
type stream struct {
	t      *testing.T
	ch     chan *gpb.SubscribeResponse
	done   chan error
	cancel context.CancelFunc
}

func subscribe(t *testing.T, c *Client, list *gpb.SubscriptionList) *stream {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s := &stream{t: t, ch: make(chan *gpb.SubscribeResponse, 1000), done: make(chan error, 1), cancel: cancel}
	go func() {
		s.done <- c.Subscribe(ctx, list, func(r *gpb.SubscribeResponse) error {
			s.ch <- r
			return nil
		})
	}()
	t.Cleanup(func() {
		cancel()
		<-s.done
	})
	return s
}

// next returns the next response, failing the test after 5 s.
func (s *stream) next() *gpb.SubscribeResponse {
	s.t.Helper()
	select {
	case r := <-s.ch:
		return r
	case err := <-s.done:
		s.t.Fatalf("the subscription ended (%v) while a response was awaited", err)
	case <-time.After(5 * time.Second):
		s.t.Fatal("no response within 5 s")
	}
	return nil
}

// nextUpdate is next, which must be a notification, as lines.
func (s *stream) nextUpdate() []string {
	s.t.Helper()
	r := s.next()
	if r.GetUpdate() == nil {
		s.t.Fatalf("got %v, want a notification", r)
	}
	return notifLines(s.t, r.GetUpdate())
}

// untilSync collects the lines of every notification up to sync_response.
func (s *stream) untilSync() []string {
	s.t.Helper()
	var out []string
	for {
		r := s.next()
		if r.GetSyncResponse() {
			slices.Sort(out)
			return out
		}
		out = append(out, notifLines(s.t, r.GetUpdate())...)
	}
}

// quiet asserts that nothing arrives for d.
func (s *stream) quiet(d time.Duration) {
	s.t.Helper()
	select {
	case r := <-s.ch:
		s.t.Fatalf("got %v, want nothing", r)
	case <-time.After(d):
	}
}

// collect gathers the update lines that arrive during d.
func (s *stream) collect(d time.Duration) []string {
	s.t.Helper()
	var out []string
	deadline := time.After(d)
	for {
		select {
		case r := <-s.ch:
			out = append(out, notifLines(s.t, r.GetUpdate())...)
		case <-deadline:
			return out
		}
	}
}

func streamList(t *testing.T, mode gpb.SubscriptionMode, sample, heartbeat time.Duration, suppress bool, paths ...string) *gpb.SubscriptionList {
	t.Helper()
	subs, err := Subscriptions(&gpb.Subscription{Mode: mode, SampleInterval: uint64(sample), HeartbeatInterval: uint64(heartbeat), SuppressRedundant: suppress}, paths...)
	if err != nil {
		t.Fatal(err)
	}
	return &gpb.SubscriptionList{Mode: gpb.SubscriptionList_STREAM, Encoding: gpb.Encoding_PROTO, Subscription: subs}
}

func TestSubscribeOnce(t *testing.T) {
	tg, c := serveAndDial(t, TargetOptions{})
	fill(t, tg)
	subs, _ := Subscriptions(&gpb.Subscription{}, "/interfaces/interface[name=2]", "/interfaces/*/state/oper-status", "/nothing")
	var got []string
	syncs := 0
	err := c.Subscribe(ctxTimeout(t, 5*time.Second), &gpb.SubscriptionList{Mode: gpb.SubscriptionList_ONCE, Encoding: gpb.Encoding_PROTO, Subscription: subs},
		func(r *gpb.SubscribeResponse) error {
			if r.GetSyncResponse() {
				syncs++
				return nil
			}
			if syncs > 0 {
				t.Errorf("update after sync_response: %v", r)
			}
			for _, u := range r.GetUpdate().GetUpdate() {
				if r.GetUpdate().GetTimestamp() != fixtureTime.UnixNano() {
					t.Errorf("%s: timestamp %d, want the publication's", PathString(u.GetPath()), r.GetUpdate().GetTimestamp())
				}
			}
			got = append(got, notifLines(t, r.GetUpdate())...)
			return nil
		})
	if err != nil {
		t.Fatalf("ONCE ended with %v, want nil", err)
	}
	slices.Sort(got)
	want := []string{ // each leaf once, though two paths select interface 2's status
		"/interfaces/interface[name=1]/state/oper-status=UP",
		"/interfaces/interface[name=2]/state/counters/in-pkts=5",
		"/interfaces/interface[name=2]/state/oper-status=DOWN",
	}
	if syncs != 1 || !slices.Equal(got, want) {
		t.Fatalf("%d syncs, updates %q; want 1 and %q", syncs, got, want)
	}

	// updates_only: only the sync_response.
	var n int
	err = c.Subscribe(ctxTimeout(t, 5*time.Second), &gpb.SubscriptionList{Mode: gpb.SubscriptionList_ONCE, UpdatesOnly: true, Subscription: subs},
		func(r *gpb.SubscribeResponse) error {
			if !r.GetSyncResponse() {
				t.Errorf("updates_only sent %v", r)
			}
			n++
			return nil
		})
	if err != nil || n != 1 {
		t.Fatalf("updates_only ONCE: %d responses, %v", n, err)
	}

	// fn's error ends the subscription and is returned.
	stop := errors.New("enough")
	err = c.Subscribe(ctxTimeout(t, 5*time.Second), &gpb.SubscriptionList{Mode: gpb.SubscriptionList_ONCE, Subscription: subs},
		func(*gpb.SubscribeResponse) error { return stop })
	if !errors.Is(err, stop) {
		t.Fatalf("Subscribe returned %v, want fn's error", err)
	}
	if err := c.Subscribe(context.Background(), &gpb.SubscriptionList{Mode: gpb.SubscriptionList_POLL}, nil); err == nil {
		t.Fatal("Subscribe took a POLL list")
	}
}

func TestSubscribePoll(t *testing.T) {
	tg, c := serveAndDial(t, TargetOptions{})
	fill(t, tg)
	ctx := ctxTimeout(t, 10*time.Second)
	subs, _ := Subscriptions(&gpb.Subscription{}, "/interfaces/interface[name=1]/state/counters")
	p, err := c.Poll(ctx, &gpb.SubscriptionList{Encoding: gpb.Encoding_PROTO, Subscription: subs})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	first, err := p.Poll()
	if err != nil {
		t.Fatal(err)
	}
	if got := lines(first); !slices.Equal(got, []string{"/interfaces/interface[name=1]/state/counters/in-pkts=10", "/interfaces/interface[name=1]/state/counters/out-pkts=20"}) {
		t.Fatalf("first poll %q", got)
	}
	for i := uint64(1); i <= 3; i++ {
		if err := tg.Update(time.Time{}, Leaf{InterfaceCounterPath(1, InPkts), 10 + i}); err != nil {
			t.Fatal(err)
		}
		rs, err := p.Poll()
		if err != nil {
			t.Fatal(err)
		}
		if got := lines(rs); len(got) != 2 || got[0] != leafString(InterfaceCounterPath(1, InPkts), 10+i) {
			t.Fatalf("poll %d: %q", i, got)
		}
	}

	// updates_only: the first snapshot is empty, later polls have data.
	p2, err := c.Poll(ctx, &gpb.SubscriptionList{Encoding: gpb.Encoding_PROTO, Subscription: subs, UpdatesOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer p2.Close()
	if rs, err := p2.Poll(); err != nil || len(rs) != 0 {
		t.Fatalf("updates_only first poll: %v, %v", rs, err)
	}
	if rs, err := p2.Poll(); err != nil || len(rs) != 2 {
		t.Fatalf("updates_only second poll: %v, %v", rs, err)
	}

	// A second subscription list on a POLL stream is refused.
	raw, err := c.Raw().Subscribe(ctx)
	if err != nil {
		t.Fatal(err)
	}
	req := &gpb.SubscribeRequest{Request: &gpb.SubscribeRequest_Subscribe{Subscribe: &gpb.SubscriptionList{Mode: gpb.SubscriptionList_POLL, Subscription: subs}}}
	if err := raw.Send(req); err != nil {
		t.Fatal(err)
	}
	if err := raw.Send(req); err != nil {
		t.Fatal(err)
	}
	for {
		_, err := raw.Recv()
		if err != nil {
			wantCode(t, err, codes.InvalidArgument)
			break
		}
	}
}

func TestStreamOnChange(t *testing.T) {
	tg, c := serveAndDial(t, TargetOptions{Name: "sg1"})
	fill(t, tg)
	list := streamList(t, gpb.SubscriptionMode_ON_CHANGE, 0, 0, false, "/interfaces/interface[name=1]")
	list.Prefix = &gpb.Path{Target: "sg1"}
	s := subscribe(t, c, list)
	want := []string{
		"/interfaces/interface[name=1]/state/counters/in-pkts=10",
		"/interfaces/interface[name=1]/state/counters/out-pkts=20",
		"/interfaces/interface[name=1]/state/oper-status=UP",
	}
	if got := s.untilSync(); !slices.Equal(got, want) {
		t.Fatalf("initial %q, want %q", got, want)
	}

	// Re-publishing every leaf unchanged sends nothing: the next
	// notification is the one real change that follows.
	if err := tg.Update(time.Time{}, testLeaves(t)...); err != nil {
		t.Fatal(err)
	}
	if err := tg.Update(time.Time{}, Leaf{InterfaceCounterPath(2, InPkts), uint64(99)}); err != nil { // not subscribed
		t.Fatal(err)
	}
	ts := time.Unix(200, 0)
	if err := tg.Update(ts, Leaf{InterfaceCounterPath(1, InPkts), uint64(11)}, Leaf{InterfaceOperStatusPath(1), OperDown}, Leaf{InterfaceCounterPath(1, OutPkts), uint64(20)}); err != nil {
		t.Fatal(err)
	}
	r := s.next()
	if r.GetUpdate().GetTimestamp() != ts.UnixNano() || r.GetUpdate().GetPrefix().GetTarget() != "sg1" {
		t.Errorf("notification timestamp %d prefix %v, want %d and target sg1", r.GetUpdate().GetTimestamp(), r.GetUpdate().GetPrefix(), ts.UnixNano())
	}
	if got := notifLines(t, r.GetUpdate()); !slices.Equal(got, []string{
		"/interfaces/interface[name=1]/state/counters/in-pkts=11", "/interfaces/interface[name=1]/state/oper-status=DOWN"}) {
		t.Fatalf("change %q", got)
	}

	// Deletes reach the subscriber, one per removed leaf.
	if err := tg.Delete(time.Unix(300, 0), InterfacePath(2), mustPath(t, "/interfaces/interface[name=1]/state/counters")); err != nil {
		t.Fatal(err)
	}
	r = s.next()
	if got := notifLines(t, r.GetUpdate()); !slices.Equal(got, []string{
		"/interfaces/interface[name=1]/state/counters/in-pkts deleted", "/interfaces/interface[name=1]/state/counters/out-pkts deleted"}) ||
		r.GetUpdate().GetTimestamp() != time.Unix(300, 0).UnixNano() {
		t.Fatalf("delete %q at %d", got, r.GetUpdate().GetTimestamp())
	}
	// A leaf that comes back is an update again.
	if err := tg.Update(time.Time{}, Leaf{InterfaceCounterPath(1, InPkts), uint64(11)}); err != nil {
		t.Fatal(err)
	}
	if got := s.nextUpdate(); !slices.Equal(got, []string{"/interfaces/interface[name=1]/state/counters/in-pkts=11"}) {
		t.Fatalf("re-created leaf %q", got)
	}
}

func TestStreamUpdatesOnlyAndWildcards(t *testing.T) {
	tg, c := serveAndDial(t, TargetOptions{})
	fill(t, tg)
	list := streamList(t, gpb.SubscriptionMode_ON_CHANGE, 0, 0, false, "/dmsc/probes/probe[target=/shop/cart]/state/delay-ns", "/.../loss")
	list.UpdatesOnly = true
	s := subscribe(t, c, list)
	if r := s.next(); !r.GetSyncResponse() {
		t.Fatalf("updates_only: first response %v, want sync_response", r)
	}
	if err := tg.Update(time.Time{}, Leaf{ProbeStatePath("/shop", 3, ProbeLoss), 0.5}); err != nil { // a new leaf
		t.Fatal(err)
	}
	if got := s.nextUpdate(); !slices.Equal(got, []string{"/dmsc/probes/probe[instance=3][target=/shop]/state/loss=0.5"}) {
		t.Fatalf("new leaf %q", got)
	}
	if err := tg.Update(time.Time{}, Leaf{ProbeStatePath("/shop/cart", 5, ProbeDelayNs), uint64(7)}); err != nil {
		t.Fatal(err)
	}
	if got := s.nextUpdate(); !slices.Equal(got, []string{"/dmsc/probes/probe[instance=5][target=/shop/cart]/state/delay-ns=7"}) {
		t.Fatalf("new leaf %q", got)
	}
}

func TestStreamTargetDefined(t *testing.T) {
	tg, c := serveAndDial(t, TargetOptions{})
	fill(t, tg)
	s := subscribe(t, c, streamList(t, gpb.SubscriptionMode_TARGET_DEFINED, 0, 0, false, "/interfaces/interface[name=2]/state/oper-status"))
	if got := s.untilSync(); len(got) != 1 {
		t.Fatalf("initial %q", got)
	}
	if err := tg.Update(time.Time{}, Leaf{InterfaceOperStatusPath(2), OperUp}); err != nil {
		t.Fatal(err)
	}
	if got := s.nextUpdate(); !slices.Equal(got, []string{"/interfaces/interface[name=2]/state/oper-status=UP"}) {
		t.Fatalf("change %q", got)
	}
}

func TestStreamSample(t *testing.T) {
	tg, c := serveAndDial(t, TargetOptions{})
	fill(t, tg)
	const every = 20 * time.Millisecond
	s := subscribe(t, c, streamList(t, gpb.SubscriptionMode_SAMPLE, every, 0, false, "/interfaces/interface[name=1]/state/counters/in-pkts"))
	start := time.Now()
	if got := s.untilSync(); len(got) != 1 {
		t.Fatalf("initial %q", got)
	}
	got := s.collect(300 * time.Millisecond)
	elapsed := time.Since(start)
	// Every sample sends the leaf, changed or not. A loaded machine may
	// delay samples (missed ones are skipped), never add any.
	maxN := int(elapsed/every) + 1
	if len(got) < maxN/4 || len(got) > maxN {
		t.Fatalf("%d samples in %v at %v, want between %d and %d", len(got), elapsed, every, maxN/4, maxN)
	}
	for _, l := range got {
		if l != "/interfaces/interface[name=1]/state/counters/in-pkts=10" {
			t.Fatalf("sample %q", l)
		}
	}
	// A new value shows in the next samples; a delete at once.
	if err := tg.Update(time.Time{}, Leaf{InterfaceCounterPath(1, InPkts), uint64(12)}); err != nil {
		t.Fatal(err)
	}
	for {
		if l := s.nextUpdate(); slices.Equal(l, []string{"/interfaces/interface[name=1]/state/counters/in-pkts=12"}) {
			break
		}
	}
	if err := tg.Delete(time.Time{}, InterfacePath(1)); err != nil {
		t.Fatal(err)
	}
	for {
		l := s.nextUpdate()
		if slices.Equal(l, []string{"/interfaces/interface[name=1]/state/counters/in-pkts deleted"}) {
			break
		}
		if !slices.Equal(l, []string{"/interfaces/interface[name=1]/state/counters/in-pkts=12"}) {
			t.Fatalf("got %q while waiting for the delete", l)
		}
	}
	s.quiet(5 * every) // nothing left to sample
}

func TestStreamSampleSuppressRedundant(t *testing.T) {
	tg, c := serveAndDial(t, TargetOptions{})
	fill(t, tg)
	const every = 20 * time.Millisecond
	s := subscribe(t, c, streamList(t, gpb.SubscriptionMode_SAMPLE, every, 0, true, "/interfaces/interface[name=1]/state/counters"))
	if got := s.untilSync(); len(got) != 2 {
		t.Fatalf("initial %q", got)
	}
	// Unchanged values, even re-published, are not sent again.
	for range 5 {
		if err := tg.Update(time.Time{}, Leaf{InterfaceCounterPath(1, InPkts), uint64(10)}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(every)
	}
	s.quiet(5 * every)
	// Only the leaf that changed is sent (gNMI spec 3.5.1.5.2), once.
	if err := tg.Update(time.Time{}, Leaf{InterfaceCounterPath(1, OutPkts), uint64(21)}); err != nil {
		t.Fatal(err)
	}
	if got := s.nextUpdate(); !slices.Equal(got, []string{"/interfaces/interface[name=1]/state/counters/out-pkts=21"}) {
		t.Fatalf("changed leaf %q", got)
	}
	s.quiet(5 * every)
	// A leaf that appears under the path is new, hence sent.
	if err := tg.Update(time.Time{}, Leaf{InterfaceCounterPath(1, InDiscards), uint64(1)}); err != nil {
		t.Fatal(err)
	}
	if got := s.nextUpdate(); !slices.Equal(got, []string{"/interfaces/interface[name=1]/state/counters/in-discards=1"}) {
		t.Fatalf("new leaf %q", got)
	}
}

func TestStreamSampleHeartbeat(t *testing.T) {
	tg, c := serveAndDial(t, TargetOptions{})
	fill(t, tg)
	const every, heartbeat = 20 * time.Millisecond, 100 * time.Millisecond
	s := subscribe(t, c, streamList(t, gpb.SubscriptionMode_SAMPLE, every, heartbeat, true, "/interfaces/interface[name=1]/state/counters/in-pkts"))
	start := time.Now()
	s.untilSync()
	got := s.collect(550 * time.Millisecond)
	elapsed := time.Since(start)
	// Suppressed, but resent once per heartbeat: about 5 in 550 ms, never
	// more than the heartbeats that fit.
	maxN := int(elapsed / heartbeat)
	if len(got) < 2 || len(got) > maxN {
		t.Fatalf("%d heartbeats in %v, want 2 to %d", len(got), elapsed, maxN)
	}
}

func TestStreamOnChangeHeartbeat(t *testing.T) {
	tg, c := serveAndDial(t, TargetOptions{})
	fill(t, tg)
	const heartbeat = 50 * time.Millisecond
	s := subscribe(t, c, streamList(t, gpb.SubscriptionMode_ON_CHANGE, 0, heartbeat, false, "/interfaces/interface[name=1]/state/oper-status"))
	start := time.Now()
	s.untilSync()
	got := s.collect(300 * time.Millisecond)
	elapsed := time.Since(start)
	maxN := int(elapsed / heartbeat)
	if len(got) < 2 || len(got) > maxN {
		t.Fatalf("%d heartbeats in %v, want 2 to %d", len(got), elapsed, maxN)
	}
}

func TestTakeSampleHeartbeatGrid(t *testing.T) {
	// On the sample grid, a suppressed unchanged leaf goes out exactly at
	// each heartbeat; a change goes out at once and restarts its heartbeat.
	t0 := time.Unix(0, 0)
	l := &leafValue{key: "/a", value: int64(1)}
	e := &entry{sample: 20 * time.Millisecond, heartbeat: 100 * time.Millisecond, suppress: true,
		sent: map[string]sentValue{"/a": {int64(1), t0}}}
	var sentAt []time.Duration
	for at := 20 * time.Millisecond; at <= 400*time.Millisecond; at += 20 * time.Millisecond {
		leaves := []*leafValue{l}
		if at == 260*time.Millisecond {
			leaves = []*leafValue{{key: "/a", value: int64(2)}}
			l = leaves[0]
		}
		if len(e.takeSample(leaves, t0.Add(at))) == 1 {
			sentAt = append(sentAt, at)
		}
	}
	want := []time.Duration{100, 200, 260, 360}
	for i := range want {
		want[i] *= time.Millisecond
	}
	if !slices.Equal(sentAt, want) {
		t.Fatalf("sent at %v, want %v", sentAt, want)
	}
}

func TestQueueCoalesces(t *testing.T) {
	e := &entry{pattern: mustPath(t, "/a").GetElem(), onChange: true}
	q := newQueue([]*entry{e})
	mk := func(p string, v int64, del bool) event {
		return event{leaf: &leafValue{path: mustPath(t, p), key: p, value: v}, deleted: del}
	}
	q.offer([]event{mk("/a/x", 1, false), mk("/a/y", 1, false), mk("/b/z", 1, false)})
	q.offer([]event{mk("/a/x", 2, false), mk("/a/x", 3, false)})
	q.offer([]event{mk("/a/y", 0, true)})
	items := q.drain()
	if len(items) != 2 || items[0].leaf.value != int64(3) || items[0].dups != 2 || !items[1].deleted || items[1].dups != 1 {
		t.Fatalf("drained %+v", items)
	}
	select {
	case <-q.wake:
	default:
		t.Fatal("no wake-up")
	}
	if len(q.drain()) != 0 {
		t.Fatal("drain left items")
	}
}

func TestSubscribeErrors(t *testing.T) {
	tg, c := serveAndDial(t, TargetOptions{Name: "sg1", MinSampleInterval: 50 * time.Millisecond})
	fill(t, tg)
	p := mustPath(t, "/interfaces")
	tests := []struct {
		name string
		req  *gpb.SubscribeRequest
		code codes.Code
		msg  string
	}{
		{"poll first", &gpb.SubscribeRequest{Request: &gpb.SubscribeRequest_Poll{Poll: &gpb.Poll{}}}, codes.InvalidArgument, "subscription list"},
		{"no subscriptions", listReq(&gpb.SubscriptionList{}), codes.InvalidArgument, "no subscriptions"},
		{"bad mode", listReq(&gpb.SubscriptionList{Mode: 7, Subscription: []*gpb.Subscription{{Path: p}}}), codes.InvalidArgument, "mode"},
		{"bad sub mode", listReq(&gpb.SubscriptionList{Subscription: []*gpb.Subscription{{Path: p, Mode: 9}}}), codes.InvalidArgument, "mode"},
		{"too fast", listReq(&gpb.SubscriptionList{Subscription: []*gpb.Subscription{{Path: p, Mode: gpb.SubscriptionMode_SAMPLE, SampleInterval: uint64(10 * time.Millisecond)}}}), codes.InvalidArgument, "minimum 50ms"},
		{"too long", listReq(&gpb.SubscriptionList{Subscription: []*gpb.Subscription{{Path: p, Mode: gpb.SubscriptionMode_SAMPLE, SampleInterval: 1 << 63}}}), codes.InvalidArgument, "too long"},
		{"heartbeat too fast", listReq(&gpb.SubscriptionList{Subscription: []*gpb.Subscription{{Path: p, Mode: gpb.SubscriptionMode_ON_CHANGE, HeartbeatInterval: uint64(time.Millisecond)}}}), codes.InvalidArgument, "heartbeat_interval"},
		{"target defined with interval", listReq(&gpb.SubscriptionList{Subscription: []*gpb.Subscription{{Path: p, Mode: gpb.SubscriptionMode_TARGET_DEFINED, SampleInterval: uint64(time.Second)}}}), codes.InvalidArgument, "TARGET_DEFINED"},
		{"bad path", listReq(&gpb.SubscriptionList{Subscription: []*gpb.Subscription{{Path: &gpb.Path{Element: []string{"x"}}}}}), codes.InvalidArgument, "element"},
		{"bad encoding", listReq(&gpb.SubscriptionList{Encoding: gpb.Encoding_BYTES, Subscription: []*gpb.Subscription{{Path: p}}}), codes.Unimplemented, "BYTES"},
		{"other target", listReq(&gpb.SubscriptionList{Prefix: &gpb.Path{Target: "sr9"}, Subscription: []*gpb.Subscription{{Path: p}}}), codes.NotFound, "sr9"},
		{"unknown model", listReq(&gpb.SubscriptionList{UseModels: []*gpb.ModelData{{Name: "x"}}, Subscription: []*gpb.Subscription{{Path: p}}}), codes.InvalidArgument, "model"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			raw, err := c.Raw().Subscribe(ctxTimeout(t, 5*time.Second))
			if err != nil {
				t.Fatal(err)
			}
			if err := raw.Send(tc.req); err != nil {
				t.Fatal(err)
			}
			_, err = raw.Recv()
			wantCode(t, err, tc.code)
			if !strings.Contains(status.Convert(err).Message(), tc.msg) {
				t.Errorf("message %q does not name %q", status.Convert(err).Message(), tc.msg)
			}
		})
	}

	// A second request on a STREAM subscription ends it.
	raw, err := c.Raw().Subscribe(ctxTimeout(t, 5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	req := listReq(&gpb.SubscriptionList{Subscription: []*gpb.Subscription{{Path: p}}})
	if err := raw.Send(req); err != nil {
		t.Fatal(err)
	}
	for {
		r, err := raw.Recv()
		if err != nil {
			t.Fatalf("before sync: %v", err)
		}
		if r.GetSyncResponse() {
			break
		}
	}
	if err := raw.Send(req); err != nil {
		t.Fatal(err)
	}
	_, err = raw.Recv()
	wantCode(t, err, codes.InvalidArgument)

	// A client that half-closes its side keeps its STREAM subscription.
	raw, err = c.Raw().Subscribe(ctxTimeout(t, 5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if err := raw.Send(listReq(&gpb.SubscriptionList{Subscription: []*gpb.Subscription{{Path: InterfaceOperStatusPath(2)}}, Encoding: gpb.Encoding_PROTO})); err != nil {
		t.Fatal(err)
	}
	if err := raw.CloseSend(); err != nil {
		t.Fatal(err)
	}
	for r, err := raw.Recv(); !r.GetSyncResponse(); r, err = raw.Recv() {
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := tg.Update(time.Time{}, Leaf{InterfaceOperStatusPath(2), OperUp}); err != nil {
		t.Fatal(err)
	}
	if r, err := raw.Recv(); err != nil || len(r.GetUpdate().GetUpdate()) != 1 {
		t.Fatalf("after CloseSend: %v, %v", r, err)
	}
	// A client that sends nothing and closes ends the RPC without error.
	raw, err = c.Raw().Subscribe(ctxTimeout(t, 5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	raw.CloseSend()
	if _, err := raw.Recv(); !errors.Is(err, io.EOF) {
		t.Fatalf("empty subscribe: %v, want EOF", err)
	}
}

func listReq(l *gpb.SubscriptionList) *gpb.SubscribeRequest {
	return &gpb.SubscribeRequest{Request: &gpb.SubscribeRequest_Subscribe{Subscribe: l}}
}

// TestNoGoroutineLeak runs subscriptions of every mode, ends them in every
// way (client cancel, client close, target Close) and checks that the
// goroutine count returns to where it was.
func TestNoGoroutineLeak(t *testing.T) {
	before := runtime.NumGoroutine()
	func() {
		tg, err := NewTarget(TargetOptions{MinSampleInterval: 10 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		fill(t, tg)
		lis, addr := listen(t)
		served := make(chan error, 1)
		go func() { served <- tg.Serve(lis) }()
		c, err := Dial(ctxTimeout(t, 5*time.Second), addr, nil)
		if err != nil {
			t.Fatal(err)
		}
		lists := []*gpb.SubscriptionList{
			streamList(t, gpb.SubscriptionMode_ON_CHANGE, 0, 20*time.Millisecond, false, "/interfaces"),
			streamList(t, gpb.SubscriptionMode_SAMPLE, 10*time.Millisecond, 0, true, "/dmsc", "/test"),
			streamList(t, gpb.SubscriptionMode_TARGET_DEFINED, 0, 0, false, "/..."),
		}
		var cancels []context.CancelFunc
		var ends []chan error
		for i := 0; i < 12; i++ {
			ctx, cancel := context.WithCancel(context.Background())
			synced := make(chan struct{})
			end := make(chan error, 1)
			go func(l *gpb.SubscriptionList) {
				once := false
				end <- c.Subscribe(ctx, l, func(r *gpb.SubscribeResponse) error {
					if r.GetSyncResponse() && !once {
						once = true
						close(synced)
					}
					return nil
				})
			}(lists[i%len(lists)])
			<-synced
			cancels = append(cancels, cancel)
			ends = append(ends, end)
		}
		p, err := c.Poll(ctxTimeout(t, 5*time.Second), &gpb.SubscriptionList{Subscription: lists[0].Subscription})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := p.Poll(); err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 50; i++ {
			tg.Update(time.Time{}, Leaf{InterfaceCounterPath(1, InPkts), uint64(i)})
		}
		// Half end by cancel; the rest, and the poll, by Close.
		for i := 0; i < len(cancels)/2; i++ {
			cancels[i]()
			if err := <-ends[i]; !errors.Is(err, context.Canceled) {
				t.Errorf("cancelled subscription ended with %v", err)
			}
		}
		if err := tg.Close(); err != nil {
			t.Fatal(err)
		}
		for i := len(cancels) / 2; i < len(cancels); i++ {
			if err := <-ends[i]; status.Code(err) != codes.Unavailable {
				t.Errorf("subscription ended by Close with %v, want UNAVAILABLE", err)
			}
			cancels[i]()
		}
		if _, err := p.Poll(); err == nil {
			t.Error("a poll after Close succeeded")
		}
		p.Close()
		if err := <-served; err != nil {
			t.Fatal(err)
		}
		c.Close()
	}()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		buf := make([]byte, 1<<16)
		t.Fatalf("%d goroutines, %d before:\n%s", n, before, buf[:runtime.Stack(buf, true)])
	}
}
