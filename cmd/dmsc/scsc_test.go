package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dmsc-mesh/dmsc/ca"
	"github.com/dmsc-mesh/dmsc/scsc"
	"github.com/dmsc-mesh/dmsc/scsc/scsctest"
)

const scscFixtureConfig = `id: scsc1
agents:
  - {name: sg1, addr: 127.0.0.1:9339}
  - {name: sr1, addr: 127.0.0.1:9340}
sample_interval: 200ms
policy_ttl: 10s
defaults:
  max_delay: 10ms
  min_bandwidth: 100mbit
services:
  - name: /shop/cart
    max_jitter: 2ms
hysteresis:
  trigger_after: 3
  clear_after: 5s
  improvement: 0.2
`

func TestSCSCCheck(t *testing.T) {
	dir := t.TempDir()
	caDir := filepath.Join(dir, "ca")
	if _, err := ca.Init(caDir, "example.org"); err != nil {
		t.Fatal(err)
	}
	for _, n := range []struct {
		id   string
		role ca.Role
	}{{"scsc1", ca.RoleSCSC}, {"sg1", ca.RoleSG}} {
		if _, err := ca.IssueNode(caDir, n.id, n.role); err != nil {
			t.Fatal(err)
		}
	}
	const tlsGood = "tls:\n  ca: ca/ca.crt\n  cert: ca/node.scsc1.crt\n  key: ca/node.scsc1.key\n"
	tests := []struct {
		name    string
		config  string // replaces the fixture
		edit    [2]string
		append  string
		wantOut string
		wantErr string
	}{
		{name: "good", wantOut: "ok: id scsc1, 2 agents, 1 services, sample_interval 200ms, policy_ttl 10s, insecure (no tls), single replica"},
		{name: "good with tls", append: tlsGood, wantOut: "tls DIR/ca/node.scsc1.crt"},
		{name: "tls certificate of another role", append: strings.ReplaceAll(tlsGood, "scsc1", "sg1"), wantErr: "want a node certificate of role scsc"},
		{name: "tls key missing", append: "tls:\n  ca: ca/ca.crt\n  cert: ca/node.scsc1.crt\n", wantErr: "scsc.yaml:17: tls.key: missing"},
		{name: "tls files absent", append: strings.ReplaceAll(tlsGood, "ca/ca.crt", "nope/ca.crt"), wantErr: "nope/ca.crt"},
		{name: "unknown field", edit: [2]string{"policy_ttl: 10s", "policy_tll: 10s"}, wantErr: "scsc.yaml:6: policy_tll: unknown field"},
		{name: "bad duration", edit: [2]string{"sample_interval: 200ms", "sample_interval: fast"}, wantErr: `scsc.yaml:5: sample_interval: want a duration such as 200ms or 5s, got "fast"`},
		{name: "ttl out of range", edit: [2]string{"policy_ttl: 10s", "policy_ttl: 20m"}, wantErr: "scsc.yaml:6: policy_ttl: 20m0s is not within 1s to 10m0s"},
		{name: "bad agent address", edit: [2]string{"127.0.0.1:9340", "localhost"}, wantErr: `scsc.yaml:4: agents[1].addr: "localhost": want host:port`},
		{name: "duplicate agent", edit: [2]string{"name: sr1", "name: sg1"}, wantErr: "scsc.yaml:4: agents[1].name: sg1 is also agents[0]"},
		{name: "bad service name", edit: [2]string{"name: /shop/cart", "name: /Shop"}, wantErr: `scsc.yaml:11: services[0].name: wire: service name "/Shop"`},
		{name: "bad rate", edit: [2]string{"100mbit", "lots"}, wantErr: `scsc.yaml:9: defaults.min_bandwidth: "lots" is not a rate`},
		{name: "improvement of 100 %", edit: [2]string{"improvement: 0.2", "improvement: 100%"}, wantErr: "scsc.yaml:16: hysteresis.improvement: 1 must be below 1"},
		{name: "no agents", config: "id: scsc1\n", wantErr: "scsc.yaml: agents: missing"},
		{name: "with election", append: "election:\n  endpoints: [127.0.0.1:2379]\n", wantOut: "election in etcd 127.0.0.1:2379 at /dmsc/scsc/leader"},
		{name: "election without endpoints", append: "election:\n  ttl: 5s\n", wantErr: "scsc.yaml:18: election.endpoints: missing"},
		{name: "no such config", config: "-", wantErr: "no such file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := scscFixtureConfig
			if tt.config != "" {
				cfg = tt.config
			}
			if tt.edit[0] != "" {
				if !strings.Contains(cfg, tt.edit[0]) {
					t.Fatalf("fixture has no %q", tt.edit[0])
				}
				cfg = strings.Replace(cfg, tt.edit[0], tt.edit[1], 1)
			}
			cfg += tt.append
			path := filepath.Join(dir, "scsc.yaml")
			os.Remove(path)
			if cfg != "-" {
				writeFile(t, path, cfg)
			}
			out, err := runCA(dir, "scsc", "--check", "--config", "DIR/scsc.yaml")
			out = strings.ReplaceAll(out, dir, "DIR")
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(strings.ReplaceAll(err.Error(), dir, "DIR"), tt.wantErr) {
					t.Fatalf("err %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(out, tt.wantOut) {
				t.Errorf("output %q, want %q", out, tt.wantOut)
			}
		})
	}
}

