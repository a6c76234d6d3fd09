package topo

import (
	"strings"
	"testing"
	"time"
)

func TestLoadFigure2(t *testing.T) {
	top, err := Load("../examples/fig2.yaml")
	if err != nil {
		t.Fatal(err)
	}
	sgs, srs := 0, 0
	for _, n := range top.Nodes {
		switch n.Role {
		case RoleSG:
			sgs++
		case RoleSR:
			srs++
		}
	}
	if sgs != 4 || srs < 2 || len(top.Links) != 9 {
		t.Fatalf("fig2: %d SGs, %d SRs, %d links", sgs, srs, len(top.Links))
	}
	if got := top.Ports("sr2"); len(got) != 4 || got[0] != 1 || got[3] != 4 {
		t.Errorf("sr2 ports %v", got)
	}
	last := top.Links[8]
	if last.Delay != time.Millisecond || last.Capacity != 40e9 || last.Metric != DefaultMetric {
		t.Errorf("last link %+v", last)
	}
}

func TestParseErrorsNameLineAndField(t *testing.T) {
	const good = `name: t
nodes:
  a: {role: sg}
  b: {role: sr}
links:
  - endpoints: ["a:1", "b:1"]
`
	tests := []struct {
		name, yaml, want string
	}{
		{"unknown field", good + "    colour: red\n", "field colour not found"},
		{"no nodes", "name: x\n", "nodes: no nodes"},
		{"bad role", strings.Replace(good, "role: sr", "role: spine", 1), `4: nodes.b.role: "spine" is not a role`},
		{"missing role", strings.Replace(good, "{role: sr}", "{}", 1), "4: nodes.b.role: missing"},
		{"bad node name", strings.Replace(good, "  b: {role: sr}", "  B_1: {role: sr}", 1), "nodes.B_1: node name"},
		{"undefined node", strings.Replace(good, `"b:1"`, `"c:1"`, 1), `6: links[0].endpoints[1]: node "c" is not defined`},
		{"bad port", strings.Replace(good, `"b:1"`, `"b:255"`, 1), "links[0].endpoints[1]"},
		{"no port", strings.Replace(good, `"b:1"`, `"b"`, 1), "want node:port"},
		{"port reused", good + `  - endpoints: ["a:1", "b:2"]` + "\n", "links[1].endpoints[0]: port a:1 is already used by links[0]"},
		{"self link", good + `  - endpoints: ["a:2", "a:3"]` + "\n", "a link from a to itself"},
		{"one endpoint", good + `  - endpoints: ["a:2"]` + "\n", "want two endpoints"},
		{"bad capacity", good + "    capacity: fast\n", `links[0].capacity: "fast" is not a rate`},
		{"bad delay", good + "    delay: soon\n", `7: links[0].delay: "soon" is not a duration`},
		{"not yaml", "nodes: [", "did not find"},
	}
	for _, tt := range tests {
		_, err := Parse([]byte(tt.yaml))
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %v, want an error containing %q", tt.name, err, tt.want)
		}
	}
	if _, err := Parse([]byte(good)); err != nil {
		t.Fatal(err)
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte("nodes:\n  a: {role: sg}\n  b: {role: sr}\nlinks:\n  - endpoints: [\"a:1\", \"b:1\"]\n    delay: 1ms\n"))
	f.Add([]byte("nodes: {}\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		top, err := Parse(b)
		if err != nil {
			return
		}
		for _, l := range top.Links {
			if top.Nodes[l.A.Node] == nil || top.Nodes[l.B.Node] == nil || l.A.Node == l.B.Node {
				t.Fatalf("invalid link accepted: %+v", l)
			}
		}
	})
}
