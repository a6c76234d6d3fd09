// Package nodeconf reads node.yaml, the configuration file of one per-switch
// agent (controller.Agent), and turns it into a controller.Config: the
// switch to drive, its ports, the node's identity (certificate and Ed25519
// key, which signs LSPs), the certificates of the nodes whose LSPs are
// trusted, timers, the SG's link to SPA, gNMI and probing. README.md in this
// directory documents the file; Example is a complete one.
//
// Load checks everything it can without I/O first (syntax, unknown fields,
// values, cross-field rules) and reports every problem at once; only a file
// without such problems has its certificates, keys and pipeline files
// loaded. Every error names the file, the line and the field path:
//
//	node.yaml:12: ports[1].kind: "podd": want fabric or pod
package nodeconf

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/dmsc-mesh/dmsc/controller"
	"github.com/dmsc-mesh/dmsc/controller/lsmsg"
	"github.com/dmsc-mesh/dmsc/internal/yamlconf"
	"github.com/dmsc-mesh/dmsc/p4rt"
	"github.com/dmsc-mesh/dmsc/softswitch"
	"github.com/dmsc-mesh/dmsc/spf"
)

// Embedded is the value of switch.p4rt that runs a software switch inside
// the agent's process instead of dialling one.
const Embedded = "embedded"

// Example is a complete node.yaml of an SG, as README.md shows it.
const Example = `node: sg1                    # router id: [a-z0-9-], the node's key is /_node/sg1
role: sg                     # sg or sr
switch:
  p4rt: 127.0.0.1:9559       # P4Runtime address (BMv2, Tofino, dmsc softswitch) or "embedded"
  device_id: 1
  election_id: 1
  pipeline:                  # optional; default: the embedded P4Info, no device config
    p4info: p4/build/dmsc.p4info.txtpb
    device_config: p4/build/dmsc.json    # BMv2 JSON (simple_switch_grpc)
ports:
  - {num: 1, kind: fabric, metric: 10, capacity: 10gbit}
  - {num: 10, kind: pod}
identity:
  ca: ca/ca.crt
  cert: ca/node.sg1.crt      # node certificate (Ed25519): signs LSPs, TLS to SPA and for gNMI
  key: ca/node.sg1.key
  trusted_nodes: ca/         # every sg/sr node certificate here that chains to the CA
timers: {hello: 25ms, dead: 100ms, retransmit: 200ms, lsp_min_interval: 20ms, sync: 30s, warm_hold: 3s, lsp_lifetime: 1200, refresh: 15m}
sg:                          # role sg only
  spa: 127.0.0.1:7443        # SPA address; the SG authenticates with its node certificate
  keepalive: 1s
  hold: 3s
  challenge_ttl: 10s
  max_instances_per_port: 16
gnmi:
  listen: 127.0.0.1:9339
  tls: true                  # false: no TLS (local use only)
  interval: 1s
probe:
  targets: [/shop/cart]      # SG: services to probe; default: all
  interval: 100ms
  window: 2s
`

// ExampleEmbedded is an SR whose switch, the Go software switch, runs inside
// the agent's process, with two UDP-tunnel ports.
const ExampleEmbedded = `node: sr1
role: sr
switch:
  p4rt: embedded             # run the software switch inside the agent
embedded:                    # its ports, as dmsc softswitch --port / --impair
  ports: ["1=udp:127.0.0.1:7001,127.0.0.1:7002", "2=udp:127.0.0.1:7003,127.0.0.1:7004"]
  impair: ["1:delay=1ms"]
ports:
  - {num: 1, kind: fabric}
  - {num: 2, kind: fabric, metric: 20}
identity: {ca: ca/ca.crt, cert: ca/node.sr1.crt, key: ca/node.sr1.key, trusted_nodes: ca/}
`

// File is a loaded node.yaml. The exported fields are what the file says
// (paths made absolute or relative to the working directory); the
// certificates, keys and pipeline it names are read by Load and reached
// through the methods.
type File struct {
	// Path is the file Load read; empty after Parse.
	Path string
	Node spf.NodeID
	Role controller.Role
	// Switch is the switch the agent drives.
	Switch Switch
	// Embedded is set when Switch.P4RT is "embedded": the software switch
	// the agent's process runs.
	Embedded *EmbeddedSwitch
	Ports    []controller.Port
	Identity Identity
	// Timers holds what the file sets; zero fields take the controller's
	// defaults (controller.DefaultTimers).
	Timers controller.Timers
	// SG is the sg section (role sg only), nil if absent.
	SG *SG
	// GNMI is the gnmi section, nil if absent (no gNMI target).
	GNMI *GNMI
	// Probe holds what the file sets; zero fields take the controller's
	// defaults.
	Probe controller.ProbeConfig
	// Warnings are problems that did not stop the load: certificates in
	// identity.trusted_nodes that are ignored, and why. Callers log them.
	Warnings []string

	// Loaded from the files named above.
	nodeKey     ed25519.PrivateKey
	trusted     map[spf.NodeID]ed25519.PublicKey
	trustedFrom map[spf.NodeID]string
	domain      string
	pipeline    controller.Pipeline
}

