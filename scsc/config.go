package scsc

import (
	"errors"
	"fmt"
	"math"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/dmsc-mesh/dmsc/internal/units"
	"github.com/dmsc-mesh/dmsc/internal/yamlconf"
	"github.com/dmsc-mesh/dmsc/wire"
)

// Config is SCSC's configuration, normally read from scsc.yaml by LoadConfig:
//
//	id: scsc1                      # owner of the policies it pushes
//	agents:                        # every agent of the domain (gNMI targets)
//	  - {name: sg1, addr: 10.0.0.1:9339}
//	  - {name: sr1, addr: 10.0.0.2:9339}
//	tls:                           # optional; without it: insecure, local use only
//	  ca: ca.crt
//	  cert: node.scsc1.crt         # a node certificate of role scsc
//	  key: node.scsc1.key
//	sample_interval: 200ms         # SAMPLE interval of probes, neighbours, interfaces
//	policy_ttl: 10s                # ttl_ms of every policy; renewed at a third of it
//	stale_after: 1s                # data of an agent not heard for this long is dropped
//	lsdb_sources: 2                # agents whose LSDB is followed (ON_CHANGE)
//	status_addr: 127.0.0.1:9340    # optional: GET /status serves Status as JSON
//	defaults:                      # thresholds of services that do not set their own
//	  max_delay: 10ms
//	  max_jitter: 2ms
//	  min_bandwidth: 100mbit
//	  max_loss: 0.01
//	services:
//	  - {name: /shop/cart, max_delay: 5ms}
//	hysteresis:
//	  trigger_after: 3             # consecutive bad samples before acting
//	  clear_after: 5s              # a policy stays until its condition is clear this long
//	  improvement: 0.2             # a path must be 20 % cheaper to replace the current one
//	election:                      # optional: leader election among replicas (etcd)
//	  endpoints: [127.0.0.1:2379]
//	  prefix: /dmsc/scsc/leader
//	  ttl: 5s
//
// Relative paths are relative to the configuration file's directory.
type Config struct {
	ID             string
	Agents         []AgentConfig
	TLS            *TLSFiles // nil: no TLS
	SampleInterval time.Duration
	PolicyTTL      time.Duration
	StaleAfter     time.Duration
	LSDBSources    int
	StatusAddr     string
	Defaults       Thresholds
	Services       []ServiceConfig
	Hysteresis     Hysteresis
	Election       *ElectionConfig // nil: a single replica, always the leader
}

// AgentConfig is one agent SCSC subscribes to. Name must be the agent's
// router id, as its LSP origin and its gNMI target name spell it.
type AgentConfig struct {
	Name string
	Addr string
}

// TLSFiles are the PEM files of SCSC's mutual TLS.
type TLSFiles struct {
	CA, Cert, Key string
}

// ElectionConfig is where replicas elect their leader.
type ElectionConfig struct {
	Endpoints []string
	Prefix    string
	TTL       time.Duration
}

// Thresholds are the draft's conditions on one service: the condition holds
// when delay ≥ MaxDelay, jitter ≥ MaxJitter, available bandwidth ≤
// MinBandwidth or loss ≥ MaxLoss. A zero threshold is not checked.
type Thresholds struct {
	MaxDelay     time.Duration
	MaxJitter    time.Duration
	MinBandwidth uint64 // bit/s
	MaxLoss      float64
}

// ServiceConfig is one service SCSC schedules.
type ServiceConfig struct {
	Name      string
	Key       wire.Key // wire.KeyOf of the name
	PrefixLen int      // 32 per name component
	Thresholds
}

// Hysteresis keeps policies from flapping.
type Hysteresis struct {
	// TriggerAfter is how many consecutive samples must show the condition
	// before SCSC acts.
	TriggerAfter int
	// ClearAfter is how long the condition must stay clear before a policy
	// is withdrawn; it is also the least time between two changes of one
	// decision.
	ClearAfter time.Duration
	// Improvement is the fraction by which a new path must be cheaper than
	// the one in use (SPF's or the current policy's) to replace it.
	Improvement float64
}

