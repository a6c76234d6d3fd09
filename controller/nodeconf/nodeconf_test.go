package nodeconf

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dmsc-mesh/dmsc/ca"
	"github.com/dmsc-mesh/dmsc/controller"
	"github.com/dmsc-mesh/dmsc/p4"
	"github.com/dmsc-mesh/dmsc/softswitch"
	"github.com/dmsc-mesh/dmsc/spa"
	"github.com/dmsc-mesh/dmsc/spf"
)

// pki is a domain CA in dir/ca with node certificates for sg1, sg2 (role sg)
// and sr1 (role sr), the repository's pipeline files in dir/p4/build, and
// dir/other for files that must not sit in the trusted directory.
type pki struct {
	dir string
	ca  *ca.CA
}

func newPKI(t *testing.T) *pki {
	t.Helper()
	dir := t.TempDir()
	caDir := filepath.Join(dir, "ca")
	authority, err := ca.Init(caDir, "example.org")
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []struct {
		id   string
		role ca.Role
	}{{"sg1", ca.RoleSG}, {"sg2", ca.RoleSG}, {"sr1", ca.RoleSR}} {
		if _, err := ca.IssueNode(caDir, n.id, n.role); err != nil {
			t.Fatal(err)
		}
	}
	// A pod and an SPA certificate in the trusted directory are skipped:
	// neither signs LSPs.
	if _, err := ca.IssuePod(caDir, "/shop/cart"); err != nil {
		t.Fatal(err)
	}
	if _, err := ca.IssueNode(caDir, "spa1", ca.RoleSPA); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"p4/build", "other"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range []string{"dmsc.p4info.txtpb", "dmsc.json"} {
		b, err := os.ReadFile(filepath.Join("..", "..", "p4", "build", name))
		if err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(dir, "p4/build", name), string(b))
	}
	return &pki{dir: dir, ca: authority}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// load writes content as dir/node.yaml and loads it.
func (k *pki) load(t *testing.T, content string) (*File, error) {
	t.Helper()
	path := filepath.Join(k.dir, "node.yaml")
	writeFile(t, path, content)
	return Load(path)
}

// srYAML is a minimal SR beside Example's SG.
const srYAML = `node: sr1
role: sr
switch: {p4rt: 127.0.0.1:9559}
ports:
  - {num: 1, kind: fabric}
identity: {ca: ca/ca.crt, cert: ca/node.sr1.crt, key: ca/node.sr1.key, trusted_nodes: ca}
`

// embeddedYAML runs its switch in-process.
const embeddedYAML = `node: sr1
role: sr
switch:
  p4rt: embedded
embedded:
  ports: ["1=udp:127.0.0.1:7001,127.0.0.1:7002", "2=udp:127.0.0.1:7003,127.0.0.1:7004"]
  impair: ["1:delay=1ms,rate=100mbit"]
ports:
  - {num: 1, kind: fabric}
  - {num: 2, kind: fabric, metric: 20}
identity: {ca: ca/ca.crt, cert: ca/node.sr1.crt, key: ca/node.sr1.key}
`

