package bmv2tests

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// OptP4 is where the project's P4 toolchain is installed when it is not on
// PATH (/opt/p4/README.txt): p4c-bm2-ss and simple_switch_grpc in bin/, the
// shared libraries of BMv2 and PI in lib/.
const OptP4 = "/opt/p4"

// Tool names.
const (
	P4C          = "p4c-bm2-ss"
	SimpleSwitch = "simple_switch_grpc"
)

// RequireEnv makes a missing tool fail the test instead of skipping it, for
// machines that are meant to run these tests (a CI job with BMv2): set
// DMSC_BMV2=require.
const RequireEnv = "DMSC_BMV2"

// Tool is an executable found for the tests, with the environment its
// processes need.
type Tool struct {
	Name string
	Path string
	// Env is the child's environment: the test's, plus OptP4/lib on
	// LD_LIBRARY_PATH when the tool is one of OptP4's.
	Env []string
}

// Command returns an exec.Cmd running the tool with its environment.
func (t Tool) Command(args ...string) *exec.Cmd {
	cmd := exec.Command(t.Path, args...)
	cmd.Env = t.Env
	return cmd
}

// LookupTool finds name on PATH, then in OptP4/bin.
func LookupTool(name string) (Tool, error) {
	if p, err := exec.LookPath(name); err == nil {
		if abs, err := filepath.Abs(p); err == nil {
			p = abs
		}
		return Tool{Name: name, Path: p, Env: childEnv(p)}, nil
	}
	p := filepath.Join(OptP4, "bin", name)
	if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
		return Tool{Name: name, Path: p, Env: childEnv(p)}, nil
	}
	return Tool{}, fmt.Errorf("%s is not on PATH nor in %s/bin", name, OptP4)
}

// childEnv adds OptP4/lib to LD_LIBRARY_PATH for OptP4's binaries, which a
// shell gets from OptP4/env.sh and a test does not.
func childEnv(path string) []string {
	env := os.Environ()
	if !strings.HasPrefix(path, OptP4+"/bin/") {
		return env
	}
	lib := filepath.Join(OptP4, "lib")
	for i, kv := range env {
		if v, ok := strings.CutPrefix(kv, "LD_LIBRARY_PATH="); ok {
			for _, d := range filepath.SplitList(v) {
				if d == lib {
					return env
				}
			}
			env[i] = "LD_LIBRARY_PATH=" + lib + string(filepath.ListSeparator) + v
			return env
		}
	}
	return append(env, "LD_LIBRARY_PATH="+lib)
}

// Tools are what a test found.
type Tools struct {
	P4C, Switch Tool
}

// Needs says what a test needs.
type Needs struct {
	P4C    bool // p4c-bm2-ss
	Switch bool // simple_switch_grpc, and with it root, ip(8) and network namespaces
}

// Require finds what the test needs, or skips it with one line naming what
// is missing (fails it instead when DMSC_BMV2=require). It only looks
// things up, so the skip is instant.
func Require(t testing.TB, n Needs) Tools {
	t.Helper()
	_, ipErr := exec.LookPath("ip")
	tools, missing := n.check(LookupTool, os.Geteuid(), ipErr == nil)
	if missing == "" {
		return tools
	}
	if os.Getenv(RequireEnv) == "require" {
		t.Fatal(missing + " (" + RequireEnv + "=require)")
	}
	t.Skip(missing)
	return tools
}

// check is Require's decision, given how to look tools up, the effective
// uid and whether ip(8) is there: the tools, or the skip message.
func (n Needs) check(lookup func(string) (Tool, error), euid int, haveIP bool) (Tools, string) {
	var tools Tools
	var missing []string
	if n.P4C {
		var err error
		if tools.P4C, err = lookup(P4C); err != nil {
			missing = append(missing, err.Error())
		}
	}
	if n.Switch {
		var err error
		if tools.Switch, err = lookup(SimpleSwitch); err != nil {
			missing = append(missing, err.Error())
		}
		if euid != 0 {
			missing = append(missing, fmt.Sprintf("network namespaces need root (euid %d)", euid))
		}
		if !haveIP {
			missing = append(missing, "ip (iproute2) is not on PATH")
		}
	}
	if len(missing) == 0 {
		return tools, ""
	}
	return tools, "bmv2-tests: " + strings.Join(missing, "; ")
}
