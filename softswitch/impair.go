package softswitch

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/dmsc-mesh/dmsc/internal/units"
)

// Impairment is what a port's egress link does to the frames sent on it, in
// the manner of Linux netem and tbf: for testing how the fabric and its
// agents live with slow, lossy or narrow links. It is changed at run time
// with Switch.SetImpairment; the zero value is a perfect link.
type Impairment struct {
	// Delay is added to every frame.
	Delay time.Duration
	// Jitter varies the delay uniformly within ±Jitter (never below zero).
	// Frames are not reordered: a frame never leaves before the one sent
	// before it, which is what a single link does.
	Jitter time.Duration
	// Loss is the probability in [0, 1] of losing a frame (drop reason
	// Impairment, 13).
	Loss float64
	// Rate limits the link to this many bits per second (0: unlimited).
	// Frames wait their turn in the queue.
	Rate uint64
	// Queue is how many frames the link holds, waiting for the rate limit or
	// in the delay line; a frame that finds it full is dropped (reason
	// QueueFull, 14). 0 means DefaultImpairmentQueue.
	Queue int
}

// DefaultImpairmentQueue is the queue length when Impairment.Queue is 0,
// netem's default limit.
const DefaultImpairmentQueue = 1000

// IsZero reports whether the link is perfect.
func (im Impairment) IsZero() bool {
	return im.Delay == 0 && im.Jitter == 0 && im.Loss == 0 && im.Rate == 0
}

// String renders im in the form ParseImpairment reads.
func (im Impairment) String() string {
	if im.IsZero() && im.Queue == 0 {
		return "none"
	}
	var parts []string
	if im.Delay != 0 {
		parts = append(parts, "delay="+im.Delay.String())
	}
	if im.Jitter != 0 {
		parts = append(parts, "jitter="+im.Jitter.String())
	}
	if im.Loss != 0 {
		parts = append(parts, "loss="+strconv.FormatFloat(im.Loss, 'g', -1, 64))
	}
	if im.Rate != 0 {
		parts = append(parts, "rate="+strconv.FormatUint(im.Rate, 10)+"bit")
	}
	if im.Queue != 0 {
		parts = append(parts, "queue="+strconv.Itoa(im.Queue))
	}
	return strings.Join(parts, ",")
}

// Validate reports an impossible impairment.
func (im Impairment) Validate() error {
	var errs []error
	if im.Delay < 0 {
		errs = append(errs, fmt.Errorf("delay %v is negative", im.Delay))
	}
	if im.Jitter < 0 {
		errs = append(errs, fmt.Errorf("jitter %v is negative", im.Jitter))
	}
	if !(im.Loss >= 0 && im.Loss <= 1) {
		errs = append(errs, fmt.Errorf("loss %v is not in [0, 1]", im.Loss))
	}
	if im.Queue < 0 {
		errs = append(errs, fmt.Errorf("queue %d is negative", im.Queue))
	}
	return errors.Join(errs...)
}

// ParseImpairment reads "delay=5ms,jitter=1ms,loss=0.01,rate=100mbit,queue=1000".
// Every key is optional; "" and "none" are a perfect link. Durations take Go
// units (ms, us, s); loss is a fraction or a percentage ("1%"); rate is bits
// per second with tc's units (bit, kbit, mbit, gbit; bps, kbps… are bytes).
func ParseImpairment(s string) (Impairment, error) {
	var im Impairment
	s = strings.TrimSpace(s)
	if s == "" || s == "none" {
		return im, nil
	}
	seen := map[string]bool{}
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		k, v, ok := strings.Cut(part, "=")
		k, v = strings.ToLower(strings.TrimSpace(k)), strings.TrimSpace(v)
		if !ok || k == "" || v == "" {
			return Impairment{}, fmt.Errorf("impairment %q: %q is not key=value", s, part)
		}
		if seen[k] {
			return Impairment{}, fmt.Errorf("impairment %q: %s given twice", s, k)
		}
		seen[k] = true
		bad := func(err error) (Impairment, error) {
			return Impairment{}, fmt.Errorf("impairment %q: %s=%s: %w", s, k, v, err)
		}
		switch k {
		case "delay", "jitter":
			d, err := time.ParseDuration(v)
			if err != nil {
				return bad(errors.New("want a duration such as 5ms"))
			}
			if d < 0 {
				return bad(errors.New("negative"))
			}
			if k == "delay" {
				im.Delay = d
			} else {
				im.Jitter = d
			}
		case "loss":
			pct := strings.HasSuffix(v, "%")
			f, err := strconv.ParseFloat(strings.TrimSuffix(v, "%"), 64)
			if err != nil {
				return bad(errors.New("want a fraction such as 0.01 or a percentage such as 1%"))
			}
			if pct {
				f /= 100
			}
			if !(f >= 0 && f <= 1) {
				return bad(errors.New("not between 0 and 1 (0% and 100%)"))
			}
			im.Loss = f
		case "rate":
			r, err := units.ParsePositiveRate(v)
			if err != nil {
				return bad(err)
			}
			im.Rate = r
		case "queue", "limit":
			n, err := strconv.Atoi(v)
			if err != nil || n <= 0 {
				return bad(errors.New("want a positive number of frames"))
			}
			im.Queue = n
		default:
			return Impairment{}, fmt.Errorf("impairment %q: unknown key %q (want delay, jitter, loss, rate, queue)", s, k)
		}
	}
	return im, nil
}