func TestLoadExample(t *testing.T) {
	k := newPKI(t)
	f, err := k.load(t, Example)
	if err != nil {
		t.Fatal(err)
	}
	if f.Node != "sg1" || f.Role != controller.RoleSG {
		t.Errorf("node %q role %q", f.Node, f.Role)
	}
	wantPorts := []controller.Port{
		{Num: 1, Kind: controller.PortFabric, Metric: 10, Capacity: 10e9},
		{Num: 10, Kind: controller.PortPod},
	}
	if len(f.Ports) != len(wantPorts) {
		t.Fatalf("ports %+v, want %+v", f.Ports, wantPorts)
	}
	for i := range wantPorts {
		if f.Ports[i] != wantPorts[i] {
			t.Errorf("ports[%d] = %+v, want %+v", i, f.Ports[i], wantPorts[i])
		}
	}
	if want := filepath.Join(k.dir, "ca", "node.sg1.crt"); f.Identity.Cert != want {
		t.Errorf("identity.cert %q, want %q (relative to the file)", f.Identity.Cert, want)
	}
	if got := f.TrustedIDs(); strings.Join(idStrings(got), ",") != "sg1,sg2,sr1" {
		t.Errorf("trusted %v, want sg1, sg2, sr1 (not the CA, the pod or spa1)", got)
	}
	if len(f.Warnings) != 0 {
		t.Errorf("warnings: %q", f.Warnings)
	}
	if f.Domain() != "example.org" {
		t.Errorf("domain %q", f.Domain())
	}

	cfg, closer, err := f.Config(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer closer.Close()
	if cfg.Switch != "127.0.0.1:9559" || cfg.DeviceID != 1 || cfg.ElectionID.Low != 1 {
		t.Errorf("switch %q device %d election %v", cfg.Switch, cfg.DeviceID, cfg.ElectionID)
	}
	wantTimers := controller.Timers{Hello: 25 * time.Millisecond, Dead: 100 * time.Millisecond, Retransmit: 200 * time.Millisecond,
		LSPMinInterval: 20 * time.Millisecond, Sync: 30 * time.Second, WarmHold: 3 * time.Second, LSPLifetime: 1200, Refresh: 15 * time.Minute}
	if cfg.Timers != wantTimers {
		t.Errorf("timers %+v, want %+v", cfg.Timers, wantTimers)
	}
	// The key signs, the trusted keys verify: both from the certificates.
	nodeCert, err := ca.ReadCertChain(filepath.Join(k.dir, "ca", "node.sg1.crt"))
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.Key.Public().(ed25519.PublicKey).Equal(nodeCert[0].PublicKey) {
		t.Error("Key is not the node certificate's")
	}
	srCert, err := ca.ReadCertChain(filepath.Join(k.dir, "ca", "node.sr1.crt"))
	if err != nil {
		t.Fatal(err)
	}
	if pub, ok := cfg.TrustedKeys("sr1"); !ok || !pub.Equal(srCert[0].PublicKey) {
		t.Error("TrustedKeys(sr1) is not sr1's certificate key")
	}
	if _, ok := cfg.TrustedKeys("sg1"); !ok {
		t.Error("the node itself is not trusted")
	}
	for _, id := range []spf.NodeID{"spa1", "sr9"} {
		if _, ok := cfg.TrustedKeys(id); ok {
			t.Errorf("%s is trusted", id)
		}
	}
	if _, ok := cfg.SG.SPA.(*spa.Client); !ok {
		t.Errorf("SG.SPA is %T, want *spa.Client", cfg.SG.SPA)
	}
	if cfg.SG.Keepalive != time.Second || cfg.SG.Hold != 3*time.Second || cfg.SG.ChallengeTTL != 10*time.Second || cfg.SG.MaxInstancesPerPort != 16 {
		t.Errorf("sg %+v", *cfg.SG)
	}
	if cfg.GNMI == nil || cfg.GNMI.Listen != "127.0.0.1:9339" || cfg.GNMI.Domain != "example.org" || cfg.GNMI.Interval != time.Second {
		t.Fatalf("gnmi %+v", cfg.GNMI)
	}
	if cfg.GNMI.TLS == nil || cfg.GNMI.TLS.ClientAuth != tls.RequireAndVerifyClientCert || len(cfg.GNMI.TLS.Certificates) != 1 {
		t.Errorf("gnmi TLS %+v: want the node certificate and verified clients", cfg.GNMI.TLS)
	}
	if len(cfg.Probe.Targets) != 1 || cfg.Probe.Targets[0] != "/shop/cart" || cfg.Probe.Interval != 100*time.Millisecond || cfg.Probe.Window != 2*time.Second {
		t.Errorf("probe %+v", cfg.Probe)
	}
	if string(cfg.Pipeline.P4InfoText) != string(p4.P4InfoText()) || len(cfg.Pipeline.DeviceConfig) == 0 {
		t.Errorf("pipeline: p4info %d bytes, device config %d bytes", len(cfg.Pipeline.P4InfoText), len(cfg.Pipeline.DeviceConfig))
	}
	// The controller accepts what the file built.
	if _, err := controller.New(cfg); err != nil {
		t.Errorf("controller.New: %v", err)
	}
}

func idStrings(ids []spf.NodeID) []string {
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = string(id)
	}
	return out
}

