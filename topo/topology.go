// Package topo reads DMSC topology files (nodes with roles, links between
// their ports, with capacity and delay, in the manner of containerlab) and
// starts them in one process on software switches: the harness of tests,
// benchmarks and the demo.
package topo

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/dmsc-mesh/dmsc/internal/units"
	"github.com/dmsc-mesh/dmsc/p4"
	"github.com/dmsc-mesh/dmsc/wire"
)

// Role is a switch's role.
type Role string

// Roles.
const (
	RoleSG Role = "sg" // Service Gateway: pods attach here
	RoleSR Role = "sr" // Service Router: fabric only
)

// Topology is a parsed, validated topology file.
type Topology struct {
	Name  string
	Nodes map[string]*Node
	Links []*Link
}

// Node is a switch.
type Node struct {
	Name string
	Role Role
	// PodPorts are the ports of an SG that pods attach to.
	PodPorts []uint16
}

// Endpoint is one end of a link: a node's port.
type Endpoint struct {
	Node string
	Port uint16
}

func (e Endpoint) String() string { return e.Node + ":" + strconv.Itoa(int(e.Port)) }

// Link joins two ports.
type Link struct {
	A, B Endpoint
	// Capacity in bits per second (0: unlimited); the software switch
	// enforces it as a rate limit.
	Capacity uint64
	// Delay is added in each direction.
	Delay time.Duration
	// Metric is the IGP metric of the link (default 10).
	Metric uint32
}

// DefaultMetric is a link's IGP metric when the file gives none.
const DefaultMetric = 10

// file is the YAML shape.
type file struct {
	Name  string              `yaml:"name"`
	Nodes map[string]fileNode `yaml:"nodes"`
	Links []fileLink          `yaml:"links"`
}

type fileNode struct {
	Role     string   `yaml:"role"`
	PodPorts []string `yaml:"pod_ports"`
}

type fileLink struct {
	Endpoints []string `yaml:"endpoints"`
	Capacity  string   `yaml:"capacity"`
	Delay     string   `yaml:"delay"`
	Metric    uint32   `yaml:"metric"`
}

// Load reads and validates a topology file.
func Load(path string) (*Topology, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	t, err := Parse(b)
	if err != nil {
		return nil, fmt.Errorf("%s:%w", path, err)
	}
	return t, nil
}

