package controller

import (
	"crypto/ed25519"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"google.golang.org/grpc"

	"github.com/dmsc-mesh/dmsc/controller/lsmsg"
	"github.com/dmsc-mesh/dmsc/p4"
	"github.com/dmsc-mesh/dmsc/p4rt"
	"github.com/dmsc-mesh/dmsc/spf"
	"github.com/dmsc-mesh/dmsc/wire"
)

// Role is what a switch is in the fabric.
type Role string

// Roles (DESIGN §1).
const (
	RoleSG Role = "sg" // Service Gateway: pods attach to it
	RoleSR Role = "sr" // Service Router: fabric only
)

// PortKind is what a front-panel port faces.
type PortKind string

// Port kinds.
const (
	PortFabric PortKind = "fabric" // another SG or SR: HELLOs, LSPs
	PortPod    PortKind = "pod"    // a pod (SG only): registration, src_guard
)

// Port is one front-panel port the agent manages.
type Port struct {
	Num  uint16
	Kind PortKind
	// Metric is the IGP metric of a fabric link (default 10).
	Metric uint32
	// Capacity in bits per second (0: unknown); telemetry and SCSC use it.
	Capacity uint64
}

// Pipeline is what the agent pushes to its switch. The zero value is the
// embedded DMSC program without a device config, which suits the software
// switch; BMv2 needs its JSON (p4.BMv2JSON).
type Pipeline struct {
	P4InfoText   []byte // P4Info, protobuf text format; nil: the embedded one
	DeviceConfig []byte
	Cookie       uint64 // 0: derived from the two above
}

// Timers pace the protocol. Zero fields take the defaults of DefaultTimers.
type Timers struct {
	// Hello is the interval between HELLOs on each fabric port; Dead is how
	// long a neighbour may stay silent before its adjacency goes down.
	Hello, Dead time.Duration
	// Retransmit is how long an LSP waits for its ACK before it is sent
	// again; AckDelay how long ACKs wait to be batched.
	Retransmit, AckDelay time.Duration
	// LSPMinInterval throttles re-origination of one fragment.
	LSPMinInterval time.Duration
	// Sync is the interval of the periodic database summary to each
	// neighbour (a full sync also runs when an adjacency comes up).
	Sync time.Duration
	// WarmHold is how long after a warm restart the agent leaves the FIB it
	// found alone while it relearns the network, unless every fabric port's
	// adjacency is up and synced before.
	WarmHold time.Duration
	// LSPLifetime and Refresh: lifetime of own LSPs and how often they are
	// refreshed (spf.Options).
	LSPLifetime uint16
	Refresh     time.Duration
	// PurgeHold is how long a purged fragment's header is kept, so that the
	// purge floods and late copies are recognised (spf ZeroAgeLifetime).
	PurgeHold time.Duration
	// SPF is the RFC 8405 back-off of route computations.
	SPF SPFDelay
}

// DefaultTimers detect a dead link within 100 ms (DESIGN: well under a
// second) and keep the control traffic small: a HELLO every 25 ms per port.
func DefaultTimers() Timers {
	return Timers{
		Hello:          25 * time.Millisecond,
		Dead:           100 * time.Millisecond,
		Retransmit:     200 * time.Millisecond,
		AckDelay:       2 * time.Millisecond,
		LSPMinInterval: 20 * time.Millisecond,
		Sync:           30 * time.Second,
		WarmHold:       3 * time.Second,
		LSPLifetime:    1200,
		Refresh:        15 * time.Minute,
		PurgeHold:      time.Minute,
		SPF:            DefaultSPFDelay(),
	}
}

func (t *Timers) fill() {
	d := DefaultTimers()
	set := func(v *time.Duration, def time.Duration) {
		if *v == 0 {
			*v = def
		}
	}
	set(&t.Hello, d.Hello)
	if t.Dead == 0 {
		t.Dead = 4 * t.Hello
	}
	set(&t.Retransmit, d.Retransmit)
	set(&t.AckDelay, d.AckDelay)
	set(&t.LSPMinInterval, d.LSPMinInterval)
	set(&t.Sync, d.Sync)
	set(&t.WarmHold, d.WarmHold)
	if t.LSPLifetime == 0 {
		t.LSPLifetime = d.LSPLifetime
	}
	set(&t.Refresh, time.Duration(t.LSPLifetime)*time.Second*3/4)
	set(&t.PurgeHold, d.PurgeHold)
	if t.SPF == (SPFDelay{}) {
		t.SPF = d.SPF
	}
}