// TestUnixSocketSwitch: BMv2 in a network namespace of its own is reached
// through a Unix socket.
func TestUnixSocketSwitch(t *testing.T) {
	k := newPKI(t)
	f, err := k.load(t, strings.Replace(Example, "p4rt: 127.0.0.1:9559", "p4rt: unix:///run/dmsc/sw1.sock", 1))
	if err != nil {
		t.Fatal(err)
	}
	if f.Switch.P4RT != "unix:///run/dmsc/sw1.sock" {
		t.Errorf("p4rt %q", f.Switch.P4RT)
	}
}

func TestLoadEmbeddedAndDefaults(t *testing.T) {
	k := newPKI(t)
	if _, err := k.load(t, ExampleEmbedded); err != nil {
		t.Fatalf("ExampleEmbedded: %v", err)
	}
	f, err := k.load(t, embeddedYAML)
	if err != nil {
		t.Fatal(err)
	}
	if !f.Switch.IsEmbedded() || f.Embedded == nil || len(f.Embedded.Ports) != 2 {
		t.Fatalf("embedded %+v", f.Embedded)
	}
	if ps := f.Embedded.Ports[1]; ps.Num != 2 || ps.Kind != "udp" || ps.Local != "127.0.0.1:7003" || ps.Peer != "127.0.0.1:7004" {
		t.Errorf("embedded port 2: %+v", ps)
	}
	want := PortImpairment{Port: 1, Impairment: softswitch.Impairment{Delay: time.Millisecond, Rate: 100e6}}
	if len(f.Embedded.Impair) != 1 || f.Embedded.Impair[0] != want {
		t.Errorf("impair %+v, want %+v", f.Embedded.Impair, want)
	}
	cfg, closer, err := f.Config(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer closer.Close()
	if cfg.Switch != "" {
		t.Errorf("Switch %q: the command fills it with the embedded server's address", cfg.Switch)
	}
	if cfg.SG != nil || cfg.GNMI != nil || cfg.Timers != (controller.Timers{}) || cfg.Pipeline.P4InfoText != nil || cfg.Pipeline.DeviceConfig != nil {
		t.Errorf("defaults: sg %v gnmi %v timers %+v pipeline %d/%d bytes", cfg.SG, cfg.GNMI, cfg.Timers,
			len(cfg.Pipeline.P4InfoText), len(cfg.Pipeline.DeviceConfig))
	}
	// Without trusted_nodes only the node itself is trusted.
	if ids := f.TrustedIDs(); len(ids) != 1 || ids[0] != "sr1" {
		t.Errorf("trusted %v, want only sr1", ids)
	}
	cfg.Switch = "127.0.0.1:1"
	if _, err := controller.New(cfg); err != nil {
		t.Errorf("controller.New: %v", err)
	}
}

// TestForeignCertificateIgnored: a node certificate of another CA in the
// trusted directory is ignored with a warning naming it.
func TestForeignCertificateIgnored(t *testing.T) {
	k := newPKI(t)
	otherCA := filepath.Join(k.dir, "other-ca")
	if _, err := ca.Init(otherCA, "example.org"); err != nil {
		t.Fatal(err)
	}
	is, err := ca.IssueNode(otherCA, "sr7", ca.RoleSR)
	if err != nil {
		t.Fatal(err)
	}
	foreign := filepath.Join(k.dir, "ca", "node.sr7.crt")
	writeFile(t, foreign, string(is.CertPEM))
	f, err := k.load(t, srYAML)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := f.Trusted()["sr7"]; ok {
		t.Error("sr7 of another CA is trusted")
	}
	if len(f.Warnings) != 1 || !strings.Contains(f.Warnings[0], foreign) || !strings.Contains(f.Warnings[0], "does not chain to the CA") {
		t.Errorf("warnings %q, want one naming %s", f.Warnings, foreign)
	}
	if got := strings.Join(idStrings(f.TrustedIDs()), ","); got != "sg1,sg2,sr1" {
		t.Errorf("trusted %s", got)
	}
}

func TestBadFiles(t *testing.T) {
	type fixture struct {
		*pki
		t *testing.T
	}
	// Files the cases point at.
	setup := func(fx fixture) {
		t := fx.t
		other := filepath.Join(fx.dir, "other")
		// sg1 with role sr, outside the trusted directory.
		if _, err := ca.IssueNode(filepath.Join(fx.dir, "ca"), "sg1", ca.RoleSR,
			ca.WithOutput(filepath.Join(other, "sg1-sr.crt"), filepath.Join(other, "sg1-sr.key"))); err != nil {
			t.Fatal(err)
		}
		ek, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		der, err := x509.MarshalPKCS8PrivateKey(ek)
		if err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(other, "ecdsa.key"), string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})))
		writeFile(t, filepath.Join(other, "empty.json"), "\n")
		writeFile(t, filepath.Join(other, "tiny.p4info.txtpb"), "pkg_info { arch: \"v1model\" }\n")
		// An expired sr1 certificate.
		if _, err := ca.IssueNode(filepath.Join(fx.dir, "ca"), "sr1", ca.RoleSR, ca.WithNotBefore(time.Now().Add(-48*time.Hour)),
			ca.WithValidity(time.Hour), ca.WithOutput(filepath.Join(other, "old.crt"), filepath.Join(other, "old.key"))); err != nil {
			t.Fatal(err)
		}
	}
	sg := func(old, new string) string {
		if !strings.Contains(Example, old) {
			panic("Example has no " + old)
		}
		return strings.Replace(Example, old, new, 1)
	}
	sr := func(old, new string) string {
		if !strings.Contains(srYAML, old) {
			panic("srYAML has no " + old)
		}
		return strings.Replace(srYAML, old, new, 1)
	}
	emb := func(old, new string) string {
		if !strings.Contains(embeddedYAML, old) {
			panic("embeddedYAML has no " + old)
		}
		return strings.Replace(embeddedYAML, old, new, 1)
	}
	noSG := Example[:strings.Index(Example, "sg:  ")] + Example[strings.Index(Example, "gnmi:"):]
	tests := []struct {
		name  string
		yaml  string
		line  int
		field string
		msg   string
	}{
		{"bad node id", sg("node: sg1 ", "node: SG_1 "), 1, "node", `"SG_1"`},
		{"node id too long", sg("node: sg1 ", "node: "+strings.Repeat("a", 64)+" "), 1, "node", "at most 63"},
		{"bad role", sg("role: sg ", "role: spa "), 2, "role", `"spa": want sg or sr`},
		{"missing node", strings.Replace(srYAML, "node: sr1\n", "", 1), 1, "node", "missing"},
		{"sg section on an sr", srYAML + "sg: {spa: 127.0.0.1:7443}\n", 7, "sg", "an sr has no sg section"},
		{"pod port on an sr", sr("  - {num: 1, kind: fabric}\n", "  - {num: 1, kind: fabric}\n  - {num: 2, kind: pod}\n"), 6, "ports[1].kind", "pod port on an sr"},
		{"probe targets on an sr", srYAML + "probe: {targets: [/shop]}\n", 7, "probe.targets", "an sr probes no services"},
		{"pod port without sg", noSG, 12, "ports[1]", "needs the sg section"},
		{"duplicate port", sg("{num: 10, kind: pod}", "{num: 1, kind: pod}"), 12, "ports[1].num", "port 1 listed twice"},
		{"cpu port", sg("{num: 10, kind: pod}", "{num: 255, kind: pod}"), 12, "ports[1].num", "CPU port"},
		{"bad kind", sg("kind: pod", "kind: podd"), 12, "ports[1].kind", `"podd": want fabric or pod`},
		{"missing kind", sg("{num: 10, kind: pod}", "{num: 10}"), 12, "ports[1].kind", "missing"},
		{"metric on a pod port", sg("kind: pod}", "kind: pod, metric: 5}"), 12, "ports[1].metric", "no IGP metric"},
		{"metric zero", sg("metric: 10", "metric: 0"), 11, "ports[0].metric", "from 1 to 16777215"},
		{"bad duration", sg("hello: 25ms", "hello: 25 ms"), 18, "timers.hello", `"25 ms": want a duration`},
		{"negative duration", sg("sync: 30s", "sync: -30s"), 18, "timers.sync", "must be positive"},
		{"dead not above hello", sg("dead: 100ms", "dead: 25ms"), 18, "timers.dead", "must exceed the hello interval"},
		{"refresh not below lifetime", sg("refresh: 15m", "refresh: 20m"), 18, "timers.refresh", "shorter than the LSP lifetime"},
		{"lifetime too long", sg("lsp_lifetime: 1200", "lsp_lifetime: 70000"), 18, "timers.lsp_lifetime", "1 to 65535"},
		{"bad rate", sg("capacity: 10gbit", "capacity: 10gbits"), 11, "ports[0].capacity", `"10gbits": want a rate`},
		{"rate with extra keys", sg("capacity: 10gbit", `capacity: "1gbit,delay=1ms"`), 11, "ports[0].capacity", "want a rate"},
		{"unknown field", sg("  device_id: 1\n", "  device_id: 1\n  colour: blue\n"), 6, "switch.colour", "unknown field (want p4rt, device_id, election_id, pipeline)"},
		{"unknown top-level field", "nodes: sg1\n" + Example, 1, "nodes", "unknown field"},
		{"field given twice", sg("role: sg ", "role: sg\nrole: sg "), 3, "role", "given twice (first at line 2)"},
		{"device id 0", sg("device_id: 1", "device_id: 0"), 5, "switch.device_id", "want a whole number of at least 1"},
		{"bad p4rt address", sg("p4rt: 127.0.0.1:9559", "p4rt: 127.0.0.1"), 4, "switch.p4rt", "want host:port"},
		{"relative unix socket", sg("p4rt: 127.0.0.1:9559", "p4rt: unix://run/sw1.sock"), 4, "switch.p4rt", "absolute path"},
		{"hold not above keepalive", sg("  hold: 3s\n", "  hold: 1s\n"), 22, "sg.hold", "must exceed the keepalive interval"},
		{"sg without spa", sg("  spa: 127.0.0.1:7443        # SPA address; the SG authenticates with its node certificate\n", ""), 19, "sg.spa", "missing"},
		{"bad probe target", sg("targets: [/shop/cart]", "targets: [shop/cart]"), 30, "probe.targets[0]", `must start with "/"`},
		{"gnmi tls not a bool", sg("tls: true", "tls: maybe"), 27, "gnmi.tls", `"maybe": want true or false`},
		{"not a mapping", sr("identity: {ca: ca/ca.crt, cert: ca/node.sr1.crt, key: ca/node.sr1.key, trusted_nodes: ca}", "identity: ca"), 6, "identity", "want a mapping"},
		{"not a list", sr("ports:\n  - {num: 1, kind: fabric}\n", "ports: 1\n"), 4, "ports", "want a list"},
		{"yaml syntax", "node: sg1\nrole: sg\nx: a: b\n", 3, "", "not valid YAML: mapping values are not allowed"},
		{"empty file", "", 1, "", "empty"},

		{"missing identity file", sg("cert: ca/node.sg1.crt", "cert: ca/node.nope.crt"), 15, "identity.cert", "node.nope.crt: no such file"},
		{"missing CA", sg("ca: ca/ca.crt", "ca: ca/nope.crt"), 14, "identity.ca", "nope.crt: no such file"},
		{"missing trusted dir", sg("trusted_nodes: ca/ ", "trusted_nodes: nope/ "), 17, "identity.trusted_nodes", "no such file"},
		{"certificate for another node", sg("cert: ca/node.sg1.crt", "cert: ca/node.sg2.crt"), 15, "identity.cert", `is the certificate of node "sg2", not of "sg1"`},
		{"certificate of the wrong role", sg("cert: ca/node.sg1.crt", "cert: other/sg1-sr.crt"), 15, "identity.cert", "role sr, not sg"},
		{"pod certificate", sg("cert: ca/node.sg1.crt", "cert: ca/pod.shop.cart.crt"), 15, "identity.cert", "not a node certificate"},
		{"CA as the node certificate", sg("cert: ca/node.sg1.crt", "cert: ca/ca.crt"), 15, "identity.cert", "not a node certificate"},
		{"expired certificate", sr("cert: ca/node.sr1.crt", "cert: other/old.crt"), 6, "identity.cert", "does not chain to the CA"},
		{"non-Ed25519 key", sg("key: ca/node.sg1.key", "key: other/ecdsa.key"), 16, "identity.key", "ECDSA key; LSPs are signed with Ed25519"},
		{"key of another certificate", sg("key: ca/node.sg1.key", "key: ca/node.sg2.key"), 16, "identity.key", "does not belong to the certificate"},
		{"certificate as key", sg("key: ca/node.sg1.key", "key: ca/node.sg1.crt"), 16, "identity.key", "no \"PRIVATE KEY\" PEM block"},
		// other/ holds sg1-sr.crt: sg1 with another key (and role sr, which
		// does not make it less of a conflict).
		{"trusted dir holds another key for this node", sg("trusted_nodes: ca/ ", "trusted_nodes: other/ "), 17, "identity.trusted_nodes", "names this node sg1 with another key"},
		{"device config empty", sg("device_config: p4/build/dmsc.json", "device_config: other/empty.json"), 9, "switch.pipeline.device_config", "is empty"},
		{"p4info not DMSC", sg("p4info: p4/build/dmsc.p4info.txtpb", "p4info: other/tiny.p4info.txtpb"), 8, "switch.pipeline.p4info", "not the DMSC program"},

		{"embedded without section", sr("p4rt: 127.0.0.1:9559", "p4rt: embedded"), 3, "switch.p4rt", "needs the embedded section"},
		{"embedded section without embedded switch", srYAML + "embedded: {ports: [\"1=udp:127.0.0.1:1,127.0.0.1:2\"]}\n", 7, "embedded", "only with switch.p4rt: embedded"},
		{"embedded without ports", emb(`  ports: ["1=udp:127.0.0.1:7001,127.0.0.1:7002", "2=udp:127.0.0.1:7003,127.0.0.1:7004"]`+"\n", ""), 5, "embedded.ports", "missing"},
		{"embedded with no ports", emb(`["1=udp:127.0.0.1:7001,127.0.0.1:7002", "2=udp:127.0.0.1:7003,127.0.0.1:7004"]`, "[]"), 6, "embedded.ports", "no ports"},
		{"bad port spec", emb("1=udp:127.0.0.1:7001,127.0.0.1:7002", "1=udp:127.0.0.1:7001"), 6, "embedded.ports[0]", "udp needs LOCAL,PEER"},
		{"mem port spec", emb("1=udp:127.0.0.1:7001,127.0.0.1:7002", "1=mem"), 6, "embedded.ports[0]", "in-memory port"},
		{"embedded port not managed", emb("2=udp:127.0.0.1:7003", "3=udp:127.0.0.1:7003"), 6, "embedded.ports[1]", "port 3 is not in ports"},
		{"managed port not embedded", emb("  - {num: 2, kind: fabric, metric: 20}\n", "  - {num: 2, kind: fabric, metric: 20}\n  - {num: 4, kind: fabric}\n"), 11, "ports[2]", "no embedded.ports entry"},
		{"bad impairment", emb("1:delay=1ms", "1:delay=soon"), 7, "embedded.impair[0]", "delay=soon"},
		{"impairment of a missing port", emb("1:delay=1ms", "9:delay=1ms"), 7, "embedded.impair[0]", "not in embedded.ports"},
	}
	k := newPKI(t)
	setup(fixture{k, t})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := k.load(t, tt.yaml)
			if err == nil {
				t.Fatal("loaded")
			}
			t.Log(err)
			var es Errors
			if !errors.As(err, &es) {
				t.Fatalf("error %T %v, want Errors", err, err)
			}
			found := false
			for _, e := range es {
				if e.Line == tt.line && e.Field == tt.field && strings.Contains(e.Msg, tt.msg) {
					found = true
				}
				if e.File != filepath.Join(k.dir, "node.yaml") || e.Line < 1 {
					t.Errorf("error %q: file %q line %d", e, e.File, e.Line)
				}
			}
			if !found {
				t.Errorf("got\n%v\nwant line %d, field %q, message containing %q", err, tt.line, tt.field, tt.msg)
			}
			prefix := filepath.Join(k.dir, "node.yaml") + ":" + itoa(tt.line) + ": "
			if tt.field != "" {
				prefix += tt.field + ": "
			}
			if !strings.Contains(err.Error(), prefix) {
				t.Errorf("error text %q does not contain %q", err, prefix)
			}
		})
	}
}

