package bmv2tests

import (
	"testing"

	"github.com/dmsc-mesh/dmsc/internal/netns"
)

// Names. Everything these tests create in the kernel or in the temporary
// directory starts with this prefix and carries the test process's pid
// (package internal/netns), so that a later run can tell its own leftovers
// (a run that was killed) from anybody else's. bench/bmv2 uses another.
const namePrefix = "dmsct"

// Net creates network namespaces and veth pairs for one test and removes
// them, by name, when the test ends, whatever happens.
type Net = netns.Net

// NewNet starts a test's namespace set; the first one in a process also
// removes what dead runs of these tests left behind.
func NewNet(t testing.TB) *Net { return netns.New(t, namePrefix) }