// scscLogBuffer is a bytes.Buffer safe for the command's logger and the test.
type scscLogBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *scscLogBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *scscLogBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestSCSCRunsAgainstFakeAgents(t *testing.T) {
	ms := time.Millisecond
	fab, err := scsctest.New(scsctest.Spec{
		Nodes: []scsctest.NodeSpec{{Name: "sg1", SG: true}, {Name: "sg3", SG: true}, {Name: "sr1"}, {Name: "sr2"}, {Name: "sr3"}},
		Links: []scsctest.LinkSpec{
			{A: "sg1", B: "sr1", Delay: ms}, {A: "sr1", B: "sr2", Delay: ms}, {A: "sr2", B: "sg3", Delay: ms},
			{A: "sr1", B: "sr3", Delay: ms}, {A: "sr3", B: "sg3", Delay: ms, Metric: 20},
		},
		Services: []scsctest.ServiceSpec{{Name: "/shop/cart", Hosts: map[string][]uint32{"sg3": {7}}}},
	}, scsctest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer fab.Close()
	var agents strings.Builder
	for _, a := range fab.Agents() {
		fmt.Fprintf(&agents, "  - {name: %s, addr: %q}\n", a.Name, a.Addr)
	}
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "scsc.yaml"), "id: scsc1\nagents:\n"+agents.String()+`sample_interval: 100ms
policy_ttl: 2s
services:
  - {name: /shop/cart, max_delay: 10ms}
hysteresis: {trigger_after: 3, clear_after: 1s}
`)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	logs := &scscLogBuffer{}
	done := make(chan error, 1)
	go func() {
		done <- runSplit(ctx, io.Discard, logs, "--log-format", "json", "scsc", "--config", filepath.Join(dir, "scsc.yaml"))
	}()
	time.Sleep(500 * time.Millisecond) // connected, topology read
	fab.SetDelay("sr1", "sr2", 20*ms)
	id := scsc.PathPolicyID("sg1", "/shop/cart")
	deadline := time.Now().Add(3 * time.Second)
	for {
		held := 0
		for _, ids := range fab.PolicyIDs() {
			if slices.Contains(ids, id) {
				held++
			}
		}
		if held == 4 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("policy on %d of 4 nodes after 3 s; logs:\n%s", held, logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("dmsc scsc: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("dmsc scsc did not stop within 5 s of its context's end")
	}
	out := logs.String()
	for _, want := range []string{`"msg":"scsc running"`, `"msg":"scsc: decision"`, `"action":"install"`, `"msg":"scsc: policy set"`} {
		if !strings.Contains(out, want) {
			t.Errorf("logs lack %s:\n%s", want, out)
		}
	}
}