// Defaults of the optional fields.
const (
	DefaultSampleInterval = 200 * time.Millisecond
	DefaultPolicyTTL      = 10 * time.Second
	DefaultLSDBSources    = 2
	DefaultTriggerAfter   = 3
	DefaultClearAfter     = 5 * time.Second
	DefaultImprovement    = 0.2
	DefaultElectionPrefix = "/dmsc/scsc/leader"
	DefaultElectionTTL    = 5 * time.Second

	// MinPolicyTTL and MaxPolicyTTL bound ttl_ms (docs/telemetry.md).
	MinPolicyTTL = time.Second
	MaxPolicyTTL = 10 * time.Minute
)

// DefaultConfig has every default filled in and no agents or services.
func DefaultConfig() Config {
	return Config{
		ID:             "scsc",
		SampleInterval: DefaultSampleInterval,
		PolicyTTL:      DefaultPolicyTTL,
		LSDBSources:    DefaultLSDBSources,
		Hysteresis: Hysteresis{
			TriggerAfter: DefaultTriggerAfter,
			ClearAfter:   DefaultClearAfter,
			Improvement:  DefaultImprovement,
		},
	}
}

// staleAfter is StaleAfter, or its default: five sample intervals, at least
// a second, so that one late sample does not drop an agent.
func (c *Config) staleAfter() time.Duration {
	if c.StaleAfter > 0 {
		return c.StaleAfter
	}
	return max(5*c.SampleInterval, time.Second)
}

// Service returns the configuration of the named service.
func (c *Config) Service(name string) (*ServiceConfig, bool) {
	for i := range c.Services {
		if c.Services[i].Name == name {
			return &c.Services[i], true
		}
	}
	return nil, false
}

// NewService makes a ServiceConfig of a name, with its key.
func NewService(name string, th Thresholds) (ServiceConfig, error) {
	n, err := wire.ParseName(name)
	if err != nil {
		return ServiceConfig{}, err
	}
	if n.IsNode() {
		return ServiceConfig{}, fmt.Errorf("%s is a node name, not a service", name)
	}
	return ServiceConfig{Name: n.String(), Key: wire.KeyOf(n), PrefixLen: n.PrefixLen(), Thresholds: th}, nil
}

// Validate checks a Config built in code (LoadConfig checks as it reads,
// naming lines).
func (c *Config) Validate() error {
	if err := checkID(c.ID); err != nil {
		return fmt.Errorf("scsc config: id: %w", err)
	}
	if len(c.Agents) == 0 {
		return errors.New("scsc config: agents: none (want at least one {name, addr})")
	}
	names := map[string]int{}
	for i, a := range c.Agents {
		if _, err := wire.NodeName(a.Name); err != nil {
			return fmt.Errorf("scsc config: agents[%d].name: %q: %v", i, a.Name, err)
		}
		if j, dup := names[a.Name]; dup {
			return fmt.Errorf("scsc config: agents[%d].name: %s is also agents[%d]", i, a.Name, j)
		}
		names[a.Name] = i
		if _, _, err := net.SplitHostPort(a.Addr); err != nil {
			return fmt.Errorf("scsc config: agents[%d].addr: %q: want host:port (%v)", i, a.Addr, err)
		}
	}
	if c.TLS != nil && (c.TLS.CA == "" || c.TLS.Cert == "" || c.TLS.Key == "") {
		return errors.New("scsc config: tls: want ca, cert and key")
	}
	if c.SampleInterval < 10*time.Millisecond {
		return fmt.Errorf("scsc config: sample_interval: %v is below 10ms", c.SampleInterval)
	}
	if c.PolicyTTL < MinPolicyTTL || c.PolicyTTL > MaxPolicyTTL {
		return fmt.Errorf("scsc config: policy_ttl: %v is not within %v to %v", c.PolicyTTL, MinPolicyTTL, MaxPolicyTTL)
	}
	if c.StaleAfter < 0 {
		return fmt.Errorf("scsc config: stale_after: %v must not be negative", c.StaleAfter)
	}
	if c.LSDBSources < 1 {
		return fmt.Errorf("scsc config: lsdb_sources: %d must be at least 1", c.LSDBSources)
	}
	if c.StatusAddr != "" {
		if _, _, err := net.SplitHostPort(c.StatusAddr); err != nil {
			return fmt.Errorf("scsc config: status_addr: %q: want host:port (%v)", c.StatusAddr, err)
		}
	}
	if err := c.Defaults.validate(); err != nil {
		return fmt.Errorf("scsc config: defaults.%w", err)
	}
	seen := map[string]int{}
	for i, s := range c.Services {
		n, err := NewService(s.Name, s.Thresholds)
		if err != nil {
			return fmt.Errorf("scsc config: services[%d].name: %w", i, err)
		}
		if n.Key != s.Key || n.PrefixLen != s.PrefixLen || n.Name != s.Name {
			return fmt.Errorf("scsc config: services[%d]: key or prefix length do not match %s (build it with NewService)", i, s.Name)
		}
		if j, dup := seen[s.Name]; dup {
			return fmt.Errorf("scsc config: services[%d].name: %s is also services[%d]", i, s.Name, j)
		}
		seen[s.Name] = i
		if err := s.Thresholds.validate(); err != nil {
			return fmt.Errorf("scsc config: services[%d].%w", i, err)
		}
	}
	h := c.Hysteresis
	switch {
	case h.TriggerAfter < 1:
		return fmt.Errorf("scsc config: hysteresis.trigger_after: %d must be at least 1", h.TriggerAfter)
	case h.ClearAfter <= 0:
		return fmt.Errorf("scsc config: hysteresis.clear_after: %v must be positive", h.ClearAfter)
	case !(h.Improvement >= 0 && h.Improvement < 1):
		return fmt.Errorf("scsc config: hysteresis.improvement: %v must be from 0 to below 1", h.Improvement)
	}
	if e := c.Election; e != nil {
		if len(e.Endpoints) == 0 {
			return errors.New("scsc config: election.endpoints: none")
		}
		if e.Prefix == "" || !strings.HasPrefix(e.Prefix, "/") {
			return fmt.Errorf("scsc config: election.prefix: %q: want a key prefix starting with /", e.Prefix)
		}
		if e.TTL < time.Second {
			return fmt.Errorf("scsc config: election.ttl: %v is below 1s", e.TTL)
		}
	}
	return nil
}

