package scsc

import (
	"strings"
	"testing"
	"time"

	"github.com/dmsc-mesh/dmsc/gnmi"
	"github.com/dmsc-mesh/dmsc/wire"
)

const goodConfig = `id: scsc1
agents:
  - {name: sg1, addr: "10.0.0.1:9339"}
  - name: sr1
    addr: "[::1]:9339"
sample_interval: 100ms
policy_ttl: 30s
lsdb_sources: 3
status_addr: 127.0.0.1:0
defaults:
  max_delay: 10ms
  max_jitter: 2ms
  min_bandwidth: 100mbit
  max_loss: 1%
services:
  - name: /shop/cart
    max_delay: 5ms
  - name: /shop/pay
    min_bandwidth: 0
    max_jitter: 0s
hysteresis:
  trigger_after: 4
  clear_after: 2s
  improvement: 25%
election:
  endpoints: [127.0.0.1:2379]
`

func TestParseConfig(t *testing.T) {
	c, err := ParseConfig("scsc.yaml", []byte(goodConfig), "/etc/dmsc")
	if err != nil {
		t.Fatal(err)
	}
	if c.ID != "scsc1" || len(c.Agents) != 2 || c.Agents[1].Addr != "[::1]:9339" || c.SampleInterval != 100*time.Millisecond ||
		c.PolicyTTL != 30*time.Second || c.LSDBSources != 3 || c.StatusAddr != "127.0.0.1:0" {
		t.Errorf("top level: %+v", c)
	}
	if c.Hysteresis != (Hysteresis{TriggerAfter: 4, ClearAfter: 2 * time.Second, Improvement: 0.25}) {
		t.Errorf("hysteresis %+v", c.Hysteresis)
	}
	cart, _ := c.Service("/shop/cart")
	if cart.Thresholds != (Thresholds{MaxDelay: 5 * time.Millisecond, MaxJitter: 2 * time.Millisecond, MinBandwidth: 100e6, MaxLoss: 0.01}) {
		t.Errorf("/shop/cart falls back to the defaults field by field: %+v", cart.Thresholds)
	}
	if cart.Key != wire.KeyOf(wire.MustParseName("/shop/cart")) || cart.PrefixLen != 64 {
		t.Errorf("/shop/cart key %v/%d", cart.Key, cart.PrefixLen)
	}
	pay, _ := c.Service("/shop/pay")
	if pay.Thresholds != (Thresholds{MaxDelay: 10 * time.Millisecond, MaxLoss: 0.01}) {
		t.Errorf("/shop/pay: an explicit 0 turns a check off: %+v", pay.Thresholds)
	}
	if c.Election == nil || c.Election.Prefix != DefaultElectionPrefix || c.Election.TTL != DefaultElectionTTL {
		t.Errorf("election %+v", c.Election)
	}
	if c.staleAfter() != time.Second {
		t.Errorf("stale_after default %v, want 1s (5 samples of 100ms, at least 1s)", c.staleAfter())
	}
}

