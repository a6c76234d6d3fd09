// Package gnmicli builds openconfig's gnmi_cli, the reference gNMI client,
// for tests that check the project's gNMI targets against it.
package gnmicli

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Build builds gnmi_cli into a temporary directory and returns its path.
// It tries the project's module first (that works once go.sum holds
// gnmi_cli's dependencies), then `go install` of the version in go.mod,
// which resolves them by gnmi's own go.mod and leaves ours alone. Without
// the module proxy neither can fetch them, and the test is skipped; under
// -short it is skipped too (the first build takes a while).
func Build(t testing.TB) string {
	t.Helper()
	if testing.Short() {
		t.Skip("gnmi_cli: building it takes a while the first time; not in -short")
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		if root := os.Getenv("GOROOT"); root != "" {
			goTool = filepath.Join(root, "bin", "go")
		} else {
			t.Skipf("gnmi_cli: no go tool on PATH to build it: %v", err)
		}
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "gnmi_cli")
	const pkg = "github.com/openconfig/gnmi/cmd/gnmi_cli"
	build := exec.Command(goTool, "build", "-o", bin, pkg)
	out, buildErr := build.CombinedOutput()
	if buildErr == nil {
		return bin
	}
	ver, err := exec.Command(goTool, "list", "-m", "-f", "{{.Version}}", "github.com/openconfig/gnmi").Output()
	if err != nil {
		t.Skipf("gnmi_cli: go build failed (%v: %s) and the gnmi module version is unknown: %v", buildErr, lastLine(out), err)
	}
	install := exec.Command(goTool, "install", pkg+"@"+strings.TrimSpace(string(ver)))
	install.Env = append(os.Environ(), "GOBIN="+dir)
	if out2, err := install.CombinedOutput(); err != nil {
		t.Skipf("gnmi_cli cannot be built (a dependency is not available?): go build: %s; go install: %v: %s", lastLine(out), err, lastLine(out2))
	}
	return bin
}

func lastLine(b []byte) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return lines[len(lines)-1]
}