func (t Thresholds) validate() error {
	switch {
	case t.MaxDelay < 0:
		return fmt.Errorf("max_delay: %v must not be negative", t.MaxDelay)
	case t.MaxJitter < 0:
		return fmt.Errorf("max_jitter: %v must not be negative", t.MaxJitter)
	case !(t.MaxLoss >= 0 && t.MaxLoss <= 1):
		return fmt.Errorf("max_loss: %v must be a fraction from 0 to 1", t.MaxLoss)
	}
	return nil
}

// checkID checks SCSC's id: it is written into every policy's owner and
// logged, so it follows the node-name rule.
func checkID(id string) error {
	if _, err := wire.NodeName(id); err != nil {
		return fmt.Errorf("%q: %v", id, errors.Unwrap(err))
	}
	return nil
}

// LoadConfig reads scsc.yaml. Errors name the file, line and field
// ("scsc.yaml:7: policy_ttl: ...").
func LoadConfig(path string) (*Config, error) {
	b, err := yamlconf.ReadFile(path, 4<<20)
	if err != nil {
		return nil, fmt.Errorf("scsc config: %w", err)
	}
	return ParseConfig(path, b, filepath.Dir(path))
}

type errAt func(n *yaml.Node, field, format string, args ...any) error

// fieldSet is the parsers of a mapping's fields, by key.
type fieldSet map[string]func(field string, v *yaml.Node) error

