package bmv2

import (
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"
)

const (
	// blastTime is how long the open-loop probe sends.
	blastTime = time.Second
	// searchTrial is how long each step of the rate search sends: long
	// enough that a switch cannot hide an overload in its ingress ring
	// (libpcap's 2 MiB holds about a second of BMv2's rate).
	searchTrial = 2 * time.Second
	// searchSteps bounds the rate search.
	searchSteps = 12
	// maxLoss is the loss (percent) a sustained rate must stay under.
	maxLoss = 1.0
	// margin is the share of the searched rate the timed runs offer. Near
	// its capacity a hop on this rig is bistable (one descheduled thread
	// overflows a socket buffer): a rate that passed a 2 s trial can lose
	// several percent in the next, so the timed runs stay 5 % below it.
	margin = 0.95
	// latencyRate and latencyTime shape the latency stream.
	latencyRate = 1000
	latencyTime = 2 * time.Second
)

var payloads = []int{64, 1400}

// sendersEnv sets how many senders offer frames into port 1, each on its
// own AF_PACKET socket and goroutine (default 1).
const sendersEnv = "DMSC_BENCH_SENDERS"

func senderCount(t testing.TB) int {
	v := os.Getenv(sendersEnv)
	if v == "" {
		return 1
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > 16 {
		t.Fatalf("%s=%q: want a number of senders from 1 to 16", sendersEnv, v)
	}
	return n
}

// probed is what a path and payload measured once, before the timed runs.
type probed struct {
	background float64 // machine busy before the probe, percent of all CPUs
	blast      outcome
	// rate is what the timed runs offer: 0 (unpaced) when the blast lost
	// under maxLoss, else margin × the highest rate the search found under
	// it (found).
	rate     float64
	found    float64
	searched []outcome
	lat      []int64 // sorted one-way latencies, ns
	latSent  int
}

// probe blasts, searches a sustainable rate if need be, and measures
// latency.
func (p *path) probe(t testing.TB, payload int) *probed {
	t.Helper()
	pr := &probed{background: background()}
	var err error
	pr.blast, err = p.run(nil, payload, 1<<30, 0, blastTime)
	if err != nil {
		t.Fatalf("%s, %d B, blast: %v", p.name, payload, err)
	}
	if pr.blast.loss() >= maxLoss {
		pr.found, pr.searched, err = p.search(payload, pr.blast)
		if err != nil {
			t.Fatalf("%s, %d B: %v", p.name, payload, err)
		}
		pr.rate = margin * pr.found
	}
	pr.lat, pr.latSent, err = p.latency(payload, latencyRate, latencyTime)
	if err != nil {
		t.Fatalf("%s, %d B, latency: %v", p.name, payload, err)
	}
	if len(pr.lat) == 0 {
		t.Fatalf("%s, %d B: none of the %d latency frames arrived", p.name, payload, pr.latSent)
	}
	return pr
}

// sustained says whether a paced trial kept up: under maxLoss lost, and
// forwarded at 98 % of the offered rate or more (a switch that only queues
// the excess in its ingress ring loses nothing in a short trial, but
// finishes late).
func sustained(o outcome) bool {
	return o.loss() < maxLoss && o.pps() >= 0.98*o.offered()*(1-o.loss()/100)
}

// search finds the highest paced rate the path sustains: it starts at the
// blast's forwarding rate, steps by 10 % until it has a rate that passes
// and one that fails, then bisects, until they are within 2 %.
func (p *path) search(payload int, blast outcome) (float64, []outcome, error) {
	lo, hi := 0.0, blast.offered()
	r := min(max(blast.pps(), 1000), 0.99*hi)
	var trials []outcome
	for range searchSteps {
		o, err := p.run(nil, payload, max(int(r*searchTrial.Seconds()), 1), r, 0)
		if err != nil {
			return 0, trials, fmt.Errorf("rate search at %.0f frames/s: %w", r, err)
		}
		trials = append(trials, o)
		// A sender that fell short of r (the machine's CPUs are shared by
		// sender, switch and receiver) did not show that r is sustained.
		pass := sustained(o) && o.offered() >= 0.97*r
		if pass {
			lo = r
		} else {
			hi = r
		}
		if lo > 0 && hi-lo <= 0.02*hi {
			break
		}
		mid := (lo + hi) / 2
		if pass {
			r = min(r*1.1, mid)
		} else {
			r = max(r*0.9, mid)
		}
	}
	if lo == 0 {
		return 0, trials, fmt.Errorf("no rate from %.0f frames/s down lost under %.0f %%", blast.pps(), maxLoss)
	}
	return lo, trials, nil
}

// BenchmarkForward measures one hop on each path, for each payload: see
// the package documentation for what each metric is.
func BenchmarkForward(b *testing.B) {
	for _, k := range kinds {
		b.Run(k.name, func(b *testing.B) {
			p := k.setup(b, senderCount(b))
			for _, payload := range payloads {
				var pr *probed
				b.Run(strconv.Itoa(payload), func(b *testing.B) {
					b.StopTimer()
					if pr == nil {
						pr = p.probe(b, payload)
						b.Logf("%s %d B: machine %.0f %% busy before the probe", p.name, payload, pr.background)
						b.Logf("%s %d B: blast offered %.0f/s, forwarded %.0f/s (loss %.2f %%; %v); search found %.0f/s, timed runs at %s; latency over %d of %d frames",
							p.name, payload, pr.blast.offered(), pr.blast.pps(), pr.blast.loss(), pr.blast.cpu, pr.found, rateString(pr.rate), len(pr.lat), pr.latSent)
						for _, o := range pr.searched {
							b.Logf("  search: offered %.0f/s, forwarded %.0f/s, loss %.2f %%, sustained %v; %v", o.offered(), o.pps(), o.loss(), sustained(o), o.cpu)
						}
					}
					o, err := p.run(b, payload, b.N, pr.rate, 0)
					if err != nil {
						b.Fatal(err)
					}
					b.ReportMetric(o.pps(), "pps")
					b.ReportMetric(o.loss(), "loss%")
					b.ReportMetric(o.offered(), "offered-pps")
					b.ReportMetric(pr.blast.pps(), "blast-pps")
					b.ReportMetric(pr.blast.loss(), "blast-loss%")
					b.ReportMetric(float64(percentile(pr.lat, 50))/1e3, "p50-µs")
					b.ReportMetric(float64(percentile(pr.lat, 99))/1e3, "p99-µs")
					if o.cpu.measurable {
						b.ReportMetric(o.cpu.rig, "rig-cpu%")
						b.ReportMetric(o.cpu.machine, "machine-cpu%")
						b.ReportMetric(pr.background, "background-cpu%")
						if p.pid != 0 {
							b.ReportMetric(o.cpu.switchAll, "switch-cpu%")
							b.ReportMetric(o.cpu.switchTop, "thread-cpu%")
						}
						if b.N > 1000 {
							b.Logf("timed run of %d frames: %v", b.N, o.cpu)
						}
					}
				})
			}
		})
	}
}

func rateString(r float64) string {
	if r == 0 {
		return "full speed"
	}
	return fmt.Sprintf("%.0f frames/s", r)
}

// TestSmoke runs each path for a moment: frames of both sizes at a low
// rate must come out of port 2 rewritten by the route (the receiver counts
// only those), and a few latency frames must arrive.
func TestSmoke(t *testing.T) {
	for _, k := range kinds {
		t.Run(k.name, func(t *testing.T) {
			p := k.setup(t, 1)
			for _, payload := range payloads {
				const n, rate = 300, 3000
				o, err := p.run(nil, payload, n, rate, 0)
				if err != nil {
					t.Fatalf("%d B: %v", payload, err)
				}
				// BMv2 may drop a frame of a burst (README of
				// bmv2-tests, "Pacing"); this rate stays far below any
				// path's capacity.
				if o.sent != n || o.received < n*95/100 {
					t.Errorf("%d B at %d/s: sent %d, received %d of %d (stray frames: %d)", payload, rate, o.sent, o.received, n, p.rx.other.Load())
				}
				lat, sent, err := p.latency(payload, latencyRate, 50*time.Millisecond)
				if err != nil {
					t.Fatalf("%d B latency: %v", payload, err)
				}
				if len(lat) < sent*9/10 || len(lat) == 0 || lat[0] <= 0 {
					t.Fatalf("%d B latency: %d of %d frames timed (sorted: %v)", payload, len(lat), sent, lat)
				}
				t.Logf("%s %d B: %d/%d frames at %d/s; latency p50 %.1f µs over %d frames", p.name, payload, o.received, o.sent, rate, float64(percentile(lat, 50))/1e3, len(lat))
			}
		})
	}
}