// Config configures an agent.
type Config struct {
	// NodeID is the router id: unique in the fabric, a valid name component
	// ([a-z0-9-], 1–63 characters), since the node's key is /_node/<id>.
	NodeID spf.NodeID
	Role   Role
	// Switch is the P4Runtime address of the switch (BMv2, Tofino, or a
	// software switch), DeviceID its device id, ElectionID the agent's.
	Switch      string
	DeviceID    uint64
	ElectionID  p4rt.ElectionID
	DialOptions []grpc.DialOption
	Pipeline    Pipeline
	Ports       []Port
	// Key signs the node's LSPs; TrustedKeys gives the public key of every
	// node whose LSPs are accepted (this node's included).
	Key         ed25519.PrivateKey
	TrustedKeys lsmsg.Keys
	Timers      Timers
	Logger      *slog.Logger
	// SG, when Role is RoleSG, handles pod registration; see SGConfig.
	SG *SGConfig
	// GNMI, when set, serves the agent's state and accepts policies.
	GNMI *GNMIConfig
	// Probe configures an SG's probing of its target services.
	Probe ProbeConfig
}

// GNMIConfig configures the agent's gNMI target (docs/telemetry.md).
type GNMIConfig struct {
	// Listen is the address to serve on ("127.0.0.1:9339").
	Listen string
	// TLS is the server's TLS (ca.LoadServerTLS with the node certificate);
	// nil serves without TLS, for local use only. With TLS, any node of the
	// domain may read and only role scsc may Set.
	TLS *tls.Config
	// Domain is the identity domain checked on peers (with TLS).
	Domain string
	// Interval is how often counters and link figures are published
	// [1 s].
	Interval time.Duration
}

// ProbeConfig configures the probing of target services (SG) and of
// neighbours (every node). Zero fields take the defaults in brackets.
type ProbeConfig struct {
	// Targets are the services an SG probes; empty: every service in the
	// LSDB.
	Targets []string
	// Interval between probes to one target or neighbour [100 ms]; negative
	// turns probing off.
	Interval time.Duration
	// Window is what delay, jitter and loss are computed over [2 s].
	Window time.Duration
}

// Validate reports what is wrong with c, every problem at once.
func (c *Config) Validate() error {
	var errs []error
	if _, err := wire.NodeName(string(c.NodeID)); err != nil {
		errs = append(errs, fmt.Errorf("node id %q: %w", c.NodeID, err))
	}
	switch c.Role {
	case RoleSG, RoleSR:
	default:
		errs = append(errs, fmt.Errorf("role %q: want sg or sr", c.Role))
	}
	if c.Switch == "" {
		errs = append(errs, errors.New("switch: no P4Runtime address"))
	}
	if len(c.Key) != ed25519.PrivateKeySize {
		errs = append(errs, errors.New("key: no Ed25519 node key"))
	}
	if c.TrustedKeys == nil {
		errs = append(errs, errors.New("trusted keys: none given"))
	}
	seen := map[uint16]bool{}
	for i, p := range c.Ports {
		switch {
		case p.Num == 0 || p.Num >= p4.MaxPorts || p.Num == p4.CPUPort:
			errs = append(errs, fmt.Errorf("ports[%d]: port %d is not a front-panel port (1..%d, not %d)", i, p.Num, p4.MaxPorts-1, p4.CPUPort))
		case seen[p.Num]:
			errs = append(errs, fmt.Errorf("ports[%d]: port %d listed twice", i, p.Num))
		}
		seen[p.Num] = true
		switch p.Kind {
		case PortFabric:
			if p.Metric > spf.MaxMetric {
				errs = append(errs, fmt.Errorf("ports[%d]: metric %d above %d", i, p.Metric, spf.MaxMetric))
			}
		case PortPod:
			if c.Role != RoleSG {
				errs = append(errs, fmt.Errorf("ports[%d]: pod port on a %s (pods attach to SGs)", i, c.Role))
			}
		default:
			errs = append(errs, fmt.Errorf("ports[%d]: kind %q: want fabric or pod", i, p.Kind))
		}
	}
	t := c.Timers
	t.fill()
	if t.Dead <= t.Hello {
		errs = append(errs, fmt.Errorf("timers: dead interval %v must exceed the hello interval %v", t.Dead, t.Hello))
	}
	if t.Refresh >= time.Duration(t.LSPLifetime)*time.Second {
		errs = append(errs, fmt.Errorf("timers: refresh %v must be shorter than the LSP lifetime %ds", t.Refresh, t.LSPLifetime))
	}
	return errors.Join(errs...)
}
