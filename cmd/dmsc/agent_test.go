package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dmsc-mesh/dmsc/ca"
	"github.com/dmsc-mesh/dmsc/controller"
	"github.com/dmsc-mesh/dmsc/spf"
)

// agentPKI makes a CA in dir/ca and node certificates sg1 (role sg) and sr1
// (role sr) in it.
func agentPKI(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	caDir := filepath.Join(dir, "ca")
	if _, err := ca.Init(caDir, "example.org"); err != nil {
		t.Fatal(err)
	}
	for _, n := range []struct {
		id   string
		role ca.Role
	}{{"sg1", ca.RoleSG}, {"sr1", ca.RoleSR}} {
		if _, err := ca.IssueNode(caDir, n.id, n.role); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func writeConfig(t *testing.T, dir, name, content string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

const checkConfig = `node: sr1
role: sr
switch: {p4rt: 127.0.0.1:9559}
ports:
  - {num: 1, kind: fabric, capacity: 10gbit}
identity: {ca: ca/ca.crt, cert: ca/node.sr1.crt, key: ca/node.sr1.key, trusted_nodes: ca}
gnmi: {listen: 127.0.0.1:0}
`

func TestAgentCheck(t *testing.T) {
	dir := agentPKI(t)
	good := writeConfig(t, dir, "good.yaml", checkConfig)
	out, err := run(context.Background(), "agent", "--config", good, "--check")
	if err != nil {
		t.Fatalf("--check of a good file: %v\n%s", err, out)
	}
	for _, want := range []string{good + ": ok", "node sr1 (role sr)", "1 fabric port, 0 pod ports", "domain example.org", "trusted nodes sg1 sr1", "gnmi 127.0.0.1:0 (TLS)"} {
		if !strings.Contains(out, want) {
			t.Errorf("--check said %q, want %q in it", out, want)
		}
	}

	tests := []struct {
		name, yaml string
		want       []string
	}{
		{"bad role and kind", strings.NewReplacer("role: sr", "role: sx", "kind: fabric", "kind: fabrik").Replace(checkConfig),
			[]string{"bad.yaml:2: role: \"sx\": want sg or sr", "bad.yaml:5: ports[0].kind: \"fabrik\": want fabric or pod"}},
		{"certificate of another node", strings.Replace(checkConfig, "cert: ca/node.sr1.crt", "cert: ca/node.sg1.crt", 1),
			[]string{"bad.yaml:6: identity.cert: ", `is the certificate of node "sg1", not of "sr1"`}},
		{"missing file", strings.Replace(checkConfig, "key: ca/node.sr1.key", "key: ca/none.key", 1),
			[]string{"bad.yaml:6: identity.key: ", "none.key: no such file"}},
	}
	for _, tt := range tests {
		bad := writeConfig(t, dir, "bad.yaml", tt.yaml)
		out, err := run(context.Background(), "agent", "--config", bad, "--check")
		if err == nil {
			t.Errorf("%s: --check passed: %s", tt.name, out)
			continue
		}
		for _, w := range tt.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %q, want %q in it", tt.name, err, w)
			}
		}
	}
	if _, err := run(context.Background(), "agent", "--config", filepath.Join(dir, "none.yaml"), "--check"); err == nil {
		t.Error("--check of a missing file passed")
	}
}

func TestAgentHelpShowsExample(t *testing.T) {
	out, err := run(context.Background(), "agent", "--help")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"dmsc agent --config", "  node: sg1", "    p4rt: 127.0.0.1:9559", "  identity:", "trusted_nodes"} {
		if !strings.Contains(out, want) {
			t.Errorf("--help lacks %q:\n%s", want, out)
		}
	}
}

// freeUDPPorts returns n UDP addresses on loopback that were free a moment
// ago.
func freeUDPPorts(t *testing.T, n int) []string {
	t.Helper()
	var conns []net.PacketConn
	var out []string
	for range n {
		c, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		out = append(out, c.LocalAddr().String())
	}
	for _, c := range conns {
		c.Close()
	}
	return out
}

