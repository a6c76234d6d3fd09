package spa

import (
	"fmt"
	"math"
	"net"
	"path/filepath"
	"strconv"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/dmsc-mesh/dmsc/internal/yamlconf"
)

// Config is SPA's configuration, normally read from spa.yaml by LoadConfig:
//
//	listen: 0.0.0.0:7443          # gRPC over mTLS
//	tls:
//	  ca: ca.crt                  # the domain CA certificate
//	  cert: node.spa1.crt         # SPA's node certificate (role spa)
//	  key: node.spa1.key
//	store: spa.db                 # bbolt registry file
//	policy: policy.yaml           # reloaded on change
//	revocation: revoked.txt       # optional; reloaded on change
//	audit_log: audit.jsonl        # optional; default: the server's own log
//	lease: 30s                    # instance lease without Renew
//	challenge_window: 60s         # how old a challenge may be
//	clock_skew: 5s                # how far in the future a challenge may be
//	replay_memory: 262144         # challenges remembered at most
//	reload_interval: 2s           # how often policy and revocation files are checked
//	max_instances: 0              # per service; 0: the whole 32-bit id space
//	rate_limit:
//	  per_second: 100             # per calling SG; 0 turns the limit off
//	  burst: 200
//
// Relative paths are relative to the configuration file's directory.
type Config struct {
	Listen          string
	CA, Cert, Key   string
	Store           string
	Policy          string
	Revocation      string
	AuditLog        string
	Lease           time.Duration
	ChallengeWindow time.Duration
	ClockSkew       time.Duration
	ReplayMemory    int
	ReloadInterval  time.Duration
	MaxInstances    uint32
	RatePerSecond   float64
	RateBurst       int
}

// DefaultConfig has every default filled in; paths are empty.
func DefaultConfig() Config {
	return Config{
		Listen:          "0.0.0.0:7443",
		Lease:           30 * time.Second,
		ChallengeWindow: 60 * time.Second,
		ClockSkew:       5 * time.Second,
		ReplayMemory:    1 << 18,
		ReloadInterval:  2 * time.Second,
		RatePerSecond:   100,
		RateBurst:       200,
	}
}

// Validate checks a Config built in code (LoadConfig checks as it reads,
// naming lines).
func (c *Config) Validate() error {
	for _, f := range []struct{ name, v string }{{"tls.ca", c.CA}, {"tls.cert", c.Cert}, {"tls.key", c.Key}, {"store", c.Store}, {"policy", c.Policy}} {
		if f.v == "" {
			return fmt.Errorf("spa config: %s: missing", f.name)
		}
	}
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		return fmt.Errorf("spa config: listen: %q: %v", c.Listen, err)
	}
	for _, f := range []struct {
		name string
		v    time.Duration
	}{{"lease", c.Lease}, {"challenge_window", c.ChallengeWindow}, {"reload_interval", c.ReloadInterval}} {
		if f.v <= 0 {
			return fmt.Errorf("spa config: %s: %v must be positive", f.name, f.v)
		}
	}
	switch {
	case c.ClockSkew < 0:
		return fmt.Errorf("spa config: clock_skew: %v must not be negative", c.ClockSkew)
	case c.ReplayMemory <= 0:
		return fmt.Errorf("spa config: replay_memory: %d must be positive", c.ReplayMemory)
	case c.RatePerSecond < 0:
		return fmt.Errorf("spa config: rate_limit.per_second: %v must not be negative", c.RatePerSecond)
	case c.RatePerSecond > 0 && c.RateBurst < 1:
		return fmt.Errorf("spa config: rate_limit.burst: %d must be at least 1", c.RateBurst)
	}
	return nil
}

// LoadConfig reads spa.yaml. Errors name the file, line and field
// ("spa.yaml:7: lease: ...").
func LoadConfig(path string) (*Config, error) {
	b, err := yamlconf.ReadFile(path, 1<<20)
	if err != nil {
		return nil, fmt.Errorf("spa config: %w", err)
	}
	return ParseConfig(path, b, filepath.Dir(path))
}

