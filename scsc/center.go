package scsc

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"sync"
	"time"

	gpb "github.com/openconfig/gnmi/proto/gnmi"

	"github.com/dmsc-mesh/dmsc/ca"
	"github.com/dmsc-mesh/dmsc/gnmi"
)

// Center is the Scheduling Center: it subscribes to every agent, decides
// with a Decider, and, while it is the leader, pushes the policies by gNMI
// Set. Run is its event loop; Status may be called from any goroutine.
type Center struct {
	cfg    *Config
	log    *slog.Logger
	tls    *tls.Config
	leader Leader

	setTimeout  time.Duration
	dialTimeout time.Duration
	backoffMin  time.Duration
	backoffMax  time.Duration

	mu     sync.Mutex
	status Status
	// statusAddr is the address the status server listens on, once it does.
	statusAddr string
	running    bool
}

// Option configures a Center.
type Option func(*Center)

// WithLogger sets the logger (default: slog.Default()).
func WithLogger(l *slog.Logger) Option { return func(c *Center) { c.log = l } }

// WithTLS sets the client TLS configuration, instead of loading the
// config's tls files.
func WithTLS(t *tls.Config) Option { return func(c *Center) { c.tls = t } }

// WithLeader sets the leader election (default: the config's election, or
// SingleReplica).
func WithLeader(l Leader) Option { return func(c *Center) { c.leader = l } }

// WithSetTimeout bounds each Set to one agent (default 3 s).
func WithSetTimeout(d time.Duration) Option { return func(c *Center) { c.setTimeout = d } }

// WithBackoff sets the reconnection backoff bounds (default 100 ms to 5 s).
func WithBackoff(least, most time.Duration) Option {
	return func(c *Center) { c.backoffMin, c.backoffMax = least, most }
}

// New checks cfg and loads its TLS files (a node certificate of role scsc,
// accepting agents of roles sg and sr).
func New(cfg *Config, opts ...Option) (*Center, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	c := &Center{cfg: cfg, log: slog.Default(), setTimeout: 3 * time.Second, dialTimeout: 5 * time.Second,
		backoffMin: 100 * time.Millisecond, backoffMax: 5 * time.Second}
	for _, o := range opts {
		o(c)
	}
	if c.tls == nil && cfg.TLS != nil {
		t, err := LoadTLS(cfg.TLS)
		if err != nil {
			return nil, err
		}
		c.tls = t
	}
	if c.leader == nil {
		if cfg.Election != nil {
			return nil, errors.New("scsc: election is configured but no Leader was given (scsc/etcdleader builds one)")
		}
		c.leader = SingleReplica{}
	}
	c.status = Status{ID: cfg.ID}
	return c, nil
}

// LoadTLS loads SCSC's client TLS: its certificate must be a node
// certificate of role scsc (agents accept Set from that role only), and the
// servers it accepts are agents, of roles sg and sr.
func LoadTLS(f *TLSFiles) (*tls.Config, error) {
	t, id, err := ca.LoadClientTLS(f.CA, f.Cert, f.Key, ca.RoleSG, ca.RoleSR)
	if err != nil {
		return nil, fmt.Errorf("scsc tls: %w", err)
	}
	if id.Role != ca.RoleSCSC {
		return nil, fmt.Errorf("scsc tls: %s is %s: want a node certificate of role scsc", f.Cert, id)
	}
	return t, nil
}

// StatusAddr is the address of the status server once Run listens (empty
// without status_addr).
func (c *Center) StatusAddr() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.statusAddr
}

