package bmv2

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/dmsc-mesh/dmsc/internal/netns"
)

// namePrefix starts everything this package creates in the kernel (package
// internal/netns). It is not bmv2-tests' ("dmsct"): each removes the
// leftovers of its own prefix, and go test ./... runs the two side by
// side.
const namePrefix = "dmscb"

// need skips t with one line unless this machine can build a rig: root
// and ip(8). (The BMv2 path also asks bmv2-tests' Require.)
func need(t testing.TB) {
	t.Helper()
	var missing []string
	if euid := os.Geteuid(); euid != 0 {
		missing = append(missing, fmt.Sprintf("network namespaces need root (euid %d)", euid))
	}
	if _, err := exec.LookPath("ip"); err != nil {
		missing = append(missing, "ip (iproute2) is not on PATH")
	}
	if len(missing) > 0 {
		t.Skip("bench/bmv2: " + strings.Join(missing, "; "))
	}
}

// newRig creates network namespaces and veth pairs for t and removes them,
// by name, when t ends.
func newRig(t testing.TB) *netns.Net { return netns.New(t, namePrefix) }