func itoa(n int) string {
	b := []byte{}
	for {
		b = append([]byte{byte('0' + n%10)}, b...)
		n /= 10
		if n == 0 {
			return string(b)
		}
	}
}

// TestEveryProblemAtOnce: the static check reports all it finds, and a file
// with such problems is not loaded further (its certificate paths are not
// even looked at).
func TestEveryProblemAtOnce(t *testing.T) {
	y := strings.Replace(Example, "role: sg ", "role: sgg ", 1)
	y = strings.Replace(y, "kind: pod", "kind: podd", 1)
	y = strings.Replace(y, "cert: ca/node.sg1.crt", "cert: nowhere.crt", 1)
	_, err := Parse([]byte(y), t.TempDir())
	var es Errors
	if !errors.As(err, &es) || len(es) != 2 {
		t.Fatalf("got %v, want the role and the kind", err)
	}
	if es[0].Field != "role" || es[1].Field != "ports[1].kind" {
		t.Errorf("fields %q, %q", es[0].Field, es[1].Field)
	}
}

func TestAliasesAndFlowStyle(t *testing.T) {
	k := newPKI(t)
	y := `node: sr1
role: sr
switch: {p4rt: "127.0.0.1:9559", device_id: 3, election_id: 9}
link: &link {kind: fabric, metric: 7}
ports: [{num: 1, kind: fabric, metric: 7}, {num: 2, kind: fabric}]
identity: {ca: ca/ca.crt, cert: ca/node.sr1.crt, key: ca/node.sr1.key}
timers: {hello: 10ms, lsp_lifetime: 20m, spf: {initial_delay: 0s, long_delay: 1s}}
probe: {interval: "off"}
`
	if _, err := k.load(t, y); err == nil || !strings.Contains(err.Error(), "link: unknown field") {
		t.Fatalf("unknown top-level key: %v", err)
	}
	y = strings.Replace(y, "link: &link {kind: fabric, metric: 7}\n", "", 1)
	f, err := k.load(t, y)
	if err != nil {
		t.Fatal(err)
	}
	if f.Switch.DeviceID != 3 || f.Switch.ElectionID.Low != 9 || f.Timers.Hello != 10*time.Millisecond || f.Timers.LSPLifetime != 1200 {
		t.Errorf("switch %+v timers %+v", f.Switch, f.Timers)
	}
	spfWant := controller.DefaultSPFDelay()
	spfWant.LongDelay = time.Second
	if f.Timers.SPF != spfWant {
		t.Errorf("spf %+v, want the defaults with long_delay 1s", f.Timers.SPF)
	}
	if f.Probe.Interval >= 0 {
		t.Errorf("probe interval %v: off should be negative", f.Probe.Interval)
	}
}

func TestConfigNeedsLoad(t *testing.T) {
	var f File
	if _, c, err := f.Config(nil); err == nil || c == nil {
		t.Fatalf("Config of an unloaded File: %v, closer %v", err, c)
	}
}

// TestREADMEShowsExample keeps the documentation's example the one the
// tests load.
func TestREADMEShowsExample(t *testing.T) {
	b, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	for name, ex := range map[string]string{"Example": Example, "ExampleEmbedded": ExampleEmbedded} {
		if !strings.Contains(string(b), ex) {
			t.Errorf("README.md does not contain nodeconf.%s verbatim", name)
		}
	}
}