// Run runs the Center until ctx ends: it returns nil then, or an error
// that stopped it (the status address taken, say). Policies in force are
// left to expire at their TTL, so that a restarted or newly elected SCSC
// takes over without a gap.
func (c *Center) Run(ctx context.Context) error {
	c.mu.Lock()
	if c.running {
		c.mu.Unlock()
		return errors.New("scsc: Run is already running")
	}
	c.running = true
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		c.running = false
		c.mu.Unlock()
	}()

	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() {
		cancel()
		wg.Wait()
	}()

	if c.cfg.StatusAddr != "" {
		lis, err := net.Listen("tcp", c.cfg.StatusAddr)
		if err != nil {
			return fmt.Errorf("scsc: status_addr: %w", err)
		}
		c.mu.Lock()
		c.statusAddr = lis.Addr().String()
		c.mu.Unlock()
		srv := &http.Server{Handler: c.statusHandler(), ReadHeaderTimeout: 5 * time.Second}
		wg.Go(func() {
			if err := srv.Serve(lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
				c.log.Error("scsc: status server stopped", "err", err)
			}
		})
		wg.Go(func() {
			<-ctx.Done()
			sctx, scancel := context.WithTimeout(context.Background(), time.Second)
			defer scancel()
			srv.Shutdown(sctx) //nolint:errcheck // closing at exit
		})
	}

	l := newLoop(c)
	events := make(chan event, 4096)
	for _, a := range l.agents {
		wg.Go(func() { c.runAgent(ctx, a.conn, events) })
	}
	leads := make(chan bool, 1)
	wg.Go(func() { c.runLeader(ctx, leads) })
	c.log.Info("scsc running", "id", c.cfg.ID, "agents", len(c.cfg.Agents), "services", len(c.cfg.Services),
		"sample_interval", c.cfg.SampleInterval, "policy_ttl", c.cfg.PolicyTTL)
	err := l.run(ctx, events, leads)
	cancel()
	l.pushes.Wait()
	return err
}

// runLeader runs the election until ctx ends, restarting it after a
// failure.
func (c *Center) runLeader(ctx context.Context, leads chan<- bool) {
	for {
		err := c.leader.Lead(ctx, leads)
		if ctx.Err() != nil {
			return
		}
		c.log.Error("scsc: leader election failed; this replica follows until it is back", "err", err)
		select {
		case leads <- false:
		case <-ctx.Done():
			return
		}
		select {
		case <-time.After(time.Second):
		case <-ctx.Done():
			return
		}
	}
}

// eventKind says what an event carries.
type eventKind int

const (
	evTelemetry eventKind = iota // readings of the telemetry subscription
	evLSDB                       // readings of the LSDB subscription
	evLSDBSync                   // the LSDB's initial state is complete
	evLSDBReset                  // a new LSDB subscription starts: forget the old copy
	evUp                         // connected: client is usable for Sets
	evDown                       // disconnected (err says why)
	evPushed                     // a push job ended
)

type event struct {
	kind     eventKind
	agent    int
	readings []gnmi.Reading
	client   *gnmi.Client
	err      error
	push     *pushResult
}

// agentConn is what an agent's goroutine shares with the loop.
type agentConn struct {
	idx  int
	cfg  AgentConfig
	lsdb chan bool // whether to follow the LSDB; capacity 1, newest wins
}

// setLSDB tells the agent's goroutine whether to follow the LSDB, without
// blocking: an older wish not yet read is replaced.
func (a *agentConn) setLSDB(want bool) {
	for {
		select {
		case a.lsdb <- want:
			return
		default:
		}
		select {
		case <-a.lsdb:
		default:
		}
	}
}

func send(ctx context.Context, events chan<- event, ev event) bool {
	select {
	case events <- ev:
		return true
	case <-ctx.Done():
		return false
	}
}

// backoff is a capped exponential backoff with jitter.
type backoff struct {
	least, most, cur time.Duration
}

func (b *backoff) next() time.Duration {
	if b.cur == 0 {
		b.cur = b.least
	} else {
		b.cur = min(2*b.cur, b.most)
	}
	// ±20 % so that SCSC's reconnections to many agents spread out.
	return time.Duration(float64(b.cur) * (0.8 + 0.4*rand.Float64()))
}

func (b *backoff) reset() { b.cur = 0 }

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// runAgent keeps one agent's connection and subscriptions up until ctx
// ends, reconnecting with backoff.
func (c *Center) runAgent(ctx context.Context, a *agentConn, events chan<- event) {
	b := &backoff{least: c.backoffMin, most: c.backoffMax}
	for ctx.Err() == nil {
		dctx, dcancel := context.WithTimeout(ctx, c.dialTimeout)
		cl, err := gnmi.Dial(dctx, a.cfg.Addr, c.tls)
		dcancel()
		if err != nil {
			if !send(ctx, events, event{kind: evDown, agent: a.idx, err: err}) || !sleep(ctx, b.next()) {
				return
			}
			continue
		}
		if !send(ctx, events, event{kind: evUp, agent: a.idx, client: cl}) {
			cl.Close()
			return
		}
		start := time.Now()
		err = c.session(ctx, a, cl, events)
		cl.Close()
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			err = errors.New("the agent ended the subscription")
		}
		if !send(ctx, events, event{kind: evDown, agent: a.idx, err: err}) {
			return
		}
		if time.Since(start) > 10*c.backoffMax {
			b.reset()
		}
		if !sleep(ctx, b.next()) {
			return
		}
	}
}