// ParseConfig parses scsc.yaml content named name; relative paths are
// joined to baseDir.
func ParseConfig(name string, data []byte, baseDir string) (*Config, error) {
	e := func(n *yaml.Node, field, format string, args ...any) error {
		return fmt.Errorf("%s:%d: %s: %s", name, n.Line, field, fmt.Sprintf(format, args...))
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("%s: %v", name, err)
	}
	if len(doc.Content) == 0 {
		return nil, fmt.Errorf("%s: empty (want id, agents, services, ...)", name)
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return nil, e(root, "(top level)", "want a mapping, got %s", yamlconf.KindName(root))
	}
	c := DefaultConfig()
	p := parser{e: e, baseDir: baseDir}

	// Service thresholds fall back to the defaults field by field, so they
	// are resolved after the whole file is read.
	type serviceAt struct {
		node *yaml.Node
		set  map[string]bool
		th   Thresholds
	}
	var services []serviceAt
	var tlsNode *yaml.Node

	fields := fieldSet{
		"id": func(field string, v *yaml.Node) error {
			if err := p.str(&c.ID)(field, v); err != nil {
				return err
			}
			if err := checkID(c.ID); err != nil {
				return e(v, field, "%v", err)
			}
			return nil
		},
		"agents": func(field string, v *yaml.Node) error {
			if v.Kind != yaml.SequenceNode {
				return e(v, field, "want a list of {name, addr}, got %s", yamlconf.KindName(v))
			}
			seen := map[string]int{}
			for i, item := range v.Content {
				at := fmt.Sprintf("%s[%d]", field, i)
				var a AgentConfig
				err := p.mapping(item, at, "name, addr", fieldSet{
					"name": func(f string, v *yaml.Node) error {
						if err := p.str(&a.Name)(f, v); err != nil {
							return err
						}
						if _, err := wire.NodeName(a.Name); err != nil {
							return e(v, f, "%q is not a router id: %v", a.Name, errors.Unwrap(err))
						}
						if j, dup := seen[a.Name]; dup {
							return e(v, f, "%s is also agents[%d]", a.Name, j)
						}
						seen[a.Name] = i
						return nil
					},
					"addr": p.hostPort(&a.Addr),
				})
				if err != nil {
					return err
				}
				if a.Name == "" || a.Addr == "" {
					return e(item, at, "want both name and addr")
				}
				c.Agents = append(c.Agents, a)
			}
			return nil
		},
		"tls": func(field string, v *yaml.Node) error {
			tlsNode = v
			c.TLS = &TLSFiles{}
			return p.mapping(v, field, "ca, cert, key", fieldSet{
				"ca":   p.path(&c.TLS.CA),
				"cert": p.path(&c.TLS.Cert),
				"key":  p.path(&c.TLS.Key),
			})
		},
		"sample_interval": p.dur(&c.SampleInterval, 10*time.Millisecond, time.Hour),
		"policy_ttl":      p.dur(&c.PolicyTTL, MinPolicyTTL, MaxPolicyTTL),
		"stale_after":     p.dur(&c.StaleAfter, 10*time.Millisecond, time.Hour),
		"lsdb_sources":    p.count(&c.LSDBSources, 1),
		"status_addr":     p.hostPort(&c.StatusAddr),
		"defaults": func(field string, v *yaml.Node) error {
			_, err := p.thresholds(v, field, &c.Defaults, nil)
			return err
		},
		"services": func(field string, v *yaml.Node) error {
			if v.Kind != yaml.SequenceNode {
				return e(v, field, "want a list of {name, max_delay, ...}, got %s", yamlconf.KindName(v))
			}
			seen := map[string]int{}
			for i, item := range v.Content {
				at := fmt.Sprintf("%s[%d]", field, i)
				var svcName string
				var nameNode *yaml.Node
				th := Thresholds{}
				set, err := p.thresholds(item, at, &th, fieldSet{
					"name": func(f string, v *yaml.Node) error {
						nameNode = v
						return p.str(&svcName)(f, v)
					},
				})
				if err != nil {
					return err
				}
				if nameNode == nil {
					return e(item, at+".name", "missing")
				}
				s, err := NewService(svcName, th)
				if err != nil {
					return e(nameNode, at+".name", "%v", err)
				}
				if j, dup := seen[s.Name]; dup {
					return e(nameNode, at+".name", "%s is also services[%d]", s.Name, j)
				}
				seen[s.Name] = i
				c.Services = append(c.Services, s)
				services = append(services, serviceAt{node: item, set: set, th: th})
			}
			return nil
		},
		"hysteresis": func(field string, v *yaml.Node) error {
			h := &c.Hysteresis
			return p.mapping(v, field, "trigger_after, clear_after, improvement", fieldSet{
				"trigger_after": p.count(&h.TriggerAfter, 1),
				"clear_after":   p.dur(&h.ClearAfter, time.Millisecond, 24*time.Hour),
				"improvement": func(f string, v *yaml.Node) error {
					x, err := p.fraction(v, f)
					if err != nil {
						return err
					}
					if x >= 1 {
						return e(v, f, "%v must be below 1 (a path cannot be 100 %% cheaper)", x)
					}
					h.Improvement = x
					return nil
				},
			})
		},
		"election": func(field string, v *yaml.Node) error {
			el := &ElectionConfig{Prefix: DefaultElectionPrefix, TTL: DefaultElectionTTL}
			c.Election = el
			err := p.mapping(v, field, "endpoints, prefix, ttl", fieldSet{
				"endpoints": func(f string, v *yaml.Node) error {
					if v.Kind != yaml.SequenceNode || len(v.Content) == 0 {
						return e(v, f, "want a non-empty list of host:port, got %s", yamlconf.Describe(v))
					}
					for i, ep := range v.Content {
						var s string
						if err := p.hostPort(&s)(fmt.Sprintf("%s[%d]", f, i), ep); err != nil {
							return err
						}
						el.Endpoints = append(el.Endpoints, s)
					}
					return nil
				},
				"prefix": func(f string, v *yaml.Node) error {
					if err := p.str(&el.Prefix)(f, v); err != nil {
						return err
					}
					if !strings.HasPrefix(el.Prefix, "/") {
						return e(v, f, "%q: want a key prefix starting with /", el.Prefix)
					}
					return nil
				},
				"ttl": p.dur(&el.TTL, time.Second, time.Hour),
			})
			if err == nil && len(el.Endpoints) == 0 {
				err = e(v, field+".endpoints", "missing")
			}
			return err
		},
	}
	lines := map[string]*yaml.Node{}
	err := p.eachField(root, "", func(key string, k, v *yaml.Node) error {
		f, ok := fields[key]
		if !ok {
			return e(k, key, "unknown field (want id, agents, tls, sample_interval, policy_ttl, stale_after, lsdb_sources, status_addr, defaults, services, hysteresis, election)")
		}
		lines[key] = k
		return f(key, v)
	})
	if err != nil {
		return nil, err
	}
	if _, ok := lines["agents"]; !ok || len(c.Agents) == 0 {
		return nil, fmt.Errorf("%s: agents: missing (want a list of {name, addr})", name)
	}
	if tlsNode != nil {
		for _, req := range []struct{ field, v string }{{"tls.ca", c.TLS.CA}, {"tls.cert", c.TLS.Cert}, {"tls.key", c.TLS.Key}} {
			if req.v == "" {
				return nil, e(lines["tls"], req.field, "missing")
			}
		}
	}
	for i, s := range services {
		th := &c.Services[i].Thresholds
		if !s.set["max_delay"] {
			th.MaxDelay = c.Defaults.MaxDelay
		}
		if !s.set["max_jitter"] {
			th.MaxJitter = c.Defaults.MaxJitter
		}
		if !s.set["min_bandwidth"] {
			th.MinBandwidth = c.Defaults.MinBandwidth
		}
		if !s.set["max_loss"] {
			th.MaxLoss = c.Defaults.MaxLoss
		}
		if *th == (Thresholds{}) {
			return nil, e(s.node, fmt.Sprintf("services[%d]", i), "%s has no threshold (set one, or defaults)", c.Services[i].Name)
		}
	}
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return &c, nil
}