// Parse reads and validates a topology. Errors start with the line number
// and name the field: "12: links[3].endpoints[1]: node \"sr9\" is not defined".
func Parse(b []byte) (*Topology, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(b, &root); err != nil {
		return nil, fmt.Errorf(" %w", err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	var f file
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf(" %s", strings.TrimPrefix(err.Error(), "yaml: "))
	}
	lines := lineIndex(&root)
	fail := func(path string, format string, args ...any) error {
		return fmt.Errorf("%d: %s: %s", lines.line(path), path, fmt.Sprintf(format, args...))
	}

	t := &Topology{Name: f.Name, Nodes: map[string]*Node{}}
	if len(f.Nodes) == 0 {
		return nil, fail("nodes", "no nodes")
	}
	names := make([]string, 0, len(f.Nodes))
	for n := range f.Nodes {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		path := "nodes." + n
		if _, err := wire.NodeName(n); err != nil {
			return nil, fail(path, "node name %q: %v", n, errors.Unwrap(err))
		}
		role := Role(strings.ToLower(f.Nodes[n].Role))
		switch role {
		case RoleSG, RoleSR:
		case "":
			return nil, fail(path+".role", "missing (want sg or sr)")
		default:
			return nil, fail(path+".role", "%q is not a role (want sg or sr)", f.Nodes[n].Role)
		}
		node := &Node{Name: n, Role: role}
		for i, ps := range f.Nodes[n].PodPorts {
			ep, err := parseEndpoint(n + ":" + ps)
			if err != nil {
				return nil, fail(fmt.Sprintf("%s.pod_ports[%d]", path, i), "%v", err)
			}
			if role != RoleSG {
				return nil, fail(fmt.Sprintf("%s.pod_ports[%d]", path, i), "pods attach to SGs, and %s is an %s", n, role)
			}
			if slices.Contains(node.PodPorts, ep.Port) {
				return nil, fail(fmt.Sprintf("%s.pod_ports[%d]", path, i), "port %d listed twice", ep.Port)
			}
			node.PodPorts = append(node.PodPorts, ep.Port)
		}
		t.Nodes[n] = node
	}
	used := map[Endpoint]string{}
	for _, n := range names {
		for i, p := range t.Nodes[n].PodPorts {
			used[Endpoint{n, p}] = fmt.Sprintf("nodes.%s.pod_ports[%d]", n, i)
		}
	}
	for i, fl := range f.Links {
		path := fmt.Sprintf("links[%d]", i)
		if len(fl.Endpoints) != 2 {
			return nil, fail(path+".endpoints", "want two endpoints \"node:port\", got %d", len(fl.Endpoints))
		}
		l := &Link{Metric: fl.Metric}
		if l.Metric == 0 {
			l.Metric = DefaultMetric
		}
		for j, s := range fl.Endpoints {
			ep, err := parseEndpoint(s)
			epPath := fmt.Sprintf("%s.endpoints[%d]", path, j)
			if err != nil {
				return nil, fail(epPath, "%v", err)
			}
			if _, ok := t.Nodes[ep.Node]; !ok {
				return nil, fail(epPath, "node %q is not defined", ep.Node)
			}
			if prev, dup := used[ep]; dup {
				return nil, fail(epPath, "port %s is already used by %s", ep, prev)
			}
			used[ep] = path
			if j == 0 {
				l.A = ep
			} else {
				l.B = ep
			}
		}
		if l.A.Node == l.B.Node {
			return nil, fail(path+".endpoints", "a link from %s to itself", l.A.Node)
		}
		if fl.Capacity != "" {
			c, err := units.ParsePositiveRate(fl.Capacity)
			if err != nil {
				return nil, fail(path+".capacity", "%v", err)
			}
			l.Capacity = c
		}
		if fl.Delay != "" {
			d, err := time.ParseDuration(fl.Delay)
			if err != nil || d < 0 {
				return nil, fail(path+".delay", "%q is not a duration like 2ms", fl.Delay)
			}
			l.Delay = d
		}
		t.Links = append(t.Links, l)
	}
	return t, nil
}

func parseEndpoint(s string) (Endpoint, error) {
	node, portStr, ok := strings.Cut(s, ":")
	if !ok {
		return Endpoint{}, fmt.Errorf("%q: want node:port", s)
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil || port == 0 || port >= p4.MaxPorts-1 || port == p4.CPUPort {
		return Endpoint{}, fmt.Errorf("%q: port %q must be a number from 1 to 509, not %d", s, portStr, p4.CPUPort)
	}
	return Endpoint{Node: node, Port: uint16(port)}, nil
}

// Ports lists a node's link ports in order.
func (t *Topology) Ports(node string) []uint16 {
	var out []uint16
	for _, l := range t.Links {
		if l.A.Node == node {
			out = append(out, l.A.Port)
		}
		if l.B.Node == node {
			out = append(out, l.B.Port)
		}
	}
	slices.Sort(out)
	return out
}

// NodeNames lists the nodes in name order.
func (t *Topology) NodeNames() []string {
	out := make([]string, 0, len(t.Nodes))
	for n := range t.Nodes {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

// lines maps a field path ("links[2].delay") to its line in the file.
type lines map[string]int

func (l lines) line(path string) int {
	for p := path; p != ""; {
		if n, ok := l[p]; ok {
			return n
		}
		i := strings.LastIndexAny(p, ".[")
		if i < 0 {
			break
		}
		p = p[:i]
	}
	return 1
}

func lineIndex(root *yaml.Node) lines {
	out := lines{}
	var walk func(n *yaml.Node, path string)
	walk = func(n *yaml.Node, path string) {
		switch n.Kind {
		case yaml.DocumentNode:
			for _, c := range n.Content {
				walk(c, path)
			}
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				k, v := n.Content[i], n.Content[i+1]
				p := k.Value
				if path != "" {
					p = path + "." + k.Value
				}
				out[p] = k.Line
				walk(v, p)
			}
		case yaml.SequenceNode:
			for i, c := range n.Content {
				p := fmt.Sprintf("%s[%d]", path, i)
				out[p] = c.Line
				walk(c, p)
			}
		}
	}
	walk(root, "")
	return out
}
