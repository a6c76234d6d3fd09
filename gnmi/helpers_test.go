package gnmi

import (
	"context"
	"fmt"
	"net"
	"slices"
	"testing"
	"time"

	gpb "github.com/openconfig/gnmi/proto/gnmi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// fixedNow is the clock of test targets: Get and Set timestamps are known.
var fixedNow = time.Unix(1_700_000_000, 0)

// serve starts a target on 127.0.0.1 and returns it with its address. The
// test's cleanup closes it and checks that Serve ended cleanly.
func serve(t *testing.T, opts TargetOptions) (*Target, string) {
	t.Helper()
	if opts.Now == nil {
		opts.Now = func() time.Time { return fixedNow }
	}
	if opts.MinSampleInterval == 0 {
		opts.MinSampleInterval = 10 * time.Millisecond
	}
	tg, err := NewTarget(opts)
	if err != nil {
		t.Fatal(err)
	}
	lis, addr := listen(t)
	done := make(chan error, 1)
	go func() { done <- tg.Serve(lis) }()
	t.Cleanup(func() {
		if err := tg.Close(); err != nil {
			t.Error(err)
		}
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return tg, addr
}

func listen(t testing.TB) (net.Listener, string) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return lis, lis.Addr().String()
}

// serveAndDial is serve plus an insecure client, closed at cleanup.
func serveAndDial(t *testing.T, opts TargetOptions) (*Target, *Client) {
	t.Helper()
	tg, addr := serve(t, opts)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := Dial(ctx, addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return tg, c
}

// testLeaves is the fixture datastore: two interfaces, probe results, a
// policy, and a config/state pair for the OPERATIONAL filter.
func testLeaves(t testing.TB) []Leaf {
	return []Leaf{
		{InterfaceOperStatusPath(1), OperUp},
		{InterfaceCounterPath(1, InPkts), uint64(10)},
		{InterfaceCounterPath(1, OutPkts), uint64(20)},
		{InterfaceOperStatusPath(2), OperDown},
		{InterfaceCounterPath(2, InPkts), uint32(5)}, // widened to uint64
		{ProbeStatePath("/shop/cart", 0, ProbeDelayNs), uint64(1500)},
		{ProbeStatePath("/shop/cart", 7, ProbeLoss), 0.25},
		{PolicyConfigPath("p1"), JSON(`{"target": "/shop/cart"}`)},
		{PolicyStatePath("p1", PolicyApplied), true},
		{mustPath(t, "/test/thing[id=a]/config/name"), "x"},
		{mustPath(t, "/test/thing[id=a]/state/name"), "x"},
		{mustPath(t, "/test/thing[id=a]/state/count"), -3},
		{mustPath(t, "/test/thing[id=a]/state/blob"), []byte{1, 2}},
	}
}

var fixtureTime = time.Unix(100, 0)

func fill(t testing.TB, tg *Target) {
	t.Helper()
	if err := tg.Update(fixtureTime, testLeaves(t)...); err != nil {
		t.Fatal(err)
	}
}

// lines formats readings as "path=value" (or "path deleted"), sorted.
func lines(rs []Reading) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		if r.Deleted {
			out[i] = PathString(r.Path) + " deleted"
		} else {
			out[i] = PathString(r.Path) + "=" + FormatValue(r.Value)
		}
	}
	slices.Sort(out)
	return out
}

func notifLines(t testing.TB, n *gpb.Notification) []string {
	t.Helper()
	rs, err := Decode(n)
	if err != nil {
		t.Fatal(err)
	}
	return lines(rs)
}

func wantCode(t testing.TB, err error, code codes.Code) {
	t.Helper()
	if status.Code(err) != code {
		t.Fatalf("error %v, want code %v", err, code)
	}
}

func ctxTimeout(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func leafString(p *gpb.Path, v any) string {
	return fmt.Sprintf("%s=%s", PathString(p), FormatValue(v))
}
