package bmv2

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// clockTick is the unit of the CPU times in /proc (USER_HZ, 100 on every
// Linux this runs on).
const clockTick = 10 * time.Millisecond

// cpuSample is the CPU time used so far by the switch's threads, by this
// process (sender and receiver) and by the whole machine.
type cpuSample struct {
	at      time.Time
	threads map[int]uint64 // the switch's threads: tid → ticks
	self    uint64
	busy    uint64 // /proc/stat, all CPUs, everything but idle and iowait
	total   uint64
}

// cpuUse is what a trial cost, in percent of one CPU (machine: of all).
type cpuUse struct {
	switchAll  float64 // the switch process, all threads
	switchTop  float64 // its busiest thread
	topThread  string  // that thread's name
	rig        float64 // this process: sender and receiver
	machine    float64 // busy share of all CPUs, softirqs included
	measurable bool
}

func sampleCPU(pid int) cpuSample {
	s := cpuSample{at: time.Now()}
	if pid > 0 {
		s.threads = map[int]uint64{}
		dir := fmt.Sprintf("/proc/%d/task", pid)
		if entries, err := os.ReadDir(dir); err == nil {
			for _, e := range entries {
				tid, err := strconv.Atoi(e.Name())
				if err != nil {
					continue
				}
				if t, ok := statTicks(filepath.Join(dir, e.Name(), "stat")); ok {
					s.threads[tid] = t
				}
			}
		}
	}
	s.self, _ = statTicks("/proc/self/stat")
	s.busy, s.total = machineTicks()
	return s
}

// statTicks reads utime + stime from a /proc/…/stat file.
func statTicks(path string) (uint64, bool) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, false
	}
	return parseStatTicks(data)
}

// parseStatTicks reads utime + stime (fields 14 and 15) from the text of a
// stat file; the command name (field 2) may hold spaces and parentheses.
func parseStatTicks(data []byte) (uint64, bool) {
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(string(data[i+1:]))
	// f[0] is field 3 (state): utime is field 14, stime field 15.
	if len(f) < 13 {
		return 0, false
	}
	u, err1 := strconv.ParseUint(f[11], 10, 64)
	s, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, false
	}
	return u + s, true
}

// machineTicks reads the all-CPU line of /proc/stat.
func machineTicks() (busy, total uint64) {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0
	}
	line, _, _ := bytes.Cut(data, []byte("\n"))
	f := strings.Fields(string(line))
	if len(f) < 6 || f[0] != "cpu" {
		return 0, 0
	}
	for i, v := range f[1:] {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return 0, 0
		}
		// guest and guest_nice (9, 10) are already in user and nice.
		if i >= 8 {
			break
		}
		total += n
		if i != 3 && i != 4 { // idle, iowait
			busy += n
		}
	}
	return busy, total
}

// since is the use between an earlier sample and s; comm names the
// switch's threads.
func (s cpuSample) since(before cpuSample, pid int) cpuUse {
	wall := s.at.Sub(before.at)
	if wall <= 0 {
		return cpuUse{}
	}
	pct := func(ticks uint64) float64 { return 100 * float64(time.Duration(ticks)*clockTick) / float64(wall) }
	u := cpuUse{measurable: wall >= 500*time.Millisecond}
	topTid := 0
	var top uint64
	for tid, t := range s.threads {
		b, ok := before.threads[tid]
		if !ok || t < b {
			continue
		}
		d := t - b
		u.switchAll += pct(d)
		if d > top {
			top, topTid = d, tid
		}
	}
	u.switchTop = pct(top)
	if topTid != 0 {
		if comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/comm", pid, topTid)); err == nil {
			u.topThread = strings.TrimSpace(string(comm))
		}
	}
	if s.self >= before.self {
		u.rig = pct(s.self - before.self)
	}
	if s.total > before.total && s.busy >= before.busy {
		u.machine = 100 * float64(s.busy-before.busy) / float64(s.total-before.total)
	}
	return u
}

func (u cpuUse) String() string {
	if !u.measurable {
		return "CPU: trial too short to tell"
	}
	sw := ""
	if u.topThread != "" {
		sw = fmt.Sprintf("switch %.0f %% of a CPU (busiest thread %q %.0f %%), ", u.switchAll, u.topThread, u.switchTop)
	}
	return fmt.Sprintf("CPU: %ssender+receiver %.0f %%, machine %.0f %% busy", sw, u.rig, u.machine)
}

// quietWait bounds how long a probe waits for other work on the machine to
// stop before it measures anyway.
const quietWait = time.Minute

// background measures how busy the machine is (percent of all CPUs) while
// the benchmark's own path is idle, waiting up to quietWait for it to fall
// under 10 %: what else runs on a shared machine takes CPU from the
// switches, and the figure says how much.
func background() float64 {
	deadline := time.Now().Add(quietWait)
	for {
		b0, t0 := machineTicks()
		time.Sleep(500 * time.Millisecond)
		b1, t1 := machineTicks()
		busy := 0.0
		if t1 > t0 {
			busy = 100 * float64(b1-b0) / float64(t1-t0)
		}
		if busy < 10 || time.Now().After(deadline) {
			return busy
		}
	}
}