// parser holds the helpers of ParseConfig.
type parser struct {
	e       errAt
	baseDir string
}

func (p parser) eachField(m *yaml.Node, path string, fn func(key string, k, v *yaml.Node) error) error {
	seen := map[string]bool{}
	for i := 0; i+1 < len(m.Content); i += 2 {
		k, v := m.Content[i], m.Content[i+1]
		field := k.Value
		if path != "" {
			field = path + "." + k.Value
		}
		if k.Kind != yaml.ScalarNode || (k.Tag != "!!str" && k.Tag != "") {
			return p.e(k, yamlconf.PathOr(path), "a key must be a plain string, got %s", yamlconf.Describe(k))
		}
		if seen[k.Value] {
			return p.e(k, field, "given twice")
		}
		seen[k.Value] = true
		if v.Kind == yaml.AliasNode {
			return p.e(v, field, "YAML aliases are not supported here")
		}
		if err := fn(k.Value, k, v); err != nil {
			return err
		}
	}
	return nil
}

// mapping parses v as a mapping of the given fields.
func (p parser) mapping(v *yaml.Node, path, want string, fields fieldSet) error {
	if v.Kind != yaml.MappingNode {
		return p.e(v, path, "want a mapping (%s), got %s", want, yamlconf.KindName(v))
	}
	return p.eachField(v, path, func(key string, k, val *yaml.Node) error {
		f, ok := fields[key]
		if !ok {
			return p.e(k, path+"."+key, "unknown field (want %s)", want)
		}
		return f(path+"."+key, val)
	})
}

