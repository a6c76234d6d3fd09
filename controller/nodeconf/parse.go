package nodeconf

import (
	"errors"
	"fmt"
	"math"
	"net"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/dmsc-mesh/dmsc/controller"
	"github.com/dmsc-mesh/dmsc/internal/units"
	"github.com/dmsc-mesh/dmsc/internal/yamlconf"
	"github.com/dmsc-mesh/dmsc/p4"
	"github.com/dmsc-mesh/dmsc/p4rt"
	"github.com/dmsc-mesh/dmsc/softswitch"
	"github.com/dmsc-mesh/dmsc/spf"
	"github.com/dmsc-mesh/dmsc/wire"
)

// parser walks the YAML tree by hand rather than decoding into structs:
// yaml.v3's decoder reports unknown fields and type errors with a line but
// without the field path, and stops at the first problem, where an operator
// fixing a file wants every problem with its place.
type parser struct {
	f     *File
	dir   string
	errs  Errors
	lines map[string]int // field path → line of its key or list item

	ports    []portAt
	embedded []specAt
	impair   []impairAt
	// Items of ports and embedded.ports, read or not: the cross checks stay
	// quiet about what already failed.
	portItems, embeddedItems int
	// sections present, by name
	has map[string]bool
}

type portAt struct {
	controller.Port
	path      string
	metricSet bool
}

type specAt struct {
	softswitch.PortSpec
	path string
}

type impairAt struct {
	PortImpairment
	path string
}

// field is one key of a mapping and what reads its value.
type field struct {
	name string
	read func(path string, v *yaml.Node)
}

func (p *parser) errf(line int, path, format string, args ...any) {
	p.errs = append(p.errs, &Error{Line: line, Field: path, Msg: fmt.Sprintf(format, args...)})
}

// at is the line of path, or of its nearest ancestor in the file.
func (p *parser) at(path string) int {
	for q := path; q != ""; {
		if n, ok := p.lines[q]; ok {
			return n
		}
		i := strings.LastIndexAny(q, ".[")
		if i < 0 {
			break
		}
		q = q[:i]
	}
	return 1
}

var yamlLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

func parseStatic(b []byte, dir string) *parser {
	p := &parser{
		f: &File{
			Switch: Switch{DeviceID: 1, ElectionID: p4rt.ElectionID{Low: 1}},
		},
		dir:   dir,
		lines: map[string]int{},
		has:   map[string]bool{},
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		msg := strings.TrimPrefix(err.Error(), "yaml: ")
		line := 1
		if m := yamlLine.FindStringSubmatch(err.Error()); m != nil {
			line, _ = strconv.Atoi(m[1])
			msg = m[2]
		}
		p.errf(line, "", "not valid YAML: %s", msg)
		return p
	}
	if len(doc.Content) == 0 {
		p.errf(1, "", "empty (want node, role, switch, ports, identity)")
		return p
	}
	root := deref(doc.Content[0])
	seen := p.mapping(root, "", "node, role, switch, embedded, ports, identity, timers, sg, gnmi, probe", []field{
		{"node", p.readNode},
		{"role", p.readRole},
		{"switch", p.readSwitch},
		{"embedded", p.readEmbedded},
		{"ports", p.readPorts},
		{"identity", p.readIdentity},
		{"timers", p.readTimers},
		{"sg", p.readSG},
		{"gnmi", p.readGNMI},
		{"probe", p.readProbe},
	})
	if seen == nil {
		return p
	}
	p.has = seen
	p.require(seen, "", root.Line, "node", "role", "switch", "ports", "identity")
	p.crossCheck()
	return p
}

