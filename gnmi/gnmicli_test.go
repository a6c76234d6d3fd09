package gnmi

import (
	"bufio"
	"bytes"
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dmsc-mesh/dmsc/ca"
	"github.com/dmsc-mesh/dmsc/internal/gnmicli"
)

func buildGNMICLI(t *testing.T) string { return gnmicli.Build(t) }

// TestGNMICLI runs the reference client against a target: Capabilities, a
// Get, a ONCE subscription and an ON_CHANGE stream that sees a change.
func TestGNMICLI(t *testing.T) {
	cli := buildGNMICLI(t)
	tg, addr := serve(t, TargetOptions{})
	fill(t, tg)
	run := func(args ...string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, cli, append([]string{"-a", addr, "-insecure", "-timeout", "5s"}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("gnmi_cli %q: %v\n%s", args, err, out)
		}
		return string(out)
	}

	caps := run("-capabilities")
	for _, want := range []string{`name: "dmsc"`, "supported_encodings: JSON_IETF", "supported_encodings: PROTO", "gNMI_version:"} {
		if !strings.Contains(caps, want) {
			t.Errorf("capabilities lack %q:\n%s", want, caps)
		}
	}

	get := run("-get", "-proto", `path: <elem: <name: "interfaces"> elem: <name: "interface" key: <key: "name" value: "1">> elem: <name: "state">> encoding: PROTO`)
	for _, want := range []string{`name: "in-pkts"`, "uint_val: 10", "uint_val: 20", `string_val: "UP"`} {
		if !strings.Contains(get, want) {
			t.Errorf("get output lacks %q:\n%s", want, get)
		}
	}
	getJSON := run("-get", "-proto", `path: <elem: <name: "dmsc"> elem: <name: "policies">> encoding: JSON_IETF`)
	if !strings.Contains(getJSON, `json_ietf_val: "{\"target\":\"/shop/cart\"}"`) {
		t.Errorf("JSON_IETF get lacks the policy:\n%s", getJSON)
	}

	once := run("-qt", "once", "-dt", "single", "-q", "/dmsc/probes/probe[target=/shop/cart]/state")
	for _, want := range []string{"dmsc/probes/probe/0//shop/cart/state/delay-ns", "1500", "dmsc/probes/probe/7//shop/cart/state/loss", "0.25"} {
		if !strings.Contains(once, want) {
			t.Errorf("once output lacks %q:\n%s", want, once)
		}
	}

	// A stream: the initial value, then a change published while it runs.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, cli, "-a", addr, "-insecure", "-qt", "s", "-dt", "single", "-sd", "8s",
		"-q", "/interfaces/interface[name=1]/state/counters/in-pkts")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cmd.Process.Kill()
		cmd.Wait()
	}()
	sc := bufio.NewScanner(stdout)
	var seen []string
	want := []string{"in-pkts, {Deprecated TypedValue_JsonVal 10}", "in-pkts, {Deprecated TypedValue_JsonVal 77}"}
	for len(seen) < len(want) && sc.Scan() {
		line := sc.Text()
		if !strings.Contains(line, "interfaces/interface/1/state/counters/in-pkts") {
			continue
		}
		if !strings.HasSuffix(line, want[len(seen)]) {
			t.Fatalf("stream line %q, want one ending in %q", line, want[len(seen)])
		}
		seen = append(seen, line)
		if len(seen) == 1 {
			if err := tg.Update(time.Time{}, Leaf{InterfaceCounterPath(1, InPkts), uint64(77)}); err != nil {
				t.Fatal(err)
			}
		}
	}
	if len(seen) != len(want) {
		t.Fatalf("stream showed %q (stderr %s)", seen, stderr.String())
	}

	// With the domain's certificates (mutual TLS).
	dir := t.TempDir()
	if _, err := ca.Init(dir, "mesh.test"); err != nil {
		t.Fatal(err)
	}
	agent, err := ca.IssueNode(dir, "sg1", ca.RoleSG)
	if err != nil {
		t.Fatal(err)
	}
	client, err := ca.IssueNode(dir, "scsc1", ca.RoleSCSC)
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(dir, ca.CertFile)
	serverTLS, _, err := ca.LoadServerTLS(caFile, agent.CertPath, agent.KeyPath)
	if err != nil {
		t.Fatal(err)
	}
	tlsTarget, tlsAddr := serve(t, TargetOptions{TLS: serverTLS})
	fill(t, tlsTarget)
	out, err := exec.Command(cli, "-a", tlsAddr, "-timeout", "5s", "-ca_crt", caFile, "-client_crt", client.CertPath,
		"-client_key", client.KeyPath, "-tls_skip_verify", "-qt", "once", "-dt", "single", "-q", "/interfaces/interface[name=2]/state/oper-status").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "interfaces/interface/2/state/oper-status, {Deprecated TypedValue_JsonVal DOWN}") {
		t.Fatalf("gnmi_cli over TLS: %v\n%s", err, out)
	}
}