// session runs the telemetry subscription of one connection, and the LSDB
// subscription while the loop wants it, until the telemetry ends.
func (c *Center) session(ctx context.Context, a *agentConn, cl *gnmi.Client, events chan<- event) error {
	sctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() {
		cancel()
		wg.Wait()
	}()
	telDone := make(chan error, 1)
	wg.Go(func() {
		telDone <- cl.Subscribe(sctx, telemetrySubscriptions(c.cfg.SampleInterval), c.forward(sctx, a.idx, evTelemetry, events))
	})

	var (
		want       bool
		lsdbCancel context.CancelFunc
		lsdbDone   chan error
		retry      <-chan time.Time
	)
	b := &backoff{least: c.backoffMin, most: c.backoffMax}
	startLSDB := func() {
		if !send(sctx, events, event{kind: evLSDBReset, agent: a.idx}) {
			return
		}
		lctx, lcancel := context.WithCancel(sctx)
		done := make(chan error, 1)
		lsdbCancel, lsdbDone = lcancel, done
		wg.Go(func() {
			done <- cl.Subscribe(lctx, lsdbSubscriptions(), c.forward(lctx, a.idx, evLSDB, events))
		})
	}
	stopLSDB := func() {
		if lsdbCancel != nil {
			lsdbCancel()
			<-lsdbDone
			lsdbCancel, lsdbDone = nil, nil
		}
	}
	defer stopLSDB()
	for {
		select {
		case err := <-telDone:
			return err
		case w := <-a.lsdb:
			want = w
			switch {
			case want && lsdbCancel == nil:
				retry = nil
				startLSDB()
			case !want:
				retry = nil
				stopLSDB()
			}
		case err := <-lsdbDone:
			lsdbCancel, lsdbDone = nil, nil
			if ctx.Err() == nil {
				c.log.Warn("scsc: LSDB subscription ended; retrying", "agent", a.cfg.Name, "err", err)
			}
			if want {
				retry = time.After(b.next())
			}
		case <-retry:
			retry = nil
			if want && lsdbCancel == nil {
				startLSDB()
			}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// forward is the callback of a subscription: it decodes each notification
// and hands it to the loop. A notification that does not decode is
// skipped (and logged): one bad value must not cost the whole stream.
func (c *Center) forward(ctx context.Context, idx int, kind eventKind, events chan<- event) func(*gpb.SubscribeResponse) error {
	return func(r *gpb.SubscribeResponse) error {
		if r.GetSyncResponse() {
			if kind == evLSDB && !send(ctx, events, event{kind: evLSDBSync, agent: idx}) {
				return ctx.Err()
			}
			return nil
		}
		n := r.GetUpdate()
		if n == nil {
			return nil
		}
		rs, err := gnmi.Decode(n)
		if err != nil {
			c.log.Warn("scsc: notification skipped", "agent", c.cfg.Agents[idx].Name, "err", err)
			return nil
		}
		if !send(ctx, events, event{kind: kind, agent: idx, readings: rs}) {
			return ctx.Err()
		}
		return nil
	}
}

// statusHandler serves GET /status as JSON.
func (c *Center) statusHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.Encode(c.Status()) //nolint:errcheck // the client went away
	})
	return mux
}

// Status returns a copy of the Center's state as of its last tick.
func (c *Center) Status() Status {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.status
	s.Agents = slices.Clone(s.Agents)
	s.Policies = slices.Clone(s.Policies)
	s.Decisions = slices.Clone(s.Decisions)
	return s
}

func (c *Center) setStatus(s Status) {
	c.mu.Lock()
	c.status = s
	c.mu.Unlock()
}