// deref follows YAML aliases (*anchor) to the node they name.
func deref(n *yaml.Node) *yaml.Node {
	for i := 0; n.Kind == yaml.AliasNode && n.Alias != nil && i < 100; i++ {
		n = n.Alias
	}
	return n
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// mapping reads the keys of n with fs; it returns the keys present, or nil
// when n is not a mapping.
func (p *parser) mapping(n *yaml.Node, path, want string, fs []field) map[string]bool {
	n = deref(n)
	if n.Kind != yaml.MappingNode {
		where := path
		if where == "" {
			where = "(top level)"
		}
		p.errf(n.Line, where, "want a mapping (%s), got %s", want, yamlconf.Describe(n))
		return nil
	}
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := deref(n.Content[i]), deref(n.Content[i+1])
		if k.Kind != yaml.ScalarNode {
			p.errf(k.Line, join(path, "?"), "a key must be a plain name, got %s", yamlconf.Describe(k))
			continue
		}
		fp := join(path, k.Value)
		if seen[k.Value] {
			p.errf(k.Line, fp, "given twice (first at line %d)", p.lines[fp])
			continue
		}
		seen[k.Value] = true
		p.lines[fp] = k.Line
		var read func(string, *yaml.Node)
		for _, f := range fs {
			if f.name == k.Value {
				read = f.read
				break
			}
		}
		if read == nil {
			p.errf(k.Line, fp, "unknown field (want %s)", want)
			continue
		}
		read(fp, v)
	}
	return seen
}

// require reports the fields of names missing from seen.
func (p *parser) require(seen map[string]bool, path string, line int, names ...string) {
	if seen == nil {
		return
	}
	for _, n := range names {
		if !seen[n] {
			p.errf(line, join(path, n), "missing")
		}
	}
}

// list calls item for each element of the sequence v.
func (p *parser) list(path string, v *yaml.Node, want string, item func(path string, n *yaml.Node)) {
	if v.Kind != yaml.SequenceNode {
		p.errf(v.Line, path, "want a list of %s, got %s", want, yamlconf.Describe(v))
		return
	}
	for i, n := range v.Content {
		ip := fmt.Sprintf("%s[%d]", path, i)
		n = deref(n)
		p.lines[ip] = n.Line
		item(ip, n)
	}
}

func (p *parser) scalar(path string, v *yaml.Node, want string) (string, bool) {
	if v.Kind != yaml.ScalarNode || v.Tag == "!!null" || strings.TrimSpace(v.Value) == "" {
		p.errf(v.Line, path, "want %s, got %s", want, yamlconf.Describe(v))
		return "", false
	}
	return strings.TrimSpace(v.Value), true
}

// filePath reads a path, relative to the file's directory.
func (p *parser) filePath(dst *string) func(string, *yaml.Node) {
	return func(path string, v *yaml.Node) {
		s, ok := p.scalar(path, v, "a file path")
		if !ok {
			return
		}
		if !filepath.IsAbs(s) && p.dir != "" {
			s = filepath.Join(p.dir, s)
		}
		*dst = s
	}
}

// duration reads a positive duration (or, with zeroOK, a non-negative one).
func (p *parser) duration(dst *time.Duration, zeroOK bool) func(string, *yaml.Node) {
	return func(path string, v *yaml.Node) {
		s, ok := p.scalar(path, v, "a duration such as 100ms or 2s")
		if !ok {
			return
		}
		d, err := time.ParseDuration(s)
		switch {
		case err != nil:
			p.errf(v.Line, path, "%q: want a duration such as 100ms or 2s", s)
		case d < 0 || d == 0 && !zeroOK:
			p.errf(v.Line, path, "%v: must be %s", d, map[bool]string{false: "positive", true: "zero or positive"}[zeroOK])
		default:
			*dst = d
		}
	}
}

// uint reads a whole number in [lo, hi].
func (p *parser) uint(lo, hi uint64, set func(uint64)) func(string, *yaml.Node) {
	return func(path string, v *yaml.Node) {
		want := fmt.Sprintf("a whole number from %d to %d", lo, hi)
		if hi == math.MaxUint64 {
			want = fmt.Sprintf("a whole number of at least %d", lo)
		}
		s, ok := p.scalar(path, v, want)
		if !ok {
			return
		}
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil || n < lo || n > hi {
			p.errf(v.Line, path, "%q: want %s", s, want)
			return
		}
		set(n)
	}
}