// TestAgentsFormAdjacency runs two agents as `dmsc agent` would, each with
// an embedded software switch whose port 1 is a UDP tunnel to the other's,
// both with node certificates of one CA and trusting the CA directory: they
// come up, see each other and exchange signed LSPs.
func TestAgentsFormAdjacency(t *testing.T) {
	dir := agentPKI(t)
	udp := freeUDPPorts(t, 4)
	spaAddr := freeUDPPorts(t, 1)[0] // nothing listens there: SPA is down, which an SG survives
	configs := map[string]string{
		"sg1": fmt.Sprintf(`node: sg1
role: sg
switch: {p4rt: embedded}
embedded:
  ports: ["1=udp:%s,%s", "10=udp:%s,%s"]
  impair: ["1:delay=1ms"]
ports:
  - {num: 1, kind: fabric, metric: 5}
  - {num: 10, kind: pod}
identity: {ca: ca/ca.crt, cert: ca/node.sg1.crt, key: ca/node.sg1.key, trusted_nodes: ca}
sg: {spa: "%s"}
`, udp[0], udp[1], udp[2], udp[3], spaAddr),
		"sr1": fmt.Sprintf(`node: sr1
role: sr
switch: {p4rt: embedded}
embedded:
  ports: ["1=udp:%s,%s"]
ports:
  - {num: 1, kind: fabric, metric: 5}
identity: {ca: ca/ca.crt, cert: ca/node.sr1.crt, key: ca/node.sr1.key, trusted_nodes: ca}
`, udp[1], udp[0]),
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	type running struct {
		agent *controller.Agent
		logs  *syncBuffer
		done  chan error
	}
	agents := map[string]*running{}
	for node, content := range configs {
		path := writeConfig(t, dir, node+".yaml", content)
		started := make(chan *controller.Agent, 1)
		r := &running{logs: &syncBuffer{}, done: make(chan error, 1)}
		cmd := newAgentCommandWith(&globalFlags{logLevel: "info", logFormat: "text"},
			agentHooks{started: func(a *controller.Agent) { started <- a }})
		cmd.SetArgs([]string{"--config", path})
		cmd.SetOut(r.logs)
		cmd.SetErr(r.logs)
		go func() { r.done <- cmd.ExecuteContext(ctx) }()
		select {
		case r.agent = <-started:
		case err := <-r.done:
			t.Fatalf("%s: agent ended before it started: %v\n%s", node, err, r.logs)
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: agent did not start\n%s", node, r.logs)
		}
		agents[node] = r
	}
	defer func() {
		cancel()
		for node, r := range agents {
			select {
			case err := <-r.done:
				if err != nil {
					t.Errorf("%s: agent returned %v\n%s", node, err, r.logs)
				}
			case <-time.After(5 * time.Second):
				t.Errorf("%s: agent did not stop\n%s", node, r.logs)
			}
		}
	}()

	up := func(node, peer string) bool {
		sctx, scancel := context.WithTimeout(ctx, time.Second)
		defer scancel()
		s, err := agents[node].agent.Snapshot(sctx)
		if err != nil {
			return false
		}
		if len(s.Neighbors) != 1 || s.Neighbors[0].State != controller.AdjUp || s.Neighbors[0].Neighbor != spf.NodeID(peer) {
			return false
		}
		// The peer's signed LSP is in the database: the trusted key came
		// from its certificate in the CA directory.
		for _, l := range s.LSDB {
			if l.Origin == spf.NodeID(peer) {
				return true
			}
		}
		return false
	}
	deadline := time.Now().Add(5 * time.Second)
	for !(up("sg1", "sr1") && up("sr1", "sg1")) {
		if time.Now().After(deadline) {
			t.Fatalf("no adjacency within 5 s\nsg1:\n%s\nsr1:\n%s", agents["sg1"].logs, agents["sr1"].logs)
		}
		time.Sleep(20 * time.Millisecond)
	}
	for node, r := range agents {
		logs := r.logs.String()
		for _, want := range []string{"embedded switch running", "agent starting", "adjacency up"} {
			if !strings.Contains(logs, want) {
				t.Errorf("%s: logs lack %q:\n%s", node, want, logs)
			}
		}
	}
}
