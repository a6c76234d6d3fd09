package softswitch

import (
	"encoding/binary"
	"strings"
	"testing"
	"time"

	"github.com/dmsc-mesh/dmsc/p4"
)

func TestParseImpairment(t *testing.T) {
	tests := []struct {
		in   string
		want Impairment
		err  string // substring of the error; "" for success
	}{
		{"", Impairment{}, ""},
		{"none", Impairment{}, ""},
		{"delay=5ms,jitter=1ms,loss=0.01,rate=100mbit,queue=1000",
			Impairment{Delay: 5 * time.Millisecond, Jitter: time.Millisecond, Loss: 0.01, Rate: 100e6, Queue: 1000}, ""},
		{"loss=2.5%", Impairment{Loss: 0.025}, ""},
		{"rate=1gbit", Impairment{Rate: 1e9}, ""},
		{"rate=500kbit", Impairment{Rate: 500e3}, ""},
		{"rate=1.5mbit", Impairment{Rate: 1.5e6}, ""},
		{"rate=1mbps", Impairment{Rate: 8e6}, ""},
		{"rate=64000", Impairment{Rate: 64000}, ""},
		{" delay = 1s , limit=5 ", Impairment{Delay: time.Second, Queue: 5}, ""},
		{"delay=5", Impairment{}, "delay=5"},
		{"delay=-5ms", Impairment{}, "negative"},
		{"loss=1.5", Impairment{}, "loss=1.5"},
		{"loss=abc", Impairment{}, "loss=abc"},
		{"rate=fast", Impairment{}, "rate=fast"},
		{"rate=0mbit", Impairment{}, "rate=0mbit"},
		{"queue=0", Impairment{}, "queue=0"},
		{"delay=1ms,delay=2ms", Impairment{}, "delay given twice"},
		{"colour=red", Impairment{}, `unknown key "colour"`},
		{"delay", Impairment{}, `"delay" is not key=value`},
	}
	for _, tt := range tests {
		got, err := ParseImpairment(tt.in)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("ParseImpairment(%q) error %v, want one mentioning %q", tt.in, err, tt.err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseImpairment(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
			continue
		}
		// String round-trips.
		back, err := ParseImpairment(got.String())
		if err != nil || back != got {
			t.Errorf("ParseImpairment(%q.String() = %q) = %+v, %v", tt.in, got.String(), back, err)
		}
	}
}

// impairRig is a rig with a route from port 2 to port 1.
func impairRig(t *testing.T) *rig {
	r := newRig(t, testPorts)
	fabric(r)
	r.apply(ins(r.fib(32, key(h1, 0, 0, 0), p4.ActionSetNexthopGroup, 1)))
	return r
}

func seqFrame(seq uint32, payload int) []byte {
	p := make([]byte, max(payload, 4))
	binary.BigEndian.PutUint32(p, seq)
	return frameSpec{hop: 9, flow: seq, dst: key(h1, 1, 1, 1), payload: p}.bytes()
}

func TestImpairmentDelay(t *testing.T) {
	r := impairRig(t)
	const delay = 30 * time.Millisecond
	if err := r.sw.SetImpairment(1, Impairment{Delay: delay}); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		start := time.Now()
		r.send(2, seqFrame(uint32(i), 10))
		r.expect(1)
		// At least the delay; the upper bound only catches a lost
		// wake-up, with room for a loaded test machine.
		if got := time.Since(start); got < delay || got > delay+300*time.Millisecond {
			t.Errorf("frame %d took %v, want about %v", i, got, delay)
		}
	}
	st, _ := r.sw.PortStats(1)
	if st.Impairment.Delay != delay {
		t.Errorf("stats impairment %+v", st.Impairment)
	}
	// Lifting the impairment: frames go straight through again.
	if err := r.sw.SetImpairment(1, Impairment{}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	r.send(2, seqFrame(9, 10))
	r.expect(1)
	if got := time.Since(start); got > delay {
		t.Errorf("unimpaired frame took %v", got)
	}
}

func TestImpairmentJitterKeepsOrder(t *testing.T) {
	r := impairRig(t)
	if err := r.sw.SetImpairment(1, Impairment{Delay: 5 * time.Millisecond, Jitter: 4 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	const n = 200
	for i := range n {
		r.send(2, seqFrame(uint32(i), 10))
		if i%20 == 0 {
			time.Sleep(time.Millisecond)
		}
	}
	for i := range n {
		f := r.expect(1)
		if got := binary.BigEndian.Uint32(f[offProbe:]); got != uint32(i) {
			t.Fatalf("frame %d arrived in place %d", got, i)
		}
	}
}

func TestImpairmentLoss(t *testing.T) {
	r := impairRig(t)
	if err := r.sw.SetImpairment(1, Impairment{Loss: 0.3}); err != nil {
		t.Fatal(err)
	}
	const n = 3000
	for i := range n {
		r.send(2, seqFrame(uint32(i), 10))
		if i%500 == 499 {
			time.Sleep(5 * time.Millisecond) // let the memory link drain
		}
	}
	deadline := time.Now().Add(3 * time.Second)
	var lost uint64
	received := 0
	for time.Now().Before(deadline) {
		for r.peers[1].Pending() > 0 {
			if _, err := r.peers[1].Recv(0); err == nil {
				received++
			}
		}
		lost, _ = r.sw.DropCount(dropImpairment)
		if received+int(lost) == n {
			break
		}
		time.Sleep(time.Millisecond)
	}
	if received+int(lost) != n {
		t.Fatalf("%d received + %d lost != %d sent", received, lost, n)
	}
	if rate := float64(lost) / n; rate < 0.25 || rate > 0.35 {
		t.Errorf("lost %.1f%%, want about 30%%", rate*100)
	}
	if st, _ := r.sw.PortStats(1); st.TxImpairLoss != lost {
		t.Errorf("port stats count %d lost, drop counter %d", st.TxImpairLoss, lost)
	}
}

func TestImpairmentRate(t *testing.T) {
	r := impairRig(t)
	const rate = 2e6 // 2 Mbit/s
	if err := r.sw.SetImpairment(1, Impairment{Rate: rate}); err != nil {
		t.Fatal(err)
	}
	const n, payload = 60, 1000
	frameBits := float64(len(seqFrame(0, payload)) * 8)
	start := time.Now()
	for i := range n {
		r.send(2, seqFrame(uint32(i), payload))
	}
	for range n {
		r.expect(1)
	}
	elapsed := time.Since(start)
	want := time.Duration(n * frameBits / rate * float64(time.Second))
	// Never faster than the rate (minus the first frame's head start);
	// the upper bound only catches a limiter that stalls, with room for a
	// loaded test machine.
	if elapsed < want*85/100 || elapsed > want*3 {
		t.Errorf("%d frames of %.0f bits at %.0f bit/s took %v, want about %v", n, frameBits, rate, elapsed, want)
	}

	// A burst bigger than the queue overflows it: QueueFull. The rate is
	// low enough (42 ms a frame) that the queue cannot drain while the
	// burst arrives, however slowly the test runs.
	if err := r.sw.SetImpairment(1, Impairment{Rate: 200e3, Queue: 10}); err != nil {
		t.Fatal(err)
	}
	before, _ := r.sw.DropCount(dropQueueFull)
	const burst = 50
	for i := range burst {
		r.send(2, seqFrame(uint32(i), payload))
	}
	received := 0
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		for r.peers[1].Pending() > 0 {
			if _, err := r.peers[1].Recv(0); err == nil {
				received++
			}
		}
		full, _ := r.sw.DropCount(dropQueueFull)
		if received+int(full-before) == burst {
			if full-before < burst/2 {
				t.Errorf("only %d of %d frames found the queue of 10 full", full-before, burst)
			}
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	full, _ := r.sw.DropCount(dropQueueFull)
	t.Fatalf("%d received + %d queue-full != %d sent", received, full-before, burst)
}

func TestImpairmentValidation(t *testing.T) {
	r := impairRig(t)
	if err := r.sw.SetImpairment(1, Impairment{Loss: 2}); err == nil {
		t.Error("loss 2 accepted")
	}
	if err := r.sw.SetImpairment(99, Impairment{Delay: time.Millisecond}); err == nil {
		t.Error("impairment on a missing port accepted")
	}
}