// address reads host:port; with zeroPort, port 0 (any free port) is allowed.
func (p *parser) address(dst *string, zeroPort bool) func(string, *yaml.Node) {
	return func(path string, v *yaml.Node) {
		s, ok := p.scalar(path, v, "an address host:port")
		if !ok {
			return
		}
		if err := checkAddr(s, zeroPort); err != nil {
			p.errf(v.Line, path, "%q: %v", s, err)
			return
		}
		*dst = s
	}
}

func checkAddr(s string, zeroPort bool) error {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return errors.New("want host:port")
	}
	n, err := strconv.ParseUint(port, 10, 16)
	switch {
	case err != nil:
		return fmt.Errorf("port %q is not a number from 1 to 65535", port)
	case n == 0 && !zeroPort:
		return errors.New("port 0: give the port to connect to")
	case host == "" && !zeroPort:
		return errors.New("no host: give the host to connect to")
	}
	return nil
}

// rate reads bits per second with tc's units, exactly as the software
// switch reads an impairment's rate, so that capacity: 100mbit and
// impair: rate=100mbit mean the same.
func (p *parser) rate(dst *uint64) func(string, *yaml.Node) {
	return func(path string, v *yaml.Node) {
		s, ok := p.scalar(path, v, "a rate such as 10gbit or 100mbit")
		if !ok {
			return
		}
		bad := func() {
			p.errf(v.Line, path, "%q: want a rate such as 10gbit, 100mbit or 500kbit (bits per second; bps, kbps, mbps, gbps are bytes per second)", s)
		}
		r, err := units.ParsePositiveRate(s)
		if err != nil {
			bad()
			return
		}
		*dst = r
	}
}

func (p *parser) readNode(path string, v *yaml.Node) {
	s, ok := p.scalar(path, v, "a router id such as sg1")
	if !ok {
		return
	}
	if _, err := wire.NodeName(s); err != nil {
		inner := err
		if u := errors.Unwrap(err); u != nil {
			inner = u
		}
		p.errf(v.Line, path, "%v (want 1 to 63 of [a-z0-9-]; the node's key is /_node/<id>)", inner)
		return
	}
	p.f.Node = spf.NodeID(s)
}

func (p *parser) readRole(path string, v *yaml.Node) {
	s, ok := p.scalar(path, v, "sg or sr")
	if !ok {
		return
	}
	switch r := controller.Role(s); r {
	case controller.RoleSG, controller.RoleSR:
		p.f.Role = r
	default:
		p.errf(v.Line, path, "%q: want sg or sr", s)
	}
}

func (p *parser) readSwitch(path string, v *yaml.Node) {
	s := &p.f.Switch
	seen := p.mapping(v, path, "p4rt, device_id, election_id, pipeline", []field{
		{"p4rt", func(path string, v *yaml.Node) {
			a, ok := p.scalar(path, v, `the switch's P4Runtime address host:port, unix:///path, or "embedded"`)
			if !ok {
				return
			}
			if sock, isUnix := strings.CutPrefix(a, "unix://"); isUnix {
				// A Unix socket reaches a switch in another network
				// namespace (simple_switch_grpc --grpc-server-addr unix://...).
				if !filepath.IsAbs(sock) {
					p.errf(v.Line, path, "%q: a Unix socket address is unix:// and an absolute path", a)
					return
				}
			} else if a != Embedded {
				if err := checkAddr(a, false); err != nil {
					p.errf(v.Line, path, "%q: %v (or \"embedded\" for an in-process software switch)", a, err)
					return
				}
			}
			s.P4RT = a
		}},
		// Device id 0 is refused: controller.Config takes 0 for "the
		// default", 1. Start simple_switch_grpc with --device-id 1.
		{"device_id", p.uint(1, math.MaxUint64, func(n uint64) { s.DeviceID = n })},
		{"election_id", p.uint(1, math.MaxUint64, func(n uint64) { s.ElectionID = p4rt.ElectionID{Low: n} })},
		{"pipeline", func(path string, v *yaml.Node) {
			p.mapping(v, path, "p4info, device_config", []field{
				{"p4info", p.filePath(&s.P4Info)},
				{"device_config", p.filePath(&s.DeviceConfig)},
			})
		}},
	})
	p.require(seen, path, p.at(path), "p4rt")
}