// impairer is the egress link of one impaired port: a FIFO of frames with
// their departure times, served by one goroutine. It copies frames out of
// the receive buffers (they are reused as soon as the batch is done) into
// buffers of its own, recycled through a free list.
type impairer struct {
	sw  *Switch
	pe  *portEntry
	buf int // buffer size

	mu        sync.Mutex
	cfg       Impairment
	q         []pending // FIFO: q[head:]
	head      int
	busyUntil time.Time // the rate limiter's virtual clock
	lastDue   time.Time
	free      [][]byte

	wake chan struct{}
	stop chan struct{}
	done chan struct{}
}

type pending struct {
	buf []byte
	n   int
	due time.Time
}

func newImpairer(sw *Switch, pe *portEntry, cfg Impairment, bufSize int) *impairer {
	im := &impairer{
		sw: sw, pe: pe, buf: bufSize, cfg: cfg,
		wake: make(chan struct{}, 1),
		stop: make(chan struct{}),
		done: make(chan struct{}),
	}
	go im.run()
	return im
}

func (im *impairer) setConfig(cfg Impairment) {
	im.mu.Lock()
	im.cfg = cfg
	im.mu.Unlock()
}

// enqueue takes frames for the link; it never blocks.
func (im *impairer) enqueue(ms []Message) {
	now := time.Now()
	var lost, full, lostBytes, fullBytes uint64
	im.mu.Lock()
	cfg := im.cfg
	limit := cfg.Queue
	if limit == 0 {
		limit = DefaultImpairmentQueue
	}
	for i := range ms {
		m := &ms[i]
		if cfg.Loss > 0 && rand.Float64() < cfg.Loss {
			lost++
			lostBytes += uint64(m.N)
			continue
		}
		if len(im.q)-im.head >= limit {
			full++
			fullBytes += uint64(m.N)
			continue
		}
		start := now
		if im.busyUntil.After(start) {
			start = im.busyUntil
		}
		if cfg.Rate > 0 {
			start = start.Add(time.Duration(uint64(m.N) * 8 * uint64(time.Second) / cfg.Rate))
			im.busyUntil = start
		}
		due := start.Add(cfg.Delay)
		if cfg.Jitter > 0 {
			due = due.Add(time.Duration(rand.Int64N(2*int64(cfg.Jitter)+1)) - cfg.Jitter)
		}
		if due.Before(im.lastDue) {
			due = im.lastDue
		}
		im.lastDue = due
		var b []byte
		if k := len(im.free); k > 0 && m.N <= im.buf {
			b = im.free[k-1]
			im.free = im.free[:k-1]
		} else {
			b = make([]byte, max(m.N, im.buf))
		}
		copy(b, m.Buf[:m.N])
		im.q = append(im.q, pending{buf: b, n: m.N, due: due})
	}
	im.mu.Unlock()
	if lost > 0 || full > 0 {
		pipe := im.sw.pipeline()
		if pipe != nil {
			pipe.drops[dropImpairment].add(lost, lostBytes)
			pipe.drops[dropQueueFull].add(full, fullBytes)
		}
		im.pe.st.impairLoss.Add(lost)
		im.pe.st.queueFull.Add(full)
	}
	select {
	case im.wake <- struct{}{}:
	default:
	}
}

// run sends frames when they are due, in batches.
func (im *impairer) run() {
	defer close(im.done)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	out := make([]Message, 0, 64)
	for {
		im.mu.Lock()
		if im.head == len(im.q) {
			im.q, im.head = im.q[:0], 0
			im.mu.Unlock()
			select {
			case <-im.wake:
				continue
			case <-im.stop:
				return
			}
		}
		now := time.Now()
		if d := im.q[im.head].due.Sub(now); d > 0 {
			im.mu.Unlock()
			timer.Reset(d)
			select {
			case <-timer.C:
			case <-im.wake:
				// A new frame cannot be due before the head (no
				// reordering); only a config change could matter, and
				// it applies to new frames. Keep waiting.
				if !timer.Stop() {
					<-timer.C
				}
			case <-im.stop:
				return
			}
			continue
		}
		out = out[:0]
		for im.head < len(im.q) && len(out) < cap(out) && !im.q[im.head].due.After(now) {
			p := &im.q[im.head]
			out = append(out, Message{Buf: p.buf, N: p.n})
			*p = pending{}
			im.head++
		}
		// Under steady load the queue never empties: slide it back
		// instead of letting it grow.
		if im.head >= 1024 && im.head >= len(im.q)/2 {
			n := copy(im.q, im.q[im.head:])
			clear(im.q[n:])
			im.q, im.head = im.q[:n], 0
		}
		im.mu.Unlock()

		im.sw.send(im.pe, out)

		im.mu.Lock()
		for _, m := range out {
			if len(m.Buf) == im.buf && len(im.free) < 4096 {
				im.free = append(im.free, m.Buf)
			}
		}
		im.mu.Unlock()
	}
}

// close stops the link. With flush, frames still queued are sent at once
// (the impairment was lifted); otherwise they are discarded (the port is
// going away).
func (im *impairer) close(flush bool) {
	close(im.stop)
	<-im.done
	if !flush {
		return
	}
	im.mu.Lock()
	rest := im.q[im.head:]
	im.q, im.head = nil, 0
	im.mu.Unlock()
	out := make([]Message, 0, len(rest))
	for _, p := range rest {
		out = append(out, Message{Buf: p.buf, N: p.n})
	}
	im.sw.send(im.pe, out)
}