// ParseConfig parses spa.yaml content; relative paths are joined to baseDir.
func ParseConfig(name string, data []byte, baseDir string) (*Config, error) {
	e := func(n *yaml.Node, field, format string, args ...any) error {
		return fmt.Errorf("%s:%d: %s: %s", name, n.Line, field, fmt.Sprintf(format, args...))
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("%s: %v", name, err)
	}
	if len(doc.Content) == 0 {
		return nil, fmt.Errorf("%s: empty (want listen, tls, store, policy, ...)", name)
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return nil, e(root, "(top level)", "want a mapping, got %s", yamlconf.KindName(root))
	}
	c := DefaultConfig()
	str := func(dst *string, isPath bool) func(string, *yaml.Node) error {
		return func(field string, v *yaml.Node) error {
			if v.Kind != yaml.ScalarNode || v.Value == "" || v.Tag == "!!null" {
				return e(v, field, "want a non-empty string, got %s", yamlconf.Describe(v))
			}
			*dst = v.Value
			if isPath && !filepath.IsAbs(*dst) && baseDir != "" {
				*dst = filepath.Join(baseDir, *dst)
			}
			return nil
		}
	}
	dur := func(dst *time.Duration) func(string, *yaml.Node) error {
		return func(field string, v *yaml.Node) error {
			d, err := time.ParseDuration(v.Value)
			if v.Kind != yaml.ScalarNode || err != nil {
				return e(v, field, "want a duration such as 30s or 2m, got %s", yamlconf.Describe(v))
			}
			if d <= 0 && field != "clock_skew" {
				return e(v, field, "%v must be positive", d)
			}
			if d < 0 {
				return e(v, field, "%v must not be negative", d)
			}
			*dst = d
			return nil
		}
	}
	unum := func(bits int, least uint64, set func(uint64)) func(string, *yaml.Node) error {
		return func(field string, v *yaml.Node) error {
			n, err := strconv.ParseUint(v.Value, 10, bits)
			if v.Kind != yaml.ScalarNode || err != nil {
				return e(v, field, "want a whole number of at most %d bits, got %s", bits, yamlconf.Describe(v))
			}
			if n < least {
				return e(v, field, "%d must be at least %d", n, least)
			}
			set(n)
			return nil
		}
	}
	fields := map[string]func(string, *yaml.Node) error{
		"listen": func(field string, v *yaml.Node) error {
			if err := str(&c.Listen, false)(field, v); err != nil {
				return err
			}
			if _, _, err := net.SplitHostPort(c.Listen); err != nil {
				return e(v, field, "%q: want host:port (%v)", c.Listen, err)
			}
			return nil
		},
		"store":            str(&c.Store, true),
		"policy":           str(&c.Policy, true),
		"revocation":       str(&c.Revocation, true),
		"audit_log":        str(&c.AuditLog, true),
		"lease":            dur(&c.Lease),
		"challenge_window": dur(&c.ChallengeWindow),
		"clock_skew":       dur(&c.ClockSkew),
		"reload_interval":  dur(&c.ReloadInterval),
		"replay_memory":    unum(31, 1, func(n uint64) { c.ReplayMemory = int(n) }),
		"max_instances":    unum(32, 0, func(n uint64) { c.MaxInstances = uint32(n) }),
	}
	tlsFields := map[string]func(string, *yaml.Node) error{
		"ca":   str(&c.CA, true),
		"cert": str(&c.Cert, true),
		"key":  str(&c.Key, true),
	}
	rateFields := map[string]func(string, *yaml.Node) error{
		"per_second": func(field string, v *yaml.Node) error {
			f, err := strconv.ParseFloat(v.Value, 64)
			if v.Kind != yaml.ScalarNode || err != nil || f < 0 || math.IsNaN(f) || math.IsInf(f, 0) {
				return e(v, field, "want a number of calls per second (0 turns the limit off), got %s", yamlconf.Describe(v))
			}
			c.RatePerSecond = f
			return nil
		},
		"burst": unum(31, 0, func(n uint64) { c.RateBurst = int(n) }),
	}
	group := func(fields map[string]func(string, *yaml.Node) error, want string) func(string, *yaml.Node) error {
		return func(path string, v *yaml.Node) error {
			if v.Kind != yaml.MappingNode {
				return e(v, path, "want a mapping (%s), got %s", want, yamlconf.KindName(v))
			}
			return eachField(v, e, path, func(key string, k, v *yaml.Node) error {
				f, ok := fields[key]
				if !ok {
					return e(k, path+"."+key, "unknown field (want %s)", want)
				}
				return f(path+"."+key, v)
			})
		}
	}
	fields["tls"] = group(tlsFields, "ca, cert, key")
	fields["rate_limit"] = group(rateFields, "per_second, burst")
	lines := map[string]int{}
	err := eachField(root, e, "", func(key string, k, v *yaml.Node) error {
		f, ok := fields[key]
		if !ok {
			return e(k, key, "unknown field (want listen, tls, store, policy, revocation, audit_log, lease, challenge_window, clock_skew, replay_memory, reload_interval, max_instances, rate_limit)")
		}
		lines[key] = k.Line
		return f(key, v)
	})
	if err != nil {
		return nil, err
	}
	for _, req := range []struct{ field, v string }{{"store", c.Store}, {"policy", c.Policy}} {
		if req.v == "" {
			return nil, fmt.Errorf("%s: %s: missing", name, req.field)
		}
	}
	if _, ok := lines["tls"]; !ok {
		return nil, fmt.Errorf("%s: tls: missing (want ca, cert, key)", name)
	}
	for _, req := range []struct{ field, v string }{{"tls.ca", c.CA}, {"tls.cert", c.Cert}, {"tls.key", c.Key}} {
		if req.v == "" {
			return nil, fmt.Errorf("%s:%d: %s: missing", name, lines["tls"], req.field)
		}
	}
	if c.RatePerSecond > 0 && c.RateBurst < 1 {
		return nil, fmt.Errorf("%s:%d: rate_limit.burst: must be at least 1 while per_second is above 0", name, lines["rate_limit"])
	}
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return &c, nil
}