func (p *parser) readEmbedded(path string, v *yaml.Node) {
	p.f.Embedded = &EmbeddedSwitch{}
	seen := p.mapping(v, path, "ports, impair", []field{
		{"ports", func(path string, v *yaml.Node) {
			p.list(path, v, "port specs N=udp:LOCAL,PEER or N=iface:NAME", func(ip string, n *yaml.Node) {
				p.embeddedItems++
				s, ok := p.scalar(ip, n, "a port spec N=udp:LOCAL,PEER or N=iface:NAME")
				if !ok {
					return
				}
				ps, err := softswitch.ParsePortSpec(s)
				if err != nil {
					p.errf(n.Line, ip, "%v", err)
					return
				}
				if ps.Kind == "mem" {
					p.errf(n.Line, ip, "%q: an in-memory port has no other end outside the process (want udp or iface)", s)
					return
				}

				p.embedded = append(p.embedded, specAt{ps, ip})
			})
		}},
		{"impair", func(path string, v *yaml.Node) {
			p.list(path, v, "impairments N:delay=D,jitter=D,loss=P,rate=R,queue=Q", func(ip string, n *yaml.Node) {
				s, ok := p.scalar(ip, n, "an impairment N:delay=D,jitter=D,loss=P,rate=R,queue=Q")
				if !ok {
					return
				}
				numStr, spec, ok := strings.Cut(s, ":")
				num, err := strconv.ParseUint(strings.TrimSpace(numStr), 10, 16)
				if !ok || err != nil {
					p.errf(n.Line, ip, "%q: want PORT:delay=D,jitter=D,loss=P,rate=R,queue=Q", s)
					return
				}
				im, err := softswitch.ParseImpairment(spec)
				if err != nil {
					p.errf(n.Line, ip, "%v", err)
					return
				}
				p.impair = append(p.impair, impairAt{PortImpairment{uint16(num), im}, ip})
			})
		}},
	})
	p.require(seen, path, p.at(path), "ports")
	if seen["ports"] && p.embeddedItems == 0 {
		p.errf(p.at(path+".ports"), path+".ports", "no ports: the software switch needs at least one")
	}
}

func (p *parser) readPorts(path string, v *yaml.Node) {
	p.list(path, v, "ports {num: N, kind: fabric|pod, metric: M, capacity: R}", func(ip string, n *yaml.Node) {
		p.portItems++
		pa := portAt{path: ip}
		seen := p.mapping(n, ip, "num, kind, metric, capacity", []field{
			{"num", p.uint(0, math.MaxUint16, func(v uint64) { pa.Num = uint16(v) })},
			{"kind", func(path string, v *yaml.Node) {
				s, ok := p.scalar(path, v, "fabric or pod")
				if !ok {
					return
				}
				switch k := controller.PortKind(s); k {
				case controller.PortFabric, controller.PortPod:
					pa.Kind = k
				default:
					p.errf(v.Line, path, "%q: want fabric or pod", s)
				}
			}},
			{"metric", p.uint(1, spf.MaxMetric, func(v uint64) { pa.Metric = uint32(v); pa.metricSet = true })},
			{"capacity", p.rate(&pa.Capacity)},
		})
		if seen == nil {
			return
		}
		p.require(seen, ip, n.Line, "num", "kind")
		if seen["num"] {
			if err := checkPortNum(pa.Num); err != nil {
				p.errf(p.at(ip+".num"), ip+".num", "%v", err)
				return
			}
		}
		if seen["num"] && seen["kind"] {
			p.ports = append(p.ports, pa)
		}
	})
}