// Switch is the switch section.
type Switch struct {
	// P4RT is the P4Runtime address (host:port) or Embedded.
	P4RT       string
	DeviceID   uint64
	ElectionID p4rt.ElectionID
	// P4Info and DeviceConfig are the pipeline files; empty: the embedded
	// P4Info and no device config.
	P4Info, DeviceConfig string
}

// IsEmbedded reports whether the agent runs its switch in-process.
func (s Switch) IsEmbedded() bool { return s.P4RT == Embedded }

// EmbeddedSwitch is the embedded section: the ports of the in-process
// software switch and their egress impairments.
type EmbeddedSwitch struct {
	Ports  []softswitch.PortSpec
	Impair []PortImpairment
}

// PortImpairment is one embedded.impair entry.
type PortImpairment struct {
	Port       uint16
	Impairment softswitch.Impairment
}

// Identity is the identity section: file paths.
type Identity struct {
	CA, Cert, Key string
	// TrustedNodes is a directory of node certificates; empty: only this
	// node is trusted.
	TrustedNodes string
}

// SG is the sg section.
type SG struct {
	// SPAAddr is SPA's address (host:port).
	SPAAddr string
	// Settings holds what the file sets (zero fields take the controller's
	// defaults); its SPA is nil until Config dials SPA.
	Settings controller.SGConfig
}

// GNMI is the gnmi section.
type GNMI struct {
	Listen string
	// TLS serves with the node certificate (the default); false serves
	// without TLS, for local use only.
	TLS      bool
	Interval time.Duration
}

// NodeKey is the node's Ed25519 private key (identity.key).
func (f *File) NodeKey() ed25519.PrivateKey { return f.nodeKey }

// Domain is the identity domain of the CA (identity.ca).
func (f *File) Domain() string { return f.domain }

// Pipeline is what the agent pushes to its switch, with the files of
// switch.pipeline read.
func (f *File) Pipeline() controller.Pipeline { return f.pipeline }

// Trusted maps every trusted node to the certificate file its key came from
// (this node's own certificate included).
func (f *File) Trusted() map[spf.NodeID]string { return maps.Clone(f.trustedFrom) }

// TrustedIDs lists the trusted nodes in order.
func (f *File) TrustedIDs() []spf.NodeID { return slices.Sorted(maps.Keys(f.trustedFrom)) }

// TrustedKeys gives the public key of every trusted LSP signer.
func (f *File) TrustedKeys() lsmsg.Keys {
	keys := maps.Clone(f.trusted)
	return func(id spf.NodeID) (ed25519.PublicKey, bool) {
		k, ok := keys[id]
		return k, ok
	}
}

// maxFileSize bounds node.yaml: a configuration, not a data set.
const maxFileSize = 1 << 20

// Load reads, validates and loads node.yaml at path. Relative paths in it
// are relative to its directory.
func Load(path string) (*File, error) {
	b, err := yamlconf.ReadFile(path, maxFileSize)
	if tl := (*yamlconf.TooLargeError)(nil); errors.As(err, &tl) {
		return nil, Errors{{File: path, Line: 1, Msg: fmt.Sprintf("larger than %d KiB: not a node configuration", maxFileSize>>10)}}
	}
	if err != nil {
		return nil, err
	}
	f, err := Parse(b, filepath.Dir(path))
	if err != nil {
		if es, ok := err.(Errors); ok {
			for _, e := range es {
				e.File = path
			}
			return nil, es
		}
		return nil, err
	}
	f.Path = path
	return f, nil
}

// Parse validates node.yaml content and loads the files it names; relative
// paths are joined to dir. Its error is an Errors value whose entries carry
// no file name (Load sets it).
func Parse(b []byte, dir string) (*File, error) {
	p := parseStatic(b, dir)
	if len(p.errs) > 0 {
		return nil, p.errs.sorted()
	}
	p.load()
	if len(p.errs) > 0 {
		return nil, p.errs.sorted()
	}
	return p.f, nil
}

// Error is one problem of a node.yaml, at a line and a field.
type Error struct {
	File  string // empty after Parse
	Line  int
	Field string // field path: "ports[1].kind", "identity.cert"
	Msg   string
}

func (e *Error) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		b.WriteByte(':')
	}
	b.WriteString(strconv.Itoa(e.Line))
	b.WriteString(": ")
	if e.Field != "" {
		b.WriteString(e.Field)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Errors are every problem found, in line order, one per line of Error().
type Errors []*Error

func (es Errors) Error() string {
	parts := make([]string, len(es))
	for i, e := range es {
		parts[i] = e.Error()
	}
	return strings.Join(parts, "\n")
}

// Unwrap lets errors.As find each *Error.
func (es Errors) Unwrap() []error {
	out := make([]error, len(es))
	for i, e := range es {
		out[i] = e
	}
	return out
}

func (es Errors) sorted() Errors {
	slices.SortStableFunc(es, func(a, b *Error) int { return a.Line - b.Line })
	return es
}
