package bmv2

import (
	"bytes"
	"slices"
	"testing"

	"github.com/dmsc-mesh/dmsc/wire"
)

// These run everywhere: the pieces of the benchmark that need no rig.

func TestClassify(t *testing.T) {
	good := func() []byte {
		f := newFrame(64, 3)
		copy(f[0:6], routeMAC[:])
		stamp(f, 7, 123456789)
		return f
	}
	size := payloadOff + 64
	for _, c := range []struct {
		name   string
		frame  func() []byte
		size   int
		wantOK bool
	}{
		{"forwarded", good, size, true},
		{"not rewritten", func() []byte { f := good(); copy(f[0:6], inMAC[:]); return f }, size, false},
		{"other size", good, size + 1, false},
		{"other EtherType", func() []byte { f := good(); f[12] = 0x08; f[13] = 0x00; return f }, size, false},
		{"no stamp", func() []byte { f := good(); f[payloadOff] ^= 0xff; return f }, size, false},
		{"short", func() []byte { return good()[:20] }, 20, false},
		{"empty", func() []byte { return nil }, 0, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			epoch, sent, ok := classify(c.frame(), c.size, routeMAC)
			if ok != c.wantOK {
				t.Fatalf("ok = %v, want %v", ok, c.wantOK)
			}
			if ok && (epoch != 7 || sent != 123456789) {
				t.Errorf("epoch %d, sent %d; want 7, 123456789", epoch, sent)
			}
		})
	}
}

func TestNewFrameIsWellFormed(t *testing.T) {
	for _, payload := range payloads {
		f := newFrame(payload, 1)
		stamp(f, 1, 1)
		if len(f) != payloadOff+payload {
			t.Fatalf("%d B payload: frame of %d bytes, want %d", payload, len(f), payloadOff+payload)
		}
		var fr wire.Frame
		if r := wire.ParseFrame(f, &fr); r != wire.DropNone {
			t.Fatalf("%d B payload: ParseFrame: drop reason %v", payload, r)
		}
		if fr.Hdr.Dst != routeKey || fr.Hdr.Type != wire.TypeData || int(fr.Hdr.PayloadLen) != payload {
			t.Errorf("%d B payload: header %+v", payload, fr.Hdr)
		}
	}
}

func TestPercentile(t *testing.T) {
	s := []int64{10, 20, 30, 40, 50, 60, 70, 80, 90, 100}
	for _, c := range []struct {
		p    float64
		want int64
	}{{50, 50}, {99, 100}, {10, 10}, {100, 100}, {1, 10}} {
		if got := percentile(s, c.p); got != c.want {
			t.Errorf("p%v = %d, want %d", c.p, got, c.want)
		}
	}
	if got := percentile(nil, 50); got != 0 {
		t.Errorf("p50 of nothing = %d, want 0", got)
	}
}

func TestSustained(t *testing.T) {
	for _, c := range []struct {
		name string
		o    outcome
		want bool
	}{
		{"kept up", outcome{sent: 10000, received: 9950, sendTime: 1e9, elapsed: 1.001e9}, true},
		{"lost 2 %", outcome{sent: 10000, received: 9800, sendTime: 1e9, elapsed: 1e9}, false},
		{"queued the excess", outcome{sent: 10000, received: 10000, sendTime: 1e9, elapsed: 1.2e9}, false},
	} {
		if got := sustained(c.o); got != c.want {
			t.Errorf("%s: sustained = %v, want %v (loss %.2f %%, pps %.0f, offered %.0f)", c.name, got, c.want, c.o.loss(), c.o.pps(), c.o.offered())
		}
	}
}

// FuzzClassify: the receiver's reading of whatever arrives on a link never
// panics, and what it accepts has the size and address asked for.
func FuzzClassify(f *testing.F) {
	g := newFrame(64, 1)
	copy(g[0:6], routeMAC[:])
	stamp(g, 1, 2)
	f.Add(g, len(g))
	f.Add([]byte{}, 0)
	f.Add(g[:payloadOff+3], payloadOff+3)
	f.Fuzz(func(t *testing.T, frame []byte, size int) {
		in := slices.Clone(frame)
		_, _, ok := classify(frame, size, routeMAC)
		if ok && (len(frame) != size || [6]byte(frame[0:6]) != routeMAC) {
			t.Fatalf("accepted a frame of %d bytes (want %d) to %x", len(frame), size, frame[0:6])
		}
		if !slices.Equal(in, frame) {
			t.Fatal("classify changed the frame")
		}
	})
}

func TestParseStatTicks(t *testing.T) {
	for _, c := range []struct {
		name string
		stat string
		want uint64
		ok   bool
	}{
		{"plain", "1234 (simple_switch) S 1 1234 1234 0 -1 4194560 5000 0 0 0 150 25 0 0 20 0 9 0 100 0 0", 175, true},
		{"name with spaces and parentheses", "99 (a) b (c)) R 1 2 3 4 5 6 7 8 9 10 7 3 0 0", 10, true},
		{"truncated", "1234 (x) S 1 2 3", 0, false},
		{"no name", "1234 S 1 2 3 4 5 6 7 8 9 10 11 12 13", 0, false},
		{"not numbers", "1 (x) S 1 2 3 4 5 6 7 8 9 10 u s", 0, false},
	} {
		got, ok := parseStatTicks([]byte(c.stat))
		if got != c.want || ok != c.ok {
			t.Errorf("%s: %d, %v; want %d, %v", c.name, got, ok, c.want, c.ok)
		}
	}
}

// FuzzParseStatTicks: no text of a stat file makes the reader panic.
func FuzzParseStatTicks(f *testing.F) {
	f.Add([]byte("1234 (simple_switch) S 1 1234 1234 0 -1 4194560 5000 0 0 0 150 25 0 0 20 0"))
	f.Add([]byte(")"))
	f.Fuzz(func(t *testing.T, data []byte) {
		if _, ok := parseStatTicks(data); ok && !bytes.Contains(data, []byte(")")) {
			t.Fatalf("read CPU times from %q, which has no command name", data)
		}
	})
}