// checkPortNum accepts the front-panel ports of the 9-bit v1model port
// space: not 0, not the CPU port, not the drop port.
func checkPortNum(n uint16) error {
	switch {
	case n == 0 || n >= p4.MaxPorts:
		return fmt.Errorf("port %d: ports are 1 to %d", n, p4.MaxPorts-2)
	case n == p4.CPUPort:
		return fmt.Errorf("port %d is the CPU port", n)
	case n == p4.MaxPorts-1:
		return fmt.Errorf("port %d is v1model's drop port", n)
	}
	return nil
}

func (p *parser) readIdentity(path string, v *yaml.Node) {
	id := &p.f.Identity
	seen := p.mapping(v, path, "ca, cert, key, trusted_nodes", []field{
		{"ca", p.filePath(&id.CA)},
		{"cert", p.filePath(&id.Cert)},
		{"key", p.filePath(&id.Key)},
		{"trusted_nodes", p.filePath(&id.TrustedNodes)},
	})
	p.require(seen, path, p.at(path), "ca", "cert", "key")
}

func (p *parser) readTimers(path string, v *yaml.Node) {
	t := &p.f.Timers
	p.mapping(v, path, "hello, dead, retransmit, ack_delay, lsp_min_interval, sync, warm_hold, lsp_lifetime, refresh, purge_hold, spf", []field{
		{"hello", p.duration(&t.Hello, false)},
		{"dead", p.duration(&t.Dead, false)},
		{"retransmit", p.duration(&t.Retransmit, false)},
		{"ack_delay", p.duration(&t.AckDelay, false)},
		{"lsp_min_interval", p.duration(&t.LSPMinInterval, false)},
		{"sync", p.duration(&t.Sync, false)},
		{"warm_hold", p.duration(&t.WarmHold, false)},
		{"lsp_lifetime", func(path string, v *yaml.Node) {
			// Seconds, as on the wire; a duration of whole seconds reads too.
			s, ok := p.scalar(path, v, "seconds from 1 to 65535, or a duration such as 20m")
			if !ok {
				return
			}
			secs, err := strconv.ParseUint(s, 10, 64)
			if err != nil {
				d, derr := time.ParseDuration(s)
				if derr != nil || d%time.Second != 0 {
					p.errf(v.Line, path, "%q: want seconds from 1 to 65535, or a duration of whole seconds such as 20m", s)
					return
				}
				secs = uint64(max(d/time.Second, 0))
			}
			if secs < 1 || secs > math.MaxUint16 {
				p.errf(v.Line, path, "%q: the lifetime is 1 to 65535 seconds", s)
				return
			}
			t.LSPLifetime = uint16(secs)
		}},
		{"refresh", p.duration(&t.Refresh, false)},
		{"purge_hold", p.duration(&t.PurgeHold, false)},
		{"spf", func(path string, v *yaml.Node) {
			// Fields left out keep DefaultSPFDelay's values: a zero SPFDelay
			// would mean "all defaults" to the controller, a partly zero one
			// would mean zero delays.
			d := controller.DefaultSPFDelay()
			if p.mapping(v, path, "initial_delay, short_delay, long_delay, holddown, time_to_learn", []field{
				{"initial_delay", p.duration(&d.InitialDelay, true)},
				{"short_delay", p.duration(&d.ShortDelay, false)},
				{"long_delay", p.duration(&d.LongDelay, false)},
				{"holddown", p.duration(&d.HoldDown, false)},
				{"time_to_learn", p.duration(&d.TimeToLearn, false)},
			}) != nil {
				t.SPF = d
			}
		}},
	})
	// The controller's rules for defaults (controller.Timers): dead is 4 ×
	// hello, refresh ¾ of the lifetime.
	def := controller.DefaultTimers()
	hello := cmpOr(t.Hello, def.Hello)
	dead := cmpOr(t.Dead, 4*hello)
	if dead <= hello {
		f := "timers.dead"
		if t.Dead == 0 {
			f = "timers.hello"
		}
		p.errf(p.at(f), f, "the dead interval %v must exceed the hello interval %v", dead, hello)
	}
	life := time.Duration(cmpOr(t.LSPLifetime, def.LSPLifetime)) * time.Second
	refresh := cmpOr(t.Refresh, life*3/4)
	if refresh >= life {
		f := "timers.refresh"
		if t.Refresh == 0 {
			f = "timers.lsp_lifetime"
		}
		p.errf(p.at(f), f, "the refresh interval %v must be shorter than the LSP lifetime %v", refresh, life)
	}
}