// thresholds parses a mapping of thresholds (plus extra fields) into th and
// reports which thresholds it set.
func (p parser) thresholds(v *yaml.Node, path string, th *Thresholds, extra fieldSet) (map[string]bool, error) {
	set := map[string]bool{}
	mark := func(key string, f func(string, *yaml.Node) error) func(string, *yaml.Node) error {
		return func(field string, v *yaml.Node) error {
			set[key] = true
			return f(field, v)
		}
	}
	fields := fieldSet{
		"max_delay":  mark("max_delay", p.dur(&th.MaxDelay, 0, time.Hour)),
		"max_jitter": mark("max_jitter", p.dur(&th.MaxJitter, 0, time.Hour)),
		"min_bandwidth": mark("min_bandwidth", func(f string, v *yaml.Node) error {
			if v.Kind != yaml.ScalarNode {
				return p.e(v, f, "want a rate such as 100mbit, got %s", yamlconf.Describe(v))
			}
			r, err := units.ParseRate(v.Value)
			if err != nil {
				return p.e(v, f, "%v", err)
			}
			th.MinBandwidth = r
			return nil
		}),
		"max_loss": mark("max_loss", func(f string, v *yaml.Node) error {
			x, err := p.fraction(v, f)
			th.MaxLoss = x
			return err
		}),
	}
	want := "max_delay, max_jitter, min_bandwidth, max_loss"
	for k, f := range extra {
		fields[k] = f
		want = k + ", " + want
	}
	return set, p.mapping(v, path, want, fields)
}

func (p parser) str(dst *string) func(string, *yaml.Node) error {
	return func(field string, v *yaml.Node) error {
		if v.Kind != yaml.ScalarNode || v.Value == "" || v.Tag == "!!null" {
			return p.e(v, field, "want a non-empty string, got %s", yamlconf.Describe(v))
		}
		*dst = v.Value
		return nil
	}
}

func (p parser) path(dst *string) func(string, *yaml.Node) error {
	return func(field string, v *yaml.Node) error {
		if err := p.str(dst)(field, v); err != nil {
			return err
		}
		if !filepath.IsAbs(*dst) && p.baseDir != "" {
			*dst = filepath.Join(p.baseDir, *dst)
		}
		return nil
	}
}

func (p parser) hostPort(dst *string) func(string, *yaml.Node) error {
	return func(field string, v *yaml.Node) error {
		if err := p.str(dst)(field, v); err != nil {
			return err
		}
		if _, _, err := net.SplitHostPort(*dst); err != nil {
			return p.e(v, field, "%q: want host:port (%v)", *dst, err)
		}
		return nil
	}
}

// dur parses a duration within [least, most]; a zero duration is allowed
// only when least is 0 (a threshold that is not checked).
func (p parser) dur(dst *time.Duration, least, most time.Duration) func(string, *yaml.Node) error {
	return func(field string, v *yaml.Node) error {
		d, err := time.ParseDuration(v.Value)
		if v.Kind != yaml.ScalarNode || err != nil {
			return p.e(v, field, "want a duration such as 200ms or 5s, got %s", yamlconf.Describe(v))
		}
		if d < least || d > most {
			return p.e(v, field, "%v is not within %v to %v", d, least, most)
		}
		*dst = d
		return nil
	}
}

func (p parser) count(dst *int, least int) func(string, *yaml.Node) error {
	return func(field string, v *yaml.Node) error {
		n, err := strconv.ParseInt(v.Value, 10, 32)
		if v.Kind != yaml.ScalarNode || err != nil {
			return p.e(v, field, "want a whole number, got %s", yamlconf.Describe(v))
		}
		if n < int64(least) {
			return p.e(v, field, "%d must be at least %d", n, least)
		}
		*dst = int(n)
		return nil
	}
}

// fraction parses a number from 0 to 1, or a percentage such as "20%".
func (p parser) fraction(v *yaml.Node, field string) (float64, error) {
	if v.Kind != yaml.ScalarNode {
		return 0, p.e(v, field, "want a fraction from 0 to 1 or a percentage, got %s", yamlconf.Describe(v))
	}
	s := strings.TrimSpace(v.Value)
	scale := 1.0
	if t, ok := strings.CutSuffix(s, "%"); ok {
		s, scale = strings.TrimSpace(t), 100
	}
	x, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(x) || math.IsInf(x, 0) {
		return 0, p.e(v, field, "want a fraction from 0 to 1 or a percentage, got %s", yamlconf.Describe(v))
	}
	x /= scale
	if x < 0 || x > 1 {
		return 0, p.e(v, field, "%s is not from 0 to 1", v.Value)
	}
	return x, nil
}
