package harness

import (
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// CPUSample is a point in time with the process's CPU time (user and
// system, every thread) and, on Linux, the whole machine's busy and total
// jiffies, so that a window between two samples gives how many cores this
// process used and how busy the machine was (the benchmarks share it with
// other work).
type CPUSample struct {
	At                time.Time
	Process           time.Duration
	machBusy, machAll uint64
}

// SampleCPU takes a sample now.
func SampleCPU() CPUSample {
	s := CPUSample{At: time.Now()}
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		s.Process = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	s.machBusy, s.machAll = machineJiffies()
	return s
}

// CPUWindow is what happened between two samples.
type CPUWindow struct {
	Wall time.Duration
	// Cores is the process's CPU time over the wall time: 1.0 is one core
	// busy all along.
	Cores float64
	// MachineBusy is the share of all cores busy (any process), 0..1; -1
	// where /proc/stat is not readable.
	MachineBusy float64
}

// Since is the window from s to now.
func (s CPUSample) Since() CPUWindow { return s.To(SampleCPU()) }

// To is the window from s to e.
func (s CPUSample) To(e CPUSample) CPUWindow {
	w := CPUWindow{Wall: e.At.Sub(s.At), MachineBusy: -1}
	if w.Wall > 0 {
		w.Cores = float64(e.Process-s.Process) / float64(w.Wall)
	}
	if e.machAll > s.machAll {
		w.MachineBusy = float64(e.machBusy-s.machBusy) / float64(e.machAll-s.machAll)
	}
	return w
}

// machineJiffies reads the first line of /proc/stat: busy is everything
// but idle and iowait.
func machineJiffies() (busy, all uint64) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 5 || f[0] != "cpu" {
		return 0, 0
	}
	for i, x := range f[1:] {
		v, err := strconv.ParseUint(x, 10, 64)
		if err != nil {
			return 0, 0
		}
		all += v
		if i != 3 && i != 4 { // idle, iowait
			busy += v
		}
	}
	return busy, all
}