func cmpOr[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

func (p *parser) readSG(path string, v *yaml.Node) {
	sg := &SG{}
	c := &sg.Settings
	seen := p.mapping(v, path, "spa, keepalive, hold, challenge_ttl, max_instances_per_port, announce_rate, announce_burst, spa_timeout, retry_after", []field{
		{"spa", p.address(&sg.SPAAddr, false)},
		{"keepalive", p.duration(&c.Keepalive, false)},
		{"hold", p.duration(&c.Hold, false)},
		{"challenge_ttl", p.duration(&c.ChallengeTTL, false)},
		{"max_instances_per_port", p.uint(1, 1<<20, func(n uint64) { c.MaxInstancesPerPort = int(n) })},
		{"announce_rate", func(path string, v *yaml.Node) {
			s, ok := p.scalar(path, v, "ANNOUNCEs per second per port")
			if !ok {
				return
			}
			r, err := strconv.ParseFloat(s, 64)
			if err != nil || !(r > 0) || math.IsInf(r, 0) {
				p.errf(v.Line, path, "%q: want a positive number of ANNOUNCEs per second per port", s)
				return
			}
			c.AnnounceRate = r
		}},
		{"announce_burst", p.uint(1, 1<<20, func(n uint64) { c.AnnounceBurst = int(n) })},
		{"spa_timeout", p.duration(&c.SPATimeout, false)},
		{"retry_after", p.duration(&c.RetryAfter, false)},
	})
	if seen == nil {
		return
	}
	p.f.SG = sg
	p.require(seen, path, p.at(path), "spa")
	keepalive := cmpOr(c.Keepalive, time.Second)
	hold := cmpOr(c.Hold, 3*keepalive)
	if hold <= keepalive {
		f := "sg.hold"
		if c.Hold == 0 {
			f = "sg.keepalive"
		}
		p.errf(p.at(f), f, "the hold time %v must exceed the keepalive interval %v", hold, keepalive)
	}
}

func (p *parser) readGNMI(path string, v *yaml.Node) {
	g := &GNMI{TLS: true}
	seen := p.mapping(v, path, "listen, tls, interval", []field{
		{"listen", p.address(&g.Listen, true)},
		{"tls", func(path string, v *yaml.Node) {
			s, ok := p.scalar(path, v, "true or false")
			if !ok {
				return
			}
			b, err := strconv.ParseBool(s)
			if err != nil {
				p.errf(v.Line, path, "%q: want true or false", s)
				return
			}
			g.TLS = b
		}},
		{"interval", p.duration(&g.Interval, false)},
	})
	if seen == nil {
		return
	}
	p.f.GNMI = g
	p.require(seen, path, p.at(path), "listen")
}

func (p *parser) readProbe(path string, v *yaml.Node) {
	c := &p.f.Probe
	p.mapping(v, path, "targets, interval, window", []field{
		{"targets", func(path string, v *yaml.Node) {
			p.list(path, v, "service names such as /shop/cart", func(ip string, n *yaml.Node) {
				s, ok := p.scalar(ip, n, "a service name such as /shop/cart")
				if !ok {
					return
				}
				if _, err := wire.ParseName(s); err != nil {
					p.errf(n.Line, ip, "%v", strings.TrimPrefix(err.Error(), "wire: "))
					return
				}
				c.Targets = append(c.Targets, s)
			})
		}},
		{"interval", func(path string, v *yaml.Node) {
			s, ok := p.scalar(path, v, `a duration such as 100ms, or "off"`)
			switch {
			case !ok:
			case s == "off":
				c.Interval = -1
			default:
				p.duration(&c.Interval, false)(path, v)
			}
		}},
		{"window", p.duration(&c.Window, false)},
	})
}

// crossCheck applies the rules that join several fields, once each field
// has been read.
func (p *parser) crossCheck() {
	f := p.f
	// Ports: numbers unique, pod ports only on an SG, no metric on pods.
	first := map[uint16]string{}
	var firstPod string
	for _, pa := range p.ports {
		if prev, dup := first[pa.Num]; dup {
			p.errf(p.at(pa.path+".num"), pa.path+".num", "port %d listed twice (first as %s, line %d)", pa.Num, prev, p.at(prev))
			continue
		}
		first[pa.Num] = pa.path
		if pa.Kind == controller.PortPod {
			if f.Role == controller.RoleSR {
				p.errf(p.at(pa.path+".kind"), pa.path+".kind", "pod port on an sr (pods attach to SGs)")
			}
			if pa.metricSet {
				p.errf(p.at(pa.path+".metric"), pa.path+".metric", "a pod port has no IGP metric (metrics are for fabric links)")
			}
			if firstPod == "" {
				firstPod = pa.path
			}
		}
		f.Ports = append(f.Ports, pa.Port)
	}
	if p.has["ports"] && p.portItems == 0 {
		p.errf(p.at("ports"), "ports", "no ports: list the switch's front-panel ports")
	}
	switch f.Role {
	case controller.RoleSR:
		if p.has["sg"] {
			p.errf(p.at("sg"), "sg", "an sr has no sg section (pods attach to SGs)")
			f.SG = nil
		}
		if len(f.Probe.Targets) > 0 {
			p.errf(p.at("probe.targets"), "probe.targets", "an sr probes no services (only SGs do; it still probes its neighbours)")
		}
	case controller.RoleSG:
		if firstPod != "" && f.SG == nil && !p.has["sg"] {
			p.errf(p.at(firstPod), firstPod, "a pod port needs the sg section (sg.spa) to register its pods")
		}
	}

	// The embedded switch and the ports the agent manages must agree.
	switch {
	case f.Switch.IsEmbedded() && !p.has["embedded"]:
		p.errf(p.at("switch.p4rt"), "switch.p4rt", "embedded needs the embedded section (the software switch's ports)")
	case !f.Switch.IsEmbedded() && p.has["embedded"]:
		p.errf(p.at("embedded"), "embedded", "only with switch.p4rt: embedded (the agent runs no switch of its own here)")
		f.Embedded = nil
	case f.Switch.IsEmbedded() && p.embeddedItems > 0:
		// (Without items, embedded.ports was reported missing or empty.)
		p.checkEmbedded(first)
	}
}

func (p *parser) checkEmbedded(managed map[uint16]string) {
	e := p.f.Embedded
	specs := map[uint16]string{}
	for _, s := range p.embedded {
		if prev, dup := specs[s.Num]; dup {
			p.errf(p.at(s.path), s.path, "port %d given twice (first as %s)", s.Num, prev)
			continue
		}
		specs[s.Num] = s.path
		if _, ok := managed[s.Num]; !ok {
			p.errf(p.at(s.path), s.path, "port %d is not in ports (give it a kind there)", s.Num)
		}
		e.Ports = append(e.Ports, s.PortSpec)
	}
	if len(p.embedded) == p.embeddedItems {
		for _, pa := range p.ports {
			if _, ok := specs[pa.Num]; !ok {
				p.errf(p.at(pa.path), pa.path, "port %d has no embedded.ports entry (the embedded switch would have no such port)", pa.Num)
			}
		}
	}
	impaired := map[uint16]string{}
	for _, im := range p.impair {
		if prev, dup := impaired[im.Port]; dup {
			p.errf(p.at(im.path), im.path, "port %d impaired twice (first in %s)", im.Port, prev)
			continue
		}
		impaired[im.Port] = im.path
		if _, ok := specs[im.Port]; !ok {
			p.errf(p.at(im.path), im.path, "port %d is not in embedded.ports", im.Port)
			continue
		}
		e.Impair = append(e.Impair, im.PortImpairment)
	}
}