func TestParseConfigErrors(t *testing.T) {
	tests := []struct {
		name, old, new, want string
	}{
		{"not yaml", "id: scsc1", "id: [", "scsc.yaml: yaml:"},
		{"bad id", "id: scsc1", "id: SCSC", "scsc.yaml:1: id:"},
		{"agents not a list", "agents:\n  - {name: sg1, addr: \"10.0.0.1:9339\"}\n  - name: sr1\n    addr: \"[::1]:9339\"", "agents: sg1", "scsc.yaml:2: agents: want a list"},
		{"agent without addr", "  - {name: sg1, addr: \"10.0.0.1:9339\"}", "  - {name: sg1}", "scsc.yaml:3: agents[0]: want both name and addr"},
		{"agent unknown field", "addr: \"10.0.0.1:9339\"}", "adr: \"10.0.0.1:9339\"}", "scsc.yaml:3: agents[0].adr: unknown field (want name, addr)"},
		{"bad router id", "name: sr1", "name: sr_1", "scsc.yaml:4: agents[1].name: \"sr_1\" is not a router id"},
		{"sample interval too short", "sample_interval: 100ms", "sample_interval: 1ms", "scsc.yaml:6: sample_interval: 1ms is not within 10ms to 1h0m0s"},
		{"ttl too short", "policy_ttl: 30s", "policy_ttl: 500ms", "scsc.yaml:7: policy_ttl: 500ms is not within 1s to 10m0s"},
		{"lsdb_sources zero", "lsdb_sources: 3", "lsdb_sources: 0", "scsc.yaml:8: lsdb_sources: 0 must be at least 1"},
		{"bad status addr", "status_addr: 127.0.0.1:0", "status_addr: nowhere", "scsc.yaml:9: status_addr"},
		{"bad loss", "max_loss: 1%", "max_loss: 2", "scsc.yaml:14: defaults.max_loss: 2 is not from 0 to 1"},
		{"negative delay", "max_delay: 10ms", "max_delay: -1ms", "scsc.yaml:11: defaults.max_delay: -1ms is not within"},
		{"service unknown field", "max_delay: 5ms", "max_dealy: 5ms", "scsc.yaml:17: services[0].max_dealy: unknown field"},
		{"service without name", "  - name: /shop/cart\n", "  - max_jitter: 1ms\n", "scsc.yaml:16: services[0].name: missing"},
		{"node name as service", "name: /shop/cart", "name: /_node/sg1", `scsc.yaml:16: services[0].name: wire: service name "/_node/sg1"`},
		{"duplicate service", "name: /shop/pay", "name: /shop/cart", "scsc.yaml:18: services[1].name: /shop/cart is also services[0]"},
		{"trigger_after zero", "trigger_after: 4", "trigger_after: 0", "scsc.yaml:22: hysteresis.trigger_after: 0 must be at least 1"},
		{"field twice", "lsdb_sources: 3", "lsdb_sources: 3\nlsdb_sources: 4", "scsc.yaml:9: lsdb_sources: given twice"},
		{"unknown top-level", "lsdb_sources: 3", "lsdb_source: 3", "scsc.yaml:8: lsdb_source: unknown field"},
		{"election without endpoints", "  endpoints: [127.0.0.1:2379]", "  ttl: 5s", "scsc.yaml:26: election.endpoints: missing"},
		{"alias", "max_delay: 5ms", "max_delay: *x", "scsc.yaml:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !strings.Contains(goodConfig, tt.old) {
				t.Fatalf("config has no %q", tt.old)
			}
			src := strings.Replace(goodConfig, tt.old, tt.new, 1)
			_, err := ParseConfig("scsc.yaml", []byte(src), "")
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func TestParseConfigNoThresholds(t *testing.T) {
	src := "id: scsc1\nagents: [{name: sg1, addr: \"127.0.0.1:1\"}]\nservices:\n  - name: /shop/cart\n"
	_, err := ParseConfig("scsc.yaml", []byte(src), "")
	if err == nil || !strings.Contains(err.Error(), "scsc.yaml:4: services[0]: /shop/cart has no threshold") {
		t.Fatalf("err %v", err)
	}
}

func FuzzParseConfig(f *testing.F) {
	f.Add([]byte(goodConfig))
	f.Add([]byte("id: x\nagents: [{name: a, addr: 'h:1'}]\nservices: [{name: /a, max_loss: 50%}]\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := ParseConfig("fuzz.yaml", b, "")
		if err != nil {
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("ParseConfig accepted a config Validate refuses: %v", err)
		}
	})
}

// FuzzApplyLSDB feeds LSP leaves with arbitrary JSON to the LSDB reader and
// builds a topology of them: nothing may panic, and the topology holds only
// two-way adjacencies.
func FuzzApplyLSDB(f *testing.F) {
	f.Add(`[{"neighbor":"sr1","metric":10,"link":1}]`, `[{"prefix":"8d9001d3:1c42ddc0:00000000:00000000/64","metric":0}]`, `[{"neighbor":"sg1","metric":10,"link":1}]`)
	f.Add(`[]`, `[{"prefix":"8d9001d3:1c42ddc0:00000000:00000007/128"}]`, `null`)
	f.Add(`{`, `[{"prefix":"zz/64"}]`, `[{"neighbor":"","metric":0}]`)
	f.Fuzz(func(t *testing.T, adjA, pfxA, adjB string) {
		db := newLSDBCopy()
		rs := []gnmi.Reading{
			{Path: gnmi.LSPStatePath("sg1", 0, gnmi.LSPAdjacencies), Value: gnmi.JSON(adjA)},
			{Path: gnmi.LSPStatePath("sg1", 0, gnmi.LSPPrefixes), Value: gnmi.JSON(pfxA)},
			{Path: gnmi.LSPStatePath("sr1", 0, gnmi.LSPAdjacencies), Value: gnmi.JSON(adjB)},
			{Path: gnmi.LSPStatePath("sr1", 1, gnmi.LSPRemainingLifetime), Value: uint64(0)},
		}
		applyLSDB(db, rs)
		topo := BuildTopology(db.frags)
		for u, es := range topo.out {
			for _, e := range es {
				if topo.edge(e.To, int32(u)) == nil {
					t.Fatalf("one-way edge %s → %s", topo.nodes[u], topo.nodes[e.To])
				}
			}
		}
	})
}

func FuzzParsePolicyDoc(f *testing.F) {
	f.Add([]byte(`{"service":"/shop/cart","path":["sg1","sr1","sg3"],"instance_weights":{"7":1,"9":0},"ttl_ms":10000,"reason":"x","owner":"scsc1"}`))
	f.Add([]byte(`{"service":"/a","ttl_ms":999}`))
	f.Add([]byte(`{"service":"/a","ttl_ms":1000,"extra":1}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := ParsePolicyDoc(b)
		if err != nil {
			return
		}
		if d.Service == "" || d.TTLms < 1000 || d.TTLms > 600000 {
			t.Fatalf("accepted %+v", d)
		}
	})
}
