package mininet_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dmsc-mesh/dmsc/bmv2-tests/mininet"
)

// fig2Checks are the checks the fig2 scenario prints, in order; each must
// PASS (a scenario that stopped early would lack some).
var fig2Checks = []string{
	"fabric converged (FIBs over P4Runtime)",
	"SCSC subscribed to every agent",
	"echo pod registered at sg4",
	"routes to /echo (FIBs over P4Runtime)",
	"calls by name before the cut",
	"sr1–sr3 cut: reroute (FIB over P4Runtime)",
	"calls by name after the cut (via sr2)",
	"sr1–sr3 restored: back on the direct path",
	"echo withdrawn: route gone, call refused",
	"no process died",
}

// TestFig2Softswitch runs Figure 2 on mininet with the Go software switch:
// calls by name answered by the echo pod, FIBs read back over P4Runtime
// before and after the sr1–sr3 cut and its repair, route counters showing
// which switches carried the frames, the withdrawal.
func TestFig2Softswitch(t *testing.T) {
	runFig2(t, "softswitch")
}

// TestFig2BMv2 is the same scenario on BMv2's simple_switch_grpc.
func TestFig2BMv2(t *testing.T) {
	if _, err := exec.LookPath("simple_switch_grpc"); err != nil {
		if _, err := os.Stat("/opt/p4/bin/simple_switch_grpc"); err != nil {
			t.Skip("BMv2 is not installed: no simple_switch_grpc on PATH or in /opt/p4/bin")
		}
	}
	runFig2(t, "bmv2")
}

func runFig2(t *testing.T, target string) {
	skipUnlessMininet(t)
	if testing.Short() {
		t.Skip("-short: the mininet scenario takes 15 to 30 seconds")
	}
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	dmsc := buildDmsc(t, root)
	workdir := t.TempDir()
	// Interfaces made in the host's namespace get a prefix of this process,
	// so that a concurrent run (another checkout's make test) cannot collide.
	prefix := fmt.Sprintf("t%03x", os.Getpid()%0x1000)

	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, dmsc, "topo", "mininet", filepath.Join(root, "examples", "fig2.yaml"),
		"--target", target, "--scenario", "fig2", "--workdir", workdir, "--intf-prefix", prefix, "--log-level", "info")
	cmd.Dir = root // the BMv2 JSON is found at p4/build/dmsc.json
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = time.Minute
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	err = cmd.Run()
	took := time.Since(start)
	text := out.String()

	var failed []string
	for _, name := range fig2Checks {
		if !hasLine(text, "PASS  "+name) {
			failed = append(failed, name)
		}
	}
	if err != nil || len(failed) > 0 || !strings.Contains(text, "== fig2: PASS") {
		t.Fatalf("dmsc topo mininet --target %s --scenario fig2: %v after %v; checks not passed: %q\n%s",
			target, err, took.Round(time.Millisecond), failed, text)
	}
	// Cleaned up: none of its interfaces in this namespace, none of its
	// processes (their command lines name the work directory or the
	// prefixed interfaces).
	if links, err := exec.Command("ip", "-o", "link", "show").Output(); err != nil {
		t.Errorf("ip link show: %v", err)
	} else {
		for _, line := range strings.Split(string(links), "\n") {
			if f := strings.Fields(line); len(f) > 1 && strings.HasPrefix(f[1], prefix) {
				t.Errorf("interface left behind: %s", line)
			}
		}
	}
	if left := processesMentioning(workdir, "iface:"+prefix); len(left) > 0 {
		t.Errorf("processes left behind: %q", left)
	}
	for _, line := range strings.Split(text, "\n") {
		if strings.HasPrefix(line, "PASS ") || strings.HasPrefix(line, "== fig2:") {
			t.Log(line)
		}
	}
	t.Logf("the %s scenario took %v", target, took.Round(time.Millisecond))
}

// processesMentioning lists the command lines that contain any of the words.
func processesMentioning(words ...string) []string {
	var out []string
	dirs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, f := range dirs {
		b, err := os.ReadFile(f)
		if err != nil {
			continue // gone meanwhile
		}
		cmdline := strings.ReplaceAll(string(b), "\x00", " ")
		for _, w := range words {
			if strings.Contains(cmdline, w) {
				out = append(out, cmdline)
				break
			}
		}
	}
	return out
}

func hasLine(text, prefix string) bool {
	for _, line := range strings.Split(text, "\n") {
		if strings.HasPrefix(line, prefix) {
			return true
		}
	}
	return false
}

// skipUnlessMininet skips, with the reason, where the scenario cannot run.
func skipUnlessMininet(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("not root: mininet needs root for network namespaces and veth pairs")
	}
	ns := exec.Command("/bin/true")
	ns.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET}
	if err := ns.Run(); err != nil {
		t.Skipf("network namespaces do not work here (%v)", err)
	}
	if out, err := exec.Command("/usr/bin/python3", "-c", "import mininet.net").CombinedOutput(); err != nil {
		t.Skipf("mininet is not importable by /usr/bin/python3 (%v: %s): apt-get install -y --no-install-recommends mininet ethtool",
			err, lastLine(out))
	}
	for _, tool := range []string{"mnexec", "ip", "ifconfig", "ethtool"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not on PATH (apt-get install -y --no-install-recommends mininet ethtool)", tool)
		}
	}
}

func lastLine(b []byte) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return lines[len(lines)-1]
}

// buildDmsc builds the dmsc binary the scenario runs (and whose embedded
// script it uses).
func buildDmsc(t *testing.T, root string) string {
	t.Helper()
	gobin := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(gobin); err != nil {
		gobin = "go"
	}
	bin := filepath.Join(t.TempDir(), "dmsc")
	build := exec.Command(gobin, "build", "-o", bin, "./cmd/dmsc")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/dmsc: %v\n%s", err, out)
	}
	return bin
}

// TestScriptParses checks that the script dmsc embeds is valid Python, where
// a python3 is available (the scenario tests need root and mininet; this
// catches a broken script everywhere).
func TestScriptParses(t *testing.T) {
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("no python3 on PATH to parse the script with")
	}
	compile := exec.Command(py, "-c", "import ast, sys; ast.parse(sys.stdin.read(), 'dmsc_mininet.py')")
	compile.Stdin = bytes.NewReader(mininet.Script)
	if out, err := compile.CombinedOutput(); err != nil {
		t.Fatalf("dmsc_mininet.py does not parse: %v\n%s", err, out)
	}
}
